"""Figures that compare the runs of a sweep, from the tables of :func:`fastbp.load_results`,
and ``python -m fastbp.plot DIR [--out PLOTDIR] [--format png|svg|pdf]``, which draws
them all and the sweep's report.html (:mod:`fastbp.report`).

Each function takes a :class:`fastbp.results.Results` and returns a matplotlib Figure
(made without pyplot, so nothing here needs a display), or raises :class:`Skip` saying
what the sweep lacks for it. What each figure shows follows one rule
(:mod:`fastbp.layout`): the primary swept field (``lr`` when swept) is the colour, or the
x axis; the next swept fields make panels; ``seed`` and any fields left over are pooled
into medians and bands, and the subtitle says so, with the values every run shares.
Keyword arguments choose the fields by hand.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import tempfile
import textwrap
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from fractions import Fraction
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colormaps, rc_context
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm, Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullLocator,
    PercentFormatter,
)
from threadpoolctl import threadpool_limits

from fastbp import cli, drawing, ranking
from fastbp.config import parse_layers
from fastbp.layout import (
    PANEL_BINS,
    TABLE_ROWS,
    check_field,
    describe,
    fmt,
    is_numeric,
    label,
    log_spaced,
    loss_label,
    panel_groups,
    roles,
    scale,
    subtitle,
    swept_of,
)
from fastbp.system import can_fork, collector_paused, die_with_parent

# Okabe-Ito, colour-blind safe, for up to 7 values; a 12-colour set for up to 12.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
PALETTE_12 = [colormaps["tab20"](k) for k in (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 5)]
MAX_LEGEND = 12  # more values than this get a colour bar instead of legend entries
COLOUR_BINS = 6  # a numeric colour field of values with few runs each: at most 6 bins
MAX_SERIES = 100  # and of more values than this, whatever their runs (each costs ~10 ms)
MAX_CURVE_POINTS = 300  # points per drawn curve: more are thinned (the step axis keeps 0)
BAND_QUANTILES = (0.1, 0.9)  # the band of a series of more than SMALL_GROUP runs
SMALL_GROUP = 10  # up to this many runs, a band spans them all (min to max)
NEUTRAL = "0.25"
WIDTH = 11.0  # inches


class Skip(Exception):
    """A figure cannot be drawn from this sweep; the message says why, in one line."""


class Absent(Skip):
    """A figure of something the sweep does not have at all (validation curves without
    validation data): skipped without a note."""


# --- colours ---


class Colours:
    """The colour of each run, by the value of one field: a fixed palette for a few values
    (with a legend), a colour map for many numeric values (with a colour bar)."""

    def __init__(self, runs: pd.DataFrame, field: str | None):
        self.field = field
        self.continuous, self.missing = False, False
        if field is None:
            self.scale, self.colours = None, [to_rgba(NEUTRAL)]
            return
        self.scale = scale(runs, field, most=None)  # every value its own category
        values = self._numbers(runs)
        n = len(self.scale)
        if values is not None and n > MAX_LEGEND and (len(runs) < 3 * n or n > MAX_SERIES):
            # Few runs per value (a random search): bins of values, each a series with its
            # median line and a legend entry, coloured along the map by their middle. A
            # series per value drew 50,000 one-run "medians", for minutes.
            self.scale = scale(runs, field, most=COLOUR_BINS)
            middles = self._numbers(runs)
            known = middles[~np.isnan(middles)]
            norm = (LogNorm if self.scale.log else Normalize)(known.min(), known.max())
            self.colours = [to_rgba(NEUTRAL) if np.isnan(v) else colormaps["viridis"](norm(v))
                            for v in middles]  # fmt: skip
            return
        n = len(self.scale)
        self.missing = values is not None and bool(np.isnan(values).any())  # momentum, Adam
        if values is not None and n > len(PALETTE):
            self.continuous = True
            known = values[~np.isnan(values)]
            log = log_spaced(known)
            self.norm = (LogNorm if log else Normalize)(known.min(), known.max())
            self.cmap = colormaps["viridis"]
            self.colours = [to_rgba(NEUTRAL) if np.isnan(v) else self.cmap(self.norm(v))
                            for v in values]  # fmt: skip
        elif n <= MAX_LEGEND:
            palette = PALETTE if n <= len(PALETTE) else PALETTE_12
            self.colours = [to_rgba(c) for c in palette[:n]]
        else:  # many categories: a colour bar with one tick per category
            self.cmap = ListedColormap(colormaps["turbo"](np.linspace(0.05, 0.95, n)))
            self.norm = BoundaryNorm(np.arange(n + 1) - 0.5, n)
            self.colours = list(self.cmap(self.norm(np.arange(n))))

    def _numbers(self, runs) -> np.ndarray | None:
        """Each category's number (NaN for a missing value, last), where the field is
        numeric; else None."""
        if self.scale.binned:  # the middle of each bin, on its axis
            edges = np.array([v if v is not None else (np.nan, np.nan) for v in self.scale.values])
            return np.sqrt(edges.prod(axis=1)) if self.scale.log else edges.mean(axis=1)
        if self.scale.numeric:
            return self.scale.positions
        if is_numeric(runs[self.field]) and self.scale.values[-1] is None:
            return np.array([*self.scale.values[:-1], np.nan], dtype=float)
        return None

    def codes(self, runs: pd.DataFrame) -> np.ndarray:
        """The colour index of each row of ``runs`` (which must be the runs it was made for,
        or a subset of their rows with the same index)."""
        if self.scale is None:
            return np.zeros(len(runs), dtype=int)
        return self.scale.codes_of(runs[self.field])

    def key(self, fig, axes, extra=()):
        """The legend (right of the top row of ``axes``) or colour bar, and ``extra`` legend
        entries (below the axes when there is a colour bar)."""
        extra = list(extra)
        if self.scale is None:
            if extra:
                _legend(axes, extra)
            return
        if self.continuous or len(self.scale) > MAX_LEGEND:
            bar = fig.colorbar(
                ScalarMappable(self.norm, self.cmap), ax=list(axes), label=label(self.field),
                shrink=0.9, aspect=30,
            )  # fmt: skip
            if not self.continuous:
                bar.set_ticks(np.arange(len(self.scale)), labels=list(self.scale.labels))
            elif isinstance(self.norm, LogNorm):
                _plain_log(bar.ax.yaxis)
            notes = [f"{_symbol(h)} {' '.join(h.get_label().split())}" for h in extra]
            if self.continuous and self.missing:
                notes.append(f"grey: {label(self.field)} {fmt(self.field, None)}")
            if notes:  # in the caption: a legend there could overlap it
                _caption(fig, "; ".join([*notes, fig.get_supxlabel()]))
            return
        handles = [
            Line2D([], [], color=c, lw=2.5, label=text)
            for c, text in zip(self.colours, self.scale.labels, strict=True)
        ]
        if extra:
            handles += [Line2D([], [], ls="", label=""), *extra]
        _legend(axes, handles, title=label(self.field))


def _symbol(handle) -> str:
    """A legend handle as text: its marker, or a dashed line."""
    marker = handle.get_marker()
    return "- -" if marker in (None, "None", "") else marker


def _legend(axes, handles, title=None):
    """A legend to the right of the top axes of the last column: never over the title or
    the data, and in the margin of the last column (beside one that is not, the layout
    would widen that column in every row)."""
    last = max(ax.get_subplotspec().colspan.stop for ax in axes)
    right = [ax for ax in axes if ax.get_subplotspec().colspan.stop == last]
    anchor = min(right, key=lambda ax: ax.get_subplotspec().rowspan.start)
    anchor.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
        frameon=False, fontsize=9, title=title, title_fontsize=9, alignment="left",
    )  # fmt: skip


# --- axes helpers ---


def _figure(n_panels, height=3.4, max_cols=3, width=WIDTH, grid=None, sharey=False):
    """A figure of ``n_panels`` axes, in rows of up to ``max_cols``; ``grid``: (columns,
    the slot of each panel, counted along the rows), where some slots stay empty (no axes
    there: each costs 15 ms to make, drawn or not). With ``sharey``, a panel beside
    another on its left leaves the y tick labels to it."""
    cols, slots = grid or (min(max_cols, int(np.ceil(np.sqrt(n_panels)))), range(n_panels))
    rows = -(-(max(slots) + 1) // cols)
    fig = Figure(figsize=(width, 1.0 + height * rows), layout="constrained")
    spec = fig.add_gridspec(rows, cols)
    axes = []
    for k in slots:
        ax = fig.add_subplot(spec[k // cols, k % cols], sharey=axes[0] if sharey and axes else None)
        if sharey and k % cols and k - 1 in slots:
            ax.tick_params(labelleft=False)
        axes.append(ax)
    return fig, axes


def _grid(runs, panels, groups) -> tuple[int, list[int]] | None:
    """Panels of two fields: a value of the first keeps its panels in one row, where it has
    at most PANEL_ROW (a 4 x 3 grid split one optimizer's panels over two rows); values with
    fewer panels than a row share one, each in the first row with room. (columns, the slot
    of each group) for _figure; None where that does not apply (the default grid)."""
    if len(panels) != 2:
        return None
    first = scale(runs, panels[0], PANEL_BINS).codes
    if any(len(np.unique(first[mask])) > 1 for _, mask in groups):
        return None  # a panel pooled over the first field (init_scale before init)
    values = [first[mask][0] for _, mask in groups]  # groups of a value are adjacent
    counts = pd.Series(values).value_counts(sort=False)
    cols = int(counts.max())
    if cols > PANEL_ROW or len(counts) < 2:
        return None
    free, start = [], {}  # room left in each row; the first slot of each value
    for value, n in counts.items():
        row = next((r for r, room in enumerate(free) if room >= n), None)
        if row is None:
            row = len(free)
            free.append(cols)
        start[value] = row * cols + cols - free[row]
        free[row] -= n
    place = pd.Series(values).groupby(values).cumcount()  # a panel's place in its value's
    return cols, [start[v] + int(k) for v, k in zip(values, place, strict=True)]


PANEL_ROW = 4  # panels in a row, at most, when a row holds one value of a field


def _titles(fig, title, results, pooled):
    """The title, and a smaller subtitle: what the runs share and what is pooled."""
    title = "\n".join(textwrap.wrap(title, int(fig.get_figwidth() * 8)))
    fig.suptitle(title, fontsize=12, fontweight="bold", x=0.01, ha="left")
    _caption(fig, subtitle(results, pooled))


def _panel_title(ax, text):
    """A panel's title, wrapped between its "field=value" pairs to the panel's width, so
    that titles of panels side by side never run into each other."""
    width = ax.get_position().width * ax.figure.get_figwidth()
    pairs = [pair.replace(" ", "\u00a0") for pair in text.split(", ")]
    lines = textwrap.wrap(", ".join(pairs), max(20, int(width * 11)),
                          break_long_words=False, break_on_hyphens=False)  # fmt: skip
    ax.set_title("\n".join(line.replace("\u00a0", " ") for line in lines), fontsize=10)


def _caption(fig, text):
    """The caption under the figure, wrapped to its width."""
    width = int(fig.get_figwidth() * 12.5)
    lines = textwrap.wrap(" ".join(text.split()), width)
    fig.supxlabel("\n".join(lines), fontsize=8.5, color="0.3", x=0.01, ha="left")


def _plain_log(axis):
    """Plain labels on a log axis: 1, 2, 3 ... 9 when it spans less than a decade, 1-2-5
    up to three decades, decades beyond, and fewer where the axis is too short for as
    many labels (a narrow panel); no minor ticks (each tick is costly to draw)."""
    lo, hi = sorted(axis.get_view_interval())
    ax = axis.axes
    box, (width, height) = ax.get_position(), ax.figure.get_size_inches()
    along_x = axis is ax.xaxis  # labels side by side need more room than stacked ones
    room = box.width * width / 0.6 if along_x else box.height * height / 0.3
    for subs, below in ((np.arange(1.0, 10.0), 10), ((1.0, 2.0, 5.0), 1000)):
        if lo > 0 and hi / lo < below and np.log10(hi / lo) * len(subs) + 1 <= room:
            axis.set_major_locator(LogLocator(base=10, subs=subs))
            break
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(NullLocator())


def _steps_axis(ax, steps):
    """Steps from 0: linear, or symlog (linear up to the first logged step) when they span
    two decades or more."""
    positive = steps[steps > 0]
    ax.set_xlim(0, max(steps.max(), 1))
    if len(positive) and positive.max() / positive.min() >= 100:
        first = positive.min()
        ax.set_xscale("symlog", linthresh=first, linscale=0.4)
        ax.xaxis.set_minor_locator(NullLocator())
        # 0, then the powers of ten from the first logged step on: a power below it sits
        # in the short linear stretch next to 0, and their labels ran together ("0 10")
        powers = 10.0 ** np.arange(np.ceil(np.log10(first)), np.log10(steps.max()) + 1e-9)
        ax.xaxis.set_major_locator(FixedLocator([0.0, *powers]))
    ax.xaxis.set_major_formatter(FuncFormatter(_step_text))


def _step_text(v, _=None) -> str:
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _whole_numbers(axis, most, **kw):
    """At most ``most`` ticks on whole numbers (rows or columns of a matrix), labelled as
    matplotlib's default would, by their value alone (no ticks made out of view)."""
    axis.set_major_locator(MaxNLocator(most, integer=True, **kw))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _log_y(ax, values) -> bool:
    finite = values[np.isfinite(values)]
    if len(finite) and finite.min() > 0:
        ax.set_yscale("log")
        return True
    return False


DODGE = 0.012  # of a numeric axis's span: series of shares a little apart


class XAxis:
    """A field along x: numeric at its true values (log where log-spaced), or categories at
    0, 1, 2 ... with their labels. ``at(runs, k, n)`` is each run's x, series k of n."""

    def __init__(self, runs, field):
        self.field = field
        self.cats = scale(runs, field, most=None)
        self.numeric = self.cats.numeric
        self.log = self.numeric and log_spaced(runs[field])
        if self.numeric:
            values = runs[field].to_numpy(dtype=float)
            self.span = (np.nanmin(values), np.nanmax(values))
        # Many values with few runs each (a random search): median lines over bins of x,
        # the same bins for every series, drawn at the median x of each bin's runs.
        n = len(self.cats)
        sparse = self.numeric and n > TABLE_ROWS and len(runs) < 3 * n
        self.bins = scale(runs, field, most=TABLE_ROWS) if sparse else None

    def at(self, runs, k=0, n=1):
        if self.numeric:
            return runs[self.field].to_numpy(dtype=float)
        return self.cats.codes_of(runs[self.field]) + self.offset(k, n)

    def offset(self, k, n) -> float:
        """Where series k of n sits within a category's slot (0 on a numeric axis)."""
        return 0.0 if self.numeric else 0.7 * ((k + 0.5) / n - 0.5)

    def dodge(self, x, k, n):
        """``x`` of series k of n moved a little aside on a numeric axis (DODGE of its span
        between neighbours), where series of the same values would hide each other: shares
        of runs, 0% and 100% for many series."""
        if not self.numeric or n < 2:
            return x
        step = DODGE * (k - (n - 1) / 2)
        lo, hi = self.span
        return x * (hi / lo) ** step if self.log else x + step * (hi - lo)

    def summary_groups(self, runs):
        """(x, mask) over ``runs`` for the median line: each value, or bins of values where
        a numeric field has many values with few runs each."""
        if self.bins is not None:
            codes = self.bins.codes_of(runs[self.field])
            return [(self.bins.positions[c], codes == c) for c in np.unique(codes)]
        codes = self.cats.codes_of(runs[self.field])
        if self.numeric:
            return [(self.cats.positions[c], codes == c) for c in np.unique(codes)]
        return [(c, codes == c) for c in np.unique(codes)]

    def dress(self, ax, runs):
        """Scale, limits (every run inside, diverged ones too), ticks and label."""
        if self.numeric:
            x = runs[self.field].to_numpy(dtype=float)
            lo, hi = x.min(), x.max()
            if self.log:
                ax.set_xscale("log")
                pad = (hi / lo) ** 0.04
                ax.set_xlim(lo / pad, hi * pad)
                _plain_log(ax.xaxis)
            else:
                pad = 0.04 * (hi - lo) or 0.5
                ax.set_xlim(lo - pad, hi + pad)
        else:
            ax.set_xticks(range(len(self.cats)), self.cats.labels)
            ax.set_xlim(-0.6, len(self.cats) - 0.4)
            if sum(len(t) for t in self.cats.labels) > 60:
                ax.tick_params(axis="x", labelrotation=30)
        ax.set_xlabel(label(self.field))


def _spread(values: pd.Series | np.ndarray, n_max: int):
    """(low, high) of a band: min to max for small groups, else the 10-90% quantiles."""
    if n_max <= SMALL_GROUP:
        return np.nanmin(values), np.nanmax(values)
    return tuple(np.nanquantile(values, BAND_QUANTILES))


def _band_text(n_max) -> str:
    if n_max <= SMALL_GROUP:
        return "band: min to max"
    lo, hi = BAND_QUANTILES
    return f"band: {lo:.0%} to {hi:.0%} of runs"


def _along_x(results, x, colour, panels, max_panels):
    """What a figure with a field along x starts from: the runs, that field (``x``, or the
    primary swept field), the roles of the others, their colours, the x axis and panels."""
    runs = results.runs
    check_field("x", x)
    fields = [f for f in swept_of(results) if f != "seed"]
    x = x or next(iter(fields), None)
    if x is None:
        raise Skip("nothing is swept besides seed: no field to compare along")
    if runs[x].nunique(dropna=False) < 2:
        raise Skip(f"{x} takes one value: nothing to compare along it")
    r = roles(results, colour, panels, exclude=(x,), max_panels=max_panels)
    return runs, x, r, Colours(runs, r.colour), XAxis(runs, x), panel_groups(runs, r.panels)


# --- the figures ---


def loss_curves(results, colour=None, panels=None, metric="loss") -> Figure:
    """Loss (or ``metric``: "accuracy", "val_loss", "val_accuracy") against step, step 0
    included: one median line per value of the colour field (band over seeds and pooled
    fields) in one axes per panel."""
    runs, curves = results.runs, results.curves
    if len(curves) == 0 or len(runs) == 0:
        raise Skip("no curves in this sweep")
    is_loss = metric in ("loss", "val_loss")
    if metric != "loss" and (metric not in curves or curves[metric].isna().all()):
        if metric.startswith("val"):
            raise Absent(f"no {metric} in this sweep (no validation data)")
        raise Skip(f"no {metric} in this sweep (its targets are not classes)")
    r = roles(results, colour, panels)
    colours = Colours(runs, r.colour)
    groups = panel_groups(runs, r.panels)
    panel = np.zeros(len(runs), dtype=int)
    for p, (_, mask) in enumerate(groups):
        panel[mask] = p
    series = colours.codes(runs)
    row = pd.Index(runs["run_id"]).get_indexer(curves["run_id"])
    step = curves["step"].to_numpy()
    keep = _display_steps(step, runs["steps"].to_numpy()) & (row >= 0)  # runs shown only
    loss = curves[metric].to_numpy(dtype=float, na_value=np.nan)
    # A diverging run climbs towards 1e300 before its loss turns NaN: the axes show up to
    # a few times the initial loss, and such a run leaves them through the top.
    start = loss[(step == 0) & np.isfinite(loss)]
    top = 3 * start.max() if len(start) and is_loss else 1.0
    # Far below that, a loss is the rounding of a solved task: shown at the bottom.
    bottom = _shown_bottom(loss[keep], top) if is_loss else None
    frame = pd.DataFrame(
        {
            "panel": panel[row],
            "series": series[row],
            "step": step,
            "loss": np.clip(loss, bottom or -np.inf, 10 * top),
        }
    )[keep]
    n_max = int(pd.Series(panel * len(colours.colours) + series).value_counts().max())
    grouped = frame.groupby(["panel", "series", "step"], sort=True)["loss"]
    if n_max <= SMALL_GROUP:
        stats = grouped.agg(["median", "min", "max"])
    else:
        lo, hi = BAND_QUANTILES
        stats = pd.concat(
            [grouped.median(), grouped.quantile(lo), grouped.quantile(hi)], axis=1,
            keys=["median", "min", "max"],
        )  # fmt: skip
    mixed = is_loss and _losses_differ(runs)  # accuracy compares across losses
    fig, axes = _figure(len(groups), sharey=not mixed, grid=_grid(runs, r.panels, groups))
    diverged = runs["diverged"].to_numpy(bool)
    with_bands = len(colours.colours) <= len(PALETTE)  # more bands than that hide each other
    floor_shown = False
    for p, (ax, (title, mask)) in enumerate(zip(axes, groups, strict=True)):
        lines, bands, line_colours = [], [], []
        if p in stats.index.get_level_values(0):
            for s, part in stats.loc[p].groupby(level=0):
                part = part.droplevel(0)
                part = part[np.isfinite(part["median"])]
                x = part.index.to_numpy(dtype=float)
                lines.append(np.column_stack([x, part["median"]]))
                bands.append(np.concatenate([
                    np.column_stack([x, part["min"]]), np.column_stack([x, part["max"]])[::-1]
                ]))  # fmt: skip
                line_colours.append(colours.colours[s])
        if with_bands:
            ax.add_collection(PolyCollection(bands, facecolors=line_colours, alpha=0.14, lw=0))
        ax.add_collection(LineCollection(lines, colors=line_colours, linewidths=1.6))
        single = [k for k, line in enumerate(lines) if len(line) == 1]  # diverged at once
        if single:
            points = np.concatenate([lines[k] for k in single])
            colours_1 = [line_colours[k] for k in single]
            ax.scatter(*points.T, color=colours_1, s=14, zorder=3, clip_on=False)
        ax.autoscale_view()
        _steps_axis(ax, frame.loc[frame["panel"] == p, "step"].to_numpy())
        n_div = int(diverged[mask].sum())
        extra = f" ({n_div} of {int(mask.sum())} diverged)" if n_div else ""
        floor_shown = (metric == "loss" and _floor_lines(ax, runs[mask], colours=colours)
                       or floor_shown)  # fmt: skip
        _panel_title(ax, title + extra)
        ax.set_xlabel("step")
        ax.grid(True, which="major", alpha=0.3)
    for ax, (_, mask) in zip(axes, groups, strict=True):
        if mixed or ax.get_subplotspec().is_first_col():
            label = loss_label(runs[mask] if mixed else runs) if is_loss else "accuracy"
            if metric.startswith("val_"):
                label = label.replace("loss", "validation loss", 1).replace("acc", "validation acc")
            ax.set_ylabel(label)
    finite = stats["min"].to_numpy()
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if not is_loss:  # a share of the samples
        axes[0].set_ylim(-0.03, 1.03)
        for ax in axes:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif len(finite) and _log_y(axes[0], finite):
        axes[0].set_ylim(finite.min() / 1.3, top)
        for ax in axes:
            if mixed:
                ax.set_yscale("log")
            _plain_log(ax.yaxis)
    what = f"median, {_band_text(n_max)}" if with_bands else f"median of each {r.colour} value"
    name = {"loss": "Loss", "accuracy": "Accuracy", "val_loss": "Validation loss"}
    title = name.get(metric, "Validation accuracy")
    _titles(fig, f"{title} curves: {what}", results, r.pooled)
    if bottom is not None:
        _caption(fig, f"{_below_text(bottom)}; {fig.get_supxlabel()}")
    colours.key(fig, axes, _floor_handle(floor_shown))
    return fig


# A log axis of losses shows at most this many decades below its top: far below, a loss is
# the rounding of a task solved exactly (xor's runs reach 1e-31), not a difference.
LOSS_DECADES = 10


def _shown_bottom(values, top) -> float | None:
    """The least loss a log axis topped at ``top`` shows, where some values lie below
    it (they are drawn there); None where none do."""
    bottom = top / 10**LOSS_DECADES
    with np.errstate(invalid="ignore"):
        below = (values > 0) & (values < bottom)
    return bottom if below.any() else None


def _below_text(bottom) -> str:
    return (f"losses below {bottom:.0e} ({LOSS_DECADES} decades under the top of the axis: the "
            f"task solved, the rest is rounding) are drawn at {bottom:.0e}")  # fmt: skip


def _display_steps(step: np.ndarray, final_steps: np.ndarray) -> np.ndarray:
    """A mask over logged steps: all of them up to MAX_CURVE_POINTS, else a thinned set
    spread evenly on the drawn axis, with step 0 and every run's last step kept."""
    unique = np.unique(step)
    if len(unique) <= MAX_CURVE_POINTS:
        return np.ones(len(step), dtype=bool)
    positive = unique[unique > 0]
    if positive.max() / positive.min() >= 100:
        targets = np.geomspace(positive.min(), positive.max(), MAX_CURVE_POINTS)
    else:
        targets = np.linspace(positive.min(), positive.max(), MAX_CURVE_POINTS)
    picks = positive[np.clip(np.searchsorted(positive, targets), 0, len(positive) - 1)]
    chosen = np.union1d(np.union1d(picks, [0]), np.unique(final_steps))
    return np.isin(step, chosen)


def final_loss(results, x=None, colour=None, panels=None) -> Figure:
    """Final loss of every run at its own x (the primary field unless ``x``), a median line
    and a band per value of the colour field; diverged runs as crosses along the top; beside
    a dot that stands for several runs (a plateau they share), how many, where x has at
    most PLATEAU_COUNTS_UP_TO positions; else, at the right, each plateau's fraction and
    its runs (_plateau_labels)."""
    runs, x, r, colours, xaxis, groups = _along_x(results, x, colour, panels, max_panels=6)
    mixed = _losses_differ(runs)
    fig, axes = _figure(len(groups), height=4.6 if len(groups) == 1 else 3.4, sharey=not mixed,
                        grid=_grid(runs, r.panels, groups))  # fmt: skip
    series = colours.codes(runs)
    n_series = len(colours.colours)
    n_max, floor_shown = 1, False
    every = runs.loc[~runs["diverged"], "final_loss"].to_numpy(dtype=float)
    top = np.nanmax(every) if np.isfinite(every).any() else 1.0
    bottom = _shown_bottom(every, top)
    shown = runs["final_loss"].clip(lower=bottom) if bottom else runs["final_loss"]
    counted = []  # panels with counts beside their dots (then no plateau labels)
    for ax, (title, mask) in zip(axes, groups, strict=True):
        counted.append(False)
        for s in np.unique(series[mask]):
            part = runs[mask & (series == s)]
            colour = colours.colours[s]
            xs = xaxis.at(part, s, n_series)
            ok = ~part["diverged"].to_numpy(bool) & np.isfinite(part["final_loss"].to_numpy())
            ys = shown[part.index].to_numpy()
            early = _stopped(part)  # a halving's: its loss where it stopped, as a ring
            for dots, ring in ((ok & ~early, False), (ok & early, True)):
                if dots.any():  # each scatter costs 3 ms, drawn or not
                    ax.scatter(xs[dots], ys[dots], s=16, alpha=0.75,
                               facecolors="none" if ring else colour,
                               edgecolors=colour if ring else "none", zorder=3)  # fmt: skip
            med = []
            for pos, where in xaxis.summary_groups(part):
                values = ys[where & ok]
                n_max = max(n_max, len(values))
                if len(values):
                    med.append((pos, np.median(values), *_spread(values, len(values))))
            places = np.unique(xs[ok])  # runs at one x and one value are one dot: how many
            beside = len(places) <= PLATEAU_COUNTS_UP_TO
            counted[-1] |= beside
            for place in places if beside else ():
                for value, count in _plateaus(ys[ok & (xs == place)]):
                    ax.annotate(f"{count}", (place, value), xytext=(4 + 13 * s, 0),
                                textcoords="offset points", fontsize=7, color=colour,
                                va="center", zorder=5, bbox=_LABEL_BOX)  # fmt: skip
            if med:
                pos, mid, lo, hi = np.array(med).T
                if xaxis.numeric:
                    ax.plot(pos, mid, color=colour, lw=1.5, zorder=4)
                    ax.fill_between(pos, lo, hi, color=colour, alpha=0.12, lw=0)
                else:  # per category: a median tick and a bar over the band, no joining line
                    pos = pos + xaxis.offset(s, n_series)
                    half = 0.3 / n_series
                    ax.hlines(mid, pos - half, pos + half, color=colour, lw=2, zorder=4)
                    ax.vlines(pos, lo, hi, color=colour, lw=5, alpha=0.25, zorder=2)
            if (~ok).any():
                ax.scatter(xs[~ok], np.full((~ok).sum(), 0.97), transform=ax.get_xaxis_transform(),
                           marker="x", s=36, color=colour, clip_on=False, zorder=5)  # fmt: skip
        floor_shown = _floor_lines(ax, runs[mask], xaxis) or floor_shown
        _panel_title(ax, title)
        xaxis.dress(ax, runs)
        ax.grid(True, which="major", alpha=0.3)
    finite = shown[~runs["diverged"]].to_numpy(dtype=float)
    if _log_y(axes[0], finite):
        if bottom is not None:
            axes[0].set_ylim(bottom / 3, top * 3)
        for ax in axes:
            if mixed:
                ax.set_yscale("log")
            _plain_log(ax.yaxis)
    elif not np.isfinite(finite).any():
        for ax in axes:
            ax.set_yticks([])
            ax.text(0.5, 0.5, "no run has a finite final loss", transform=ax.transAxes,
                    ha="center", va="center", color="0.3")  # fmt: skip
    settled = (~runs["diverged"] & np.isfinite(runs["final_loss"])).to_numpy()
    if bottom is not None:
        settled = settled & (runs["final_loss"].to_numpy(dtype=float) > bottom)  # not drawn there
    for ax, (_, mask), beside in zip(axes, groups, counted, strict=True):
        if not beside:  # many positions along x: how many runs each plateau holds, at the right
            _plateau_labels(ax, runs.loc[mask & settled, "final_loss"].to_numpy(dtype=float))
        if mixed or ax.get_subplotspec().is_first_col():
            ax.set_ylabel(loss_label(runs[mask] if mixed else runs, "final loss"))
    extra = _diverged_handle(runs) + _stopped_handle(runs) + _floor_handle(floor_shown)
    _titles(fig, f"Final loss by {label(x)}: every run, median line, {_band_text(n_max)}",
            results, r.pooled)  # fmt: skip
    if bottom is not None:
        _caption(fig, f"{_below_text(bottom)}; {fig.get_supxlabel()}")
    colours.key(fig, axes, extra)
    return fig


PLATEAU_COUNTS_UP_TO = 12  # positions along x: with more, the counts would run together
_LABEL_BOX = dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.75)


