"""train(config, params=None) -> RunResult: prepare the inputs, call the kernel, package."""

from __future__ import annotations

import operator
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fastbp import codegen, kernels, metrics, step
from fastbp.config import ACTIVATIONS, LOSSES, OPTIMIZERS, RunConfig
from fastbp.data import make_dataset, make_validation
from fastbp.params import Params, check_params, flatten, init_params, offsets, unflatten


@dataclass(frozen=True)
class RunResult:
    """What one training run gives back.

    steps : int64 ndarray of shape (n_log,)
        Logged update counts: 0, log_every, 2 log_every, ..., always ending with steps.
    losses : float64 ndarray of shape (n_log,)
        losses[i] is the full-dataset loss after steps[i] updates; NaN from the first
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
    accuracy : float64 ndarray of shape (n_log,), or None
        Where the targets are classes (:func:`fastbp.metrics.classes`): the share of
        samples classified right after steps[i] updates (NaN where losses are).
    val_loss, val_accuracy : float64 ndarrays of shape (n_log,), or None
        With validation data (the data's own, or ``val_fraction``): the loss, and the
        accuracy where the targets are classes, on it after steps[i] updates.
    """

    config: RunConfig
    steps: np.ndarray
    losses: np.ndarray
    params: Params
    diverged: bool
    diverged_at: int | None
    wall_s: float
    accuracy: np.ndarray | None = None
    val_loss: np.ndarray | None = None
    val_accuracy: np.ndarray | None = None

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])


def logged_steps(steps: int, log_every: int) -> np.ndarray:
    """0, log_every, 2 log_every, ... below steps, then steps itself (int64)."""
    return _logged_steps(steps, log_every).copy()


