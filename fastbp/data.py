"""Datasets as (X, T) float64 arrays of shape (n_samples, n_in) and (n_samples, n_out)."""

import numpy as np

from fastbp.config import RunConfig


def encoder(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-m-n encoder: each one-hot input is its own target, X = T = identity(n)."""
    X = np.eye(n)
    return X, X.copy()


def make_dataset(config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (X, T) pair that ``config.dataset`` names, sized by ``config.layers``."""
    if config.dataset == "encoder":
        return encoder(config.layers[0])
    raise ValueError(f"dataset {config.dataset!r} has no generator")  # RunConfig forbids it