def _plateaus(values, least: int = 3) -> list[tuple[float, int]]:
    """(value, count) of the values at least ``least`` runs share to 9 significant digits:
    runs stalled on one plateau (5/64, 4/64 of the encoder) that one dot would hide."""
    finite = values[np.isfinite(values) & (values != 0)]
    if len(finite) < least:
        return []
    keys = np.array([float(f"{v:.9g}") for v in finite])
    uniques, counts = np.unique(keys, return_counts=True)
    return [(float(v), int(c)) for v, c in zip(uniques, counts, strict=True) if c >= least]


def _plateau_labels(ax, values) -> None:
    """At the right edge of a panel, each plateau on which at least 2% of its runs (3 or
    more) stalled exactly, as the fraction it is and how many runs are on it or within
    ON_PLATEAU of it, as the eye counts them ("5/64 · 312 runs"): where runs split between
    solved and stalled, and into which stalls. Fractions share the least common denominator
    of those shown; a plateau that is no small fraction is not labelled; labels closer than
    a line of text to a fuller one are left out. Call once the y limits are final."""
    least = max(3, math.ceil(0.02 * len(values)))
    fractions = {}
    for value, _ in _plateaus(values, least):
        f = Fraction(value).limit_denominator(MAX_DENOMINATOR)
        if abs(float(f) - value) <= 1e-9 * abs(value):  # on it, or still closing in:
            count = int((np.abs(values - value) <= ON_PLATEAU * abs(value)).sum())  # one dot
            fractions[value] = (f, count)
    if not fractions:
        return
    common = math.lcm(*(f.denominator for f, _ in fractions.values()))
    lo, hi = ax.get_ylim()
    scale = np.log10 if ax.get_yscale() == "log" else (lambda v: v)
    height = ax.get_position().height * ax.figure.get_figheight() * 72  # points
    placed = []
    for value, (f, count) in sorted(fractions.items(), key=lambda item: -item[1][1]):
        if not lo <= value <= hi:
            continue
        at = (scale(value) - scale(lo)) / (scale(hi) - scale(lo)) * height
        if any(abs(at - other) < 9 for other in placed):
            continue
        placed.append(at)
        text = f"{f}" if common > MAX_DENOMINATOR else f"{f * common}/{common}"
        note = ax.annotate(f"{text} · {count:,} runs", (1, value),
                           xycoords=("axes fraction", "data"), xytext=(-3, 1),
                           textcoords="offset points", ha="right", va="bottom", fontsize=7,
                           color="0.25", bbox=_LABEL_BOX, zorder=6)  # fmt: skip
        note.set_in_layout(False)


