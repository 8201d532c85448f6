"""``python -m fastbp [--field VALUE ...]``: train one network and report how it went.

Any RunConfig field can be set, e.g. ``python -m fastbp --lr 1e-2 --steps 300000``.
Values are read as TOML values (``--layers [8,4,8]``, ``--bias false``); layers also as
``8-4-8``. A bad value prints one line naming the field and exits with status 2.
"""

import dataclasses
import sys
import tomllib

import numpy as np

from fastbp import cli
from fastbp.cli import Parser
from fastbp.config import (
    ACTIVATIONS,
    DATASETS,
    INITS,
    LOSSES,
    OPTIMIZER_FIELDS,
    OPTIMIZERS,
    ConfigError,
    RunConfig,
    layers_text,
)

CHOICES = {"activation": ACTIVATIONS, "init": INITS, "dataset": DATASETS, "loss_fn": LOSSES,
           "optimizer": OPTIMIZERS, "dtype": ("float64", "float32")}  # fmt: skip


def _value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word such as tanh


def main(argv=None) -> int:
    parser = Parser(
        prog="python -m fastbp",
        description="Train one network and report how it went. Values are TOML values "
        "(--layers [8,4,8] or 8-4-8, --bias false, --lr 1e-2); fields not given keep "
        "their defaults.",
    )
    for field in dataclasses.fields(RunConfig):
        default = layers_text(field.default) if field.name == "layers" else field.default
        default = str(default).lower() if isinstance(default, bool) else default  # TOML
        users = [o for o, own in OPTIMIZER_FIELDS.items() if field.name in own]
        if users:  # momentum, beta1, ...: a default for the optimizers that have them
            default = f"{OPTIMIZER_FIELDS[users[0]][field.name]} (optimizer {' or '.join(users)})"
        known = CHOICES.get(field.name)
        help = f"default: {default}" + (f"; one of {', '.join(known)}" if known else "")
        if field.name == "dataset":
            help += ", or a .npz or .csv file"
        if field.name in ("batch_size", "targets"):
            help = "default: none" + (" (full batch)" if field.name == "batch_size" else "")
        parser.add_argument(
            f"--{field.name.replace('_', '-')}", dest=field.name, metavar="VALUE", help=help
        )
    args = parser.parse_args(argv)
    given = {k: _value(v) for k, v in vars(args).items() if v is not None}
    try:
        config = RunConfig.from_dict(given)
    except ConfigError as err:
        print(f"error: --{err.field.replace('_', '-')}: {err}", file=sys.stderr)
        return 2

    from fastbp.train import train  # after validation: bad input never waits for Numba

    result = train(config)
    print(config)
    print(f"{'step':>10}  loss")
    shown = np.unique(np.linspace(0, len(result.steps) - 1, 11).astype(int))
    for i in shown:
        print(f"{result.steps[i]:>10}  {result.losses[i]:.6g}")
    status = "diverged" if result.diverged else "finished"
    ns = result.wall_s / config.steps * 1e9
    print(f"{status} in {result.wall_s:.3f} s ({ns:.0f} ns per step, compilation included)")
    if not result.diverged:
        from fastbp.data import make_dataset
        from fastbp.reference import predict

        X, _ = make_dataset(config)
        print("outputs for each input (rows), rounded:")
        Y = predict(result.params, X, config.activation)
        print(np.array2string(Y, precision=2, suppress_small=True, max_line_width=120))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
