"""train(config, params=None) -> RunResult: prepare the inputs, call the kernel, package."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fastbp.config import ACTIVATIONS, RunConfig
from fastbp.data import make_dataset
from fastbp.kernels import train_kernel
from fastbp.params import Params, check_params, flatten, init_params, offsets, unflatten


@dataclass(frozen=True)
class RunResult:
    """What one training run gives back.

    steps : int64 ndarray of shape (n_log,)
        Logged update counts: 0, log_every, 2 log_every, ..., always ending with steps.
    losses : float64 ndarray of shape (n_log,)
        losses[i] is the full-dataset MSE after steps[i] updates; NaN from the first
        logged step at or after a divergence.
    params : list of (W, b)
        Final parameters, W of shape (fan_in, fan_out), b of shape (fan_out,). For a
        diverged run, those in force when the loss became non-finite.
    diverged : bool
        True when the loss became non-finite and training stopped early.
    diverged_at : int or None
        For a diverged run, the number of updates after which the loss was non-finite.
    wall_s : float
        Wall-clock seconds of the whole call.
    """

    config: RunConfig
    steps: np.ndarray
    losses: np.ndarray
    params: Params
    diverged: bool
    diverged_at: int | None
    wall_s: float

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])


def logged_steps(steps: int, log_every: int) -> np.ndarray:
    """0, log_every, 2 log_every, ... below steps, then steps itself (int64)."""
    return np.append(np.arange(0, steps, log_every, dtype=np.int64), np.int64(steps))


def batch_order(config: RunConfig, rng: np.random.Generator) -> np.ndarray:
    """Sample order for mini-batch SGD: one fresh permutation per epoch, shape (epochs, n).

    Full batch (batch_size None or n_samples) needs none: an empty (0, n) array.
    """
    n = config.n_samples
    if config.batch_size is None or config.batch_size >= n:
        return np.zeros((0, n), dtype=np.int64)
    per_epoch = -(-n // config.batch_size)
    n_epochs = -(-config.steps // per_epoch)
    return rng.permuted(np.tile(np.arange(n, dtype=np.int64), (n_epochs, 1)), axis=1)


def train(config: RunConfig, params: Params | None = None) -> RunResult:
    """Train the network that ``config`` describes with SGD on the MSE loss.

    Parameters
    ----------
    config : RunConfig
    params : list of (W, b), optional
        Starting parameters, W of shape (fan_in, fan_out) and b of shape (fan_out,);
        copied, never modified. By default they are drawn by :func:`init_params` from
        ``numpy.random.default_rng(config.seed)``; the mini-batch order is drawn from
        the same generator afterwards (in both cases, so given params that equal the
        drawn ones reproduce the default run exactly).

    Each update is ``p <- p - lr * dL/dp`` for every W, and every b when ``bias`` is
    true, with L the mean over all samples and outputs of (Y - T)².
    """
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    drawn = init_params(config, rng)
    initial = drawn if params is None else check_params(params, config)
    X, T = make_dataset(config)
    steps = logged_steps(config.steps, config.log_every)
    losses = np.full(steps.shape, np.nan)
    theta = flatten(initial)
    w_off, b_off = offsets(config.layers)
    stopped_at = train_kernel(
        theta,
        np.array(config.layers, dtype=np.uint64),
        w_off,
        b_off,
        ACTIVATIONS.index(config.activation),
        config.bias,
        config.lr,
        config.steps,
        steps,
        X,
        T,
        config.batch_size or config.n_samples,
        batch_order(config, rng),
        losses,
    )
    return RunResult(
        config=config,
        steps=steps,
        losses=losses,
        params=unflatten(theta, config.layers),
        diverged=bool(stopped_at >= 0),
        diverged_at=int(stopped_at) if stopped_at >= 0 else None,
        wall_s=time.perf_counter() - start,
    )


def train_chunk(configs: list[RunConfig]) -> list[RunResult | str]:
    """Train each config in turn: what joblib runs in a worker.

    A run that raises comes back as the error's text instead of a RunResult, so that
    one failing run never costs the others their results.
    """
    outcomes = []
    for config in configs:
        try:
            outcomes.append(train(config))
        except Exception as err:  # noqa: BLE001 - returned as data, reported by the sweep
            outcomes.append(f"run {config.run_id}: {type(err).__name__}: {err}")
    return outcomes
