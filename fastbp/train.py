"""The engine's door for training: :func:`train` (one run -> RunResult),
:func:`train_batch` (runs side by side, the same bits), and :func:`train_chunk`, a
sweep's task, which hands back columns (:class:`Trained`) rather than a RunResult per
run. Each prepares the inputs, picks a kernel form, calls it and packages what it
returns. What a sweep asks before it trains is :mod:`fastbp.planner`'s.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fastbp import metrics, schedules
from fastbp.config import ACTIVATIONS, LOSSES, OPTIMIZERS, RunConfig, RunResult
from fastbp.data import make_dataset, make_validation
from fastbp.engine import codegen, kernels, step, tuning
from fastbp.params import (
    Params,
    check_params,
    flatten,
    init_params,
    logged_steps,
    offsets,
    unflatten,
)
from fastbp.schedules import BY_LENGTH


@dataclass
class Trained:
    """Finished runs as columns: one row per run, and one per logged step of each run, run
    after run. A sweep makes a shard's tables of it (:func:`fastbp.results.shard_tables`)
    without a RunResult per run; :meth:`results` gives those."""

    configs: list[RunConfig]
    index: np.ndarray  # int64 per run: its position in the configs asked for
    lengths: np.ndarray  # int64 per run: how many steps it logged
    steps: np.ndarray  # int64 per logged step
    losses: np.ndarray  # float64 per logged step
    metrics: dict[str, np.ndarray]  # name -> float64 per logged step (NaN where unknown)
    known: dict[str, np.ndarray]  # name -> bool per run: whether it has the metric
    thetas: list[np.ndarray]  # per run: its final parameters, flat (params.flatten)
    diverged_at: np.ndarray  # int64 per run: -1 where it did not diverge
    wall_s: np.ndarray  # float64 per run

    def results(self) -> list[RunResult]:
        """A RunResult per run, in the order of the rows."""
        ends = np.cumsum(self.lengths)
        out = []
        for k, config in enumerate(self.configs):
            rows = slice(ends[k] - self.lengths[k], ends[k])
            out.append(RunResult(
                config=config,
                logged_steps=self.steps[rows].copy(),
                losses=self.losses[rows].copy(),
                params=unflatten(self.thetas[k], config.layers, copy=False),
                diverged=bool(self.diverged_at[k] >= 0),
                diverged_at=int(self.diverged_at[k]) if self.diverged_at[k] >= 0 else None,
                wall_s=float(self.wall_s[k]),
                **{name: self.metrics[name][rows].copy() if self.known[name][k] else None
                   for name in metrics.METRICS},
            ))  # fmt: skip
        return out

    @classmethod
    def of(cls, results: list[RunResult], index=None) -> Trained:
        """The columns of RunResults (``index``: their positions; default 0, 1, ...)."""
        lengths = np.array([len(r.losses) for r in results], dtype=np.int64)
        values = {name: [getattr(r, name) for r in results] for name in metrics.METRICS}
        return cls(
            configs=[r.config for r in results],
            index=np.arange(len(results)) if index is None else np.asarray(index, np.int64),
            lengths=lengths,
            steps=_joined([r.logged_steps for r in results], np.int64),
            losses=_joined([r.losses for r in results], np.float64),
            metrics={name: _joined([np.full(n, np.nan) if v is None else v
                                    for v, n in zip(vs, lengths, strict=True)], np.float64)
                     for name, vs in values.items()},
            known={name: np.array([v is not None for v in vs], bool)
                   for name, vs in values.items()},
            thetas=[flatten(r.params) for r in results],
            diverged_at=np.array([-1 if r.diverged_at is None else r.diverged_at
                                  for r in results], dtype=np.int64),
            wall_s=np.array([r.wall_s for r in results], dtype=np.float64),
        )  # fmt: skip

    @classmethod
    def concat(cls, parts: list[Trained]) -> Trained:
        """One Trained of several, their rows one after the other."""
        return cls(
            configs=[c for p in parts for c in p.configs],
            index=_joined([p.index for p in parts], np.int64),
            lengths=_joined([p.lengths for p in parts], np.int64),
            steps=_joined([p.steps for p in parts], np.int64),
            losses=_joined([p.losses for p in parts], np.float64),
            metrics={name: _joined([p.metrics[name] for p in parts], np.float64)
                     for name in metrics.METRICS},
            known={name: _joined([p.known[name] for p in parts], bool)
                   for name in metrics.METRICS},
            thetas=[t for p in parts for t in p.thetas],
            diverged_at=_joined([p.diverged_at for p in parts], np.int64),
            wall_s=_joined([p.wall_s for p in parts], np.float64),
        )  # fmt: skip


def _joined(arrays, dtype) -> np.ndarray:
    """The arrays one after the other, as ``dtype`` (an empty array for none)."""
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)


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


def train(
    config: RunConfig | Mapping, params: Params | None = None, engine: str = "auto"
) -> RunResult:
    """Train the network that ``config`` describes: its loss, optimizer and data.

    Parameters
    ----------
    config : RunConfig, or a dict of its fields (``{"lr": 0.1}``)
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
        loop kernel (:mod:`fastbp.engine.kernels`), one compilation for every architecture.
        Both give the same bits.

    Each update applies ``config.optimizer`` (sgd, momentum, nesterov or adam, with
    PyTorch's rules) to dL/dp for every W, and every b when ``bias`` is true, with L the
    loss ``config.loss_fn``: the mean over samples and outputs of (Y - T)² (mse), of the
    binary cross-entropy on sigmoid(Y) (bce), or the mean over samples of the softmax
    cross-entropy (cross_entropy).
    """
    if isinstance(config, Mapping):  # train({"lr": 0.1})
        config = RunConfig.from_dict(config)
    elif not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig or a dict of its fields, got {config!r}")
    if engine not in ("auto", "loops"):
        raise ValueError(f"engine must be 'auto' or 'loops', got {engine!r}")
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    drawn = init_params(config, rng)
    initial = drawn if params is None else check_params(params, config)
    order = batch_order(config, rng)
    if engine == "auto" and generated(config):
        (result,) = _train_families([([config], flatten(initial), order, [0])], 1).results()
        return result
    dtype = np.dtype(config.dtype)
    X64, T64 = make_dataset(config)
    X, T = X64.astype(dtype), T64.astype(dtype)
    steps = logged_steps(config.steps, config.log_every)
    losses = np.full(steps.shape, np.nan)
    theta = flatten(initial).astype(dtype)
    want = metrics.wanted(config, T64, make_validation(config))
    plog = np.full((len(steps) if want else 0, theta.shape[0]), np.nan, dtype=dtype)
    scheduled = config.lr_schedule != "constant"
    training = kernels.Training(
        rates=schedules.rates(config, config.steps) if scheduled else np.empty(0),
        lr=config.lr,
        optimizer=OPTIMIZERS.index(config.optimizer),
        hyper=hyper(config),
        log_steps=steps,
        batch_size=config.batch_size or config.n_samples,
        order=order,
    )
    loop_kernel = kernels.loop_kernel()
    stopped_at = loop_kernel.train_kernel(theta, network(config), training, X, T, losses, plog)
    result = RunResult(
        config=config,
        logged_steps=steps,
        losses=losses,
        params=unflatten(theta, config.layers),
        diverged=bool(stopped_at >= 0),
        diverged_at=int(stopped_at) if stopped_at >= 0 else None,
        wall_s=time.perf_counter() - start,
        **metrics.compute(plog, config, X64, T64, want),
    )
    kernels.mark_cached()
    return result


def network(config: RunConfig) -> kernels.Network:
    """The run's network as the loop kernel reads it."""
    w_off, b_off = offsets(config.layers)
    sizes = np.array(config.layers, dtype=np.uint64)
    activation, loss = ACTIVATIONS.index(config.activation), LOSSES.index(config.loss_fn)
    return kernels.Network(sizes, w_off, b_off, activation, config.bias, loss)


def hyper(config: RunConfig) -> np.ndarray:
    """The optimizer's values as the kernels read them (fastbp.engine.step.HYPER; 0 for None)."""
    return np.array([getattr(config, name) or 0.0 for name in step.HYPER])


def full_batch(config: RunConfig) -> bool:
    """Whether every update uses every sample."""
    return config.batch_size is None or config.batch_size >= config.n_samples


def generated(config: RunConfig) -> bool:
    """Whether a kernel generated for the architecture trains this run (else the loop
    kernel): every full-batch run, and mini-batch runs of networks that fit the vector
    form (:func:`fastbp.engine.codegen.minibatch_form`)."""
    return full_batch(config) or codegen.minibatch_form(
        config.layers, config.n_samples, config.batch_size, config.dtype
    )


def _batch_size(config: RunConfig) -> int | None:
    """The batch size a generated kernel is written for: None for full batch."""
    return None if full_batch(config) else config.batch_size


_FAMILY_FIELDS = tuple(f for f in RunConfig.field_names() if f != "steps")
_ALL_BUT_STEPS = operator.attrgetter(*_FAMILY_FIELDS)


def family_key(config: RunConfig) -> tuple:
    """What runs must share to be one trajectory: every field but the step count (a
    shorter run is the start of a longer one), and the step count too where the learning
    rate's schedule depends on it (cosine: fastbp.schedules.BY_LENGTH)."""
    family = _ALL_BUT_STEPS(config)
    return family + (config.steps,) if config.lr_schedule in BY_LENGTH else family


_KERNEL_FIELDS = (
    "layers", "activation", "bias", "dataset", "dtype", "loss_fn", "optimizer", "val_fraction",
    "targets", *step.HYPER,
)  # fmt: skip
_SCHEDULE = _FAMILY_FIELDS.index("lr_schedule")
_KERNEL_OF_FAMILY = operator.itemgetter(*(_FAMILY_FIELDS.index(f) for f in _KERNEL_FIELDS))


def kernel_key(config: RunConfig, family: tuple | None = None) -> tuple:
    """What runs must share to be trained in one block of a generated kernel: its
    arguments, their data, and the optimizer's values (the same for every lane). A part of
    the run's :func:`family_key`, passed as ``family`` where it is known already."""
    family = family or family_key(config)
    return (_batch_size(config), _KERNEL_OF_FAMILY(family), family[_SCHEDULE] != "constant")


def block_choice(config: RunConfig, measured: dict | None = None) -> tuning.Choice:
    """How many runs like this one a block kernel trains at a time here, and why
    (:func:`fastbp.engine.tuning.choose`; ``measured`` as there); mini-batch runs: one."""
    if not full_batch(config):
        return tuning.Choice(1, "mini-batches")
    return tuning.choose(config.layers, config.n_samples, config.dtype, config.activation,
                         config.loss_fn, config.optimizer, measured)  # fmt: skip


def kernel_of(config: RunConfig, lanes: int) -> codegen.Kernel:
    """The generated kernel that trains runs like this one ``lanes`` at a time."""
    return codegen.Kernel(
        layers=tuple(config.layers),
        activation=config.activation,
        bias=config.bias,
        n_samples=config.n_samples,
        lanes=lanes,
        dtype=config.dtype,
        batch_size=_batch_size(config),
        loss_fn=config.loss_fn,
        optimizer=config.optimizer,
        decay=config.weight_decay != 0,
        scheduled=config.lr_schedule != "constant",
    )


def train_batch(
    configs: list[RunConfig], lanes: int | None = None, loops: frozenset = frozenset()
) -> list[RunResult]:
    """Train many runs, the same results as :func:`train` gives for each, faster.

    Full-batch runs that share an architecture (:func:`kernel_key`) are trained side by
    side, ``lanes`` at a time, in a kernel generated for that architecture. By default
    as many as train fastest on this host (:mod:`fastbp.engine.tuning`): the first time
    runs of a dtype, optimizer and size of step are trained in blocks here, blocks of one vector
    register's worth (8 float64 on AVX-512, 4 on AVX2) and one run at a time are timed
    on copies of one of them and the faster is kept for this host; networks above
    ``codegen.register_limit`` train one at a time. Runs that differ only in
    ``steps`` share one trajectory: plain SGD has no schedule, so the run with fewer
    steps is the start of the longer one; it is trained once, to the largest step
    count, and each run gets its logged losses and its parameters at its own step
    count. Mini-batch runs, and runs whose :func:`kernel_key` is in ``loops`` (where a
    sweep finds compiling their kernel dearer than what it saves), are trained one by one
    by the loop kernel. Results come back in the order of ``configs``.
    """
    trained = train_columns(configs, lanes, loops)
    results = [None] * len(configs)
    for k, result in zip(trained.index, trained.results(), strict=True):
        results[k] = result
    return results


def train_columns(
    configs: list[RunConfig],
    lanes: int | None = None,
    loops: frozenset = frozenset(),
    measured: dict | None = None,
) -> Trained:
    """:func:`train_batch`'s runs as columns, in an order of its own (``index`` says
    which config each row is): what a sweep's workers make their shards of. ``measured``
    ({key: lanes}, from a sweep's :class:`fastbp.planner.Plan`) gives the block
    sizes instead of this host's measurements; then nothing is measured here."""
    parts, groups = [], {}
    for k, config in enumerate(configs):
        family = family_key(config)
        key = kernel_key(config, family) if generated(config) else None
        if key is None or key in loops:
            parts.append(Trained.of([train(config, engine="loops")], index=[k]))
            continue
        groups.setdefault(key, {}).setdefault(family, []).append(k)
    for families in groups.values():
        first = configs[next(iter(families.values()))[0]]
        size = 1 if not full_batch(first) else lanes or _lanes(first, measured, len(families))
        drawn = [(*_drawn([configs[k] for k in ks]), ks) for ks in families.values()]
        parts.append(_train_families(drawn, size))
    return Trained.concat(parts)


def _lanes(config: RunConfig, measured: dict | None, n_families: int) -> int:
    """Runs per block for these families: measured on this host first where it has not
    been (or not settled) and they fill more than one lane (:func:`fastbp.planner.measure`)."""
    if measured is None and n_families > 1:
        from fastbp.planner import measure, measuring_due

        if measuring_due(config):
            return measure(config, by="train_batch").lanes
    return block_choice(config, measured).lanes


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


def _rates(configs, n_steps: int, scheduled: bool) -> np.ndarray:
    """A block's learning rates, as its kernel reads them: one per lane, or, where they
    are scheduled, (lanes, n_steps + 1), [r, u] lane r's rate of update u + 1 (the last
    column is read after the last update, and not used)."""
    if not scheduled:
        return np.array([c.lr for c in configs])
    return np.stack([schedules.rates(c, n_steps + 1) for c in configs])


def _train_families(families, lanes: int) -> Trained:
    """Train (configs, initial params, order, indices) families, a block of ``lanes``
    families at a time; each family's configs differ only in steps, and ``indices`` are
    their positions in the caller's list."""
    config = families[0][0][0]
    dtype = np.dtype(config.dtype)
    identity = kernel_of(config, lanes)
    kernel, workspace = codegen.block_kernel(identity)
    X64, T64 = make_dataset(config)
    X, T = X64.astype(dtype), T64.astype(dtype)
    T_t = np.ascontiguousarray(T.T).ravel()
    want = metrics.wanted(config, T64, make_validation(config))
    values = hyper(config)  # the same for every run of the group (kernel_key)
    # Longest first, so that each block's lanes have similar amounts of work.
    order = sorted(range(len(families)), key=lambda f: -max(c.steps for c in families[f][0]))
    parts, pending, held = [], [], 0  # blocks trained, their columns not made yet
    for first in range(0, len(order), lanes):
        block = order[first : first + lanes]
        padded = block + [block[-1]] * (lanes - len(block))  # spare lanes repeat a family
        runs = [families[f][0] for f in padded]
        snaps_at = [sorted({c.steps for c in group}) for group in runs]
        log_steps = _block_steps(tuple((c.steps, c.log_every) for group in runs for c in group))
        theta = np.array([families[f][1] for f in padded], dtype=dtype)  # (lanes, params)
        n_params = theta.shape[1]
        snap_steps = np.full((lanes, max(map(len, snaps_at))), -1, dtype=np.int64)
        for lane, steps in enumerate(snaps_at):
            snap_steps[lane, : len(steps)] = steps
        losses = np.full((lanes, len(log_steps)), np.nan)
        snaps = np.zeros((lanes, snap_steps.shape[1], n_params), dtype=dtype)
        diverged_at = np.empty(lanes, dtype=np.int64)
        plog = np.full((lanes, len(log_steps) if want else 0, n_params), np.nan, dtype=dtype)
        lr = _rates([group[0] for group in runs], log_steps[-1], identity.scheduled)
        start = time.perf_counter()
        samples = families[padded[0]][2]  # the order of samples (mini-batches: one lane)
        kernel(
            theta.T.ravel(),  # runs innermost
            lr,
            log_steps,
            snap_steps,
            X,
            T_t,
            losses,
            snaps,
            diverged_at,
            samples,
            values,
            plog,
            *workspace(),
        )
        wall = time.perf_counter() - start
        if first == 0:
            codegen.mark_cached(identity)
        pending.append(_Block(block, snaps_at, log_steps, losses, snaps, diverged_at, plog, wall))
        held += plog.size
        if held > METRICS_BATCH or first + lanes >= len(order):
            parts.append(_columns(pending, families, config, X64, T64, want))
            pending, held = [], 0
    return Trained.concat(parts)


@lru_cache(maxsize=256)
def _block_steps(runs: tuple) -> np.ndarray:
    """The steps a block logs: those of each of its (steps, log_every)."""
    # Sorted and deduplicated by hand: np.unique's first call in a process costs ~10 ms,
    # a sixth of a fresh process's time to its first trained run.
    out = np.sort(np.concatenate([logged_steps(*run, copy=False) for run in runs]))
    out = out[np.concatenate(([True], out[1:] != out[:-1]))]
    out.flags.writeable = False
    return out


@dataclass
class _Block:
    """What the kernel gave for a block of families (in the lanes ``families``)."""

    families: list[int]
    snaps_at: list[list[int]]  # per lane: the step counts of its snapshots
    log_steps: np.ndarray
    losses: np.ndarray  # (lanes, len(log_steps))
    snaps: np.ndarray  # (lanes, snapshots, params)
    diverged_at: np.ndarray  # (lanes,)
    plog: np.ndarray  # (lanes, len(log_steps) or 0, params)
    wall: float


# Parameters of logged steps handed to the metrics at once: NumPy's cost per call (about
# 50 us) would otherwise be a tenth of the kernel's time for runs of 1,000 steps.
METRICS_BATCH = 1 << 18


def _columns(blocks: list[_Block], families, config, X64, T64, want) -> Trained:
    """The runs of trained blocks as columns, with their metrics computed for all of them
    at once. A block whose lanes each hold one run that logged every step the block
    logged (the common case: a sweep of one step count) is taken as whole arrays."""
    n_params = blocks[0].snaps.shape[2]
    flat = np.concatenate([b.plog[: len(b.families)].reshape(-1, n_params) for b in blocks])
    computed, at = metrics.compute(flat, config, X64, T64, want), 0
    names = ("configs", "index", "lengths", "steps", "losses", "thetas", "diverged_at", "wall_s")
    cols = {name: [] for name in (*names, *metrics.METRICS)}
    for b in blocks:
        n, n_log = len(b.families), len(b.log_steps)
        logged = {name: computed[name][at : at + n * n_log].reshape(n, n_log)
                  if name in computed else np.full((n, n_log), np.nan)
                  for name in metrics.METRICS}  # fmt: skip
        at += n * n_log
        groups = [families[f][0] for f in b.families]
        total = sum(c.steps for group in groups for c in group)
        whole = all(
            len(g) == 1 and -(-g[0].steps // g[0].log_every) + 1 == n_log for g in groups
        )  # fmt: skip  (the number of steps it logs)
        if whole:  # one run per lane, logged at every step the block logged
            steps = np.array([g[0].steps for g in groups])
            cols["configs"] += [g[0] for g in groups]
            cols["index"] += [families[f][3][0] for f in b.families]
            cols["thetas"] += list(b.snaps[:n, 0])
            cols["wall_s"] += list(b.wall * steps / total)
            stopped = b.diverged_at[:n]
            cols["diverged_at"] += list(np.where((stopped >= 0) & (stopped <= steps), stopped, -1))
            cols["lengths"].append(np.full(n, n_log))
            cols["steps"].append(np.tile(b.log_steps, n))
            cols["losses"].append(b.losses[:n].ravel())
            for name in metrics.METRICS:
                cols[name].append(logged[name].ravel())
            continue
        for lane, f in enumerate(b.families):
            for c, k in zip(groups[lane], families[f][3], strict=True):
                steps = logged_steps(c.steps, c.log_every, copy=False)
                rows = np.searchsorted(b.log_steps, steps)  # the block's rows of this run
                stopped = b.diverged_at[lane]
                cols["configs"].append(c)
                cols["index"].append(k)
                cols["thetas"].append(b.snaps[lane, b.snaps_at[lane].index(c.steps)])
                cols["wall_s"].append(b.wall * c.steps / total)
                cols["diverged_at"].append(stopped if 0 <= stopped <= c.steps else -1)
                cols["lengths"].append([len(steps)])
                cols["steps"].append(steps)
                cols["losses"].append(b.losses[lane, rows])
                for name in metrics.METRICS:
                    cols[name].append(logged[name][lane, rows])
    n = len(cols["configs"])
    return Trained(
        configs=cols["configs"],
        index=np.array(cols["index"], dtype=np.int64),
        lengths=_joined(cols["lengths"], np.int64),
        steps=_joined(cols["steps"], np.int64),
        losses=_joined(cols["losses"], np.float64),
        metrics={name: _joined(cols[name], np.float64) for name in metrics.METRICS},
        known={name: np.full(n, name in computed) for name in metrics.METRICS},
        thetas=cols["thetas"],
        diverged_at=np.array(cols["diverged_at"], dtype=np.int64),
        wall_s=np.array(cols["wall_s"], dtype=np.float64),
    )


def train_chunk(configs: list[RunConfig], plan=None) -> tuple:
    """Train a sweep's task: what joblib runs in a worker. Returns (Trained, failures).

    The runs are trained together by :func:`train_columns`, as ``plan`` says (a
    :class:`fastbp.planner.Plan`: the kernel keys left to the loop kernel, the block
    sizes chosen on the sweep's host). Should
    that fail, each is trained alone, and a run that raises is a failure, the error's
    text: one failing run never costs the others their results.
    """
    from fastbp.planner import Plan

    plan = plan or Plan()
    loops = frozenset(plan.loops)
    try:
        return train_columns(configs, loops=loops, measured=plan.measured), []
    except Exception:  # noqa: BLE001 - find the culprit run by run
        pass
    done, failed = [], []
    for config in configs:
        try:
            done.append(train(config, engine="loops" if kernel_key(config) in loops else "auto"))
        except Exception as err:  # noqa: BLE001 - returned as data, reported by the sweep
            failed.append(f"run {config.run_id}: {type(err).__name__}: {err}")
    return Trained.of(done), failed
