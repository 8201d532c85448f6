"""Datasets as (X, T) float64 arrays of shape (n_samples, n_in) and (n_samples, n_out): the
built-in tasks, the user's data (below), and the validation split.

The user's own data is a .npz or .csv file, or arrays in memory, as a :class:`Data`.

A Data holds the arrays themselves, so a RunConfig that names a file carries its data to
any worker (a Dask worker needs no copy of the file), and its identity is a hash of the
contents: editing the file changes the runs' ids, moving it does not. NumPy only (no
Numba): configs and specs are checked before anything compiles.
"""

from __future__ import annotations

import csv
import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from fastbp.config import RunConfig


def encoder(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-m-n encoder: each one-hot input is its own target, X = T = identity(n)."""
    X = np.eye(n)
    return X, X.copy()


def xor() -> tuple[np.ndarray, np.ndarray]:
    """Exclusive or: the 4 pairs of bits (0 0, 0 1, 1 0, 1 1), target 1 where they differ."""
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return X, np.array([[0.0], [1.0], [1.0], [0.0]])


def parity(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n-bit parity: all 2**n patterns of n bits (row i: i in binary, most significant bit
    first), target 1 where the number of ones is odd."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)) & 1
    return bits.astype(np.float64), (bits.sum(axis=1, keepdims=True) % 2).astype(np.float64)


def _all_samples(config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    if config.dataset == "encoder":
        return encoder(config.layers[0])
    if config.dataset == "xor":
        return xor()
    if config.dataset == "parity":
        return parity(config.layers[0])
    return config.dataset.X, config.dataset.T  # the user's Data


SPLIT_SEED = 0  # the held-out samples are the same for every run, whatever its seed


def _split(config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows), each in the data's order: ``config.n_val`` rows
    drawn with numpy.random.default_rng(SPLIT_SEED)."""
    held = np.sort(np.random.default_rng(SPLIT_SEED).permutation(config.n_total)[: config.n_val])
    return np.setdiff1d(np.arange(config.n_total), held), held


def make_dataset(config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (X, T) pair ``config`` trains on: the task or data ``config.dataset`` names
    (built-in tasks sized by ``config.layers``), less the samples ``val_fraction`` holds
    out."""
    X, T = _all_samples(config)
    if config.n_val:
        rows, _ = _split(config)
        X, T = X[rows], T[rows]
    return X, T


def make_validation(config: RunConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """The held-out (X_val, T_val): the data's own, or the samples ``val_fraction`` holds
    out; None where there are none."""
    if config.has_own_validation:
        return config.dataset.X_val, config.dataset.T_val
    if not config.n_val:
        return None
    X, T = _all_samples(config)
    _, held = _split(config)
    return X[held], T[held]


# The user's own data.
SUFFIXES = (".npz", ".csv")


class DataError(ValueError):
    """The data cannot be used: one line naming the file, the array and the problem."""


class Data:
    """Samples X (n_samples, n_in) and targets T (n_samples, n_out), float64, and
    optionally held-out X_val and T_val; ``name`` says where they came from.

    Equal when their contents are (the ``digest``, a SHA-256 of the arrays).
    """

    def __init__(self, X, T, X_val=None, T_val=None, name="<arrays>"):
        self.name = str(name)
        arrays = {"X": X, "T": T, "X_val": X_val, "T_val": T_val}
        for key in ("X", "T"):
            if arrays[key] is None:
                raise DataError(f"{self.name}: {key} is missing (Data(X, T) takes both)")
        if (X_val is None) != (T_val is None):
            raise DataError(f"{self.name}: X_val and T_val come together, got only one")
        for key, value in arrays.items():
            if value is None:
                continue
            try:
                array = np.array(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(f"{self.name}: {key} must hold numbers") from None
            if array.ndim == 1:
                array = array[:, None]  # one column
            if array.ndim != 2 or array.shape[0] == 0:
                raise DataError(
                    f"{self.name}: {key} must be a table of samples (rows), got shape {array.shape}"
                )
            if not np.isfinite(array).all():
                raise DataError(f"{self.name}: {key} holds NaN or infinite values")
            array.flags.writeable = False
            arrays[key] = array
        self.X, self.T, self.X_val, self.T_val = arrays.values()
        for a, b in (("X", "T"), ("X_val", "T_val")):
            if arrays[a] is not None and len(arrays[a]) != len(arrays[b]):
                raise DataError(
                    f"{self.name}: {a} has {len(arrays[a])} rows and {b} has {len(arrays[b])}"
                )
        if self.X_val is not None:
            for a, b in (("X", "X_val"), ("T", "T_val")):
                if arrays[a].shape[1] != arrays[b].shape[1]:
                    raise DataError(
                        f"{self.name}: {b} has shape {arrays[b].shape}, {a} has {arrays[a].shape}"
                        " (as many columns needed)"
                    )
        sha = hashlib.sha256()
        for key, array in arrays.items():
            if array is not None:
                sha.update(f"{key}{array.shape}".encode())
                sha.update(np.ascontiguousarray(array).tobytes())
        self.digest = sha.hexdigest()

    def __eq__(self, other):
        return isinstance(other, Data) and other.digest == self.digest

    def __hash__(self):
        return hash(self.digest)

    def __repr__(self):
        return f"Data({self.name!r}, sha256 {self.digest[:12]})"

    def __str__(self):
        return self.name

    @property
    def id(self) -> str:
        """What a run's id holds of its data: the hash of the contents."""
        return f"sha256:{self.digest}"

    def check(self, layers) -> None:
        """A DataError unless the arrays fit ``layers`` (inputs and outputs)."""
        for key, width in (("X", layers[0]), ("T", layers[-1])):
            for name in (key, f"{key}_val"):
                array = getattr(self, name)
                if array is not None and array.shape[1] != width:
                    raise DataError(
                        f"{self.name}: {name} has shape {array.shape}, layers "
                        f"{'-'.join(map(str, layers))} need {width} column(s) "
                        f"(shape ({array.shape[0]}, {width}))"
                    )

    def check_targets(self, loss_fn: str) -> None:
        """A DataError unless the targets are what ``loss_fn`` takes: ``bce``, values in
        [0, 1]; ``cross_entropy``, rows of probabilities (each value >= 0, each row summing
        to 1 within 1e-6 relative)."""
        checked = self.__dict__.setdefault("_fits", set())  # once per loss: many runs ask
        if loss_fn in checked:
            return
        for name in ("T", "T_val"):
            T = getattr(self, name)
            if T is None or loss_fn == "mse":
                continue
            if loss_fn == "bce":
                bad = np.flatnonzero(((T < 0) | (T > 1)).any(axis=1))
                if len(bad):
                    value = T[bad[0]][(T[bad[0]] < 0) | (T[bad[0]] > 1)][0]
                    raise DataError(
                        f"{self.name}: {name} holds {value:g} (sample {bad[0]}): loss_fn 'bce' "
                        "needs targets from 0 to 1"
                    )
            elif loss_fn == "cross_entropy":
                sums = T.sum(axis=1)
                bad = np.flatnonzero((T < 0).any(axis=1) | (np.abs(sums - 1) > 1e-6))
                if len(bad):
                    row = ", ".join(f"{v:g}" for v in T[bad[0]][:6])
                    raise DataError(
                        f"{self.name}: {name} row {bad[0]} is [{row}{', ...' * (T.shape[1] > 6)}] "
                        f"(sum {sums[bad[0]]:g}): loss_fn 'cross_entropy' needs rows of "
                        "probabilities, each >= 0 and summing to 1"
                    )
        checked.add(loss_fn)


_loaded: dict[tuple, Data] = {}


def load(path, n_out: int, targets=None) -> Data:
    """The Data of a .npz (arrays X and T, optionally X_val and T_val) or .csv file (a
    header row of column names, then numbers; the targets are the columns named by
    ``targets``, else the last ``n_out``), named by its absolute path. Cached while the
    file is unchanged."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as err:
        raise DataError(f"{path}: {err.strerror.lower() if err.strerror else err}") from None
    path = path.resolve()  # named by where it is, wherever the sweep ran or is read from
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    key = (str(path), stat.st_mtime_ns, stat.st_size, n_out, targets)
    if key not in _loaded:
        if len(_loaded) > 64:
            _loaded.clear()
        reader = _npz if path.suffix.lower() == ".npz" else _csv
        _loaded[key] = reader(path, n_out, targets)
    return _loaded[key]


def _npz(path: Path, n_out, targets) -> Data:
    if targets is not None:
        raise DataError(f"{path}: targets names columns of a .csv file; a .npz has arrays T")
    if not zipfile.is_zipfile(path):  # empty, truncated, a renamed .npy, anything else
        raise DataError(f"{path}: not a .npz file (a zip archive of arrays, as numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        why = " ".join(str(err).split())
        if "pickle" in why.lower():
            why = "it holds arrays of Python objects, and X and T must be numbers"
        raise DataError(f"{path}: not a readable .npz file: {why}") from None
    for key in ("X", "T"):
        if key not in arrays:
            raise DataError(f"{path}: no array {key} (it has {', '.join(arrays) or 'none'})")
    extra = sorted(set(arrays) - {"X", "T", "X_val", "T_val"})
    if extra:
        raise DataError(f"{path}: unknown array {extra[0]} (X, T, X_val and T_val are read)")
    return Data(arrays["X"], arrays["T"], arrays.get("X_val"), arrays.get("T_val"), path)


def _csv(path: Path, n_out, targets) -> Data:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark or not
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable text file ({err})") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one row of numbers")
    header = [cell.strip() for cell in rows[0]]
    for c, name in enumerate(header):
        if name in header[:c]:
            raise DataError(
                f"{path}: column {name!r} appears twice (columns {header.index(name) + 1} and "
                f"{c + 1}): name each column once"
            )
    values = np.empty((len(rows) - 1, len(header)))
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {r} has {len(row)} values, the header {len(header)}")
        for c, cell in enumerate(row):
            try:
                values[r - 2, c] = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}: line {r}, column {header[c]!r}: not a number: {cell!r}"
                ) from None
    if targets is None:
        if n_out >= len(header):
            raise DataError(
                f"{path}: {len(header)} columns, but the last {n_out} are the targets: "
                "no columns left for the inputs"
            )
        chosen = list(range(len(header) - n_out, len(header)))
    else:
        missing = [t for t in targets if t not in header]
        if missing:
            raise DataError(
                f"{path}: no column {missing[0]!r} (targets); columns: {', '.join(header)}"
            )
        chosen = [header.index(t) for t in targets]
    inputs = [c for c in range(len(header)) if c not in chosen]
    return Data(values[:, inputs], values[:, chosen], name=path)


def is_path(value) -> bool:
    """Whether a dataset value names a file (not a built-in task)."""
    if isinstance(value, str):
        return value.lower().endswith(SUFFIXES)
    return isinstance(value, os.PathLike)
