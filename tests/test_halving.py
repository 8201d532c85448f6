"""Successive halving: the bits of the full grid for every run it finishes and every step
it logs, decisions that are a pure function of the rungs' results, stopped runs that a
later spec trains in full, and specs it refuses."""

import re
import shutil

import numpy as np
import pandas as pd
import pytest

import fastbp
from fastbp import halving
from fastbp.config import RunConfig
from fastbp.spec import SpecError, parse_spec

SPEC = """
[sweep]
name = "halved"
threshold = 0.1
[base]
layers = [4, 2, 4]
log_every = 50
[grid]
optimizer = ["sgd", "momentum", "nesterov", "adam"]
lr = [0.01, 0.1, 0.5]
steps = [300, 600]
seed = [0, 1, 2]
"""
HALVING = "[halving]\nmin_steps = 100\neta = 3\n"


def sweep(text, out):
    return fastbp.run_sweep(text, out=out, plots=False, quiet=True)


def test_halving_keeps_the_full_grids_bits_and_its_best(tmp_path):
    full, halved = sweep(SPEC, tmp_path / "full"), sweep(SPEC + HALVING, tmp_path / "halved")
    f, h = full.runs.set_index("run_id"), halved.runs.set_index("run_id")
    assert sorted(f.index) == sorted(h.index)  # every run of the spec, stopped or not
    assert f["stopped_at"].isna().all()
    stopped = h["stopped_at"].dropna().astype(int)
    assert set(stopped) == {100, 300} and 0 < len(stopped) < len(h)  # the rungs below 600
    # 12 settings (optimizer x lr): 4 go on from the rung at 100, 2 from 300
    assert len(h[h["stopped_at"] == 100]) == 8 * 3 * 2
    finished = h.index[h["stopped_at"].isna()]
    # the last 2 settings, and the 300-step runs of the 2 settings stopped at 300
    assert len(finished) == 2 * 3 * 2 + 2 * 3
    columns = ["final_loss", "min_loss", "accuracy", "diverged"]
    pd.testing.assert_frame_equal(h.loc[finished, columns], f.loc[finished, columns])
    # every step a run logged is the full grid's, bit for bit, stopped or not
    both = halved.curves.merge(full.curves, on=["run_id", "step"], suffixes=("_h", "_f"))
    assert len(both) == len(halved.curves)
    assert (both["loss_h"].to_numpy() == both["loss_f"].to_numpy()).all()
    params = halved.params.merge(full.params, on=["run_id", "layer", "kind", "i", "j"])
    mine = params["run_id"].isin(finished)
    assert (params.loc[mine, "value_x"] == params.loc[mine, "value_y"]).all()
    # a stopped run: its steps are the spec's, its results those of where it stopped
    one = h[h["stopped_at"] == 100].iloc[0]
    assert one["steps"] in (300, 600)
    curve = halved.curves[halved.curves["run_id"] == one.name]
    assert curve["step"].max() == 100 and curve["loss"].iloc[-1] == one["final_loss"]
    # the same best setting as the full grid, and its median seed
    assert halved.settings().iloc[0]["median_run"] == full.settings().iloc[0]["median_run"]


