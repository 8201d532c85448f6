"""What matters: the share of the spread of runs' results that each swept field, each pair
of fields and the seed explain.

The quantity is the one that ranks settings (:mod:`fastbp.ranking`), per run: log10 of
the final loss (or held-out loss), or the accuracy where accuracy ranks; a diverged run
takes the worst finite value of the sweep (so that it counts as bad, not as infinite).
Numeric fields whose values hardly repeat (a random search) are cut into the summary's
bins first.

The decomposition is the analysis of variance by sequential sums of squares (type I).
With y_r a run's value and m the mean of all runs, the total is S = sum (y_r - m)^2. The
fields are taken in turn, the one whose values explain most alone first; each is
credited with what it adds to the fit of the fields before it (least squares on one
indicator per value, so the fit of a field alone is its values' means), then each pair
of fields, likewise, with what its cells add to everything before it. The seed's share is
the spread within settings (runs that differ only in their seed), sum (y_r -
m_setting)^2 / S, and "the rest" is what the settings' means hold beyond the fields and
the pairs: interactions of three or more fields, and where a field was binned, the
spread of its values within a bin. Every share is at least 0, and they add up to 1.
On a full grid with every setting's seeds (a balanced design) the fields are
orthogonal, the order does not matter, and the shares are those of the classic
analysis of variance: a field's is sum over its values v of n_v (m_v - m)^2 / S, a
pair's that of its cells less the two fields'. On an unbalanced one (a union of grids, a
random search) a field's share depends on the fields before it, which are those that
explain more: read a later field's share as what it adds. Pairs are taken among the
PAIR_FIELDS fields that explain most alone; the others' pairs stay in the rest.
"""

from __future__ import annotations

import math

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


PAIR_FIELDS = 4  # pairs among at most this many fields: 6 pairs


def shares(runs: pd.DataFrame, order=None, threshold=None) -> pd.DataFrame:
    """The share of the spread of :func:`quantity` each source explains: one row per
    swept field (but seed), per pair of the first PAIR_FIELDS of them, the seed (within
    settings) and the rest, largest first: columns ``source``, ``share``, ``kind``
    ("field", "pair", "seed", "rest"); ``attrs["balanced"]``: whether the runs make a
    full grid with as many runs in every cell (where the order of the fields does not
    matter)."""
    y, _ = quantity(runs, threshold)
    fields = ranking.setting_fields(runs, order)
    total = float(((y - y.mean()) ** 2).sum())
    if total == 0.0:
        empty = pd.DataFrame({"source": [], "share": [], "kind": []})
        empty.attrs["balanced"] = True
        return empty
    setting = ranking.setting_codes(runs, fields)
    n_settings = int(setting.max()) + 1 if len(setting) else 0
    codes = {f: _codes(runs, f, n_settings) for f in fields}
    cell = _cells(*codes.values()) if codes else np.zeros(len(y), dtype=int)  # all fields'
    fit = _Fit(y, cell)
    alone = {f: fit.alone(codes[f]) for f in fields}
    spec_order = {f: k for k, f in enumerate(fields)}
    fields = sorted(fields, key=lambda f: -alone[f])  # stable: ties keep the spec's order
    rows = [(label(f), fit.add(codes[f]) / total, "field") for f in fields]
    paired = fields[:PAIR_FIELDS]
    pairs = [tuple(sorted((a, b), key=spec_order.get))  # named in the spec's order
             for i, a in enumerate(paired) for b in paired[i + 1 :]]  # fmt: skip
    pair_cells = {pair: _cells(codes[pair[0]], codes[pair[1]]) for pair in pairs}
    pairs.sort(key=lambda pair: -fit.alone(pair_cells[pair]))
    for a, b in pairs:
        rows.append((f"{label(a)} × {label(b)}", fit.add(pair_cells[(a, b)]) / total, "pair"))
    means = np.bincount(setting, weights=y) / np.bincount(setting)
    within = float(((y - means[setting]) ** 2).sum())
    if "seed" in runs and runs["seed"].nunique() > 1:
        rows.append(("seed (within settings)", within / total, "seed"))
    rest = max(0.0, (total - within - fit.explained) / total)
    table = pd.DataFrame(rows, columns=["source", "share", "kind"])
    table = table.sort_values("share", ascending=False, kind="stable").reset_index(drop=True)
    counts = np.bincount(cell)  # a full grid: every cell of the fields, as many runs in each
    levels = math.prod(len(np.unique(c)) for c in codes.values())
    table.attrs["balanced"] = len(counts) == levels and (counts == counts[0]).all()
    if rest > 1e-9:
        binned = any(len(np.unique(codes[f])) < runs[f].nunique() for f in fields)
        what = [
            *(["three or more fields together"] if len(fields) >= 3 else []),
            *(["other pairs"] if len(paired) < len(fields) else []),
            *(["values within a bin"] if binned else []),
        ]
        table.loc[len(table)] = (f"the rest ({', '.join(what) or 'rounding'})", rest, "rest")
    return table


class _Fit:
    """Least squares of runs' values on indicators of categories, added block by block:
    how much each block adds to the explained sum of squares. Every indicator is a
    function of a run's cell (its fields' categories), so the fit is made on the cells'
    means weighted by their runs: the same projection, on fewer rows."""

    def __init__(self, y, cell):
        counts = np.bincount(cell).astype(float)
        means = np.bincount(cell, weights=y) / counts
        self.cell = cell
        self.root = np.sqrt(counts)  # row weights
        self.target = self.root * (means - y.mean())  # orthogonal to the intercept
        self.basis = [(self.root / np.linalg.norm(self.root))[:, None]]  # orthonormal blocks
        self.explained = 0.0

    def _block(self, codes):
        """The indicators of ``codes`` (per run), on the cells' rows, weighted."""
        at = np.zeros(len(self.root), dtype=int)
        at[self.cell] = codes  # a cell's runs share every field's category
        _, at = np.unique(at, return_inverse=True)
        block = np.zeros((len(self.root), int(at.max()) + 1))
        block[np.arange(len(at)), at] = self.root
        return block

    def alone(self, codes) -> float:
        """What ``codes`` explain alone: the sum of squares of their means about the mean."""
        block = self._block(codes)
        norms = (block * block).sum(axis=0)
        return float(((block.T @ self.target) ** 2 / norms).sum())

    def add(self, codes) -> float:
        """Add the indicators of ``codes`` to the fit; what they add to what it explains."""
        block = self._block(codes)
        for basis in self.basis:
            block -= basis @ (basis.T @ block)
        u, sizes, _ = np.linalg.svd(block, full_matrices=False)
        new = u[:, sizes > 1e-9 * max(1.0, float(self.root.max()))]
        self.basis.append(new)
        gained = float(((new.T @ self.target) ** 2).sum())
        self.explained += gained
        return gained


def _cells(*codes) -> np.ndarray:
    """The cells of fields' codes, as one code per run."""
    return pd.factorize(pd.Series(list(zip(*codes, strict=True))))[0]


def _codes(runs: pd.DataFrame, field: str, n_settings: int) -> np.ndarray:
    """Each run's value of ``field`` as a category: its own value where values repeat
    over settings (a grid), the summary's bins where most settings have a value of
    their own (a random search, with its seeds or without)."""
    repeats = n_settings >= 2 * runs[field].nunique(dropna=False)
    return scale(runs, field, None if repeats else TABLE_ROWS).codes
