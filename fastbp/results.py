"""Results on disk: the parquet schemas, the shard store that keeps finished runs safe, the
final tables, and :func:`load_results`.

A sweep directory holds ``runs.parquet``, ``curves.parquet`` and ``params.parquet`` (the
runs of its spec, one row per run) and ``shards/``, where every finished run is written
as it arrives. A shard is three files written to a temporary name and renamed, its runs
file last: a run is saved exactly when a complete runs file names it, so a crash at any
moment loses at most the runs not yet written.
"""

from __future__ import annotations

import json
import operator
import os
import time
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fastbp.config import SINCE_0_3, RunConfig, layers_text, parse_layers
from fastbp.metrics import METRICS, as_json, dead_units, floors, limits, threshold_of
from fastbp.system import write_atomic, write_text_atomic

if TYPE_CHECKING:
    import pandas as pd

FIELD_TYPES = {
    "layers": pa.string(),  # "8-3-8"
    "activation": pa.string(),
    "bias": pa.bool_(),
    "lr": pa.float64(),
    "steps": pa.int64(),
    "seed": pa.int64(),
    "log_every": pa.int64(),
    "batch_size": pa.int64(),  # null: full batch
    "init": pa.string(),
    "init_scale": pa.float64(),
    "dataset": pa.string(),  # a built-in task, or the user's data file (its path)
    "dtype": pa.string(),
    "loss_fn": pa.string(),
    "optimizer": pa.string(),
    "momentum": pa.float64(),  # null where the optimizer has none
    "beta1": pa.float64(),  # null outside adam, as beta2 and eps
    "beta2": pa.float64(),
    "eps": pa.float64(),
    "weight_decay": pa.float64(),
    "targets": pa.list_(pa.string()),  # a .csv's target columns; null: the last ones
    "val_fraction": pa.float64(),
    "lr_schedule": pa.string(),
    "step_size": pa.int64(),  # null where the schedule has none, as the fields below
    "gamma": pa.float64(),
    "eta_min": pa.float64(),
    "warmup_steps": pa.int64(),
    "start_factor": pa.float64(),
}
assert tuple(FIELD_TYPES) == RunConfig.field_names(), "every RunConfig field needs a column"

RUNS_SCHEMA = pa.schema(
    [("run_id", pa.string())]
    + list(FIELD_TYPES.items())
    + [
        ("final_loss", pa.float64()),  # NaN for a diverged run
        ("min_loss", pa.float64()),
        ("accuracy", pa.float64()),  # at the end, where the targets are classes; or null
        ("val_loss", pa.float64()),  # at the end, with validation data; or null
        ("val_accuracy", pa.float64()),
        ("steps_to_threshold", pa.int64()),  # first logged step with loss <= threshold
        ("loss_floor", pa.float64()),  # no network of this shape does better (MSE); or null
        ("dead_units", pa.int64()),  # hidden ReLU units off for every sample; or null
        ("diverged", pa.bool_()),
        ("diverged_at", pa.int64()),  # updates done when the loss became non-finite
        ("stopped_at", pa.int64()),  # successive halving stopped the run here; null: finished
        ("wall_s", pa.float64()),
        ("fastbp_version", pa.string()),
    ]
)
# Shards store what a run produced; steps_to_threshold depends on the spec's threshold
# and is derived from the curves when the final tables are written.
DERIVED = ("steps_to_threshold", "loss_floor", "dead_units", "stopped_at")  # for final tables
SHARD_RUNS_SCHEMA = pa.schema([f for f in RUNS_SCHEMA if f.name not in DERIVED])
CURVES_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("loss", pa.float64()),
        ("accuracy", pa.float64()),  # null where the targets are not classes
        ("val_loss", pa.float64()),  # null without validation data
        ("val_accuracy", pa.float64()),
    ]
)
PARAMS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("layer", pa.int64()),  # 1 = the weights from the inputs to the first hidden layer
        ("kind", pa.string()),  # "W" or "b"
        ("i", pa.int64()),  # input unit of W; null for b
        ("j", pa.int64()),  # output unit
        ("value", pa.float64()),
    ]
)
TABLES = {"runs": RUNS_SCHEMA, "curves": CURVES_SCHEMA, "params": PARAMS_SCHEMA}
# Shards, on disk and in memory, hold the strings repeated row after row (run_id in curves
# and params, kind) as dictionary arrays: indices into their distinct values. Parquet
# writes them as they are, without hashing millions of strings, and the final tables are
# put in order by the indices; they are strings again only in the final tables.
_CODED = pa.dictionary(pa.int32(), pa.string())
SHARD_SCHEMAS = {
    name: pa.schema(
        [
            f.with_type(_CODED) if f.name in ("run_id", "kind") and name != "runs" else f
            for f in schema
        ]  # fmt: skip
    )
    for name, schema in (
        ("runs", SHARD_RUNS_SCHEMA),
        ("curves", CURVES_SCHEMA),
        ("params", PARAMS_SCHEMA),
    )  # fmt: skip
}


