"""Datasets as (X, T) float64 arrays of shape (n_samples, n_in) and (n_samples, n_out)."""

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


def make_dataset(config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (X, T) pair that ``config.dataset`` names, sized by ``config.layers``."""
    if config.dataset == "encoder":
        return encoder(config.layers[0])
    if config.dataset == "xor":
        return xor()
    if config.dataset == "parity":
        return parity(config.layers[0])
    raise ValueError(f"dataset {config.dataset!r} has no generator")  # RunConfig forbids it