def test_a_halving_killed_and_run_again_ends_with_the_same_tables(tmp_path):
    out = tmp_path / "out"
    first = sweep(SPEC + HALVING, out)
    shards = sorted((out / "shards").glob("part-*.runs.parquet"))
    for path in shards[len(shards) // 2 :]:  # as if killed half way: the later shards lost
        for part in out.glob(f"shards/{path.name.split('.')[0]}.*"):
            part.unlink()
    for name in ("runs", "curves", "params"):
        (out / f"{name}.parquet").unlink()
    again = sweep(SPEC + HALVING, out)
    for name in ("runs", "curves", "params"):
        a, b = getattr(first, name), getattr(again, name)
        if name == "runs":
            a, b = a.drop(columns="wall_s"), b.drop(columns="wall_s")
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_a_stopped_run_is_trained_in_full_by_a_spec_that_wants_it(tmp_path):
    out = tmp_path / "out"
    sweep(SPEC + HALVING, out)
    later = sweep(SPEC, out)  # the same runs, no halving: the stopped ones train in full
    assert later.runs["stopped_at"].isna().all()
    full = sweep(SPEC, tmp_path / "full")
    a = later.runs.set_index("run_id").sort_index()["final_loss"]
    b = full.runs.set_index("run_id").sort_index()["final_loss"]
    assert (a == b).all()


def test_survivors_are_ranked_within_each_loss_and_ties_go_by_run_id():
    def row(run_id, setting, loss_fn, loss, diverged=False):
        return dict(run_id=run_id, setting=setting, loss_fn=loss_fn, final_loss=loss,
                    diverged=diverged, lr=setting, steps=100, seed=int(run_id[-1]))  # fmt: skip

    rows = pd.DataFrame([
        row("a0", 0.1, "mse", 0.20), row("a1", 0.1, "mse", 0.30),
        row("b0", 0.2, "mse", 0.10), row("b1", 0.2, "mse", np.nan, diverged=True),
        row("c0", 0.3, "mse", 0.25), row("c1", 0.3, "mse", 0.25),
        row("d0", 0.4, "bce", 5.0), row("d1", 0.4, "bce", 6.0),
    ])  # fmt: skip
    setting_by_run = dict(zip(rows["run_id"], rows["setting"], strict=True))
    # mse: the medians are 0.25 (a), inf (b: a diverged seed is the worst), 0.25 (c);
    # a and c tie, and a's median seed has the smaller run_id. bce: its one setting.
    assert halving.survivors(rows, setting_by_run, eta=3) == {0.1, 0.4}
    assert halving.survivors(rows, setting_by_run, eta=2) == {0.1, 0.3, 0.4}
    assert halving.survivors(rows.iloc[::-1], setting_by_run, eta=3) == {0.1, 0.4}


def test_rungs_and_settings():
    assert halving.rungs(1000, 3, 20_000) == [1000, 3000, 9000]
    assert halving.rungs(1000, 3, 1000) == []
    runs = [RunConfig(lr=lr, seed=s, steps=n) for lr in (0.1, 0.2) for s in (0, 1)
            for n in (500, 3000)]  # fmt: skip
    race = halving.Race(tuple(runs))
    assert len(race.settings) == 2  # seeds and steps are not part of a setting
    assert len(race.rung_runs(1000)) == 2 * 2 * 2  # the 500s in full, the 3000s cut at 1000
    assert {c.steps for c in race.seeds_at(race.active[0], 1000)} == {1000}


@pytest.mark.parametrize(
    ("section", "where", "message"),
    [
        ("eta = 3", "[halving].min_steps", "missing"),
        ("min_steps = 0", "[halving].min_steps", "must be a whole number of steps >= 1"),
        ("min_steps = 10\neta = 1", "[halving].eta", "must be a whole number >= 2"),
        ("min_steps = 10\nmetric = 'val_los'", "[halving].metric", "did you mean 'val_loss'"),
        ("min_steps = 10\nmetric = 'val_loss'", "[halving].metric", "needs held-out data"),
        ("min_steps = 10\nrungs = 3", "[halving].rungs", "unknown key"),
    ],
)
def test_bad_halving_sections_are_refused_in_one_line(section, where, message):
    import tomllib

    doc = tomllib.loads(SPEC + "[halving]\n" + section + "\n")
    with pytest.raises(SpecError, match=message) as error:
        parse_spec(doc)
    assert error.value.where == where


def test_a_schedule_that_depends_on_the_runs_length_is_not_halved():
    import tomllib

    doc = tomllib.loads(SPEC.replace("[grid]", "lr_schedule = 'cosine'\n[grid]") + HALVING)
    with pytest.raises(SpecError, match="'cosine' depends on the run's length"):
        parse_spec(doc)


def test_the_halving_is_said_in_the_closing_line_and_meta(tmp_path):
    import json
    import subprocess
    import sys

    spec = tmp_path / "h.toml"
    spec.write_text(SPEC + HALVING)
    done = subprocess.run([sys.executable, "-m", "fastbp.sweep", str(spec), "--out",
                           str(tmp_path / "out"), "--no-plots"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "halving: rung at 100 steps: 12 setting(s) ranked, 4 go on" in done.stderr
    counts = [tuple(map(int, m)) for m in re.findall(r"runs (\d+)/(\d+)", done.stderr)]
    assert counts and all(k <= n for k, n in counts)  # each rung's bar counts its own runs
    assert (12, 12) in counts  # the rung at 300: 4 settings x 3 seeds
    assert "halving: 54 of 72 run(s) stopped early (48 at 100, 6 at 300)" in done.stdout
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert [r["step"] for r in meta["halving"]["rungs"]] == [100, 300]
    assert meta["halving"]["run_steps"] < meta["halving"]["run_steps_full_grid"] / 2
    shutil.rmtree(tmp_path / "out")


def test_worker_processes_make_the_same_decisions(tmp_path):
    threads = sweep(SPEC + HALVING, tmp_path / "threads")
    loky = fastbp.run_sweep(SPEC + HALVING, out=tmp_path / "loky", plots=False, quiet=True,
                            backend="loky", n_jobs=2)  # fmt: skip
    a = threads.runs.drop(columns="wall_s").sort_values("run_id").reset_index(drop=True)
    b = loky.runs.drop(columns="wall_s").sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
