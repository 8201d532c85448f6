"""What the figures, the summary and the report show of a sweep, decided once from the sweep.

The swept fields, in the spec's order with ``lr`` first, give every view its roles: the
first (the primary field) is the colour, or the x axis where a figure has one; the next
ones make panels; the rest, and ``seed`` always, are pooled into medians and bands. Fields
with many numeric values are shown in bins. Names and values are written the same way
everywhere. pandas only: no matplotlib, no Numba.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fastbp.config import OWN_FIELDS, OWNER, RunConfig, layers_text, parse_layers, swept_order

# Plain names, shown beside the field's own name: "learning rate (lr)".
NAMES = {
    "layers": "layer widths",
    "activation": "activation",
    "bias": "biases",
    "lr": "learning rate",
    "steps": "steps",
    "seed": "seed",
    "log_every": "logging interval",
    "batch_size": "batch size",
    "init": "initialisation",
    "init_scale": "initial weight scale",
    "dataset": "dataset",
    "dtype": "precision",
    "loss_fn": "loss function",
    "optimizer": "optimizer",
    "momentum": "momentum",
    "beta1": "Adam's beta1",
    "beta2": "Adam's beta2",
    "eps": "Adam's epsilon",
    "weight_decay": "weight decay",
    "targets": "target columns",
    "val_fraction": "validation fraction",
    "lr_schedule": "learning-rate schedule",
    "step_size": "updates between decays",
    "gamma": "decay factor",
    "eta_min": "cosine's least rate",
    "warmup_steps": "warm-up updates",
    "start_factor": "warm-up's first factor",
}
assert tuple(NAMES) == RunConfig.field_names(), "every RunConfig field needs a plain name"

LOSS_NAMES = {"mse": "MSE", "cross_entropy": "cross-entropy", "bce": "binary cross-entropy"}
MAX_PANELS = 12  # panels a figure may have before further fields are pooled
# A field that matters only where another has one value: {field: (that field, value)}.
APPLIES_ONLY = {"init_scale": ("init", "normal")}
PANEL_BINS = 4  # a continuous field that makes panels is cut into at most this many bins
TABLE_ROWS = 10  # rows of a summary table, bins of a heatmap axis


def label(field: str) -> str:
    """'learning rate (lr)': the plain name with the field's own name."""
    name = NAMES.get(field, field)
    return field if name == field else f"{name} ({field})"


def missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def fmt(field: str, value) -> str:
    """One value of one field, as every view writes it."""
    if missing(value):
        return "full batch" if field == "batch_size" else "none"
    if isinstance(value, (bool, np.bool_)):
        if field == "bias":
            return "with biases" if value else "without biases"
        return "yes" if value else "no"
    if isinstance(value, (tuple, list)):  # layers
        return layers_text(value)
    if isinstance(value, (float, np.floating)):
        return _number(float(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
    return str(value)


def _number(x: float, digits: int = 3) -> str:
    """x to ``digits`` significant digits; numbers from 100 to 1e5 without an exponent;
    numbers just below 1 (a decay factor of 0.9998, Adam's beta2 of 0.9999) with two of
    1 - x, so that they do not read as 1."""
    if 0.9 < x < 1:
        digits = max(digits, 2 - math.floor(math.log10(1 - x)))
    text = f"{x:.{digits}g}"
    if "e+" in text and abs(x) < 1e5:
        return f"{x:.0f}"
    return text


def describe(fields, values) -> str:
    """'lr=0.01, bias=with biases', or 'all runs' for no fields. An optimizer's or a
    schedule's own field without a value (momentum for adam) is left out, unless nothing
    else is named."""
    pairs = [f"{f}={fmt(f, v)}" for f, v in zip(fields, values, strict=True)]
    applies = [
        p for p, f, v in zip(pairs, fields, values, strict=True)
        if f not in OWN_FIELDS or not pd.isna(v)
    ]  # fmt: skip
    return ", ".join(applies or pairs) or "all runs"


def swept(runs: pd.DataFrame, order=None) -> list[str]:
    """The RunConfig fields taking more than one value in ``runs`` (a missing value counts
    as one, except for an optimizer's or a schedule's own fields, missing where they do
    not apply): in
    ``order`` (the spec's, as saved with the results) where given, then in RunConfig
    order; ``lr`` first and ``seed`` last."""
    varies = [
        f
        for f in RunConfig.field_names()
        if f in runs and runs[f].nunique(dropna=f in OWN_FIELDS) > 1 and not _follows(runs, f)
    ]
    return swept_order(varies, order or ())


def _follows(runs: pd.DataFrame, field: str) -> bool:
    """Whether an optimizer's or a schedule's own field takes one value under each value
    of the field that owns it (gamma 0.5 for every step schedule, 0.9998 for every
    exponential one): it then says nothing its owner does not, and is not swept."""
    owner = OWNER.get(field)
    if owner is None or owner not in runs:
        return False
    return bool(runs.groupby(owner, dropna=False)[field].nunique().max() <= 1)


def loss_label(runs: pd.DataFrame, what: str = "loss") -> str:
    """'final loss (MSE)', naming the loss function when the runs share one."""
    names = runs["loss_fn"].unique() if "loss_fn" in runs else ["mse"]
    return f"{what} ({LOSS_NAMES.get(names[0], names[0])})" if len(names) == 1 else what


# --- one field as a view shows it: categories in order, binned where there are many ---


@dataclass(frozen=True)
class Scale:
    """The categories a view shows of one field, and the category of each run.

    codes : int ndarray of shape (n_runs,), positions in ``labels``, aligned with the runs.
    positions : the numeric x of each category (its value, or the median value of its
        runs when binned); None for a categorical field.
    """

    field: str
    codes: np.ndarray
    labels: tuple[str, ...]
    positions: np.ndarray | None
    values: tuple  # each category's value; for a bin, its (low, high) edges
    binned: bool = False
    log: bool = False

    def codes_of(self, column: pd.Series) -> np.ndarray:
        """The category of each value in ``column``: values of the runs this Scale was made
        from, or any value inside its bins."""
        if self.binned:  # the bins, then a category of missing values if there is one
            lows = np.array([v[0] for v in self.values if v is not None])
            x = column.to_numpy(dtype=float)
            k = np.clip(np.searchsorted(lows, x, side="right") - 1, 0, len(lows) - 1)
            return np.where(np.isnan(x), len(lows), k) if None in self.values else k
        index = {v: k for k, v in enumerate(self.values)}
        return np.array([index[None if missing(v) else v] for v in column], dtype=int)

    @property
    def numeric(self) -> bool:
        return self.positions is not None

    def __len__(self) -> int:
        return len(self.labels)


def is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def log_spaced(values) -> bool:
    """Whether values are best shown on a log axis: all positive, spanning a factor >= 20."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return len(values) > 1 and values.min() > 0 and values.max() / values.min() >= 20


def scale(runs: pd.DataFrame, field: str, most: int | None = TABLE_ROWS) -> Scale:
    """Categories of ``field`` over ``runs``: one per value, or at most ``most`` bins (log
    bins where the values are log-spaced) when a numeric field has more values than that.
    A missing value (batch_size None, momentum for Adam) is a category of its own, last;
    a binned field's then counts among the ``most``."""
    column = runs[field]
    present = column.dropna()
    uniques = present.unique()
    has_missing = len(present) < len(column)
    if is_numeric(column) and most is not None and len(uniques) > most:
        if not has_missing:
            return _binned(field, column.to_numpy(dtype=float), most)
        bins = _binned(field, present.to_numpy(dtype=float), most - 1)  # and "none", last
        codes = np.full(len(column), len(bins), dtype=int)
        codes[column.notna().to_numpy()] = bins.codes
        return Scale(field, codes, (*bins.labels, fmt(field, None)), None,
                     (*bins.values, None), binned=True, log=bins.log)  # fmt: skip
    numeric = is_numeric(column) and not has_missing
    ordered = sorted(uniques, key=lambda v: sort_key(field, v))
    values = [*ordered, None] if has_missing else ordered
    index = {v: k for k, v in enumerate(ordered)}
    codes = present.map(index).reindex(column.index, fill_value=len(ordered)).to_numpy(int)
    return Scale(
        field,
        codes,
        _distinct_labels(field, values),
        np.asarray(ordered, dtype=float) if numeric else None,
        tuple(values),
        log=numeric and log_spaced(ordered),
    )


def _distinct_labels(field, values) -> tuple[str, ...]:
    """fmt of each value, with more digits where 3 would make two values look the same."""
    labels = [fmt(field, v) for v in values]
    digits = 4
    while len(set(labels)) < len(labels) and digits <= 17:
        labels = [_number(v, digits) if isinstance(v, float) else fmt(field, v) for v in values]
        digits += 1
    return tuple(labels)


def sort_key(field, value):
    if field == "layers" and isinstance(value, str):  # "8-3-8": by depth, then widths
        widths = parse_layers(value)
        return (len(widths), widths)
    return value


def _binned(field: str, x: np.ndarray, most: int) -> Scale:
    log = log_spaced(x)
    t = np.log10(x) if log else x
    step = _nice_step((t.max() - t.min()) / most)
    while True:  # bins aligned to multiples of step: one more may be needed; then widen
        # the largest value on an edge closes the last bin rather than opening one of its
        # own (lr_dense's lr = 10 alone in a bin "10-100" beside bins of 700 runs)
        top = max(math.ceil(t.max() / step), math.floor(t.min() / step) + 1)
        edges = np.arange(math.floor(t.min() / step), top + 1) * step
        if len(edges) - 1 <= most:
            break
        step = _nice_step(step * 1.01)
    raw = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    used = np.unique(raw)  # empty bins are not categories
    codes = np.searchsorted(used, raw)
    bounds = [(edges[k], edges[k + 1]) for k in used]
    if log:
        bounds = [(10**lo, 10**hi) for lo, hi in bounds]
    labels = tuple(f"{_number(lo, 2)}–{_number(hi, 2)}" for lo, hi in bounds)
    positions = np.array([np.median(x[codes == k]) for k in range(len(used))])
    return Scale(field, codes, labels, positions, tuple(bounds), binned=True, log=log)


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= raw."""
    if raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))


# --- roles: which field is the colour, which make panels, which are pooled ---


@dataclass(frozen=True)
class Roles:
    """The fields a figure shows, and those it pools (seed always, when swept)."""

    colour: str | None
    panels: tuple[str, ...]
    pooled: tuple[str, ...]


def roles(results, colour=None, panels=None, exclude=(), max_panels=MAX_PANELS) -> Roles:
    """The roles a figure gives the swept fields: ``colour`` the first swept field not in
    ``exclude``, ``panels`` the next ones while they make at most ``max_panels`` panels
    (a swept loss_fn first: losses of different functions are not comparable; init before
    init_scale, which panels pool where init is not normal). Either can be chosen by hand
    (a field name; ``panels`` a list, ``()`` for none)."""
    runs = results.runs
    fields = swept_of(results)
    check_field("colour", colour)
    for f in panels or ():
        check_field("panels", f)
    candidates = [f for f in fields if f != "seed" and f not in exclude]
    if "loss_fn" in candidates:  # losses are not comparable: each in its own panels
        candidates = ["loss_fn"] + [f for f in candidates if f != "loss_fn"]
    if colour is None:
        colour = next((f for f in candidates if f != "loss_fn"), None)
    if panels is None:
        panels, count = [], 1
        for f in candidates:
            if f == colour:
                continue
            n = len(scale(runs, f, PANEL_BINS))
            if count * n > max_panels:
                break
            panels.append(f)
            count *= n
    panels = list(panels)
    for field, (owner, _) in APPLIES_ONLY.items():  # init first: its panels that pool
        if {field, owner} <= set(panels) and panels.index(field) < panels.index(owner):
            panels.remove(owner)  # init_scale share a row
            panels.insert(panels.index(field), owner)
    shown = {colour, *panels, *exclude}
    pooled = [f for f in fields if f not in shown]
    return Roles(colour, tuple(panels), tuple(pooled))


def check_field(name: str, field) -> None:
    """A figure's keyword argument naming a field: None, or a RunConfig field."""
    if field is not None and field not in RunConfig.field_names():
        fields = ", ".join(RunConfig.field_names())
        raise ValueError(f"{name} must be None or a RunConfig field ({fields}), got {field!r}")


def swept_of(results) -> list[str]:
    """The swept fields of a Results, in the order its spec gave them."""
    if hasattr(results, "varied_fields"):
        return list(results.varied_fields)  # worked out once
    return swept(results.runs, getattr(results, "swept", None))


def panel_groups(runs: pd.DataFrame, fields) -> list[tuple[str, np.ndarray]]:
    """(title, boolean mask over runs) for each combination of ``fields`` present, in order.
    Where init is not "normal", init_scale changes nothing: those runs are pooled over it
    (one panel for each such init, its title without init_scale)."""
    if not fields:
        return [("", np.ones(len(runs), dtype=bool))]
    scales = [scale(runs, f, PANEL_BINS) for f in fields]
    codes = np.stack([s.codes for s in scales], axis=1)
    for field, (owner, value) in APPLIES_ONLY.items():  # set for every run, used by some:
        if field in fields and owner in fields:  # pooled where it changes nothing
            codes[(runs[owner] != value).to_numpy(), list(fields).index(field)] = -1
    combos = np.unique(codes, axis=0)
    groups = []
    for combo in combos:
        title = ", ".join(f"{s.field}={s.labels[c]}" for s, c in zip(scales, combo, strict=True)
                          if c >= 0)  # fmt: skip
        groups.append((title, (codes == combo).all(axis=1)))
    return groups


def subtitle(results, pooled=()) -> str:
    """What a figure's runs share and what it pools: the number of runs, the swept fields
    folded into its medians and bands (``pooled``), and the unswept fields' values."""
    runs = results.runs
    parts = [f"{len(runs):,} run{'s' * (len(runs) != 1)}"]
    if "stopped_at" in runs and runs["stopped_at"].notna().any():
        stopped = int(runs["stopped_at"].notna().sum())
        parts[0] += f" ({stopped:,} stopped early by successive halving: stopped_at)"
    if pooled:
        named = [f"{runs['seed'].nunique()} seeds" if f == "seed" else f for f in pooled]
        parts.append("median over " + ", ".join(named))
    varied = swept_of(results)
    fixed = [f for f in RunConfig.field_names() if f in runs and f not in varied]
    if len(runs):
        first = runs.iloc[0]
        shared = (_shared(runs, f) for f in fixed if _relevant(f, first))
        parts.append(", ".join(text for text in shared if text))
    return "; ".join(p for p in parts if p)


def _shared(runs, field) -> str | None:
    """``field=value`` for an unswept field (None where it has none). An optimizer's or
    a schedule's own field: its values in the runs it applies to, each with the
    optimizers or schedules that have it where not all runs do ('gamma=0.5 (step),
    0.9998 (exponential)')."""
    if field not in OWN_FIELDS:
        value = runs[field].iloc[0]
        return None if value is None else f"{field}={fmt(field, value)}"
    values = runs[field]
    has = values.notna()
    if not has.any():
        return None
    if has.all() and values.nunique() == 1:
        return f"{field}={fmt(field, values.iloc[0])}"
    owners = runs[OWNER[field]][has].groupby(values[has]).unique()  # two columns, not all
    return f"{field}=" + ", ".join(
        f"{fmt(field, value)} ({', '.join(sorted(map(str, names)))})"
        for value, names in owners.items()
    )


def _relevant(field, row) -> bool:
    """Whether ``field`` matters for this run (``row``): init_scale only where init is
    normal (APPLIES_ONLY); the others always."""
    owner, value = APPLIES_ONLY.get(field, (None, None))
    return owner is None or row.get(owner) == value
