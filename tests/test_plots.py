"""Figures, summary and report: looked at through matplotlib's own objects, over sweeps of
every shape (tables made without training, see sweep_tables.py) and one real sweep."""

import itertools
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.text import Text
from sweep_tables import SHAPES, sweep_results

from fastbp import drawing, importance, load_results, plot, ranking
from fastbp.layout import roles, scale, swept
from fastbp.report import _interval as report_interval
from fastbp.report import best_line, summarize, summary_tables, write_report
from fastbp.results import Results
from fastbp.sweep import main as sweep_main


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Results of every sweep shape, by name."""
    made = {}
    for name, spec in SHAPES.items():
        directory = tmp_path_factory.mktemp(name.replace(" ", "_"))
        made[name] = sweep_results(textwrap.dedent(spec), directory)
    return made


def draw_or_skip(draw, results, **kw):
    try:
        return draw(results, **kw)
    except plot.Skip:
        return None


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def all_text(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def legends(fig):
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", plot.FIGURES)
def test_every_figure_of_every_shape_is_honest_and_readable(shapes, shape, name):
    results = shapes[shape]
    fig = draw_or_skip(plot.FIGURES[name], results)
    if fig is None:
        return
    text = all_text(fig)
    if not results.runs["diverged"].any():
        assert "diverged" not in text
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)  # lays the figure out, as savefig does
    titles = [fig._suptitle, fig._supxlabel] + [ax.title for ax in fig.axes if ax.get_title()]
    for legend in legends(fig):
        assert len(legend.get_texts()) <= 13  # 12 values and at most one extra entry
        box = legend.get_window_extent(renderer)
        for title in titles:
            assert not box.overlaps(title.get_window_extent(renderer)), title.get_text()
    panel_titles = [ax.title.get_window_extent(renderer) for ax in visible_axes(fig)
                    if ax.get_title()]  # fmt: skip
    for a, b in itertools.combinations(panel_titles, 2):  # wrapped to their panels
        assert not a.overlaps(b), [ax.get_title() for ax in visible_axes(fig)]
    unswept = set(results.runs.columns) - set(results.swept or ()) - {"run_id"}
    for ax in visible_axes(fig):  # unswept fields appear only in the subtitle
        assert not any(f"{f}=" in ax.get_title() for f in unswept), ax.get_title()
        ticks = [t for t in ax.get_xticklabels()  # level ones (rotated ones slant past)
                 if t.get_visible() and t.get_text() and not t.get_rotation()]  # fmt: skip
        boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.x0)
        for left, right in itertools.pairwise(boxes):  # side by side, not on each other
            assert left.x1 <= right.x0 + 1, [t.get_text() for t in ticks]
        ticks = [t for t in ax.get_yticklabels() if t.get_visible() and t.get_text()]
        boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.y0)
        for below, above in itertools.pairwise(boxes):  # stacked, not on each other
            assert below.y1 <= above.y0 + 1, [t.get_text() for t in ticks]


@pytest.mark.parametrize("shape", ["dense lr grid", "random search", "one seed",
                                   "union with missing values"])  # fmt: skip
def test_every_final_loss_is_drawn_at_its_own_x(shapes, shape):
    results = shapes[shape]
    runs = results.runs
    fig = plot.final_loss(results)
    points, crosses = [], []
    for ax in visible_axes(fig):
        for c in ax.collections:
            if isinstance(c, PathCollection):
                on_top = c.get_offset_transform() != ax.transData  # x in data, y in axes
                (crosses if on_top else points).append(c.get_offsets())
    points = np.concatenate(points) if points else np.empty((0, 2))
    ok = runs[~runs["diverged"]]
    assert sorted(map(tuple, points)) == sorted(zip(ok["lr"], ok["final_loss"], strict=True))
    crossed = np.concatenate(crosses)[:, 0] if crosses else []
    assert sorted(crossed) == sorted(runs.loc[runs["diverged"], "lr"])


def test_categorical_x_keeps_each_run_in_its_own_slot(shapes):
    results = shapes["architectures x activations"]
    fig = plot.final_loss(results)
    (ax,) = visible_axes(fig)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8-3-8", "8-6-8", "8-4-3-8"]
    slots = {"8-3-8": 0, "8-6-8": 1, "8-4-3-8": 2}
    xs = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections
                         if isinstance(c, PathCollection)])  # fmt: skip
    assert sorted(np.round(xs).astype(int)) == sorted(slots[v] for v in results.runs["layers"])
    assert fig.axes[0].get_legend().get_title().get_text() == "activation"
    assert "layer widths (layers)" in ax.get_xlabel()


def test_loss_curves_show_every_colour_value_from_step_0_in_each_panel(shapes):
    results = shapes["architectures x activations"]
    fig = plot.loss_curves(results)
    axes = visible_axes(fig)
    assert sorted(ax.get_title() for ax in axes) == [
        "activation=relu", "activation=sigmoid", "activation=tanh"
    ]  # fmt: skip
    for ax in axes:
        (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        segments = lines.get_segments()
        assert len(segments) == 3  # one per layer shape, the colour field
        assert all(seg[0, 0] == 0 for seg in segments)  # from step 0
    assert "lr=" not in all_text(fig).split("\n")[0]  # lr was not swept: no legend entry


def test_a_missing_value_is_a_value_like_any_other(shapes):
    results = shapes["union with missing values"]
    fig = plot.loss_curves(results)
    titles = sorted(ax.get_title() for ax in visible_axes(fig))
    assert titles == ["batch_size=2", "batch_size=4", "batch_size=full batch"]
    for ax in visible_axes(fig):
        (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(lines.get_segments()) == 2  # both learning rates, full batch too


def test_many_values_get_a_colour_bar_not_a_legend(shapes):
    results = shapes["dense lr grid"]
    fig = plot.loss_curves(results)
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and bars[0].get_ylabel() == "learning rate (lr)"
    assert not legends(fig)
    heat = plot.heatmap(results)
    image = visible_axes(heat)[0].get_images()[0]
    assert image.get_array().shape[1] <= 10  # 40 learning rates in at most 10 bins
    assert "binned" in visible_axes(heat)[0].get_xlabel()


def test_heatmap_leaves_empty_cells_blank_and_counts_runs(shapes):
    results = shapes["random search"]
    fig = plot.heatmap(results)  # lr (binned) x init: 12 runs, most cells empty
    ax = visible_axes(fig)[0]
    cells = ax.get_images()[0].get_array()
    texts = [t.get_text() for t in ax.texts]
    assert np.ma.count_masked(cells) == cells.size - len(texts) > 0
    assert sum(int(t.split("n=")[1]) for t in texts) == len(results.runs)
    assert not any("diverged" in t for t in texts)


def test_heatmap_says_diverged_with_how_many_of_how_many(shapes):
    fig = plot.heatmap(shapes["every run diverged"])
    texts = [t.get_text() for t in visible_axes(fig)[0].texts]
    assert texts == ["2 of 2\ndiverged"] * 4
    fig = plot.heatmap(shapes["one seed"])
    texts = [t.get_text() for t in visible_axes(fig)[0].texts]
    assert texts.count("1 of 1\ndiverged") == 2 and len(texts) == 8  # lr = 30
    fig = plot.heatmap(shapes["dense lr grid"], x="seed", y="bias")  # every lr in each cell
    texts = [t.get_text() for t in visible_axes(fig)[0].texts]
    assert len(texts) == 12 and all(t.endswith("\n3 of 40 diverged") for t in texts)


def test_colour_and_panels_can_be_chosen_by_hand(shapes):
    results = shapes["dense lr grid"]
    fig = plot.final_loss(results, x="seed", colour="lr")  # a colour bar, and crosses
    assert not legends(fig)  # what the crosses mean is in the caption
    caption = fig.get_supxlabel()  # what the crosses and the dashed floor line mean
    assert caption.startswith("x diverged: 36 of 480 runs (at the top); - - loss floor: no ")
    assert "; 480 runs" in caption
    fig = plot.loss_curves(results, colour="bias", panels=())
    (ax,) = visible_axes(fig)
    assert fig.axes[0].get_legend().get_title().get_text() == "biases (bias)"
    fig = plot.final_loss(results, x="lr", colour=None, panels=["bias"])
    assert len(visible_axes(fig)) == 2
    wrong = [
        (plot.loss_curves, {"colour": "learning_rate"}),
        (plot.loss_curves, {"panels": ["Bias"]}),
        (plot.final_loss, {"x": "eta"}),
        (plot.heatmap, {"y": "lrs"}),
        (plot.learned_params, {"x": "?"}),
    ]
    for draw, kw in wrong:
        (name,) = kw
        with pytest.raises(ValueError, match=f"{name} must be None or a RunConfig field"):
            draw(results, **kw)


def test_roles_follow_the_spec_order_and_pool_the_rest(shapes):
    results = shapes["random search"]
    assert results.swept == ("lr", "init", "init_scale")
    r = roles(results)
    assert (r.colour, r.panels) == ("lr", ("init", "init_scale"))  # 3 x 4 bins = 12 panels
    r = roles(results, max_panels=4)
    assert (r.colour, r.panels, r.pooled) == ("lr", ("init",), ("init_scale",))


def test_log_spaced_values_are_binned_in_log_bins(shapes):
    s = scale(shapes["dense lr grid"].runs, "lr", most=10)
    assert s.binned and s.log and len(s) <= 10
    lows = np.array([lo for lo, _ in s.values])
    assert np.allclose(np.diff(np.log10(lows)), np.log10(lows[1] / lows[0]))  # even in log


def test_the_best_run_names_swept_fields_only(shapes):
    results = shapes["architectures x activations"]
    fig = plot.learned_params(results)
    best = [ax.get_title() for ax in visible_axes(fig) if "best setting" in ax.get_title()]
    assert len(best) == 1 and "layers=" in best[0] and "lr=" not in best[0]
    line = best_line(results.runs, results.swept)
    assert line.startswith("best: layers=") and "lr=" not in line and "over 2 seeds" in line


@pytest.mark.parametrize("shape", SHAPES)
def test_the_run_shown_is_the_best_settings_median_seed_as_the_summary_says(shapes, shape):
    results = shapes[shape]
    if results.runs["diverged"].all():
        return
    table = results.settings()
    (title, row), *others = plot.shown_runs(results)
    best = table.iloc[0]
    assert best_line(results.runs, results.swept, results.threshold).startswith("best: ")
    if best["diverged"] < best["runs"] and "median seed" in title:
        assert row["run_id"] == best["median_run"]
    members = ranking.runs_of(results.runs, best, results.swept)
    assert row["run_id"] in set(members["run_id"])  # a run of the best setting
    for _, other in others:  # the best without biases, where bias is swept
        assert not other["bias"]


def test_success_is_given_with_its_interval_in_tables_summary_and_figure(shapes):
    from matplotlib.container import ErrorbarContainer

    results = shapes["dense lr grid"]
    assert results.threshold is not None
    tables = dict(summary_tables(results.runs, results.swept, results.threshold))
    table = tables["lr"]
    for (_, row), text in zip(table.iterrows(), table["converged_95%"], strict=True):
        low, high = ranking.wilson(row["converged"], row["runs"])
        assert text == report_interval(low, high) and text.endswith("%")
    printed = summarize(results.runs, results.swept, results.threshold)
    assert "best settings (success, over their seeds):" in printed and " of " in printed
    fig = plot.steps_to_threshold(results)
    bars = [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert bars  # the share that reached the threshold, with its interval
    # two series (bias) of equal shares at the same lr: side by side, not one on the other
    fig = plot.steps_to_threshold(results, colour="bias", panels=())
    bars = [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
    xs = [c.lines[0].get_xdata() for c in bars]
    assert len(xs) == 2 and len(xs[0]) == len(xs[1])
    assert (xs[0] < xs[1]).all() and (xs[1] / xs[0] < 1.2).all()  # a little aside


def test_runs_a_halving_stopped_are_rings_said_in_the_legend(shapes):
    from dataclasses import replace

    results = shapes["dense lr grid"]
    runs = results.runs.copy()
    early = runs["lr"] < 0.01
    runs["stopped_at"] = pd.Series(np.where(early, 100.0, np.nan)).astype("Int64")
    fig = plot.final_loss(replace(results, runs=runs))
    rings = filled = 0
    for ax in visible_axes(fig):
        for c in ax.collections:
            if isinstance(c, PathCollection) and c.get_offset_transform() == ax.transData:
                hollow = len(c.get_facecolors()) == 0 or c.get_facecolors()[0][3] == 0
                rings += len(c.get_offsets()) if hollow else 0
                filled += 0 if hollow else len(c.get_offsets())
    ok = ~runs["diverged"] & np.isfinite(runs["final_loss"])
    assert rings == (ok & early).sum() and filled == (ok & ~early).sum()
    assert any("stopped early by the halving" in t.get_text() for leg in legends(fig)
               for t in leg.get_texts())  # fmt: skip


def test_panel_titles_break_between_pairs_never_inside_a_word():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 3)
    text = "layers=2-2-1, activation=tanh (20 of 100 diverged)"  # xor.toml's third panel
    plot._panel_title(axes[2], text)
    lines = axes[2].get_title().split("\n")
    assert len(lines) > 1 and all(line.endswith(",") for line in lines[:-1]), lines
    assert lines[-1] == "activation=tanh (20 of 100 diverged)"  # was "activation=ta" / "nh"


def test_runs_on_one_plateau_are_counted_beside_their_dot(shapes):
    from dataclasses import replace

    assert plot._plateaus(np.array([4 / 64] * 5 + [5 / 64] * 2 + [0.07, 0.071, np.nan])) == [
        (0.0625, 5)  # two runs are not a plateau to count; NaN and distinct values neither
    ]
    results = shapes["dense lr grid"]  # 6 seeds at each lr; 5 of its 40 values of lr
    runs = results.runs
    stalled = runs[runs["lr"].isin(sorted(set(runs["lr"]))[:5])].reset_index(drop=True)
    first = stalled["lr"] == stalled["lr"].iloc[0]
    stalled.loc[first & ~stalled["diverged"], "final_loss"] = 5 / 64  # all on one plateau
    fig = plot.final_loss(replace(results, runs=stalled))
    counts = [t.get_text() for ax in fig.axes for t in ax.texts if t.get_text().isdigit()]
    assert counts and all(int(c) >= 3 for c in counts), counts


def test_generalisation_shows_held_out_against_training_with_chance(shapes):
    results = shapes["losses, optimizers, held-out samples"]
    fig = plot.generalisation(results)
    left, right = [ax for ax in fig.axes if ax.get_xlabel()][:2]
    assert left.get_xlabel() == "final training accuracy"
    assert left.get_ylabel() == "final held-out accuracy"
    labels = left.get_legend_handles_labels()[1]
    assert "held-out = training" in labels and any(x.startswith("chance (") for x in labels)
    table = results.settings()
    shown = [t.get_text() for t in right.get_yticklabels()]
    assert len(shown) == min(len(table), plot.GENERALISATION_SETTINGS)  # best first
    with pytest.raises(plot.Absent):  # no held-out data: no figure, and no note
        plot.generalisation(shapes["one seed"])
    # a few held-out samples: few accuracies, many runs at one point, one dot that counts them
    from dataclasses import replace

    runs = results.runs.copy()
    runs["accuracy"], runs["val_accuracy"] = runs["accuracy"].round(1), 0.5
    fig = plot.generalisation(replace(results, runs=runs))
    left = [ax for ax in fig.axes if ax.get_xlabel() == "final training accuracy"][0]
    (dots,) = [c for c in left.collections if isinstance(c, PathCollection)]
    ok = ~runs["diverged"]
    assert len(dots.get_offsets()) == len(runs.loc[ok, ["lr", "accuracy"]].drop_duplicates())
    assert dots.get_sizes().sum() == 14 * ok.sum()  # every run counted, in the dots' areas
    assert any("dot area" in t.get_text() for leg in legends(fig) for t in leg.get_texts())


def test_what_matters_draws_the_shares_largest_first(shapes):
    results = shapes["architectures x activations"]
    fig = plot.what_matters(results)
    (ax,) = fig.axes
    table = importance.shares(results.runs, results.swept, results.threshold)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(table["source"])
    widths = [bar.get_width() for bar in ax.patches]
    assert widths == pytest.approx(list(table["share"]))


def test_log_bins_of_a_field_end_with_its_largest_value():
    import pandas as pd

    from fastbp.layout import scale

    lr = np.repeat(np.logspace(-4, 1, 40), 5)  # lr_dense: 1e-4 to 10
    s = scale(pd.DataFrame({"lr": lr}), "lr", 10)
    counts = np.bincount(s.codes)
    assert s.binned and counts.min() >= counts.max() / 2, (s.labels, counts)
    assert s.labels[-1].endswith("–10")  # not a bin "10–100" holding lr = 10 alone


def test_summary_tables_stay_short_and_readable(shapes):
    for name, results in shapes.items():
        for field, table in summary_tables(results.runs, results.swept, results.threshold):
            assert len(table) <= 10, (name, field)
            assert all(len(str(v)) <= 16 for v in table.index), (name, field, table.index)
    line = best_line(shapes["random search"].runs)  # drawn values, written to 3 digits
    numbers = re.findall(r"=([0-9.e+-]+)", line)
    assert numbers and all(len(n.replace(".", "").lstrip("0")) <= 3 for n in numbers), line


def test_a_sweep_whose_settings_ran_once_says_so_and_how_to_know_more(shapes, tmp_path):
    once, seeded = shapes["random search"], shapes["dense lr grid"]
    printed = summarize(once.runs, once.swept, once.threshold)
    assert "every setting ran once (one seed)" in printed and "seed = [0, 1, 2]" in printed
    assert "ran once" not in summarize(seeded.runs, seeded.swept, seeded.threshold)
    page = write_report(tmp_path, once, [], tmp_path / "plots").read_text()
    assert "every setting ran once (one seed)" in page


def test_report_is_one_page_with_everything_embedded(shapes, tmp_path):
    results = shapes["one seed"]
    written = plot.write_figures(results, tmp_path / "plots", note=lambda _: None)
    page = write_report(tmp_path, results, written, tmp_path / "plots")
    html = page.read_text()
    assert html.count("data:image/png;base64,") == len(written) == 8  # no validation figures
    assert "http://" not in html and "https://" not in html and "<script src" not in html
    assert "best: lr=1" in html and "2 of 8 runs diverged" in html
    assert "A setting (a configuration without its seed) is ranked by" in html  # the rule
    assert "What matters" in html and "share of the spread" in html
    # by lr, by bias; what matters; best; explore (its script writes more); diverged
    static = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    assert static.count("<table") == 2 + 1 + 1 + 1 + 1


# --- one real sweep, end to end ---

SPEC = """
[sweep]
name = "plots"
threshold = 0.15
[base]
log_every = 10
[grid]
lr = [50.0, 0.05, 0.005]   # 50 diverges
steps = [200, 2000]
bias = [true, false]
seed = [0, 1]
"""


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plots")
    (tmp / "spec.toml").write_text(SPEC)
    code = sweep_main([str(tmp / "spec.toml"), "--out", str(tmp / "out"), "--quiet",
                       "--n-jobs", "1", "--no-plots"])  # fmt: skip
    assert code == 0
    return tmp / "out"


def test_a_real_sweep_keeps_its_spec_order_and_draws_diverged_runs(sweep_dir):
    results = load_results(sweep_dir)
    assert results.swept == ("lr", "steps", "bias", "seed")
    fig = plot.final_loss(results)
    assert "diverged: 4 of 24 runs (at the top)" in all_text(fig)
    assert [ax.get_title() for ax in visible_axes(fig)] == [
        "bias=without biases", "bias=with biases"
    ]  # fmt: skip


HELD_OUT_FIGURES = {"val_loss_curves", "val_accuracy_curves", "generalisation"}


def test_plot_command_writes_every_figure_and_the_report(sweep_dir, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "fastbp.plot", str(sweep_dir), "--out", str(tmp_path), "--format",
         "svg"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    drawn = [name for name in plot.FIGURES if name not in HELD_OUT_FIGURES]  # no validation
    assert files == sorted([f"{name}.svg" for name in drawn] + ["report.html"])
    assert "val_loss_curves" not in out.stdout  # no validation data: nothing to say
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") == len(drawn) + 1  # inline, whatever the format; explore's


DIE_IN_WORKERS = """
import os, sys
from pathlib import Path
from fastbp import plot
from fastbp.system import can_fork, cores
assert can_fork() and cores() > 1, "figures would be drawn in this process: no worker to lose"
parent, draw_one = os.getpid(), plot._draw_one
plot._draw_one = lambda *args: draw_one(*args) if os.getpid() == parent else os._exit(1)
sys.exit(plot.draw(Path(sys.argv[1]), Path(sys.argv[2])))
"""


def test_figures_are_drawn_in_this_process_where_a_worker_dies(sweep_dir, tmp_path):
    """A drawing process killed (out of memory, say) costs time, not figures or the report.
    In a process of its own: this one may run other threads, and then forks no worker."""
    command = [sys.executable, "-c", DIE_IN_WORKERS, str(sweep_dir), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    drawn = [name for name in plot.FIGURES if name not in HELD_OUT_FIGURES]
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == sorted(drawn)
    assert (tmp_path / "report.html").read_text().count("data:image/png") == len(drawn)


BLAS_IN_WORKERS = """
import sys
from pathlib import Path
from threadpoolctl import threadpool_info
from fastbp import plot
from fastbp.system import can_fork, cores
assert can_fork() and cores() > 1, "figures would be drawn in this process: no worker"
def threads(results):
    raise plot.Skip(f"BLAS threads {[p['num_threads'] for p in threadpool_info()]}")
