"""RunConfig: one training run, validated on creation; RunResult: what it gives back.

Field names are the TOML keys of a sweep spec and the columns of the results tables.
This module imports no Numba code (nor NumPy), so bad input is reported at once.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, fields
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from fastbp.schedules import SCHEDULE_FIELDS, SCHEDULES, SCHEDULES_OWN

if TYPE_CHECKING:  # for annotations only: this module runs without NumPy
    import numpy as np

    from fastbp.params import Params

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")  # hidden layers; output is linear
INITS = ("he", "xavier", "normal")
DATASETS = ("encoder", "xor", "parity")
PARITY_MAX_BITS = 16  # 65,536 samples
DTYPES = ("float64", "float32")
LOSSES = ("mse", "bce", "cross_entropy")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
# The fields of each optimizer, with their defaults; under another optimizer they are None.
OPTIMIZER_FIELDS = {
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}
OPTIMIZERS_OWN = ("momentum", "beta1", "beta2", "eps")  # fields of some optimizers only
# Fields that apply under some optimizers or learning-rate schedules only (None elsewhere),
# with the field that owns them.
OWNER = dict.fromkeys(OPTIMIZERS_OWN, "optimizer") | dict.fromkeys(SCHEDULES_OWN, "lr_schedule")
OWN_FIELDS = tuple(OWNER)


class ConfigError(ValueError):
    """A field of a RunConfig has a bad value; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field

    def __reduce__(self):  # from a worker or a forked process to the parent, whole
        return type(self), (self.field, str(self))


