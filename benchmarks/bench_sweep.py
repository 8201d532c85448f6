"""sweeps/lr_grid.toml end to end: wall time with a cold and a warm kernel cache, on 1 and 2
workers, with run-steps per second and the share of worker time spent training; the time
to draw the figures and report.html of lr_grid (100 runs) and lr_dense (4,000 runs); then
sweeps off that path: sweeps/architectures.toml with empty caches, and 50,000 short runs
(trained, rerun with everything saved, --dry-run); successive halving against the full
grid on sweeps/optimizers.toml and sweeps/lr_dense.toml; first, a fresh process's start-up.
With --figures-only: the figures and report of lr_grid and of each sweep in the gallery
(docs/gallery.py), against the sweep's own warm training time, with the CPU time they take
(the process and the workers it forks: steadier than the wall time on a shared machine).

    python benchmarks/bench_sweep.py [--repeats N] [--no-architectures] [--startup-only]
                                     [--halving-only] [--figures-only]

Start-up: `python -c "import fastbp; fastbp.train(fastbp.RunConfig(steps=50_000))"` with
warm caches against `python -c "import numba"`, in interleaved pairs (median of --repeats
pairs, and of their ratios), and, in one more fresh process, where the time goes: the
imports, loading the kernel, training, and whether Numba's compiler (its typing and
lowering registries, which import SciPy where it is installed) was loaded at all. These
processes run without PYTHONDONTWRITEBYTECODE (set on the development machines), so that
Python caches fastbp's bytecode as it does for a user.

Each sweep is the real command (`python -m fastbp.sweep ... --backend B --no-plots
--quiet`) timed from process start to exit, into a new temporary directory, with the
default backend (threads) on 1 and 2 workers and with loky's worker processes on 2.
"Cold" points Numba and fastbp at empty cache directories (everything it compiles
compiles); "warm" reuses the caches the cold run filled, each time with the host's
calibration file as the cold run left it (median and minimum of --repeats); "warm, blocks
compiled" after `--compile-only` has compiled every kernel the sweep could use. The
environment is otherwise left as it is. The figures are timed as `python -m fastbp.plot`
draws them, in a fresh process each time, from after the imports to the report written
(median and minimum of --repeats). Results go to benchmarks/results/bench_sweep.json
(bench_sweep_figures.json with --figures-only, where each sweep runs twice on 2 threads
with the caches of this machine, and its warm training time is the second run's
parallel_wall_s, the closing line's "trained in"; its drawings go round the sweeps, one
each a round, so that a slow spell of the machine falls on all of them alike).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = HERE.parent / "sweeps" / "lr_grid.toml"
DENSE = HERE.parent / "sweeps" / "lr_dense.toml"
ARCHITECTURES = HERE.parent / "sweeps" / "architectures.toml"
DRAW = """
import resource, sys, time
from pathlib import Path
import fastbp.layout, fastbp.plot, fastbp.report, fastbp.results
def cpu():  # this process's and its finished children's (the drawing workers'), user + system
    return sum(getattr(resource.getrusage(who), part) for part in ("ru_utime", "ru_stime")
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
start, cpu_start = time.perf_counter(), cpu()
fastbp.plot.draw(Path(sys.argv[1]), Path(sys.argv[2]))
print(time.perf_counter() - start, cpu() - cpu_start, file=sys.stderr)
"""


def draw_seconds(results: Path, out: Path) -> tuple[float, float]:
    """Seconds to draw a sweep's figures and report, imports excluded, in a fresh process:
    (wall, CPU of the process and of the workers it forks)."""
    cmd = [sys.executable, "-c", DRAW, str(results), str(out)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=HERE.parent)
    wall, cpu = done.stderr.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def time_figures(results: Path, out: Path, repeats: int) -> dict:
    """Median and least seconds of ``repeats`` drawings of one sweep's figures and report."""
    times = [draw_seconds(results, out / str(k))[0] for k in range(repeats)]
    return {"draw_s": statistics.median(times), "draw_s_min": min(times), "repeats": repeats}


GALLERY = (  # docs/gallery.py's SWEEPS
    "lr_dense",
    "random_search",
    "architectures",
    "xor",
    "parity_holdout",
    "schedules",
)


def figures_against_training(tmp: Path, repeats: int) -> dict:
    """Each sweep's figures and report against its warm training time (the goal: at most
    the larger of 1 s and that time). The drawings go round the sweeps, one each a round,
    so that a slow spell of a shared machine falls on all of them alike."""
    names, trained = ("lr_grid", *GALLERY), {}
    for name in names:
        spec = HERE.parent / "sweeps" / f"{name}.toml"
        command = [sys.executable, "-m", "fastbp.sweep", str(spec), "--no-plots", "--quiet"]
        for k in range(2):  # the first fills the caches where they are empty
            subprocess.run([*command, "--out", str(tmp / f"{name} {k}")], check=True,
                           capture_output=True, cwd=HERE.parent)  # fmt: skip
        trained[name] = json.loads((tmp / f"{name} 1" / "meta.json").read_text())
    times = {name: [] for name in names}
    for k in range(repeats):
        for name in names:
            times[name].append(draw_seconds(tmp / f"{name} 1", tmp / f"{name} figures" / str(k)))
    cases = {}
    for name in names:
        meta, (drawn, cpu) = trained[name], zip(*times[name], strict=True)
        goal, median = max(1.0, meta["parallel_wall_s"]), statistics.median(drawn)
        cases[name] = {"runs": meta["runs"], "train_s": meta["parallel_wall_s"],
                       "draw_s": median, "draw_s_min": min(drawn), "cpu_s": statistics.median(cpu),
                       "repeats": repeats, "goal_s": goal, "within": median <= goal}  # fmt: skip
        c = cases[name]
        print(f"{name:<16}{c['runs']:>7,}{c['train_s']:>9.2f}{c['draw_s']:>10.2f}"
              f"{c['draw_s_min']:>8.2f}{c['cpu_s']:>8.2f}{goal:>8.2f}  "
              f"{'yes' if c['within'] else 'no'}")  # fmt: skip
    return cases


def median_case(runs: list[dict]) -> dict:
    """The medians (and the least wall time) of repeated sweeps."""
    return {
        "wall_s": statistics.median(w["wall_s"] for w in runs),
        "wall_s_min": min(w["wall_s"] for w in runs),
        "parallel_s": statistics.median(w["parallel_s"] for w in runs),
        "train_s": statistics.median(w["train_s"] for w in runs),
        "training_share": statistics.median(w["training_share"] for w in runs),
        "repeats": len(runs),
    }


def compile_all(cache: Path, spec: Path = SPEC) -> None:
    """`python -m fastbp.sweep SPEC --compile-only`: every kernel the spec's runs could use."""
    cmd = [sys.executable, "-m", "fastbp.sweep", str(spec), "--compile-only", "--quiet"]
    subprocess.run(cmd, check=True, env=cache_env(cache), capture_output=True, cwd=HERE.parent)


def cache_env(cache: Path) -> dict:
    return {
        **os.environ,
        "NUMBA_CACHE_DIR": str(cache / "numba"),
        "FASTBP_KERNEL_DIR": str(cache / "kernels"),
    }


def run_sweep(out: Path, n_jobs: int, cache: Path, backend: str, spec: Path = SPEC) -> dict:
    env = cache_env(cache)
    cmd = [
        sys.executable,
        "-m",
        "fastbp.sweep",
        str(spec),
        "--out",
        str(out),
        "--n-jobs",
        str(n_jobs),
        "--backend",
        backend,
        "--no-plots",
        "--quiet",
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True, cwd=HERE.parent)
    wall = time.perf_counter() - start
    meta = json.loads((out / "meta.json").read_text())
    return {
        "wall_s": wall,
        "parallel_s": meta["parallel_wall_s"],
        "train_s": meta["train_s"],
        "training_share": meta["training_share_of_worker_time"],
        "compile_s": meta.get("compile_s"),  # compiling, or loading from the cache
        "kernels_compiled": meta.get("kernels_compiled"),
    }


MANY = """[sweep]
name = "many"
[base]
steps = 1000
log_every = 100
[grid]
lr = { logspace = [-4, 0, 100] }
seed = { range = [0, 500] }
"""


FIRST_RUN = "import fastbp; fastbp.train(fastbp.RunConfig(steps=50_000))"
WHERE_STARTUP_GOES = """
import json, sys, time
start = time.perf_counter()
import numpy
numpy_s = time.perf_counter()
import numba
numba_s = time.perf_counter()
import fastbp, fastbp.train
fastbp_s = time.perf_counter()
config = fastbp.RunConfig(steps=50_000)
fastbp.train(fastbp.RunConfig(steps=1))  # loads the kernel (and any other it needs)
load_s = time.perf_counter()
fastbp.train(config)
train_s = time.perf_counter()
print(json.dumps({
    "import numpy": numpy_s - start, "import numba": numba_s - numpy_s,
    "import fastbp.train": fastbp_s - numba_s, "load the kernel": load_s - fastbp_s,
    "train 50,000 steps": train_s - load_s,
    "numba's compiler loaded": "numba.np.arraymath" in sys.modules,
    "scipy.linalg imported": "scipy.linalg" in sys.modules,
}))
"""


def startup(cache: Path, repeats: int) -> dict:
    """A fresh process's first run of the 8-3-8 (warm caches) against importing Numba."""
    import importlib.util

    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(cache / "numba"),
        "FASTBP_KERNEL_DIR": str(cache / "kernels"),
    }
    # As Python runs for a user: with its modules' bytecode cached (installed packages have
    # theirs; a checkout's is written at the first import). The development machines set
    # PYTHONDONTWRITEBYTECODE, which would compile fastbp's sources in every process.
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def timed(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=HERE.parent)
        return time.perf_counter() - start

    timed(FIRST_RUN)  # compiles, into the caches the pairs then load from
    pairs = [(timed("import numba"), timed(FIRST_RUN)) for _ in range(repeats)]
    where = subprocess.run([sys.executable, "-c", WHERE_STARTUP_GOES], check=True, env=env,
                           cwd=HERE.parent, capture_output=True, text=True)  # fmt: skip
    return {
        "import_numba_s": statistics.median(a for a, _ in pairs),
        "first_train_s": statistics.median(b for _, b in pairs),
        "ratio": statistics.median(b / a for a, b in pairs),
        "ratio_min": min(b / a for a, b in pairs),
        "ratio_max": max(b / a for a, b in pairs),
        "repeats": repeats,
        "scipy_installed": importlib.util.find_spec("scipy") is not None,
        "where_the_time_goes": json.loads(where.stdout),
    }


