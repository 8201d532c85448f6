"""What a sweep asks the engine before it trains: which kernels its runs need and which
are cached, which are not worth compiling, how many runs a block trains side by side on
this host (measured here the first time), the blocks runs train in, and their names.

The sweep plans with this module and trains with :func:`fastbp.train.train_chunk`; it
does not group runs itself. A :class:`Plan` is what the sweep's workers get of the
plan: the kernels left to the loop kernel and the block sizes chosen on this host.
"""

from __future__ import annotations

import math
import operator
import os
import time
from dataclasses import dataclass, replace

from fastbp.config import RunConfig, layers_text
from fastbp.engine import codegen, kernels, tuning
from fastbp.train import (
    block_choice,
    family_key,
    full_batch,
    generated,
    kernel_key,
    kernel_of,
    train,
    train_columns,
)


@dataclass(frozen=True)
class Plan:
    """What workers train a sweep's runs by: the kernel keys whose runs the loop kernel
    trains (``loops``: compiling theirs costs more than it saves), and the runs per block
    chosen on the sweep's host for each measurement key (``lanes``), so that a worker
    on another host (a Dask cluster) trains the blocks the plan made. Tuples, not sets or
    dicts: joblib's Dask backend scatters a large set into Futures."""

    loops: tuple = ()
    lanes: tuple = ()  # (key, lanes) pairs: fastbp.engine.tuning.key_of
    timed: tuple = ()  # the keys measured for this plan
    unpaid: tuple = ()  # the keys whose runs train one at a time: blocks_unpaid

    @property
    def measured(self) -> dict:
        """{key: lanes, or a tuning.Choice}: what fastbp.engine.tuning.choose takes."""
        return {**dict(self.lanes), **settled(self.unpaid)}


# The loop kernel, compiled once for every architecture, trains the same bits in at most
# about LOOP_NS_PER_STEP + LOOP_NS_PER_PRODUCT x the products of a step, one run, one
# core (measured on 2026-12-04, AVX-512 and emulated AVX2: 477-498 ns on the 8-3-8's
# 1,152 products, 549-604 on the 8-6-8's 2,304, 4.6-4.7 us on the 8-128-8's 49,152,
# 0.48-0.62 ms on the digits' 64-32-10, 10.2 M; the digits in mini-batches of 64 took
# 45 us, 74 on AVX2, against the 55 this gives): what a sweep assumes where it cannot
# measure (loop_step_s).
LOOP_NS_PER_STEP = 500.0
LOOP_NS_PER_PRODUCT = 0.12


def loop_seconds(run_steps: int, products: int) -> float:
    """Seconds the loop kernel takes for ``run_steps`` steps of ``products`` products."""
    return run_steps * (LOOP_NS_PER_STEP + LOOP_NS_PER_PRODUCT * products) * 1e-9


def kernels_needed(runs, loops=frozenset()) -> dict:
    """One run per kernel these runs need: key -> run (key "loops": the loop kernel, which
    trains the mini-batch runs no generated kernel takes, and the runs whose kernel key
    is in ``loops``). Which kernel a key stands for follows the block sizes chosen."""
    needed = {}
    for run in runs:
        key = kernel_key(run) if generated(run) else "loops"
        needed.setdefault("loops" if key in loops else key, run)
    return needed


def _waits(key, run, measured=None) -> bool:
    """Whether kernel ``key``'s block size waits for a measurement on this host."""
    return key != "loops" and measuring_due(run, measured)


def measuring_due(run, measured=None) -> bool:
    """Whether the block size of runs like ``run`` is to be measured on this host: never
    yet, or not settled (:func:`fastbp.engine.tuning.verdict`) and both kernels it times
    cached (a measurement again must not compile)."""
    if not full_batch(run):
        return False
    choice = block_choice(run, measured)
    if choice.why == "not settled":
        sizes = (1, tuning.default_lanes(run.dtype))
        return all(codegen.is_cached(kernel_of(run, lanes)) for lanes in sizes)
    return choice.why == "not measured" and choice.lanes > 1