@dataclass(frozen=True)
class Results:
    """The tables of a sweep directory as pandas DataFrames, its threshold, and the fields
    its spec sweeps, in the spec's order (None: found from the runs table)."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    params: pd.DataFrame
    threshold: float | None = None
    swept: tuple[str, ...] | None = None

    def settings(self) -> pd.DataFrame:
        """One row per setting (a configuration without its seed), best first, with the
        statistics that rank it and its median seed's run_id: see fastbp.ranking."""
        return self._ranked.copy()

    # Worked out once for the figures and the report (the tables are not changed once
    # loaded); python -m fastbp.plot works them out before its workers fork.

    @cached_property
    def _ranked(self) -> pd.DataFrame:
        from fastbp.ranking import settings

        return settings(self.runs, self.swept, self.threshold)

    @cached_property
    def varied_fields(self) -> tuple[str, ...]:
        """The RunConfig fields taking more than one value in ``runs``, in the spec's
        order: see fastbp.layout.swept."""
        from fastbp.layout import swept

        return tuple(swept(self.runs, self.swept))

    def run_params(self, run_id: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """The final [(W, b), ...] of one run, W of shape (fan_in, fan_out)."""
        row = self.runs.loc[self.runs["run_id"] == run_id].iloc[0]
        widths = parse_layers(row["layers"])
        mine = self.params[self.params["run_id"] == run_id]
        params = []
        for layer, (fan_in, fan_out) in enumerate(zip(widths, widths[1:], strict=False), 1):
            here = mine[mine["layer"] == layer]
            W = np.zeros((fan_in, fan_out))
            weights = here[here["kind"] == "W"]
            W[weights["i"].to_numpy(int), weights["j"].to_numpy(int)] = weights["value"]
            b = np.zeros(fan_out)
            biases = here[here["kind"] == "b"]
            b[biases["j"].to_numpy(int)] = biases["value"]
            params.append((W, b))
        return params


def load_results(directory) -> Results:
    """Load ``runs``, ``curves`` and ``params`` of a sweep directory.

    ``runs`` has one row per run: run_id, every RunConfig field (layers as "8-3-8"),
    final_loss, min_loss, steps_to_threshold, diverged, diverged_at, wall_s,
    fastbp_version. ``curves`` is long: run_id, step, loss. ``params`` is long: run_id,
    layer, kind ("W"/"b"), i, j, value. ``threshold`` and ``swept`` are the spec's, from
    meta.json. ``settings()`` ranks the settings over their seeds (fastbp.ranking): one
    row per setting, best first, with its median seed's run_id.
    """
    import pandas as pd

    directory = Path(directory)
    for name in TABLES:
        if not (directory / f"{name}.parquet").is_file():
            spec = directory / "spec.toml"
            resume = (
                f"python -m fastbp.sweep {spec if spec.is_file() else 'SPEC'} --out {directory}"
            )
            saved = (
                len(Store(directory).read(warn=lambda _: None)["runs"]) if is_ours(directory) else 0
            )
            if saved:
                raise FileNotFoundError(
                    f"{directory}: its sweep has not finished: {saved} run(s) are saved in "
                    f"{directory / 'shards'}, and its tables are written when it finishes; "
                    f"resume it with: {resume}"
                )
            what = (
                f"{name}.parquet is missing" if directory.is_dir()
                else "it is a file, not a folder" if directory.exists()
                else "there is no such folder"
            )  # fmt: skip
            raise FileNotFoundError(
                f"{directory}: not a sweep's results ({what}); a sweep writes them there "
                f"when it finishes: {resume}"
            )
    try:
        tables = [pd.read_parquet(directory / f"{name}.parquet") for name in TABLES]
    except (OSError, pa.ArrowException) as err:
        raise ValueError(
            f"{directory}: its tables cannot be read ({' '.join(str(err).split())[:200]}); "
            f"run the sweep again, which writes them anew from {directory / 'shards'}"
        ) from None
    _check_agree(directory, *tables)
    tables[0] = runs_frame(tables[0])
    for field, value in SINCE_0_3.items():  # tables written by fastbp 0.3
        if field not in tables[0]:
            value = np.nan if value is None else value
            tables[0].insert(list(RUNS_SCHEMA.names).index(field), field, value)
    if "stopped_at" not in tables[0]:  # before successive halving: every run finished
        at = tables[0].columns.get_loc("diverged_at") + 1 if "diverged_at" in tables[0] else 0
        tables[0].insert(at, "stopped_at", pd.Series(pd.NA, index=tables[0].index, dtype="Int64"))
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        meta = {}
    if not isinstance(meta, dict):  # not fastbp's meta.json: the tables still stand
        meta = {}
    swept = meta.get("swept")
    swept = (
        tuple(swept) if isinstance(swept, list) and all(isinstance(s, str) for s in swept) else None
    )
    threshold = threshold_of(meta.get("threshold"))
    return Results(*tables, threshold=threshold, swept=swept)


def _check_agree(directory: Path, runs, curves, params) -> None:
    """A ValueError unless the three tables describe the same runs (a sweep stopped while
    it wrote them leaves one table of the runs before and one of the runs after)."""
    # unique() first: iterating an arrow-backed column string by string takes seconds for
    # the millions of rows of a large sweep's params
    distinct = [set(table["run_id"].unique()) for table in (runs, curves, params)]
    counts = [len(ids) for ids in distinct]
    if distinct[1] != distinct[0] or not distinct[2] <= distinct[0]:
        raise ValueError(
            f"{directory}: its tables disagree (runs.parquet holds {counts[0]} runs, "
            f"curves.parquet {counts[1]}, params.parquet {counts[2]}): a sweep stopped while "
            f"it wrote them; run the sweep again, which writes them anew from "
            f"{directory / 'shards'}"
        )


# Written after the three tables, removed before: a sweep's rerun takes the tables as
# they are only where it finds them whole (see final_tables_hold).
MANIFEST = "tables.json"


def _manifest(directory: Path) -> dict:
    return {f"{name}.parquet": (directory / f"{name}.parquet").stat().st_size for name in TABLES}


def _upgraded(table: pa.Table) -> pa.Table:
    """A shard's table with the fields added since fastbp 0.3, at their old behaviour,
    where it was written without them (its runs keep their ids: see RunConfig.run_id),
    and the metrics added since, null."""
    for name in METRICS:
        if "run_id" in table.column_names and name not in table.column_names:
            if "loss" in table.column_names or "final_loss" in table.column_names:
                table = table.append_column(name, pa.nulls(len(table), pa.float64()))
    if "run_id" not in table.column_names or "layers" not in table.column_names:
        return table  # not a runs table
    for field, value in SINCE_0_3.items():
        if field not in table.column_names:
            table = table.append_column(field, pa.array([value] * len(table), FIELD_TYPES[field]))
    return table


_layers_texts = lru_cache(maxsize=256)(layers_text)  # a shard writes many, of few kinds


def config_from_row(row) -> RunConfig:
    """The RunConfig of a row of a runs table."""
    import pandas as pd

    values = {name: row[name] for name in RunConfig.field_names() if name in row}
    values["layers"] = parse_layers(values["layers"])
    values["batch_size"] = None if pd.isna(values["batch_size"]) else int(values["batch_size"])
    for name in ("steps", "seed", "log_every"):
        values[name] = int(values[name])
    values["bias"] = bool(values["bias"])
    targets = values.get("targets")
    missing = targets is None or np.ndim(targets) == 0 and pd.isna(targets)
    values["targets"] = None if missing else tuple(str(t) for t in targets)
    for name, value in values.items():
        if name in SINCE_0_3 and SINCE_0_3[name] is None and np.ndim(value) == 0 and pd.isna(value):
            values[name] = None  # a field that does not apply to the run
    return RunConfig(**values)


_FIELDS = operator.attrgetter(*RunConfig.field_names())  # a config's fields, as a tuple


def shard_tables(trained, version: str) -> dict[str, pa.Table]:
    """The three tables of a shard for finished runs as columns (a
    :class:`fastbp.train.Trained`; ``Trained.of(results)`` for a list of RunResults),
    built column by column: a sweep of many short runs writes tens of thousands of them."""
    n = len(trained.configs)
    fields = RunConfig.field_names()
    columns = zip(*map(_FIELDS, trained.configs), strict=True) if n else []
    runs = dict(zip(fields, map(list, columns), strict=False)) or {f: [] for f in fields}
    runs["layers"] = [_layers_texts(layers) for layers in runs["layers"]]
    runs["dataset"] = [d if isinstance(d, str) else str(d) for d in runs["dataset"]]
    runs["run_id"] = [c.run_id for c in trained.configs]
    lengths, losses = trained.lengths, trained.losses
    ends = np.cumsum(lengths)
    last = ends - 1 if n else np.zeros(0, np.int64)
    runs["final_loss"] = losses[last]
    for name in METRICS:
        runs[name] = pa.array(trained.metrics[name][last], mask=~trained.known[name])
    # each run's smallest finite loss, NaN where none is (an empty segment is impossible)
    finite = np.where(np.isfinite(losses), losses, np.inf)
    lowest = np.minimum.reduceat(finite, ends - lengths) if n else finite
    runs["min_loss"] = np.where(np.isinf(lowest), np.nan, lowest)
    runs["diverged"] = trained.diverged_at >= 0
    runs["diverged_at"] = pa.array(trained.diverged_at, mask=trained.diverged_at < 0)
    runs["wall_s"] = trained.wall_s
    runs["fastbp_version"] = [version] * n
    runs = {name: runs[name] for name in SHARD_RUNS_SCHEMA.names}
    run_ids = pa.array(runs["run_id"], pa.string())
    curves = {
        "run_id": _coded(np.repeat(np.arange(n), lengths), run_ids),
        "step": trained.steps,
        "loss": losses,
        **{
            name: pa.array(trained.metrics[name], mask=~np.repeat(trained.known[name], lengths))
            for name in METRICS
        },  # fmt: skip
    }
    return {
        "runs": pa.table(runs, schema=SHARD_RUNS_SCHEMA),
        "curves": pa.table(curves, schema=SHARD_SCHEMAS["curves"]),
        "params": _params_table(trained, run_ids),
    }


def _params_table(trained, run_ids) -> pa.Table:
    """Long table of every run's final parameters, one architecture at a time."""
    parts = []
    by_layers: dict[tuple, list[int]] = {}
    for k, config in enumerate(trained.configs):
        by_layers.setdefault(tuple(config.layers), []).append(k)
    for layers, members in by_layers.items():
        layer, kind, i, j = _param_index(layers)
        n = len(members)
        values = np.concatenate([trained.thetas[k] for k in members]).astype(np.float64)
        parts.append(pa.table({
            "run_id": _coded(np.repeat(np.array(members), len(layer)), run_ids),
            "layer": np.tile(layer, n),
            "kind": _coded(np.tile(kind, n), _KINDS),
            "i": pa.array(np.tile(i, n), mask=np.tile(i < 0, n)),  # null for biases
            "j": np.tile(j, n),
            "value": values,  # in the order of params.flatten
        }, schema=SHARD_SCHEMAS["params"]))  # fmt: skip
    return pa.concat_tables(parts) if parts else SHARD_SCHEMAS["params"].empty_table()


def _coded(index: np.ndarray, values: pa.Array) -> pa.DictionaryArray:
    """values[index] as a dictionary array (no string is copied)."""
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), values)


