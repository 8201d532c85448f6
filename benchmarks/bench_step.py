"""Nanoseconds per run-step for the 8-3-8 encoder (full-batch), fastbp against the rest.

    python benchmarks/bench_step.py [--repeats N] [--quick] [--out FILE]

Every measurement runs in a fresh process with its thread pools at 1 (one core), warms
up first (compilation, caches), then times at least 5 repeats: the table gives the
median and the minimum, and each median as a multiple of the speed of the NumPy
reference measured in the same run. Measured, with SGD unless named: fastbp single runs
(generated kernel, and the loop kernel), fastbp batched (64 and 1024 runs, float64 and
float32), mini-batches, momentum and Adam (one run, 64 runs), the NumPy
reference (fastbp.reference, written like the original report) and, when installed
(pip install -e '.[bench]'), PyTorch eager with autograd and JAX jit + lax.scan, one run
and vmapped over 64 runs. Then fastbp's cost against hidden width, depth and steps.

To measure another vector ISA on this CPU (AVX2 on an AVX-512 machine), set Numba's
target and XLA's together, with empty kernel caches, e.g.:

    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=+64bit,+avx,+avx2,+fma,... \
    XLA_FLAGS=--xla_cpu_max_isa=AVX2 FASTBP_KERNEL_DIR=$(mktemp -d) \
    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_step.py --out results/avx2.json

The NumPy reference's process runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset:
where this machine sets them (for old OpenBLAS builds), they slow a current NumPy down.
Nothing else changes the environment. Results go to benchmarks/results/bench_step.json
(or --out).
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


def configs(runs, steps, layers=(8, 3, 8), dtype="float64", batch_size=None, optimizer="sgd"):
    from fastbp import RunConfig

    return [RunConfig(layers=layers, lr=LR, seed=s, steps=steps, log_every=steps, dtype=dtype,
                      batch_size=batch_size, optimizer=optimizer)
            for s in range(runs)]  # fmt: skip


def form_used(runs=1, layers=(8, 3, 8), dtype="float64", engine="auto", batch_size=None, **_):
    """Which kernel form (and how many runs per block) a measurement trains with."""
    from fastbp.engine import codegen

    n = layers[0]  # the encoder: as many samples as inputs
    minibatch = batch_size is not None and batch_size < n
    if engine == "loops" or minibatch and not codegen.minibatch_form(layers, n, batch_size, dtype):
        return "loop kernel", 1
    lanes = 1 if runs == 1 or minibatch else codegen.lanes_for(layers, n, dtype)
    return codegen.form_for(layers, n, lanes, dtype, batch_size if minibatch else None), lanes


def fastbp_single(steps, layers=(8, 3, 8), engine="auto", batch_size=None, optimizer="sgd", **_):
    from fastbp import train

    (config,) = configs(1, steps, layers, batch_size=batch_size, optimizer=optimizer)
    return lambda: train(config, engine=engine)


def fastbp_batched(
    steps, runs, layers=(8, 3, 8), dtype="float64", batch_size=None, optimizer="sgd", **_
):
    from fastbp.train import train_batch

    batch = configs(runs, steps, layers, dtype, batch_size, optimizer)
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


IMPLEMENTATIONS = {
    "numpy_reference": numpy_reference,
    "fastbp_single": fastbp_single,
    "fastbp_single_loops": lambda steps, **kw: fastbp_single(steps, engine="loops", **kw),
    "fastbp_batched": fastbp_batched,
    "torch_eager": torch_eager,
    "jax_scan": jax_scan,
    "jax_vmap": jax_vmap,
}


def child(args):
    kwargs = json.loads(args.kwargs)
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
    from fastbp.engine import kernel_cache

    target = {"numba_cpu_name": os.environ.get("NUMBA_CPU_NAME", "host"),
              "vector_bits": kernel_cache.vector_bits()}  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), **target,
            **versions}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer steps, for a smoke test")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_step.json",
                        help="where the JSON goes (results/bench_step.json)")  # fmt: skip
    parser.add_argument("--child")
    parser.add_argument("--kwargs")
    args = parser.parse_args()
    if args.child:
        return child(args)
    scale = 10 if args.quick else 1
    r = max(5, args.repeats)
    blas = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
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

    report = {"machine": machine(), "per_run_step": rows, "scans": scans,
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