def print_startup(s: dict) -> None:
    scipy = "SciPy installed" if s["scipy_installed"] else "no SciPy"
    print(
        f"start-up ({scipy}, warm caches, median of {s['repeats']} interleaved pairs): "
        f"first train {s['first_train_s']:.2f} s, import numba {s['import_numba_s']:.2f} s: "
        f"{s['ratio']:.2f}x ({s['ratio_min']:.2f}-{s['ratio_max']:.2f}x)"
    )
    for name, value in s["where_the_time_goes"].items():
        shown = f"{value:.3f} s" if isinstance(value, float) else str(value)
        print(f"  {name:<28}{shown}")


HALVING = "\n[halving]\nmin_steps = 1000\neta = 3\n"


def halving_cases(tmp: Path, cache: Path, repeats: int) -> dict:
    """sweeps/optimizers.toml and sweeps/lr_dense.toml as they are and with a [halving]
    section (min_steps 1,000, eta 3): wall time with every kernel compiled (median of
    ``repeats``, each into a new folder), the best setting each finds by the report's rule, and the
    run-steps the halving trained against the full grid's."""
    from fastbp import load_results
    from fastbp.layout import describe
    from fastbp.ranking import setting_fields

    out = {}
    for name in ("optimizers", "lr_dense"):
        source = HERE.parent / "sweeps" / f"{name}.toml"
        halved = tmp / f"{name}_halved.toml"
        halved.write_text(source.read_text() + HALVING)
        compile_all(cache, source)  # every kernel compiled first: the timings are warm
        case = {}
        for kind, spec in (("full grid", source), ("halving", halved)):
            walls = [run_sweep(tmp / f"{name} {kind} {k}", 2, cache, "threads", spec=spec)
                     for k in range(repeats)]  # fmt: skip
            folder = tmp / f"{name} {kind} 0"
            results = load_results(folder)
            best = results.settings().iloc[0]
            fields = setting_fields(results.runs, results.swept)
            meta = json.loads((folder / "meta.json").read_text())
            case[kind] = {
                "wall_s": statistics.median(w["wall_s"] for w in walls),
                "best": describe(fields, [best[f] for f in fields]),
                "median_run": best["median_run"],
                **meta.get("halving", {}),
            }
        out[name] = case
    return out