_KINDS = pa.array(["W", "b"])


@lru_cache(maxsize=64)
def _param_index(layers: tuple):
    """layer, kind (0 for W, 1 for b), i, j of each parameter in the order of
    fastbp.params.flatten (i = -1 for biases)."""
    layer, kind, i, j = [], [], [], []
    for l, (fan_in, fan_out) in enumerate(zip(layers[:-1], layers[1:], strict=False), 1):
        rows, cols = np.indices((fan_in, fan_out))
        layer += [l] * (fan_in * fan_out + fan_out)
        kind += [0] * (fan_in * fan_out) + [1] * fan_out
        i += [*rows.ravel(), *[-1] * fan_out]
        j += [*cols.ravel(), *range(fan_out)]
    return tuple(np.array(x, np.int64) for x in (layer, kind, i, j))


# How fastbp knows an output folder is its own: the marker it writes first, or (folders of
# fastbp 0.3) a meta.json of fastbp's or shards of finished runs.
MARKER = ".fastbp"


def is_ours(directory: Path) -> bool:
    """Whether ``directory`` holds fastbp's results (see MARKER)."""
    directory = Path(directory)
    if (directory / MARKER).is_file() or any((directory / "shards").glob("part-*.parquet")):
        return True
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "fastbp_version" in meta and "swept" in meta