@dataclass(frozen=True)
class RunConfig:
    """One training run of a small MLP, full-batch or in mini-batches.

    Every default in one place; every field is validated on creation and a bad value
    raises :class:`ConfigError` (a ``ValueError``) naming the field, the rule and the value.
    """

    layers: tuple[int, ...] = (8, 3, 8)  # widths: input, hidden..., output (>= 3 entries)
    activation: str = "relu"  # of the hidden layers: relu, tanh, sigmoid, identity
    bias: bool = True  # False: every b is zero and stays zero
    lr: float = 1e-3  # learning rate (sgd: p <- p - lr * dL/dp)
    steps: int = 50_000  # number of SGD updates
    seed: int = 0  # seeds numpy.random.default_rng: initial parameters, batch order
    log_every: int = 100  # the loss is logged after every log_every updates (and at the end)
    batch_size: int | None = None  # None: full batch; else 1..n_samples
    init: str = "he"  # he: N(0, 2/fan_in); xavier: U(+-sqrt(6/(fan_in+fan_out))); normal
    init_scale: float = 0.1  # standard deviation of the weights when init = "normal"
    dataset: str = "encoder"  # encoder: X = T = identity(layers[0]); xor; parity (fastbp.data)
    dtype: str = "float64"  # or "float32" (parameters, activations; loss sums stay float64)
    loss_fn: str = "mse"  # mse: mean (Y - T)^2; bce on sigmoid(Y); cross_entropy on softmax(Y)
    optimizer: str = "sgd"  # sgd, momentum, nesterov, adam (as torch.optim.SGD and Adam)
    momentum: float | None = None  # momentum and nesterov: 0.9 unless given; else None
    beta1: float | None = None  # adam: 0.9 unless given; else None
    beta2: float | None = None  # adam: 0.999 unless given; else None
    eps: float | None = None  # adam: 1e-8 unless given; else None
    weight_decay: float = 0.0  # every optimizer: weight_decay * p is added to each gradient
    targets: tuple[str, ...] | None = None  # a .csv dataset's target columns (else the last)
    val_fraction: float = 0.0  # samples held out for validation, where the data has none
    # The learning rate's schedule (fastbp.schedules), stepped after every update as
    # PyTorch's schedulers: constant, step, exponential, cosine, warmup, warmup_cosine.
    lr_schedule: str = "constant"
    step_size: int | None = None  # step: updates between decays (needed)
    gamma: float | None = None  # step: 0.1 unless given; exponential: needed
    eta_min: float | None = None  # cosine, warmup_cosine: 0.0 unless given
    warmup_steps: int | None = None  # warmup, warmup_cosine: updates to reach lr (needed)
    start_factor: float | None = None  # warmup, warmup_cosine: 1/3 unless given

    def __post_init__(self):
        for name, check in _CHECKS.items():
            object.__setattr__(self, name, check(name, _plain(getattr(self, name))))
        self._load_data()
        # An optimizer's own fields get their defaults; the others' fields do not apply
        # (None), so that runs differing only there are one run.
        mine = OPTIMIZER_FIELDS.get(self.optimizer, {})
        for name in OPTIMIZERS_OWN:
            value = getattr(self, name)
            object.__setattr__(
                self, name, (mine[name] if value is None else value) if name in mine else None
            )
        if self.optimizer == "nesterov" and self.momentum == 0:
            raise ConfigError("momentum", "momentum must be > 0 for optimizer 'nesterov', got 0.0")
        self._check_schedule()
        n_in, n_out = self.layers[0], self.layers[-1]
        shape = {
            "encoder": ("as many outputs as inputs", n_in == n_out),
            "xor": ("2 inputs and 1 output", (n_in, n_out) == (2, 1)),
            "parity": (
                f"1 output and at most {PARITY_MAX_BITS} inputs",
                n_out == 1 and n_in <= PARITY_MAX_BITS,
            ),  # fmt: skip
        }
        if self.loss_fn == "cross_entropy" and n_out < 2:
            raise ConfigError(
                "loss_fn",
                f"loss_fn 'cross_entropy' needs at least 2 outputs (a softmax over them), "
                f"got {layers_text(self.layers)}; for one output use 'bce'",
            )
        rule, fits = shape.get(self.dataset, ("", True))  # the user's data: checked on loading
        if not fits:
            raise ConfigError(
                "layers",
                f"layers must have {rule} for dataset '{self.dataset}', "
                f"got {layers_text(self.layers)}",
            )
        self._check_split()
        n = self.n_samples
        if self.batch_size is not None and not 1 <= self.batch_size <= n:
            raise ConfigError(
                "batch_size",
                f"batch_size must be None or between 1 and n_samples = {n}, got {self.batch_size}",
            )
        self._check_memory()

    def _check_memory(self):
        """A run keeps its logged losses and metrics, the parameters at each logged step
        (for the metrics), for mini-batches the order of its samples, and for a schedule
        its learning rates (made through Python floats: about 48 bytes an update): refused
        where that is more than half of this machine's memory, before anything trains."""
        logged = self.steps // self.log_every + 2
        n_params = sum((a + 1) * b for a, b in zip(self.layers, self.layers[1:], strict=False))
        curve = logged * (40 + n_params * (4 if self.dtype == "float32" else 8))
        order = 0 if self.batch_size is None else self.steps * self.batch_size * 8
        rates = 0 if self.lr_schedule == "constant" else (self.steps + 1) * 48
        parts = {"its logged steps": curve, "the order of its samples": order,
                 "its learning rates": rates}  # fmt: skip
        memory = _physical_memory()
        if memory and sum(parts.values()) > memory / 2:
            what = max(parts, key=parts.get)
            fix = "lower steps or raise log_every" if what == "its logged steps" else "lower steps"
            raise ConfigError(
                "steps",
                f"steps = {self.steps:,} with log_every = {self.log_every:,} would hold "
                f"{_size(sum(parts.values()))} for {what}, more than half of this machine's "
                f"memory ({_size(memory)}): {fix}",
            )

    def _load_data(self):
        """A dataset that names a file becomes its Data (the arrays travel with the config),
        checked against layers; targets apply to .csv files only."""
        from fastbp import data  # NumPy only

        if data.is_path(self.dataset):
            try:
                loaded = data.load(self.dataset, self.layers[-1], self.targets)
            except data.DataError as err:
                raise ConfigError("dataset", f"dataset {err}") from None
            object.__setattr__(self, "dataset", loaded)
        elif self.targets is not None and not _read_from_csv(self.dataset):
            raise ConfigError("targets", "targets names the target columns of a .csv dataset")
        if isinstance(self.dataset, data.Data):
            try:
                self.dataset.check(self.layers)
                self.dataset.check_targets(self.loss_fn)
            except data.DataError as err:
                raise ConfigError("dataset", f"dataset {err}") from None

    def _check_split(self):
        if not self.val_fraction:
            return
        if self.has_own_validation:
            raise ConfigError(
                "val_fraction",
                f"val_fraction must be 0 for dataset {self.dataset}: it has X_val and T_val",
            )
        n = self.n_total
        if not 1 <= self.n_val < n:
            raise ConfigError(
                "val_fraction",
                f"val_fraction {self.val_fraction} of {n} samples holds out {self.n_val}: "
                "at least one must be held out and one left to train on",
            )

    @property
    def has_own_validation(self) -> bool:
        return getattr(self.dataset, "X_val", None) is not None

    @property
    def n_total(self) -> int:
        """Samples in the data, validation split included (not the data's own X_val):
        encoder layers[0], xor 4, parity 2 ** layers[0], a file its rows."""
        if self.dataset == "xor":
            return 4
        if self.dataset == "parity":
            return 2 ** self.layers[0]
        if self.dataset == "encoder":
            return self.layers[0]
        return len(self.dataset.X)

    @property
    def n_val(self) -> int:
        """Samples held out by val_fraction."""
        return round(self.n_total * self.val_fraction)

    @cached_property  # a sweep asks for it several times per run
    def n_samples(self) -> int:
        """Samples trained on: n_total less those held out by val_fraction."""
        return self.n_total - self.n_val

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(_CHECKS)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """Build from a mapping (e.g. TOML); an unknown key raises ConfigError with a hint."""
        names = cls.field_names()
        for key in values:
            if key not in names:
                raise ConfigError(key, f"unknown field '{key}'{did_you_mean(key, names)}")
        return cls(**values)

    def _check_schedule(self):
        """A schedule's own fields get their defaults, the others' are None; a field the
        schedule needs and does not have is an error, as is a warm-up not shorter than a
        warmup_cosine run."""
        mine = SCHEDULE_FIELDS.get(self.lr_schedule, {})
        for name in SCHEDULES_OWN:
            value = getattr(self, name)
            value = (mine[name] if value is None else value) if name in mine else None
            object.__setattr__(self, name, value)
            if name in mine and value is None:
                raise ConfigError(name, f"lr_schedule {self.lr_schedule!r} needs {name} "
                                  f"({_NEEDS[name]}), got none")  # fmt: skip
        if self.lr_schedule == "warmup_cosine" and self.warmup_steps >= self.steps:
            raise ConfigError(
                "warmup_steps",
                f"warmup_steps must be below steps = {self.steps} for lr_schedule "
                f"'warmup_cosine' (the cosine takes the rest), got {self.warmup_steps}",
            )

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in _CHECKS}

    @cached_property  # a sweep asks for it several times per run
    def run_id(self) -> str:
        """A short stable hash of every field: the same config has the same id anywhere.
        Fields added since fastbp 0.3 count only where they apply and differ from their
        defaults (:data:`SINCE_0_3`), so that runs of 0.3 keep their ids."""
        values = {
            k: v for k, v in self.to_dict().items() if k not in SINCE_0_3 or not _as_in_0_3(k, v)
        }
        if not isinstance(self.dataset, str):  # the user's data: its contents, not its path
            values["dataset"] = self.dataset.id
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# Names people reach for, mapped to fastbp's own, so that hints can point across them.
ALIASES = {
    "learning_rate": "lr",
    "learningrate": "lr",
    "eta": "lr",
    "n_steps": "steps",
    "num_steps": "steps",
    "iterations": "steps",
    "epochs": "steps",
    "batch": "batch_size",
    "act": "activation",
    "nonlinearity": "activation",
    "use_bias": "bias",
    "hidden": "layers",
    "sizes": "layers",
    "random_seed": "seed",
    "schedule": "lr_schedule",
    "scheduler": "lr_schedule",
    "lr_scheduler": "lr_schedule",
    "warmup": "warmup_steps",
    "decay_rate": "gamma",
}