MAX_DENOMINATOR = 1024  # a plateau is labelled as a fraction up to this denominator
ON_PLATEAU = 0.005  # runs this close to a plateau (relative) are counted on it: one dot


def _losses_differ(runs) -> bool:
    """Whether the runs have different loss functions (then no shared loss axis)."""
    return "loss_fn" in runs and runs["loss_fn"].nunique() > 1


def _floor_lines(ax, runs, xaxis=None, colours=None) -> bool:
    """The loss floors of these runs (fastbp.metrics.loss_floor), as dashed lines,
    each labelled at the left; whether there was one. Where the floors differ with the
    field along x (``xaxis``, categories such as architectures), each category's floor
    spans that category only; where they differ with the colour field, each floor is
    drawn, unlabelled, in the colour of its runs (grey where runs of several colours
    share it)."""
    if "loss_floor" not in runs:
        return False
    values = runs["loss_floor"].to_numpy(dtype=float, na_value=np.nan)
    floors = np.unique(values[np.isfinite(values)])
    if xaxis is not None and not xaxis.numeric and len(floors) > 1:
        per = _one_floor_each(values, xaxis.cats.codes_of(runs[xaxis.field]))
        if per is not None:
            for c, value in per.items():
                ax.hlines(value, c - 0.45, c + 0.45, color="0.35", lw=0.9, ls=(0, (4, 3)), zorder=1)
            return True
    if colours is not None and colours.scale is not None and len(floors) > 1:
        per = _one_floor_each(values, colours.codes(runs))
        if per is not None:
            for value in floors:
                owners = {c for c, v in per.items() if v == value}
                colour = colours.colours[owners.pop()] if len(owners) == 1 else "0.35"
                ax.axhline(value, color=colour, lw=1.1, ls=(0, (4, 3)), zorder=1)
            return True
    for value in floors[:4]:
        ax.axhline(value, color="0.35", lw=0.9, ls=(0, (4, 3)), zorder=1)
        note = ax.annotate(f"floor {value:.3g}", (0, value), xycoords=("axes fraction", "data"),
                           xytext=(3, 2), textcoords="offset points", ha="left", va="bottom",
                           fontsize=7, color="0.3", annotation_clip=True)  # fmt: skip
        note.set_in_layout(False)  # losses start high: the left is clear
    return len(floors) > 0