def unmeasured(runs, loops=frozenset(), measured=None) -> dict:
    """Measurement key (:func:`fastbp.engine.tuning.key_of`) -> a run, for the block
    kernels these runs need whose size this host has not measured yet."""
    out = {}
    for key, run in kernels_needed(runs, loops).items():
        if _waits(key, run, measured):
            out.setdefault(_key(run), run)
    return out


def kernels_first(runs, loops=frozenset(), measured=None) -> dict:
    """The kernels to compile before :func:`tune` measures: for each measurement it makes,
    the block kernel and the one-run kernel it times (key ("measure", measurement key)),
    and every kernel whose form does not wait for a measurement. The rest are compiled
    after it, in the form it chose (a kernel compiled in a form the measurement then
    turns down would cost 4-17 s for nothing)."""
    first = {}
    for key, run in unmeasured(runs, loops, measured).items():
        first[kernel_key(run)] = run
        first[("measure", key)] = run
    for key, run in kernels_needed(runs, loops).items():
        if not _waits(key, run, measured):
            first.setdefault(key, run)
    return first


def is_cached(key, run, measured=None) -> bool:
    """Whether the kernel ``key`` (as in :func:`kernels_needed`) is known to be in Numba's
    disk cache."""
    if key == "loops":
        return kernels.is_cached()
    lanes = 1 if key[0] == "measure" else block_choice(run, measured).lanes
    return codegen.is_cached(kernel_of(run, lanes))


def uncached(runs, loops=frozenset(), measured=None) -> dict:
    """The kernels of :func:`kernels_needed` and :func:`kernels_first` not known to be in
    the cache: key -> run."""
    every = {**kernels_needed(runs, loops), **kernels_first(runs, loops, measured)}
    return {key: run for key, run in every.items() if not is_cached(key, run, measured)}


# A sweep whose runs of an architecture the loop kernel trains in under
# FASTBP_LOOP_BUDGET_S seconds on its workers (default 3, about what a kernel takes to
# compile; 0: always compile) leaves that architecture's kernel uncompiled
# (cheap_on_loops).
LOOP_BUDGET_S = 3.0

# Compiling the loop kernel itself (once per host: 10-11 s on the development machine)
# against compiling the kernels it would stand in for (one-run kernels, about 2-3 s each,
# with Numba's machinery loaded): where it is not cached yet and no run needs it anyway,
# it takes over only the kernels whose compiling would cost more.
LOOP_KERNEL_COMPILE_S = 10.0
KERNEL_COMPILE_S = 3.0


def loop_budget_s() -> float:
    """FASTBP_LOOP_BUDGET_S as seconds (default LOOP_BUDGET_S); LoopBudgetError if bad."""
    text = os.environ.get("FASTBP_LOOP_BUDGET_S", "").strip()
    if not text:
        return LOOP_BUDGET_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise LoopBudgetError(
            f"FASTBP_LOOP_BUDGET_S must be a number of seconds >= 0, got {text!r}"
        )
    return value


class LoopBudgetError(ValueError):
    """FASTBP_LOOP_BUDGET_S holds something other than a number of seconds."""


def check_settings() -> None:
    """ValueError, with a one-line message, where an environment variable the engine reads
    (FASTBP_LANES, FASTBP_LOOP_BUDGET_S) holds a bad value: said before a sweep starts."""
    tuning.pinned_lanes()
    loop_budget_s()