def refusal(directory: Path) -> str | None:
    """Why fastbp may not write its results into ``directory`` (it holds other things and
    is not fastbp's), or None where it may (new, empty, or fastbp's)."""
    directory = Path(directory)
    if not directory.is_dir() or is_ours(directory):
        return None
    others = sorted(entry.name for entry in directory.iterdir() if entry.name != ".lock")
    if not others:  # (a .lock alone: a sweep that is starting there, and says so)
        return None
    more = f" and {len(others) - 3} more" if len(others) > 3 else ""
    return (
        f"holds files that are not fastbp's results ({', '.join(others[:3])}{more}); fastbp "
        "writes only into an empty folder or one of its own results (marked by the .fastbp "
        "file it writes first): choose another --out"
    )


def claim(directory: Path) -> None:
    """Create ``directory`` if need be and mark it as fastbp's (see :func:`refusal`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / MARKER
    if not marker.exists():
        marker.write_text("This folder holds fastbp's results (python -m fastbp.sweep).\n")


class Store:
    """The shards of a sweep directory: every finished run, whatever spec asked for it."""

    def __init__(self, directory: Path):
        self.directory = Path(directory) / "shards"
        self.seen: list[dict[str, pa.Table]] = []  # the shards read and written, in order
        self.damaged = 0  # shards that could not be read

    def write(self, tables: dict[str, pa.Table]) -> None:
        """Persist one shard atomically: params and curves first, the runs file last."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = f"part-{time.time_ns():020d}-{os.getpid()}"
        for name in ("params", "curves", "runs"):  # read whole: no statistics (a third faster)
            _write_atomic(tables[name], self.directory / f"{stem}.{name}.parquet", shard=True)
        self.seen.append(tables)

    def current(self) -> dict[str, pa.Table]:
        """What :meth:`read` would return now, from the shards this Store read and wrote
        (when no other process writes to the directory: the sweep holds its lock)."""
        return _newest_wins(self.seen)

    def read(self, warn=print, set_aside: bool = False) -> dict[str, pa.Table]:
        """Every saved run, one row per run_id: the newest shard that holds a run wins.

        A damaged shard is skipped with a one-line warning: its runs count as not done.
        With ``set_aside`` (a sweep that will train them again, holding the directory's
        lock), its files move to ``shards/damaged/``, so that the warning is said once.
        """
        shards = []
        for runs_file in sorted(self.directory.glob("part-*.runs.parquet")):
            stem = runs_file.name[: -len(".runs.parquet")]
            try:
                shard = {
                    name: _upgraded(pq.read_table(self.directory / f"{stem}.{name}.parquet"))
                    .select(schema.names)
                    .cast(schema)
                    for name, schema in SHARD_SCHEMAS.items()
                }
            except (OSError, pa.ArrowException) as err:
                moved = ""
                if set_aside:
                    aside = self.directory / "damaged"
                    aside.mkdir(exist_ok=True)
                    for path in self.directory.glob(f"{stem}.*"):
                        os.replace(path, aside / path.name)
                    moved = f"; moved to {aside}"
                warn(
                    f"warning: {self.directory / stem}.*: unreadable shard ({err}); "
                    f"its runs will be trained again{moved}"
                )
                self.damaged += 1
                continue
            shards.append(shard)
        self.seen = shards
        return _newest_wins(shards)

    def compact(self, tables: dict[str, pa.Table]) -> None:
        """Replace all shards by one holding ``tables`` (what :meth:`read` returned), once
        there are more than COMPACT_AFTER of them (each sweep adds a few)."""
        old = sorted(self.directory.glob("part-*"))
        if len(old) <= 3 * COMPACT_AFTER:
            return
        self.write(tables)  # written in full before anything is removed
        newest = max(p.name.split(".")[0] for p in self.directory.glob("part-*.runs.parquet"))
        for path in old:
            if path.name.split(".")[0] != newest:
                path.unlink(missing_ok=True)
        self.seen = self.seen[-1:]


