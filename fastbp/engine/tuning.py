"""How many runs a block kernel trains side by side on this host: pinned, measured, or not
measured yet, and the measurement itself.

Whichever form trains a run, its bits are the same (:mod:`fastbp.engine.codegen`), so the
engine may choose the form by speed alone, and speed depends on the host more than on its
vector ISA: on the development machine's AVX-512 CPU blocks of 8 float64 runs train 2x
faster than one run at a time; on a real AMD Zen 3 (AVX2) blocks of 4 trained 1.36x
(momentum 1.54x) slower than one at a time, which an emulated AVX2 build did not show. So
the choice is measured on the host, never assumed: the first time runs of a dtype, an
optimizer and a size of step (:func:`key_of`) are trained in blocks here (by a sweep, or
:func:`fastbp.train.train_batch`), the block form and the one-run form are timed on copies
of one of those runs, in interleaved rounds; blocks are kept only where they win clearly,
twice (one run at a time is the safe choice), and the faster is kept in ``calibration.json``
in the kernel directory under the key of the kernels' build
(:func:`fastbp.engine.kernel_cache.build_key`: the CPU target, the versions of fastbp, Numba
and llvmlite, the engine's sources). Every later block of that kind on this host takes it,
without measuring, until one of those changes. A gain too small for one process to settle
(:data:`LOW` to :data:`MARGIN`) trains in blocks and is measured again by the next sweeps,
while the kernels are cached, until :data:`TRIES` processes agree (:func:`verdict`). It
costs the one-run kernel's compilation once (1.8-2.3 s on the development machine, beside
the block kernel's, on the other core) and about 0.1 s of timing each time.

``python -m fastbp.calibrate`` does the same, for every block size, dtype and optimizer,
with longer timings. ``FASTBP_LANES`` pins a size over any measurement.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastbp.engine import kernel_cache
from fastbp.engine.codegen import LANE_CHOICES, SCALAR_EXP, products, register_limit

ROUNDS = 7  # timings of each form, interleaved
SECONDS = 0.004  # the block form's time in each round: several blocks' worth of steps
# Blocks are chosen at once where this much faster than one run at a time, twice in one
# process. The speed of the registers form has varied between processes by where its code
# and stack land (emulated AVX2, momentum, 8-3-8: 80-88 ns a run-step in five processes,
# 61 and 179 in two others, against 66-73 one at a time): one process's timing is good to
# about this much.
MARGIN = 0.15
# Blocks that gain LOW or less are not worth it: one run at a time, settled. A gain
# between LOW and MARGIN is not settled by one process: runs train in blocks, the faster
# form there, and the next sweeps measure again (only where both kernels are cached)
# until TRIES processes have each timed blocks more than LOW faster, which settles
# blocks, or one finds LOW or less, which settles one run at a time (emulated AVX2, 8-3-8
# float64: blocks 12% faster in one measurement, 16-22% in eight others, 65 against 77 ns
# a run-step in a benchmark's processes).
LOW = 0.05
TRIES = 3


@dataclass(frozen=True)
class Choice:
    """Runs per block, and why: "pinned" (FASTBP_LANES), "measured" (on this host),
    "not measured" (the default: one vector register's worth), "not settled" (blocks,
    measured again by the next sweeps: LOW, MARGIN; one run at a time where an older file
    chose it), "large network" and "exp per lane" (one run at a time is faster: codegen),
    "mini-batches" (one run at a time), "not worth compiling blocks" (a sweep's plan:
    :func:`fastbp.planner.blocks_unpaid`)."""

    lanes: int
    why: str
    detail: str = ""  # what was measured, in words, for meta.json

    def as_dict(self) -> dict:
        return {
            "lanes": self.lanes,
            "why": self.why,
            **({"measured": self.detail} if self.detail else {}),
        }


def default_lanes(dtype: str) -> int:
    """One vector register's worth of runs of this dtype on the target CPU."""
    return kernel_cache.vector_bits() // (64 if dtype == "float64" else 32)


def choose(layers, n_samples, dtype, activation="relu", loss_fn="mse", optimizer="sgd",
           measured: dict | None = None) -> Choice:  # fmt: skip
    """The runs per block for this architecture on this host, in this order: one run at a
    time for networks above :func:`fastbp.engine.codegen.register_limit` and steps that
    call exp per value; ``FASTBP_LANES`` when set; what this host measured for the dtype,
    optimizer and size (:func:`key_of`) in ``measured`` ({key: lanes, or a Choice}: a
    sweep's plan, as it hands it to its workers), else in this host's calibration file;
    else the default, "not measured"."""
    if products(layers, n_samples) > register_limit(dtype):
        return Choice(1, "large network")
    if activation in SCALAR_EXP["activation"] or loss_fn in SCALAR_EXP["loss_fn"]:
        return Choice(1, "exp per lane")
    pinned = pinned_lanes()
    if pinned is not None:
        return Choice(pinned, "pinned")
    key = key_of(layers, n_samples, dtype, optimizer)
    lanes = (measured or {}).get(key)
    if isinstance(lanes, Choice):  # decided by a sweep's plan without measuring
        return lanes
    if lanes is not None:
        return Choice(lanes, "measured")
    entry = host_table().get(key)
    if entry is not None:
        why = "not settled" if unsettled_gains(entry) else "measured"
        return Choice(entry["lanes"], why, _detail(entry))
    return Choice(default_lanes(dtype), "not measured")


