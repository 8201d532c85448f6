"""One rule for "best": settings ranked over their seeds (fastbp.ranking)."""

import numpy as np
import pandas as pd
import pytest

from fastbp import ranking


def runs_of(settings, **columns):
    """A runs table: ``settings`` maps a value of lr to its seeds' final losses (None:
    diverged); more columns per run as keyword arguments."""
    rows = []
    for lr, losses in settings.items():
        for seed, loss in enumerate(losses):
            rows.append({"run_id": f"lr{lr}-s{seed}", "lr": lr, "seed": seed,
                         "final_loss": np.nan if loss is None else loss,
                         "diverged": loss is None})  # fmt: skip
    runs = pd.DataFrame(rows)
    for name, values in columns.items():
        runs[name] = values
    return runs


def test_wilson_intervals_are_the_textbook_ones():
    low, high = ranking.wilson([10, 0, 3, 19], [20, 5, 3, 20])
    np.testing.assert_allclose(low, [0.2993, 0.0, 0.4385, 0.7639], atol=5e-4)
    np.testing.assert_allclose(high, [0.7007, 0.4345, 1.0, 0.9911], atol=5e-4)
    assert ranking.wilson(0, 0) == (0.0, 1.0)


def test_a_setting_is_ranked_by_its_median_not_its_luckiest_seed():
    runs = runs_of({0.1: [0.01, 0.3, 0.3], 0.01: [0.05, 0.06, 0.07], 1.0: [None]})
    table = ranking.settings(runs, ["lr", "seed"])
    assert list(table["lr"]) == [0.01, 0.1, 1.0] and list(table["rank"]) == [1, 2, 3]
    assert list(table["median_run"][:2]) == ["lr0.01-s1", "lr0.1-s1"]
    assert table["median_loss"].iloc[2] == np.inf  # diverged: the worst
    assert ranking.basis(runs) == "loss" and "median final loss" in ranking.rule(runs)


def test_diverged_seeds_count_as_the_worst():
    # lr 0.5: its finite seed is the best run of all, but two of three diverged
    runs = runs_of({0.5: [0.001, None, None], 0.05: [0.1, 0.2, 0.3]})
    table = ranking.settings(runs, ["lr", "seed"])
    assert list(table["lr"]) == [0.05, 0.5] and list(table["diverged"]) == [0, 2]


def test_the_median_seed_is_the_better_middle_one_ties_by_run_id():
    runs = runs_of({0.1: [0.4, 0.1, 0.3, 0.2]})  # best first: s1, s3, s2, s0
    assert ranking.settings(runs, ["lr", "seed"])["median_run"].iloc[0] == "lr0.1-s3"
    tied = runs_of({0.1: [0.2, 0.2, 0.2, 0.2]})
    assert ranking.settings(tied, ["lr", "seed"])["median_run"].iloc[0] == "lr0.1-s1"


def test_with_a_threshold_the_lower_bound_of_the_success_share_ranks():
    # lr 0.1: 3 of 3 reached 0.1 (lower bound 0.44); lr 0.01: 19 of 20 (0.76) wins
    runs = runs_of({0.1: [0.01] * 3, 0.01: [0.05] * 19 + [0.5]})
    table = ranking.settings(runs, ["lr", "seed"], threshold=0.1)
    assert list(table["lr"]) == [0.01, 0.1]
    assert list(table["reached"]) == [19, 3]
    np.testing.assert_allclose(table["share_low"], [0.7639, 0.4385], atol=5e-4)
    assert "Wilson" in ranking.rule(runs, 0.1)
    # equal bounds: the median final loss decides
    even = runs_of({0.1: [0.05, 0.05], 0.01: [0.02, 0.03]})
    assert list(ranking.settings(even, ["lr", "seed"], threshold=0.1)["lr"]) == [0.01, 0.1]


def test_held_out_accuracy_ranks_before_the_training_loss():
    # lr 0.1 fits the training data best, lr 0.01 classifies held-out samples best
    runs = runs_of({0.1: [0.001, 0.002, 0.003], 0.01: [0.05, 0.06, 0.07]},
                   val_loss=[0.9, 0.8, 0.7, 0.3, 0.4, 0.5],
                   val_accuracy=[0.6, 0.65, 0.7, 0.72, 0.75, 0.7])  # fmt: skip
    table = ranking.settings(runs, ["lr", "seed"])
    assert ranking.basis(runs) == "val_accuracy" and list(table["lr"]) == [0.01, 0.1]
    assert table["median_run"].iloc[0] == "lr0.01-s0"  # 0.75, 0.72, 0.70: the middle one
    no_classes = runs.drop(columns="val_accuracy")
    assert ranking.basis(no_classes) == "val_loss"
    assert list(ranking.settings(no_classes, ["lr", "seed"])["lr"]) == [0.01, 0.1]


def test_where_the_loss_function_varies_accuracy_takes_the_place_of_loss():
    runs = runs_of({0.1: [0.01, 0.01], 0.01: [0.5, 0.5]},
                   loss_fn=["mse", "mse", "bce", "bce"], accuracy=[0.5, 0.5, 1.0, 1.0])  # fmt: skip
    assert ranking.basis(runs) == "accuracy"
    assert list(ranking.settings(runs, ["lr", "seed"])["lr"]) == [0.01, 0.1]


@pytest.mark.parametrize("with_seeds", [True, False])
def test_settings_of_fields_with_missing_values_and_lists(with_seeds):
    runs = runs_of({0.1: [0.3, 0.2], 0.01: [0.1, 0.2]})
    runs["momentum"] = [None, None, 0.9, 0.9]  # missing where it does not apply
    runs["layers"] = ["8-3-8"] * 4
    if not with_seeds:
        runs = runs[runs["seed"] == 0]
    table = ranking.settings(runs, ["lr", "momentum", "seed"])
    assert len(table) == 2 and table["lr"].iloc[0] == 0.01
    members = ranking.runs_of(runs, table.iloc[1], ["lr", "momentum", "seed"])
    assert set(members["lr"]) == {0.1} and len(members) == (2 if with_seeds else 1)