COMPACT_AFTER = 32


def _newest_wins(shards) -> dict[str, pa.Table]:
    """The shards' runs, one row per run_id: the last shard that holds a run wins."""
    shards = [{name: s[name].cast(schema) for name, schema in SHARD_SCHEMAS.items()}
              for s in shards]  # fmt: skip
    owner = {}  # run_id -> index of the newest shard holding it
    for k, shard in enumerate(shards):
        owner.update(dict.fromkeys(shard["runs"].column("run_id").to_pylist(), k))
    if len(owner) == sum(len(shard["runs"]) for shard in shards):  # no run saved twice
        return {
            name: pa.concat_tables([s[name] for s in shards]) if shards else schema.empty_table()
            for name, schema in SHARD_SCHEMAS.items()
        }
    parts = {name: [] for name in SHARD_SCHEMAS}
    for k, shard in enumerate(shards):
        mine = pa.array([run_id for run_id, owned in owner.items() if owned == k], pa.string())
        for name in SHARD_SCHEMAS:
            table = shard[name]
            parts[name].append(table.filter(pc.is_in(table.column("run_id"), mine)))
    return {
        name: pa.concat_tables(parts[name]) if parts[name] else schema.empty_table()
        for name, schema in SHARD_SCHEMAS.items()
    }