def did_you_mean(word, choices) -> str:
    """'; did you mean 'x'?' for the closest choice (or alias of one), '' if none is close."""
    choices = list(choices)
    names = choices + [alias for alias, name in ALIASES.items() if name in choices]
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    return f"; did you mean '{ALIASES.get(close[0], close[0])}'?" if close else ""


def swept_order(varies, order=()) -> list[str]:
    """Swept fields (those in ``varies``) as every view lists them: in ``order`` (the
    spec's) where given, the others in RunConfig's order; lr first and seed last."""
    order = list(dict.fromkeys(f for f in order if f in varies))
    keys = order + [f for f in RunConfig.field_names() if f in varies and f not in order]
    return sorted(keys, key=lambda f: (f != "lr", f == "seed"))


def _read_from_csv(dataset) -> bool:
    """Whether ``dataset`` is the Data a .csv file was read into: its config keeps its
    targets, and is checked again by dataclasses.replace."""
    return str(getattr(dataset, "name", "")).endswith(".csv")


def layers_text(layers) -> str:
    """Layer widths as the tables and messages write them: (8, 3, 8) -> "8-3-8"."""
    return "-".join(str(w) for w in layers)


def parse_layers(text) -> tuple[int, ...]:
    """The widths of a layers text: "8-3-8" -> (8, 3, 8) (ValueError if it is not one)."""
    text = str(text).strip()
    if not re.fullmatch(r"\d+(-\d+)+", text):
        raise ValueError(f"not layer widths like 8-3-8: {text!r}")
    return tuple(int(w) for w in text.split("-"))