def _one_floor_each(values, codes) -> dict | None:
    """{code: its runs' floor} where the runs of each code share one floor (codes whose
    floor is unknown left out); None where some code's runs have several."""
    per = {}
    for c in np.unique(codes):
        mine = np.unique(values[codes == c])
        if len(mine) > 1:
            return None
        if np.isfinite(mine[0]):
            per[int(c)] = mine[0]
    return per


def _floor_handle(shown: bool) -> list:
    if not shown:
        return []
    text = "loss floor: no network\nof this shape does better"
    return [Line2D([], [], color="0.35", lw=0.9, ls=(0, (4, 3)), label=text)]


def _stopped(runs) -> np.ndarray:
    """Whether each run was stopped early by a successive halving."""
    if "stopped_at" not in runs:
        return np.zeros(len(runs), dtype=bool)
    return runs["stopped_at"].notna().to_numpy()


def _stopped_handle(runs) -> list:
    n = int(_stopped(runs).sum())
    if not n:
        return []
    text = f"stopped early by the halving: {n} runs\n(their loss where they stopped)"
    return [Line2D([], [], ls="", marker="o", mfc="none", color="k", label=text)]


def _diverged_handle(runs) -> list:
    n = int(runs["diverged"].sum())
    if not n:
        return []
    text = f"diverged: {n} of {len(runs)} runs (at the top)"
    return [Line2D([], [], ls="", marker="x", color="k", label=text)]


