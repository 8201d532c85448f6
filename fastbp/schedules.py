"""Learning-rate schedules, as PyTorch's ``torch.optim.lr_scheduler`` with the scheduler
stepped after every update: the learning rate of each update of a run, in float64.

Each rate is computed from the update's number in closed form (PyTorch's
``_get_closed_form_lr``), not by PyTorch's chained form, which updates the last rate and
rounds at every step: the two differ in their last bits (about 1e-16 relative a step).
The closed form needs nothing but the update's number, and its bits do not depend on
NumPy's vector maths (whose pow differs from the C library's in the last bit, by CPU).
With e the number of updates before this one (0 for the first), base the run's ``lr``:

- ``constant``: base;
- ``step`` (``step_size``, ``gamma``; StepLR): base * gamma ** (e // step_size);
- ``exponential`` (``gamma``; ExponentialLR): base * gamma ** e;
- ``cosine`` (``eta_min``; CosineAnnealingLR with T_max = the run's steps):
  eta_min + (base - eta_min) * (1 + cos(pi e / T_max)) / 2;
- ``warmup`` (``warmup_steps``, ``start_factor``; LinearLR to 1 over warmup_steps, then
  constant): base * (start_factor + (1 - start_factor) * min(e, warmup_steps) / warmup_steps);
- ``warmup_cosine`` (SequentialLR of the two at warmup_steps): warmup for e <
  warmup_steps, then cosine at e - warmup_steps with T_max = steps - warmup_steps.

A float32 run rounds its rate once, from float64, as it rounds a constant one.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

SCHEDULES = ("constant", "step", "exponential", "cosine", "warmup", "warmup_cosine")
# The fields of each schedule, with their defaults (None: the schedule needs a value);
# under another schedule they are None.
SCHEDULE_FIELDS = {
    "step": {"step_size": None, "gamma": 0.1},
    "exponential": {"gamma": None},
    "cosine": {"eta_min": 0.0},
    "warmup": {"warmup_steps": None, "start_factor": 1.0 / 3.0},
    "warmup_cosine": {"warmup_steps": None, "start_factor": 1.0 / 3.0, "eta_min": 0.0},
}
SCHEDULES_OWN = ("step_size", "gamma", "eta_min", "warmup_steps", "start_factor")
# Schedules whose rates depend on the run's length: a shorter run is not the start of a
# longer one.
BY_LENGTH = ("cosine", "warmup_cosine")


def rates(config, n_updates: int) -> np.ndarray:
    """(n_updates,) float64: the learning rate of updates 1, 2, ... n_updates of a run
    (past its ``steps``, the schedule's formula goes on)."""
    f = {name: getattr(config, name) for name in SCHEDULES_OWN}
    return rates_from(config.lr_schedule, config.lr, config.steps, f, n_updates)


def rates_from(schedule: str, base: float, steps: int, f: dict, n_updates: int) -> np.ndarray:
    """:func:`rates` from the schedule's name, the base rate, the run's steps and the
    schedule's fields (``f``). Powers and cosines are Python's (the C library's, as
    PyTorch's closed forms have them), made once per gamma or T_max in a process; NumPy
    does only the arithmetic that rounds the same on every CPU."""
    e = np.arange(n_updates, dtype=np.float64)
    if schedule == "step":
        return base * _powers(f["gamma"], n_updates // f["step_size"] + 1)[
            np.arange(n_updates) // f["step_size"]]  # fmt: skip
    if schedule == "exponential":
        return base * _powers(f["gamma"], n_updates)
    if schedule == "cosine":
        return _cosine(base, f["eta_min"], steps, 0, n_updates)
    if schedule in ("warmup", "warmup_cosine"):
        warmup, start = f["warmup_steps"], f["start_factor"]
        out = base * (start + (1.0 - start) * np.minimum(e, warmup) / warmup)
        if schedule == "warmup_cosine" and n_updates > warmup:
            out[warmup:] = _cosine(base, f["eta_min"], steps - warmup, 0, n_updates - warmup)
        return out
    return np.full(n_updates, float(base))


def _cosine(base, eta_min, t_max, first, n):
    """eta_min + (base - eta_min) * (1 + cos(pi e / t_max)) / 2 for e = first ... n - 1,
    in that order of operations."""
    return eta_min + (base - eta_min) * _one_plus_cosines(t_max, n)[first:] / 2.0


@lru_cache(maxsize=16)
def _powers(gamma: float, n: int) -> np.ndarray:
    """gamma ** k for k = 0 ... n - 1, read-only."""
    out = np.array([gamma**k for k in range(n)], dtype=np.float64)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=16)
def _one_plus_cosines(t_max: int, n: int) -> np.ndarray:
    """1 + cos(pi e / t_max) for e = 0 ... n - 1, read-only."""
    out = np.array([1.0 + math.cos(math.pi * e / t_max) for e in range(n)], dtype=np.float64)
    out.flags.writeable = False
    return out
