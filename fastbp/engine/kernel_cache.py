"""Numba's settings for fastbp's kernels, and the on-disk home of generated kernels.

**Settings**, applied here, once, when the engine is first imported. Numba ships with
LLVM's SLP vectoriser off, and LLVM prefers 256-bit vectors on CPUs with AVX-512.
fastbp's generated kernels (:mod:`fastbp.engine.codegen`) run 2-6x faster with the SLP
vectoriser on and 512-bit vectors allowed. Numba reads both settings when it builds its
code generator, at the first compilation in a process, so they are set at import,
through Numba's own environment variables, and only where the user has not set them.
They change how code is vectorised, never what it computes (fastmath stays off), so
results are the same bits either way. Numba's cache key holds the CPU features but not
the SLP setting: generated kernels are kept in a directory named by :data:`TAG`, so a
kernel compiled under other settings is never picked up under these. If Numba compiled
something before fastbp was imported, the settings may not take effect in that process:
it is slower, not wrong.

**Files.** A generated kernel is written to a file named after the hash of its source
and imported like any module, so that Numba's on-disk cache works for it too. Files live
per settings (:data:`TAG`) and per :data:`VERSION`; the first version written removes
the folders of older ones. Where nothing can be written, a kernel is compiled from
memory in every process.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
import types
from pathlib import Path

from fastbp.system import write_text_atomic


def _host_features() -> str | None:
    try:
        import llvmlite.binding as llvm

        return llvm.get_host_cpu_features().flatten()
    except Exception:  # noqa: BLE001 - no llvmlite here: Numba will fail louder later
        return None


def _apply() -> str:
    os.environ.setdefault("NUMBA_SLP_VECTORIZE", "1")
    if "NUMBA_CPU_FEATURES" not in os.environ:
        features = _host_features()
        if features and "+avx512f" in features:
            os.environ["NUMBA_CPU_FEATURES"] = features + ",-prefer-256-bit"
    slp = os.environ["NUMBA_SLP_VECTORIZE"]
    wide = "-prefer-256-bit" in os.environ.get("NUMBA_CPU_FEATURES", "")
    return f"slp{slp}-{'zmm' if wide else 'default'}"


TAG = _apply()


def vector_bits() -> int:
    """The width of the vector registers the kernels are compiled for: 512 on AVX-512
    (unless told to prefer 256-bit vectors), 256 on AVX/AVX2, else 128 (SSE, NEON).
    Read from the target Numba compiles for (NUMBA_CPU_FEATURES when set)."""
    features = os.environ.get("NUMBA_CPU_FEATURES") or _host_features() or ""
    if "+avx512f" in features and "+prefer-256-bit" not in features.split(","):
        return 512
    if "+avx2" in features or "+avx," in features + ",":
        return 256
    return 128


def host_key() -> str:
    """What Numba's cache index tells machines apart by (its version, the CPU and its
    features, as compiled for), as a short hash."""
    import hashlib

    import llvmlite.binding as llvm
    import numba

    features = os.environ.get("NUMBA_CPU_FEATURES") or _host_features()
    host = (numba.__version__, llvm.get_host_cpu_name(), features)
    return hashlib.sha256(repr(host).encode()).hexdigest()[:12]


_noted = False


def cached_njit(fn):
    """``numba.njit(cache=True, nogil=True, error_model="numpy")`` (kernels release the
    GIL, so that threads train runs in parallel; a division by zero gives inf or NaN, as
    IEEE 754 and NumPy have it, where Python's model raises, which also puts a branch
    before every division that stops LLVM from vectorising it), or, where Numba finds no
    place to write its cache (a read-only install with no writable cache directory), an
    in-memory compilation, with a one-line note the first time: slower to start, never a
    crash."""
    from numba import njit

    try:
        return njit(cache=True, nogil=True, error_model="numpy")(fn)
    except RuntimeError as err:  # "cannot cache function ...: no locator available"
        global _noted
        if not _noted:
            _noted = True

            print(
                f"note: Numba cannot cache fastbp's kernels here ({err}); they are "
                "compiled in memory in every process",
                file=sys.stderr,
            )
        return njit(nogil=True, error_model="numpy")(fn)


# Bump when the generated code, or how it is compiled (the settings here), changes:
# older kernels are then deleted.
VERSION = 15


def kernel_dir() -> Path:
    """Where generated kernels live: $FASTBP_KERNEL_DIR, else the user's cache directory."""
    if os.environ.get("FASTBP_KERNEL_DIR"):
        return Path(os.environ["FASTBP_KERNEL_DIR"])
    from platformdirs import user_cache_dir  # ~/.cache (or $XDG_CACHE_HOME) on Linux

    return Path(user_cache_dir("fastbp", appauthor=False)) / "kernels"


