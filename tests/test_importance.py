"""What matters: shares of the spread of runs' results (fastbp.importance)."""

import itertools

import numpy as np
import pandas as pd
import pytest

from fastbp import importance


def grid(effect, seeds=4, noise=0.0):
    """A full grid of lr (3 values) x activation (2) x seeds, each run's final loss
    10 ** effect(lr index, activation index) times a seeded wobble."""
    rng = np.random.default_rng(0)
    rows = []
    for (i, lr), (j, act), seed in itertools.product(
        enumerate([0.01, 0.1, 1.0]), enumerate(["relu", "tanh"]), range(seeds)
    ):
        value = effect(i, j) + noise * rng.standard_normal()
        rows.append({"run_id": f"{i}{j}{seed}", "lr": lr, "activation": act, "seed": seed,
                     "final_loss": 10.0**value, "diverged": False})  # fmt: skip
    return pd.DataFrame(rows)


def share_of(table, source):
    return float(table.loc[table["source"] == source, "share"].iloc[0])


def test_a_full_grid_splits_exactly_into_fields_their_pair_and_the_seed():
    runs = grid(lambda i, j: 2.0 * i + 1.0 * j + 0.5 * i * j, noise=0.3)
    table = importance.shares(runs, ["lr", "activation", "seed"])
    assert set(table["kind"]) == {"field", "pair", "seed"}  # nothing left over
    assert table["share"].sum() == pytest.approx(1.0, abs=1e-12)
    lr, act = share_of(table, "learning rate (lr)"), share_of(table, "activation")
    assert lr > act > share_of(table, "seed (within settings)") > 0


def test_what_a_field_does_not_change_it_does_not_explain():
    runs = grid(lambda i, j: float(i))  # activation changes nothing, no noise
    table = importance.shares(runs, ["lr", "activation", "seed"])
    assert share_of(table, "learning rate (lr)") == pytest.approx(1.0)
    assert share_of(table, "activation") == pytest.approx(0.0, abs=1e-12)
    assert share_of(table, "seed (within settings)") == pytest.approx(0.0, abs=1e-12)


def test_diverged_runs_count_as_the_worst_finite_value():
    runs = grid(lambda i, j: -float(i))
    runs.loc[runs["lr"] == 1.0, ["final_loss", "diverged"]] = [np.nan, True]
    values, what = importance.quantity(runs)
    assert what == "log10 of the final loss" and np.isfinite(values).all()
    assert values[runs["diverged"].to_numpy()].min() == values.max()


def test_a_loss_of_exactly_zero_is_the_best_value_not_a_missing_one():
    runs = grid(lambda i, j: -float(i))
    runs.loc[0, "final_loss"] = 0.0  # solved exactly
    values, _ = importance.quantity(runs)
    assert values[0] == values.min() == -300.0


def random_over_seeds(configs=20, seeds=3):
    """A random search of lr and activation, each configuration at several seeds: only
    the activation matters, with a little noise between seeds."""
    rng = np.random.default_rng(1)
    rows = []
    for k in range(configs):
        lr, act = float(10 ** rng.uniform(-3, 0)), ["relu", "tanh"][k % 2]
        for seed in range(seeds):
            value = (1.0 if act == "tanh" else 0.0) + 0.05 * rng.standard_normal()
            rows.append({"run_id": f"{k}-{seed}", "lr": lr, "activation": act, "seed": seed,
                         "final_loss": 10.0**value, "diverged": False})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_random_search_over_seeds_credits_what_matters_not_its_many_values():
    # each lr value repeats over its seeds, but sets apart one configuration: taken as
    # categories it explained every difference between configurations, activation's too
    table = importance.shares(random_over_seeds(), ["lr", "activation", "seed"])
    assert not table.attrs["balanced"]
    assert (table["share"] >= 0).all() and table["share"].sum() == pytest.approx(1.0)
    assert share_of(table, "activation") > 0.9
    assert share_of(table, "learning rate (lr)") < 0.05


def test_an_unbalanced_union_splits_into_shares_that_are_never_negative():
    runs = grid(lambda i, j: 2.0 * i + 1.0 * j + 0.5 * i * j, noise=0.3)
    runs = runs[~((runs["lr"] == 1.0) & (runs["activation"] == "tanh") & (runs["seed"] > 0))]
    table = importance.shares(runs, ["lr", "activation", "seed"])
    assert not table.attrs["balanced"]
    assert (table["share"] >= 0).all() and table["share"].sum() == pytest.approx(1.0)
    assert list(table["source"][:2]) == ["learning rate (lr)", "activation"]
    full = importance.shares(grid(lambda i, j: 2.0 * i + 1.0 * j, noise=0.3), ["lr", "activation"])
    assert full.attrs["balanced"]
