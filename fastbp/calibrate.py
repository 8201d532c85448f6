"""``python -m fastbp.calibrate``: measure how many runs side by side train fastest on
this machine, for every block size, dtype and optimizer, and keep the answers.

Sweeps and :func:`fastbp.train.train_batch` measure this themselves the first time they
train blocks of a dtype and optimizer on a host, against one run at a time only
(:mod:`fastbp.engine.tuning`). This command is the explicit, thorough way: it times
every block size (1, 2, 4, 8 runs; 16 in float32) on 8-3-8 runs, longer, and keeps the
fastest in the same file, under this host's key, for every later sweep here.
``FASTBP_LANES`` still wins over it.
"""

from __future__ import annotations

import sys

from fastbp.cli import Parser, positive_int
from fastbp.config import OPTIMIZERS

SECONDS = 0.02  # each timing: 5x a sweep's own measurement
WIDEST = {"float64": 8, "float32": 16}


def calibrate(rounds=7, seconds=SECONDS, dtypes=("float64", "float32"), optimizers=OPTIMIZERS,
              say=print) -> dict:  # fmt: skip
    """Time every block size for each dtype and optimizer on 8-3-8 runs, in interleaved
    rounds; keep the fastest for this host (for steps of the 8-3-8's size) and return
    {(dtype, optimizer): Choice}."""
    from fastbp import RunConfig
    from fastbp.engine.codegen import LANE_CHOICES
    from fastbp.planner import measure

    chosen = {}
    for dtype in dtypes:
        sizes = [n for n in LANE_CHOICES if n <= WIDEST[dtype]]
        for optimizer in optimizers:
            say(f"{dtype} {optimizer}: compiling and timing {len(sizes)} block sizes")
            run = RunConfig(dtype=dtype, optimizer=optimizer)
            chosen[dtype, optimizer] = measure(run, sizes, rounds, seconds, by="fastbp.calibrate")
    return chosen


def main(argv=None) -> int:
    parser = Parser(
        prog="python -m fastbp.calibrate",
        description="Measure how many runs side by side train fastest on this machine, for "
        "every block size, dtype and optimizer, and keep the answers for every later sweep "
        "here (sweeps measure blocks against one run at a time by themselves; FASTBP_LANES "
        "still wins over both).",
    )
    parser.add_argument("--rounds", type=positive_int, default=7, help="timings per size (7)")
    parser.add_argument("--dtype", choices=tuple(WIDEST), action="append",
                        help="only this dtype (repeat for more; default: both)")  # fmt: skip
    parser.add_argument("--optimizer", choices=OPTIMIZERS, action="append",
                        help="only this optimizer (repeat for more; default: all)")  # fmt: skip
    args = parser.parse_args(argv)
    from fastbp.engine import kernel_cache, tuning

    dtypes = tuple(args.dtype or WIDEST)
    optimizers = tuple(args.optimizer or OPTIMIZERS)
    chosen = calibrate(args.rounds, SECONDS, dtypes, optimizers)
    for (dtype, optimizer), choice in chosen.items():
        print(f"{dtype} {optimizer}: {choice.lanes} run(s) at a time: {choice.detail}")
    path = kernel_cache.calibration_file()
    saved = tuning.host_table()
    if any(tuning.key_of((8, 3, 8), 8, *kind) not in saved for kind in chosen):
        print(f"error: {path} cannot be written: the sizes above are not kept, and sweeps "
              "here measure for themselves", file=sys.stderr)  # fmt: skip
        return 1
    print(f"saved in {path}; sweeps on this machine use it from now on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
