"""Thresholds that fit each architecture: relative to each run's loss floor, with a fixed
one for runs without a floor, and a fixed threshold below some runs' floor said aloud."""

import tomllib

import numpy as np
import pandas as pd
import pytest

import fastbp
from fastbp.metrics import Threshold, limits
from fastbp.report import summarize, threshold_note
from fastbp.spec import SpecError, parse_spec

SPEC = """
[sweep]
name = "t"
threshold = THRESHOLD
[base]
steps = 1500
log_every = 50
lr = 0.3
[grid]
bias = [true, false]
seed = [0, 1, 2]
"""


def sweep(threshold, tmp_path):
    return fastbp.run_sweep(SPEC.replace("THRESHOLD", threshold), out=tmp_path / "out",
                            plots=False, quiet=True)  # fmt: skip


def test_a_threshold_above_each_runs_floor(tmp_path):
    results = sweep("{ above_floor = 0.005 }", tmp_path)
    assert results.threshold == Threshold(0.005)
    runs = results.runs
    assert set(runs["loss_floor"]) == {4 / 64, 5 / 64}  # with biases, and without
    limit = runs["loss_floor"] + 0.005
    for _, run in runs.iterrows():  # the first logged step at or below its own threshold
        curve = results.curves[results.curves["run_id"] == run["run_id"]]
        below = curve.loc[curve["loss"] <= run["loss_floor"] + 0.005, "step"]
        got = run["steps_to_threshold"]
        assert pd.isna(got) if below.empty else got == below.min()
    table = results.settings()
    for _, setting in table.iterrows():
        mine = runs[runs["bias"] == setting["bias"]]
        assert setting["reached"] == int((mine["final_loss"] <= limit[mine.index]).sum())
    assert "reached floor + 0.005" in summarize(runs, results.swept, results.threshold)


def test_runs_without_a_floor_take_the_fixed_threshold_otherwise():
    runs = pd.DataFrame({"loss_floor": [0.0625, np.nan, np.nan], "final_loss": [0.066, 0.05, 1]})
    both = limits(runs, Threshold(0.005, otherwise=0.07))
    assert np.allclose(both, [0.0675, 0.07, 0.07])
    assert np.isnan(limits(runs, Threshold(0.005))[1:]).all()  # no floor, no otherwise: none
    assert np.allclose(limits(runs, 0.07), 0.07)
    assert format(Threshold(0.005, 0.07), "g") == "floor + 0.005 (else 0.07)"


def test_a_fixed_threshold_below_some_runs_floor_is_said(tmp_path):
    results = sweep("0.07", tmp_path)  # below the floor without biases, 5/64
    note = threshold_note(results.runs, results.threshold)
    assert note.startswith("note: the threshold 0.07 is below the loss floor of 3 of 6 runs")
    assert note in summarize(results.runs, results.swept, results.threshold)
    from fastbp.plot import draw

    draw(tmp_path / "out")
    assert "below the loss floor of 3 of 6 runs" in (tmp_path / "out/plots/report.html").read_text()
    assert threshold_note(results.runs, 0.1) == ""


@pytest.mark.parametrize(
    ("threshold", "where", "message"),
    [
        ("{ above_flor = 0.005 }", "[sweep].threshold.above_flor", "did you mean 'above_floor'"),
        ("{ above_floor = -1 }", "[sweep].threshold.above_floor", "must be a finite number >= 0"),
        ("{ above_floor = 0.01, otherwise = 0 }", "[sweep].threshold.otherwise", "> 0"),
        ("'low'", "[sweep].threshold", "or { above_floor = 0.005 }"),
    ],
)
def test_bad_thresholds_are_refused_in_one_line(threshold, where, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")) as error:
        parse_spec(tomllib.loads(SPEC.replace("THRESHOLD", threshold)))
    assert error.value.where == where
