"""The sweep command end to end: tables, resume after SIGKILL and Ctrl-C, reuse, workers."""

import contextlib
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fastbp
from fastbp import RunConfig, load_results, train
from fastbp.results import config_from_row
from fastbp.spec import load_spec, parse_spec
from fastbp.sweep import main, plan_chunks

SMALL = """
[sweep]
name = "small"
threshold = 0.15

[base]
layers = [8, 3, 8]
steps = 1500
log_every = 250

[grid]
lr = [0.05, 0.01]
bias = [true, false]
seed = {{ range = [0, {seeds}] }}
"""


def write_spec(path, seeds=2, text=SMALL):
    path.write_text(text.format(seeds=seeds))
    return path


def sweep(*args, env=None):
    """Run the real CLI in a subprocess (``env``: variables to set for it)."""
    return subprocess.run(
        [sys.executable, "-m", "fastbp.sweep", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def values(results):
    """The tables without the columns that measure time."""
    return (results.runs.drop(columns="wall_s"), results.curves, results.params)


def assert_same_tables(a, b):
    for x, y in zip(values(a), values(b), strict=True):
        pd.testing.assert_frame_equal(x.reset_index(drop=True), y.reset_index(drop=True))


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    spec = write_spec(tmp / "small.toml")
    # Budget 0: every kernel compiles, whatever the cache holds (the meta test's choice).
    out = sweep(spec, "--out", tmp / "out", "--n-jobs", 2, "--no-plots",
                env={"FASTBP_LOOP_BUDGET_S": "0"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    return tmp, out


def test_tables_have_the_documented_schema_and_one_row_per_run(small_sweep):
    tmp, _ = small_sweep
    res = load_results(tmp / "out")
    assert len(res.runs) == 8 and res.runs["run_id"].is_unique
    expected = ["run_id", *RunConfig.field_names()]
    expected += ["final_loss", "min_loss", "accuracy", "val_loss", "val_accuracy"]
    expected += ["steps_to_threshold", "loss_floor", "dead_units", "diverged", "diverged_at"]
    expected += ["stopped_at", "wall_s", "fastbp_version"]
    assert list(res.runs.columns) == expected
    assert res.runs["stopped_at"].isna().all() and str(res.runs["stopped_at"].dtype) == "Int64"
    assert set(res.runs["layers"]) == {"8-3-8"}
    assert str(res.runs["steps_to_threshold"].dtype) == "Int64"
    assert str(res.runs["dead_units"].dtype) == "Int64"
    floors = res.runs.groupby("bias")["loss_floor"].unique()
    assert list(floors[True]) == [4 / 64] and list(floors[False]) == [5 / 64]
    assert (res.runs["fastbp_version"] == fastbp.__version__).all()
    assert list(res.curves.columns) == [
        "run_id", "step", "loss", "accuracy", "val_loss", "val_accuracy"
    ]  # fmt: skip
    assert res.curves["accuracy"].between(0, 1).all()  # the encoder's classes
    assert res.curves["val_loss"].isna().all()  # no validation data
    assert len(res.curves) == 8 * 7  # steps 0, 250, ..., 1500
    assert list(res.params.columns) == ["run_id", "layer", "kind", "i", "j", "value"]
    assert len(res.params) == 8 * (8 * 3 + 3 + 3 * 8 + 8)
    assert res.params.loc[res.params["kind"] == "b", "i"].isna().all()
    direct = pd.read_parquet(tmp / "out" / "runs.parquet")  # plain pandas works too
    pd.testing.assert_frame_equal(direct, res.runs)


def test_tables_hold_exactly_what_train_returns(small_sweep):
    tmp, _ = small_sweep
    res = load_results(tmp / "out")
    row = res.runs.iloc[5]
    config = config_from_row(row)
    assert config.run_id == row["run_id"]
    direct = train(config)
    curve = res.curves[res.curves["run_id"] == row["run_id"]]
    np.testing.assert_array_equal(curve["step"], direct.steps)
    np.testing.assert_array_equal(curve["loss"], direct.losses)
    assert row["final_loss"] == direct.losses[-1] and row["min_loss"] == direct.losses.min()
    params = res.params[res.params["run_id"] == row["run_id"]]
    W2 = params[(params["layer"] == 2) & (params["kind"] == "W")]
    np.testing.assert_array_equal(
        W2.pivot(index="i", columns="j", values="value").to_numpy(), direct.params[1][0]
    )
    b1 = params[(params["layer"] == 1) & (params["kind"] == "b")].sort_values("j")
    np.testing.assert_array_equal(b1["value"], direct.params[0][1])
    reached = direct.steps[direct.losses <= 0.15]
    expected = reached[0] if len(reached) else pd.NA
    assert (
        row["steps_to_threshold"] is pd.NA
        and expected is pd.NA
        or (row["steps_to_threshold"] == expected)
    )


def test_progress_summary_and_meta(small_sweep):
    tmp, out = small_sweep
    assert "runs 8/8" in out.stderr  # the progress bar
    assert "by lr:" in out.stdout and "by bias:" in out.stdout and "best: lr=" in out.stdout
    assert "8 run(s) trained" in out.stdout
    meta = json.loads((tmp / "out" / "meta.json").read_text())
    assert meta["runs"] == 8 and meta["runs_computed"] == 8 and meta["runs_reused"] == 0
    assert meta["n_jobs"] == 2 and meta["fastbp_version"] == fastbp.__version__
    assert 0 < meta["training_share_of_worker_time"] <= 1
    from fastbp.engine import tuning

    choice = tuning.choose((8, 3, 8), 8, "float64")  # as the sweep chose: measured here
    assert choice.why == ("pinned" if os.environ.get("FASTBP_LANES") else "measured")
    form = "registers" if choice.lanes > 1 else "vector"
    chosen = {"form": form, **choice.as_dict()}
    assert meta["kernels"] == {"8-3-8 relu": chosen, "8-3-8 relu no bias": chosen}
    blocks = f"blocks of {choice.lanes} runs" if choice.lanes > 1 else "one run at a time"
    assert f"; {blocks} ({choice.why}); " in out.stdout.strip().splitlines()[-1]
    assert (tmp / "out" / "spec.toml").read_text() == (tmp / "small.toml").read_text()


def test_rerun_reuses_everything_and_extension_trains_only_new_runs(small_sweep, tmp_path):
    tmp, _ = small_sweep
    out_dir = tmp_path / "out"
    spec = write_spec(tmp_path / "s.toml", seeds=2)
    assert sweep(spec, "--out", out_dir, "--quiet").returncode == 0
    before = load_results(out_dir)
    again = sweep(spec, "--out", out_dir, "--quiet")
    assert again.returncode == 0 and "0 run(s) trained" in again.stdout
    assert "8 reused" in again.stdout
    pd.testing.assert_frame_equal(load_results(out_dir).runs, before.runs)  # wall_s included

    write_spec(spec, seeds=3)  # one more seed: 4 new runs
    extended = sweep(spec, "--out", out_dir, "--quiet")
    assert extended.returncode == 0
    assert "4 run(s) trained" in extended.stdout and "8 reused" in extended.stdout
    after = load_results(out_dir)
    assert len(after.runs) == 12
    old = after.runs[after.runs["run_id"].isin(before.runs["run_id"])]
    pd.testing.assert_frame_equal(old.reset_index(drop=True), before.runs)

    forced = sweep(spec, "--out", out_dir, "--quiet", "--force")
    assert forced.returncode == 0 and "12 run(s) trained" in forced.stdout
    assert_same_tables(load_results(out_dir), after)


def test_results_do_not_depend_on_the_number_of_workers_or_the_backend(small_sweep, tmp_path):
    tmp, _ = small_sweep  # trained in threads, on every core
    spec = tmp / "small.toml"
    assert sweep(spec, "--out", tmp_path / "one", "--n-jobs", 1, "--quiet").returncode == 0
    assert_same_tables(load_results(tmp_path / "one"), load_results(tmp / "out"))
    loky = sweep(spec, "--out", tmp_path / "loky", "--backend", "loky", "--quiet")
    assert loky.returncode == 0 and "Warning" not in loky.stderr
    assert_same_tables(load_results(tmp_path / "loky"), load_results(tmp / "out"))


def test_runs_of_another_version_are_trained_again(small_sweep, tmp_path, monkeypatch, capsys):
    tmp, _ = small_sweep
    spec = write_spec(tmp_path / "s.toml", seeds=1)
    out_dir = tmp_path / "out"
    assert main([str(spec), "--out", str(out_dir), "--quiet", "--n-jobs", "1"]) == 0
    monkeypatch.setattr(fastbp, "__version__", "999.0")
    assert main([str(spec), "--out", str(out_dir), "--quiet", "--n-jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert "4 computed by another fastbp version, to train again" in captured.err
    assert (load_results(out_dir).runs["fastbp_version"] == "999.0").all()


def test_dry_run_trains_nothing(small_sweep, tmp_path):
    tmp, _ = small_sweep
    out = sweep(tmp / "small.toml", "--out", tmp_path / "dry", "--dry-run")
    assert out.returncode == 0
    assert "small: 8 runs, 12,000 training steps in all" in out.stdout
    assert "swept: lr, bias, seed" in out.stdout
    assert not (tmp_path / "dry").exists()
    done = sweep(tmp / "small.toml", "--out", tmp / "out", "--dry-run")
    assert "to train: 0 runs" in done.stdout


BIG = """
[sweep]
name = "big"
[base]
steps = 100_000
log_every = 1000
[grid]
lr = [0.01, 0.001, 0.0001]
seed = { range = [0, 16] }
"""


@contextlib.contextmanager
def sigint_raises():
    """Children started inside get Ctrl-C's default action (KeyboardInterrupt in Python).
    A shell starts a background job (`.ci/run &`) with SIGINT ignored, and children inherit
    that: the sweep would then ignore the test's Ctrl-C and finish with 0."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def saved_runs(out_dir):
    shards = out_dir / "shards"
    return len(list(shards.glob("*.runs.parquet"))) if shards.exists() else 0


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_an_interrupted_sweep_resumes_to_the_same_tables(how, tmp_path):
    spec = tmp_path / "big.toml"
    spec.write_text(BIG)
    out_dir = tmp_path / "out"
    cmd = [sys.executable, "-m", "fastbp.sweep", str(spec), "--out", str(out_dir), "--quiet"]
    with sigint_raises():  # as at a terminal, also where pytest runs in the background
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while saved_runs(out_dir) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if how == "SIGKILL":
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers, with no warning
    else:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = proc.communicate(timeout=120)
    if how == "SIGINT":
        assert proc.returncode == 130
        assert "interrupted:" in err and "resume with: python -m fastbp.sweep" in err
        assert "best:" not in out and "median_loss" not in out  # no summary of a part
    else:
        assert proc.returncode == -signal.SIGKILL
    n_shards = saved_runs(out_dir)
    assert n_shards >= 1

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    reused = json.loads((out_dir / "meta.json").read_text())["runs_reused"]
    assert 0 < reused < 48  # killed mid-sweep: some runs kept, the rest trained now

    fresh = sweep(spec, "--out", tmp_path / "fresh", "--quiet")
    assert fresh.returncode == 0
    assert_same_tables(load_results(out_dir), load_results(tmp_path / "fresh"))


def test_ctrl_c_while_drawing_keeps_the_runs_and_says_how_to_draw(tmp_path, monkeypatch, capsys):
    from fastbp import plot
    from fastbp.sweep import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plot, "draw", interrupted)
    spec = write_spec(tmp_path / "s.toml", seeds=1)
    assert main([str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted while drawing the figures: every run is saved" in err
    assert "python -m fastbp.plot" in err and "Traceback" not in err
    assert len(load_results(tmp_path / "out").runs) > 0


def test_a_damaged_shard_is_retrained_with_a_warning(small_sweep, tmp_path):
    tmp, _ = small_sweep
    spec = write_spec(tmp_path / "s.toml", seeds=1)
    out_dir = tmp_path / "out"
    assert sweep(spec, "--out", out_dir, "--quiet").returncode == 0
    good = load_results(out_dir)
    shards = sorted((out_dir / "shards").glob("*.curves.parquet"))
    lost = pq.read_table(shards[0]).num_rows and pq.read_table(shards[0].with_name(
        shards[0].name.replace("curves", "runs"))).num_rows  # fmt: skip
    shards[0].write_bytes(shards[0].read_bytes()[:100])  # truncated, as by a full disk
    again = sweep(spec, "--out", out_dir, "--quiet")
    assert again.returncode == 0
    assert "unreadable shard" in again.stderr and f"{lost} run(s) trained" in again.stdout
    assert f"moved to {out_dir / 'shards' / 'damaged'}" in again.stderr
    assert_same_tables(load_results(out_dir), good)
    assert (out_dir / "shards" / "damaged" / shards[0].name).exists()  # kept, set aside
    third = sweep(spec, "--out", out_dir, "--quiet")
    assert third.returncode == 0 and "unreadable" not in third.stderr  # said once
    assert "0 run(s) trained" in third.stdout


def test_shards_are_compacted_into_one_once_there_are_many(tmp_path, monkeypatch):
    from fastbp import results
    from fastbp.train import Trained, train_batch

    monkeypatch.setattr(results, "COMPACT_AFTER", 2)
    runs = train_batch([RunConfig(steps=20, log_every=5, seed=s) for s in range(4)])
    store = results.Store(tmp_path)
    store.write(results.shard_tables(Trained.of(runs[:2]), "x"))
    store.write(results.shard_tables(Trained.of(runs[1:3]), "x"))  # run 1 twice: newest wins
    store.compact(store.current())
    assert len(list(store.directory.glob("*.parquet"))) == 6  # not yet: 2 shards
    store.write(results.shard_tables(Trained.of(runs[3:]), "x"))
    expected = store.current()
    assert expected["runs"].num_rows == 4
    store.compact(expected)
    assert len(list(store.directory.glob("*.parquet"))) == 3  # one shard

    def plain(table):  # run ids as strings (arrow sorts no dictionary column)
        return table.cast(pa.schema([f.with_type(pa.string()) if pa.types.is_dictionary(f.type)
                                     else f for f in table.schema])).sort_by("run_id")  # fmt: skip

    for name, table in results.Store(tmp_path).read().items():
        assert plain(table).equals(plain(expected[name])), name
    assert store.current()["runs"].num_rows == 4


@pytest.mark.parametrize("lanes", [1, 4, 8])  # pinned: the default follows the host's CPU
def test_chunks_hold_whole_blocks_of_families_and_are_balanced(monkeypatch, lanes):
    from fastbp.sweep import CHUNKS_PER_WORKER

    monkeypatch.setenv("FASTBP_LANES", str(lanes))
    spec = parse_spec(
        {
            "sweep": {"name": "c"},
            "grid": {"lr": [0.1, 0.01], "steps": [50_000, 300_000], "seed": list(range(25))},
        }
    )
    chunks = plan_chunks(list(spec.runs), n_jobs=2)
    assert sorted(r.run_id for c in chunks for r in c) == sorted(r.run_id for r in spec.runs)
    # 50 families (lr x seed; steps shared) in blocks of `lanes`, at most 8 tasks a worker
    assert len(chunks) == min(-(-50 // lanes), 2 * CHUNKS_PER_WORKER)
    for chunk in chunks:  # a family's step counts travel together
        assert len({(r.lr, r.seed) for r in chunk}) * 2 == len(chunk)
    loads = [max(r.steps for r in c) * len({(r.lr, r.seed) for r in c}) for c in chunks]
    assert loads == sorted(loads, reverse=True)  # the longest first
    tiny = parse_spec({"sweep": {"name": "t"}, "grid": {"steps": [10], "seed": list(range(50))}})
    assert len(plan_chunks(list(tiny.runs), n_jobs=2)) == 2  # few steps: few, large tasks
    mixed = parse_spec(
        {"sweep": {"name": "m"}, "grid": {"batch_size": [2, 8], "seed": [0, 1], "steps": [9]}}
    )
    assert sorted(len(c) for c in plan_chunks(list(mixed.runs), n_jobs=2)) == [2, 2]


def test_bad_out_directory_is_one_line(tmp_path):
    spec = write_spec(tmp_path / "s.toml")
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = sweep(spec, "--out", blocker)
    assert out.returncode == 2 and "--out must be a directory" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = sweep(spec, "--n-jobs", 0)
    assert out.returncode == 2 and "--n-jobs: must be an integer >= 1" in out.stderr
    out = sweep(spec, "--out", "")
    assert (
        out.returncode == 2 and out.stderr.strip() == "error: --out: must name a directory, got ''"
    )


def test_more_workers_than_cores_are_said_and_capped(tmp_path):
    from fastbp.system import cores

    spec = write_spec(tmp_path / "s.toml", seeds=1)
    out = sweep(spec, "--out", tmp_path / "out", "--n-jobs", 1000, "--no-plots")
    assert out.returncode == 0, out.stderr
    note = f"note: --n-jobs 1000 on {cores()} cores: using {cores()} workers"
    assert out.stderr.count(note) == 1
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["n_jobs"] == cores()


def test_a_scheduler_means_the_dask_backend(tmp_path, monkeypatch, capsys):
    # Without distributed, the dask backend says so at once: proof that it was chosen (and
    # no wait for a scheduler; test_dask.py reaches for one that is not there).
    monkeypatch.setitem(sys.modules, "distributed", None)
    spec = write_spec(tmp_path / "s.toml", seeds=1)
    assert main([str(spec), "--out", str(tmp_path / "out"), "--scheduler", "tcp://x:1"]) == 2
    assert "the dask backend needs the 'distributed' package" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs.parquet").exists()  # not trained locally instead
    spec.write_text(
        spec.read_text().replace('name = "small"', 'name = "small"\nscheduler = "tcp://x:1"')
    )
    assert main([str(spec), "--out", str(tmp_path / "out")]) == 2  # also from the spec
    assert "the dask backend needs the 'distributed' package" in capsys.readouterr().err


def test_load_results_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="there is no such folder"):
        load_results(tmp_path / "nowhere")
    with pytest.raises(
        FileNotFoundError, match=r"not a sweep's results \(runs.parquet is missing\)"
    ):
        load_results(tmp_path)
    (tmp_path / "spec.toml").write_text("")
    with pytest.raises(FileNotFoundError, match="it is a file, not a folder"):
        load_results(tmp_path / "spec.toml")


def test_a_failing_run_is_reported_and_the_others_are_kept(tmp_path, monkeypatch, capsys):
    train_module = importlib.import_module("fastbp.train")  # the module, not the function
    real = train_module._train_families

    def flaky(families, lanes):
        if any(c.seed == 1 and c.bias for configs, *_ in families for c in configs):
            raise MemoryError("simulated")
        return real(families, lanes)

    monkeypatch.setattr(train_module, "_train_families", flaky)  # --n-jobs 1: in this process
    spec = write_spec(tmp_path / "s.toml", seeds=2)
    out_dir = tmp_path / "out"
    assert main([str(spec), "--out", str(out_dir), "--quiet", "--n-jobs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("MemoryError: simulated") == 2
    assert "incomplete: 6 of 8 runs are saved" in err and "resume with:" in err
    assert len(load_results(out_dir).runs) == 6

    monkeypatch.setattr(train_module, "_train_families", real)
    assert main([str(spec), "--out", str(out_dir), "--quiet", "--n-jobs", "1"]) == 0
    assert "2 run(s) trained" in capsys.readouterr().out
    assert len(load_results(out_dir).runs) == 8


def test_compiling_kernels_is_shown_and_timed_apart_from_training(tmp_path):
    # Kernels compiled into empty caches (small ones, and compiled however cheap the runs):
    # the progress line names what compiles, and its time is its own.
    spec = tmp_path / "tiny.toml"
    spec.write_text(SMALL.format(seeds=1).replace("[8, 3, 8]", "[3, 2, 3]"))
    empty = {"FASTBP_KERNEL_DIR": str(tmp_path / "k"), "NUMBA_CACHE_DIR": str(tmp_path / "n"),
             "FASTBP_LOOP_BUDGET_S": "0"}  # fmt: skip
    out = sweep(spec, "--out", tmp_path / "out", "--no-plots", env=empty)
    assert out.returncode == 0, out.stderr
    assert "compiling the kernel for 3-2-3 relu" in out.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["compile_s"] > 0 and meta["parallel_wall_s"] >= 0
    assert meta["swept"] == ["lr", "bias"]
    closing = out.stdout.strip().splitlines()[-1]
    assert closing.startswith("4 run(s) trained in ")
    assert f"kernels compiled in {meta['compile_s']:.1f} s" in closing or meta["compile_s"] < 0.05
    assert meta["kernels_compiled"] is True
    # Again with the kernels cached: they are loaded before training, and said to be.
    out = sweep(spec, "--out", tmp_path / "again", "--no-plots", env=empty)
    meta = json.loads((tmp_path / "again" / "meta.json").read_text())
    assert meta["kernels_compiled"] is False and "compiling" not in out.stderr
    closing = out.stdout.strip().splitlines()[-1]
    assert "kernels compiled" not in closing
    assert f"kernels loaded in {meta['compile_s']:.1f} s" in closing or meta["compile_s"] < 0.05


def test_new_kernels_compile_side_by_side_with_the_same_results(tmp_path):
    spec = tmp_path / "two.toml"
    spec.write_text(
        '[sweep]\nname = "two"\n[base]\nsteps = 60\nlog_every = 20\n'
        "[grid]\nlayers = [[3, 2, 3], [3, 1, 3]]\nseed = [0, 1]\n"
    )
    # FASTBP_LOOP_BUDGET_S=0: compile always (runs this short would take the loop kernel)
    env = {**os.environ, "FASTBP_KERNEL_DIR": str(tmp_path / "k"),
           "NUMBA_CACHE_DIR": str(tmp_path / "n"), "FASTBP_LOOP_BUDGET_S": "0"}  # fmt: skip
    cmd = [sys.executable, "-m", "fastbp.sweep", str(spec), "--out", str(tmp_path / "out"),
           "--no-plots"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    # First the block kernel and the one-run kernel the measurement times (this folder has
    # measured nothing), then, in the form it chose, the other architecture's.
    timed = "the one-run kernel for 3-2-3 relu (to time against blocks)"
    if len(os.sched_getaffinity(0)) >= 2:
        assert f"compiling the kernel for 3-2-3 relu, {timed}, 2 at a time" in out.stderr
    assert "compiling the kernel for 3-1-3 relu (1 of 1)" in out.stderr
    assert "loading the kernel for 3-1-3 relu (2 of 2)" in out.stderr
    measured = json.loads((tmp_path / "k" / "calibration.json").read_text())
    (entry,) = measured.values()
    assert (
        set(entry["forms"]) == {"float64 sgd, under 1024 products"}  # 3-2-3 and 3-1-3 alike
    )
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert all(k["form"] != "loop kernel" for k in meta["kernels"].values())
    results = load_results(tmp_path / "out")
    for _, row in results.runs.iterrows():
        direct = train(config_from_row(row))
        curve = results.curves[results.curves["run_id"] == row["run_id"]]
        np.testing.assert_array_equal(curve["loss"].to_numpy(), direct.losses)


def test_new_architectures_compile_their_own_kernel_only_where_it_repays_it(monkeypatch):
    """A new architecture's runs take the loop kernel where it trains them in less than
    LOOP_BUDGET_S, wide (the single-run form) or small alike: a new architecture adds at
    most the budget or its kernel's compiling. Where the loop kernel itself is not
    compiled yet, it takes over only kernels whose compiling would cost more than its
    own."""
    from fastbp import planner

    monkeypatch.setattr(planner.kernels, "is_cached", lambda: True)
    from fastbp.train import kernel_key, kernel_of

    data = fastbp.Data(np.eye(7)[[0] * 100], np.ones((100, 5)))
    wide = RunConfig(layers=(7, 41, 5), dataset=data)
    small = RunConfig(layers=(7, 2, 7))
    assert kernel_of(wide, 1).form == "single-run" and kernel_of(small, 1).form != "single-run"

    def runs_taking(run, seconds):  # seeds of one run, its loop kernel training that long
        products = planner.codegen.products(run.layers, run.n_samples)
        steps = int(seconds / planner.loop_seconds(1, products) / 10)
        return [replace(run, seed=s, steps=steps) for s in range(10)]

    def cheap(runs, budget, workers=1):  # the model's speed, not this machine's
        return planner.cheap_on_loops(runs, budget, workers, step_s=planner.model_step_s)

    budget = planner.LOOP_BUDGET_S
    cases = [(wide, budget / 2, True), (small, budget / 2, True), (wide, 2 * budget, False),
             (small, 2 * budget, False)]  # fmt: skip
    for run, seconds, on_loops in cases:
        runs = runs_taking(run, seconds)
        assert (kernel_key(runs[0]) in cheap(runs, budget)) == on_loops
        assert not cheap(runs, 0.0)  # FASTBP_LOOP_BUDGET_S=0: compile all
    assert kernel_key(wide) in cheap(runs_taking(wide, 3 * budget), 4 * budget)
    # on two workers, ten trajectories take half the time; one trajectory does not
    runs = runs_taking(wide, 1.5 * budget)
    assert cheap(runs, budget, workers=2) and not cheap(runs, budget, workers=1)
    assert not cheap([replace(runs[0], steps=10 * runs[0].steps)], budget, workers=2)

    monkeypatch.setattr(planner.kernels, "is_cached", lambda: False)
    for widths in [(2, 3), (41, 43), (41, 43, 45, 47)]:  # kernels costing 6 s, 6 s, 12 s
        runs = [r for w in widths for r in runs_taking(replace(wide, layers=(7, w, 5)), 1.0)]
        assert len(planner.cheap_on_loops(runs, budget)) == (4 if len(widths) == 4 else 0)


def test_the_loop_kernels_speed_is_measured_on_the_runs_own_steps(monkeypatch):
    """Where the loop kernel is cached, the planner times a few steps of the run itself in
    it (here on a clock that a call moves by 5 ms and a step by 1 ms): what it finds is
    the run's speed, a call's own cost left out, not the model's guess, which stands
    where the loop kernel is not compiled yet."""
    from fastbp import planner

    clock, trained = [0.0], []

    def fake_train(config, engine="auto"):  # a call costs 5 ms, and 1 ms a step
        trained.append((config, engine))
        clock[0] += 5e-3 + 1e-3 * config.steps

    monkeypatch.setattr(planner, "train", fake_train)
    monkeypatch.setattr(planner.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(planner.kernels, "is_cached", lambda: True)
    run = RunConfig(layers=(8, 5, 8), steps=10_000, log_every=1000)
    assert planner.loop_step_s(run) == pytest.approx(1e-3)
    assert len(trained) == 5 and all(e == "loops" for _, e in trained)
    assert all(replace(c, steps=run.steps, log_every=run.log_every) == run for c, _ in trained)

    monkeypatch.setattr(planner.kernels, "is_cached", lambda: False)
    model = planner.model_step_s(run)
    assert planner.loop_step_s(run) == model and len(trained) == 5

    # a sweep measures only where the model's estimate is near its budget
    from fastbp.train import kernel_key

    monkeypatch.setattr(planner, "uncached", lambda runs: {kernel_key(runs[0]): runs[0]})
    measured = []
    monkeypatch.setattr(planner, "loop_step_s", lambda run: measured.append(run) or 0.0)
    for factor, measures in [(0.1, False), (1.0, True), (10.0, False)]:
        steps = int(factor * planner.LOOP_BUDGET_S / model)
        planner.cheap_on_loops([replace(run, steps=steps)], planner.LOOP_BUDGET_S)
        assert bool(measured) == measures, factor
        measured.clear()


def test_a_small_sweep_of_new_architectures_takes_the_loop_kernel(tmp_path):
    from fastbp.planner import uncached

    train(RunConfig(steps=1), engine="loops")  # the loop kernel compiled (else they compile)
    spec = tmp_path / "small.toml"
    spec.write_text(  # architectures no other test compiles a kernel for
        '[sweep]\nname = "small"\n[base]\nsteps = 60\nlog_every = 20\n'
        "[grid]\nlayers = [[5, 2, 5], [5, 1, 5]]\nseed = [0, 1]\n"
    )
    env = dict(os.environ)
    env.pop("FASTBP_LOOP_BUDGET_S", None)
    cmd = [sys.executable, "-m", "fastbp.sweep", str(spec), "--out", str(tmp_path / "out"),
           "--no-plots"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    cheaper = {"form": "loop kernel", "lanes": 1, "why": "cheaper than compiling"}
    assert meta["kernels"] == {"5-2-5 relu": cheaper, "5-1-5 relu": cheaper}
    kernels = [k for k in uncached(load_spec(spec).runs) if k[0] != "measure"]
    assert len(kernels) == 2  # their own kernels: not compiled (a host may not have measured
    # blocks of this size yet: the measurement's kernels are not theirs)
    results = load_results(tmp_path / "out")
    for _, row in results.runs.iterrows():  # the bits of the loop kernel, trained here
        direct = train(config_from_row(row), engine="loops")
        curve = results.curves[results.curves["run_id"] == row["run_id"]]
        np.testing.assert_array_equal(curve["loss"].to_numpy(), direct.losses)
    bad = subprocess.run(cmd, capture_output=True, text=True,
                         env={**env, "FASTBP_LOOP_BUDGET_S": "soon"})  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: FASTBP_LOOP_BUDGET_S must be a number of seconds >= 0, got 'soon'"
    )
    # a dry run refuses what the sweep would, before showing a plan it could not carry out
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True,
                         env={**env, "FASTBP_LANES": "3"})  # fmt: skip
    assert dry.returncode == 2 and dry.stdout == ""
    assert dry.stderr.startswith("error: FASTBP_LANES must be one of ")


def test_compile_only_compiles_what_the_spec_needs_and_trains_nothing(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text('[sweep]\nname = "tiny"\n[base]\nlayers = [3, 2, 3]\nsteps = 30\n'
                    "[grid]\nseed = [0, 1]\n")  # fmt: skip
    empty = {"FASTBP_KERNEL_DIR": str(tmp_path / "k"), "NUMBA_CACHE_DIR": str(tmp_path / "n")}
    out = sweep(spec, "--out", tmp_path / "out", "--compile-only", env=empty)
    assert out.returncode == 0, out.stderr
    assert "1 kernel(s) for tiny compiled or found in the cache" in out.stdout
    assert "compiling the kernel for 3-2-3 relu" in out.stderr  # these runs alone would not
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
    then = sweep(spec, "--out", tmp_path / "out", "--no-plots", env=empty)
    assert then.returncode == 0, then.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["kernels"]["3-2-3 relu"]["form"] != "loop kernel"
    assert meta["kernels_compiled"] is False  # only loaded from the cache


def test_results_written_before_loss_fn_existed_load_and_resume_as_they_are(tmp_path):
    import pyarrow.parquet as pq

    spec = write_spec(tmp_path / "s.toml", seeds=1)
    out = tmp_path / "out"
    assert sweep(spec, "--out", out, "--no-plots").returncode == 0
    for path in [*(out / "shards").glob("*.runs.parquet"), out / "runs.parquet"]:
        pq.write_table(pq.read_table(path).drop(["loss_fn"]), path)  # as fastbp 0.3 wrote it
    before = load_results(out)
    assert (before.runs["loss_fn"] == "mse").all() and len(before.runs) == 4
    again = sweep(spec, "--out", out, "--no-plots")
    assert again.returncode == 0, again.stderr
    assert "warning" not in again.stderr and "4 reused" in again.stdout
    assert_same_tables(load_results(out), before)


def test_meta_names_every_kernel_apart():
    from fastbp.planner import kernel_forms

    runs = [RunConfig(layers=(2, 3, 1), dataset=d, loss_fn=f, steps=5)
            for d in ("xor", "parity") for f in ("mse", "bce")]  # fmt: skip
    runs.append(RunConfig(layers=(2, 3, 1), dataset="xor", batch_size=2, steps=5))
    assert len(kernel_forms(runs)) == 5


def test_a_spec_that_leaves_out_finished_runs_says_they_stay_in_the_shards(tmp_path):
    out_dir = tmp_path / "out"
    two = write_spec(tmp_path / "two.toml", seeds=2)
    assert sweep(two, "--out", out_dir, "--no-plots").returncode == 0
    one = write_spec(tmp_path / "one.toml", seeds=1)  # the same sweep, half its seeds
    again = sweep(one, "--out", out_dir, "--no-plots")
    assert again.returncode == 0, again.stderr
    assert f"note: 4 finished run(s) in {out_dir} are not in this spec: they stay in" in (
        again.stderr
    )
    assert len(load_results(out_dir).runs) == 4  # the tables hold this spec's runs
    back = sweep(two, "--out", out_dir, "--no-plots")  # and nothing was lost
    assert "8 reused" in back.stdout and "note:" not in back.stderr


def test_run_sweep_from_python_gives_the_commands_tables(tmp_path, monkeypatch, capsys):
    import fastbp
    from fastbp.spec import SpecError

    path = write_spec(tmp_path / "s.toml", seeds=1)
    assert sweep(path, "--out", tmp_path / "cli", "--no-plots").returncode == 0
    text = path.read_text()
    results = fastbp.run_sweep(text, out=tmp_path / "text", plots=False, quiet=True)
    assert_same_tables(results, load_results(tmp_path / "cli"))
    assert (tmp_path / "text" / "spec.toml").read_text() == text
    grid = {"lr": [0.05, 0.01], "bias": [True, False], "seed": {"range": [0, 1]}}
    base = {"layers": [8, 3, 8], "steps": 1500, "log_every": 250}
    doc = {"sweep": {"name": "small", "threshold": 0.15}, "base": base, "grid": grid}
    from_dict = fastbp.run_sweep(doc, out=tmp_path / "dict", plots=True)
    assert_same_tables(from_dict, results)
    assert (tmp_path / "dict" / "plots" / "report.html").exists()
    again = fastbp.run_sweep(path, out=tmp_path / "dict", plots=False)  # the file: resumes
    assert_same_tables(again, results)
    assert "0 run(s) trained" in capsys.readouterr().out
    with pytest.raises(SpecError, match=r"^<spec>: \[base\].lr: lr must be a finite number"):
        fastbp.run_sweep({"sweep": {"name": "x"}, "base": {"lr": -1}})
    with pytest.raises(fastbp.SweepError, match="out must be a directory, and this is a file"):
        fastbp.run_sweep(path, out=path)
    train_module = importlib.import_module("fastbp.train")
    real = train_module._train_families

    def flaky(families, lanes):
        if any(c.seed == 0 and c.bias and c.steps > 1 for configs, *_ in families for c in configs):
            raise MemoryError("simulated")  # not in the kernels' warm-up (1 step)
        return real(families, lanes)

    monkeypatch.setattr(train_module, "_train_families", flaky)
    failed = r"incomplete: 2 of 4 runs are saved in .*: 2 run\(s\) failed, the first: run \w+: "
    with pytest.raises(fastbp.SweepError, match=failed + "MemoryError: simulated"):
        fastbp.run_sweep(path, out=tmp_path / "flaky", n_jobs=1, backend="sequential")


def test_a_second_sweep_on_the_same_directory_is_refused(tmp_path):
    spec = write_spec(tmp_path / "s.toml", seeds=1)
    out = tmp_path / "out"
    out.mkdir()
    hold = (
        "import sys, time; from pathlib import Path; from fastbp.system import lock_directory\n"
        "lock = lock_directory(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    with holder:
        assert holder.stdout.readline().strip() == "held"  # a sweep is writing there
        second = sweep(spec, "--out", out)
        assert second.returncode == 2 and "another sweep is writing to this directory" in (
            second.stderr
        )
        holder.kill()  # a crash: the lock must not outlive it
    third = sweep(spec, "--out", out, "--no-plots")
    assert third.returncode == 0, third.stderr


def test_without_distributed_the_dask_backend_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    spec = write_spec(tmp_path / "s.toml", seeds=1)
    assert main([str(spec), "--out", str(tmp_path / "o"), "--backend", "dask"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: the dask backend needs the 'distributed' package: pip install 'fastbp[dask]'"
    )


def test_a_folder_that_is_not_fastbps_is_refused_and_another_specs_is_kept(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    own = {"spec.toml": "my own", "runs.parquet": "not fastbp's", "meta.json": "[1, 2]"}
    for name, text in own.items():
        (mine / name).write_text(text)
    (mine / "plots").mkdir()
    spec = write_spec(tmp_path / "s.toml", seeds=1)
    for extra in ((), ("--dry-run",)):
        out = sweep(spec, "--out", mine, "--no-plots", *extra)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "holds files that are not fastbp's results (meta.json, plots, runs.parquet" in (
            out.stderr
        )
    assert {p.name: p.read_text() for p in mine.glob("*.*")} == own  # untouched
    assert not (mine / "shards").exists() and not (mine / ".fastbp").exists()
    ours = tmp_path / "ours"
    assert sweep(spec, "--out", ours, "--no-plots").returncode == 0
    first = (ours / "spec.toml").read_text()
    other = write_spec(tmp_path / "other.toml", seeds=2)
    other.write_text(other.read_text().replace('name = "small"', 'name = "other"'))
    again = sweep(other, "--out", ours, "--no-plots")
    assert again.returncode == 0, again.stderr
    assert (ours / "spec.1.toml").read_text() == first  # the earlier spec, kept
    assert (ours / "spec.toml").read_text() == other.read_text()
    assert "0 reused" not in again.stdout  # the first spec's runs were reused by run_id


def test_run_sweeps_arguments_of_the_wrong_kind_are_one_line(tmp_path):
    from fastbp.sweep import SweepError, run_sweep

    spec = write_spec(tmp_path / "s.toml", seeds=1)
    for kwargs, message in [
        ({"n_jobs": "2"}, "n_jobs must be an integer >= 1 (or None: every core), got '2'"),
        ({"n_jobs": -1}, "n_jobs must be an integer >= 1 (or None: every core), got -1"),
        ({"out": 3}, "out must be a folder's path, got 3"),
    ]:
        with pytest.raises(SweepError, match=re.escape(message)):
            run_sweep(spec, plots=False, quiet=True, **kwargs)


def test_a_file_where_the_shards_go_is_found_before_training(tmp_path):
    spec = write_spec(tmp_path / "s.toml", seeds=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".fastbp").write_text("")
    (out / "shards").write_text("mine")
    done = sweep(spec, "--out", out, "--no-plots")
    assert done.returncode == 2 and "training" not in done.stdout
    assert (
        done.stderr.strip()
        == f"error: {out / 'shards'}: is a file, where the sweep keeps its shards/ folder"
    )


def test_a_full_disk_when_the_tables_are_written_keeps_the_runs_and_says_so(
    tmp_path, monkeypatch, capsys
):
    import errno

    from fastbp import results
    from fastbp.sweep import main

    spec = write_spec(tmp_path / "s.toml", seeds=1)
    real = results.write_final_tables

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "write_final_tables", full)
    out = tmp_path / "out"
    assert main([str(spec), "--out", str(out), "--no-plots", "--quiet"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"error: {out}: the final tables cannot be written (No space left on device); the 4 "
        f"finished run(s) are saved in {out / 'shards'}: make room and run the same command again"
    )
    monkeypatch.setattr(results, "write_final_tables", real)
    assert main([str(spec), "--out", str(out), "--no-plots", "--quiet"]) == 0
    assert "4 reused" in capsys.readouterr().out  # nothing trained again


def test_a_kernel_compiled_again_is_said_to_be_compiled_not_loaded(tmp_path):
    import shutil

    spec = tmp_path / "tiny.toml"
    # a halving: its first rung compiles, the runs that go on find the kernels loaded
    spec.write_text('[sweep]\nname = "tiny"\n[base]\nlayers = [3, 2, 3]\nsteps = 30\n'
                    "[grid]\nseed = [0, 1]\nlr = [0.1, 0.2]\n"
                    "[halving]\nmin_steps = 10\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["FASTBP_KERNEL_DIR"] = str(tmp_path / "k")  # Numba caches beside the kernels
    command = [sys.executable, "-m", "fastbp.sweep", str(spec), "--no-plots", "--quiet"]

    def run(out):
        done = subprocess.run([*command, "--out", str(tmp_path / out)], env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads((tmp_path / out / "meta.json").read_text())["kernels_compiled"]

    assert run("first") is True
    assert run("second") is False  # loaded
    for cache in (tmp_path / "k").glob("build-*/__pycache__"):
        shutil.rmtree(cache)  # Numba's cache gone, fastbp's marks of it left
    assert run("third") is True


def test_a_forked_helper_ends_when_the_sweep_is_killed(tmp_path):
    import signal
    import time

    code = (
        "import multiprocessing, os, time\n"
        "from fastbp.system import die_with_parent\n"
        "def child():\n"
        "    die_with_parent()\n"
        "    time.sleep(60)\n"
        "p = multiprocessing.get_context('fork').Process(target=child)\n"
        "p.start()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(0.3)  # the child has set its signal
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    for _ in range(50):  # the child is killed with it (and reaped by init)
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the forked child outlived its parent")


def test_kernels_in_the_form_the_measurement_turns_down_are_not_compiled(tmp_path, monkeypatch):
    """A host measured for the first time: the block kernel and the one-run kernel it
    times compile first; the other architecture's kernel compiles after the measurement,
    in the form it chose (here, faked: one run at a time), and nothing compiles inside
    the training."""
    from fastbp.engine import codegen, kernel_cache, tuning

    codegen.block_kernel.cache_clear()  # kernels this process loaded for other tests
    kernel_cache.forget()
    monkeypatch.setenv("FASTBP_KERNEL_DIR", str(tmp_path / "k"))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "n"))
    monkeypatch.setenv("FASTBP_LOOP_BUDGET_S", "0")
    monkeypatch.delenv("FASTBP_LANES", raising=False)
    monkeypatch.setattr(tuning, "time_forms", lambda trainers, rounds: {
        lanes: 1e-8 if lanes == 1 else 2e-8 for lanes in trainers})  # fmt: skip
    text = ('[sweep]\nname = "t"\n[base]\nsteps = 60\nlog_every = 20\n'
            "[grid]\nlayers = [[3, 2, 3], [3, 1, 3]]\nseed = [0, 1]\n")  # fmt: skip
    fastbp.run_sweep(text, out=tmp_path / "out", plots=False, quiet=True, n_jobs=1)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert {k["form"] for k in meta["kernels"].values()} == {"vector"}
    assert {k["why"] for k in meta["kernels"].values()} == {"measured"}
    sources = [p.read_text() for p in (tmp_path / "k").glob("build-*/fastbp_kernel_*.py")]
    forms = sorted(s.split("\n")[1].split(" form")[0].split()[-1] for s in sources)
    assert forms == ["registers", "vector", "vector"]  # the 3-1-3's block kernel: never


def test_blocks_that_cannot_repay_their_compiling_wait_for_a_ledger(tmp_path, monkeypatch):
    """A sweep leaves a block kernel uncompiled where blocks would save its runs less
    than compiling the kernel costs, keeps what they could have saved on the host, and
    compiles them once that adds up (a ski rental); the plan trains those runs one at a
    time, and meta.json says why. Pinned lanes are never overruled."""
    from fastbp import planner
    from fastbp.engine import tuning

    monkeypatch.setenv("FASTBP_KERNEL_DIR", str(tmp_path))  # nothing cached, no ledger
    monkeypatch.delenv("FASTBP_LANES", raising=False)
    runs = [RunConfig(layers=(8, 3, 8), lr=lr, seed=seed, steps=steps)
            for lr in (0.1, 0.01) for seed in range(4) for steps in (10_000, 20_000)]  # fmt: skip
    key = tuning.key_of((8, 3, 8), 8, "float64", "sgd")
    saving = 8 * 20_000 * 1152 * planner.MOST_SAVED_NS * 1e-9  # 8 trajectories of 20,000
    assert planner.blocks_unpaid(runs) == (key,)
    assert tuning.forgone(key) == pytest.approx(saving, abs=1e-3)
    assert planner.blocks_unpaid(runs) == (key,)  # a second sweep: the ledger grows
    assert tuning.forgone(key) == pytest.approx(2 * saving, abs=1e-3)

    plan = planner.Plan(unpaid=(key,))
    forms = planner.kernel_forms(runs, plan)
    assert [f["why"] for f in forms.values()] == ["not worth compiling blocks"]
    assert planner.forms_text(forms) == "one run at a time (not worth compiling blocks)"
    assert sorted(len(block) for _, block in planner.blocks(runs, plan)) == [2] * 8

    tuning.forgo(key, planner.BLOCK_COMPILE_S - saving / 2)  # this sweep tips it
    assert planner.blocks_unpaid(runs) == ()
    assert tuning.forgone(key) == 0  # compiled now: the ledger starts again
    lanes = tuning.default_lanes("float64")
    assert max(len(block) for _, block in planner.blocks(runs)) == 2 * lanes

    monkeypatch.setenv("FASTBP_LANES", "4")
    assert planner.blocks_unpaid(runs) == ()
