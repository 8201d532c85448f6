"""``python -m fastbp.sweep SPEC.toml``: train every run of a spec in parallel, save each
run as it finishes, resume where a previous sweep stopped, and summarise the results.

Orchestration and the command line only: specs are read by :mod:`fastbp.spec`, runs are
trained by :func:`fastbp.train.train_chunk` in joblib workers (through :func:`train_shard`,
which packs them as a shard there), and results are written by :mod:`fastbp.results`.
"""

from __future__ import annotations

import contextvars
import functools
import multiprocessing
import os
import shlex
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from fastbp import cli
from fastbp.backends import Backend, BackendError, open_backend
from fastbp.cli import Parser, positive_int
from fastbp.config import SINCE_0_3
from fastbp.report import SweepReport, closing_line, write_meta
from fastbp.spec import BACKENDS, Spec, SpecError, load_spec, parse_spec, to_toml
from fastbp.system import can_fork, collector_paused, cores, die_with_parent, lock_directory

# A chunk (one joblib task) should hold at least this many run-steps, so that dispatch
# overhead (milliseconds) stays negligible next to training; and there should be enough
# chunks per worker that results stream back steadily and the workers finish together.
MIN_CHUNK_STEPS = 200_000
CHUNKS_PER_WORKER = 8
PREVIEW_RUNS = 5


class SweepError(Exception):
    """A sweep that cannot start, or did not finish: its message is one line saying why
    (the command line prints it after 'error: ')."""


class MachineError(SweepError):
    """A fault of the machine (a full disk), not of the input: the command exits with 1."""


def main(argv=None) -> int:
    args = _parse_args(argv)
    try:
        spec = load_spec(args.spec)
        out = _out_dir(spec, args.out, "--out")
        # the settings the run would refuse (backend, FASTBP_LANES...) a dry run refuses too
        backend_name, n_jobs, scheduler = _workers(spec, args.backend, args.n_jobs, args.scheduler)
        if args.dry_run:
            _print_plan(spec, out, args.force)
            return 0
        if args.compile_only:
            return _compile_only(spec, backend_name, n_jobs, scheduler, args.quiet)
        report, runs = _sweep(spec, out, backend_name, n_jobs, scheduler, args.force, args.quiet)
    except (SpecError, SweepError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1 if isinstance(err, MachineError) else 2
    # Stopped by Ctrl-C, the sweep says so and how to resume, and shows no summary or "best"
    # of the runs that happened to finish first.
    finished = runs is not None and len(runs) and not report.interrupted
    if finished:
        from fastbp.report import summarize

        print(summarize(runs, spec.swept, spec.threshold))
    print(closing_line(report, out))
    if finished and not args.no_plots and not _draw_plots(out):
        return 130  # Ctrl-C while drawing: every run is saved
    if report.interrupted or report.crashed or report.failed:
        for line in report.failed[:10]:
            print(f"error: {line}", file=sys.stderr)
        if len(report.failed) > 10:
            print(f"error: ... and {len(report.failed) - 10} more failed runs", file=sys.stderr)
        if report.crashed:
            print(f"error: the sweep stopped: {report.crashed}", file=sys.stderr)
        argv = _without_force(sys.argv[1:] if argv is None else argv)
        command = shlex.join(["python", "-m", "fastbp.sweep", *argv])
        print(f"{_unfinished(report, out)}; resume with: {command}", file=sys.stderr)
        return 130 if report.interrupted else 1
    return 0


def run_sweep(
    spec,
    out=None,
    *,
    n_jobs: int | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
    force: bool = False,
    plots: bool = True,
    quiet: bool = False,
):
    """Train a sweep from Python (a notebook, a script) and return its
    :class:`~fastbp.results.Results`: what ``python -m fastbp.sweep`` does, with the same
    files, the same resuming and the same bits.

    ``spec``: a path to a TOML file, TOML text, a dict as TOML would give it, or a
    :class:`~fastbp.spec.Spec`. ``out``: the output folder (default ``results/<name>``).
    ``n_jobs``, ``backend``, ``scheduler``, ``force``: as the command's options. ``plots``:
    draw the figures and report.html. ``quiet``: no progress bar and no closing line. The
    progress bar is a notebook widget where there is one (``tqdm.auto``).

    A bad spec raises :class:`~fastbp.spec.SpecError`, any other reason the sweep cannot
    start :class:`SweepError`, each with the command's one-line message. Runs that failed
    raise SweepError once everything else is saved; an interrupt (the notebook's stop
    button) raises KeyboardInterrupt once the finished runs are saved. Rerunning resumes.
    """
    from fastbp.results import load_results

    spec = as_spec(spec)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise SweepError(f"out must be a folder's path, got {out!r}")
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1
    ):
        raise SweepError(f"n_jobs must be an integer >= 1 (or None: every core), got {n_jobs!r}")
    out = _out_dir(spec, out, "out")
    backend, n_jobs, scheduler = _workers(spec, backend, n_jobs, scheduler)
    token = _FROM_PYTHON.set(True)
    try:
        report, runs = _sweep(spec, out, backend, n_jobs, scheduler, force, quiet)
    finally:
        _FROM_PYTHON.reset(token)
    if report.interrupted:
        raise KeyboardInterrupt(f"{_unfinished(report, out)}; run it again to resume")
    if report.crashed or report.failed:
        why = report.crashed or f"{len(report.failed)} run(s) failed, the first: {report.failed[0]}"
        raise SweepError(f"{_unfinished(report, out)}: {why}")
    if not quiet:
        print(closing_line(report, out).strip())
    if plots and len(runs):
        from fastbp.plot import draw

        draw(out)
    return load_results(out)


