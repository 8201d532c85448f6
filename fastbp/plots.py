"""Figures that compare the runs of a sweep, from the tables of :func:`fastbp.load_results`.

Each function takes a :class:`fastbp.results.Results` and returns a matplotlib Figure
(made without pyplot, so nothing here needs a display), or raises :class:`Skip` saying
what the sweep lacks for it. Every figure gives each learning rate the same colour,
from a colour-blind-safe palette (Okabe & Ito).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from fastbp.config import RunConfig

# Okabe-Ito, ordered so that neighbouring learning rates get clearly different colours.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#000000", "#CC79A7", "#E69F00", "#56B4E9"]
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P"]
MAX_PANELS = 12
WIDTH = 11.0  # inches: room for the legend to the right of the data


class Skip(Exception):
    """A figure cannot be drawn from this sweep; the message says why, in one line."""


def swept(runs: pd.DataFrame) -> list[str]:
    """The RunConfig fields that take more than one value in these runs: lr first, seed last."""
    keys = [k for k in RunConfig.field_names() if runs[k].nunique(dropna=False) > 1]
    return sorted(keys, key=lambda k: (k != "lr", k == "seed"))


def lr_colours(runs: pd.DataFrame) -> dict[float, str]:
    """One colour per learning rate, largest lr first, the same in every figure."""
    lrs = sorted(runs["lr"].unique(), reverse=True)
    if len(lrs) <= len(PALETTE):
        return dict(zip(lrs, PALETTE, strict=False))
    cmap = colormaps["viridis"]
    return {lr: cmap(k / (len(lrs) - 1)) for k, lr in enumerate(lrs)}


def fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:g}"
    return str(value)


def describe(keys, values) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in zip(keys, values, strict=True)) or "all runs"


def _groups(runs, keys):
    """(values, rows) for each combination of ``keys`` present, in sorted order."""
    if not keys:
        return [((), runs)]
    return [
        (values if isinstance(values, tuple) else (values,), rows)
        for values, rows in runs.groupby(keys, sort=True, dropna=False)
    ]


def _select(frame, keys, values):
    """The rows of frame whose ``keys`` hold ``values``."""
    for k, v in zip(keys, values, strict=True):
        frame = frame[frame[k] == v]
    return frame


def _title(results, what):
    keys = [k for k in swept(results.runs) if k != "seed"]
    seeds = results.runs["seed"].nunique()
    over = f"{seeds} seeds" if seeds > 1 else "1 seed"
    return f"{what} — swept: {', '.join(keys) or 'nothing'} ({len(results.runs)} runs, {over})"


def _figure(n_panels, height=3.6, max_cols=3, **shared):
    cols = min(max_cols, int(np.ceil(np.sqrt(n_panels))))
    rows = -(-n_panels // cols)
    fig = Figure(figsize=(WIDTH, 0.6 + height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **shared).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _plain_log_ticks(axis):
    """Label a log axis 0.1, 0.2 ... rather than 1 × 10⁻¹, 2 × 10⁻¹."""
    label = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(label)
    axis.set_minor_formatter(label)


def _lr_legend(fig, colours, extra=()):
    handles = [Line2D([], [], color=c, lw=2, label=f"lr = {fmt(lr)}") for lr, c in colours.items()]
    fig.legend(handles=[*handles, *extra], loc="outside right upper", frameon=False)


def loss_curves(results) -> Figure:
    """Loss against step, one line per learning rate (median over seeds, band min..max),
    one panel per combination of the other swept fields."""
    runs = results.runs
    if len(results.curves) == 0:
        raise Skip("no curves in this sweep")
    keys = [k for k in swept(runs) if k not in ("lr", "seed")]
    panels = _groups(runs, keys)
    if len(panels) > MAX_PANELS:
        raise Skip(
            f"{len(panels)} combinations of {', '.join(keys)}: more than {MAX_PANELS} panels"
        )
    colours = lr_colours(runs)
    curves = results.curves.merge(runs[["run_id", "lr", *keys]], on="run_id")
    # A diverging run climbs towards 1e300 before its loss turns NaN: the panels show up to
    # a few times the initial loss, and such a run leaves them through the top.
    top = 3 * curves.loc[curves["step"] == 0, "loss"].max()
    curves["loss"] = curves["loss"].clip(upper=10 * top)
    positive = curves.loc[curves["step"] > 0, "step"]
    log_x = len(positive) and positive.max() / positive.min() >= 100
    fig, axes = _figure(len(panels), sharey=True)
    for ax, (values, _) in zip(axes, panels, strict=True):
        here = _select(curves, keys, values)
        for lr, part in here.groupby("lr", sort=False):
            stats = part.groupby("step")["loss"].agg(["median", "min", "max"])
            if log_x:
                stats = stats[stats.index > 0]
            ax.plot(stats.index, stats["median"], color=colours[lr], lw=1.6)
            ax.fill_between(
                stats.index, stats["min"], stats["max"], color=colours[lr], alpha=0.12, lw=0
            )
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        if log_x:
            ax.set_xscale("log")
        title = describe(keys, values)
        diverged = int(_select(runs, keys, values)["diverged"].sum())
        ax.set_title(title + (f" ({diverged} diverged)" if diverged else ""), fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (MSE)")
        ax.grid(True, which="major", alpha=0.3)
    low = curves["loss"][curves["loss"] > 0].min()
    axes[0].set_ylim(low / 1.3, top)
    fig.suptitle(_title(results, "Loss curves: median over seeds, band = min to max"))
    _lr_legend(fig, colours)
    return fig


def _against_lr(results):
    """What a figure with learning rate on its x axis starts from: the runs, the other
    swept fields, the lr colours, and a one-panel figure."""
    runs = results.runs
    if runs["lr"].nunique() < 2:
        raise Skip("needs at least two learning rates")
    keys = [k for k in swept(runs) if k not in ("lr", "seed")]
    fig = Figure(figsize=(WIDTH, 5.2), layout="constrained")
    return runs, keys, lr_colours(runs), fig, fig.subplots()


def final_loss(results) -> Figure:
    """Final loss against learning rate, log-log: one line per group of the other swept
    fields (median over seeds, band min..max), single runs as dots coloured by lr, and
    diverged runs as crosses along the top edge."""
    runs, keys, colours, fig, ax = _against_lr(results)
    handles = []
    groups = _groups(runs, keys)
    for n, (values, part) in enumerate(groups):
        # Each group is nudged sideways (by a constant factor, on the log axis) so that
        # the runs of different groups at the same lr do not hide each other.
        nudge = 10 ** (0.07 * (n - (len(groups) - 1) / 2))
        stats = part.groupby("lr")["final_loss"].agg(["median", "min", "max"])
        style, marker = LINESTYLES[n % len(LINESTYLES)], MARKERS[n % len(MARKERS)]
        x = stats.index * nudge
        ax.plot(x, stats["median"], color="0.2", ls=style, lw=1.4)
        ax.fill_between(x, stats["min"], stats["max"], color="0.5", alpha=0.07, lw=0)
        finite = part[~part["diverged"]]
        ax.scatter(
            finite["lr"] * nudge,
            finite["final_loss"],
            c=finite["lr"].map(colours),
            marker=marker,
            s=18,
            zorder=3,
            edgecolors="white",
            linewidths=0.4,
        )
        handles.append(
            Line2D(
                [],
                [],
                color="0.2",
                ls=style,
                marker=marker,
                ms=5,
                markerfacecolor="0.5",
                label=describe(keys, values),
            )
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)
    diverged = runs[runs["diverged"]]
    if len(diverged):
        top = ax.get_xaxis_transform()  # x in data, y in axes fraction
        ax.scatter(
            diverged["lr"],
            np.full(len(diverged), 0.97),
            transform=top,
            marker="x",
            c=diverged["lr"].map(colours),
            s=40,
            zorder=4,
            clip_on=False,
        )
        handles.append(
            Line2D([], [], ls="", marker="x", color="k", label=f"diverged ({len(diverged)} runs)")
        )
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final loss (MSE)")
    ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(_title(results, "Final loss against learning rate"))
    _lr_legend(fig, colours, extra=[Line2D([], [], ls="", label=""), *handles])
    return fig


def heatmap(results, x: str = "lr", y: str | None = None) -> Figure:
    """Median final loss over two swept fields (default: lr and the field with the most
    values besides seed), annotated, on a log colour scale."""
    runs = results.runs
    candidates = [k for k in swept(runs) if k not in (x, "seed")]
    if y is None:
        if not candidates:
            raise Skip(f"needs a second swept field besides {x} and seed")
        y = max(candidates, key=lambda k: runs[k].nunique())
    for key in (x, y):
        if key not in runs.columns or runs[key].nunique() < 2:
            raise Skip(f"{key} is not swept")
    table = runs.pivot_table(index=y, columns=x, values="final_loss", aggfunc="median")
    values = table.to_numpy(dtype=float)
    finite = values[np.isfinite(values) & (values > 0)]
    if not len(finite):
        raise Skip("no finite final loss to show")
    fig = Figure(
        figsize=(max(6.0, 1.1 * table.shape[1] + 3), 1.0 + 0.7 * table.shape[0] + 1.2),
        layout="constrained",
    )
    ax = fig.subplots()
    norm = LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.0001))
    image = ax.imshow(values, cmap="viridis", norm=norm, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        text = "diverged" if not np.isfinite(v) else f"{v:.3g}"
        light = np.isfinite(v) and norm(v) < 0.55
        ax.text(
            j, i, text, ha="center", va="center", fontsize=9, color="white" if light else "black"
        )
    ax.set_xticks(range(table.shape[1]), [fmt(v) for v in table.columns])
    ax.set_yticks(range(table.shape[0]), [fmt(v) for v in table.index])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    others = [k for k in swept(runs) if k not in (x, y)]
    bar = fig.colorbar(image, ax=ax, label="median final loss")
    _plain_log_ticks(bar.ax.yaxis)
    fig.suptitle(
        f"Median final loss by {x} and {y}"
        + (f" (median over {', '.join(others)})" if others else ""),
        fontsize=11,
    )
    return fig


def steps_to_threshold(results, threshold: float | None = None) -> Figure:
    """Logged step at which each run first reached the threshold, against learning rate;
    runs that never reached it are counted along the top edge."""
    threshold = threshold if threshold is not None else results.threshold
    if threshold is None:
        raise Skip("the sweep has no threshold ([sweep].threshold)")
    runs, keys, colours, fig, ax = _against_lr(results)
    reached = runs[runs["steps_to_threshold"].notna()]
    handles = []
    for n, (values, part) in enumerate(_groups(reached, keys)):
        stats = part.groupby("lr")["steps_to_threshold"].median()
        style = LINESTYLES[n % len(LINESTYLES)]
        ax.plot(stats.index, stats.to_numpy(float), color="0.3", ls=style, lw=1.4)
        handles.append(Line2D([], [], color="0.3", ls=style, label=describe(keys, values)))
    ax.scatter(
        reached["lr"],
        reached["steps_to_threshold"].to_numpy(float),
        s=18,
        zorder=3,
        c=reached["lr"].map(colours),
        edgecolors="white",
        linewidths=0.4,
    )
    ax.set_xscale("log")
    if len(reached):
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        low, high = reached["steps_to_threshold"].min(), reached["steps_to_threshold"].max()
        ax.set_ylim(10 ** np.floor(np.log10(max(low, 1))), high * 1.5)  # a labelled decade
    ax.set_xlim(runs["lr"].min() / 2, runs["lr"].max() * 2)
    top = ax.get_xaxis_transform()
    for lr, part in runs.groupby("lr"):
        missed = int(part["steps_to_threshold"].isna().sum())
        if missed:
            ax.scatter(
                [lr],
                [1.0],
                transform=top,
                marker="v",
                s=60,
                color=colours[lr],
                clip_on=False,
                zorder=4,
            )
            ax.text(
                lr,
                1.03,
                f"{missed}/{len(part)}",
                transform=top,
                ha="center",
                va="bottom",
                fontsize=8,
            )
    handles.append(
        Line2D([], [], ls="", marker="v", color="k", label="never reached (count / runs)")
    )
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"first logged step with loss ≤ {threshold:g}")
    ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(_title(results, f"Steps to reach loss {threshold:g}"))
    _lr_legend(fig, colours, extra=[Line2D([], [], ls="", label=""), *handles])
    return fig


def learned_params(results) -> Figure:
    """The first hidden layer's final biases by learning rate, and the network's outputs
    for every input for the best run (and the best run without biases, when swept)."""
    from fastbp.reference import predict

    runs, params = results.runs, results.params
    if len(params) == 0:
        raise Skip("no parameters in this sweep")
    colours = lr_colours(runs)
    with_bias = runs[runs["bias"] & ~runs["diverged"]]
    finite = runs[~runs["diverged"] & runs["final_loss"].notna()]
    if not len(finite):
        raise Skip("every run diverged")
    best = [("best run", finite.loc[finite["final_loss"].idxmin()])]
    if runs["bias"].nunique() > 1 and (~finite["bias"]).any():
        no_bias = finite[~finite["bias"]]
        best.append(("best run without biases", no_bias.loc[no_bias["final_loss"].idxmin()]))
    fig = Figure(figsize=(WIDTH, 4.4), layout="constrained")
    grid = fig.add_gridspec(1, 1 + len(best), width_ratios=[1.4] + [1] * len(best))
    ax = fig.add_subplot(grid[0])
    if len(with_bias):
        b1 = params[(params["layer"] == 1) & (params["kind"] == "b")]
        b1 = b1.merge(with_bias[["run_id", "lr"]], on="run_id")
        lrs = sorted(b1["lr"].unique(), reverse=True)
        rng = np.random.default_rng(0)  # jitter only: positions, not data
        for k, lr in enumerate(lrs):
            v = b1.loc[b1["lr"] == lr, "value"].to_numpy()
            ax.scatter(k + rng.uniform(-0.18, 0.18, len(v)), v, s=12, color=colours[lr], alpha=0.8)
            ax.text(
                k,
                1.01,
                f"{np.mean(v < 0):.0%} < 0",
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xticks(range(len(lrs)), [fmt(lr) for lr in lrs])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final bias value")
        ax.set_title("first hidden layer biases (runs with biases)", fontsize=10, pad=16)
    else:
        ax.text(0.5, 0.5, "no run with biases", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    vmax = 0.0
    outputs = []
    for _, row in best:
        X = np.eye(int(str(row["layers"]).split("-")[0]))
        Y = predict(results.run_params(row["run_id"]), X, row["activation"])
        outputs.append(Y)
        vmax = max(vmax, float(np.abs(Y).max()))
    for k, ((label, row), Y) in enumerate(zip(best, outputs, strict=True), start=1):
        ax = fig.add_subplot(grid[k])
        image = ax.imshow(Y, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        if Y.shape[0] <= 10:
            for (i, j), v in np.ndenumerate(Y):
                ax.text(
                    j,
                    i,
                    f"{v:.1f}",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if abs(v) > 0.6 * vmax else "black",
                )
        ax.set_xlabel("output unit")
        ax.set_ylabel("input (one-hot)")
        ax.set_title(
            f"{label}: lr={fmt(row['lr'])}, bias={row['bias']}\nfinal loss {row['final_loss']:.3g}",
            fontsize=9,
        )
    fig.colorbar(image, ax=fig.axes[1:], shrink=0.8, label="network output")
    fig.suptitle(_title(results, "Learned parameters and outputs"))
    return fig


FIGURES = {
    "loss_curves": loss_curves,
    "final_loss": final_loss,
    "heatmap": heatmap,
    "steps_to_threshold": steps_to_threshold,
    "learned_params": learned_params,
}


def write_figures(results, out: Path, fmt: str = "png", note=print) -> list[Path]:
    """Draw every figure the sweep allows into ``out``; note each one skipped, and why."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        try:
            fig = draw(results)
        except Skip as why:
            note(f"skipped {name}: {why}")
            continue
        path = out / f"{name}.{fmt}"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


__all__ = ["FIGURES", "Skip", "write_figures", *FIGURES, "lr_colours", "swept"]
