"""What a sweep did and found, in words and tables: its closing line and ``meta.json``,
the summary printed after it, and ``report.html``, one self-contained page with the spec,
the summary, every figure, the best runs and the runs that diverged. pandas only; the
figures come in as files.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from fastbp import explore, importance, ranking
from fastbp.layout import TABLE_ROWS, describe, fmt, label, scale, swept
from fastbp.metrics import METRICS, as_json, reached, unreachable
from fastbp.system import cpu_name, read_json_object, write_text_atomic

BEST_ROWS = 10
DIVERGED_ROWS = 50


@dataclasses.dataclass
class SweepReport:
    """What a sweep did: counts, timings, and why it stopped early if it did."""

    total: int = 0
    reused: int = 0
    computed: int = 0
    failed: list[str] = dataclasses.field(default_factory=list)
    stale: int = 0  # finished runs of another fastbp version, trained again
    interrupted: bool = False
    crashed: str | None = None
    train_s: float = 0.0  # summed over runs, inside the workers
    parallel_s: float = 0.0  # wall time of the parallel phase, compiling excluded
    compile_s: float = 0.0  # wall time compiling (or loading) kernels before it
    compiled: bool = False  # whether a kernel compiled (else they were only loaded)
    n_jobs: int = 1
    plan: object = None  # the engine's plan the runs trained by (fastbp.planner.Plan)
    forms: str = ""  # the kernel forms that trained them, in words (planner.forms_text)
    # successive halving: each rung's (step, settings ranked, settings that went on), the
    # runs stopped {run_id: (its shorter run's id, stopped at, steps)}, the run-steps the
    # rungs and the last stretch asked for, against the full grid's
    rungs: list = dataclasses.field(default_factory=list)
    stopped: dict = dataclasses.field(default_factory=dict)
    halving_steps: int = 0
    full_steps: int = 0


def summary_tables(runs, order=None, threshold=None) -> list[tuple[str, pd.DataFrame]]:
    """(field, table) for each swept field but seed: for each of its values (or bins of
    values, at most TABLE_ROWS), the number of runs, how many converged and diverged, the
    spread of their final losses, and their final accuracy where the targets are
    classes."""
    fields = [f for f in swept(runs, order) if f != "seed"]
    ok = ~runs["diverged"].to_numpy(bool)
    frame = pd.DataFrame(
        {
            "loss": runs["final_loss"].where(ok),
            "diverged": ~ok,
            "converged": reached(runs, threshold) & ok if threshold else 0,
            "steps": runs["steps_to_threshold"].astype("Float64"),
            **{m: runs[m] if m in runs else np.nan for m in METRICS},
        }
    )
    metrics = [m for m in METRICS if frame[m].notna().any()]
    tables = []
    for field in fields or [None]:
        s = scale(runs, field, TABLE_ROWS) if field else None
        codes = s.codes if s else np.zeros(len(runs), dtype=int)
        grouped = frame.groupby(codes, sort=True)
        table = pd.DataFrame(
            {
                "runs": grouped.size(),
                "converged": grouped["converged"].sum() if threshold else "-",
                "diverged": grouped["diverged"].sum(),
                "median_loss": grouped["loss"].median(),
                "min_loss": grouped["loss"].min(),
                "max_loss": grouped["loss"].max(),
            }
        )
        if threshold:
            low, high = ranking.wilson(table["converged"], table["runs"])
            table.insert(
                2, "converged_95%", [_interval(a, b) for a, b in zip(low, high, strict=True)]
            )
            table["median_steps_to_threshold"] = grouped["steps"].median().round().astype("Int64")
        for metric in metrics:  # accuracy compares across loss functions, losses do not
            table[f"median_{metric}"] = grouped[metric].median()
        table.index = [s.labels[c] for c in table.index] if s else ["all runs"]
        table.index.name = (label(field) + (" (binned)" if s.binned else "")) if s else ""
        tables.append((field or "", table))
    return tables


def _interval(low, high) -> str:
    """A share's interval in percent: '62-80%', '0-0.5%' (whole percent from 1%)."""

    def percent(x):
        return f"{100 * x:.1f}" if 0.05 <= 100 * x < 0.95 else f"{round(float(100 * x))}"

    return f"{percent(low)}-{percent(high)}%"


TOP_SETTINGS = 5