def cheap_on_loops(runs, budget_s: float, workers: int = 1, step_s=None) -> frozenset:
    """The kernel keys of these runs whose kernel is not cached yet, and whose runs the
    loop kernel trains in less than ``budget_s`` seconds on the sweep's ``workers`` (runs
    sharing a trajectory trained once, a trajectory on one worker; 0: none), a step of a
    run taking ``step_s(run)`` seconds there (default :func:`loop_step_s`: measured). A
    new architecture then adds to a sweep at most the budget (the loop kernel's time,
    part of which its own kernel would take too) or the compiling of its kernel, whatever
    the loop kernel's speed against that kernel's on the host. None where the loop
    kernel is not cached, no run needs it otherwise, and compiling it would cost more
    than compiling theirs (LOOP_KERNEL_COMPILE_S)."""
    cold = {
        key: run for key, run in uncached(runs).items() if key != "loops" and key[0] != "measure"
    }
    if not cold or budget_s <= 0:
        return frozenset()
    longest: dict[tuple, dict[tuple, int]] = {key: {} for key in cold}  # family -> steps
    for run in runs:
        family = family_key(run)
        families = longest.get(kernel_key(run, family)) if generated(run) else None
        if families is not None:
            families[family] = max(families.get(family, 0), run.steps)
    cheap = set()
    for key, families in longest.items():
        run, steps = cold[key], sum(families.values())
        spread = max(1, min(workers, len(families)))
        model = steps * model_step_s(run) / spread
        near = model * MODEL_ERROR[0] < budget_s <= model * MODEL_ERROR[1]  # else not measured
        seconds = steps * (step_s or loop_step_s)(run) / spread if step_s or near else model
        if seconds < budget_s:
            cheap.add(key)
    if cheap and not kernels.is_cached() and all(generated(run) for run in runs):
        if KERNEL_COMPILE_S * len(cheap) < LOOP_KERNEL_COMPILE_S:
            return frozenset()  # compiling the loop kernel would cost more than theirs
    return frozenset(cheap)


# The loop kernel's speed is measured on a run's own steps, about this long a call, where
# the model's estimate times MODEL_ERROR (what the loop kernel took against the model:
# 0.4-1.3x, LOOP_NS_PER_STEP's comment) straddles the budget.
MEASURE_S = 0.02
MODEL_ERROR = (0.3, 1.5)


def model_step_s(run: RunConfig) -> float:
    """Seconds a step of ``run`` takes in the loop kernel by :func:`loop_seconds`' model."""
    return loop_seconds(1, codegen.products(run.layers, run.n_samples))


def loop_step_s(run: RunConfig) -> float:
    """Seconds a step of ``run`` takes in the loop kernel on this host: measured here on
    the run's own steps where the loop kernel is cached (its loading, once per process,
    not counted), as the time that k more steps add (best of two each; a call's own cost,
    its data and buffers, left out); else :func:`loop_seconds`' model (measured against
    it on the development machine: 0.7-0.8x on the 8-3-8 to 8-128-8, 0.4-0.5x on the
    digits in full batch; 0.8x, or 1.3x on emulated AVX2, in mini-batches of 64)."""
    model = model_step_s(run)
    if not kernels.is_cached():
        return model
    train(replace(run, steps=1, log_every=1), engine="loops")
    k = max(1, min(100_000, int(MEASURE_S / model)))

    def took(steps):
        timed = replace(run, steps=steps, log_every=steps)
        best = math.inf
        for _ in range(2):
            start = time.perf_counter()
            train(timed, engine="loops")
            best = min(best, time.perf_counter() - start)
        return best

    short, long = took(k), took(2 * k)
    return (long - short) / k if long > short else long / (2 * k)


def compiled_here() -> int:
    """How many kernels this process has compiled, not found in a cache (a sweep says
    'compiled' rather than 'loaded' where this grew)."""
    from fastbp.engine import kernel_cache

    return kernel_cache.compiled()


def warm_up(runs, loops=frozenset(), starting=None, done=None, measured=None) -> None:
    """Compile or load, in this process, every kernel these runs need (the loop kernel for
    the kernel keys in ``loops``), in the block sizes ``measured`` ({key: lanes}, as a
    Plan has them; else this host's); ``starting(k, n, text)`` names the k-th of n before
    its turn, ``done()`` follows each."""
    needed = kernels_needed(runs, loops)
    for k, (key, run) in enumerate(needed.items(), start=1):
        if starting:
            starting(k, len(needed), kernel_what(key, run))
        warm_kernel(key, run, measured)
        if done:
            done()


