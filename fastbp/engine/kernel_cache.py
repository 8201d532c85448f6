"""Numba's settings for fastbp's kernels, and the on-disk home of generated kernels.

**Settings**, applied here, once, when the engine is first imported. Numba ships with
LLVM's SLP vectoriser off, and LLVM prefers 256-bit vectors on CPUs with AVX-512.
fastbp's generated kernels (:mod:`fastbp.engine.codegen`) run 2-6x faster with the SLP
vectoriser on and 512-bit vectors allowed. On CPUs with AVX-512, LLVM is also told to
prefer stores one at a time to its scatter instructions, which it took for the
transposes of the single-run form and which are slow on AMD's CPUs at least (the
8-16-8 to 8-128-8 trained 1.1-1.7x faster in that form without them, on the
development machine's AMD EPYC; the other forms and the loop kernel as fast). Numba
reads these settings when it builds its code generator, at the first compilation in a
process, so they are set at import, through Numba's own environment variables, and only
where the user has not set them.
They change how code is vectorised, never what it computes (fastmath stays off), so
results are the same bits either way. Where Numba was imported first, its settings are
read again; where it has made a jitted function before fastbp was imported, they may not
take effect in that process: it is slower, not wrong.

**Files.** A generated kernel is written to a file named after the hash of its source
and of everything else its machine code is made of (:func:`build`: fastbp's version, the
engine modules it imports, Numba's and llvmlite's versions, the target CPU, Numba's
settings), and imported like any module, so that Numba's on-disk cache works for it too:
a cached kernel is reused only where all of these are the same. Files live in a folder per
build; the folders of builds not used lately are removed (:data:`KEEP_BUILDS`). Where
nothing can be written, a kernel is compiled from memory in every process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import types
from pathlib import Path

from fastbp.system import cache_dir, write_text_atomic


@functools.cache
def _host_features() -> str | None:
    try:
        import llvmlite.binding as llvm

        return llvm.get_host_cpu_features().flatten()
    except Exception:  # noqa: BLE001 - no llvmlite here: Numba will fail louder later
        return None


def _apply() -> None:
    os.environ.setdefault("NUMBA_SLP_VECTORIZE", "1")
    if "NUMBA_CPU_FEATURES" not in os.environ:
        features = _host_features()
        if features and "+avx512f" in features:
            os.environ["NUMBA_CPU_FEATURES"] = features + ",-prefer-256-bit,+prefer-no-scatter"
    config = sys.modules.get("numba.core.config")
    if config is not None:  # Numba imported first: it read its settings then
        config.reload_config()


_apply()


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
        return _loads_lightly(njit(cache=True, nogil=True, error_model="numpy")(fn))
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


def _loads_lightly(dispatcher):
    """The dispatcher, loading its machine code from Numba's disk cache without first
    loading all of Numba's compiler (where this Numba allows; else as Numba does).

    Before it loads cached code, Numba readies its target for compiling anything
    (``target_context.refresh()``): it imports every typing and lowering module it has,
    NumPy's linear algebra through SciPy among them. In a fresh process that was most of
    the time to a first trained run (0.42 of 0.65 s on the 8-3-8, with SciPy installed),
    and running cached code needs none of it but Numba's runtime (NRT), which the
    kernels' buffers use. So a kernel's cache is read with the runtime alone; a miss, or
    anything unexpected, leaves Numba's own path to compile it, which readies everything.
    The machine code loaded is the same either way."""
    cache = getattr(dispatcher, "_cache", None)
    full = getattr(cache, "load_overload", None)
    if full is None or not all(
        hasattr(cache, name) for name in ("_load_overload", "_guard_against_spurious_io_errors")
    ):
        return dispatcher

    def load_overload(sig, target_context):
        loaded = _load(sig, target_context)
        if loaded is None:  # Numba compiles it now
            global _compiled
            _compiled += 1
        return loaded

    def _load(sig, target_context):
        try:
            from numba.core.runtime import rtsys

            rtsys.initialize(target_context)
            with cache._guard_against_spurious_io_errors():
                return cache._load_overload(sig, target_context)
        except Exception:  # noqa: BLE001 - another Numba, or a damaged cache: see below
            pass
        try:
            return full(sig, target_context)  # Numba's own path, which readies everything
        except Exception as err:  # noqa: BLE001 - its cache files are damaged
            _remove_damaged(cache, err)
            return None  # not cached: Numba compiles it, and caches it anew

    cache.load_overload = load_overload
    # Numba's first call of any dispatcher looks up the entry points of third-party Numba
    # extensions (10 ms, reading every installed package's metadata); the kernels use
    # none. They stay for the user's own functions, whose first call still looks them up.
    dispatcher._compilation_chain_init_hook = lambda: None
    return dispatcher


_compiled = 0


def compiled() -> int:
    """How many kernels this process compiled (found in no cache) so far."""
    return _compiled


def _remove_damaged(cache, err: Exception) -> None:
    """Delete the Numba cache files (index and data) of a kernel that could not be read
    (a truncated or garbled file: a full disk, a process killed while writing), with a
    one-line note naming them: without this, every later sweep would stop on them."""
    index = Path(getattr(getattr(cache, "_cache_file", None), "_index_path", "") or "")
    if not index.name.endswith(".nbi"):
        raise err  # not a file of Numba's cache that we know: a fault to report as it is
    stem = index.name[: -len(".nbi")]
    removed = [path for path in index.parent.glob(f"{stem}*") if path.suffix in (".nbi", ".nbc")]
    for path in removed:
        with contextlib.suppress(OSError):
            path.unlink()
    why = " ".join(f"{type(err).__name__}: {err}".split())[:160]
    print(
        f"note: Numba's cache of a fastbp kernel was damaged ({index}: {why}); its "
        f"{len(removed)} file(s) were removed and the kernel compiles again",
        file=sys.stderr,
    )


def kernel_dir() -> Path:
    """Where generated kernels live: $FASTBP_KERNEL_DIR, else the user's cache directory."""
    return cache_dir()