def _write_atomic(table: pa.Table, path: Path, shard: bool = False) -> None:
    """Write a table in full, then give it its name. A shard is always read whole: no
    statistics, and no dictionary for floats, where it rarely pays (half the time)."""
    if shard:
        coded = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
        write_atomic(path, lambda tmp: pq.write_table(table, tmp, write_statistics=False,
                                                      use_dictionary=coded))  # fmt: skip
    else:
        write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def final_tables_hold(directory: Path, run_ids, threshold) -> bool:
    """Whether the directory's final tables were written for exactly these runs, in this
    order, with this threshold (then, with no run trained since, they need no rewrite)."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "meta.json").read_text())
        if json.loads((directory / MANIFEST).read_text()) != _manifest(directory):
            return False  # written in part, or by a fastbp that wrote no manifest
        held = pq.read_table(directory / "runs.parquet", columns=["run_id"]).column("run_id")
    except (OSError, ValueError, pa.ArrowException):
        return False
    schema = pq.read_schema(directory / "runs.parquet")
    return (
        meta.get("threshold") == as_json(threshold)
        and held.to_pylist() == list(run_ids)
        and schema.names == RUNS_SCHEMA.names  # else written by an earlier fastbp
    )


def read_runs(directory: Path) -> pd.DataFrame:
    """The runs table of a directory, as :func:`write_final_tables` returns it."""
    import pandas as pd

    return runs_frame(pd.read_parquet(Path(directory) / "runs.parquet"))


def runs_frame(runs) -> pd.DataFrame:
    """A runs table (an Arrow table or its DataFrame) as a DataFrame whose every field
    can be grouped and compared: a .csv's ``targets``, a list in parquet, as a tuple."""
    runs = runs if not isinstance(runs, pa.Table) else runs.to_pandas()
    if "targets" in runs and runs["targets"].dtype == object:
        runs["targets"] = [None if t is None else tuple(t) for t in runs["targets"]]
    return runs