def warm_kernel(key, run, measured=None) -> None:
    """Compile or load the one kernel ``key`` of :func:`kernels_needed` (``run`` is the
    run it was found for), by training a one-step copy of the run in it."""
    tiny = replace(run, steps=1, log_every=1)
    if key == "loops":
        train(tiny, engine="loops")
    else:
        lanes = 1 if key[0] == "measure" else block_choice(run, measured).lanes
        train_columns([tiny], lanes=lanes)  # lanes given: nothing measured here


# --- block sizes, measured on the host ---


def tune(runs, loops=frozenset(), unpaid=(), by="a sweep") -> Plan:
    """Measure, for every dtype, optimizer and size (:func:`fastbp.engine.tuning.key_of`)
    of these runs' block kernels that this host has not measured yet, whether blocks or
    one run at a time train faster (:func:`measure`); return the plan: ``loops``,
    ``unpaid`` (keys left one run at a time: :func:`blocks_unpaid`; not measured) and the
    sizes chosen for every other key this host has measured."""
    timed = unmeasured(runs, loops, settled(unpaid))
    for run in timed.values():
        measure(run, by=by)
    table = tuning.host_table()
    keys = {_key(run) for key, run in kernels_needed(runs, loops).items() if key != "loops"}
    lanes = [(k, table[k]["lanes"]) for k in sorted(keys - set(unpaid)) if k in table]
    return Plan(loops=tuple(loops), lanes=tuple(lanes), timed=tuple(timed), unpaid=tuple(unpaid))


# Blocks are compiled where they can repay it. A block kernel (the registers form) took
# 5.5-6.2 s to compile on the development machine (8-3-8 and 8-6-8; float64 and float32;
# AVX-512 and emulated AVX2), where its runs one at a time need the one-run kernel (2-3 s)
# anyway; blocks saved at most 0.075 ns a run-step per product of the step (Adam, float32,
# 8-3-8, blocks of 16 on AVX-512: 54 against 141 ns a run-step), most often half that.
BLOCK_COMPILE_S = 5.0
MOST_SAVED_NS = 0.08

UNPAID = tuning.Choice(1, "not worth compiling blocks")


def settled(unpaid) -> dict:
    """The ``measured`` entries (:func:`fastbp.engine.tuning.choose`) that leave the keys
    ``unpaid`` one run at a time."""
    return dict.fromkeys(unpaid, UNPAID)


def blocks_unpaid(runs, loops=frozenset()) -> tuple:
    """The sizes of step (:func:`fastbp.engine.tuning.key_of`) whose block kernels, not
    in the cache yet, cannot repay their compiling in this sweep: the core-seconds blocks
    could at most save its runs (one run-step of a family of runs sharing a trajectory
    each, MOST_SAVED_NS per product), with what they could have saved this host's earlier
    sweeps, fall short of BLOCK_COMPILE_S for each kernel. Their runs train one run at a
    time, and what blocks could have saved them is kept in the host's calibration file
    (:func:`fastbp.engine.tuning.forgone`); once that adds up to the kernels' compiling,
    a sweep compiles them: a ski rental, which never costs more than twice what the better
    choice, known beforehand, would have."""
    kernels, saving = {}, {}
    families = {}  # family -> (the run it trains to, its size key)
    for key, run in kernels_needed(runs, loops).items():
        if key == "loops" or not full_batch(run):
            continue
        choice = block_choice(run)
        lanes = choice.lanes
        if choice.why == "not settled" and lanes == 1:  # an older file's: measured again
            lanes = tuning.default_lanes(run.dtype)
        if lanes > 1 and choice.why in ("measured", "not measured", "not settled"):
            if not codegen.is_cached(kernel_of(run, lanes)):
                kernels.setdefault(_key(run), set()).add(key)
    for run in runs:
        size = _key(run) if generated(run) and full_batch(run) else None
        if size in kernels and kernel_key(run) in kernels[size]:
            family = family_key(run)
            if run.steps > families.get(family, (0,))[0]:
                families[family] = (run.steps, run, size)
    for steps, run, size in families.values():
        ns = steps * codegen.products(run.layers, run.n_samples) * MOST_SAVED_NS
        saving[size] = saving.get(size, 0.0) + ns * 1e-9
    unpaid = []
    for size in sorted(kernels):
        before = tuning.forgone(size)
        if before + saving[size] >= BLOCK_COMPILE_S * len(kernels[size]):
            tuning.forgo(size, 0.0)  # compiled now
        else:
            unpaid.append(size)
            tuning.forgo(size, before + saving[size])
    return tuple(unpaid)