def what_matters_line(runs, order=None, threshold=None, most=4) -> str:
    """'what matters (log10 of the final loss): lr 42%, seed 29%, ...': the largest shares of
    fastbp.importance, or "" where there is nothing to split."""
    table = importance.shares(runs, order, threshold)
    if len(table) < 2:
        return ""
    _, what = importance.quantity(runs, threshold)
    top = table[table["kind"] != "rest"].head(most)
    parts = [f"{row.source} {row.share:.0%}" for row in top.itertuples()]
    return f"what matters ({what}): " + ", ".join(parts)


def top_settings(runs, order=None, threshold=None, table=None, rows=TOP_SETTINGS) -> str:
    """The best settings as a short text table: rank, fields, seeds, the statistic that
    ranks them, where a threshold is set how many seeds reached it (95% interval), and
    the median seed's run."""
    table = ranking.settings(runs, order, threshold) if table is None else table
    column = RANKED_BY[ranking.basis(runs, threshold)]
    shown = _settings_frame(table.head(rows), ranking.setting_fields(runs, order), [column])
    return shown.to_string(index=False)


# The median that ranks settings, by ranking.basis (success: ties by the final loss)
RANKED_BY = {"val_accuracy": "median_val_accuracy", "val_loss": "median_val_loss",
             "success": "median_loss", "accuracy": "median_accuracy",
             "loss": "median_loss"}  # fmt: skip
MEDIANS = {"median_loss": "median final loss", "median_accuracy": "median accuracy",
           "median_val_loss": "median held-out loss",
           "median_val_accuracy": "median held-out accuracy"}  # fmt: skip


def _settings_frame(table: pd.DataFrame, fields, columns, names=lambda f: f) -> pd.DataFrame:
    """Settings (rows of ranking.settings) for reading: rank, fields (headed by
    ``names``), seeds, diverged, the medians ``columns``, success with its interval, the
    median seed's run."""
    shown = pd.DataFrame({"rank": table["rank"].to_numpy()})
    for f in fields:
        shown[names(f)] = [fmt(f, v) for v in table[f]]
    shown["seeds"] = table["runs"].to_numpy()
    shown["diverged"] = table["diverged"].to_numpy()
    for column in columns:
        shown[MEDIANS[column]] = [_cell(v) if np.isfinite(v) else "diverged" for v in table[column]]
    if "reached" in table:
        shown["reached the threshold"] = [success(row) for _, row in table.iterrows()]
    shown["median seed's run"] = table["median_run"].to_numpy()
    return shown


def best_line(runs, order=None, threshold=None, table=None) -> str:
    """The best setting by :mod:`fastbp.ranking`'s rule, named by its swept fields, with
    the statistic that ranked it and its median seed (``table``: the ranking, if made)."""
    if not len(runs) or runs["diverged"].all():
        return "best: none: every run diverged"
    table = ranking.settings(runs, order, threshold) if table is None else table
    best = table.iloc[0]
    fields = ranking.setting_fields(runs, order)
    what = describe(fields, [best[f] for f in fields]) if fields else "all runs"
    seeds = f"over {best['runs']} seeds" if best["runs"] > 1 else "one run"
    return f"best: {what}: {statistic(best, ranking.basis(runs, threshold), threshold)}, " + (
        f"{seeds} (median seed: {best['median_run']})" if best["runs"] > 1 else seeds
    )


def statistic(row, how: str, threshold=None) -> str:
    """The statistic that ranks a setting (a row of ranking.settings), in words."""
    if how == "val_accuracy":
        return (f"median held-out accuracy {row['median_val_accuracy']:.1%} (held-out loss "
                f"{row['median_val_loss']:.3g})")  # fmt: skip
    if how == "val_loss":
        return f"median held-out loss {row['median_val_loss']:.3g}"
    if how == "accuracy":
        return f"median final accuracy {row['median_accuracy']:.1%}"
    loss = f"median final loss {row['median_loss']:.3g}"
    if how == "success":
        return f"{success(row)} reached {threshold:g}, {loss}"
    return loss


def success(row) -> str:
    """'13 of 20 (95%: 43-82%)': a setting's seeds that reached the threshold."""
    low, high = round(100 * row["share_low"]), round(100 * row["share_high"])
    return f"{row['reached']} of {row['runs']} (95%: {low}-{high}%)"