def verdict(gains: list[float]) -> bool | None:
    """Whether blocks win, from the gains (one run at a time's time over blocks') that
    processes measured, the last one last: True or False, or None where it is not settled
    yet (a gain between LOW and MARGIN, in fewer than TRIES processes)."""
    if gains[-1] > 1 + MARGIN:
        return True
    if gains[-1] <= 1 + LOW:
        return False
    return True if len(gains) >= TRIES else None


def unsettled_gains(entry: dict) -> list[float]:
    """The gains measured so far where ``entry`` (a host_table() value) is not settled.
    An entry written before these were kept is not settled where it chose one run at a
    time for a gain between LOW and MARGIN."""
    gains = entry.get("unsettled_gains")
    if isinstance(gains, list) and gains and all(isinstance(g, int | float) for g in gains):
        return [float(g) for g in gains]
    ns = entry.get("ns_per_run_step")
    if gains is not None or entry.get("lanes") != 1 or not isinstance(ns, dict):
        return []
    try:
        gain = float(ns["1"]) / min(float(v) for k, v in ns.items() if k != "1")
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return []
    return [gain] if 1 + LOW < gain <= 1 + MARGIN else []


class LanesError(ValueError):
    """FASTBP_LANES holds something other than a lane count."""


def pinned_lanes() -> int | None:
    """FASTBP_LANES as a lane count, None when unset; LanesError for a bad value."""
    text = os.environ.get("FASTBP_LANES", "").strip()
    if not text:
        return None
    if text not in {str(n) for n in LANE_CHOICES}:
        choices = ", ".join(map(str, LANE_CHOICES))
        raise LanesError(f"FASTBP_LANES must be one of {choices} (runs per block), got {text!r}")
    return int(text)


def key_of(layers, n_samples: int, dtype: str, optimizer: str) -> str:
    """What a measurement holds for: the dtype, the optimizer and the size of a step, its
    products rounded down to a power of two ("float64 sgd, 1024+ products" for the
    8-3-8's 1,152): blocks of the 8-8-8 (3,072) measured 1.14x slower than one run at a
    time where those of the 8-3-8 were 2x faster. Smaller steps are one size (fewer values
    to keep in registers: where blocks pay most), so that a sweep over many small
    architectures measures once."""
    count = products(layers, n_samples)
    if count < SMALL:
        return f"{dtype} {optimizer}, under {SMALL} products"
    return f"{dtype} {optimizer}, {1 << (count.bit_length() - 1)}+ products"


SMALL = 1024


def _detail(entry: dict) -> str:
    """describe() of a kept measurement; "" where the file holds something else there."""
    ns = entry.get("ns_per_run_step")
    if not isinstance(ns, dict) or not all(isinstance(v, int | float) for v in ns.values()):
        return ""
    when = str(entry.get("measured", ""))[:10]
    return describe(ns, str(entry.get("by", "")), when, unsettled_gains(entry))


def describe(ns: dict, by: str, when: str = "", unsettled: list[float] = ()) -> str:
    """'1 at a time 148 ns, 4 at a time 201 ns per run-step (2026-12-03, by a sweep)',
    and where the gains measured so far are ``unsettled`` what is left to measure."""
    sizes = ", ".join(f"{k} at a time {float(v):.0f} ns" for k, v in ns.items())
    when = when or time.strftime("%Y-%m-%d")
    text = f"{sizes} per run-step ({when}, by {by})"
    if unsettled:
        gains = ", ".join(f"{g - 1:.0%}" for g in unsettled)
        text += (
            f"; blocks faster by {gains}, under the {MARGIN:.0%} one measurement settles: "
            f"measured again until {TRIES} have each found over {LOW:.0%}"
        )
    return text


# --- the calibration file ---


def _read() -> dict:
    """The whole calibration file: {host key: entry}; {} if there is none. A damaged file
    (a full disk, a hand edit) is said once and removed."""
    path = kernel_cache.calibration_file()
    try:
        table = json.loads(path.read_text())
    except OSError:  # none (or no kernel folder at all)
        return {}
    except ValueError:
        table = None
    if not isinstance(table, dict):
        global _noted
        if not _noted:
            _noted = True
            print(f"note: {path} is damaged (not fastbp's table of measured block sizes); it "
                  "was removed, and is measured again", file=sys.stderr)  # fmt: skip
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        return {}
    return table