def calibration_file() -> Path:
    """Where :mod:`fastbp.calibrate` keeps the lanes it measured, per host."""
    return kernel_dir() / "calibration.json"


# Numba's settings that change the machine code it makes of the same source.
CODE_SETTINGS = (
    "NUMBA_OPT",
    "NUMBA_SLP_VECTORIZE",
    "NUMBA_LOOP_VECTORIZE",
    "NUMBA_ENABLE_AVX",
    "NUMBA_BOUNDSCHECK",
    "NUMBA_FASTMATH",
)


def build() -> dict:
    """Everything besides a kernel's own source that changes its machine code: fastbp's
    version, the sources of the modules it imports (hashed, as this process imported
    them), Numba's and llvmlite's versions, the CPU name and features Numba compiles for,
    and Numba's code settings. A kernel is named by the hash of its source and all of
    these (:func:`name_of`), so a cached one is reused only where every one is the same."""
    versions, cpu_name, cpu_features, settings, imports = _inputs()
    return {
        "fastbp": versions[0],
        "numba": versions[1],
        "llvmlite": versions[2],
        "cpu_name": cpu_name or _host_cpu_name(),
        "cpu_features": cpu_features or _host_features() or "",
        "settings": dict(zip(CODE_SETTINGS, settings, strict=True)),
        "imports": dict(zip(KERNEL_IMPORTS, imports, strict=True)),
    }


def _inputs() -> tuple:
    """What :func:`build` is made of, cheaply (it is asked for at every kernel call)."""
    import llvmlite
    import numba

    from fastbp import __version__

    return (
        (__version__, numba.__version__, llvmlite.__version__),
        os.environ.get("NUMBA_CPU_NAME"),
        os.environ.get("NUMBA_CPU_FEATURES"),
        tuple(os.environ.get(name) for name in CODE_SETTINGS),
        tuple(_digest(module) for module in KERNEL_IMPORTS),
    )


# The modules of fastbp that every kernel's source imports: their code is compiled into
# the kernel, so a change to them is a change of the kernel (name_of refuses a kernel
# that imports another).
KERNEL_IMPORTS = ("fastbp.engine.intrinsics", "fastbp.engine.kernel_cache")


@functools.cache
def _digest(module: str) -> str:
    """The hash of a module's source file, read once a process: the code it runs."""
    path = Path(importlib.util.find_spec(module).origin)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@functools.cache
def _host_cpu_name() -> str:
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_name()


def build_key() -> str:
    """:func:`build` as a short hash: the name of the folder its kernels live in."""
    return _build_key(_inputs())