plot.FIGURES = {"threads": threads}
print("before", [p["num_threads"] for p in threadpool_info()])
plot.draw(Path(sys.argv[1]), Path(sys.argv[2]))
print("after", [p["num_threads"] for p in threadpool_info()])
"""


def test_figures_drawn_side_by_side_use_one_blas_thread_each(sweep_dir, tmp_path):
    """A process per core, and BLAS threads besides, fought for the cores: random_search's
    figures took 14% longer. The limit holds while they are drawn, and only then."""
    command = [sys.executable, "-c", BLAS_IN_WORKERS, str(sweep_dir), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    inside = re.search(r"BLAS threads \[(.*?)\]", done.stdout).group(1).split(", ")
    assert inside and set(inside) == {"1"}, done.stdout
    before, after = (re.search(rf"{when} \[(.*?)\]", done.stdout).group(1)
                     for when in ("before", "after"))  # fmt: skip
    assert after == before, done.stdout  # as the process had them


def same_pixels(make, tmp_path) -> bool:
    """Whether drawing.save_png writes what savefig writes for the figure ``make()`` draws:
    the same pixels, in one drawing instead of two, measuring less (measure_less), and
    under matplotlib 3.11 with its text drawn by drawing.Canvas."""
    from PIL import Image

    make().savefig(tmp_path / "savefig.png", dpi=90)
    drawing.save_png(make(), tmp_path / "ours.png", dpi=90)
    theirs, ours = (
        np.asarray(Image.open(tmp_path / f).convert("RGBA")) for f in ("savefig.png", "ours.png")
    )
    return theirs.shape == ours.shape and bool((theirs == ours).all())


def test_a_png_holds_the_pixels_savefig_would_write(shapes, tmp_path):
    """Every figure of panels side by side: shared y axes, legends, colour bars."""
    results, drawn = shapes["architectures x activations"], 0
    for name, draw in plot.FIGURES.items():
        if draw_or_skip(draw, results) is not None:
            assert same_pixels(lambda draw=draw: draw(results), tmp_path), name
            drawn += 1
    assert drawn >= 7


@pytest.mark.parametrize("facecolor", ["white", (1, 1, 1, 0.5), "none"])
def test_a_png_file_keeps_what_savefig_writes_and_its_alpha_only_if_used(facecolor, tmp_path):
    """fastbp.png writes an opaque figure without its alpha channel (the same pixels), a
    figure with any transparency with it; the resolution and the Software note as savefig."""
    from PIL import Image

    def make():
        fig = Figure(figsize=(2.2, 1.6), layout="constrained", facecolor=facecolor)
        ax = fig.add_subplot()
        ax.plot([0, 1, 4], color=(0.2, 0.4, 0.8, 0.6))
        ax.set_title("title")
        return fig

    assert same_pixels(make, tmp_path)
    with Image.open(tmp_path / "savefig.png") as theirs, Image.open(tmp_path / "ours.png") as ours:
        assert ours.mode == ("RGB" if facecolor == "white" else "RGBA")
        assert ours.info == theirs.info and ours.info["Software"].startswith("Matplotlib")


def test_figure_files_hint_their_text_as_matplotlib_did_up_to_3_10(shapes, tmp_path, monkeypatch):
    import matplotlib

    before, hinting, save = matplotlib.rcParams["text.hinting"], [], drawing.save_png

    def recorded(*args):
        hinting.append(matplotlib.rcParams["text.hinting"])
        save(*args)

    monkeypatch.setattr(drawing, "save_png", recorded)
    assert (
        plot._draw_one("heatmap", shapes["one seed"], tmp_path, "png", 90)
        == tmp_path / "heatmap.png"
    )
    assert hinting == ["force_autohint"]
    assert matplotlib.rcParams["text.hinting"] == before  # the user's own settings stay


def test_a_title_over_a_y_offset_text_is_raised_as_savefig_raises_it(tmp_path):
    def make():
        fig = Figure(figsize=(3, 2.5), layout="constrained")
        ax = fig.add_subplot()
        ax.plot([1e-7, 3e-7])  # the y axis reads "1e-7" over its top left corner
        ax.set_title("a title as wide as its axes, or wider")
        return fig

    assert same_pixels(make, tmp_path)


def test_text_is_drawn_with_the_pixels_savefig_draws(tmp_path):
    """Text at every angle and position within a pixel, plain and mathtext, of several
    sizes, weights and families, with and without antialiasing; each string twice (its
    glyphs are then rendered once: drawing.Canvas under matplotlib 3.11)."""
    rng = np.random.default_rng(0)

    def make(seed):
        fig = Figure(figsize=(3.1, 2.3), layout="constrained")
        ax = fig.add_subplot()
        ax.set_xlabel("learning rate (lr)")
        ax.set_ylabel("final loss ≤ 0.07", rotation=30)
        ax.set_title(r"$\alpha = 10^{-3}$ and plain", fontsize=7.5)
        pick = np.random.default_rng(seed)
        for k in range(24):
            ax.text(pick.random(), pick.random(), ["0.0625", "Wq gy", "10k"][k % 3],
                    rotation=pick.choice([0, 90, 33.3, -12]), fontsize=5 + k % 7,
                    fontweight=["normal", "bold"][k % 2], antialiased=k % 5 != 0,
                    family=["DejaVu Sans", "DejaVu Serif", "monospace"][k % 3])  # fmt: skip
        for size, y in ((14, 0.3), (8, 0.5), (14, 0.7)):  # ≤, → and α: the second font's
            ax.text(0.3 + y / 7, y, "loss ≤ 0.07 → α" if size > 8 else "≤ → α",
                    family=["cmr10", "DejaVu Sans"], fontsize=size)  # fmt: skip
        if hasattr(Text, "set_language"):  # matplotlib 3.11: OpenType features, languages
            ax.text(0.1, 0.2, "fin office", fontfeatures=["-liga"],
                    language=[("en", 0, 3), ("fr", 4, 10)])  # fmt: skip
        return fig

    for seed in rng.integers(1_000, size=3):
        assert same_pixels(lambda seed=seed: make(seed), tmp_path), seed


def test_a_glyph_drawn_again_a_whole_number_of_pixels_away_keeps_its_pixels(tmp_path):
    """The same string at places a whole number of pixels apart (the same position within
    a pixel), turned, or without antialiasing: each is drawn as savefig draws it."""
    from matplotlib.transforms import IdentityTransform

    def make():
        fig = Figure(figsize=(3.1, 2.3))
        for i, angle in enumerate([0, 0, 90, 33.3, 0, 90]):
            for j, smooth in enumerate([True, False, True]):
                fig.text(20 + 40 * i + 0.37, 30 + 60 * j + 0.61, "0.0625", rotation=angle,
                         antialiased=smooth, transform=IdentityTransform(), fontsize=8,
                         ha="left", va="baseline", rotation_mode="anchor")  # fmt: skip
        return fig

    assert same_pixels(make, tmp_path)


def test_the_text_kept_for_the_process_stays_within_its_bounds(shapes, tmp_path, monkeypatch):
    """Kept glyphs and strings are dropped once past their bounds, the pixels the same."""
    for kept in ("_GLYPHS", "_LAYOUTS", "_EXTENTS"):  # none kept yet
        monkeypatch.setattr(drawing, kept, {})
    monkeypatch.setattr(drawing, "GLYPHS_KEPT", 40)
    monkeypatch.setattr(drawing, "STRINGS_KEPT", 6)
    results = shapes["architectures x activations"]
    assert same_pixels(lambda: plot.final_loss(results), tmp_path)
    assert len(drawing._GLYPHS) <= 40 and len(drawing._LAYOUTS) <= 6
    assert len(drawing._EXTENTS) <= 6


def fresh_process(drawing, monkeypatch) -> None:
    """drawing as a new process has it: nothing kept, the stored file not read yet."""
    for kept in ("_GLYPHS", "_LAYOUTS", "_EXTENTS", "_STORED", "_NEW"):
        monkeypatch.setattr(drawing, kept, {})
    monkeypatch.setattr(drawing, "_LOADED", [])


def test_text_laid_out_once_is_stored_for_the_next_process(shapes, tmp_path, monkeypatch):
    """The workers' text layouts and extents reach fastbp's cache; a new process draws
    from them, with savefig's pixels, and works out nothing again."""
    import json

    monkeypatch.setenv("FASTBP_KERNEL_DIR", str(tmp_path / "cache"))
    fresh_process(drawing, monkeypatch)
    results = shapes["one seed"]
    assert len(plot.write_figures(results, tmp_path / "a", note=lambda _: None)) == 8
    stored = drawing._stored_file()
    if not drawing.GLYPH_BY_GLYPH:  # matplotlib draws the text: nothing stored
        assert not stored.exists()
        return
    assert len(json.loads(stored.read_text())) > 50
    assert same_pixels(lambda: plot.final_loss(results), tmp_path)  # at another dpi
    drawing.save_stored_text()
    fresh_process(drawing, monkeypatch)
    assert same_pixels(lambda: plot.final_loss(results), tmp_path)
    assert drawing._LAYOUTS and drawing._EXTENTS and not drawing._NEW  # all from the file


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"[\\"layout\\"": [1, 2]}'])
def test_a_damaged_store_of_text_is_left_aside(text, shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBP_KERNEL_DIR", str(tmp_path))
    fresh_process(drawing, monkeypatch)
    drawing._stored_file().write_text(text)
    assert same_pixels(lambda: plot.heatmap(shapes["one seed"]), tmp_path)
    assert not drawing._STORED


def test_text_is_drawn_glyph_by_glyph_here_only_under_matplotlib_3_11():
    import matplotlib

    assert drawing.GLYPH_BY_GLYPH == matplotlib.__version__.startswith("3.11.")


def test_plot_command_notes_skipped_figures(tmp_path):
    spec = tmp_path / "one.toml"
    spec.write_text(textwrap.dedent("""
        [sweep]
        name = "one"
        [base]
        steps = 100
        [grid]
        seed = [0, 1]
        """))  # fmt: skip
    assert sweep_main([str(spec), "--out", str(tmp_path / "o"), "--quiet", "--n-jobs", "1"]) == 0
    out = subprocess.run(
        [sys.executable, "-m", "fastbp.plot", str(tmp_path / "o")], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "skipped final_loss: nothing is swept besides seed" in out.stdout
    assert "skipped heatmap:" in out.stdout
    written = list((tmp_path / "o" / "plots").glob("*.png"))
    assert {p.stem for p in written} == {"loss_curves", "accuracy_curves", "learned_params",
                                         "inside_run"}  # fmt: skip
    assert "skipped heatmap" in (tmp_path / "o" / "plots" / "report.html").read_text()


def test_sweep_draws_the_figures_unless_told_not_to(sweep_dir):
    assert not (sweep_dir / "plots").exists()  # the fixture ran with --no-plots
    assert sweep_main([str(sweep_dir / "spec.toml"), "--out", str(sweep_dir), "--quiet"]) == 0
    drawn = [name for name in plot.FIGURES if name not in HELD_OUT_FIGURES]  # no validation
    assert len(list((sweep_dir / "plots").glob("*.png"))) == len(drawn)
    assert (sweep_dir / "plots" / "report.html").is_file()


def test_plot_command_rejects_a_directory_without_results(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "fastbp.plot", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"error: {tmp_path}: not a sweep's results (runs.parquet is missing); a sweep writes "
        f"them there when it finishes: python -m fastbp.sweep SPEC --out {tmp_path}"
    )


def plot_command(*args):
    command = [sys.executable, "-m", "fastbp.plot", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_plot_command_on_damaged_or_unfinished_folders_is_one_line(sweep_dir, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    def copy(name):
        folder = tmp_path / name
        shutil.copytree(sweep_dir, folder)
        return folder

    cases = []
    disagree = copy("disagree")  # killed while the tables were written: curves of 2 runs more
    curves = pq.read_table(disagree / "curves.parquet")
    extra = curves.filter(pa.compute.equal(curves["run_id"], curves["run_id"][0]))
    extra = extra.set_column(0, "run_id", pa.array(["x"] * len(extra), curves.schema[0].type))
    pq.write_table(pa.concat_tables([curves, extra]), disagree / "curves.parquet")
    cases.append((disagree, 1, "its tables disagree (runs.parquet holds"))
    damaged = copy("damaged")
    (damaged / "runs.parquet").write_bytes(b"PAR1 not parquet")
    cases.append((damaged, 1, "its tables cannot be read ("))
    unfinished = copy("unfinished")  # stopped before its tables were written
    for name in ("runs", "curves", "params"):
        (unfinished / f"{name}.parquet").unlink()
    cases.append((unfinished, 2, "its sweep has not finished: "))
    plots_file = copy("plots_file")
    shutil.rmtree(plots_file / "plots", ignore_errors=True)
    (plots_file / "plots").write_text("")
    cases.append((plots_file, 2, f"{plots_file / 'plots'}: cannot be created"))
    for folder, code, message in cases:
        out = plot_command(folder)
        assert out.returncode == code and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr
    listed = copy("listed")  # a meta.json that holds a list: the tables still draw
    (listed / "meta.json").write_text("[1, 2]")
    out = plot_command(listed, "--out", tmp_path / "listed plots")
    assert out.returncode == 0, out.stderr


def test_plot_command_stopped_by_ctrl_c_says_so_in_a_line(sweep_dir, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plot, "draw", interrupted)
    assert plot.main([str(sweep_dir)]) == 130
    assert capsys.readouterr().err.startswith("interrupted: the figures in ")


def test_plot_command_rejects_a_file_as_output(sweep_dir, tmp_path):
    target = tmp_path / "taken"
    target.write_text("")
    for where, problem in [(target, "must be a directory"),
                           (target / "sub", "cannot be created: Not a directory"),
                           ("", "must be a directory")]:  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "fastbp.plot", str(sweep_dir), "--out", str(where)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert out.returncode == 2
        assert out.stderr.strip() == f"error: --out '{where}': {problem}"


def test_figures_of_a_subset_of_runs(sweep_dir):
    results = load_results(sweep_dir)
    runs = results.runs[results.runs["lr"] == 0.05]
    one = Results(runs, results.curves, results.params, results.threshold, results.swept)
    fig = plot.loss_curves(one)  # lr takes one value here: steps is the colour, bias panels
    assert len(visible_axes(fig)) == 2
    drawn = [seg for ax in visible_axes(fig) for c in ax.collections
             if isinstance(c, LineCollection) for seg in c.get_segments()]  # fmt: skip
    expected = runs.groupby(["bias", "steps"])["final_loss"].median()  # other runs left out
    assert sorted(seg[-1, 1] for seg in drawn) == pytest.approx(sorted(expected))
    assert fig.axes[1].get_legend().get_title().get_text() == "steps"
    fig = plot.final_loss(one)  # steps along x, bias as colour
    assert "steps" in visible_axes(fig)[0].get_xlabel()


def test_values_that_round_alike_keep_distinct_labels():
    runs = pd.DataFrame({"lr": [1.0001, 1.0002, 0.5]})
    assert scale(runs, "lr").labels == ("0.5", "1.0001", "1.0002")


def test_runs_that_diverge_at_once_still_show_where_they_started(shapes):
    results = shapes["every run diverged"]
    fig = plot.loss_curves(results)
    for ax in visible_axes(fig):
        (dots,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(dots.get_offsets()) == 2 and (dots.get_offsets()[:, 0] == 0).all()
    fig = plot.final_loss(results)
    assert "no run has a finite final loss" in all_text(fig)


def test_runs_of_different_loss_functions_get_panels_of_their_own():
    from types import SimpleNamespace

    from fastbp.layout import roles

    runs = pd.DataFrame({"lr": [0.1, 0.1, 0.01, 0.01], "loss_fn": ["mse", "bce"] * 2,
                         "seed": [0, 0, 0, 0]})  # fmt: skip
    r = roles(SimpleNamespace(runs=runs, swept=("loss_fn", "lr")))
    assert r.colour == "lr" and r.panels == ("loss_fn",)  # never a colour, never pooled


def test_runs_of_different_losses_compare_by_accuracy_and_show_validation(shapes):
    results = shapes["losses, optimizers, held-out samples"]
    fig = plot.heatmap(results)
    assert "Median final accuracy" in all_text(fig)  # not losses on one colour scale
    for name in ("accuracy_curves", "val_loss_curves", "val_accuracy_curves"):
        fig = plot.FIGURES[name](results)
        labels = {ax.get_ylabel() for ax in visible_axes(fig)} - {""}
        assert labels, name
        if name == "val_loss_curves":  # each loss function on its own axis
            assert labels == {"validation loss (MSE)", "validation loss (binary cross-entropy)"}
    tables = dict(summary_tables(results.runs, results.swept))
    assert {"median_accuracy", "median_val_loss", "median_val_accuracy"} <= set(
        tables["optimizer"].columns
    )


def test_a_results_ranks_its_settings_once_and_hands_out_copies(shapes):
    results = shapes["random search"]
    first = results.settings()
    expected = ranking.settings(results.runs, results.swept, results.threshold)
    pd.testing.assert_frame_equal(first, expected)
    first.loc[:, "runs"] = -1  # a caller's changes stay its own
    pd.testing.assert_frame_equal(results.settings(), expected)
    assert results.varied_fields == tuple(swept(results.runs, results.swept))


def test_the_best_line_picks_the_lowest_median_over_seeds_and_skips_diverged_runs():
    import pandas as pd

    runs = pd.DataFrame({
        "run_id": [f"r{k}" for k in range(7)],
        "lr": [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 1.0],
        "seed": [0, 1, 2, 0, 1, 2, 0],
        "final_loss": [0.01, 0.30, 0.30, 0.05, 0.06, 0.07, float("nan")],  # lr 0.1 has the
        "diverged": [False] * 6 + [True],  # single lowest run, lr 0.01 the lowest median
    })  # fmt: skip
    assert best_line(runs, ["lr", "seed"]) == (
        "best: lr=0.01: median final loss 0.06, over 3 seeds (median seed: r4)"
    )
    one_each = runs[runs["seed"] == 0]  # one run per setting
    assert best_line(one_each, ["lr"]) == "best: lr=0.1: median final loss 0.01, one run"
    assert best_line(runs[runs["diverged"]], ["lr"]) == "best: none: every run diverged"
    mixed = runs.assign(optimizer=["adam"] * 3 + ["momentum"] * 4,
                        momentum=[None] * 3 + [0.5, 0.9, 0.9, 0.9])  # fmt: skip
    assert best_line(mixed.iloc[[0, 3, 6]], ["lr", "optimizer", "momentum"]) == (
        "best: lr=0.1, optimizer=adam: median final loss 0.01, one run"  # no momentum=none
    )
    # with a threshold: the share of seeds that reached it, with its interval
    assert best_line(runs, ["lr", "seed"], threshold=0.08) == (
        "best: lr=0.01: 3 of 3 (95%: 44-100%) reached 0.08, median final loss 0.06, over 3 "
        "seeds (median seed: r4)"
    )


def test_run_params_gives_each_runs_final_weights_back(tmp_path):
    from fastbp import init_params
    from fastbp.results import config_from_row

    spec = '[sweep]\nname = "p"\n[base]\nsteps = 10\n[grid]\nlayers = [[3, 2, 3], [4, 5, 2, 4]]\n'
    results = sweep_results(spec + "seed = [0, 1]\n", tmp_path)  # params: those drawn
    for _, row in results.runs.iterrows():
        expected = init_params(config_from_row(row))
        got = results.run_params(row["run_id"])
        assert [W.shape for W, _ in got] == [W.shape for W, _ in expected]
        for (W, b), (W0, b0) in zip(got, expected, strict=True):
            np.testing.assert_array_equal(W, W0)
            np.testing.assert_array_equal(b, b0)


def test_the_subtitle_says_which_optimizers_an_optimizers_own_field_belongs_to(shapes):
    from fastbp.layout import subtitle

    mixed = subtitle(shapes["losses, optimizers, held-out samples"])  # sgd, momentum, adam
    assert "momentum=0.9 (momentum)" in mixed and "beta2=0.999 (adam)" in mixed
    plain = subtitle(shapes["dense lr grid"])  # sgd only: no optimizer's own field
    assert "optimizer=sgd" in plain and not re.search(r"momentum|beta|\beps=", plain)
    assert "=none" not in mixed + plain  # a field without a value is left out


def test_a_numeric_field_with_missing_values_is_binned_and_coloured_by_value(shapes):
    from fastbp.plot import Colours

    results = shapes["random momentum, some runs Adam"]
    s = scale(results.runs, "momentum")  # 26 values, and none for the Adam runs
    assert s.binned and len(s) <= 12 and s.labels[-1] == "none"
    adam = (results.runs["optimizer"] == "adam").to_numpy()
    assert (s.codes[adam] == len(s) - 1).all() and (s.codes[~adam] < len(s) - 1).all()
    np.testing.assert_array_equal(s.codes_of(results.runs["momentum"]), s.codes)
    # a run per value: the colours are bins of values along a colour map (a series and a
    # legend entry each), grey where there is none
    colours = Colours(results.runs, "momentum")
    assert colours.scale.binned and colours.scale.labels[-1] == "none"
    assert len(colours.colours) == len(colours.scale) <= plot.COLOUR_BINS + 1
    np.testing.assert_array_equal(colours.codes(results.runs), colours.scale.codes)
    grey = np.array([c[:3] == colours.colours[-1][:3] for c in colours.colours])
    assert grey.sum() == 1  # only the missing value's colour is the neutral one
    assert len(set(colours.colours)) == len(colours.colours)
    fig = plot.final_loss(results, x="lr", colour="momentum")
    assert legends(fig) and not [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_a_random_search_colours_by_bins_of_values_not_a_series_per_run(shapes):
    results = shapes["random momentum, some runs Adam"]  # 40 runs, 40 values of lr
    runs = results.runs
    fig = plot.steps_to_threshold(results, threshold=0.2, x="optimizer", colour="lr")
    (legend,) = legends(fig)
    names = [t.get_text() for t in legend.get_texts()]
    bins = plot.Colours(runs, "lr").scale
    assert bins.binned and len(bins) <= plot.COLOUR_BINS
    assert [n for n in names if "–" in n] == list(bins.labels)  # one entry per bin
    # and a dense grid keeps a series per value: 40 learning rates, with seeds each
    dense = plot.Colours(shapes["dense lr grid"].runs, "lr")
    assert dense.continuous and len(dense.colours) == shapes["dense lr grid"].runs["lr"].nunique()


def test_floors_that_differ_by_architecture_stay_with_their_architecture(shapes):
    results = shapes["architectures x activations"]  # floors 0.0625 (last hidden width 3)
    floors = results.runs.groupby("layers")["loss_floor"].first()  # and 0.0156 (width 6)
    assert floors.nunique() == 2
    fig = plot.final_loss(results, x="layers", colour="activation", panels=())
    (ax,) = visible_axes(fig)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    segments = [seg for c in ax.collections if isinstance(c, LineCollection)
                and c.get_linestyle()[0][1] for seg in c.get_segments()]  # fmt: skip
    spans = {(round(y0, 6), x0, x1) for (x0, y0), (x1, _) in segments}
    for k, layers in enumerate(labels):  # each architecture's floor over its own slot only
        assert (round(floors[layers], 6), k - 0.45, k + 0.45) in spans
    assert all(x1 - x0 < 1 for _, x0, x1 in spans)
    curves = plot.loss_curves(results, colour="layers", panels=())  # in its runs' colour
    colours = {tuple(line.get_color()) if not isinstance(line.get_color(), str)
               else line.get_color() for line in visible_axes(curves)[0].get_lines()
               if line.get_linestyle() not in ("-", "None")}  # fmt: skip
    assert len(colours) == 2 and "0.35" in colours  # 0.0625 shared by two: grey


def test_values_just_below_one_do_not_read_as_one():
    """A decay factor of 0.9998 (or Adam's beta2 of 0.9999) is not '1' in any view."""
    from fastbp.layout import fmt

    assert [fmt("gamma", v) for v in (0.9998, 0.9999, 0.999, 0.95, 0.5)] == [
        "0.9998", "0.9999", "0.999", "0.95", "0.5"]  # fmt: skip
    assert fmt("lr", 0.0316227766) == "0.0316" and fmt("lr", 1.0) == "1"


def test_outputs_carry_their_values_only_where_the_rows_have_room(shapes, monkeypatch):
    """The held-out shape's best run has 12 training samples: written in their cells;
    with room for fewer rows than that (as 6-bit parity's 48 have), the colours alone."""
    results = shapes["losses, optimizers, held-out samples"]

    def numbers(fig):
        return sum(len(ax.texts) for ax in visible_axes(fig) if ax.get_xlabel() == "output unit")

    assert numbers(plot.learned_params(results)) == 12
    monkeypatch.setattr(plot, "ANNOTATED_ROWS", 8)
    assert numbers(plot.learned_params(results)) == 0


def test_inside_the_best_run_of_an_encoder_shows_its_narrowest_layer(shapes):
    """The code of each sample at the narrowest hidden layer of the best setting's median
    seed, its dead units (0 for every sample) named under their column."""
    from fastbp.reference import ACTIVATIONS, Layer, forward
    from fastbp.results import config_from_row

    results = shapes["architectures x activations"]
    fig = plot.inside_run(results)
    (ax,) = visible_axes(fig)
    (_, row), *_ = plot.shown_runs(results)
    layers = [Layer(W, b) for W, b in results.run_params(row["run_id"])]
    X = np.eye(8)
    _, hidden = forward(layers, X, ACTIVATIONS[row["activation"]][0])
    narrowest = min(hidden, key=lambda h: h.shape[1])
    image = ax.get_images()[0].get_array()
    assert image.shape == (8, narrowest.shape[1]) and np.allclose(image, narrowest)
    dead = int((~(narrowest != 0).any(axis=0)).sum())
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert sum("dead" in t for t in labels) == dead
    assert f"{dead} of {narrowest.shape[1]} units dead" in all_text(fig)
    assert config_from_row(row).dataset == "encoder" and "the code" in ax.get_xlabel()


def test_a_wide_code_keeps_its_unit_labels_apart(tmp_path):
    # "unit 1" ... "unit 16" ran into each other under an 8-16-8's code
    spec = '[sweep]\nname = "w"\n[base]\nlayers = [8, 16, 8]\nsteps = 100\n[grid]\nseed = [0, 1]\n'
    fig = plot.inside_run(sweep_results(spec, tmp_path))
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    (ax,) = visible_axes(fig)
    ticks = [t for t in ax.get_xticklabels() if t.get_text()]
    assert len(ticks) == 16
    boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.x0)
    assert all(a.x1 <= b.x0 for a, b in itertools.pairwise(boxes)), [t.get_text() for t in ticks]


def test_inside_a_two_input_run_draws_its_surface_and_each_hidden_units(tmp_path):
    import fastbp

    results = fastbp.run_sweep(
        '[sweep]\nname = "x"\n[base]\ndataset = "xor"\nlayers = [2, 3, 1]\nsteps = 300\n'
        "log_every = 100\nlr = 0.3\n[grid]\nseed = [0, 1]\n",
        out=tmp_path / "x", plots=False, quiet=True,
    )  # fmt: skip
    fig = plot.inside_run(results)
    axes = visible_axes(fig)
    titles = [ax.get_title() for ax in axes]
    assert len(axes) == 1 + 3 and titles[0].startswith("network output")
    assert [t.split(" (")[0] for t in titles[1:]] == ["hidden unit 1", "hidden unit 2",
                                                      "hidden unit 3"]  # fmt: skip
    # the output panel's dots are the 4 samples, coloured by their targets
    dots = axes[0].collections[-1]
    assert len(dots.get_offsets()) == 4 and sorted(dots.get_array()) == [0, 0, 1, 1]
    assert "dead" in all_text(fig) and "input crosses 0" in all_text(fig)


def test_losses_far_below_the_top_are_drawn_at_the_bottom_and_said(tmp_path):
    """xor's runs solve it to 1e-31: a log axis shows 10 decades below its top, and the
    losses below are drawn at its bottom, with a note, not 30 decades of rounding."""
    import fastbp

    results = fastbp.run_sweep(
        '[sweep]\nname = "x"\n[base]\ndataset = "xor"\nlayers = [2, 4, 1]\nactivation = "tanh"\n'
        "steps = 3000\nlog_every = 100\n[grid]\nlr = [0.01, 0.3]\nseed = [0, 1]\n",
        out=tmp_path / "x", plots=False, quiet=True,
    )  # fmt: skip
    losses = results.runs["final_loss"]
    assert losses.min() < 1e-20 and losses.max() > 1e-3  # solved to rounding, and not
    for fig in (plot.loss_curves(results), plot.final_loss(results)):
        low, high = visible_axes(fig)[0].get_ylim()
        assert high / low < 10 ** (plot.LOSS_DECADES + 1.5)
        assert "decades under the top of the axis" in all_text(fig)
    fig = plot.final_loss(results)
    from matplotlib.collections import PathCollection

    dots = [c for ax in visible_axes(fig) for c in ax.collections if isinstance(c, PathCollection)]
    lowest = min(float(np.min(c.get_offsets()[:, 1])) for c in dots)
    assert lowest >= visible_axes(fig)[0].get_ylim()[0]  # every run still on the axes


def test_a_symlog_steps_axis_has_no_tick_beside_zero():
    """Steps logged from 50 to 5,000 span two decades: a symlog axis, linear up to 50. Its
    ticks are 0 and the powers of ten from 50 on; a tick at 10, next to 0, ran into it."""
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    plot._steps_axis(ax, np.arange(0, 5001, 50))
    assert ax.get_xscale() == "symlog"
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks == [0, 100, 1000]


def test_panels_of_two_fields_keep_one_value_of_the_first_to_a_row():
    """3 optimizers x 4 batch sizes: 4 panels a row, one optimizer each (3 columns split
    one optimizer's panels over two rows); 5 activations do not fit a row: the default."""
    from fastbp.layout import panel_groups

    runs = pd.DataFrame([{"optimizer": o, "batch_size": b} for o in ("sgd", "momentum", "adam")
                         for b in (1, 2, 4, 8)])  # fmt: skip
    groups = panel_groups(runs, ["optimizer", "batch_size"])
    grid = plot._grid(runs, ["optimizer", "batch_size"], groups)
    assert grid == (4, list(range(12)))
    fig, axes = plot._figure(len(groups), grid=grid)
    rows = [ax.get_subplotspec().rowspan.start for ax in axes]
    assert rows == [0] * 4 + [1] * 4 + [2] * 4
    five = pd.DataFrame([{"optimizer": o, "activation": a} for o in ("sgd", "adam")
                         for a in ("relu", "tanh", "sigmoid", "identity", "elu")])  # fmt: skip
    fields = ["optimizer", "activation"]
    assert plot._grid(five, fields, panel_groups(five, fields)) is None


def test_init_scale_makes_panels_only_where_init_is_normal():
    """A random search over init and init_scale: he and xavier ignore init_scale, so each
    is one panel of all its runs (not four of a quarter each, alike but for noise), and the
    two share a row; normal's four bins of init_scale fill the next."""
    from fastbp.layout import panel_groups

    rng = np.random.default_rng(0)
    runs = pd.DataFrame({"init": rng.choice(["he", "xavier", "normal"], 120),
                         "init_scale": rng.uniform(0.05, 1.0, 120)})  # fmt: skip
    fields = ["init", "init_scale"]
    groups = panel_groups(runs, fields)
    titles = [title for title, _ in groups]
    assert titles[0] == "init=he" and titles[-1] == "init=xavier"
    assert len(titles) == 6 and all(t.startswith("init=normal, init_scale=") for t in titles[1:5])
    assert sum(mask.sum() for _, mask in groups) == 120  # every run in one panel
    assert groups[0][1].sum() == (runs["init"] == "he").sum()
    grid = plot._grid(runs, fields, groups)
    fig, axes = plot._figure(len(groups), grid=grid)
    places = [(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start)
              for ax in axes]  # fmt: skip
    assert places == [(0, 0), (1, 0), (1, 1), (1, 2), (1, 3), (0, 1)]
    assert sum(ax.get_visible() for ax in fig.axes) == 6
    from types import SimpleNamespace

    from fastbp.layout import roles

    runs["lr"] = rng.choice([0.01, 0.1], 120)  # a spec that names init_scale before init
    r = roles(SimpleNamespace(runs=runs, swept=("lr", "init_scale", "init")))
    assert r.panels == ("init", "init_scale")  # init first: the same panels, the same rows
    assert (
        plot._grid(runs, ["init_scale", "init"], panel_groups(runs, ["init_scale", "init"])) is None
    )  # by hand in that order: he's panel pools init_scale's bins, the default grid


def test_plateaus_are_labelled_as_fractions_with_their_runs():
    """Runs stalled on exact plateaus are labelled at the right of the panel, as fractions
    over one denominator (4/64, not 1/16), with the runs on them or within half a percent
    (one dot); a plateau that is no fraction, or one too close to a fuller one, is not."""
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    values = np.concatenate([
        np.full(300, 5 / 64), np.full(150, 4 / 64), 4 / 64 * (1 + rng.uniform(0, 0.004, 50)),
        np.full(40, 0.1 * np.pi), np.full(30, 7 / 64), np.full(10, 7 / 64 * 1.01),
        rng.uniform(0.1, 0.3, 100),
    ])  # fmt: skip
    ax = Figure(figsize=(8, 4)).add_subplot()
    ax.set_yscale("log")
    ax.set_ylim(0.05, 0.4)
    plot._plateau_labels(ax, values)
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["4/64 · 200 runs", "5/64 · 300 runs", "7/64 · 30 runs"]
    crowded = Figure(figsize=(8, 0.8)).add_subplot()  # 5/64 and 7/64: one line apart at most
    crowded.set_yscale("log")
    crowded.set_ylim(0.05, 0.4)
    plot._plateau_labels(crowded, values[values > 0.07])
    assert [t.get_text() for t in crowded.texts] == ["5/64 · 300 runs"]
