"""Accuracy beside the loss: which targets it applies to, and its values at every logged
step against the reference's outputs, in every kernel form."""

from dataclasses import replace

import numpy as np
import pytest

from fastbp import reference
from fastbp.config import RunConfig
from fastbp.data import make_dataset
from fastbp.metrics import classes
from fastbp.train import train, train_batch


def test_accuracy_applies_to_one_hot_rows_and_single_0_1_columns():
    assert classes(np.eye(4)) == "one-hot"
    assert classes(np.array([[0.0], [1.0], [1.0]])) == "binary"
    assert classes(np.array([[0.0, 1.0], [1.0, 1.0]])) is None  # two labels in a row
    assert classes(np.array([[0.5], [1.0]])) is None  # not classes
    assert classes(np.array([[0.2, 0.8], [1.0, 0.0]])) is None  # probabilities
    assert train(RunConfig(steps=10, log_every=5)).accuracy.shape == (3,)


def expected_accuracy(config, steps):
    """The share of samples right after each number of steps, from the reference's
    outputs of the parameters train() reaches (the same bits in every form)."""
    X, T = make_dataset(config)
    out = []
    for s in steps:
        trained = (
            reference.init_params(config) if s == 0 else train(replace(config, steps=int(s))).params
        )
        Y = reference.predict(trained, X, config.activation)
        if T.shape[1] > 1:
            out.append(np.mean(Y.argmax(1) == T.argmax(1)))
        else:
            cut = 0.0 if config.loss_fn == "bce" else 0.5
            out.append(np.mean((Y[:, 0] >= cut) == (T[:, 0] == 1)))
    return np.array(out)


@pytest.mark.parametrize(
    "config",
    [
        RunConfig(lr=0.05, steps=600, log_every=100),
        RunConfig(dataset="xor", layers=(2, 3, 1), lr=0.3, steps=600, log_every=100),
        RunConfig(dataset="xor", layers=(2, 3, 1), lr=0.3, steps=600, log_every=100, loss_fn="bce"),
        RunConfig(layers=(4, 2, 4), loss_fn="cross_entropy", lr=0.5, steps=600, log_every=100),
    ],
    ids=["encoder", "xor", "xor-bce", "cross-entropy"],
)
def test_accuracy_at_each_logged_step_matches_the_outputs(config):
    result = train(config)
    np.testing.assert_array_equal(result.accuracy, expected_accuracy(config, result.steps))
    assert result.accuracy[-1] > result.accuracy[0]  # it learns
    loops = train(config, engine="loops")
    block = train_batch([replace(config, seed=s) for s in (1, 2, 3)] + [config])[-1]
    for other in (loops, block):
        np.testing.assert_array_equal(other.accuracy, result.accuracy)


def test_runs_sharing_a_trajectory_get_their_own_logged_accuracy():
    runs = [RunConfig(lr=0.05, steps=s, log_every=l) for s, l in ((300, 100), (500, 250))]
    short, long = train_batch(runs)
    assert short.accuracy.shape == (4,) and long.accuracy.shape == (3,)
    np.testing.assert_array_equal(short.accuracy, train(runs[0]).accuracy)
    np.testing.assert_array_equal(long.accuracy, train(runs[1]).accuracy)


def test_a_diverged_run_has_no_accuracy_after_it_diverged():
    result = train(RunConfig(lr=100.0, steps=300, log_every=50))
    assert result.diverged
    np.testing.assert_array_equal(np.isnan(result.accuracy), np.isnan(result.losses))