def as_spec(spec) -> Spec:
    """A Spec from a Spec, a path to a TOML file, TOML text or a dict (SpecError if bad)."""
    import tomllib

    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, dict):
        return replace(parse_spec(spec), text=to_toml(spec))
    if isinstance(spec, str) and "\n" in spec:  # TOML text, not a file name
        try:
            doc = tomllib.loads(spec)
        except tomllib.TOMLDecodeError as err:
            raise SpecError("<spec>", "", f"invalid TOML: {err}") from None
        return replace(parse_spec(doc), text=spec)
    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec)
    raise SpecError("<spec>", "", f"must be a path, TOML text or a dict, got {spec!r}")


# Run from Python (run_sweep), as in a notebook: tqdm.auto's progress bar, and loky's
# workers kept for the next sweep.
_FROM_PYTHON = contextvars.ContextVar("from_python", default=False)


def _out_dir(spec: Spec, out, option: str) -> Path:
    """The output folder: ``out``, or results/<name>; SweepError where it cannot be one."""
    if out is not None and not str(out).strip():
        raise SweepError(f"{option}: must name a directory, got ''")
    out = Path(out) if out is not None else Path("results") / spec.name
    if out.exists() and not out.is_dir():
        raise SweepError(f"{out}: {option} must be a directory, and this is a file")
    from fastbp.results import refusal

    why = refusal(out)
    if why:
        raise SweepError(f"{out}: {why}")
    for name in ("shards", "plots"):  # found before anything trains, not after
        if (out / name).exists() and not (out / name).is_dir():
            raise SweepError(f"{out / name}: is a file, where the sweep keeps its {name}/ folder")
    return out


def _workers(spec: Spec, backend, n_jobs, scheduler) -> tuple[str, int, str | None]:
    """(backend, workers, scheduler) as asked, or as the spec says. A scheduler implies the
    dask backend; more workers than cores are said once and capped (not on a cluster)."""
    from fastbp.planner import check_settings

    try:
        check_settings()
    except ValueError as err:
        raise SweepError(str(err)) from None
    name = backend or ("dask" if scheduler else spec.backend)
    if name not in BACKENDS:
        raise SweepError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    scheduler = scheduler or spec.scheduler
    here = cores()
    n_jobs = n_jobs or here
    if n_jobs > here and not (name == "dask" and scheduler):
        print(f"note: --n-jobs {n_jobs} on {here} cores: using {here} workers; more "
              "would only take turns", file=sys.stderr)  # fmt: skip
        n_jobs = here
    return name, n_jobs, scheduler


def _sweep(spec, out, backend_name, n_jobs, scheduler, force, quiet):
    """Lock ``out``, keep a copy of the spec there, train the missing runs on the backend:
    (SweepReport, runs DataFrame). SweepError where it cannot start."""
    from fastbp.results import claim

    try:
        claim(out)  # _out_dir refused a folder that is not fastbp's
        lock = lock_directory(out)
        if lock is None:
            raise SweepError(
                f"{out}: another sweep is writing to this directory; wait for it to "
                "finish, or give this one another --out"
            )
        _keep_spec(spec, out)
    except OSError as err:
        raise SweepError(f"{out}: cannot write results there: {err.strerror or err}") from None
    try:
        keep = _FROM_PYTHON.get()  # loky's workers, for the notebook's next sweep
        with open_backend(backend_name, n_jobs, scheduler, keep_workers=keep) as backend:
            return train_spec(spec, out, backend, force=force, quiet=quiet)
    except BackendError as err:
        raise SweepError(str(err)) from None
    finally:
        lock.release()