def summarize(runs, order=None, threshold=None) -> str:
    """The text summary printed after a sweep: the tables of :func:`summary_tables`, then
    the best configuration."""
    lines = []
    for field, table in summary_tables(runs, order, threshold):
        lines += ["", f"by {field}:" if field else "all runs:"]
        lines.append(table.to_string(float_format=lambda x: f"{x:.3g}"))
    ranked = ranking.settings(runs, order, threshold)
    if len(ranked) > 1 and not runs["diverged"].all():
        lines += ["", f"best settings ({ranking.basis(runs, threshold).replace('_', ' ')}, "
                  "over their seeds):", top_settings(runs, order, threshold, ranked)]  # fmt: skip
    matters = what_matters_line(runs, order, threshold)
    lines += ["", matters] if matters else []
    for note in (threshold_note(runs, threshold), one_seed_note(ranked)):
        lines += ["", note] if note else []
    return "\n".join([*lines, "", best_line(runs, order, threshold, ranked)]).lstrip("\n")


def threshold_note(runs, threshold) -> str:
    """Where a fixed threshold lies below some runs' loss floor: how many, and that their
    failure is certain ('' where none)."""
    n = unreachable(runs, threshold)
    if not n:
        return ""
    return (f"note: the threshold {threshold:g} is below the loss floor of {n} of {len(runs)} "
            "runs (loss_floor: no network of their shape does better), so none of them can "
            "reach it, however trained; a threshold relative to each run's floor, threshold "
            "= { above_floor = 0.005 }, asks how close each came to its own")  # fmt: skip


def one_seed_note(ranked) -> str:
    """Where every setting (a row of ranking.settings) ran once: that the best is one run,
    and how to know how sure ('' where some setting ran more than once, or there is one)."""
    if len(ranked) < 2 or (ranked["runs"] > 1).any():
        return ""
    return ("note: every setting ran once (one seed), so the best is one run: a good setting "
            "cannot be told from a lucky seed. The tables by field pool neighbouring settings; "
            "to rank settings over seeds, sweep the seed too (seed = [0, 1, 2] in [grid], "
            "beside a [random] section or in the grid)")  # fmt: skip


# --- report.html ---


def closing_line(report, out) -> str:
    """The sweep's last line: runs trained and reused, the time, the kernels' share."""
    busy = report.n_jobs * report.parallel_s
    share = f", {100 * report.train_s / busy:.0f}% of worker time in training" if busy else ""
    done = "compiled" if report.compiled else "loaded"
    seconds = round(report.compile_s, 3)  # as meta.json has it: the same tenth, always
    compiled = f"; kernels {done} in {seconds:.1f} s" if report.compile_s >= 0.05 else ""
    forms = f"; {report.forms}" if report.forms else ""
    return (
        f"{halving_line(report)}\n{report.computed} run(s) trained in "
        f"{report.parallel_s:.1f} s{share}{compiled}{forms}; {report.reused} reused; "
        f"results in {out}"
    )


def halving_line(report) -> str:
    """'\nhalving: 120 of 420 runs stopped early (at 1,000: 280, ...); 21% of the full
    grid's run-steps', or '' without halving."""
    if not report.full_steps:
        return ""
    at = {}
    for _, step, _ in report.stopped.values():
        at[step] = at.get(step, 0) + 1
    where = ", ".join(f"{n} at {step:,}" for step, n in sorted(at.items()))
    share = report.halving_steps / report.full_steps
    return (f"\nhalving: {len(report.stopped)} of {report.total} run(s) stopped early"
            f"{f' ({where})' if where else ''}; it trained {report.halving_steps:,} of the full "
            f"grid's {report.full_steps:,} run-steps ({share:.0%})")  # fmt: skip


def write_meta(out, spec, report, started, version, kernels) -> None:
    """out/meta.json: what ran, on what, with which kernels (``kernels``: the kernel form of
    each architecture, :func:`fastbp.planner.kernel_forms`), and how the time went."""
    from importlib.metadata import version as installed

    busy = report.n_jobs * report.parallel_s
    meta = {
        "spec": str(spec.path),
        "name": spec.name,
        "threshold": as_json(spec.threshold),
        "swept": list(spec.swept),  # in the spec's order, lr first: the figures' roles
        "fastbp_version": version,
        "numba_version": installed("numba"),
        "numpy_version": installed("numpy"),
        "python_version": platform.python_version(),
        "cpu": cpu_name(),
        "n_jobs": report.n_jobs,
        "kernels": kernels,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": report.total,
        "runs_computed": report.computed,
        "runs_reused": report.reused,
        "runs_retrained_other_version": report.stale,
        "runs_failed": len(report.failed),
        **(
            {
                "halving": {
                    "rungs": [{"step": r, "settings": n, "went_on": k} for r, n, k in report.rungs],
                    "runs_stopped": len(report.stopped),
                    "run_steps": report.halving_steps,
                    "run_steps_full_grid": report.full_steps,
                }
            }
            if spec.halving
            else {}
        ),  # fmt: skip
        "interrupted": report.interrupted,
        "compile_s": round(report.compile_s, 3),  # or loading them from the cache
        "kernels_compiled": report.compiled,
        "parallel_wall_s": round(report.parallel_s, 3),
        "train_s": round(report.train_s, 3),
        "training_share_of_worker_time": round(report.train_s / busy, 4) if busy else None,
    }
    write_text_atomic(out / "meta.json", json.dumps(meta, indent=2) + "\n")


STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 2em auto; max-width: 1180px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.1em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.meta, .note { color: #555; } .best { font-weight: 600; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 13px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e4e4e4; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
td { white-space: nowrap; } .scroll { overflow-x: auto; max-width: 100%; }
figure { margin: 1.2em 0; } figure img, figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 13px; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 13px; }
nav a { margin-right: 1em; }
"""


def write_report(directory, results, figures, out: Path, skipped=()) -> Path:
    """Write ``out/report.html``: one page that opens from disk in any browser, with every
    figure embedded (PNG as data, SVG inline) and nothing fetched from the network.

    figures : list of Path, the figure files (PNG or SVG) in the order to show them.
    skipped : lines saying which figures were skipped, and why.
    """
    return Page(directory, results).write(figures, out, skipped)


class Page:
    """report.html in two steps: everything it says but its figures, worked out when made
    (``python -m fastbp.plot`` makes it while its workers draw the figures); then the
    page, figures embedded, when written."""

    def __init__(self, directory, results):
        directory = Path(directory)
        runs, order, threshold = results.runs, results.swept, results.threshold
        meta = read_json_object(directory / "meta.json")
        self.name = meta.get("name") or directory.name
        spec_file = directory / "spec.toml"
        spec = spec_file.read_text(errors="replace") if spec_file.is_file() else None
        n_div = int(runs["diverged"].sum())
        ranked = results.settings()
        self.head = [
            f"<h1>{_e(self.name)}</h1>",
            f"<p class='meta'>{_e(_meta_line(runs, meta, threshold))}</p>",
            "<nav><a href='#summary'>summary</a><a href='#figures'>figures</a>"
            "<a href='#best'>best settings</a>"
            + ("<a href='#explore'>explore</a>" if len(ranked) > 1 else "")
            + "<a href='#diverged'>diverged</a>"
            + ("<a href='#spec'>spec</a>" if spec else "")
            + "</nav>",
            "<h2 id='summary'>Summary</h2>",
            f"<p class='best'>{_e(best_line(runs, order, threshold, ranked))}</p>",
            f"<p class='note'>{_e(ranking.rule(runs, threshold))}</p>",
            *(f"<p class='note'>{_e(note)}</p>"
              for note in (stopped_text(runs, meta), threshold_note(runs, threshold),
                           one_seed_note(ranked)) if note),
        ]  # fmt: skip
        for field, table in summary_tables(runs, order, threshold):
            self.head.append(f"<h3>{_e('by ' + label(field) if field else 'all runs')}</h3>")
            self.head.append(_table_html(table.reset_index()))
        matters = importance.shares(runs, order, threshold)
        if len(matters) > 1:
            _, what = importance.quantity(runs, threshold)
            share = [f"{s:.1%}" for s in matters["share"]]
            design = (
                "a full grid, where the order of the fields does not matter"
                if matters.attrs["balanced"]
                else "not a full grid: each field, the one that explains most alone first, "
                "is credited with what it adds to those before it, then each pair likewise"
            )
            shown = pd.DataFrame({"source": matters["source"], "share of the spread": share})
            self.head += [
                "<h3 id='matters'>What matters</h3>",
                f"<p class='note'>The share of the spread (variance) of the {_e(what)} over all "
                "runs that each swept field, each pair of them and the seed explain (an "
                f"analysis of variance; {design}).</p>",
                _table_html(shown),
            ]
        fields = swept(runs, order)
        self.tail = [
            "<h2 id='best'>Best settings</h2>",
            f"<p class='note'>The {min(BEST_ROWS, len(ranked))} best of {len(ranked)} "
            "setting(s) by the rule above, each with its median seed's run.</p>",
            _settings_html(ranked.head(BEST_ROWS), ranking.setting_fields(runs, order)),
        ]
        if len(ranked) > 1:
            self.tail.append(explore.section(runs, order, threshold, ranked))
        self.tail.append("<h2 id='diverged'>Runs that diverged</h2>")
        if n_div:
            shown = runs[runs["diverged"]].head(DIVERGED_ROWS)
            more = f", the first {len(shown)} shown" if n_div > len(shown) else ""
            self.tail.append(
                f"<p class='note'>{n_div} of {len(runs)} runs diverged{more}: their loss "
                "became infinite or NaN after diverged_at updates.</p>"
            )
            self.tail.append(_runs_html(shown[[*fields, "diverged_at", "run_id"]]))
        else:
            self.tail.append(f"<p class='note'>None: all {len(runs)} runs kept a finite loss.</p>")
        if spec:
            self.tail += ["<h2 id='spec'>Spec</h2>", f"<pre>{_e(spec)}</pre>"]

    def write(self, figures, out: Path, skipped=()) -> Path:
        """Write ``out/report.html`` with these figures and these lines on those skipped."""
        parts = [*self.head, "<h2 id='figures'>Figures</h2>"]
        for path in figures:
            parts.append(f"<figure id='{_e(path.stem)}'>{_embed(path)}"
                         f"<figcaption>{_e(path.name)}</figcaption></figure>")  # fmt: skip
        parts += [f"<p class='note'>{_e(line)}</p>" for line in skipped]
        page = (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(self.name)}: fastbp sweep report</title>"
            f"<style>{STYLE}{explore.STYLE}</style></head>"
            "<body>\n" + "\n".join([*parts, *self.tail]) + "\n</body></html>\n"
        )
        out.mkdir(parents=True, exist_ok=True)
        target = out / "report.html"
        write_text_atomic(target, page)
        return target


def stopped_text(runs, meta) -> str:
    """What successive halving did, in a sentence ('' where it stopped no run)."""
    if "stopped_at" not in runs or runs["stopped_at"].isna().all():
        return ""
    counts = runs["stopped_at"].dropna().astype(int).value_counts().sort_index()
    where = ", ".join(f"{n} at {step:,}" for step, n in counts.items())
    halving = meta.get("halving", {}) if isinstance(meta.get("halving"), dict) else {}
    done, full = halving.get("run_steps"), halving.get("run_steps_full_grid")
    share = (f"; it trained {done:,} of the full grid's {full:,} run-steps ({done / full:.0%})"
             if isinstance(done, int) and isinstance(full, int) and full else "")  # fmt: skip
    return (f"Successive halving stopped {int(counts.sum())} of {len(runs)} runs early "
            f"({where} steps): their final loss, accuracy and curves are those of the step "
            f"they stopped at (stopped_at in runs.parquet){share}.")  # fmt: skip


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _meta_line(runs, meta, threshold) -> str:
    parts = [f"{len(runs):,} runs"]
    if threshold is not None:
        parts.append(f"converged: loss ≤ {threshold:g}")
    if meta.get("finished"):
        parts.append(f"finished {meta['finished']}")
    for key, what in (("fastbp_version", "fastbp"), ("cpu", "on")):
        if meta.get(key):
            parts.append(f"{what} {meta[key]}")
    return " · ".join(parts)


def _embed(path: Path) -> str:
    if path.suffix == ".svg":
        text = path.read_text(encoding="utf-8")
        return text[text.index("<svg") :]  # inline, without the XML prolog and doctype
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{_e(path.stem)}' src='data:image/png;base64,{data}'>"


def _table_html(table: pd.DataFrame) -> str:
    cells = table.map(_cell)
    return _scroll(cells.to_html(index=False, escape=True, border=0, na_rep=""))


def _scroll(table_html: str) -> str:
    """A table that scrolls sideways where the page is narrower than it."""
    return f"<div class='scroll'>{table_html}</div>"


def _runs_html(frame: pd.DataFrame) -> str:
    shown = pd.DataFrame({c: [fmt(c, v) for v in frame[c]] for c in frame.columns})
    for c in ("final_loss", "min_loss"):
        if c in frame:
            shown[c] = [_cell(v) for v in frame[c]]
    shown.columns = [label(c) if c in frame and c not in ("run_id",) else c for c in frame]
    return _scroll(shown.to_html(index=False, escape=True, border=0, na_rep=""))


def _settings_html(table: pd.DataFrame, fields) -> str:
    """The settings' table: fields, seeds, the statistics, success with its interval."""
    columns = [c for c in MEDIANS if c in table]
    shown = _settings_frame(table, fields, columns, names=label)
    return _scroll(shown.to_html(index=False, escape=True, border=0, na_rep=""))


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{value:.4g}"
    if value is pd.NA or value is None:
        return ""
    return str(value)
