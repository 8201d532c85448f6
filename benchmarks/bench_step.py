"""Nanoseconds per run-step for the 8-3-8 encoder (full-batch), fastbp against the rest.

    python benchmarks/bench_step.py [--repeats N] [--quick] [--out FILE] [--only WHAT]

Every measurement runs in a fresh process with its thread pools at 1 (one core), warms
up first (compilation, caches), then times at least 5 repeats: the table gives the
median and the minimum, and each median as a multiple of the speed of the NumPy
reference measured in the same run. Measured, with SGD unless named: fastbp single runs
(generated kernel, and the loop kernel), fastbp batched (64 and 1024 runs, float64 and
float32), mini-batches, momentum and Adam (one run, 64 runs), the NumPy
reference (fastbp.reference, written like the original report) and, when installed
(pip install -e '.[bench]'), PyTorch eager with autograd and JAX jit + lax.scan, one run
and vmapped over 64 runs. Then fastbp's cost against hidden width, depth and steps; a
sweep's path against one run at a time (interleaved, in one process); and users' sizes
(scikit-learn's digits and breast cancer data, one run of Adam against scikit-learn's
MLPClassifier and PyTorch eager, and the digits at other widths and sample counts; all
that, alone, with --only users); what each of the engine's loop structures gains where it
is used (one run in the form chosen, in the single-run tiles and in the loop kernel;
alone with --only forms).

To measure another vector ISA on this CPU (AVX2 on an AVX-512 machine), set Numba's
target and XLA's together, with empty kernel caches, e.g.:

    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=+64bit,+avx,+avx2,+fma,... \
    XLA_FLAGS=--xla_cpu_max_isa=AVX2 FASTBP_KERNEL_DIR=$(mktemp -d) \
    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_step.py --out results/avx2.json

The NumPy reference's process runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset:
where this machine sets them (for old OpenBLAS builds), they slow a current NumPy down.
Nothing else changes the environment. Results go to benchmarks/results/bench_step.json,
with --only WHAT to bench_step_WHAT.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    # after any flags of the caller's (e.g. --xla_cpu_max_isa=AVX2 to match NUMBA_CPU_NAME)
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
LR = 1e-3


# ---------------------------------------------------------------- measurements (children)


def timed(fn, repeats):
    fn()  # warm-up: compilation, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def configs(runs, steps, layers=(8, 3, 8), dtype="float64", batch_size=None, optimizer="sgd",
            schedule="constant"):  # fmt: skip
    from fastbp import RunConfig

    return [RunConfig(layers=layers, lr=LR, seed=s, steps=steps, log_every=steps, dtype=dtype,
                      batch_size=batch_size, optimizer=optimizer, lr_schedule=schedule)
            for s in range(runs)]  # fmt: skip


def form_used(runs=1, layers=(8, 3, 8), dtype="float64", engine="auto", batch_size=None,
              optimizer="sgd", **_):  # fmt: skip
    """Which kernel form (and how many runs per block) a measurement trains with."""
    from fastbp.engine import codegen, tuning

    n = layers[0]  # the encoder: as many samples as inputs
    minibatch = batch_size is not None and batch_size < n
    if engine == "loops" or minibatch and not codegen.minibatch_form(layers, n, batch_size, dtype):
        return "loop kernel", 1
    lanes = (
        1 if runs == 1 or minibatch else tuning.choose(layers, n, dtype, optimizer=optimizer).lanes
    )
    return codegen.form_for(layers, n, lanes, dtype, batch_size if minibatch else None), lanes


def fastbp_single(steps, layers=(8, 3, 8), engine="auto", batch_size=None, optimizer="sgd",
                  schedule="constant", **_):  # fmt: skip
    from fastbp import train

    (config,) = configs(1, steps, layers, batch_size=batch_size, optimizer=optimizer,
                        schedule=schedule)  # fmt: skip
    return lambda: train(config, engine=engine)


def fastbp_single_tiles(steps, **kw):
    """One run in the single-run form (products in tiles of registers) where the vector
    form would be chosen: what the vector form gains. Reaches inside codegen on purpose:
    no user setting picks a slower form."""
    from fastbp.engine import codegen

    codegen._vector_width = lambda *_: None
    return fastbp_single(steps, **kw)


def fastbp_batched(steps, runs, layers=(8, 3, 8), dtype="float64", batch_size=None,
                   optimizer="sgd", schedule="constant", **_):  # fmt: skip
    from fastbp.train import train_batch

    batch = configs(runs, steps, layers, dtype, batch_size, optimizer, schedule)
    return lambda: train_batch(batch)


def numpy_reference(steps, **_):
    from fastbp import reference

    (config,) = configs(1, steps)
    return lambda: reference.train(config)


def torch_eager(steps, **_):
    import torch

    torch.set_num_threads(1)
    X = torch.eye(8, dtype=torch.float64)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 3), torch.nn.ReLU(), torch.nn.Linear(3, 8)
    ).double()
    optimiser = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.MSELoss()

    def run():
        for _ in range(steps):
            optimiser.zero_grad()
            loss = loss_fn(model(X), X)
            loss.backward()
            optimiser.step()

    return run


def _jax_trainer(steps):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    X = jnp.eye(8)

    def loss(params):
        W1, b1, W2, b2 = params
        return jnp.mean((jax.nn.relu(X @ W1 + b1) @ W2 + b2 - X) ** 2)

    def train_one(params):
        def step(p, _):
            value, grads = jax.value_and_grad(loss)(p)
            return jax.tree_util.tree_map(lambda a, g: a - LR * g, p, grads), value

        return jax.lax.scan(step, params, None, length=steps)

    def params(seed):
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        return (jax.random.normal(k1, (8, 3)) * 0.5, jnp.zeros(3),
                jax.random.normal(k2, (3, 8)) * 0.8, jnp.zeros(8))  # fmt: skip

    return jax, train_one, params


def jax_scan(steps, **_):
    jax, train_one, params = _jax_trainer(steps)
    fn, p = jax.jit(train_one), params(0)
    return lambda: jax.block_until_ready(fn(p))


def jax_vmap(steps, runs, **_):
    jax, train_one, params = _jax_trainer(steps)
    batch = jax.tree_util.tree_map(lambda *a: jax.numpy.stack(a), *[params(s) for s in range(runs)])
    fn = jax.jit(jax.vmap(train_one))
    return lambda: jax.block_until_ready(fn(batch))


# ------------------------------------------------ users' sizes: the mid-size cases

# (layers, samples, loss): scikit-learn's handwritten digits (80% of 1,797 images, 8x8
# pixels, 10 classes) and breast cancer (80% of 569 tumours, 30 measurements, benign or
# not), ReLU, Adam at lr 1e-3, as a user's own data would come.
MIDSIZE = {
    "digits": ((64, 32, 10), 1437, "cross_entropy"),
    "cancer": ((30, 16, 1), 455, "bce"),
}


def midsize_data(case, n=None):
    """(X, T, class labels) of a mid-size case, as float64 arrays: its first ``n`` samples
    (all of the case's by default)."""
    import numpy as np
    from sklearn import datasets

    n = n or MIDSIZE[case][1]
    if case == "digits":
        X, y = datasets.load_digits(return_X_y=True)
        X, y = X[:n] / 16.0, y[:n]
        return X, np.eye(10)[y], y
    X, y = datasets.load_breast_cancer(return_X_y=True)
    X, y = X[:n], y[:n]
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X, y[:, None].astype(float), y


def midsize_configs(case, steps, runs=1, batch_size=None, hidden=None, n=None):
    """The case's RunConfigs (``hidden``: another hidden width, ``n``: fewer samples)."""
    from fastbp import Data, RunConfig

    layers, _, loss = MIDSIZE[case]
    if hidden:
        layers = (layers[0], hidden, layers[-1])
    X, T, _ = midsize_data(case, n)
    data = Data(X, T, name=case)
    return [RunConfig(layers=layers, dataset=data, loss_fn=loss, optimizer="adam", lr=1e-3,
                      seed=s, steps=steps, log_every=steps, batch_size=batch_size)
            for s in range(runs)]  # fmt: skip


def fastbp_midsize(steps, case, batch_size=None, hidden=None, n=None, **_):
    from fastbp import train

    (config,) = midsize_configs(case, steps, batch_size=batch_size, hidden=hidden, n=n)
    return lambda: train(config)


def sklearn_midsize(steps, case, batch_size=None, hidden=None, n=None, **_):
    """scikit-learn's MLPClassifier, the same network, loss and optimizer (its loss adds
    no L2 term with alpha=0); ``steps`` rounded to whole epochs."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    layers, _, _ = MIDSIZE[case]
    layers = (layers[0], hidden or layers[1], layers[-1])
    X, _, y = midsize_data(case, n)
    n = len(X)
    batch = batch_size or n
    epochs = max(1, steps // -(-n // batch))
    model = MLPClassifier(hidden_layer_sizes=layers[1:-1], activation="relu", solver="adam",
                          alpha=0.0, batch_size=batch, learning_rate_init=1e-3,
                          max_iter=epochs, shuffle=False, tol=0.0, n_iter_no_change=10**9,
                          random_state=0)  # fmt: skip

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)

    return run


def torch_midsize(steps, case, batch_size=None, hidden=None, n=None, **_):
    import torch

    torch.set_num_threads(1)
    layers, _, loss = MIDSIZE[case]
    layers = (layers[0], hidden or layers[1], layers[-1])
    X, T, y = midsize_data(case, n)
    n = len(X)
    X = torch.tensor(X)
    target = torch.tensor(y) if loss == "cross_entropy" else torch.tensor(T)
    model = torch.nn.Sequential(torch.nn.Linear(layers[0], layers[1]), torch.nn.ReLU(),
                                torch.nn.Linear(layers[1], layers[2])).double()  # fmt: skip
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    nn = torch.nn
    loss_fn = nn.CrossEntropyLoss() if loss == "cross_entropy" else nn.BCEWithLogitsLoss()
    batch = batch_size or n
    starts = [(k * batch) % n for k in range(steps)]

    def run():
        for start in starts:
            optimiser.zero_grad()
            loss_fn(model(X[start : start + batch]), target[start : start + batch]).backward()
            optimiser.step()

    return run


# ------------------------------------ a sweep's path against one run at a time, interleaved


def sweep_vs_single(steps, runs, optimizer="sgd", dtype="float64", case=None, rounds=7, **_):
    """Median ns per run-step of ``train_batch`` (a sweep's path: blocks, as this host
    chose them, measured the first time) and of ``train`` on each run, in interleaved
    rounds of one process; the block form and why."""
    from fastbp import train
    from fastbp.train import block_choice, train_batch

    if case is None:
        batch = configs(runs, steps, dtype=dtype, optimizer=optimizer)
    else:
        batch = midsize_configs(case, steps, runs)
    train_batch(batch)  # compiles, loads, and measures this host the first time
    [train(c) for c in batch[:2]]
    samples = {"sweep": [], "single": []}
    for k in range(rounds):
        for name in ("sweep", "single") if k % 2 == 0 else ("single", "sweep"):
            start = time.perf_counter()
            train_batch(batch) if name == "sweep" else [train(c) for c in batch]
            samples[name].append((time.perf_counter() - start) / (steps * runs) * 1e9)
    choice = block_choice(batch[0])
    return {**{f"{name}_ns": statistics.median(v) for name, v in samples.items()},
            "lanes": choice.lanes, "why": choice.why, "measured": choice.detail}  # fmt: skip


IMPLEMENTATIONS = {
    "numpy_reference": numpy_reference,
    "fastbp_single": fastbp_single,
    "fastbp_single_loops": lambda steps, **kw: fastbp_single(steps, engine="loops", **kw),
    "fastbp_single_tiles": fastbp_single_tiles,
    "fastbp_batched": fastbp_batched,
    "torch_eager": torch_eager,
    "jax_scan": jax_scan,
    "jax_vmap": jax_vmap,
    "fastbp_midsize": fastbp_midsize,
    "sklearn_midsize": sklearn_midsize,
    "torch_midsize": torch_midsize,
}


def child(args):
    kwargs = json.loads(args.kwargs)
    if args.child == "sweep_vs_single":
        print(json.dumps(sweep_vs_single(**kwargs, rounds=args.repeats)))
        return
    fn = IMPLEMENTATIONS[args.child](**kwargs)
    times = timed(fn, args.repeats)
    per = kwargs["steps"] * kwargs.get("runs", 1)
    out = {"ns": [t / per * 1e9 for t in times]}
    if args.child.startswith("fastbp"):
        engine = "loops" if args.child.endswith("_loops") else "auto"
        out["form"], out["lanes"] = form_used(**{"engine": engine, **kwargs})
    print(json.dumps(out))


# ---------------------------------------------------------------- driver (parent)


def measure(name, repeats, env_drop=(), **kwargs):
    """Run one measurement in a fresh process; None if its library is not installed."""
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    env.update(ONE_THREAD)
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, "--repeats", str(repeats),
         "--kwargs", json.dumps(kwargs)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        if "ModuleNotFoundError" in out.stderr:
            return None
        raise RuntimeError(f"{name} failed:\n{out.stderr}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if "ns" not in got:  # a pair of its own (sweep_vs_single)
        return {**got, **kwargs}
    ns = got.pop("ns")
    return {"median_ns": statistics.median(ns), "min_ns": min(ns), "repeats": len(ns), **got,
            **kwargs}  # fmt: skip


def machine():
    import numba
    import numpy

    from fastbp.system import cpu_name

    cpu = cpu_name()
    versions = {"python": platform.python_version(), "numpy": numpy.__version__,
                "numba": numba.__version__}  # fmt: skip
    for name in ("torch", "jax"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    import llvmlite.binding

    from fastbp.engine import kernel_cache

    # the host's CPU as LLVM names it: a virtual machine's host may change between runs
    target = {"host_cpu": llvmlite.binding.get_host_cpu_name(),
              "numba_cpu_name": os.environ.get("NUMBA_CPU_NAME", "host"),
              "vector_bits": kernel_cache.vector_bits()}  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), **target,
            **versions}  # fmt: skip


IMPLS = ("fastbp_midsize", "sklearn_midsize", "torch_midsize")


def users_sizes(r, scale):
    """Users' sizes: one run, one thread, Adam, against scikit-learn (BLAS) and PyTorch
    eager: the mid-size cases, then the digits (full batch) at other hidden widths and
    numbers of samples."""
    midsize = {}
    for case in MIDSIZE:
        for batch in (None, 64):
            steps = (200 if batch is None else 2300) // scale
            if case == "cancer":
                steps *= 4
            for impl in IMPLS:
                midsize[f"{case} {batch or 'full'} {impl}"] = measure(
                    impl, r, steps=steps, case=case, batch_size=batch
                )
    scan = {}
    for hidden, n in [(16, 1437), (32, 1437), (64, 1437), (128, 1437), (32, 180), (32, 360),
                      (32, 720)]:  # fmt: skip
        for impl in IMPLS:
            scan[f"64-{hidden}-10 on {n} {impl}"] = measure(
                impl, r, steps=200 // scale, case="digits", hidden=hidden, n=n
            )
    return midsize, scan


def print_users(report, r):
    print(f"\nusers' sizes, one run, one thread, Adam: microseconds per step, median of {r}"
          " (min):")  # fmt: skip

    def cells(table, key):
        out = []
        for impl in IMPLS:
            row = table[f"{key} {impl}"]
            us = "not installed" if row is None else (
                f"{row['median_ns'] / 1e3:,.1f} ({row['min_ns'] / 1e3:,.1f})")  # fmt: skip
            out.append(f"{impl.split('_')[0]} {us}")
        return "   ".join(out)

    for case, (layers, n, _) in MIDSIZE.items():
        for batch in ("full", 64):
            label = f"{case} {'-'.join(map(str, layers))} on {n}, batch {batch}"
            print(f"  {label:<34} " + cells(report["midsize"], f"{case} {batch}"))
    print("digits, full batch, other widths and sample counts:")
    labels = sorted({key.rsplit(" ", 1)[0] for key in report["midsize_scan"]},
                    key=lambda s: (int(s.split()[-1]), int(s.split("-")[1])))  # fmt: skip
    for label in labels:
        print(f"  {label:<34} " + cells(report["midsize_scan"], label))


def write_and_print_users(out, report, r):
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(f"{m['cpu']} (kernels for: {m['numba_cpu_name']}, {m['vector_bits']}-bit vectors)")
    print_users(report, r)


FORMS = {  # case: (its kwargs, steps)
    "8-3-8 sgd": ({}, 200_000),
    "8-3-8 adam": ({"optimizer": "adam"}, 200_000),
    "8-6-8 sgd": ({"layers": (8, 6, 8)}, 200_000),
    "8-3-8 sgd, mini-batches of 2": ({"batch_size": 2}, 200_000),
    "8-32-8 sgd": ({"layers": (8, 32, 8)}, 20_000),
    "8-128-8 sgd": ({"layers": (8, 128, 8)}, 10_000),
}


def form_costs(r, scale):
    """One run of each case in the form chosen for it and in the forms below it (the
    single-run tiles, the loop kernel): what each loop structure of codegen gains where
    it is used. Blocks of runs against one at a time: sweep_vs_single."""
    out = {}
    for case, (kwargs, steps) in FORMS.items():
        steps //= scale
        out[case] = {
            "chosen": measure("fastbp_single", r, steps=steps, **kwargs),
            "loop kernel": measure("fastbp_single_loops", r, steps=steps, **kwargs),
        }
        if out[case]["chosen"]["form"] == "vector":  # a mini-batch has no tile form
            out[case]["tiles"] = measure("fastbp_single_tiles", r, steps=steps, **kwargs)
    return out


def print_forms(report):
    m = report["machine"]
    print(
        f"\n{m['cpu']} (kernels for: {m['numba_cpu_name']}, {m['vector_bits']}-bit vectors):"
        " one run in the form chosen and in the forms below it, ns per step, median:"
    )
    for case, row in report["forms"].items():
        cells = [f"{row[k]['form']} {row[k]['median_ns']:>7,.0f}"
                 for k in ("chosen", "tiles", "loop kernel") if k in row]  # fmt: skip
        print(f"  {case:<30} " + "   ".join(cells))


def schedule_costs(r, scale):
    """ns per run-step of the 8-3-8 with a constant learning rate and with a cosine one
    (a rate per update, read from a table), one run and 64 runs, SGD and Adam."""
    out = {}
    for optimizer in ("sgd", "adam"):
        for schedule in ("constant", "cosine"):
            out[f"{optimizer} {schedule}"] = {
                "single": measure("fastbp_single", r, steps=100_000 // scale,
                                  optimizer=optimizer, schedule=schedule),
                "batched_64": measure("fastbp_batched", r, runs=64, steps=20_000 // scale,
                                      optimizer=optimizer, schedule=schedule),
            }  # fmt: skip
    return out


def print_schedules(report):
    print("\nthe cost of a learning-rate schedule, 8-3-8, ns per run-step, median:")
    for name, pair in report["schedules"].items():
        print(f"  {name:<16} one run {pair['single']['median_ns']:>6,.0f}  64 runs "
              f"{pair['batched_64']['median_ns']:>6,.0f} ({pair['batched_64']['form']}, "
              f"{pair['batched_64']['lanes']} per block)")  # fmt: skip


def write_and_print_schedules(out, report, r):
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(f"{m['cpu']} (kernels for: {m['numba_cpu_name']}), one core, {r} repeats")
    print_schedules(report)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer steps, for a smoke test")
    parser.add_argument("--out", type=Path, help="where the JSON goes (results/bench_step.json; "
                        "with --only WHAT, results/bench_step_WHAT.json)")  # fmt: skip
    parser.add_argument("--only", choices=("all", "users", "schedules", "forms"), default="all",
                        help="users: only the mid-size cases and their scan; schedules: "
                        "only the cost of a learning-rate schedule; forms: only one run "
                        "in each loop structure")  # fmt: skip
    parser.add_argument("--child")
    parser.add_argument("--kwargs")
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.out is None:  # a part never overwrites the whole run's results
        suffix = "" if args.only == "all" else f"_{args.only}"
        args.out = HERE / "results" / f"bench_step{suffix}.json"
    scale = 10 if args.quick else 1
    r = max(5, args.repeats)
    blas = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    if args.only == "schedules":
        return write_and_print_schedules(
            args.out, {"machine": machine(), "schedules": schedule_costs(r, scale)}, r
        )
    if args.only == "forms":
        report = {"machine": machine(), "forms": form_costs(r, scale)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        return print_forms(report)
    midsize, midsize_scan = users_sizes(r, scale)
    if args.only == "users":
        report = {"machine": machine(), "midsize": midsize, "midsize_scan": midsize_scan}
        return write_and_print_users(args.out, report, r)
    rows = {
        "numpy_reference": measure("numpy_reference", r, env_drop=blas, steps=2000 // scale),
        "fastbp_single": measure("fastbp_single", r, steps=300_000 // scale),
        "fastbp_single_loops": measure("fastbp_single_loops", r, steps=300_000 // scale),
    }
    for runs in (64, 1024):
        for dtype in ("float64", "float32"):
            rows[f"fastbp_batched_{runs}_{dtype}"] = measure(
                "fastbp_batched",
                r,
                runs=runs,
                dtype=dtype,
                steps=(20_000 if runs == 64 else 10_000) // scale,
            )
    for runs in (1, 64):  # mini-batches of 4 of the 8 samples
        name = "fastbp_single" if runs == 1 else "fastbp_batched"
        rows[f"fastbp_minibatch4_{runs}"] = measure(
            name, r, runs=runs, batch_size=4, steps=(100_000 if runs == 1 else 5_000) // scale
        )
    for optimizer in ("momentum", "adam"):  # the cost of an optimizer's state
        rows[f"fastbp_single_{optimizer}"] = measure(
            "fastbp_single", r, steps=300_000 // scale, optimizer=optimizer
        )
        rows[f"fastbp_batched_64_{optimizer}"] = measure(
            "fastbp_batched", r, runs=64, steps=20_000 // scale, optimizer=optimizer
        )
    rows["torch_eager"] = measure("torch_eager", r, steps=2000 // scale)
    rows["jax_scan"] = measure("jax_scan", r, steps=100_000 // scale)
    rows["jax_vmap_64"] = measure("jax_vmap", r, runs=64, steps=20_000 // scale)
    base = rows["numpy_reference"]["median_ns"]
    jax_vmap = (rows["jax_vmap_64"] or {}).get("median_ns")
    for name, row in rows.items():
        if row:
            row["speedup_vs_numpy"] = base / row["median_ns"]
            if jax_vmap and name.startswith("fastbp_batched"):
                row["speedup_vs_jax_vmap"] = jax_vmap / row["median_ns"]

    scans = {"hidden_width": {}, "depth": {}, "steps": {}}
    for width in (3, 8, 32, 128):
        layers = (8, width, 8)
        scans["hidden_width"][width] = {
            "single": measure("fastbp_single", 5, steps=50_000 // scale, layers=layers),
            "batched_64": measure("fastbp_batched", 5, runs=64, steps=5000 // scale, layers=layers),
        }
    for hidden in (1, 2, 3):
        layers = (8, *[8] * hidden, 8)
        scans["depth"][hidden] = {
            "single": measure("fastbp_single", 5, steps=50_000 // scale, layers=layers),
            "batched_64": measure("fastbp_batched", 5, runs=64, steps=5000 // scale, layers=layers),
        }
    for steps in (10_000, 30_000, 100_000, 300_000):
        m = measure("fastbp_single", 5, steps=steps // scale)
        scans["steps"][steps] = {**m, "seconds_per_run": m["median_ns"] * steps / scale / 1e9}

    # A sweep's path (train_batch, as this host chose its blocks) against one run at a
    # time (train), interleaved in one process: the first call measures the host.
    pairs = {}
    for optimizer in ("sgd", "momentum", "adam"):
        for dtype in ("float64", "float32"):
            pairs[f"8-3-8 {optimizer} {dtype}"] = measure(
                "sweep_vs_single", r, runs=64, steps=20_000 // scale, optimizer=optimizer,
                dtype=dtype)  # fmt: skip
    for case in MIDSIZE:
        pairs[f"{case} adam float64"] = measure(
            "sweep_vs_single", r, runs=4, steps=100 // min(scale, 10), case=case
        )
    report = {"machine": machine(), "per_run_step": rows, "sweep_vs_single": pairs,
              "midsize": midsize, "midsize_scan": midsize_scan, "scans": scans,
              "schedules": schedule_costs(r, scale), "forms": form_costs(r, scale),
              "note": "ns per run-step, one core; NumPy reference with OPENBLAS_CORETYPE/"
                      "OPENBLAS_L2_SIZE unset"}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(f"{m['cpu']} (kernels for: {m['numba_cpu_name']}, {m['vector_bits']}-bit vectors), "
          f"one core; median (min) of {r} repeats\n")  # fmt: skip
    print(f"{'implementation':<30}{'ns per run-step':>22}{'vs NumPy':>12}  form")
    for name, row in rows.items():
        if row is None:
            print(f"{name:<30}{'not installed':>22}")
            continue
        cell = f"{row['median_ns']:,.0f} ({row['min_ns']:,.0f})"
        vs_jax = (
            f"{row['speedup_vs_jax_vmap']:>9.1f}x JAX vmap" if "speedup_vs_jax_vmap" in row else ""
        )
        form = f"  {row['form']}, {row['lanes']} lane(s)" if "form" in row else ""
        print(f"{name:<30}{cell:>22}{row['speedup_vs_numpy']:>11.0f}x{vs_jax}{form}")
    print(f"\na sweep's path (train_batch) against one run at a time (train), ns per run-step,"
          f" median of {r} interleaved rounds:")  # fmt: skip
    for name, row in pairs.items():
        if row is None:
            print(f"  {name:<24} needs scikit-learn")
            continue
        ratio = row["sweep_ns"] / row["single_ns"]
        print(f"  {name:<24} sweep {row['sweep_ns']:>9,.0f}  one at a time "
              f"{row['single_ns']:>9,.0f}  {ratio:.2f}x  ({row['lanes']} per block, "
              f"{row['why']})")  # fmt: skip
    print_users(report, r)
    print_schedules(report)
    print_forms(report)
    print("\nfastbp against hidden width / depth (ns per run-step, median):")
    for scan in ("hidden_width", "depth"):
        for key, pair in scans[scan].items():
            print(f"  {scan} {key:<6} single {pair['single']['median_ns']:>8,.0f}"
                  f"   batched 64 {pair['batched_64']['median_ns']:>8,.0f}")  # fmt: skip
    print("fastbp single run against steps (seconds per run, median):")
    for steps, m in scans["steps"].items():
        print(f"  {steps:>7,} steps  {m['seconds_per_run']:.3f} s  ({m['median_ns']:.0f} ns/step)")


if __name__ == "__main__":
    main()
