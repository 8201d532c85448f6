"""Metrics beside the loss, from a run's parameters at its logged steps (NumPy).

The kernels hand over the parameters of every logged step (where a metric applies); the
metrics are computed here, for all of a block's runs and steps at once. Accuracy applies
where the targets are classes: one-hot rows (the prediction is the largest output: the
softmax of cross_entropy keeps the order) or a single column of 0s and 1s (the
prediction is 1 where the output, after the loss's link, is at least 1/2: y >= 0.5 for
mse, sigmoid(y) >= 0.5, that is y >= 0, for bce).
"""

from __future__ import annotations

import numpy as np

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