def measure(run: RunConfig, sizes=None, rounds=tuning.ROUNDS, seconds=tuning.SECONDS,
            by="a sweep") -> tuning.Choice:  # fmt: skip
    """Time ``sizes`` runs per block (default: one vector register's worth, and one at a
    time) on copies of ``run`` (its architecture, data, loss and optimizer; seeds 0, 1,
    ..., a small learning rate, so that none diverges), keep the choice for the run's
    dtype and optimizer on this host, and return it: blocks where more than tuning.MARGIN
    faster in two measurements, or more than tuning.LOW faster here and in the processes
    that measured before (:func:`fastbp.engine.tuning.verdict`); blocks, not settled, where
    more than LOW faster in fewer processes. Each size trains the same runs, for about
    ``seconds`` per timing."""
    default = tuning.default_lanes(run.dtype)
    sizes = sorted(set(sizes or (default, 1)))
    count = max(sizes)
    probe = replace(run, lr=1e-4)

    def runs_of(steps):
        return [replace(probe, seed=s, steps=steps, log_every=steps) for s in range(count)]

    for lanes in sizes:  # compile or load each, outside the timings
        train_columns(runs_of(2), lanes=lanes)
    trial, start = runs_of(500), time.perf_counter()
    train_columns(trial, lanes=count)
    per_step = max((time.perf_counter() - start) / (500 * count), 1e-9)
    steps = int(min(max(seconds / (per_step * count), 500), 100_000))
    configs = runs_of(steps)

    def trainer(lanes):
        def run_all():
            train_columns(configs, lanes=lanes)
            return steps * count

        return run_all

    trainers = {lanes: trainer(lanes) for lanes in sizes}
    ns = {lanes: t * 1e9 for lanes, t in tuning.time_forms(trainers, rounds).items()}
    # Blocks settle at once only where clearly faster, twice (a settled choice is kept
    # for good on this host: a lucky or busy spell must not decide it).
    if tuning.fastest(ns, 1, tuning.MARGIN) != 1:
        again = {k: t * 1e9 for k, t in tuning.time_forms(trainers, rounds).items()}
        ns = {k: min(ns[k], again[k]) if k == 1 else max(ns[k], again[k]) for k in ns}
    block = min((k for k in ns if k != 1), key=ns.get, default=1)
    earlier = tuning.host_table().get(_key(run), {})
    gains = [*tuning.unsettled_gains(earlier), ns[1] / ns[block]]
    blocks_win = tuning.verdict(gains)
    lanes = 1 if blocks_win is False else block  # not settled: faster here
    unsettled = gains if blocks_win is None else []
    tuning.record(_key(run), ns, lanes, by, unsettled)
    why = "not settled" if unsettled else "measured"
    return tuning.Choice(lanes, why, tuning.describe(ns, by, unsettled=unsettled))


def _key(run) -> str:
    return tuning.key_of(run.layers, run.n_samples, run.dtype, run.optimizer)


