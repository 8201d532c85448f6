"""What fastbp asks of the machine and the process: files written whole or not at all,
a directory's lock, the CPU's name, the cores, whether forking is safe, and the cycle
collector paused. Standard library only (joblib and filelock on first use), so every
layer may use it.

Files are written into a temporary file beside the target, synced to disk, then renamed
over it: a reader (another process, a crash's survivor) sees the old file or the new one,
never part of one. Every file fastbp writes goes through :func:`write_atomic`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import threading
from collections.abc import Callable
from pathlib import Path


def write_atomic(path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` writes the file at the temporary path ``tmp``; it then becomes
    ``path``. The temporary name is this process's own, so that processes writing the same
    file at once (kernel sources) do not write into each other's."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only where writing failed


def cache_dir() -> Path:
    """fastbp's cache on this machine (kernels, calibration, text layouts):
    $FASTBP_KERNEL_DIR, else the user's cache directory."""
    if os.environ.get("FASTBP_KERNEL_DIR"):
        return Path(os.environ["FASTBP_KERNEL_DIR"])
    from platformdirs import user_cache_dir  # ~/.cache (or $XDG_CACHE_HOME) on Linux

    return Path(user_cache_dir("fastbp", appauthor=False)) / "kernels"


def read_json_object(path) -> dict:
    """A JSON object from a file; {} where there is none (missing, damaged, not an object)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_text_atomic(path, text: str) -> None:
    """:func:`write_atomic` for text (UTF-8)."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def lock_directory(directory: Path):
    """An exclusive lock on directory/.lock (a FileLock, to release), None if another
    process holds it. The system drops it when the holder exits, even when killed."""
    from filelock import FileLock, Timeout

    lock = FileLock(Path(directory) / ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def cpu_name() -> str:
    """The CPU's model name, as meta.json and the benchmarks record it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """The cores this process may use: those it may run on, within a container's CPU
    quota (joblib's count)."""
    from joblib import cpu_count

    return cpu_count()


def die_with_parent() -> None:
    """In a forked helper process (compiling kernels, drawing figures): end when the
    process that forked it ends, even when it is killed (Linux; elsewhere nothing), so
    that a sweep killed while compiling leaves no compiler running on."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def can_fork() -> bool:
    """Whether side work (compiling kernels, drawing figures) may go to forked processes:
    on Linux, where no other thread of this process could hold a lock the child inherits."""
    return sys.platform == "linux" and threading.active_count() == 1


@contextlib.contextmanager
def collector_paused():
    """Python's cycle collector off, and the objects that exist now out of its sight, for
    the duration: training and drawing make many short-lived objects, and each of its
    full passes over a heap of tens of thousands of configs, pandas and Numba stops every
    thread for tens of milliseconds, for nothing it could free. Restored on the way out."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