def _keep_spec(spec: Spec, out: Path) -> None:
    """out/spec.toml: a copy of the spec file, or the text of a spec given as text or dict.
    Another spec already there is kept, as spec.1.toml (spec.2.toml, ...)."""
    target = out / "spec.toml"
    text = spec.text if spec.text is not None else spec.path.read_text(encoding="utf-8")
    if target.exists():
        if target.read_text(encoding="utf-8", errors="replace") == text:
            return
        n = 1
        while (out / f"spec.{n}.toml").exists():
            n += 1
        target.rename(out / f"spec.{n}.toml")
    target.write_text(text, encoding="utf-8")


def _unfinished(report, out) -> str:
    why = "interrupted" if report.interrupted else "incomplete"
    return f"{why}: {report.reused + report.computed} of {report.total} runs are saved in {out}"


def _compile_only(spec: Spec, backend_name, n_jobs, scheduler, quiet) -> int:
    """Compile every kernel the spec's runs need (also those a sweep would leave to the
    loop kernel), here and on the backend's workers; train nothing."""
    from fastbp.planner import kernels_needed

    start = time.perf_counter()
    try:
        with open_backend(backend_name, n_jobs, scheduler) as backend:
            needed = kernels_needed(spec.runs)
            plan = _compile(spec.runs, backend, quiet)
    except BackendError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    timed = f", runs per block measured for {len(plan.timed)} kind(s) of run"
    print(f"{len(needed)} kernel(s) for {spec.name} compiled or found in the cache"
          f"{timed if plan.timed else ''} in {time.perf_counter() - start:.1f} s: its "
          "sweeps start training at once")  # fmt: skip
    return 0


def train_spec(spec: Spec, out: Path, backend: Backend, force=False, quiet=False):
    """Train the spec's missing runs into ``out``; return (SweepReport, runs DataFrame)."""
    n_jobs = backend.n_jobs
    import fastbp
    from fastbp import results
    from fastbp.planner import forms_text, kernel_forms

    started = datetime.now(UTC)
    version = fastbp.__version__
    store = results.Store(out)
    saved = store.read(warn=lambda line: print(line, file=sys.stderr), set_aside=True)
    saved_versions = dict(
        zip(
            saved["runs"].column("run_id").to_pylist(),
            saved["runs"].column("fastbp_version").to_pylist(),
            strict=True,
        )
    )
    wanted = {run.run_id for run in spec.runs}
    done = set() if force else {r for r, v in saved_versions.items() if v == version} & wanted
    others = saved_versions.keys() - wanted
    if others and spec.halving:  # the halving's shorter runs are this spec's
        others -= _rung_ids(spec)
    others = len(others)
    if others:  # another spec's runs, in the same folder: kept, but not in these tables
        print(f"note: {others} finished run(s) in {out} are not in this spec: they stay in "
              f"{out / 'shards'}, and out of its tables", file=sys.stderr)  # fmt: skip
    todo = [run for run in spec.runs if run.run_id not in done]
    report = SweepReport(total=len(spec.runs), reused=len(done), n_jobs=n_jobs)
    report.stale = sum(
        1 for run in todo if run.run_id in saved_versions and saved_versions[run.run_id] != version
    )
    _print_start(spec, todo, report, out, force)

    if todo and spec.halving:
        fresh = set() if force else {r for r, v in saved_versions.items() if v == version}
        _halve(spec, fresh, backend, store, version, report, quiet)
    elif todo:
        _run_parallel(todo, backend, store, version, report, quiet)
    tables = store.current()  # what was read at the start, and the shards written since
    run_ids = [r.run_id for r in spec.runs]
    try:
        store.compact(tables)
        if (not todo and not store.damaged
                and results.final_tables_hold(out, run_ids, spec.threshold)):  # fmt: skip
            runs = results.read_runs(out)  # nothing new: the tables are already these
        else:
            runs = results.write_final_tables(out, tables, run_ids, spec.threshold,
                                              report.stopped)  # fmt: skip
        forms = kernel_forms(spec.runs, report.plan)
        report.forms = forms_text(forms) if report.computed else ""
        write_meta(out, spec, report, started, version, forms)
    except OSError as err:  # a full disk: every finished run is in the shards
        raise MachineError(
            f"{out}: the final tables cannot be written ({err.strerror or err}); the "
            f"{report.reused + report.computed} finished run(s) are saved in {out / 'shards'}: "
            "make room and run the same command again"
        ) from None
    return report, runs