def print_halving(cases: dict) -> None:
    print(f"\n{'successive halving (2 threads)':<34}{'wall s':>8}  best setting (its median seed)")
    for name, case in cases.items():
        for kind, c in case.items():
            share = (f", {c['run_steps'] / c['run_steps_full_grid']:.0%} of the run-steps"
                     if "run_steps" in c else "")  # fmt: skip
            print(f"{name + ', ' + kind:<34}{c['wall_s']:>8.2f}  {c['best']} "
                  f"({c['median_run']}){share}")  # fmt: skip


def other_sweeps(tmp: Path, cache: Path, repeats: int, architectures: bool) -> dict:
    """Sweeps off lr_grid's path: the 9 architectures of sweeps/architectures.toml with
    empty caches (everything compiles), and 50,000 runs of 1,000 steps (warm kernels):
    trained (median of ``repeats``, each into a new folder), rerun with every run saved,
    and --dry-run."""
    import resource

    cases = {}
    if architectures:
        cases["architectures.toml, cold"] = run_sweep(
            tmp / "arch", 2, tmp / "cache arch", "threads", spec=ARCHITECTURES
        )
    spec = tmp / "many.toml"
    spec.write_text(MANY)
    trained = []
    for k in range(repeats):  # each into a new folder: everything is trained
        trained.append(run_sweep(tmp / f"many {k}", 2, cache, "threads", spec=spec))
    cases["50,000 runs x 1,000 steps"] = {
        **{key: statistics.median(t[key] for t in trained) for key in trained[0]},
        "training_share_min": min(t["training_share"] for t in trained),
        "training_share_max": max(t["training_share"] for t in trained),
        "repeats": repeats,
    }
    # GiB: the largest child so far (the sweeps above use less)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    cases["50,000 runs x 1,000 steps"]["peak_memory_gib"] = round(peak, 2)
    shutil.move(tmp / "many 0", tmp / "many")
    reruns = [run_sweep(tmp / "many", 2, cache, "threads", spec=spec) for _ in range(repeats)]
    cases["the same, every run saved"] = {
        "wall_s": statistics.median(r["wall_s"] for r in reruns),
        "wall_s_min": min(r["wall_s"] for r in reruns),
        "repeats": repeats,
    }
    dry = []
    for _ in range(repeats):
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "fastbp.sweep", str(spec), "--out", str(tmp / "many"),
               "--dry-run"]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, cwd=HERE.parent)
        dry.append(time.perf_counter() - start)
    cases["the same, --dry-run"] = {"wall_s": statistics.median(dry), "repeats": repeats}
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--no-architectures",
        action="store_true",
        help="skip the cold architectures sweep (about 2 minutes of compiling)",
    )
    parser.add_argument(
        "--startup-only", action="store_true", help="time a fresh process's start-up only"
    )
    parser.add_argument(
        "--halving-only", action="store_true",
        help="only successive halving against the full grid (optimizers, lr_dense)",
    )  # fmt: skip
    parser.add_argument(
        "--figures-only", action="store_true",
        help="only the figures of lr_grid and the gallery's sweeps against their training",
    )  # fmt: skip
    args = parser.parse_args()
    if args.figures_only:
        from bench_step import machine

        print(f"{'sweep':<16}{'runs':>7}{'train s':>9}{'figures s':>10}{'min s':>8}"
              f"{'CPU s':>8}{'goal s':>8}  within")  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            cases = figures_against_training(Path(tmp), args.repeats)
        (HERE / "results").mkdir(exist_ok=True)
        report = {"machine": machine(), "repeats": args.repeats, "sweeps": cases}
        target = HERE / "results" / "bench_sweep_figures.json"
        return target.write_text(json.dumps(report, indent=2) + "\n")
    if args.halving_only:
        with tempfile.TemporaryDirectory() as tmp:
            cases = halving_cases(Path(tmp), Path(tmp) / "cache", 3)
        (HERE / "results").mkdir(exist_ok=True)
        target = HERE / "results" / "bench_sweep_halving.json"
        target.write_text(json.dumps(cases, indent=2) + "\n")
        return print_halving(cases)
    from fastbp.spec import load_spec

    run_steps = load_spec(SPEC).total_steps
    from bench_step import machine  # the same machine description as bench_step.py

    report = {
        "machine": machine(),
        "spec": str(SPEC.relative_to(HERE.parent)),
        "run_steps": run_steps,
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        report["startup"] = startup(tmp / "cache startup", args.repeats)
        print_startup(report["startup"])
        if args.startup_only:
            return
        for backend, n_jobs in (("threads", 1), ("threads", 2), ("loky", 2)):
            case = f"{n_jobs} {backend}"
            cache = tmp / f"cache {case}"
            report["cases"][f"cold, {case}"] = run_sweep(tmp / f"cold {case}", n_jobs, cache,
                                                         backend)  # fmt: skip
            # The sweep run again, each time on the host as the cold run left it: its
            # ledger of what blocks could have saved (fastbp.planner.blocks_unpaid) must
            # not tip over during the repeats.
            calibration = cache / "kernels" / "calibration.json"
            kept = calibration.read_text()
            warm = []
            for k in range(args.repeats):
                calibration.write_text(kept)
                warm.append(run_sweep(tmp / f"warm {case} {k}", n_jobs, cache, backend))
            report["cases"][f"warm, {case}"] = median_case(warm)
            # And once `--compile-only` has compiled every kernel, the block kernels too: the
            # sweep as it runs once the ledger has paid for them.
            compile_all(cache)
            warm = [run_sweep(tmp / f"blocks {case} {k}", n_jobs, cache, backend)
                    for k in range(args.repeats)]  # fmt: skip
            report["cases"][f"warm, blocks compiled, {case}"] = median_case(warm)
        # The figures: of lr_grid (warm run 0 above), and of a 4,000-run sweep.
        cache = tmp / "cache 2 threads"
        run_sweep(tmp / "lr_dense", 2, cache, "threads", spec=DENSE)
        report["figures"] = {
            "lr_grid (100 runs)": time_figures(tmp / "warm 2 threads 0", tmp / "f1", args.repeats),
            "lr_dense (4,000 runs)": time_figures(tmp / "lr_dense", tmp / "f2", args.repeats),
        }
        report["other_sweeps"] = other_sweeps(tmp, cache, 3, not args.no_architectures)
        report["halving"] = halving_cases(tmp, cache, 3)
    for case in report["cases"].values():
        case["run_steps_per_s"] = run_steps / case["wall_s"]
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "bench_sweep.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['spec']}: {run_steps:,} run-steps (cold: one run; warm: median of "
        f"{args.repeats}), {report['machine']['cpu']}, {report['machine']['cores']} cores"
    )
    print(f"{'case':<36}{'wall s':>8}{'train s':>9}{'run-steps/s':>14}{'training share':>16}")
    for name, c in report["cases"].items():
        print(
            f"{name:<36}{c['wall_s']:>8.2f}{c['train_s']:>9.2f}{c['run_steps_per_s']:>14,.0f}"
            f"{c['training_share']:>16.0%}"
        )
    print(f"\n{'figures and report.html':<30}{'median s':>10}{'min s':>8}")
    for name, c in report["figures"].items():
        print(f"{name:<30}{c['draw_s']:>10.2f}{c['draw_s_min']:>8.2f}")
    print(
        f"\n{'other sweeps (2 threads)':<30}{'wall s':>10}{'kernels s':>11}{'training share':>16}"
    )
    for name, c in report["other_sweeps"].items():
        compile_s = f"{c['compile_s']:.1f}" if c.get("compile_s") is not None else ""
        share = f"{c['training_share']:.0%}" if c.get("training_share") is not None else ""
        memory = f"  peak {c['peak_memory_gib']} GiB" if "peak_memory_gib" in c else ""
        print(f"{name:<30}{c['wall_s']:>10.2f}{compile_s:>11}{share:>16}{memory}")
    print_halving(report["halving"])


if __name__ == "__main__":
    main()
