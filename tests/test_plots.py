"""Figures drawn from a small real sweep: what each shows, skips, and the plot command."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from fastbp import load_results, plots
from fastbp.results import Results
from fastbp.sweep import main as sweep_main

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


@pytest.fixture(scope="module")
def results(sweep_dir):
    return load_results(sweep_dir)


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def test_loss_curves_one_panel_per_combination_one_line_per_lr(results):
    fig = plots.loss_curves(results)
    assert isinstance(fig, Figure)
    axes = visible_axes(fig)
    assert len(axes) == 4  # bias x steps
    assert sum("diverged" in ax.get_title() for ax in axes) == 2  # lr = 50 with biases
    for ax in axes:
        assert len(ax.get_lines()) == 3  # one median line per learning rate
        assert ax.get_yscale() == "log" and ax.get_xscale() == "log"  # 10 ... 2000 steps
        assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss (MSE)"
        assert ax.get_title().startswith("bias=")
    assert "swept: lr, bias, steps" in fig._suptitle.get_text()
    colours = {line.get_color() for ax in axes for line in ax.get_lines()}
    assert colours == set(plots.lr_colours(results.runs).values())  # one colour per lr


def test_final_loss_against_lr_is_log_log_with_runs_and_diverged_marks(results):
    fig = plots.final_loss(results)
    (ax,) = visible_axes(fig)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "learning rate" and ax.get_ylabel() == "final loss (MSE)"
    assert len(ax.get_lines()) == 4  # one per bias x steps group
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    shown = sum(len(c.get_offsets()) for c in dots)
    assert shown == len(results.runs)  # finished runs as dots, diverged ones at the top
    n_diverged = int(results.runs["diverged"].sum())
    assert n_diverged == 4  # lr = 50 with biases (without, the ReLUs die and it stalls)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"diverged ({n_diverged} runs)" in legend


def test_heatmap_cells_are_the_median_final_losses(results):
    fig = plots.heatmap(results, x="lr", y="bias")
    ax = visible_axes(fig)[0]
    (image,) = ax.get_images()
    cells = image.get_array()
    assert cells.shape == (2, 3)  # bias x lr
    assert isinstance(image.norm, LogNorm)
    runs = results.runs
    expected = runs[(runs["lr"] == 0.05) & runs["bias"]]["final_loss"].median()
    assert cells[1, 1] == pytest.approx(expected)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 6 and texts.count("diverged") == 1  # lr = 50 with biases
    assert ax.get_xlabel() == "lr" and ax.get_ylabel() == "bias"


def test_heatmap_default_second_axis_and_skip(results):
    fig = plots.heatmap(results)
    assert visible_axes(fig)[0].get_xlabel() == "lr"
    only_lr = results.runs[(results.runs["steps"] == 2000) & results.runs["bias"]]
    small = Results(only_lr, results.curves, results.params, results.threshold)
    with pytest.raises(plots.Skip, match="needs a second swept field besides lr and seed"):
        plots.heatmap(small)


def test_steps_to_threshold_counts_the_runs_that_never_reach_it(results):
    fig = plots.steps_to_threshold(results)
    (ax,) = visible_axes(fig)
    assert ax.get_xscale() == "log"
    assert "0.15" in ax.get_ylabel()
    counts = {t.get_text() for t in ax.texts}
    runs = results.runs
    for _, part in runs.groupby("lr"):
        missed = int(part["steps_to_threshold"].isna().sum())
        assert missed == 0 or f"{missed}/{len(part)}" in counts
    assert runs.loc[runs["diverged"], "steps_to_threshold"].isna().all()
    no_threshold = Results(results.runs, results.curves, results.params, None)
    with pytest.raises(plots.Skip, match="no threshold"):
        plots.steps_to_threshold(no_threshold)


def test_learned_params_shows_first_layer_biases_and_best_outputs(results):
    fig = plots.learned_params(results)
    axes = visible_axes(fig)
    assert len(axes) == 3  # biases, best run, best run without biases
    strip = axes[0]
    n_biases = sum(len(c.get_offsets()) for c in strip.collections)
    trained = results.runs[results.runs["bias"] & ~results.runs["diverged"]]
    assert n_biases == 3 * len(trained)  # 3 hidden units per run
    for ax in axes[1:]:
        (image,) = ax.get_images()
        assert image.get_array().shape == (8, 8)
    assert "without biases" in axes[2].get_title()


def test_a_single_learning_rate_skips_the_figures_that_compare_them(results):
    runs = results.runs[results.runs["lr"] == 0.05]
    one = Results(runs, results.curves, results.params, results.threshold)
    for draw in (plots.final_loss, plots.steps_to_threshold):
        with pytest.raises(plots.Skip, match="at least two learning rates"):
            draw(one)
    assert len(visible_axes(plots.loss_curves(one))) == 4  # still drawn


def test_plot_command_writes_every_figure(sweep_dir, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "fastbp.plot", str(sweep_dir), "--out", str(tmp_path), "--format",
         "svg"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"{name}.svg" for name in plots.FIGURES)
    assert all((tmp_path / f).stat().st_size > 5000 for f in files)


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
    assert "skipped final_loss: needs at least two learning rates" in out.stdout
    assert "skipped heatmap:" in out.stdout
    written = list((tmp_path / "o" / "plots").glob("*.png"))
    assert {p.stem for p in written} == {"loss_curves", "learned_params"}
    assert all(p.stat().st_size > 10_000 for p in written)


def test_sweep_draws_the_figures_unless_told_not_to(sweep_dir):
    assert not (sweep_dir / "plots").exists()  # the fixture ran with --no-plots
    assert sweep_main([str(sweep_dir / "spec.toml"), "--out", str(sweep_dir), "--quiet"]) == 0
    assert len(list((sweep_dir / "plots").glob("*.png"))) == len(plots.FIGURES)


def test_plot_command_rejects_a_directory_without_results(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "fastbp.plot", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert (
        out.stderr.strip() == f"error: {tmp_path}: not a sweep's results (runs.parquet is missing)"
    )


def test_colours_are_fixed_per_learning_rate(results):
    colours = plots.lr_colours(results.runs)
    assert list(colours) == [50.0, 0.05, 0.005]
    assert len(set(colours.values())) == 3
    assert np.all([isinstance(c, str) for c in colours.values()])
