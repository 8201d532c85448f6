"""Metrics beside the loss, from a run's parameters at its logged steps (NumPy).

The kernels hand over the parameters of every logged step (where a metric applies); the
metrics are computed here, for all of a block's runs and steps at once. Accuracy applies
where the targets are classes: one-hot rows (the prediction is the largest output: the
softmax of cross_entropy keeps the order) or a single column of 0s and 1s (the
prediction is 1 where the output, after the loss's link, is at least 1/2: y >= 0.5 for
mse, sigmoid(y) >= 0.5, that is y >= 0, for bce).

Diagnostics of trained runs, exact and cheap, for the runs table: the loss floor that
no network of a run's shape can beat, and the hidden ReLU units that died.

NumPy only (no Numba): computed when a sweep writes its final tables, for every run at
once, one architecture at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fastbp.config import RunConfig, parse_layers
from fastbp.data import make_dataset

ACTIVATIONS = {
    "relu": lambda Z: np.maximum(Z, 0.0, out=Z),
    "tanh": np.tanh,
    "sigmoid": lambda Z: 1.0 / (1.0 + np.exp(-Z)),
    "identity": lambda Z: Z,
}


def classes(T: np.ndarray) -> str | None:
    """ "one-hot", "binary" or None (accuracy does not apply) for targets T of shape
    (n_samples, n_out)."""
    zeros_and_ones = bool(np.isin(T, (0.0, 1.0)).all())
    if T.shape[1] == 1 and zeros_and_ones:
        return "binary"
    if T.shape[1] > 1 and zeros_and_ones and bool((T.sum(axis=1) == 1).all()):
        return "one-hot"
    return None


def outputs(thetas: np.ndarray, layers, activation: str, X: np.ndarray) -> np.ndarray:
    """Network outputs of shape (k, n_samples, n_out) for k flat parameter vectors
    ``thetas`` of shape (k, P) (the layout of fastbp.params.flatten), in float64."""
    k, n = thetas.shape[0], X.shape[0]
    thetas = thetas.astype(np.float64, copy=False)
    # A layer's W and then b in the flat layout are the weights [W; b] of its inputs with
    # a 1 appended: one matrix product per layer does both.
    H = np.concatenate([X, np.ones((n, 1))], axis=1)
    pairs = list(zip(layers[:-1], layers[1:], strict=False))
    at = 0
    with np.errstate(all="ignore"):  # parameters of a diverging run overflow
        for l, (fan_in, fan_out) in enumerate(pairs):
            size = (fan_in + 1) * fan_out
            # contiguous weights: matmul over views of the flat vectors is twice as slow
            Wb = np.ascontiguousarray(thetas[:, at : at + size]).reshape(k, fan_in + 1, fan_out)
            at += size
            Z = np.matmul(H, Wb)  # the samples are broadcast at first
            if l < len(pairs) - 1:
                H = np.empty((k, n, fan_out + 1))
                H[:, :, fan_out] = 1.0
                H[:, :, :fan_out] = ACTIVATIONS[activation](Z)
    return Z


METRICS = ("accuracy", "val_loss", "val_accuracy")  # columns beside the loss


def wanted(config, T, validation) -> dict:
    """What :func:`compute` needs for a run: {"kind": classes(T), "validation": (X_val,
    T_val) or None}, empty where no metric applies."""
    kind = classes(T)
    return {"kind": kind, "validation": validation} if kind or validation is not None else {}


def compute(thetas, config, X, T, want: dict) -> dict:
    """{metric: (k,) values} for k parameter vectors: accuracy where the targets are
    classes; with validation data, val_loss and (classes) val_accuracy."""
    out = {}
    if want.get("kind"):
        out["accuracy"] = accuracy(thetas, config, X, T, want["kind"])
    if want.get("validation") is not None:
        X_val, T_val = want["validation"]
        out["val_loss"] = loss(thetas, config, X_val, T_val)
        if want.get("kind"):
            out["val_accuracy"] = accuracy(thetas, config, X_val, T_val, want["kind"])
    return out


def loss(thetas, config, X, T) -> np.ndarray:
    """The run's loss function on (X, T), (k,), for k parameter vectors (NaN for one that
    is not finite), in float64 (as the NumPy reference writes it)."""
    Y = outputs(thetas, config.layers, config.activation, X)
    with np.errstate(all="ignore"):
        if config.loss_fn == "bce":
            terms = np.maximum(Y, 0.0) - Y * T + np.log1p(np.exp(-np.abs(Y)))
            value = terms.mean(axis=(1, 2))
        elif config.loss_fn == "cross_entropy":
            m = Y.max(axis=2, keepdims=True)
            log_softmax = Y - m - np.log(np.exp(Y - m).sum(axis=2, keepdims=True))
            value = -(T * log_softmax).sum(axis=2).mean(axis=1)
        else:
            value = ((Y - T) ** 2).mean(axis=(1, 2))
    return np.where(np.isfinite(thetas).all(axis=1), value, np.nan)


def accuracy(thetas, config, X, T, kind: str) -> np.ndarray:
    """The share of samples classified right, (k,), by the k parameter vectors ``thetas``
    (NaN for a vector that is not finite: a run that had diverged)."""
    Y = outputs(thetas, config.layers, config.activation, X)
    if kind == "one-hot":
        right = Y.argmax(axis=2) == T.argmax(axis=1)
    else:
        cut = 0.0 if config.loss_fn == "bce" else 0.5
        right = (Y[:, :, 0] >= cut) == (T[:, 0] == 1.0)
    share = right.mean(axis=1)
    return np.where(np.isfinite(thetas).all(axis=1), share, np.nan)


# Diagnostics of trained runs, for the runs table.
def loss_floor(config: RunConfig) -> float | None:
    """A lower bound on the MSE of any network with this last hidden width on this data,
    None where it says nothing (other losses, or a width that reaches the targets' rank).

    The output layer is linear: with biases, the outputs are an affine function of an
    h-number code (h = layers[-2]); without, a linear one. Whatever the hidden layers
    compute, the outputs can be no closer to the targets T than the best rank-h affine
    (or linear) fit of T, whose squared error is the sum of the squared singular values
    of T (centred, with biases) past the h largest (Eckart-Young), rounded to 12
    significant digits so that every host gives the same number. On the 8-3-8 encoder:
    4/64 with biases, 5/64 without, exactly.
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
    # The SVD's last bits follow the host's LAPACK kernels (the 8-3-8's floor came out as
    # 0.0625 on one CPU, 0.062499999999999986 on another). Rounded to 12 significant digits,
    # far above that noise and far below anything a loss curve shows, the floor is the same
    # number on every host, and exact where it is a short fraction such as 4/64.
    return float(f"{(singular[hidden:] ** 2).sum() / T.size:.12g}")


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
        layers = parse_layers(layers)
        value = None if fn != "mse" else _floor(dataset, layers[0], layers[-1], layers[-2],
                                                 bool(bias))  # fmt: skip
        known[key] = np.nan if value is None else value
    return np.array([known[key] for key in keys], dtype=np.float64)


@dataclass(frozen=True)
class Threshold:
    """A threshold relative to each run's loss floor (:func:`floors`): a run has reached
    it when its loss is at most its floor plus ``above_floor``; a run without a floor
    (not MSE, or data whose floor is not known) takes ``otherwise``, else has none. As a
    spec writes it: ``threshold = { above_floor = 0.005, otherwise = 0.07 }``. It prints
    as 'floor + 0.005', so that it reads in place of a number."""

    above_floor: float
    otherwise: float | None = None

    def __format__(self, spec) -> str:
        text = f"floor + {self.above_floor:g}"
        return text + (f" (else {self.otherwise:g})" if self.otherwise is not None else "")

    def as_json(self) -> dict:
        return {"above_floor": self.above_floor, "otherwise": self.otherwise}


def threshold_of(value):
    """A threshold as meta.json keeps it (a number, a Threshold's dict, or null)."""
    if isinstance(value, dict) and isinstance(value.get("above_floor"), int | float):
        otherwise = value.get("otherwise")
        otherwise = float(otherwise) if isinstance(otherwise, int | float) else None
        return Threshold(float(value["above_floor"]), otherwise)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def as_json(threshold):
    """A threshold for meta.json: a number, a dict, or None."""
    return threshold.as_json() if isinstance(threshold, Threshold) else threshold


def limits(runs, threshold) -> np.ndarray:
    """Each run's threshold (NaN: it has none): the number, or, for a :class:`Threshold`,
    the run's floor plus ``above_floor`` (``otherwise`` where it has no floor). The floors
    are the runs table's ``loss_floor``, or worked out where the table has none."""
    if threshold is None:
        return np.full(len(runs), np.nan)
    if not isinstance(threshold, Threshold):
        return np.full(len(runs), float(threshold))
    floor = runs["loss_floor"].to_numpy(float) if "loss_floor" in runs else floors(runs)
    otherwise = np.nan if threshold.otherwise is None else threshold.otherwise
    return np.where(np.isnan(floor), otherwise, floor + threshold.above_floor)


def reached(runs, threshold) -> np.ndarray:
    """Whether each run's final loss is at or below its threshold (False where none)."""
    with np.errstate(invalid="ignore"):
        return runs["final_loss"].to_numpy(float) <= limits(runs, threshold)


def unreachable(runs, threshold) -> int:
    """How many runs have a floor above a fixed threshold: no network of their shape
    reaches it, so their failure is certain, not a matter of training."""
    if threshold is None or isinstance(threshold, Threshold):
        return 0
    floor = runs["loss_floor"].to_numpy(float) if "loss_floor" in runs else floors(runs)
    with np.errstate(invalid="ignore"):
        return int((floor > threshold).sum())


def dead_units(runs, values: np.ndarray) -> np.ndarray:
    """For each row of a runs table, the hidden ReLU units that output 0 for every sample
    at its final parameters, over all hidden layers; -1 for other activations, and where
    a parameter is not finite. ``values``: every run's parameters one after the other, in
    the runs' order, each in the layout of fastbp.params.flatten."""

    layers = [parse_layers(text) for text in runs["layers"]]
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