_noted = False


def host_table() -> dict:
    """This host's measurements: {"float64 sgd": {"lanes": 1, "ns_per_run_step": {...},
    "measured": date, "by": who}, ...}; entries of another shape are left out."""
    entry = _read().get(kernel_cache.build_key(), {})
    forms = entry.get("forms", {}) if isinstance(entry, dict) else {}
    if not isinstance(forms, dict):
        return {}
    return {
        key: value
        for key, value in forms.items()
        if isinstance(value, dict) and value.get("lanes") in LANE_CHOICES
    }


def record(key: str, timings: dict[int, float], lanes: int, by: str,
           unsettled: list[float] = ()) -> None:  # fmt: skip
    """Keep this host's measurement under ``key`` (:func:`key_of`; ``timings``: lanes ->
    ns per run-step; ``lanes``: the choice; ``unsettled``: the gains measured so far where
    the choice is not settled, :func:`verdict`). A file that cannot be written is no
    error: the next run measures again."""
    _update("forms", key, {
        "lanes": lanes,
        "ns_per_run_step": {str(k): round(v, 1) for k, v in sorted(timings.items())},
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "by": by,
        **({"unsettled_gains": [round(g, 3) for g in unsettled]} if unsettled else {}),
    })  # fmt: skip


def forgone(key: str) -> float:
    """The core-seconds that blocks could have saved this host's sweeps of ``key``
    (:func:`key_of`) since it last compiled block kernels for it: the ledger by which a
    sweep decides to compile them (:func:`fastbp.planner.blocks_unpaid`)."""
    entry = _read().get(kernel_cache.build_key(), {})
    ledger = entry.get("forgone", {}) if isinstance(entry, dict) else {}
    value = ledger.get(key, 0.0) if isinstance(ledger, dict) else 0.0
    return float(value) if isinstance(value, int | float) and value >= 0 else 0.0


def forgo(key: str, seconds: float) -> None:
    """Set the ledger of :func:`forgone` for ``key`` to ``seconds``."""
    _update("forgone", key, round(seconds, 3))


def _update(part: str, key: str, value) -> None:
    """Write ``value`` under ``key`` in this host's ``part`` ("forms", "forgone") of the
    calibration file, keeping the entries of the last KEEP builds."""
    from fastbp.system import write_text_atomic

    table = _read()
    entry = table.get(kernel_cache.build_key())
    if not isinstance(entry, dict) or not isinstance(entry.get("forms"), dict):
        entry = {"forms": {}}
    if not isinstance(entry.get(part), dict):
        entry[part] = {}
    entry["cpu_target"] = os.environ.get("NUMBA_CPU_NAME") or kernel_cache.build()["cpu_name"]
    entry["vector_bits"] = kernel_cache.vector_bits()
    entry[part][key] = value
    this = kernel_cache.build_key()
    others = sorted((k for k in table if k != this), key=lambda k: _newest(table[k]), reverse=True)
    table = {this: entry, **{k: table[k] for k in others[: KEEP - 1]}}  # bounded
    path = kernel_cache.calibration_file()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(table, indent=2) + "\n")


KEEP = 8  # the builds whose measurements are kept


def _newest(entry) -> str:
    forms = entry.get("forms", {}) if isinstance(entry, dict) else {}
    dates = [f.get("measured", "") for f in forms.values() if isinstance(f, dict)]
    return max(dates, default="")


# --- measuring ---


def time_forms(trainers: dict[int, Callable[[], float]], rounds: int = ROUNDS) -> dict[int, float]:
    """Median seconds per run-step of each trainer (lanes -> a function that trains and
    returns the run-steps it trained), timed in ``rounds`` interleaved rounds whose order
    turns each round, so that the machine's slow and fast spells touch every form alike."""
    samples: dict[int, list[float]] = {lanes: [] for lanes in trainers}
    order = list(trainers)
    for k in range(rounds):
        turn = order[k % len(order) :] + order[: k % len(order)]
        for lanes in turn:
            start = time.perf_counter()
            run_steps = trainers[lanes]()
            samples[lanes].append((time.perf_counter() - start) / run_steps)
    return {lanes: statistics.median(times) for lanes, times in samples.items()}


def fastest(timings: dict[int, float], default: int, margin: float = 0.0) -> int:
    """The size with the lowest time; the default stays unless another beats it by more
    than ``margin`` (a share)."""
    best = min(timings, key=timings.get)
    if default in timings and timings[default] <= (1 + margin) * timings[best]:
        return default
    return best