def write_final_tables(directory: Path, tables: dict[str, pa.Table], run_ids, threshold,
                       stopped=None):  # fmt: skip
    """Write the spec's runs (in ``run_ids`` order) as the directory's three parquet tables;
    return the runs table as a DataFrame. Curves and parameters stay in Arrow: for a sweep
    of many runs they are millions of rows. ``stopped``: {run_id: (the run_id of its
    shorter run, the step it stopped at, its own steps)} for the runs successive halving
    stopped: each takes its shorter run's rows (:func:`with_stopped`)."""
    import pandas as pd

    directory = Path(directory)
    stopped = stopped or {}
    tables = with_stopped(tables, {k: (v[0], v[2]) for k, v in stopped.items()})
    (directory / MANIFEST).unlink(missing_ok=True)  # the tables change from here on
    wanted = pa.array(list(run_ids), pa.string())
    runs = runs_frame(_in_order(tables["runs"], wanted))
    # Curves and parameters (millions of rows for a sweep of many runs) one at a time,
    # each written as soon as it is made; the runs table last, then the manifest, which
    # vouches for all three (final_tables_hold; load_results compares their runs).
    curves = _in_order(tables["curves"], wanted, "step").cast(CURVES_SCHEMA)
    floor = floors(runs)
    each = limits(runs.assign(loss_floor=floor), threshold)  # each run's threshold
    reached = runs["run_id"].map(steps_to_threshold(curves, dict(zip(runs["run_id"], each,
                                                                     strict=True))))  # fmt: skip
    reached = reached.astype("Int64")
    _write_atomic(curves, directory / "curves.parquet")
    del curves
    params = _in_order(tables["params"], wanted).cast(PARAMS_SCHEMA)
    values = params.column("value").to_numpy()
    params = params.replace_schema_metadata(_pandas_metadata())  # read back as Int64
    _write_atomic(params, directory / "params.parquet")
    del params
    at = runs.columns.get_loc("min_loss") + 1
    runs.insert(at, "steps_to_threshold", reached)
    runs.insert(at + 1, "loss_floor", floor)
    dead = pd.Series(dead_units(runs, values), index=runs.index, dtype="Int64")
    runs.insert(at + 2, "dead_units", dead.mask(dead < 0))  # null: not ReLU, or diverged
    stops = {k: v[1] for k, v in stopped.items()}
    runs.insert(runs.columns.get_loc("diverged_at") + 1, "stopped_at", runs["run_id"].map(stops))
    for name in ("batch_size", "diverged_at", "stopped_at", "step_size", "warmup_steps"):
        runs[name] = runs[name].astype("Int64")
    runs_table = pa.Table.from_pandas(runs, schema=RUNS_SCHEMA, preserve_index=False)
    _write_atomic(runs_table, directory / "runs.parquet")
    write_text_atomic(directory / MANIFEST, json.dumps(_manifest(directory)) + "\n")
    return runs


