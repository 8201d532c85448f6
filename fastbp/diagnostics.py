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
    return _floor(config.dataset, config.layers[0], config.layers[-1], config.layers[-2],
                  config.bias)  # fmt: skip


@lru_cache(maxsize=256)
def _floor(dataset: str, n_in: int, n_out: int, hidden: int, bias: bool) -> float | None:
    from fastbp.data import make_dataset

    _, T = make_dataset(RunConfig(layers=(n_in, hidden, n_out), dataset=dataset))
    if bias:
        T = T - T.mean(axis=0)
    singular = np.linalg.svd(T, compute_uv=False)
    rank = int((singular > singular.max(initial=0.0) * max(T.shape) * 1e-12).sum())
    if hidden >= rank:
        return None
    return float((singular[hidden:] ** 2).sum() / T.size)


def _layers(text: str) -> tuple[int, ...]:
    return tuple(int(w) for w in str(text).split("-"))


def floors(runs) -> np.ndarray:
    """:func:`loss_floor` of every row of a runs table (NaN: none), as float64."""
    loss_fn = runs["loss_fn"] if "loss_fn" in runs else ["mse"] * len(runs)
    keys = list(zip(runs["dataset"], runs["layers"], runs["bias"], loss_fn, strict=True))
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
    from fastbp.data import make_dataset

    layers = [_layers(text) for text in runs["layers"]]
    sizes = np.array([sum(a * b + b for a, b in zip(w[:-1], w[1:], strict=False)) for w in layers])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = np.full(len(runs), -1, dtype=np.int64)
    relu = (runs["activation"] == "relu").to_numpy()
    groups: dict[tuple, list[int]] = {}
    for r, (shape, dataset) in enumerate(zip(layers, runs["dataset"], strict=True)):
        if relu[r]:
            groups.setdefault((shape, dataset), []).append(r)
    for (shape, dataset), rows in groups.items():
        X, _ = make_dataset(RunConfig(layers=shape, dataset=dataset))
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