def heatmap(results, x: str | None = None, y: str | None = None) -> Figure:
    """Median final loss over two swept fields (default: the first two), with the number
    of runs per cell when it varies; many numeric values are binned. A cell without runs is
    blank; a cell says "diverged" only for runs that diverged, with how many of how many."""
    runs = results.runs
    check_field("x", x)
    check_field("y", y)
    fields = [f for f in swept_of(results) if f != "seed"]
    x = x or next(iter(fields), None)
    if y is None:
        y = next((f for f in fields if f != x), None)
        if y is None:
            raise Skip("needs two swept fields besides seed" if x is None else
                       f"needs a second swept field besides {x} and seed")  # fmt: skip
    for key in (x, y):
        if key not in runs.columns or runs[key].nunique(dropna=False) < 2:
            raise Skip(f"{key} is not swept")
    sx, sy = scale(runs, x), scale(runs, y)
    # Losses of different functions share no colour scale: accuracy, where there is one.
    column, what = "final_loss", "final loss"
    if _losses_differ(runs):
        if "accuracy" not in runs or (runs["accuracy"].isna() & ~runs["diverged"]).any():
            raise Skip("runs of different loss functions: their losses share no colour scale")
        column, what = "accuracy", "final accuracy"
    finite = ~runs["diverged"].to_numpy(bool) & np.isfinite(runs[column].to_numpy(dtype=float))
    losses = runs[column].to_numpy(dtype=float)
    cells = pd.DataFrame(
        {"i": sy.codes, "j": sx.codes, "loss": np.where(finite, losses, np.nan), "ok": finite}
    )
    table = cells.groupby(["i", "j"]).agg(
        n=("ok", "size"),
        ok=("ok", "sum"),
        median=("loss", "median"),  # of finite losses
    )
    values = np.full((len(sy), len(sx)), np.nan)
    counts = np.zeros((len(sy), len(sx)), dtype=int)
    oks = np.zeros((len(sy), len(sx)), dtype=int)
    for (i, j), row in table.iterrows():
        values[i, j], counts[i, j], oks[i, j] = row["median"], row["n"], row["ok"]
    shown = values[np.isfinite(values)]
    width = min(max(6.0, 0.95 * len(sx) + 3.2), 16.0)
    fig = Figure(figsize=(width, 1.6 + 0.62 * len(sy) + 1.0), layout="constrained")
    ax = fig.subplots()
    if len(shown):
        positive = shown[shown > 0]
        spans = len(positive) == len(shown) and positive.max() / positive.min() > 3
        norm = (
            LogNorm(positive.min(), positive.max())
            if spans
            else Normalize(shown.min(), shown.max())
        )
    else:
        norm = Normalize(0, 1)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", norm=norm, aspect="auto")
    uneven = len(set(counts[counts > 0].ravel())) > 1 or sx.binned or sy.binned
    small = len(sx) > 8
    for (i, j), n in np.ndenumerate(counts):
        if n == 0:
            continue  # no run here: left blank
        ok = int(oks[i, j])
        if not ok:
            lines = [f"{n} of {n}", "diverged"]
        else:
            lines = [f"{values[i, j]:.3g}"]
            if ok < n:
                lines.append(f"{n - ok} of {n} diverged")
            elif uneven:
                lines.append(f"n={n}")
        light = ok and norm(values[i, j]) < 0.55
        # inside its cell: the layout need not measure it (a heatmap of many cells)
        ax.text(j, i, "\n".join(lines), ha="center", va="center", in_layout=False,
                fontsize=7 if small else 8.5, color="white" if light else "black")  # fmt: skip
    ax.set_xticks(range(len(sx)), sx.labels)
    ax.set_yticks(range(len(sy)), sy.labels)
    if sum(len(t) for t in sx.labels) > 6 * len(sx) or small:
        ax.tick_params(axis="x", labelrotation=35)
    ax.set_xlabel(label(x) + (" (binned)" if sx.binned else ""))
    ax.set_ylabel(label(y) + (" (binned)" if sy.binned else ""))
    bar_label = (
        loss_label(runs, "median final loss") if column == "final_loss" else f"median {what}"
    )
    bar = fig.colorbar(image, ax=ax, label=bar_label)
    if isinstance(norm, LogNorm):
        _plain_log(bar.ax.yaxis)
    each = "" if uneven else f", {counts.max()} runs per cell"
    pooled = [f for f in swept_of(results) if f not in (x, y)]
    _titles(fig, f"Median {what} by {label(x)} and {label(y)}{each}", results, pooled)
    return fig


def steps_to_threshold(results, threshold=None, x=None, colour=None, panels=None) -> Figure:
    """Above: the first logged step at which each run reached the threshold, at its own x,
    with a median line per value of the colour field. Below: the share of runs that
    reached it at all."""
    threshold = threshold if threshold is not None else results.threshold
    if threshold is None:
        raise Skip("the sweep has no threshold ([sweep].threshold)")
    runs, x, r, colours, xaxis, groups = _along_x(results, x, colour, panels, max_panels=4)
    fig = Figure(figsize=(WIDTH, 6.4), layout="constrained")
    grid = fig.add_gridspec(2, len(groups), height_ratios=[2.4, 1])
    tops, bottoms = [], []
    series = colours.codes(runs)
    n_series = len(colours.colours)
    reached_all = runs["steps_to_threshold"].notna().to_numpy()
    for k, (title, mask) in enumerate(groups):
        top = fig.add_subplot(grid[0, k], sharey=tops[0] if tops else None)
        bottom = fig.add_subplot(grid[1, k], sharex=top)
        tops.append(top)
        bottoms.append(bottom)
        for s in np.unique(series[mask]):
            part = runs[mask & (series == s)]
            colour = colours.colours[s]
            got = reached_all[mask & (series == s)]
            xs = xaxis.at(part, s, n_series)
            steps = part["steps_to_threshold"].to_numpy(dtype=float, na_value=np.nan)
            top.scatter(xs[got], steps[got], s=16, color=colour, alpha=0.75, edgecolors="none",
                        zorder=3)  # fmt: skip
            med, share = [], []
            for pos, where in xaxis.summary_groups(part):
                pos = pos + xaxis.offset(s, n_series)
                k, n = int(got[where].sum()), int(where.sum())
                low, high = ranking.wilson(k, n)
                share.append((pos, k / n, k / n - float(low), float(high) - k / n))
                if got[where].any():
                    med.append((pos, np.median(steps[where & got])))
            if med:
                top.plot(*np.array(med).T, color=colour, lw=1.5, zorder=4)
            pos, mid, below, above = np.array(share).T
            pos = xaxis.dodge(pos, s, n_series)  # equal shares side by side, not on top
            yerr = np.maximum([below, above], 0.0)  # rounding: never below 0
            bottom.errorbar(pos, mid, yerr=yerr, color=colour, lw=1.3, marker="o",
                            ms=3.5, elinewidth=0.9, capsize=2)  # fmt: skip
        _panel_title(top, title)
        top.grid(True, which="major", alpha=0.3)
        bottom.grid(True, which="major", alpha=0.3)
        bottom.set_ylim(-0.05, 1.05)
        bottom.yaxis.set_major_formatter(PercentFormatter(1.0))
        xaxis.dress(bottom, runs)
        top.tick_params(labelbottom=False)
    if reached_all.any():
        reached = runs.loc[reached_all, "steps_to_threshold"].to_numpy(dtype=float)
        if _log_y(tops[0], np.maximum(reached, 1)):
            tops[0].set_ylim(max(reached.min(), 1) / 1.5, reached.max() * 1.5)
            for ax in tops:
                _plain_log(ax.yaxis)
                ax.yaxis.set_major_formatter(FuncFormatter(_step_text))
    else:
        tops[0].text(0.5, 0.5, "no run reached the threshold", transform=tops[0].transAxes,
                     ha="center", va="center", color="0.3")  # fmt: skip
    tops[0].set_ylabel(f"first logged step with\nloss ≤ {threshold:g}")
    bottoms[0].set_ylabel("runs that reached\nit (95% interval)")
    _titles(fig, f"Steps to reach loss {threshold:g}, by {label(x)}", results, r.pooled)
    colours.key(fig, tops)
    return fig


def shown_runs(results) -> list[tuple[str, pd.Series]]:
    """(title, runs row) of the runs learned_params shows: the median seed of the best
    setting (fastbp.ranking's rule), and of the best setting without biases where bias
    is swept and both kinds trained."""
    runs = results.runs
    table = results.settings()
    by_id = runs.set_index("run_id")
    trained = table[table["diverged"] < table["runs"]]  # a setting with a finite run
    picks = [("best setting, median seed", trained.iloc[0])]
    fields = swept_of(results)
    if "bias" in fields and (~runs["bias"]).any() and runs["bias"].any():
        without = trained[~trained["bias"].astype(bool)]
        if len(without) and bool(picks[0][1]["bias"]):
            picks.append(("best without biases, median seed", without.iloc[0]))
    shown = []
    for title, setting in picks:
        row = by_id.loc[setting["median_run"]].copy()
        row["run_id"] = setting["median_run"]
        if row["diverged"]:  # its median seed diverged: the best of its seeds that did not
            same = ranking.runs_of(runs, setting, results.swept)
            same = same[~same["diverged"]]
            row = same.loc[same["final_loss"].idxmin()]
            title = title.replace("median seed", "best seed that did not diverge")
        shown.append((title, row))
    return shown


# Rows of a run's outputs whose values are written in their cells: more run together at
# the figure's height (6-bit parity's 48 training samples did).
ANNOTATED_ROWS = 24


