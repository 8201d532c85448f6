"""Results of sweeps of any shape, made without training: the figures, the summary and the
report are functions of the tables, so their tests build the tables directly, through the
same code that writes a real sweep's (shards, final tables, meta.json).

Each run's loss decays from its initial value towards a floor, faster for a larger lr, with
a seeded wobble; runs with lr >= DIVERGE_LR diverge at a step that depends on lr. Accuracy
follows the loss; runs with val_fraction get validation metrics too.
"""

from __future__ import annotations

import json

import numpy as np

from fastbp.params import init_params
from fastbp.results import Store, load_results, shard_tables, write_final_tables
from fastbp.spec import parse_spec
from fastbp.train import RunResult, Trained, logged_steps

DIVERGE_LR = 10.0


def fake_result(config) -> RunResult:
    steps = logged_steps(config.steps, config.log_every)
    rng = np.random.default_rng(config.seed + 1000)
    start, floor = 0.25 + 0.05 * rng.random(), 0.0625 * (1 + rng.random())
    losses = floor + (start - floor) * np.exp(-config.lr * steps / 50.0)
    losses *= 1 + 0.01 * rng.standard_normal(len(steps))
    diverged_at = None
    if config.lr >= DIVERGE_LR:
        diverged_at = max(1, int(config.steps / (2 * config.lr)))
        losses[steps >= diverged_at] = np.nan
        losses[(steps > 0) & (steps < diverged_at)] *= 1e3  # it climbs first
    return RunResult(
        config=config,
        logged_steps=steps,
        losses=losses,
        params=init_params(config),
        diverged=diverged_at is not None,
        diverged_at=diverged_at,
        wall_s=0.001,
        # classes: accuracy rises as the loss falls; held-out samples do a little worse
        accuracy=np.clip(1.5 - 4 * losses, 0, 1),
        val_loss=1.2 * losses if config.val_fraction else None,
        val_accuracy=np.clip(1.4 - 4 * losses, 0, 1) if config.val_fraction else None,
    )


def sweep_results(spec: str, directory):
    """Write the tables a sweep of ``spec`` (TOML text) would, into ``directory``, and load
    them back as Results."""
    import tomllib

    parsed = parse_spec(tomllib.loads(spec))
    store = Store(directory)
    store.write(shard_tables(Trained.of([fake_result(run) for run in parsed.runs]), "test"))
    tables = store.current()
    write_final_tables(directory, tables, [r.run_id for r in parsed.runs], parsed.threshold)
    meta = {"name": parsed.name, "threshold": parsed.threshold, "swept": list(parsed.swept)}
    (directory / "meta.json").write_text(json.dumps(meta))
    (directory / "spec.toml").write_text(spec)
    return load_results(directory)


SHAPES = {
    "dense lr grid": """
        [sweep]
        name = "dense"
        threshold = 0.1
        [base]
        steps = 2000
        log_every = 50
        [grid]
        lr = { logspace = [-3, 1.3, 40] }  # up to 20: the top ones diverge
        bias = [true, false]
        seed = { range = [0, 6] }
        """,
    "random search": """
        [sweep]
        name = "random"
        [base]
        steps = 500
        log_every = 10
        [random]
        n = 12
        seed = 3
        lr = { loguniform = [1e-3, 1.0] }
        init = ["he", "xavier", "normal"]
        init_scale = { uniform = [0.05, 1.0] }
        """,
    "random momentum, some runs Adam": """
        [sweep]
        name = "randmom"
        [base]
        steps = 500
        log_every = 50
        [random]
        n = 40
        seed = 7
        lr = { loguniform = [1e-3, 0.5] }
        momentum = { uniform = [0.5, 0.99] }
        optimizer = ["momentum", "nesterov", "adam"]
        init = ["he", "xavier"]
        """,
    "union with missing values": """
        [sweep]
        name = "union"
        threshold = 0.1
        [base]
        steps = 300
        log_every = 10
        [[grid]]
        lr = [0.1, 1.0]
        batch_size = [2, 4]
        seed = [0, 1]
        [[grid]]
        lr = [0.1, 1.0]
        seed = [0, 1]
        """,
    "architectures x activations": """
        [sweep]
        name = "arch"
        [base]
        steps = 400
        log_every = 20
        lr = 0.02
        [grid]
        layers = [[8, 3, 8], [8, 4, 3, 8], [8, 6, 8]]
        activation = ["relu", "tanh", "sigmoid"]
        seed = [0, 1]
        """,
    "one run": """
        [sweep]
        name = "one"
        [base]
        steps = 100
        lr = 0.1
        """,
    "every run diverged": """
        [sweep]
        name = "boom"
        threshold = 0.1
        [base]
        steps = 200
        log_every = 10
        [grid]
        lr = [20.0, 50.0]
        bias = [true, false]
        seed = [0, 1]
        """,
    "losses, optimizers, held-out samples": """
        [sweep]
        name = "heldout"
        [base]
        dataset = "parity"
        layers = [4, 4, 1]
        steps = 300
        log_every = 20
        val_fraction = 0.25
        [grid]
        loss_fn = ["mse", "bce"]
        optimizer = ["sgd", "momentum", "adam"]
        lr = [0.01, 0.1]
        seed = [0, 1]
        """,
    "random settings over seeds, held-out samples": """
        [sweep]
        name = "randseeds"
        [base]
        dataset = "parity"
        steps = 300
        log_every = 20
        val_fraction = 0.25
        loss_fn = "bce"
        [random]
        n = 14
        seed = 2
        lr = { loguniform = [1e-3, 1.0] }
        layers = [[4, 4, 1], [4, 8, 1], [4, 8, 8, 1]]
        optimizer = ["sgd", "momentum", "adam"]
        activation = ["relu", "tanh"]
        batch_size = [4, 8]
        [grid]
        seed = { range = [0, 3] }
        """,
    "one seed": """
        [sweep]
        name = "oneseed"
        threshold = 0.1
        [base]
        steps = 1000
        log_every = 20
        [grid]
        lr = [0.01, 0.1, 1.0, 30.0]
        bias = [true, false]
        """,
}