def _rung_ids(spec) -> set:
    """The run_ids of every shorter run successive halving could train for the spec."""
    from fastbp.halving import at_rung, rungs

    longest = max(run.steps for run in spec.runs)
    steps = rungs(spec.halving.min_steps, spec.halving.eta, longest)
    return {at_rung(run, step).run_id for run in spec.runs for step in steps}


def _halve(spec, done: set, backend, store, version, report, quiet) -> None:
    """Train the spec's runs by successive halving (:mod:`fastbp.halving`): at each rung
    the shorter runs of the settings still in the race, then the best 1/eta of them go
    on; at the end, the runs of the settings left, in full. ``done``: the run_ids saved
    by this fastbp version (the rungs' runs among them), not trained again. Fills the
    report's rungs, stopped runs and run-steps."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from fastbp import halving
    from fastbp.results import runs_frame

    plan = spec.halving
    race = halving.Race(spec.runs)
    asked = {}  # run_id -> steps of every run the halving needs (trained now or saved)
    report.full_steps = sum(run.steps for run in spec.runs)

    def train(configs) -> bool:
        asked.update((c.run_id, c.steps) for c in configs)
        todo = [c for c in configs if c.run_id not in done]
        if todo:
            _run_parallel(todo, backend, store, version, report, quiet)
            saved = store.current()["runs"]  # this version's (not a stale run of another)
            ours = saved.filter(pc.equal(saved.column("fastbp_version"), version))
            done.update(ours.column("run_id").to_pylist())
        report.halving_steps = sum(asked.values())
        return not (report.interrupted or report.crashed)

    longest = max(run.steps for run in spec.runs)
    for step in halving.rungs(plan.min_steps, plan.eta, longest):
        contenders = race.contenders(step)
        losses = [race.settings[c][0].loss_fn for c in contenders]
        if len(set(losses)) == len(losses):  # none left to rank against another: all go on
            break
        if not train(race.rung_runs(step)):
            return
        setting_by_run = {c.run_id: s for s in contenders for c in race.seeds_at(s, step)}
        saved = store.current()["runs"]
        rows = saved.filter(pc.is_in(saved.column("run_id"), pa.array(list(setting_by_run))))
        rows = runs_frame(rows)
        if halving.lacks(rows, plan.metric):
            what = "held-out data" if plan.metric.startswith("val") else "targets that are classes"
            needs = f"{plan.metric!r} needs {what}, which these runs do not have"
            raise SpecError(spec.path, "[halving].metric", needs)
        kept = halving.survivors(rows, setting_by_run, plan.eta, spec.threshold, plan.metric)
        report.rungs.append((step, len(contenders), len(kept)))
        print(f"halving: rung at {step:,} steps: {len(contenders)} setting(s) ranked, "
              f"{len(kept)} go on", file=sys.stderr)  # fmt: skip
        for setting in contenders:
            if setting not in kept:
                for run in race.settings[setting]:
                    if run.steps > step:
                        short = halving.at_rung(run, step).run_id
                        report.stopped[run.run_id] = (short, step, run.steps)
        race.active = [s for s in contenders if s in kept]
    train([run for setting in race.active for run in race.settings[setting]])


def _run_parallel(todo, backend, store, version, report, quiet):
    start, compiling = time.perf_counter(), 0.0  # the engine's import counts with its kernels
    from joblib import delayed

    from fastbp.planner import (
        Plan,
        blocks_unpaid,
        cheap_on_loops,
        compiled_here,
        loop_budget_s,
        tune,
        uncached,
        warm_up,
    )

    bar = None
    try:
        # Compile every kernel first, here and then on one worker at a time: processes
        # compiling into an empty Numba cache at the same time can corrupt it. Threads
        # share this process's kernels: load them here, once, before they start (each
        # would wait for the other's loading); worker processes load their own.
        # Then, where this host has not measured whether blocks or one run at a time
        # train faster for a dtype and optimizer, time both here (fastbp.engine.tuning).
        # Kernels that cannot repay their compiling are not compiled: runs the loop kernel
        # trains quickly take it, blocks that would save less than their kernels' compiling
        # train one run at a time (FASTBP_LOOP_BUDGET_S=0 compiles them all).
        budget = loop_budget_s()
        loops = cheap_on_loops(todo, budget, backend.n_jobs)
        unpaid = blocks_unpaid(todo, loops) if budget > 0 else ()
        report.plan = Plan(loops=tuple(loops), unpaid=unpaid)
        before = compiled_here()
        if uncached(todo, loops, report.plan.measured):
            report.plan = _compile(todo, backend, quiet, loops, unpaid)
            report.compiled = True
        else:
            report.plan = tune(todo, loops, unpaid)
            if backend.in_process:
                warm_up(todo, loops, measured=report.plan.measured)
            # marked cached, yet not found there; a halving's earlier rung may have compiled
            report.compiled = report.compiled or compiled_here() > before
        if report.compiled or backend.in_process or report.plan.timed:  # the kernels' time,
            compiling = time.perf_counter() - start  # training's apart
            report.compile_s += compiling
        with collector_paused():
            chunks = plan_chunks(todo, backend.n_jobs, report.plan)
            bar = _bar(total=sum(run.steps for run in todo), unit="step", unit_scale=True,
                       disable=quiet, desc="training")  # fmt: skip
            bar.set_postfix_str(f"runs 0/{len(todo)}")
            counted = report.computed  # a halving's earlier rungs counted theirs
            tasks = (delayed(train_shard)(chunk, version, report.plan) for chunk in chunks)
            for shard in backend.parallel()(tasks):
                report.failed += shard.failed
                if shard.tables is not None:
                    store.write(shard.tables)
                report.computed += shard.runs
                report.train_s += shard.train_s
                bar.update(shard.steps)
                bar.set_postfix_str(f"runs {report.computed - counted}/{len(todo)}")
    except KeyboardInterrupt:
        report.interrupted = True
    except Exception as err:  # a killed worker, a full disk: keep what is saved, say why
        report.crashed = " ".join(f"{type(err).__name__}: {err}".split())  # one line
    finally:
        if bar is not None:
            bar.close()
        report.parallel_s += time.perf_counter() - start - compiling


@dataclass(frozen=True)
class Shard:
    """What a worker sends back for one task: its finished runs as the tables of a shard
    (built there, in parallel, rather than in the sweep's process), and the failures."""

    tables: dict | None
    failed: list[str]
    runs: int
    train_s: float  # the kernels' time, summed over the runs
    steps: int


def train_shard(chunk, version: str, plan=None) -> Shard:
    """Train a task's runs (:func:`fastbp.train.train_chunk`, ``plan`` as there) and pack
    them as a shard: what joblib runs in a worker."""
    from fastbp.results import shard_tables
    from fastbp.train import train_chunk

    trained, failed = train_chunk(chunk, plan)
    return Shard(
        tables=shard_tables(trained, version) if trained.configs else None,
        failed=failed,
        runs=len(trained.configs),
        train_s=float(trained.wall_s.sum()),
        steps=sum(c.steps for c in trained.configs),
    )


def _bar(**options):
    """A progress bar on stderr, without tqdm's monitor thread (it would outlive the bar,
    and the figures are drawn in forked processes only where no other thread runs)."""
    if _FROM_PYTHON.get():
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

    class Bar(tqdm):
        monitor_interval = 0

    return Bar(dynamic_ncols=True, file=sys.stderr, **options)


def _compile(todo, backend, quiet, loops=frozenset(), unpaid=()):
    """Compile (or load) the kernels ``todo`` needs, here and on each worker, saying which
    one is compiling; return the plan (:func:`fastbp.planner.tune`). First the kernels
    whose form does not wait for a measurement and those the measurement times, then,
    once this host has measured what it had not, the rest in the forms it chose. Kernels
    not yet in the cache compile side by side in forked processes, one per core, where
    that is safe; this process then loads them from the cache."""
    from fastbp.planner import kernels_first, kernels_needed, settled, tune, warm_up

    bar = _bar(disable=quiet, bar_format="{desc}, {elapsed_s:.1f} s")
    clock = _Clock(bar, quiet)
    try:
        _compile_cold(kernels_first(todo, loops, settled(unpaid)), settled(unpaid), bar, clock)
        bar.set_description_str("timing blocks against one run at a time, once on this host")
        plan = tune(todo, loops, unpaid)
        _compile_cold(kernels_needed(todo, loops), plan.measured, bar, clock)
        bar.reset(total=len(kernels_needed(todo, loops)))
        warm_up(todo, loops, lambda k, n, what: bar.set_description_str(
            f"loading {what} ({k} of {n})"), bar.update, plan.measured)  # fmt: skip
        if backend.client is not None:
            bar.set_description_str("loading the kernels on the cluster's workers")
        backend.on_each_worker(functools.partial(warm_up, measured=plan.measured), todo, loops)
    finally:
        clock.stop()
        bar.close()
    return plan


def _compile_cold(kernels: dict, measured, bar, clock) -> None:
    """Compile those of ``kernels`` (key -> run, as fastbp.planner has them) that are not
    cached: side by side in forked processes where there are several and forking is
    safe, else here, one after the other."""
    from fastbp.planner import is_cached, kernel_what, warm_kernel

    cold = [(key, run, measured) for key, run in kernels.items()
            if not is_cached(key, run, measured)]  # fmt: skip
    bar.reset(total=len(cold))
    clock.stop()  # no thread of ours running while the helpers fork
    workers = min(len(cold), cores()) if can_fork() else 1
    if workers <= 1:
        clock.start()
        for k, (key, run, _) in enumerate(cold, start=1):
            bar.set_description_str(f"compiling {kernel_what(key, run)} ({k} of {len(cold)})")
            warm_kernel(key, run, measured)
            bar.update()
        return
    with multiprocessing.get_context("fork").Pool(workers, initializer=die_with_parent) as pool:
        clock.start()
        names = ", ".join(kernel_what(key, run) for key, run, _ in cold)
        bar.set_description_str(f"compiling {names}, {workers} at a time")
        for _ in pool.imap_unordered(_warm_kernel, cold):  # one kernel each
            bar.update()


class _Clock:
    """Keeps a progress bar's elapsed time going while Numba compiles (it blocks the bar's
    own updates); stopped before forking."""

    def __init__(self, bar, quiet):
        self.bar, self.quiet, self.thread, self.stopping = bar, quiet, None, threading.Event()
        self.start()

    def start(self):
        if self.quiet or self.thread is not None:
            return
        self.stopping.clear()
        self.thread = threading.Thread(target=self._tick, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread is not None:
            self.stopping.set()
            self.thread.join()
            self.thread = None

    def _tick(self):
        while not self.stopping.wait(0.5):
            self.bar.refresh()


def _warm_kernel(key_run_measured) -> None:
    """Compile one kernel (in a forked helper): :func:`fastbp.planner.warm_kernel`."""
    from fastbp.planner import warm_kernel

    warm_kernel(*key_run_measured)


def plan_chunks(runs, n_jobs: int, plan=None) -> list[list]:
    """Group runs into joblib tasks of similar cost, the most expensive first.

    Full-batch runs are trained side by side (:func:`fastbp.train.train_batch`): a task
    holds whole blocks of families (runs that differ only in steps) of one architecture,
    so that no block is split between workers. Each task gets at least MIN_CHUNK_STEPS
    of work where possible, and there are up to CHUNKS_PER_WORKER tasks per worker, so
    that both cores stay busy to the end and results stream back steadily.
    """
    from fastbp.planner import Plan, blocks

    units = blocks(runs, plan or Plan())
    total_steps = sum(run.steps for run in runs)
    n_chunks = min(len(units), n_jobs * CHUNKS_PER_WORKER, total_steps // MIN_CHUNK_STEPS)
    n_chunks = max(n_chunks, min(n_jobs, len(units)), 1)
    chunks = [[] for _ in range(n_chunks)]
    loads = [0] * n_chunks
    for cost, unit in sorted(units, key=lambda u: -u[0]):  # longest first, onto the lightest
        k = loads.index(min(loads))
        chunks[k] += unit
        loads[k] += cost
    return [chunk for _, chunk in sorted(zip(loads, chunks, strict=True), key=lambda p: -p[0])]


def _parse_args(argv):
    parser = Parser(
        prog="python -m fastbp.sweep",
        description="Train every run of a sweep spec in parallel; rerun to resume.",
    )
    parser.add_argument("spec", help="the sweep's TOML file, e.g. sweeps/lr_grid.toml")
    parser.add_argument("--out", help="output directory (default: results/<name>)")
    parser.add_argument("--n-jobs", type=positive_int, help="workers (default: all cores)")
    parser.add_argument("--force", action="store_true", help="retrain runs already finished")
    parser.add_argument("--dry-run", action="store_true", help="show the plan, train nothing")
    parser.add_argument(
        "--compile-only",
        action="store_true",
        help="compile the kernels the spec needs ahead of time (before a cluster sweep, "
        "in a container build), train nothing",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the figures")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="where runs train: threads (default: threads of this process, one per "
        "core), loky (worker processes), dask (a Dask cluster), sequential (one at a "
        "time, for debugging)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="the Dask scheduler to use, e.g. tcp://10.0.0.5:8786; implies --backend "
        "dask (default with --backend dask: a local cluster, started and stopped here)",
    )
    return parser.parse_args(argv)


def _without_force(argv):
    return [a for a in argv if a != "--force"]


def _print_plan(spec, out, force):
    from fastbp import results
    from fastbp.layout import fmt

    saved = results.Store(out).read(warn=lambda line: print(line, file=sys.stderr))
    done = set() if force else set(saved["runs"].column("run_id").to_pylist())
    todo = [run for run in spec.runs if run.run_id not in done]
    print(f"{spec.name}: {len(spec.runs)} runs, {spec.total_steps:,} training steps in all")
    print(
        f"  to train: {len(todo)} runs, {sum(r.steps for r in todo):,} steps; "
        f"already in {out}: {len(spec.runs) - len(todo)}"
    )
    print("  swept: " + (", ".join(spec.swept) or "nothing (a single run)"))
    if spec.halving:
        from fastbp.halving import Race, rungs

        h, settings = spec.halving, len(Race(spec.runs).settings)
        steps = rungs(h.min_steps, h.eta, max(run.steps for run in spec.runs))
        print(f"  successive halving: {settings} setting(s); rungs at "
              f"{', '.join(f'{s:,}' for s in steps) or 'none (no run is longer)'} steps, "
              f"each keeping the best 1/{h.eta} of the settings that go further "
              f"(ranked by {h.metric or 'the report rule'})")  # fmt: skip
    first = spec.runs[0].to_dict()
    shared = {k: v for k, v in first.items() if k not in spec.swept}
    for name in set(SINCE_0_3) & set(shared):  # e.g. momentum, set where it applies only
        values = {getattr(run, name) for run in spec.runs} - {None}
        if len(values) == 1:
            shared[name] = values.pop()
        else:  # applies to none of the runs, or varies with a swept field
            del shared[name]
    print("  every run: " + ", ".join(f"{k}={fmt(k, v)}" for k, v in shared.items()))
    for run in spec.runs[:PREVIEW_RUNS]:
        values = run.to_dict()
        print(f"  {run.run_id}  " + ", ".join(f"{k}={fmt(k, values[k])}" for k in spec.swept))
    if len(spec.runs) > PREVIEW_RUNS:
        print(f"  ... and {len(spec.runs) - PREVIEW_RUNS} more")


def _print_start(spec, todo, report, out, force):
    parts = [f"{spec.name}: {report.total} runs"]
    if report.reused:
        parts.append(f"{report.reused} already finished in {out}")
    if report.stale:
        parts.append(f"{report.stale} computed by another fastbp version, to train again")
    if force:
        parts.append("--force: training every run again")
    parts.append(f"training {len(todo)} on {report.n_jobs} worker(s)")
    print("; ".join(parts), file=sys.stderr)


def _draw_plots(out) -> bool:
    """Draw the sweep's figures; a failure here costs a warning, never the results. False
    where Ctrl-C stopped the drawing (said in a line, with the command that draws them)."""
    from fastbp.plot import draw

    try:
        draw(out)
    except KeyboardInterrupt:
        command = shlex.join(["python", "-m", "fastbp.plot", str(out)])
        print(f"interrupted while drawing the figures: every run is saved in {out}; draw "
              f"them with: {command}", file=sys.stderr)  # fmt: skip
        return False
    except Exception as err:  # noqa: BLE001 - the results are already saved
        print(
            f"warning: the figures could not be drawn: {type(err).__name__}: {err}", file=sys.stderr
        )
    return True


if __name__ == "__main__":
    cli.exit_now(cli.run(main))