def _plain(value):
    """NumPy's scalars (np.int64(3), np.float32(0.1), np.True_) and 0-d arrays as the
    Python values they hold, and a NumPy array as a list of them; anything else as it is."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    return value


@lru_cache(maxsize=1)
def _physical_memory() -> int:
    """This machine's memory in bytes (0 where it cannot be told)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return 0


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return ""


# Largest values of the integer fields: what the tables (int64) and NumPy's generators
# hold (seeds), and far beyond any run this tool is for (a trillion steps of the 8-3-8
# take a day on one core).
SEED_MAX = 2**63 - 1
STEPS_MAX = 10**12
WIDTH_MAX = 65_536  # a layer's width


def _as_int(name, value, minimum, maximum=STEPS_MAX):
    # bool is an int subclass: True is not a step count. Integral floats (3e5) are accepted.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    rule = f"{name} must be an integer from {minimum:,} to {maximum:,}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"{rule}, got {value!r}")
    if not minimum <= value <= maximum:
        raise ConfigError(name, f"{rule}, got {value:,}")
    return value


def _as_positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"{name} must be a finite number > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(name, f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_dataset(name, value):
    from fastbp import data

    if isinstance(value, data.Data) or data.is_path(value):
        return str(value) if isinstance(value, os.PathLike) else value
    if value not in DATASETS:
        allowed = ", ".join(repr(c) for c in DATASETS)
        hint = did_you_mean(value, DATASETS)
        raise ConfigError(
            name,
            f"{name} must be one of {allowed} or a .npz or .csv file, got {value!r}{hint}",
        )
    return value


def _check_targets(name, value):
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, str) for v in value)
    ):
        raise ConfigError(name, f"{name} must be a list of column names, got {value!r}")
    return tuple(value)


def _one_of(choices):
    def check(name, value):
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            hint = did_you_mean(value, choices)
            raise ConfigError(name, f"{name} must be one of {allowed}, got {value!r}{hint}")
        return value

    return check


def _check_layers(name, value):
    if isinstance(value, str) and re.fullmatch(r"\d+(-\d+)+", value.strip()):
        value = parse_layers(value)  # "8-3-8", as the tables write it
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(
            name, f'{name} must be a list of widths like [8, 3, 8] or "8-3-8", got {value!r}'
        )
    value = tuple(map(_plain, value))
    if len(value) < 3:
        raise ConfigError(
            name,
            f"{name} must have at least 3 entries (input, hidden..., output), got {list(value)}",
        )
    for w in value:
        if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= WIDTH_MAX:
            raise ConfigError(
                name, f"{name} widths must be integers from 1 to {WIDTH_MAX:,}, got {list(value)}"
            )
    return value


def _check_bias(name, value):
    if not isinstance(value, bool):
        raise ConfigError(name, f"{name} must be true or false, got {value!r}")
    return value


def _check_batch_size(name, value):
    return None if value is None else _as_int(name, value, 1)


def _in_range(low, high=math.inf, low_open=False):
    """A float at least ``low`` (above it if ``low_open``) and below ``high``, or None
    (see OPTIMIZER_FIELDS)."""

    def check(name, value):
        if value is None:
            return None
        rule = f"{name} must be a number {'>' if low_open else '>='} {low}"
        rule += "" if high == math.inf else f" and < {high}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(name, f"{rule}, got {value!r}")
        above = low < value if low_open else low <= value
        if not (math.isfinite(value) and above and value < high):
            raise ConfigError(name, f"{rule}, got {value!r}")
        return float(value)

    return check


# Fields holding integers: values drawn from continuous distributions are rounded for them.
INTEGER_FIELDS = ("steps", "seed", "log_every", "batch_size", "step_size", "warmup_steps")

