"""Diagnostics of trained runs, exact and cheap, for the runs table: the loss floor that
no network of a run's shape can beat, and the hidden ReLU units that died.

NumPy only (no Numba): computed when a sweep writes its final tables, for every run at
once, one architecture at a time.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fastbp.config import RunConfig


def loss_floor(config: RunConfig) -> float | None:
    """A lower bound on the MSE of any network with this last hidden width on this data,
    None where it says nothing (other losses, or a width that reaches the targets' rank).

    The output layer is linear: with biases, the outputs are an affine function of an
    h-number code (h = layers[-2]); without, a linear one. Whatever the hidden layers
    compute, the outputs can be no closer to the targets T than the best rank-h affine
    (or linear) fit of T, whose squared error is the sum of the squared singular values
    of T (centred, with biases) past the h largest (Eckart-Young). On the 8-3-8 encoder:
    4/64 with biases, 5/64 without.
    """
    if config.loss_fn != "mse":
        return None
    data = _data_key(config.dataset, config.val_fraction, config.targets)
    return _floor(data, config.layers[0], config.layers[-1], config.layers[-2], config.bias)


def _data_key(dataset, val_fraction=0.0, targets=None) -> tuple:
    """What picks a run's training data (a hashable key for the caches below)."""
    missing = targets is None or np.ndim(targets) == 0
    return (dataset, float(val_fraction or 0.0), None if missing else tuple(targets))


def _training_data(data: tuple, layers) -> tuple[np.ndarray, np.ndarray] | None:
    """The (X, T) a run of this data key and shape trains on; None where the data cannot
    be read any more (a file moved since)."""
    from fastbp.config import ConfigError
    from fastbp.data import make_dataset

    dataset, val_fraction, targets = data
    try:
        config = RunConfig(
            layers=layers, dataset=dataset, val_fraction=val_fraction, targets=targets
        )
    except ConfigError:
        return None
    return make_dataset(config)


@lru_cache(maxsize=256)
def _floor(data: tuple, n_in: int, n_out: int, hidden: int, bias: bool) -> float | None:
    training = _training_data(data, (n_in, hidden, n_out))
    if training is None:
        return None
    T = training[1]
    if bias:
        T = T - T.mean(axis=0)
    singular = np.linalg.svd(T, compute_uv=False)
    rank = int((singular > singular.max(initial=0.0) * max(T.shape) * 1e-12).sum())
    if hidden >= rank:
        return None
    return float((singular[hidden:] ** 2).sum() / T.size)


def _layers(text: str) -> tuple[int, ...]:
    return tuple(int(w) for w in str(text).split("-"))


def _data_keys(runs) -> list[tuple]:
    """The data key of every row of a runs table (tables of fastbp 0.3: the dataset)."""
    n = len(runs)
    fractions = runs["val_fraction"] if "val_fraction" in runs else [0.0] * n
    targets = runs["targets"] if "targets" in runs else [None] * n
    return [_data_key(*row) for row in zip(runs["dataset"], fractions, targets, strict=True)]


def floors(runs) -> np.ndarray:
    """:func:`loss_floor` of every row of a runs table (NaN: none), as float64."""
    loss_fn = runs["loss_fn"] if "loss_fn" in runs else ["mse"] * len(runs)
    keys = list(zip(_data_keys(runs), runs["layers"], runs["bias"], loss_fn, strict=True))
    known = {}
    for key in set(keys):
        dataset, layers, bias, fn = key
        layers = _layers(layers)
        value = None if fn != "mse" else _floor(dataset, layers[0], layers[-1], layers[-2],
                                                 bool(bias))  # fmt: skip
        known[key] = np.nan if value is None else value
    return np.array([known[key] for key in keys], dtype=np.float64)


def dead_units(runs, values: np.ndarray) -> np.ndarray:
    """For each row of a runs table, the hidden ReLU units that output 0 for every sample
    at its final parameters, over all hidden layers; -1 for other activations, and where
    a parameter is not finite. ``values``: every run's parameters one after the other, in
    the runs' order, each in the layout of fastbp.params.flatten."""

    layers = [_layers(text) for text in runs["layers"]]
    sizes = np.array([sum(a * b + b for a, b in zip(w[:-1], w[1:], strict=False)) for w in layers])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = np.full(len(runs), -1, dtype=np.int64)
    relu = (runs["activation"] == "relu").to_numpy()
    groups: dict[tuple, list[int]] = {}
    for r, (shape, data) in enumerate(zip(layers, _data_keys(runs), strict=True)):
        if relu[r]:
            groups.setdefault((shape, data), []).append(r)
    for (shape, data), rows in groups.items():
        training = _training_data(data, shape)
        if training is None:
            continue
        X = training[0]
        theta = values[starts[rows][:, None] + np.arange(sizes[rows[0]])]  # (runs, P)
        H, at, dead = X, 0, np.zeros(len(rows), dtype=np.int64)
        for fan_in, fan_out in zip(shape[:-2], shape[1:-1], strict=True):  # hidden layers
            W = theta[:, at : at + fan_in * fan_out].reshape(-1, fan_in, fan_out)
            b = theta[:, at + fan_in * fan_out : at + fan_in * fan_out + fan_out]
            at += fan_in * fan_out + fan_out
            with np.errstate(all="ignore"):
                H = np.maximum(H @ W + b[:, None, :], 0.0)  # (runs, samples, units)
            dead += (H == 0.0).all(axis=1).sum(axis=1)
        out[rows] = np.where(np.isfinite(theta).all(axis=1), dead, -1)
    return out