# --- blocks, and their names ---


def blocks(runs, plan: Plan = Plan()) -> list[tuple[int, list[RunConfig]]]:
    """The units a sweep can hand to a worker whole, each with its cost (steps x products
    of a step, for every lane): a block of families (runs that differ only in steps) as
    :func:`fastbp.train.train_batch` trains them side by side, the longest families
    first, or one run for the loop kernel."""
    units, groups = [], {}
    measured = plan.measured
    for run in runs:
        if not generated(run):
            units.append((run_cost(run), [run]))
            continue
        family = family_key(run)
        groups.setdefault(kernel_key(run, family), {}).setdefault(family, []).append(run)
    for families in groups.values():
        longest = [max(f, key=_STEPS) for f in families.values()]  # the run each trains to
        order = sorted(range(len(longest)), key=lambda k: -longest[k].steps)
        members = list(families.values())
        lanes = block_choice(longest[0], measured).lanes
        for first in range(0, len(order), lanes):
            block = order[first : first + lanes]  # its first family trains longest
            units.append((run_cost(longest[block[0]]) * lanes,
                          [r for k in block for r in members[k]]))  # fmt: skip
    return units


_STEPS = operator.attrgetter("steps")


def run_cost(run) -> int:
    """Work of one run: steps x products per step."""
    return run.steps * codegen.products(run.layers, run.n_samples)


def kernel_forms(runs, plan: Plan | None = None) -> dict:
    """For each kernel the runs need (named by :func:`kernel_text`): its form, runs per
    block, why that many, and what was measured (as meta.json records them), as ``plan``
    (a sweep's) trained them."""
    forms = {}
    loops = plan.loops if plan else ()
    for key, run in kernels_needed(runs).items():
        if key == "loops" or key in loops:
            why = "mini-batches" if key == "loops" else "cheaper than compiling"
            forms[kernel_text(run) if key in loops else "mini-batches"] = {
                "form": "loop kernel", "lanes": 1, "why": why
            }  # fmt: skip
            continue
        choice = block_choice(run, settled(plan.unpaid) if plan else None)
        form = kernel_of(run, choice.lanes).form
        forms[kernel_text(run)] = {"form": form, **choice.as_dict()}
    return forms


def forms_text(forms: dict) -> str:
    """The kernel forms in a few words, for the sweep's closing line: 'blocks of 8 runs
    (measured)', 'one run at a time (large network)'; the kinds joined by '; '."""
    kinds = {}
    for entry in forms.values():
        if entry["form"] == "loop kernel":
            text = "the loop kernel"
        elif entry["lanes"] > 1:
            text = f"blocks of {entry['lanes']} runs"
        else:
            text = "one run at a time"
        kinds.setdefault(f"{text} ({entry['why']})", None)
    return "; ".join(kinds)


def kernel_what(key, run) -> str:
    """'the loop kernel', 'the kernel for 8-3-8 relu ...', or 'the one-run kernel for ...'
    (to time it against blocks)."""
    if key == "loops":
        return "the loop kernel"
    if key[0] == "measure":
        return f"the one-run kernel for {kernel_text(run)} (to time against blocks)"
    return f"the kernel for {kernel_text(run)}"


def kernel_text(run) -> str:
    """What sets a run's kernel apart, in words: '8-4-8 tanh no bias float32 adam'."""
    parts = [layers_text(run.layers), run.activation, "" if run.bias else "no bias"]
    parts += [run.dtype if run.dtype != "float64" else ""]
    parts += ["" if full_batch(run) else f"batches of {run.batch_size}"]
    parts += [
        str(run.dataset) if run.dataset != "encoder" else "",
        run.loss_fn if run.loss_fn != "mse" else "",
        run.optimizer if run.optimizer != "sgd" else "",
        "weight decay" if run.weight_decay else "",
    ]
    return " ".join(p for p in parts if p)