@functools.lru_cache(maxsize=64)
def _build_key(inputs: tuple) -> str:
    return hashlib.sha256(repr(sorted(build().items())).encode()).hexdigest()[:16]


def name_of(source: str) -> str:
    """The module name of a generated kernel: the hash of its source and of
    :func:`build_key`."""
    key = build_key()
    name = _name(source, key)
    _key_of[name] = key
    return name


_key_of: dict[str, str] = {}  # the build key each kernel name was made with


@functools.lru_cache(maxsize=1024)
def _name(source: str, key: str) -> str:
    for module in re.findall(r"^(?:from|import) (fastbp[\w.]*)", source, re.MULTILINE):
        if module not in KERNEL_IMPORTS:  # its code would be in the kernel, not in the key
            raise RuntimeError(f"a kernel imports {module}, which is not in KERNEL_IMPORTS")
    text = f"{key}\n{source}"
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
        _used.clear()


# Folders of kernels kept beside the one in use: those of the most recently used builds
# (other fastbp versions or environments sharing this cache), so that the cache stays
# bounded and two environments used in turn do not compile again each time.
KEEP_BUILDS = 4


def _directories(name: str) -> list[Path]:
    """Where kernel ``name`` may go: a folder per build key, in the kernel directory or,
    where that is not writable, the temporary directory."""
    folder = f"build-{_key_of[name]}"
    fallback = Path(tempfile.gettempdir()) / "fastbp-kernels"
    return [base / folder for base in (kernel_dir(), fallback)]


def _prune(directory: Path) -> None:
    """Delete the folders of other builds beside ``directory`` (with their compiled code,
    several MB each) but the KEEP_BUILDS most recently used, and folders of fastbp 0.3's
    older layout (``slp1-zmm/v15``): nothing made now can use them."""
    others = []
    for old in directory.parent.iterdir():
        if old == directory or not old.is_dir():
            continue
        if old.name.startswith("build-"):
            others.append(((old / "used").stat().st_mtime if (old / "used").exists() else 0, old))
        elif old.name.startswith("slp"):
            shutil.rmtree(old, ignore_errors=True)
    for _, old in sorted(others, reverse=True)[KEEP_BUILDS:]:
        shutil.rmtree(old, ignore_errors=True)


_used: set[Path] = set()


def _written(name: str, source: str) -> Path | None:
    """The kernel's source file, written to the first writable kernel directory (where
    that is the temporary directory's, said once)."""
    global _fallback_noted
    refused = None
    for directory in _directories(name):
        path = directory / f"{name}.py"
        try:
            if not path.exists() or path.read_text() != source:
                if not directory.exists():
                    directory.mkdir(parents=True, exist_ok=True)
                    text = json.dumps(build(), indent=1, sort_keys=True)
                    write_text_atomic(directory / "build.json", text + "\n")  # for a reader
                    with contextlib.suppress(OSError):
                        _prune(directory)
                write_text_atomic(path, source)
            if directory not in _used:  # once a process: what _prune keeps
                _used.add(directory)
                (directory / "used").touch()
        except OSError as err:
            refused = refused or err
            continue  # not writable: try the next place
        if refused is not None and not _fallback_noted:
            _fallback_noted = True
            print(
                f"note: fastbp's kernel folder {kernel_dir()} cannot be written "
                f"({refused.strerror or refused}); kernels go to {directory.parent}",
                file=sys.stderr,
            )
        return path
    return None


_fallback_noted = False


def _home(name: str) -> Path | None:
    """The folder kernel ``name`` is loaded from (:func:`_written` writes it there): the
    kernel directory's, or, where that cannot be written, the temporary directory's."""
    for directory in _directories(name):
        existing = directory
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing.is_dir() and os.access(existing, os.W_OK):
            return directory
    return None


def _marker(name: str) -> Path | None:
    """Where a process notes that kernel ``name`` is in Numba's disk cache: a file next to
    its source (the folder is this build's, so this machine's), named for Numba's cache
    directory where one is set."""
    home = _home(name)
    if home is None or not (home / f"{name}.py").exists():
        return None
    numba_cache = os.environ.get("NUMBA_CACHE_DIR")
    where = f".{hashlib.sha256(numba_cache.encode()).hexdigest()[:8]}" if numba_cache else ""
    return home / f"{name}{where}.ready"


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
