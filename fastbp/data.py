"""Datasets as (X, T) float64 arrays of shape (n_samples, n_in) and (n_samples, n_out): the
built-in tasks, the user's data (fastbp.datafiles), and the validation split."""

import numpy as np

from fastbp.config import RunConfig


def encoder(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-m-n encoder: each one-hot input is its own target, X = T = identity(n)."""
    X = np.eye(n)
    return X, X.copy()


def xor() -> tuple[np.ndarray, np.ndarray]:
    """Exclusive or: the 4 pairs of bits (0 0, 0 1, 1 0, 1 1), target 1 where they differ."""
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return X, np.array([[0.0], [1.0], [1.0], [0.0]])


def parity(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n-bit parity: all 2**n patterns of n bits (row i: i in binary, most significant bit
    first), target 1 where the number of ones is odd."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)) & 1
    return bits.astype(np.float64), (bits.sum(axis=1, keepdims=True) % 2).astype(np.float64)


def _all_samples(config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    if config.dataset == "encoder":
        return encoder(config.layers[0])
    if config.dataset == "xor":
        return xor()
    if config.dataset == "parity":
        return parity(config.layers[0])
    return config.dataset.X, config.dataset.T  # the user's Data


SPLIT_SEED = 0  # the held-out samples are the same for every run, whatever its seed


def _split(config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows), each in the data's order: ``config.n_val`` rows
    drawn with numpy.random.default_rng(SPLIT_SEED)."""
    held = np.sort(np.random.default_rng(SPLIT_SEED).permutation(config.n_total)[: config.n_val])
    return np.setdiff1d(np.arange(config.n_total), held), held


def make_dataset(config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (X, T) pair ``config`` trains on: the task or data ``config.dataset`` names
    (built-in tasks sized by ``config.layers``), less the samples ``val_fraction`` holds
    out."""
    X, T = _all_samples(config)
    if config.n_val:
        rows, _ = _split(config)
        X, T = X[rows], T[rows]
    return X, T


def make_validation(config: RunConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """The held-out (X_val, T_val): the data's own, or the samples ``val_fraction`` holds
    out; None where there are none."""
    if config.has_own_validation:
        return config.dataset.X_val, config.dataset.T_val
    if not config.n_val:
        return None
    X, T = _all_samples(config)
    _, held = _split(config)
    return X[held], T[held]
