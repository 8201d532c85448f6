"""One rule for "best": settings ranked over their seeds.

A *setting* is a configuration without its seed: the runs of one setting differ only in
their seeds. Settings are ranked by a statistic over their seeds, never by their luckiest
run, in this order of what the runs have:

1. held-out data (``val_loss``): where the targets are classes, the median held-out
   accuracy, ties by the median held-out loss; else the median held-out loss;
2. else, with a threshold: the Wilson 95% lower bound of the share of seeds whose final
   loss reached it (k of n), ties by the median final loss;
3. else the median final loss.

Where the loss function varies, losses do not compare: (final or held-out) accuracy takes
the place of loss throughout. A diverged run counts as the worst value (an infinite loss,
no accuracy). The run shown for a setting is its median seed: its runs ordered best
first by the same quantity (ties by ``run_id``), the one at position (n - 1) // 2 (the
better of the two middle ones for even n).

:func:`settings` ranks; the summary, the report, the figures that show one run of a
setting and :func:`fastbp.results.Results.settings` all take their "best" from it, and
:func:`rule` says it in words.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fastbp.layout import swept
from fastbp.metrics import reached

Z95 = 1.959963984540054  # the standard normal's 97.5% point: 95% two-sided


def wilson(k, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval (lower, upper) of a share of k successes in n trials
    (arrays or numbers; n = 0 gives (0, 1))."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / n, 0.0)
        centre = p + z * z / (2 * n)
        spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        scale = 1 + z * z / n
        lower = np.where(n > 0, (centre - spread) / scale, 0.0)
        upper = np.where(n > 0, (centre + spread) / scale, 1.0)
    return np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)


def setting_fields(runs: pd.DataFrame, order=None) -> list[str]:
    """The fields that tell settings apart: the swept ones but the seed."""
    return [f for f in swept(runs, order) if f != "seed"]


def basis(runs: pd.DataFrame, threshold=None) -> str:
    """Which statistic ranks these runs' settings: "val_accuracy", "val_loss",
    "success", "accuracy" or "loss" (see the module's docstring)."""
    held_out = "val_loss" in runs and runs["val_loss"].notna().any()
    classes = "val_accuracy" in runs and runs["val_accuracy"].notna().any()
    if "loss_fn" in runs and runs["loss_fn"].nunique() > 1:  # losses do not compare
        if held_out and classes:
            return "val_accuracy"
        if "accuracy" in runs and runs["accuracy"].notna().any():
            return "accuracy"
    if held_out:
        return "val_accuracy" if classes else "val_loss"
    return "success" if threshold is not None else "loss"


def rule(runs: pd.DataFrame, threshold=None) -> str:
    """The rule that ranks these runs' settings, in a sentence."""
    what = {
        "val_accuracy": "the median held-out accuracy over its seeds (ties: the median "
        "held-out loss)",
        "val_loss": "the median held-out loss over its seeds",
        "success": f"the lower bound of the 95% Wilson interval of its share of seeds whose "
        f"final loss reached {threshold:g} (ties: the median final loss)"
        if threshold is not None
        else "",
        "accuracy": "the median final accuracy over its seeds (the loss functions differ: "
        "their losses do not compare)",
        "loss": "the median final loss over its seeds",
    }[basis(runs, threshold)]
    return (
        f"A setting (a configuration without its seed) is ranked by {what}; a diverged run "
        "counts as the worst. The run shown for a setting is its median seed."
    )


def run_order(runs: pd.DataFrame, threshold=None, how=None) -> np.ndarray:
    """Each run's badness under the rule's quantity (``how``: a :func:`basis` to use
    instead of the runs' own), as an array to sort ascending (best first): diverged runs
    last."""
    how = how or basis(runs, threshold)
    ok = ~runs["diverged"].to_numpy(bool)
    if how in ("val_accuracy", "accuracy"):
        value = -runs[how].to_numpy(float)
    else:
        value = runs["val_loss" if how == "val_loss" else "final_loss"].to_numpy(float)
    return np.where(ok & ~np.isnan(value), value, np.inf)


def settings(runs: pd.DataFrame, order=None, threshold=None, how=None) -> pd.DataFrame:
    """One row per setting, best first: its swept fields; ``runs`` (n), ``diverged``;
    ``median_loss`` (final, over the seeds, diverged as inf), its quartiles ``loss_q25``
    and ``loss_q75`` (the spread over the seeds) and, where the runs have
    them, ``median_accuracy``, ``median_val_loss``, ``median_val_accuracy``; with a
    threshold ``reached`` (k), ``share`` and its 95% Wilson interval ``share_low``,
    ``share_high``; ``rank`` (1: best) and ``median_run``, the run_id of its median seed.
    The order is :func:`rule`'s, or ``how``'s: a :func:`basis` to rank by instead of
    the runs' own (successive halving's ``metric``)."""
    how = how or basis(runs, threshold)
    fields = setting_fields(runs, order)
    ok = ~runs["diverged"].to_numpy(bool)
    frame = pd.DataFrame(
        {
            "run_id": runs["run_id"].to_numpy(),
            "badness": run_order(runs, threshold, how),
            "loss": np.where(ok, runs["final_loss"].to_numpy(float), np.inf),
            "diverged": ~ok,
        }
    )
    for metric in ("accuracy", "val_loss", "val_accuracy"):
        if metric in runs and runs[metric].notna().any():
            values = runs[metric].to_numpy(float)
            worst = -np.inf if metric.endswith("accuracy") else np.inf
            frame[metric] = np.where(ok & ~np.isnan(values), values, worst)
    if threshold is not None:
        frame["reached"] = ok & reached(runs, threshold)
    codes = setting_codes(runs, fields)
    frame["setting"] = codes
    grouped = frame.groupby("setting", sort=True)
    firsts = pd.Series(np.arange(len(runs))).groupby(codes, sort=True).first().to_numpy()
    table = runs.iloc[firsts][fields].reset_index(drop=True)
    table["runs"] = grouped.size().to_numpy()
    table["diverged"] = grouped["diverged"].sum().to_numpy().astype(int)
    table["median_loss"] = grouped["loss"].median().to_numpy()
    quartiles = grouped["loss"].quantile([0.25, 0.75]).unstack()
    table["loss_q25"], table["loss_q75"] = quartiles[0.25].to_numpy(), quartiles[0.75].to_numpy()
    for metric in ("accuracy", "val_loss", "val_accuracy"):
        if metric in frame:
            table[f"median_{metric}"] = grouped[metric].median().to_numpy()
    if threshold is not None:
        k, n = grouped["reached"].sum().to_numpy(), table["runs"].to_numpy()
        low, high = wilson(k, n)
        table["reached"], table["share"] = k.astype(int), k / n
        table["share_low"], table["share_high"] = low, high
    # each setting's median seed: its runs best first (ties by run_id), position (n - 1) // 2
    ordered = frame.sort_values(["setting", "badness", "run_id"], kind="stable")
    position = ordered.groupby("setting", sort=False).cumcount().to_numpy()
    middle = (ordered.groupby("setting")["setting"].transform("size").to_numpy() - 1) // 2
    medians = ordered[position == middle]
    table["median_run"] = medians.set_index("setting")["run_id"].sort_index().to_numpy()
    table["rank"] = _ranks(table, how)
    table = table.sort_values("rank", kind="stable").reset_index(drop=True)
    return table[[*fields, *[c for c in table.columns if c not in fields]]]


def setting_codes(runs: pd.DataFrame, fields) -> np.ndarray:
    """Each run's setting as a number (0, 1, ... in order of first appearance): runs with
    equal values of ``fields`` (missing values equal to each other) share one."""
    codes = np.zeros(len(runs), dtype=np.int64)
    for field in fields:  # a column at a time: a tuple per run took 0.5 s for 50,000 runs
        column = runs[field]
        if column.dtype == object:  # lists, and missing values of several kinds
            column = pd.Series([hashable(v) for v in column], dtype=object)
        own, values = pd.factorize(column, use_na_sentinel=False)
        codes = pd.factorize(codes * len(values) + own)[0]
    return codes


def runs_of(runs: pd.DataFrame, setting, order=None, codes=None) -> pd.DataFrame:
    """The runs of one setting (a row of :func:`settings`): those in its median seed's
    setting (``codes``: :func:`setting_codes` of the runs, where already made)."""
    if codes is None:
        codes = setting_codes(runs, setting_fields(runs, order))
    mine = codes[(runs["run_id"] == setting["median_run"]).to_numpy()][0]
    return runs[codes == mine]


def _ranks(table: pd.DataFrame, how: str) -> np.ndarray:
    """1 for the best setting, by the rule: a key per setting, smaller first."""
    if how == "val_accuracy":
        keys = [-table["median_val_accuracy"], table.get("median_val_loss", 0.0)]
    elif how == "val_loss":
        keys = [table["median_val_loss"]]
    elif how == "success":
        keys = [-table["share_low"], table["median_loss"]]
    elif how == "accuracy":
        keys = [-table["median_accuracy"]]
    else:
        keys = [table["median_loss"]]
    key = pd.DataFrame({f"k{i}": pd.Series(k, index=table.index) for i, k in enumerate(keys)})
    key = key.fillna(np.inf)
    key["run"] = table["median_run"]  # ties: by the median seed's run_id
    ordered = key.sort_values(list(key.columns), kind="stable").index
    ranks = np.empty(len(table), dtype=int)
    ranks[ordered] = np.arange(1, len(table) + 1)
    return ranks


def hashable(value):
    """A value as a grouping key: lists (layers, in some tables) as tuples, every kind of
    missing value as None, NumPy scalars as Python ones."""
    if isinstance(value, list | np.ndarray):
        return tuple(value)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value