def with_stopped(tables: dict[str, pa.Table], shorter: dict) -> dict[str, pa.Table]:
    """``tables`` with, for each run stopped early (``shorter``: its run_id -> (the run_id
    of the shorter run it stopped as, its own steps)), that run's rows under the stopped
    run's id and step count. A shorter run may stand for several (runs of one trajectory
    with different steps)."""
    import pandas as pd

    if not shorter:
        return tables
    ids = list(shorter)
    short_ids = pa.array(sorted({short for short, _ in shorter.values()}), pa.string())
    out = {}
    for name, table in tables.items():
        mine = table.filter(pc.is_in(table.column("run_id"), short_ids))
        rows = pd.Series(range(len(mine))).groupby(mine.column("run_id").to_pandas()).indices
        take = [rows.get(shorter[k][0], []) for k in ids]
        new_ids = pa.array([k for k, t in zip(ids, take, strict=True) for _ in t], pa.string())
        part = mine.take(pa.array([i for t in take for i in t], pa.int64()))
        kind = table.schema.field("run_id").type  # shards hold run ids as dictionaries
        part = part.set_column(part.schema.get_field_index("run_id"), table.schema.field("run_id"),
                               new_ids.cast(kind))  # fmt: skip
        if name == "runs":
            steps = pa.array([shorter[k][1] for k, t in zip(ids, take, strict=True) for _ in t],
                             pa.int64())  # fmt: skip
            part = part.set_column(part.schema.get_field_index("steps"), "steps", steps)
        out[name] = pa.concat_tables([table.filter(pc.invert(pc.is_in(
            table.column("run_id"), pa.array(ids)))), part])  # fmt: skip
    return out


@lru_cache(maxsize=1)
def _pandas_metadata() -> dict:
    """The pandas metadata of a params table whose integer columns are pandas' nullable
    Int64 (``i`` is null for biases), so that pandas reads them back as Int64, not float."""
    import pandas as pd

    frame = PARAMS_SCHEMA.empty_table().to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return pa.Table.from_pandas(frame, schema=PARAMS_SCHEMA, preserve_index=False).schema.metadata


def _in_order(table: pa.Table, run_ids: pa.Array, then: str | None = None) -> pa.Table:
    """The rows of the runs in ``run_ids``, in that order (then by ``then``), the order of
    the table kept otherwise."""
    position = pc.index_in(table.column("run_id"), value_set=run_ids)
    if position.null_count:  # runs saved that the spec does not ask for
        table, position = table.filter(pc.is_valid(position)), position.drop_null()
    table = table.append_column("_position", position)
    keys = [("_position", "ascending")] + ([(then, "ascending")] if then else [])
    order = pc.sort_indices(table, sort_keys=keys)  # a stable sort
    return table.take(order).drop_columns(["_position"])


def steps_to_threshold(curves: pa.Table, threshold) -> dict:
    """run_id -> first logged step whose loss is <= threshold (absent when never reached);
    ``threshold``: a number, or {run_id: its threshold} (NaN: none)."""
    if isinstance(threshold, dict):
        ids = pa.array(list(threshold), pa.string())
        values = pa.array(list(threshold.values()), pa.float64(), from_pandas=True)
        at = pc.index_in(curves.column("run_id"), value_set=ids)
        limit = pc.take(values, at)
        mine = curves.filter(pc.fill_null(pc.less_equal(curves.column("loss"), limit), False))
        return _first_steps(mine)
    if threshold is None or len(curves) == 0:
        return {}
    return _first_steps(curves.filter(pc.less_equal(curves.column("loss"), threshold)))


def _first_steps(reached: pa.Table) -> dict:
    """run_id -> its first step among these rows of curves."""
    first = reached.group_by("run_id").aggregate([("step", "min")])
    return dict(zip(first.column("run_id").to_pylist(), first.column("step_min").to_pylist(),
                    strict=True))  # fmt: skip