_NEEDS = {"step_size": "updates between decays", "gamma": "the factor of each decay",
          "warmup_steps": "updates to reach lr"}  # fmt: skip


def _check_start_factor(name, value):
    if value is None:
        return None
    rule = f"{name} must be a number > 0 and <= 1"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"{rule}, got {value!r}")
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ConfigError(name, f"{rule}, got {value!r}")
    return float(value)


_CHECKS = {
    "layers": _check_layers,
    "activation": _one_of(ACTIVATIONS),
    "bias": _check_bias,
    "lr": _as_positive_float,
    "steps": lambda n, v: _as_int(n, v, 1),
    "seed": lambda n, v: _as_int(n, v, 0, SEED_MAX),
    "log_every": lambda n, v: _as_int(n, v, 1),
    "batch_size": _check_batch_size,
    "init": _one_of(INITS),
    "init_scale": _as_positive_float,
    "dataset": _check_dataset,
    "dtype": _one_of(DTYPES),
    "loss_fn": _one_of(LOSSES),
    "optimizer": _one_of(OPTIMIZERS),
    "momentum": _in_range(0.0),
    "beta1": _in_range(0.0, 1.0),
    "beta2": _in_range(0.0, 1.0),
    "eps": _in_range(0.0, low_open=True),  # 0: a gradient that stays 0 would give 0 / 0
    "weight_decay": lambda n, v: _in_range(0.0)(n, v if v is not None else 0.0),
    "targets": _check_targets,
    "val_fraction": lambda n, v: _in_range(0.0, 1.0)(n, v if v is not None else 0.0),
    "lr_schedule": _one_of(SCHEDULES),
    "step_size": lambda n, v: None if v is None else _as_int(n, v, 1),
    "gamma": _in_range(0.0, low_open=True),
    "eta_min": _in_range(0.0),
    "warmup_steps": lambda n, v: None if v is None else _as_int(n, v, 1),
    "start_factor": _check_start_factor,
}
# Fields added after fastbp 0.3, at the values that give 0.3's behaviour: left out of a
# run's id at these values (and where they do not apply: None), so that results of 0.3
# keep their ids (and load, and resume), and filled in where 0.3's tables lack them.
SINCE_0_3 = {
    "loss_fn": "mse",
    "optimizer": "sgd",
    "momentum": None,
    "beta1": None,
    "beta2": None,
    "eps": None,
    "weight_decay": 0.0,
    "targets": None,
    "val_fraction": 0.0,
    "lr_schedule": "constant",
    "step_size": None,
    "gamma": None,
    "eta_min": None,
    "warmup_steps": None,
    "start_factor": None,
}


def _as_in_0_3(field: str, value) -> bool:
    """Whether a field's value leaves the run as fastbp 0.3 had it, or is an optimizer's
    default (so that it stays out of the run's id)."""
    if field not in SINCE_0_3:
        return False
    return value is None or value == SINCE_0_3[field] or value in _OPTIMIZER_DEFAULTS[field]


_OPTIMIZER_DEFAULTS = {  # field -> the defaults it takes under the optimizers (and
    field: {  # schedules) it applies to
        d
        for fields in (*OPTIMIZER_FIELDS.values(), *SCHEDULE_FIELDS.values())
        for f, d in fields.items()
        if f == field and d is not None
    }
    for field in SINCE_0_3
}


assert tuple(_CHECKS) == tuple(f.name for f in fields(RunConfig)), "a check for every field"


@dataclass(frozen=True)
class RunResult:
    """What one training run gives back.

    logged_steps : int64 ndarray of shape (n_log,)
        Logged update counts: 0, log_every, 2 log_every, ..., always ending with steps
        (also as ``steps``, its name before 0.4).
    losses : float64 ndarray of shape (n_log,)
        losses[i] is the full-dataset loss after logged_steps[i] updates; NaN from the first
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
        samples classified right after logged_steps[i] updates (NaN where losses are).
    val_loss, val_accuracy : float64 ndarrays of shape (n_log,), or None
        With validation data (the data's own, or ``val_fraction``): the loss, and the
        accuracy where the targets are classes, on it after logged_steps[i] updates.
    """

    config: RunConfig
    logged_steps: np.ndarray
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

    @property
    def steps(self) -> np.ndarray:
        """The logged steps (:attr:`logged_steps`): the name before 0.4, kept working."""
        return self.logged_steps