def calibration_file() -> Path:
    """Where :mod:`fastbp.calibrate` keeps the lanes it measured, per host."""
    return kernel_dir() / "calibration.json"


def name_of(source: str) -> str:
    """The module name of a generated kernel: the hash of its source and VERSION."""
    text = f"{VERSION}\n{source}"
    return f"fastbp_kernel_{hashlib.sha256(text.encode()).hexdigest()[:16]}"


_lock = threading.Lock()
_loaded: dict[str, types.ModuleType] = {}


def load(source: str) -> types.ModuleType:
    """The module of this source, written to the kernel directory and imported (once per
    process; thread-safe). Its functions compile, or load from Numba's cache, when first
    called."""
    name = name_of(source)
    with _lock:
        if name not in _loaded:
            _loaded[name] = _import(name, source)
        return _loaded[name]


def _import(name: str, source: str) -> types.ModuleType:
    path = _written(name, source)
    if path is None:  # nowhere to write: from memory (cached_njit notes nothing is cached)
        module = types.ModuleType(name)
        sys.modules[name] = module
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our own
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickling and Numba's cache need to find it
    spec.loader.exec_module(module)
    return module


def forget() -> None:
    """Drop the kernels loaded in this process (tests that change where they go)."""
    with _lock:
        _loaded.clear()


def _directories() -> list[Path]:
    """Where kernels may go: per Numba settings (TAG), per VERSION."""
    fallback = Path(tempfile.gettempdir()) / "fastbp-kernels"
    return [base / TAG / f"v{VERSION}" for base in (kernel_dir(), fallback)]


def _prune(directory: Path) -> None:
    """Delete the kernels of older versions next to ``directory`` (with their compiled
    code, several MB each): no fastbp of this version will load them again."""
    for old in directory.parent.iterdir():
        version = old.name[1:] if old.name.startswith("v") else ""
        older = version.isdigit() and int(version) < VERSION
        unversioned = old.name.startswith("fastbp_kernel_") or old.name == "__pycache__"
        if old.is_dir() and (older or unversioned):
            shutil.rmtree(old, ignore_errors=True)
        elif unversioned:  # from before kernels were kept per version
            old.unlink(missing_ok=True)


def _written(name: str, source: str) -> Path | None:
    """The kernel's source file, written to the first writable kernel directory."""
    for directory in _directories():
        path = directory / f"{name}.py"
        try:
            if not path.exists() or path.read_text() != source:
                if not directory.exists():
                    directory.mkdir(parents=True, exist_ok=True)
                    with contextlib.suppress(OSError):
                        _prune(directory)
                write_text_atomic(path, source)
            return path
        except OSError:
            continue  # not writable: try the next place
    return None


def _marker(name: str) -> Path | None:
    """Where a process notes that kernel ``name`` is in Numba's disk cache for this
    machine and Numba version (a file next to its source)."""
    for directory in _directories():
        if (directory / f"{name}.py").exists():
            return directory / f"{name}.{host_key()}.ready"
    return None


_marked: set[str] = set()


def mark_cached(name: str) -> None:
    """Note that kernel ``name`` has been compiled or loaded in this process, so that
    Numba's disk cache holds it (called after its first call)."""
    if name in _marked:
        return
    _marked.add(name)
    marker = _marker(name)
    if marker is not None and not marker.exists():
        with contextlib.suppress(OSError):
            marker.touch()


def is_cached(name: str) -> bool:
    """Whether some process noted kernel ``name`` as cached (:func:`mark_cached`): then
    many processes may load it at once, with no risk of compiling it at once."""
    marker = _marker(name)
    return marker is not None and marker.exists()
