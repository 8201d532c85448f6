"""What matters: the share of the spread of runs' results that each swept field, each pair
of fields and the seed explain.

The quantity is the one that ranks settings (:mod:`fastbp.ranking`), per run: log10 of
the final loss (or held-out loss), or the accuracy where accuracy ranks; a diverged run
takes the worst finite value of the sweep (so that it counts as bad, not as infinite).
Numeric fields whose values hardly repeat (a random search) are cut into the summary's
bins first.

The decomposition is the analysis of variance by sums of squares: with y_r a run's value
and m the mean of all runs, the total is S = sum (y_r - m)^2; a field's share is
sum over its values v of n_v (m_v - m)^2 / S (m_v, n_v: the mean and count of the runs
with value v); a pair's share is that of the cells of both fields minus the two fields'
own; the seed's is the spread within settings (runs that differ only in their seed),
sum (y_r - m_setting)^2 / S; what is left (interactions of three or more fields) is
1 minus the rest. On a full grid with every setting's seeds (a balanced design) the
shares are exact and add up to 1. On an unbalanced one (a union of grids, settings with
different numbers of seeds, a random search) the same sums are taken as they stand: each
share is then what its field's means explain alone, and "the rest" may be negative, which
the table shows as it is; read the shares there as a ranking more than as parts of 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fastbp import ranking
from fastbp.layout import TABLE_ROWS, label, scale

TINY = 1e-300  # losses of 0 count as this small


def quantity(runs: pd.DataFrame, threshold=None) -> tuple[np.ndarray, str]:
    """(value per run, what it is in words): the ranking quantity, diverged runs capped."""
    how = ranking.basis(runs, threshold)
    ok = ~runs["diverged"].to_numpy(bool)
    if how in ("val_accuracy", "accuracy"):
        values, what = runs[how].to_numpy(float), how.replace("val_", "held-out ").replace("_", " ")
        worst = np.nanmin(values[ok]) if ok.any() else 0.0
    else:
        column = "val_loss" if how == "val_loss" else "final_loss"
        with np.errstate(divide="ignore", invalid="ignore"):  # a loss of exactly 0 is the
            values = np.log10(np.maximum(runs[column].to_numpy(float), TINY))  # best, not NaN
        what = f"log10 of the {'held-out' if column == 'val_loss' else 'final'} loss"
        finite = values[ok & np.isfinite(values)]
        worst = finite.max() if len(finite) else 0.0
    values = np.where(ok & np.isfinite(values), values, worst)
    return values, what


def shares(runs: pd.DataFrame, order=None, threshold=None) -> pd.DataFrame:
    """The share of the spread of :func:`quantity` each source explains: one row per
    swept field (but seed), per pair of them, the seed (within settings) and the rest,
    largest first: columns ``source``, ``share``, ``kind`` ("field", "pair", "seed",
    "rest")."""
    y, _ = quantity(runs, threshold)
    fields = ranking.setting_fields(runs, order)
    total = float(((y - y.mean()) ** 2).sum())
    codes = {f: _codes(runs, f) for f in fields}
    rows = []

    def explained(*keys) -> float:
        key = pd.Series(list(zip(*keys, strict=True))) if len(keys) > 1 else pd.Series(keys[0])
        group = pd.Series(y).groupby(key.factorize()[0])
        return float((group.size() * (group.mean() - y.mean()) ** 2).sum())

    if total == 0.0:
        return pd.DataFrame({"source": [], "share": [], "kind": []})
    single = {f: explained(codes[f]) for f in fields}
    for f in fields:
        rows.append((label(f), single[f] / total, "field"))
    for i, a in enumerate(fields):
        for b in fields[i + 1 :]:
            pair = explained(codes[a], codes[b]) - single[a] - single[b]
            rows.append((f"{label(a)} × {label(b)}", pair / total, "pair"))
    if "seed" in runs and runs["seed"].nunique() > 1:
        setting = pd.Series(y).groupby(ranking.setting_codes(runs, fields))
        within = float(((y - setting.transform("mean").to_numpy()) ** 2).sum())
        rows.append(("seed (within settings)", within / total, "seed"))
    rest = 1.0 - sum(share for _, share, _ in rows)
    table = pd.DataFrame(rows, columns=["source", "share", "kind"])
    table = table.sort_values("share", ascending=False, kind="stable").reset_index(drop=True)
    if abs(rest) > 1e-9:
        label_rest = "the rest (three or more fields together)"
        table.loc[len(table)] = (label_rest, rest, "rest")
    return table


def _codes(runs: pd.DataFrame, field: str) -> np.ndarray:
    """Each run's value of ``field`` as a category: its own value where values repeat (a
    grid), the summary's bins where most values are the run's alone (a random search)."""
    repeats = len(runs) >= 2 * runs[field].nunique(dropna=False)
    return scale(runs, field, None if repeats else TABLE_ROWS).codes
