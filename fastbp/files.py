"""Files written whole or not at all: into a temporary file beside the target, synced to
disk, then renamed over it. A reader (another process, a crash's survivor) sees the old
file or the new one, never part of one. Every file fastbp writes goes through here."""

from __future__ import annotations

import os
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


def write_text_atomic(path, text: str) -> None:
    """:func:`write_atomic` for text (UTF-8)."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