@lru_cache(maxsize=256)  # a sweep of many short runs asks for the same few, many times
def _logged_steps(steps: int, log_every: int) -> np.ndarray:
    below = -(-steps // log_every)  # multiples of log_every below steps
    out = np.empty(below + 1, dtype=np.int64)
    out[:below] = np.arange(below) * log_every
    out[below] = steps
    out.flags.writeable = False
    return out


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


def train(config: RunConfig, params: Params | None = None, engine: str = "auto") -> RunResult:
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
    engine : {"auto", "loops"}
        "auto" trains with a kernel generated for the architecture (compiled once per
        architecture, then cached on disk): every full-batch run, and mini-batch runs
        where :func:`generated` says so; others, and every run with "loops", take the
        loop kernel (:mod:`fastbp.kernels`), one compilation for every architecture.
        Both give the same bits.

    Each update is ``p <- p - lr * dL/dp`` for every W, and every b when ``bias`` is
    true, with L the loss ``config.loss_fn``: the mean over all samples and outputs of
    (Y - T)² (mse) or of the binary cross-entropy on sigmoid(Y) (bce).
    """
    if engine not in ("auto", "loops"):
        raise ValueError(f"engine must be 'auto' or 'loops', got {engine!r}")
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    drawn = init_params(config, rng)
    initial = drawn if params is None else check_params(params, config)
    order = batch_order(config, rng)
    if engine == "auto" and generated(config):
        (result,) = _train_families([([config], flatten(initial), order)], lanes=1)[0]
        return result
    dtype = np.dtype(config.dtype)
    X64, T64 = make_dataset(config)
    X, T = X64.astype(dtype), T64.astype(dtype)
    steps = logged_steps(config.steps, config.log_every)
    losses = np.full(steps.shape, np.nan)
    theta = flatten(initial).astype(dtype)
    want = metrics.wanted(config, T64, make_validation(config))
    plog = np.full((len(steps) if want else 0, theta.shape[0]), np.nan, dtype=dtype)
    w_off, b_off = offsets(config.layers)
    stopped_at = kernels.loop_kernel().train_kernel(
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
        order,
        losses,
        LOSSES.index(config.loss_fn),
        OPTIMIZERS.index(config.optimizer),
        hyper(config),
        plog,
    )
    result = RunResult(
        config=config,
        steps=steps,
        losses=losses,
        params=unflatten(theta, config.layers),
        diverged=bool(stopped_at >= 0),
        diverged_at=int(stopped_at) if stopped_at >= 0 else None,
        wall_s=time.perf_counter() - start,
        **metrics.compute(plog, config, X64, T64, want),
    )
    kernels.mark_cached()
    return result


def hyper(config: RunConfig) -> np.ndarray:
    """The optimizer's values as the kernels read them (fastbp.step.HYPER; 0 for None)."""
    return np.array([getattr(config, name) or 0.0 for name in step.HYPER])


def full_batch(config: RunConfig) -> bool:
    """Whether every update uses every sample."""
    return config.batch_size is None or config.batch_size >= config.n_samples


def generated(config: RunConfig) -> bool:
    """Whether a kernel generated for the architecture trains this run (else the loop
    kernel): every full-batch run, and mini-batch runs of networks that fit the vector
    form (:func:`fastbp.codegen.minibatch_form`)."""
    return full_batch(config) or codegen.minibatch_form(
        config.layers, config.n_samples, config.batch_size, config.dtype
    )


def _batch_size(config: RunConfig) -> int | None:
    """The batch size a generated kernel is written for: None for full batch."""
    return None if full_batch(config) else config.batch_size


_ALL_BUT_STEPS = operator.attrgetter(*(f for f in RunConfig.field_names() if f != "steps"))


def family_key(config: RunConfig) -> tuple:
    """What runs must share to be one trajectory: every field but the step count (plain
    SGD has no schedule, so a shorter run is the start of a longer one)."""
    return _ALL_BUT_STEPS(config)


_KERNEL_FIELDS = operator.attrgetter(
    "layers", "activation", "bias", "dataset", "dtype", "loss_fn", "optimizer", "val_fraction",
    "targets", *step.HYPER,
)  # fmt: skip


def kernel_key(config: RunConfig) -> tuple:
    """What runs must share to be trained in one block of a generated kernel: its
    arguments, their data, and the optimizer's values (the same for every lane)."""
    return (_batch_size(config), *_KERNEL_FIELDS(config))


def block_lanes(config: RunConfig) -> int:
    """How many runs like this one a block kernel trains at a time by default (mini-batch
    runs: one)."""
    if not full_batch(config):
        return 1
    return codegen.lanes_for(
        config.layers, config.n_samples, config.dtype, config.activation, config.loss_fn
    )


def kernel_args(config: RunConfig, lanes: int) -> tuple:
    """The arguments of :func:`fastbp.codegen.block_kernel` for runs like this one."""
    return (
        tuple(config.layers),
        config.activation,
        config.bias,
        config.n_samples,
        lanes,
        config.dtype,
        _batch_size(config),
        config.loss_fn,
        config.optimizer,
        config.weight_decay != 0,
    )


def train_batch(
    configs: list[RunConfig], lanes: int | None = None, loops: frozenset = frozenset()
) -> list[RunResult]:
    """Train many runs, the same results as :func:`train` gives for each, faster.

    Full-batch runs that share an architecture (:func:`kernel_key`) are trained side by
    side, ``lanes`` at a time (default: one 512-bit vector's worth, 8 in float64 and 16
    in float32; one at a time for networks above ``codegen.register_limit``, where that
    is faster), in a kernel generated for that architecture. Runs that differ only in
    ``steps`` share one trajectory: plain SGD has no schedule, so the run with fewer
    steps is the start of the longer one; it is trained once, to the largest step
    count, and each run gets its logged losses and its parameters at its own step
    count. Mini-batch runs, and runs whose :func:`kernel_key` is in ``loops`` (where a
    sweep finds compiling their kernel dearer than what it saves), are trained one by one
    by the loop kernel. Results come back in the order of ``configs``.
    """
    results: dict[int, RunResult] = {}
    groups: dict[tuple, dict[RunConfig, list[int]]] = {}
    for k, config in enumerate(configs):
        if not generated(config) or kernel_key(config) in loops:
            results[k] = train(config, engine="loops")
            continue
        family = family_key(config)
        groups.setdefault(kernel_key(config), {}).setdefault(family, []).append(k)
    for families in groups.values():
        members = [[configs[k] for k in ks] for ks in families.values()]
        lanes_ = lanes or block_lanes(members[0][0])
        if not full_batch(members[0][0]):
            lanes_ = 1  # one run at a time, in its own order of samples
        trained = _train_families([_drawn(group) for group in members], lanes_)
        for ks, runs in zip(families.values(), trained, strict=True):
            results.update(zip(ks, runs, strict=True))
    return [results[k] for k in range(len(configs))]


def _drawn(family: list[RunConfig]) -> tuple:
    """(configs, initial parameters flattened, order of samples) of a family of runs that
    differ only in steps, drawn as :func:`train` draws them: the order for the longest
    (each epoch's row is drawn in turn, so a shorter run's order is its start)."""
    config = family[0]
    if full_batch(config):
        return family, _initial_theta(config), _NO_ORDER
    rng = np.random.default_rng(config.seed)
    theta = flatten(init_params(config, rng))
    return family, theta, batch_order(max(family, key=lambda c: c.steps), rng)


_NO_ORDER = np.zeros((0, 0), dtype=np.int64)
_initial: dict[tuple, np.ndarray] = {}
_initial_lock = threading.Lock()


def _initial_theta(config: RunConfig) -> np.ndarray:
    """The run's initial parameters, flattened (read-only), as :func:`init_params` draws
    them. The last few thousand are kept: a sweep asks for each seed's at every learning
    rate, and drawing them (a seeded generator, then the draws) costs about 14 us, a
    quarter of a 1,000-step run of the 8-3-8."""
    key = (config.seed, config.layers, config.init, config.init_scale)
    theta = _initial.get(key)
    if theta is None:
        theta = flatten(init_params(config))
        theta.flags.writeable = False
        with _initial_lock:
            if len(_initial) >= 4096:
                _initial.pop(next(iter(_initial)))  # the oldest
            _initial[key] = theta
    return theta


def _train_families(families, lanes: int) -> list[list[RunResult]]:
    """Train (configs, initial params, order) families, a block of ``lanes`` families at a
    time; each family's configs differ only in steps. Returns the results per family."""
    config = families[0][0][0]
    dtype = np.dtype(config.dtype)
    args = kernel_args(config, lanes)
    kernel = codegen.block_kernel(*args)
    X64, T64 = make_dataset(config)
    X, T = X64.astype(dtype), T64.astype(dtype)
    T_t = np.ascontiguousarray(T.T).ravel()
    want = metrics.wanted(config, T64, make_validation(config))
    # Longest first, so that each block's lanes have similar amounts of work.
    order = sorted(range(len(families)), key=lambda f: -max(c.steps for c in families[f][0]))
    out, pending, held = [None] * len(families), [], 0  # blocks trained, results not made yet
    for first in range(0, len(order), lanes):
        block = order[first : first + lanes]
        padded = block + [block[-1]] * (lanes - len(block))  # spare lanes repeat a family
        runs = [families[f][0] for f in padded]
        snaps_at = [sorted({c.steps for c in group}) for group in runs]
        log_steps = np.unique(
            np.concatenate([_logged_steps(c.steps, c.log_every) for group in runs for c in group])
        )
        theta = np.stack([families[f][1] for f in padded], axis=1).astype(dtype)
        n_params = theta.shape[0]
        snap_steps = np.full((lanes, max(map(len, snaps_at))), -1, dtype=np.int64)
        for lane, steps in enumerate(snaps_at):
            snap_steps[lane, : len(steps)] = steps
        losses = np.full((lanes, len(log_steps)), np.nan)
        snaps = np.zeros((lanes, snap_steps.shape[1], n_params), dtype=dtype)
        diverged_at = np.empty(lanes, dtype=np.int64)
        plog = np.full((lanes, len(log_steps) if want else 0, n_params), np.nan, dtype=dtype)
        lr = np.array([group[0].lr for group in runs])
        start = time.perf_counter()
        samples = families[padded[0]][2]  # the order of samples (mini-batches: one lane)
        kernel(
            theta.ravel(),
            lr,
            log_steps,
            snap_steps,
            X,
            T_t,
            losses,
            snaps,
            diverged_at,
            samples,
            hyper(config),
            plog,
        )
        wall = time.perf_counter() - start
        codegen.mark_cached(*args)
        total_steps = sum(c.steps for group in runs[: len(block)] for c in group)
        pending.append((block, snaps_at, log_steps, losses, snaps, diverged_at, plog, wall,
                        total_steps))  # fmt: skip
        held += plog.size
        if held > METRICS_BATCH or first + lanes >= len(order):
            _finish(pending, families, out, config, X64, T64, want)
            held = 0
    return out


# Parameters of logged steps handed to the metrics at once: NumPy's cost per call (about
# 50 us) would otherwise be a tenth of the kernel's time for runs of 1,000 steps.
METRICS_BATCH = 1 << 18


def _finish(pending, families, out, config, X64, T64, want) -> None:
    """The results of the blocks in ``pending`` (then emptied), with their metrics
    computed for all of them at once."""
    n_params = pending[0][4].shape[2]
    flat = np.concatenate([p[6][: len(p[0])].reshape(-1, n_params) for p in pending])
    computed, at = metrics.compute(flat, config, X64, T64, want), 0
    for block, snaps_at, log_steps, losses, snaps, diverged_at, _, wall, total in pending:
        size = len(block) * len(log_steps) if want else 0
        logged = {k: v[at : at + size].reshape(len(block), -1) for k, v in computed.items()}
        at += size
        for lane, f in enumerate(block):
            out[f] = [
                _member_result(
                    c,
                    log_steps,
                    losses[lane],
                    snaps[lane, snaps_at[lane].index(c.steps)],
                    diverged_at[lane],
                    wall * c.steps / total,
                    {name: values[lane] for name, values in logged.items()},
                )
                for c in families[f][0]
            ]
    pending.clear()


def _member_result(config, log_steps, losses, theta, diverged_at, wall_s, logged) -> RunResult:
    steps = logged_steps(config.steps, config.log_every)  # a copy: the caller's to keep
    diverged = 0 <= diverged_at <= config.steps
    at = None if len(steps) == len(log_steps) else np.searchsorted(log_steps, steps)
    return RunResult(
        config=config,
        steps=steps,
        # the block logged at the steps of this run alone, or of others too
        losses=losses.copy() if at is None else losses[at],
        params=unflatten(theta, config.layers, copy=False),  # views of this run's snapshot
        diverged=bool(diverged),
        diverged_at=int(diverged_at) if diverged else None,
        wall_s=wall_s,
        **{name: values.copy() if at is None else values[at] for name, values in logged.items()},
    )


def train_chunk(configs: list[RunConfig], loops: frozenset = frozenset()) -> list:
    """Train a sweep's task: what joblib runs in a worker.

    The runs are trained together by :func:`train_batch` (``loops`` as there). Should that
    fail, each is trained alone, and a run that raises comes back as the error's text
    instead of a RunResult: one failing run never costs the others their results.
    """
    try:
        return train_batch(configs, loops=loops)
    except Exception:  # noqa: BLE001 - find the culprit run by run
        pass
    outcomes = []
    for config in configs:
        try:
            outcomes.append(
                train(config, engine="loops" if kernel_key(config) in loops else "auto")
            )
        except Exception as err:  # noqa: BLE001 - returned as data, reported by the sweep
            outcomes.append(f"run {config.run_id}: {type(err).__name__}: {err}")
    return outcomes