def learned_params(results, x=None) -> Figure:
    """The first hidden layer's final biases by the primary field (runs with biases), and
    the network's outputs for every sample for the median seed of the best setting (and
    of the best setting without biases, when bias is swept), by fastbp.ranking's rule."""
    from fastbp.data import make_dataset
    from fastbp.reference import predict
    from fastbp.results import config_from_row

    runs, params = results.runs, results.params
    if len(params) == 0:
        raise Skip("no parameters in this sweep")
    finite = runs[~runs["diverged"] & runs["final_loss"].notna()]
    if not len(finite):
        raise Skip("every run diverged: no trained parameters to show")
    check_field("x", x)
    fields = swept_of(results)
    x = x or next((f for f in fields if f != "seed"), None)
    best = shown_runs(results)
    fig = Figure(figsize=(WIDTH, 4.8), layout="constrained")
    grid = fig.add_gridspec(1, 1 + len(best), width_ratios=[1.4] + [1] * len(best))
    _bias_strip(fig.add_subplot(grid[0]), finite[finite["bias"]], params, x)
    outputs, inputs = [], []
    for _, row in best:
        try:
            X, _ = make_dataset(config_from_row(row))
        except ValueError as err:  # the data file moved or changed since the sweep
            raise Skip(f"its outputs need the data again, and {err}") from None
        outputs.append(predict(results.run_params(row["run_id"]), X, row["activation"]))
        inputs.append(X)
    vmax = max(float(np.abs(Y).max()) for Y in outputs) or 1.0
    for k, ((what, row), Y) in enumerate(zip(best, outputs, strict=True), start=1):
        ax = fig.add_subplot(grid[k])
        image = ax.imshow(Y, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        if Y.size <= 100 and Y.shape[0] <= ANNOTATED_ROWS:  # values only where they fit
            for (i, j), v in np.ndenumerate(Y):
                ax.text(j, i, f"{round(v, 1) + 0.0:.1f}", ha="center", va="center", fontsize=6.5,
                        color="white" if abs(v) > 0.6 * vmax else "black",
                        in_layout=False)  # fmt: skip
        ax.set_xlabel("output unit")
        for axis, count in ((ax.xaxis, Y.shape[1]), (ax.yaxis, Y.shape[0])):
            _whole_numbers(axis, min(count, 9), min_n_ticks=1)
        X = inputs[k - 1]
        if X.shape[1] <= 4 and len(X) <= 16:  # few short inputs (xor, parity): show them
            ax.set_yticks(range(len(X)), [" ".join(f"{v:g}" for v in x) for x in X])
        ax.set_ylabel("input" if X.shape[1] <= 4 and len(X) <= 16 else "sample")
        named = describe(fields, [row[f] for f in fields]) if fields else f"run {row['run_id']}"
        pairs = [p.replace(" ", "\u00a0") for p in named.split(", ")]  # break between pairs
        lines = [what, *textwrap.wrap(", ".join(pairs), 34), f"{loss_label(runs, 'final loss')} "
                 f"{row['final_loss']:.3g}"]  # fmt: skip
        ax.set_title("\n".join(lines), fontsize=9)
    fig.colorbar(image, ax=fig.axes[1:], shrink=0.8, label="network output")
    _titles(fig, "Learned parameters and outputs", results, ())
    return fig


def _bias_strip(ax, runs, params, x):
    """Final first-layer biases of ``runs``, one column per category of ``x``."""
    if not len(runs):
        ax.text(0.5, 0.5, "no run with biases", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    b1 = params[(params["layer"] == 1) & (params["kind"] == "b")]
    row = pd.Index(runs["run_id"]).get_indexer(b1["run_id"])
    b1 = b1[row >= 0]
    row = row[row >= 0]
    if x is None:
        codes, labels = np.zeros(len(runs), dtype=int), ["all runs"]
    else:
        s = scale(runs, x, most=8)
        codes, labels = s.codes, s.labels
    colours = Colours(runs, x)
    run_colour = np.array(colours.colours)[colours.codes(runs)]
    rng = np.random.default_rng(0)  # jitter only: positions, not data
    values = b1["value"].to_numpy(dtype=float)
    where = codes[row]
    ax.scatter(where + rng.uniform(-0.2, 0.2, len(values)), values, s=10,
               c=run_colour[row], alpha=0.8, edgecolors="none")  # fmt: skip
    for k in range(len(labels)):
        v = values[where == k]
        if len(v):
            ax.text(k, 1.01, f"{np.mean(v < 0):.0%} < 0", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xticks(range(len(labels)), labels)
    if sum(len(t) + 2 for t in labels) > 36:  # more than the strip's width holds
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_xlabel(label(x) if x else "")
    ax.set_ylabel("final bias value")
    ax.set_title("first hidden layer's biases (runs with biases)", fontsize=10, pad=16)


def generalisation(results, colour=None) -> Figure:
    """Where there is held-out data: left, each run's final held-out metric against its
    training one (accuracy where the targets are classes, else loss), with the line where
    they are equal and the chance level; right, the held-out metric of the best settings
    (fastbp.ranking's rule): the median over their seeds, and the range of the middle
    80%, best first."""
    runs = results.runs
    if "val_loss" not in runs or runs["val_loss"].isna().all():
        raise Absent("no held-out data in this sweep")
    classes = "val_accuracy" in runs and runs["val_accuracy"].notna().any()
    train_col, held_col = ("accuracy", "val_accuracy") if classes else ("final_loss", "val_loss")
    what = "accuracy" if classes else "loss"
    ok = ~runs["diverged"].to_numpy(bool) & runs[held_col].notna().to_numpy()
    r = roles(results, colour, panels=(), max_panels=1)
    colours = Colours(runs, r.colour)
    table = results.settings()
    top = table.head(GENERALISATION_SETTINGS)
    fields = ranking.setting_fields(runs, results.swept)
    names, mids, lows, highs = [], [], [], []
    codes = ranking.setting_codes(runs, fields)
    for _, setting in top.iterrows():
        members = ranking.runs_of(runs, setting, codes=codes)
        values = members.loc[~members["diverged"], held_col].to_numpy(float)
        values = values[np.isfinite(values)]
        named = describe(fields, [setting[f] for f in fields]) if fields else "all runs"
        names.append("\n".join(textwrap.wrap(named, 38)))
        spread = (
            (np.median(values), *np.percentile(values, [10, 90])) if len(values) else (np.nan,) * 3
        )
        for column, value in zip((mids, lows, highs), spread, strict=True):
            column.append(value)
    # a row per setting, as tall as its name's lines (7.5 pt type): names of many fields
    # wrap to 3 lines, and 12 of them did not fit in 4.8 in
    lines = sum(name.count("\n") + 1 for name in names)
    height = max(4.8, 1.9 + 0.14 * lines + 0.05 * len(names))
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.25])
    series = colours.codes(runs)
    x, y = runs[train_col].to_numpy(float), runs[held_col].to_numpy(float)
    # runs at one point (accuracies of a few held-out samples take few values) as one dot
    # whose area counts them, the largest drawn first
    points = pd.DataFrame({"series": series[ok], "x": x[ok], "y": y[ok]})
    points = points.groupby(["series", "x", "y"], sort=False).size().reset_index(name="runs")
    points = points.sort_values("runs", ascending=False, kind="stable")
    left.scatter(points["x"], points["y"], s=14 * np.minimum(points["runs"], STACKED_MAX),
                 color=[colours.colours[k] for k in points["series"]], alpha=0.7,
                 edgecolors="none")  # fmt: skip
    lo = float(np.nanmin(np.r_[x[ok], y[ok]])) if ok.any() else 0.0
    hi = float(np.nanmax(np.r_[x[ok], y[ok]])) if ok.any() else 1.0
    left.plot([lo, hi], [lo, hi], color="0.45", lw=0.9, ls=":", label="held-out = training")
    chance = _chance(runs, classes)
    for ax in (left, right):
        if chance is not None:
            line = ax.axhline if ax is left else ax.axvline
            line(
                chance,
                color="0.3",
                lw=0.9,
                ls="--",
                label=f"chance ({_chance_text(chance, classes)})",
            )
    if classes:
        for axis in (left.xaxis, left.yaxis, right.xaxis):
            axis.set_major_formatter(PercentFormatter(1.0))
    left.set_xlabel(f"final training {what}")
    left.set_ylabel(f"final held-out {what}")
    left.set_title("every run", fontsize=10)
    left.grid(True, alpha=0.3)
    rows = np.arange(len(names))
    mids, lows, highs = map(np.array, (mids, lows, highs))
    right.hlines(rows, lows, highs, color=NEUTRAL, lw=4, alpha=0.35)
    right.scatter(mids, rows, color=NEUTRAL, s=22, zorder=3)
    right.set_yticks(rows, names, fontsize=7.5)
    right.invert_yaxis()
    right.set_xlabel(f"held-out {what}: median over seeds, 10%-90%")
    basis = BASIS_WORDS[ranking.basis(runs, results.threshold)]
    _panel_title(right, f"the {len(names)} best settings, by {basis}")
    right.grid(True, axis="x", alpha=0.3)
    _titles(fig, f"Generalisation: held-out against training {what}", results, ())
    extra = left.get_legend_handles_labels()[0]
    if (points["runs"] > 1).any():
        most = int(points["runs"].max())
        extra.append(Line2D([], [], ls="", marker="o", ms=7, color=NEUTRAL, alpha=0.7,
                            label=f"dot area: its runs\n(up to {most:,})"))  # fmt: skip
    colours.key(fig, [left], extra)
    return fig


STACKED_MAX = 30  # a dot of generalisation grows with its runs up to this many


def what_matters(results) -> Figure:
    """The share of the spread of the ranking quantity that each swept field, each pair of
    them and the seed explain (fastbp.importance), largest first."""
    from fastbp import importance

    runs = results.runs
    table = importance.shares(runs, results.swept, results.threshold)
    if len(table) < 2:
        raise Skip("one source of spread at most: nothing to compare")
    _, what = importance.quantity(runs, results.threshold)
    colour = {"field": PALETTE[0], "pair": PALETTE[1], "seed": NEUTRAL, "rest": "0.75"}
    names = ["\n".join(textwrap.wrap(name, 48)) for name in table["source"]]
    extra = sum(name.count("\n") for name in names)  # a wrapped name's second line
    fig = Figure(figsize=(WIDTH * 0.75, 1.6 + 0.32 * len(table) + 0.16 * extra),
                 layout="constrained")  # fmt: skip
    ax = fig.add_subplot()
    rows = np.arange(len(table))
    ax.barh(rows, table["share"], color=[colour[k] for k in table["kind"]], height=0.65)
    for row, share in zip(rows, table["share"], strict=True):
        ax.text(max(share, 0) + 0.005, row, f"{share:.0%}", va="center", fontsize=8)
    ax.set_yticks(rows, names, fontsize=8.5)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlim(min(0.0, table["share"].min() * 1.1), max(1.0, table["share"].max() * 1.15))
    xlabel = f"share of the spread (variance) of the {what} over all runs"
    if not table.attrs["balanced"]:  # a union, a random search: the order matters
        xlabel += " (not a full grid: each is what it adds to those that explain more)"
    ax.set_xlabel("\n".join(textwrap.wrap(xlabel, 64)))
    ax.grid(True, axis="x", alpha=0.3)
    _titles(fig, "What matters: each field, each pair, the seed", results, ())
    return fig


# At most this many hidden units get a panel of their own in inside_run.
INSIDE_UNITS = 8
INSIDE_GRID = 160  # points along each input axis of a decision surface
CODE_SAMPLES = 64  # samples whose hidden code inside_run shows, at most
CODE_NAMED_UNITS = 8  # units named "unit k" under the code; beyond, their numbers


def inside_run(results) -> Figure:
    """A look inside the typical run of the best setting (its median seed, as
    learned_params picks it). Two inputs (xor, a user's 2-D data): the network's output
    over the input plane, as TensorFlow Playground draws it, with the training samples,
    and each unit of the first hidden layer's own surface, with the line where its input
    crosses zero. Otherwise the hidden code of each sample at the narrowest hidden layer
    (the encoder's bottleneck), its dead units (0 for every sample) marked."""
    from fastbp.data import make_dataset
    from fastbp.reference import ACTIVATIONS, Layer
    from fastbp.results import config_from_row

    runs = results.runs
    if len(results.params) == 0:
        raise Skip("no parameters in this sweep")
    if runs["diverged"].all():
        raise Skip("every run diverged: no trained network to look inside")
    title, row = shown_runs(results)[0]
    try:
        config = config_from_row(row)
        X, T = make_dataset(config)
    except ValueError as err:  # the data file moved or changed since the sweep
        raise Skip(f"it needs the data again, and {err}") from None
    layers = [Layer(W, b) for W, b in results.run_params(row["run_id"])]
    act = ACTIVATIONS[config.activation][0]
    fields = swept_of(results)
    named = describe(fields, [row[f] for f in fields]) if fields else f"run {row['run_id']}"
    heading = f"Inside the {title.replace('median seed', 'typical run (its median seed)')}: {named}"
    if X.shape[1] == 2:
        return _surfaces(results, config, X, T, layers, act, heading)
    if len(X) > CODE_SAMPLES:
        raise Skip(f"{len(X)} samples: a hidden code is shown for at most {CODE_SAMPLES}, and a "
                   "decision surface for 2 inputs")  # fmt: skip
    return _code(results, config, X, layers, act, heading)


def _surfaces(results, config, X, T, layers, act, heading) -> Figure:
    from fastbp.reference import forward

    span = [(X[:, k].min(), X[:, k].max()) for k in range(2)]
    pad = [0.25 * max(hi - lo, 1e-9) for lo, hi in span]
    axes_values = [
        np.linspace(lo - p, hi + p, INSIDE_GRID) for (lo, hi), p in zip(span, pad, strict=True)
    ]
    g0, g1 = np.meshgrid(*axes_values)
    plane = np.column_stack([g0.ravel(), g1.ravel()])
    Y, hidden = forward(layers, plane, act)
    _, seen = forward(layers, X, act)
    first = hidden[0] if hidden else None
    units = 0 if first is None else first.shape[1]
    shown = min(units, INSIDE_UNITS)
    fig, axes = _figure(1 + shown, height=3.3, max_cols=4)
    ax = axes[0]
    output, what = _output_view(Y, config)
    target = T[:, 0] if T.shape[1] == 1 else (T.argmax(axis=1) == T.shape[1] - 1) * 1.0
    low, high = (0.0, 1.0) if what != "output" else (float(target.min()), float(target.max()))
    high = high if high > low else low + 1.0
    # the output and the targets on one scale: a sample sits on its own colour where the
    # network gets it right
    image = ax.pcolormesh(g0, g1, output.reshape(g0.shape), cmap="RdBu_r", shading="auto",
                          vmin=low, vmax=high)  # fmt: skip
    ax.scatter(X[:, 0], X[:, 1], c=target, cmap="RdBu_r", vmin=low, vmax=high,
               edgecolors="black", s=60, zorder=3)  # fmt: skip
    _panel_title(ax, f"network {what} (dots: targets)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    dead = [] if first is None else np.flatnonzero(~(seen[0] != 0).any(axis=0))
    z_first = plane @ layers[0].W + layers[0].b
    top = max(float(np.abs(first[:, :shown]).max()), 1e-12) if shown else 1.0
    for k, ax in enumerate(axes[1:]):
        values = first[:, k].reshape(g0.shape)
        mesh = ax.pcolormesh(g0, g1, values, cmap="PuOr_r", shading="auto", vmin=-top, vmax=top)
        ax.contour(g0, g1, z_first[:, k].reshape(g0.shape), levels=[0.0], colors="black",
                   linewidths=1.0, linestyles="--")  # fmt: skip
        ax.scatter(X[:, 0], X[:, 1], c="none", edgecolors="0.2", s=25, zorder=3)
        state = " (dead: 0 for every sample)" if k in dead else ""
        _panel_title(ax, f"hidden unit {k + 1}{state}")
    if shown:
        fig.colorbar(mesh, ax=axes[1:], shrink=0.6, label="hidden unit's activation")
    for ax in axes:
        ax.set_xlabel("input 1")
        ax.set_ylabel("input 2")
        ax.set_aspect("equal", adjustable="box")
    more = f"; units {shown + 1}-{units} not shown" if units > shown else ""
    _titles(fig, heading, results, ())
    _caption(fig, f"hidden units: their activation over the input plane, dashed where their "
                  f"input crosses 0; {len(dead)} of {units} dead{more}. "
                  + fig.get_supxlabel())  # fmt: skip
    return fig


def _output_view(Y, config):
    """The first output over the plane as a person reads it: a probability for bce
    (sigmoid), the predicted class's probability for cross-entropy, else the value."""
    if config.loss_fn == "bce":
        return 1 / (1 + np.exp(-Y[:, 0])), "probability of class 1"
    if config.loss_fn == "cross_entropy":
        shifted = np.exp(Y - Y.max(axis=1, keepdims=True))
        return shifted[:, -1] / shifted.sum(axis=1), "probability of the last class"
    return Y[:, 0], "output"


def _code(results, config, X, layers, act, heading) -> Figure:
    from fastbp.reference import forward

    _, hidden = forward(layers, X, act)
    if not hidden:
        raise Skip("no hidden layer: nothing inside")
    at = int(np.argmin([h.shape[1] for h in hidden]))  # the narrowest: the code
    code = hidden[at]
    dead = ~(code != 0).any(axis=0)
    units = code.shape[1]  # a column each, wide enough for its values (0.40 in)
    width = min(max(WIDTH * 0.6, 2.6 + 0.4 * units), WIDTH)
    fig = Figure(figsize=(width, min(1.6 + 0.22 * len(X), 7.5)), layout="constrained")
    ax = fig.add_subplot()
    top = max(float(np.abs(code).max()), 1e-12)
    image = ax.imshow(code, cmap="PuOr_r", vmin=-top, vmax=top, aspect="auto")
    if code.size <= 200 and len(X) <= ANNOTATED_ROWS and width / units >= 0.38:
        for (i, j), v in np.ndenumerate(code):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.6 * top else "black", in_layout=False)  # fmt: skip
    word = "unit " if units <= CODE_NAMED_UNITS else ""  # beyond, numbers: "unit 16" overlapped
    names = [f"{word}{j + 1}" + ("\ndead" if dead[j] else "") for j in range(units)]
    ax.set_xticks(range(units), names, fontsize=None if units <= 12 else 8)
    for j in np.flatnonzero(dead):
        ax.get_xticklabels()[j].set_color("crimson")
    ax.set_ylabel("input sample")
    _whole_numbers(ax.yaxis, min(len(X), 16))
    narrowest = ", the narrowest" if len(hidden) > 1 else ""
    code_word = ": the code" if config.dataset == "encoder" else ""
    ax.set_xlabel(f"hidden unit, layer {at + 1} of {len(hidden)} ({units} units"
                  f"{narrowest}{code_word})")  # fmt: skip
    fig.colorbar(image, ax=ax, shrink=0.8, label="activation")
    _titles(fig, heading, results, ())
    _caption(fig, f"{int(dead.sum())} of {code.shape[1]} units dead (0 for every sample). "
             + fig.get_supxlabel())  # fmt: skip
    return fig


GENERALISATION_SETTINGS = 12
BASIS_WORDS = {"val_accuracy": "median held-out accuracy", "val_loss": "median held-out loss",
               "success": "share that reached the threshold", "accuracy": "median accuracy",
               "loss": "median final loss"}  # fmt: skip


def _chance(runs, classes) -> float | None:
    """The chance level of the held-out metric: accuracy 1 / classes (two for one output);
    loss ln 2 for BCE on one output, ln(classes) for cross-entropy; None for MSE."""
    n_out = int(parse_layers(runs["layers"].iloc[0])[-1])
    n_classes = 2 if n_out == 1 else n_out
    if classes:
        return 1.0 / n_classes
    loss_fn = runs["loss_fn"].iloc[0] if "loss_fn" in runs else "mse"
    if "loss_fn" in runs and runs["loss_fn"].nunique() > 1:
        return None
    return {"bce": math.log(2) if n_out == 1 else None,
            "cross_entropy": math.log(n_classes)}.get(loss_fn)  # fmt: skip


def _chance_text(chance, classes) -> str:
    return f"{chance:.0%}" if classes else f"{chance:.3g}"


FIGURES = {
    "loss_curves": loss_curves,
    "accuracy_curves": lambda results: loss_curves(results, metric="accuracy"),
    "val_loss_curves": lambda results: loss_curves(results, metric="val_loss"),
    "val_accuracy_curves": lambda results: loss_curves(results, metric="val_accuracy"),
    "final_loss": final_loss,
    "heatmap": heatmap,
    "steps_to_threshold": steps_to_threshold,
    "learned_params": learned_params,
    "inside_run": inside_run,
    "generalisation": generalisation,
    "what_matters": what_matters,
}


def write_figures(
    results, out: Path, fmt: str = "png", note=print, dpi=110, meanwhile=None
) -> list[Path]:
    """Draw every figure the sweep allows into ``out``; note each one skipped, and why.

    Where it is safe (Linux, this process runs no other thread, two cores or more), the
    figures are drawn in forked processes side by side: the same files, in about half the
    time. Elsewhere (a notebook, say), one after the other. ``meanwhile``: a function this
    process calls while its workers draw (or first, where it draws them itself).
    """
    out.mkdir(parents=True, exist_ok=True)
    names = list(FIGURES)
    job, outcomes = (results, out, fmt, dpi), None
    waiting = [meanwhile] if meanwhile else []  # called once, however the figures are drawn
    # The cores this process may run on. (fastbp.system.cores() also reads a container's
    # CPU quota, but imports joblib: 40 ms of python -m fastbp.plot. Where a quota allows
    # one core, two workers take as long as one.)
    side_by_side = len(os.sched_getaffinity(0)) if can_fork() else 1  # fork: Linux only
    if side_by_side > 1:
        global _JOB
        _JOB = job  # inherited by the forked workers, never pickled
        if hasattr(results, "varied_fields"):  # asked by most figures: worked out once
            results.varied_fields, results.settings()
        try:
            # concurrent.futures, not multiprocessing.Pool: a worker that dies is an error
            # here (BrokenProcessPool), where a Pool waits for it for ever. One figure a
            # task, the longest first: a process that is free takes the next. A process
            # per core, each with one BLAS thread: with BLAS's own threads besides, they
            # fought for the cores (random_search's figures took 14% longer).
            context = multiprocessing.get_context("fork")
            with (
                threadpool_limits(limits=1, user_api="blas"),
                ProcessPoolExecutor(
                    min(len(names), side_by_side), context, die_with_parent
                ) as pool,
            ):
                drawn = pool.map(_draw_named, sorted(names, key=COST.get, reverse=True))
                while waiting:
                    waiting.pop()()
                every = list(drawn)  # all of them, or BrokenProcessPool before any is kept
                outcomes = {name: outcome for name, outcome, _ in every}
                for _, _, text in every:
                    drawing.keep_text(text)
        except BrokenProcessPool:  # killed, out of memory: one at a time, in this process
            pass
        finally:
            _JOB = None
    while waiting:
        waiting.pop()()
    if outcomes is None:
        outcomes = dict(_draw_share(names, job))
    drawing.save_stored_text()  # the strings' layouts, for the next drawing's workers
    written = []
    for name in names:
        outcome = outcomes[name]
        if isinstance(outcome, Path):
            written.append(outcome)
        elif isinstance(outcome, Failed):
            note(f"error: {name} could not be drawn: {outcome}")
        elif outcome is not None:
            note(f"skipped {name}: {outcome}")
    return written


class Failed(str):
    """Why a figure could not be drawn (an unexpected error), as text: a worker hands
    back no exception object, which might not survive pickling."""


# Milliseconds each figure took to draw in a worker (lr_grid, random_search, schedules;
# 2026-12-04): the longest are handed out first, the shortest even out the end.
COST = {"loss_curves": 350, "learned_params": 340, "val_loss_curves": 300,
        "val_accuracy_curves": 300, "accuracy_curves": 290, "steps_to_threshold": 270,
        "final_loss": 230, "generalisation": 200, "heatmap": 160, "inside_run": 135,
        "what_matters": 110}  # fmt: skip
_JOB = None


def _draw_named(name):
    """(name, what _draw_one gives, the text layouts it worked out) for one figure of the
    job the worker inherited."""
    with collector_paused():
        return name, _draw_one(name, *_JOB), drawing.new_text()


def _draw_share(names, job):
    """[(name, Path written or the reason it was skipped)] for these figures."""
    with collector_paused():  # its passes cost about a tenth of the drawing time
        return [(name, _draw_one(name, *job)) for name in names]


def _draw_one(name, results, out, fmt, dpi):
    try:
        fig = FIGURES[name](results)
    except Absent:
        return None  # nothing to say
    except Skip as why:
        return str(why)
    except Exception as err:  # noqa: BLE001 - the other figures are still drawn
        return Failed(f"{type(err).__name__}: {err}")
    path = out / f"{name}.{fmt}"
    try:
        with rc_context(drawing.DRAWING):
            if fmt == "png":
                drawing.save_png(fig, path, dpi)
            else:
                fig.savefig(path, dpi=dpi)
    except OSError as err:  # a full disk, a folder taken away
        return Failed(f"cannot be written to {path}: {err.strerror or err}")
    return path


__all__ = ["FIGURES", "Colours", "Skip", "write_figures", *FIGURES]


def main(argv=None) -> int:
    parser = cli.Parser(
        prog="python -m fastbp.plot", description="Draw the comparison figures of a sweep."
    )
    parser.add_argument("dir", help="a sweep's output directory, e.g. results/lr_grid")
    parser.add_argument("--out", help="where to write the figures (default: DIR/plots)")
    parser.add_argument("--format", choices=("png", "svg", "pdf"), default="png")
    args = parser.parse_args(argv)
    directory = Path(args.dir)
    from fastbp.results import load_results

    try:
        results = load_results(directory)
    except FileNotFoundError as err:  # not a sweep's folder, or one not finished
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # damaged, or its tables disagree
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not len(results.runs):
        print(f"error: {directory}: its tables hold no run yet: nothing to draw", file=sys.stderr)
        return 2
    out = directory / "plots" if args.out is None else Path(args.out)
    problem = None
    if args.out is not None and (not args.out.strip() or out.exists() and not out.is_dir()):
        problem = "must be a directory"
    else:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a file in its path, no permission
            problem = f"cannot be created: {err.strerror or err}"
    if problem:
        shown = f"--out {args.out!r}" if args.out is not None else str(out)
        print(f"error: {shown}: {problem}", file=sys.stderr)
        return 2
    try:
        return draw(directory, out, args.format, results)
    except KeyboardInterrupt:
        print(f"interrupted: the figures in {out} may not all be drawn; run the command "
              "again to draw them", file=sys.stderr)  # fmt: skip
        return 130


def draw(directory: Path, out: Path | None = None, fmt: str = "png", results=None) -> int:
    """Write every figure of a sweep directory and its report.html; print what was
    written and what was skipped. ``results``: its tables, where already loaded."""
    matplotlib.use("Agg")  # headless: figures go to files
    from fastbp.report import Page
    from fastbp.results import load_results

    out = out or directory / "plots"
    results = load_results(directory) if results is None else results
    skipped = []

    def note(line):
        print(line, file=sys.stderr if line.startswith("error: ") else sys.stdout)
        skipped.append(line)

    pages = []  # the report's words and tables, worked out while the figures are drawn
    written = write_figures(
        results, out, fmt, note=note, meanwhile=lambda: pages.append(Page(directory, results))
    )
    failed = any(line.startswith("error: ") for line in skipped)
    if fmt == "pdf":  # a page cannot show PDF: the report gets PNG copies
        with tempfile.TemporaryDirectory() as tmp:
            pngs = write_figures(results, Path(tmp), "png", note=lambda _: None)
            report = pages[0].write(pngs, out, skipped)
    else:
        report = pages[0].write(written, out, skipped)
    print(f"{len(written)} figure(s) and {report.name} in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
