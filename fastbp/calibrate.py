"""``python -m fastbp.calibrate``: measure how many runs side by side train fastest on
this machine, and keep the answer for every later sweep here.

How many runs a block kernel should train at once depends on more than the vector ISA:
on one AVX-512 CPU 8 float64 runs per block were fastest, on another 4, and on an AVX2
CPU one run at a time beat every block. This times 64 runs of the 8-3-8 encoder with
each block size, per dtype, and writes the fastest to ``calibration.json`` in the kernel
directory, under this host's Numba target (:func:`fastbp.engine.kernel_cache.host_key`), where
:func:`fastbp.engine.codegen.lanes_for` finds it. ``FASTBP_LANES`` still wins over it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from fastbp.cli import Parser, positive_int
from fastbp.system import write_text_atomic

RUNS = 64
MARGIN = 0.05  # the default block size stays unless another is this much faster


def _trainer(lanes: int, dtype: str, steps: int):
    """A function training RUNS 8-3-8 runs ``lanes`` at a time (its kernel compiled)."""
    from fastbp import RunConfig
    from fastbp.train import train_batch

    configs = [RunConfig(lr=1e-3, seed=s, steps=steps, log_every=steps, dtype=dtype)
               for s in range(RUNS)]  # fmt: skip
    train_batch(configs[:lanes], lanes=lanes)  # compile or load it now
    return lambda: train_batch(configs, lanes=lanes)


def calibrate(steps=5_000, rounds=7, dtypes=("float64", "float32"), say=print) -> dict:
    """Time every block size for each dtype, in interleaved rounds (so that the machine's
    slow and fast spells touch every size alike); save the choice and return
    {dtype: {lanes: median ns per run-step}}. A size other than the vector-width default
    is chosen only when it is faster by more than MARGIN."""
    from fastbp.engine import codegen, kernel_cache

    widest = {"float64": 8, "float32": 16}
    timings, best = {}, {}
    for dtype in dtypes:
        sizes = [n for n in codegen.LANE_CHOICES if n <= widest[dtype]]
        trainers = {}
        for lanes in sizes:
            say(f"{dtype}: compiling the kernel for {lanes} run(s) at a time")
            trainers[lanes] = _trainer(lanes, dtype, steps)
        samples = {lanes: [] for lanes in sizes}
        for k in range(rounds):
            say(f"{dtype}: timing, round {k + 1} of {rounds}")
            for lanes, run in trainers.items():
                start = time.perf_counter()
                run()
                samples[lanes].append((time.perf_counter() - start) / (RUNS * steps) * 1e9)
        timings[dtype] = {lanes: statistics.median(t) for lanes, t in samples.items()}
        default = kernel_cache.vector_bits() // (64 if dtype == "float64" else 32)
        fastest = min(timings[dtype], key=timings[dtype].get)
        keep = default in timings[dtype] and (
            timings[dtype][default] <= (1 + MARGIN) * timings[dtype][fastest]
        )
        best[dtype] = default if keep else fastest
    path = kernel_cache.calibration_file()
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    table[kernel_cache.host_key()] = {
        "cpu_target": os.environ.get("NUMBA_CPU_NAME") or _host_cpu(),
        "vector_bits": kernel_cache.vector_bits(),
        "lanes": best,
        "ns_per_run_step": {
            d: {str(k): round(v, 1) for k, v in t.items()} for d, t in timings.items()
        },
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(table, indent=2) + "\n")
    return timings, best


def _host_cpu() -> str:
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_name()


def main(argv=None) -> int:
    parser = Parser(
        prog="python -m fastbp.calibrate",
        description="Measure how many runs side by side train fastest on this machine, and "
        "keep the answer for every later sweep here (FASTBP_LANES still wins over it).",
    )
    parser.add_argument("--steps", type=positive_int, default=5_000, help="steps per run (5000)")
    parser.add_argument("--rounds", type=positive_int, default=7, help="timings per size (7)")
    args = parser.parse_args(argv)
    from fastbp.engine import kernel_cache

    timings, best = calibrate(args.steps, args.rounds)
    for dtype, table in timings.items():
        sizes = ", ".join(f"{lanes}: {ns:.1f}" for lanes, ns in table.items())
        print(f"{dtype}: ns per run-step by runs at a time, median of {args.rounds}: {sizes}")
        print(f"{dtype}: {best[dtype]} run(s) at a time from now on "
              f"({table[1] / table[best[dtype]]:.2f}x one at a time)")  # fmt: skip
    print(f"saved in {kernel_cache.calibration_file()}; sweeps on this machine use it from now on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
