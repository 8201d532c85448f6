"""The report's page to work in (fastbp.explore): the data it carries, its size, its script."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap

import numpy as np
import pytest
from sweep_tables import SHAPES, sweep_results

from fastbp import explore, ranking
from fastbp.layout import fmt
from fastbp.report import write_report


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    names = ("dense lr grid", "random momentum, some runs Adam", "union with missing values")
    return {
        name: sweep_results(textwrap.dedent(SHAPES[name]), tmp_path_factory.mktemp("explore"))
        for name in names
    }


def page_data(runs, order, threshold):
    ranked = ranking.settings(runs, order, threshold)
    html = explore.section(runs, order, threshold, ranked)
    match = re.search(r"<script type='application/json' id='fb-data'>(.*?)</script>", html, re.S)
    return ranked, json.loads(match.group(1)), html


@pytest.mark.parametrize("name", ["dense lr grid", "random momentum, some runs Adam",
                                  "union with missing values"])  # fmt: skip
def test_the_page_carries_every_setting_and_every_run_of_it(shapes, name):
    results = shapes[name]
    runs = results.runs
    ranked, data, _ = page_data(runs, results.swept, results.threshold)
    fields = ranking.setting_fields(runs, results.swept)
    columns = {c["name"]: c for c in data["columns"]}
    # each field: the settings' values as indices into texts in order of value
    for f, column in zip(fields, data["columns"], strict=False):
        assert column["short"] == f
        assert [column["labels"][k] for k in column["codes"]] == [fmt(f, v) for v in ranked[f]]
        if "numbers" in column:
            known = [v for v in column["numbers"] if v is not None]
            assert known == sorted(known)
    seeds = columns["seeds"]["num"]
    assert seeds == ranked["runs"].tolist() and sum(seeds) == len(runs)
    # the runs, grouped by setting in the settings' order, best first within each: the
    # median seed at (n - 1) // 2
    ids, start = data["runs"]["id"], np.concatenate([[0], np.cumsum(seeds)])
    assert sorted(ids) == sorted(runs["run_id"])
    codes = ranking.setting_codes(runs, fields)
    code_of = dict(zip(runs["run_id"], codes, strict=True))
    for i, row in ranked.iterrows():
        mine = ids[start[i] : start[i + 1]]
        assert {code_of[r] for r in mine} == {code_of[row["median_run"]]}
        assert mine[(len(mine) - 1) // 2] == row["median_run"]
    final = next(c for c in data["runs"]["columns"] if c["name"] == "final loss")
    by_id = runs.set_index("run_id")
    for k in range(0, len(ids), 7):
        expected = by_id.loc[ids[k], "final_loss"]
        got = final["num"][k]
        if by_id.loc[ids[k], "diverged"]:
            assert got is None
        else:
            assert got == pytest.approx(expected, rel=1e-5)
    # the statistics, and success with its interval where there is a threshold
    median = columns["median final loss"]["num"]
    finite = np.isfinite(ranked["median_loss"])
    assert np.allclose(np.array(median, dtype=float)[finite], ranked["median_loss"][finite],
                       rtol=1e-5)  # fmt: skip
    assert all(m is None for m, ok in zip(median, finite, strict=True) if not ok)
    if results.threshold is not None:
        k, low, high = columns["reached the threshold (95% interval)"]["success"]
        assert k == ranked["reached"].tolist()
        assert low == np.round(100 * ranked["share_low"]).astype(int).tolist()
        assert all(lo <= 100 * kk / n <= hi for kk, n, lo, hi in zip(k, seeds, low, high,
                                                                      strict=True))  # fmt: skip
    # the parallel coordinates: every field, then the statistic (and the loss beside it)
    axes = data["axes"]
    assert [a["column"] for a in axes[: len(fields)]] == list(range(len(fields)))
    assert len(axes[len(fields) :]) == (2 if results.threshold is not None else 1)


def test_the_spread_over_seeds_is_the_middle_half_of_their_final_losses(shapes):
    results = shapes["dense lr grid"]  # 6 seeds a setting
    runs = results.runs
    ranked, data, _ = page_data(runs, results.swept, results.threshold)
    (spread,) = [c for c in data["columns"] if "range" in c]
    codes = ranking.setting_codes(runs, ranking.setting_fields(runs, results.swept))
    for i in (0, len(ranked) // 2, len(ranked) - 1):
        mine = runs[codes == codes[(runs["run_id"] == ranked["median_run"][i]).to_numpy()][0]]
        losses = np.where(mine["diverged"], np.inf, mine["final_loss"])
        with np.errstate(invalid="ignore"):  # inf - inf, between two diverged runs
            low, high = np.quantile(losses, [0.25, 0.75])
        for got, want in zip((spread["range"][0][i], spread["range"][1][i]), (low, high),
                             strict=True):  # fmt: skip
            assert got is None if not np.isfinite(want) else got == pytest.approx(want, rel=1e-5)


def test_a_page_of_50000_runs_stays_small(shapes):
    """50,000 runs of a random search, each its own setting: the explore section's data in
    at most 7 MB (the issue's 10 MB, less the figures)."""
    small = shapes["random momentum, some runs Adam"]
    rng = np.random.default_rng(0)
    n = 50_000
    runs = small.runs.iloc[rng.integers(0, len(small.runs), n)].reset_index(drop=True)
    runs["run_id"] = [f"{k:012x}" for k in rng.integers(0, 2**48, n)]
    runs["lr"] = 10 ** rng.uniform(-4, 0, n)
    momentum = runs["momentum"].notna()
    runs.loc[momentum, "momentum"] = rng.uniform(0.5, 0.99, int(momentum.sum()))
    runs["final_loss"] = np.where(runs["diverged"], np.nan, rng.uniform(0.06, 0.3, n))
    _, data, html = page_data(runs, small.swept, 0.1)
    assert len(data["runs"]["id"]) == n and len(data["columns"][0]["codes"]) == n
    assert len(html.encode()) < 7e6


def test_the_report_fetches_nothing_and_its_script_only_reads_the_page(shapes, tmp_path):
    results = shapes["dense lr grid"]
    page = write_report(tmp_path, results, [], tmp_path / "plots").read_text()
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    assert "fetch(" not in explore.SCRIPT and "XMLHttpRequest" not in explore.SCRIPT
    assert page.count("<script") == 2 and "id='explore'" in page and "href='#explore'" in page


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs a headless Chromium")
def test_the_page_works_in_a_browser(shapes, tmp_path):
    """The script runs: the settings table is drawn, counted and the lines are drawn."""
    results = shapes["dense lr grid"]
    page = write_report(tmp_path, results, [], tmp_path / "plots")
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    n = len(ranking.settings(results.runs, results.swept, results.threshold))
    assert f"{n} of {n} settings" in dom
    assert len(re.findall(r'<tr class="fb-s" data-i="\d+"', dom)) == n  # fewer than ROWS
    assert len(re.findall(r"<polyline [^>]*points=\"[0-9]", dom)) == n
    assert re.search(r'data-ready="\d+"', dom)
