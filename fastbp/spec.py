"""Sweep specs: a TOML file turned into the list of RunConfigs it describes.

Every problem with a spec becomes one :class:`SpecError` naming the file, the key and
the problem; values are checked by RunConfig itself. No Numba is imported here.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastbp.config import INTEGER_FIELDS, ConfigError, RunConfig, did_you_mean, swept_order
from fastbp.data import is_path
from fastbp.metrics import Threshold
from fastbp.schedules import BY_LENGTH

SECTIONS = ("sweep", "base", "grid", "random", "halving")
HALVING_KEYS = ("min_steps", "eta", "metric")
HALVING_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy")
SWEEP_KEYS = ("name", "threshold", "backend", "scheduler")
BACKENDS = ("threads", "loky", "dask", "sequential")  # as in fastbp.backends
GENERATORS = ("range", "logspace", "linspace")
DISTRIBUTIONS = ("loguniform", "uniform", "choice")
RANDOM_KEYS = ("n", "seed")  # the sampler's own settings; every other key is a field
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SpecError(Exception):
    """A spec problem, shown to the user as one line: ``FILE: [section].key: message``."""

    def __init__(self, path, where: str, message: str):
        self.path, self.where, self.message = str(path), where, message
        super().__init__(f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}")

    def __reduce__(self):  # from a worker or a forked process to the parent, whole
        return type(self), (self.path, self.where, self.message)


@dataclass(frozen=True)
class Halving:
    """[halving]: train every setting (a run's configuration without its seed and its
    steps) to ``min_steps``, keep the best 1/``eta`` of them, train those ``eta`` times
    longer, and so on up to each run's steps (:mod:`fastbp.halving`). ``metric``: what
    ranks the settings at a rung (None: the report's rule, :mod:`fastbp.ranking`)."""

    min_steps: int
    eta: int = 3
    metric: str | None = None


@dataclass(frozen=True)
class Spec:
    """A parsed sweep: its name, convergence threshold and every run, without duplicates."""

    path: Path
    name: str
    threshold: float | Threshold | None
    runs: tuple[RunConfig, ...]
    swept: tuple[str, ...]  # the fields that vary between runs, lr first
    backend: str = "threads"
    scheduler: str | None = None
    text: str | None = None  # the spec as TOML, where it came as text or a dict, not a file
    halving: Halving | None = None  # [halving]: successive halving of the settings

    @property
    def total_steps(self) -> int:
        return sum(run.steps for run in self.runs)


def examples() -> dict[str, Path]:
    """The example specs that ship with fastbp, by name: ``{"lr_grid": Path(...), ...}``.

    A wheel installs the checkout's ``sweeps/`` as ``fastbp/sweeps/``; an editable install
    reads them from the checkout. (Found as files, not through importlib: setuptools'
    editable finder does not resolve a folder mapped in without an ``__init__.py``.)"""
    package = Path(__file__).parent
    checkout = package.parent
    for folder in (package / "sweeps", checkout / "sweeps"):
        if folder.is_dir() and (folder.parent == package or (checkout / "pyproject.toml").exists()):
            return {path.stem: path for path in sorted(folder.glob("*.toml"))}
    return {}


def find_spec_file(name) -> Path:
    """The spec file ``name`` means: the file itself where it exists, else the example spec
    of that name (``lr_grid`` or ``lr_grid.toml``), for a fastbp installed without the
    checkout's ``sweeps/`` folder."""
    path = Path(name)
    if path.exists() or len(path.parts) != 1:
        return path
    return examples().get(path.name.removesuffix(".toml"), path)


def load_spec(path) -> Spec:
    """Read and parse a TOML spec file, or an example spec by name (:func:`find_spec_file`);
    raises SpecError for anything wrong with it."""
    path = find_spec_file(path)
    try:
        doc = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        message = "no such file"
        if len(path.parts) == 1 and examples():
            message += f" (nor an example spec of that name: {', '.join(sorted(examples()))})"
        raise SpecError(path, "", message) from None
    except IsADirectoryError:
        raise SpecError(path, "", "is a directory, not a spec file") from None
    except OSError as err:
        raise SpecError(path, "", f"cannot be read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(path, "", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(path, "", f"invalid TOML: {err}") from None
    return parse_spec(doc, path)


def parse_spec(doc: dict, path="<spec>") -> Spec:
    """Turn a parsed TOML document into a Spec (see the README for the format)."""

    def fail(where, message):
        raise SpecError(path, where, message)

    # a data file named relatively: beside the spec file; from a dict or string, in the
    # working directory
    base_dir = Path.cwd() if str(path) == "<spec>" else Path(path).parent

    for section in doc:
        if section not in SECTIONS:
            fail(f"[{section}]", f"unknown section{did_you_mean(section, SECTIONS)}")
    sweep = _table(doc, "sweep", fail, required=True)
    _check_keys(sweep, SWEEP_KEYS, "sweep", fail)
    name = sweep.get("name")
    if name is None:
        fail("[sweep].name", "missing: every sweep needs a name (its output directory)")
    if not isinstance(name, str) or not _NAME.match(name):
        fail("[sweep].name", f"must be a name of letters, digits, '.', '_' or '-', got {name!r}")
    threshold = _threshold(sweep.get("threshold"), fail)

    backend = sweep.get("backend", "dask" if "scheduler" in sweep else "threads")
    if backend not in BACKENDS:
        fail(
            "[sweep].backend",
            f"must be one of {', '.join(BACKENDS)}, got {backend!r}"
            f"{did_you_mean(backend, BACKENDS)}",
        )
    scheduler = sweep.get("scheduler")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler):
        fail("[sweep].scheduler", f"must be an address like 'tcp://host:8786', got {scheduler!r}")
    base = _table(doc, "base", fail)
    _check_keys(base, RunConfig.field_names(), "base", fail)
    origin = {key: f"[base].{key}" for key in base}

    random = _table(doc, "random", fail) if "random" in doc else None
    drawn = [key for key in random if key not in RANDOM_KEYS] if random is not None else []
    n_draws = random.get("n") if random is not None else 1
    n_draws = n_draws if isinstance(n_draws, int) and n_draws > 0 else 1  # _draw checks n

    # each [grid] table's combinations, in order: (values, where each value comes from)
    combos, swept, planned = [], [], 0
    for label, table in _grid_tables(doc, fail):
        _check_keys(table, RunConfig.field_names(), label, fail)
        for key in table:
            if key in drawn:
                fail(f"[{label}].{key}", f"{key} is also drawn in [random]: draw it or grid it")
        axes = {key: _expand(key, value, f"[{label}].{key}", fail) for key, value in table.items()}
        planned += math.prod(map(len, axes.values()))
        _check_count(planned * n_draws, f"[{label}]", fail)
        swept += list(axes)
        where = {key: f"[{label}].{key}" for key in axes}
        combos += [(dict(zip(axes, combo, strict=True)), where)
                   for combo in itertools.product(*axes.values())]  # fmt: skip
    combos = combos or [({}, {})]

    # a [random] draw is crossed with the grid's combinations (its runs' seeds, say)
    draws = [({}, {})]
    if random is not None:
        _check_keys(
            {k: random[k] for k in drawn}, RunConfig.field_names() + RANDOM_KEYS, "random", fail
        )
        _check_count(max(planned, 1) * n_draws, "[random].n", fail)
        swept += drawn
        where = {key: f"[random].{key}" for key in drawn}
        draws = [(values, where) for values in _draw(random, drawn, fail)]
    runs = [
        _config({**base, **drew, **combo}, {**origin, **drew_at, **combo_at}, fail, base_dir)
        for drew, drew_at in draws
        for combo, combo_at in combos
    ]

    unique = list({run.run_id: run for run in reversed(runs)}.values())[::-1]  # first wins
    varies = [key for key in swept if len({getattr(run, key) for run in unique}) > 1]
    swept = swept_order(varies, varies)
    halving = _halving(doc, unique, fail) if "halving" in doc else None
    return Spec(
        Path(path),
        name,
        threshold,
        tuple(unique),
        tuple(swept),
        backend,
        scheduler,
        halving=halving,
    )


def _halving(doc, runs, fail) -> Halving:
    """[halving], checked: its keys, and runs it can stop and go on with."""
    table = _table(doc, "halving", fail)
    _check_keys(table, HALVING_KEYS, "halving", fail)
    if "min_steps" not in table:
        fail("[halving].min_steps", "missing: the step count of the first rung")
    min_steps, eta = table["min_steps"], table.get("eta", 3)
    if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 1:
        fail("[halving].min_steps", f"must be a whole number of steps >= 1, got {min_steps!r}")
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        fail("[halving].eta", f"must be a whole number >= 2 (keep 1/eta), got {eta!r}")
    metric = table.get("metric")
    if metric is not None and metric not in HALVING_METRICS:
        fail("[halving].metric", f"must be one of {', '.join(HALVING_METRICS)}, got {metric!r}"
                                 f"{did_you_mean(metric, HALVING_METRICS)}")  # fmt: skip
    if metric in ("val_loss", "val_accuracy"):
        without = next((r for r in runs if not (r.has_own_validation or r.n_val)), None)
        if without is not None:
            fail("[halving].metric", f"{metric!r} needs held-out data, and some runs have "
                                     "none (set val_fraction, or rank by 'loss')")  # fmt: skip
    by_length = sorted({r.lr_schedule for r in runs if r.lr_schedule in BY_LENGTH})
    if by_length:
        fail("[halving]", f"lr_schedule {by_length[0]!r} depends on the run's length, so a "
                          "run stopped early is not the start of the full one: halve other "
                          "schedules only")  # fmt: skip
    return Halving(min_steps, eta, metric)


THRESHOLD_KEYS = ("above_floor", "otherwise")


def _threshold(value, fail):
    """[sweep].threshold: None, a number > 0, or { above_floor = x, otherwise = y } (a
    :class:`fastbp.metrics.Threshold`)."""
    if value is None:
        return None
    if isinstance(value, dict):
        for key in value:
            if key not in THRESHOLD_KEYS:
                fail(f"[sweep].threshold.{key}", f"unknown key '{key}': a threshold relative to "
                     f"the floor takes above_floor and otherwise"
                     f"{did_you_mean(key, THRESHOLD_KEYS)}")  # fmt: skip
        above = value.get("above_floor")
        if (
            above is None
            or isinstance(above, bool)
            or not isinstance(above, int | float)
            or not (math.isfinite(above) and above >= 0)
        ):
            rule = "must be a finite number >= 0 (added to each run's loss floor)"
            fail("[sweep].threshold.above_floor", f"{rule}, got {above!r}")
        otherwise = value.get("otherwise")
        if otherwise is not None and not _positive_number(otherwise):
            rule = "must be a finite number > 0 (for runs with no floor)"
            fail("[sweep].threshold.otherwise", f"{rule}, got {otherwise!r}")
        return Threshold(float(above), None if otherwise is None else float(otherwise))
    if not _positive_number(value):
        fail("[sweep].threshold", f"must be a finite number > 0, or {{ above_floor = 0.005 }} "
                                  f"(the run's loss floor plus that), got {value!r}")  # fmt: skip
    return float(value)


def _positive_number(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _table(doc, section, fail, required=False) -> dict:
    if section not in doc:
        if required:
            fail(f"[{section}]", "missing section")
        return {}
    if not isinstance(doc[section], dict):
        fail(f"[{section}]", f"must be a table, got {doc[section]!r}")
    return doc[section]


def _check_keys(table, allowed, label, fail):
    for key in table:
        if key not in allowed:
            fail(
                f"[{label}].{key}", f"unknown key '{key}' in [{label}]{did_you_mean(key, allowed)}"
            )


def _grid_tables(doc, fail):
    """(label, table) for [grid] or for each [[grid]]; the runs are the union of their products."""
    grid = doc.get("grid")
    if grid is None:
        return []
    if isinstance(grid, dict):
        return [("grid", grid)]
    if isinstance(grid, list) and grid and all(isinstance(t, dict) for t in grid):
        return [(f"grid #{i}", table) for i, table in enumerate(grid, start=1)]
    fail("[grid]", "must be a table [grid] or tables [[grid]]")


# Reading a spec makes a RunConfig per run, about 25 us each: a spec of more runs than this
# would take minutes to read before anything trains.
MAX_RUNS = 1_000_000


def _check_count(n, where, fail) -> None:
    if isinstance(n, int) and n > MAX_RUNS:
        fail(where, f"{n:,} runs; a spec holds at most {MAX_RUNS:,}: split the sweep into "
                    "several specs")  # fmt: skip


def _expand(key, value, where, fail) -> list:
    """The values a grid entry stands for: a list, or a range / logspace / linspace table."""
    if isinstance(value, list):
        if not value:
            fail(where, "empty list: give at least one value")
        if key == "layers" and all(isinstance(v, int) for v in value):
            fail(where, f"in a grid, layers takes a list of layer lists, e.g. [{value}]")
        return value
    if not isinstance(value, dict):
        fail(
            where,
            f"must be a list of values or a table like {{ range = [0, 5] }}, "
            f"got {value!r} (single values go in [base])",
        )
    if len(value) != 1 or next(iter(value)) not in GENERATORS:
        kind = next(iter(value), "")
        hint = did_you_mean(kind, GENERATORS) if len(value) == 1 else ""
        fail(where, f"unknown generator {sorted(value)}{hint}; use one of {', '.join(GENERATORS)}")
    kind, args = next(iter(value.items()))
    if kind == "range":
        if not (
            isinstance(args, list)
            and len(args) in (2, 3)
            and all(isinstance(a, int) and not isinstance(a, bool) for a in args)
        ):
            fail(where, f"range takes [start, stop] or [start, stop, step] integers, got {args!r}")
        if len(args) == 3 and args[2] == 0:
            fail(where, "range step must not be 0")
        _check_count(len(range(*args)), where, fail)
        values = list(range(*args))
        if not values:
            fail(where, f"range {args} yields no values (stop is excluded)")
        return values
    if not (
        isinstance(args, list)
        and len(args) == 3
        and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
        and all(math.isfinite(a) for a in args)
        and isinstance(args[2], int)
        and args[2] >= 1
    ):
        fail(where, f"{kind} takes [low, high, count] with count an integer >= 1, got {args!r}")
    lo, hi, num = args
    _check_count(num, where, fail)
    points = np.logspace(lo, hi, num) if kind == "logspace" else np.linspace(lo, hi, num)
    # 12 significant digits: 1e-5 rather than 9.999999999999999e-06, so a spec that lists
    # the same values gets the same runs (and run_ids).
    values = [float(f"{x:.12g}") for x in points]
    return [int(round(v)) for v in values] if key in INTEGER_FIELDS else values


def _draw(random, keys, fail) -> list[dict]:
    """n reproducible draws of the [random] keys, in the order they are written."""
    n, seed = random.get("n"), random.get("seed", 0)
    if n is None:
        fail("[random].n", "missing: how many configurations to draw")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        fail("[random].n", f"must be an integer >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        fail("[random].seed", f"must be an integer >= 0, got {seed!r}")
    samplers = {key: _sampler(key, random[key], f"[random].{key}", fail) for key in keys}
    rng = np.random.default_rng(seed)
    return [{key: draw(rng) for key, draw in samplers.items()} for _ in range(n)]


def _sampler(key, value, where, fail):
    if isinstance(value, list):
        value = {"choice": value}
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        kind = next(iter(value), "") if isinstance(value, dict) and len(value) == 1 else ""
        fail(
            where,
            f"must be a list or one of {{ loguniform | uniform | choice = [...] }}, got "
            f"{value!r}{did_you_mean(kind, DISTRIBUTIONS) if kind else ''}",
        )
    kind, args = next(iter(value.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            fail(where, f"choice takes a non-empty list, got {args!r}")
        return lambda rng: args[int(rng.integers(len(args)))]
    if not (isinstance(args, list) and len(args) == 2 and all(map(_finite_number, args))):
        fail(where, f"{kind} takes [low, high], got {args!r}")
    lo, hi = args
    if not lo < hi or (kind == "loguniform" and lo <= 0):
        rule = "0 < low < high" if kind == "loguniform" else "low < high"
        fail(where, f"{kind} needs {rule}, got {args!r}")
    if kind == "loguniform":
        draw = lambda rng: float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # noqa: E731
    else:
        draw = lambda rng: float(rng.uniform(lo, hi))  # noqa: E731
    return (lambda rng: int(round(draw(rng)))) if key in INTEGER_FIELDS else draw


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _config(values: dict, where: dict, fail, base_dir: Path) -> RunConfig:
    dataset = values.get("dataset")
    if is_path(dataset) and not Path(dataset).is_absolute():  # relative to the spec file
        values = {**values, "dataset": str(base_dir / dataset)}
    try:
        return RunConfig(**values)
    except ConfigError as err:
        fail(where.get(err.field, f"[base].{err.field}"), str(err))


def to_toml(doc: dict) -> str:
    """A spec's dict as TOML text (what tomllib.loads reads back as ``doc``): tables, and
    arrays of tables ([[grid]]), of strings, numbers, booleans, lists and inline tables."""
    lines = []
    for section, table in doc.items():
        tables = table if isinstance(table, list) else [table]
        for one in tables:
            lines.append(f"[[{section}]]" if isinstance(table, list) else f"[{section}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in one.items()]
            lines.append("")
    return "\n".join(lines)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan")
    return repr(value)
