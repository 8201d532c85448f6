"""A figure into a PNG file: the pixels ``fig.savefig(path, dpi=dpi)`` writes, with less of
matplotlib's work, for the figures of :mod:`fastbp.plot`.

savefig draws a figure with a constrained layout twice (once without output, to place its
axes); :func:`save_png` draws it once, and writes the file with :mod:`fastbp.png`.
Before the drawing, :func:`measure_less` spares matplotlib measurements that cannot
change the pixels. Under matplotlib 3.11, which draws text glyph by glyph in Python,
:class:`Canvas` draws the same glyphs, each rendered by FreeType once per position within
a pixel rather than at every use. tests/test_plots.py compares every figure with what
savefig draws, pixel for pixel.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os

import matplotlib
import numpy as np
from matplotlib import ft2font
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.ticker import (
    FuncFormatter,
    Locator,
    LogFormatter,
    NullFormatter,
    PercentFormatter,
)

from fastbp.png import write_png
from fastbp.system import cache_dir, read_json_object, write_text_atomic

# How fastbp's figure files are drawn (rc_context). Text hinted by FreeType's autohinter:
# matplotlib's look up to 3.10 (3.11 changed its default), and in 3.11 about an eighth
# less time to draw every figure of lr_grid or random_search.
DRAWING = {"text.hinting": "force_autohint"}


def save_png(fig, path, dpi) -> None:
    """What ``fig.savefig(path, dpi=dpi)`` writes, pixel for pixel, in one drawing of the
    figure where savefig makes two (a constrained layout has it draw the whole figure once
    without output, to place the axes, then again to the file: about an eighth of the
    time), and written by fastbp.png (Pillow takes twice as long)."""
    fig.set_dpi(dpi)
    canvas = Canvas(fig) if GLYPH_BY_GLYPH else FigureCanvasAgg(fig)
    placed = measure_less(fig)
    canvas.draw()  # the layout, then the pixels
    if any(ax.yaxis.offsetText.get_visible() and ax.yaxis.offsetText.get_text() for ax in placed):
        for ax in placed:  # an offset text over the axes ("1e-5") may push its title up
            ax._autotitlepos = True
        canvas.draw()
    software = f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/"
    write_png(path, np.asarray(canvas.buffer_rgba()), dpi, {"Software": software})


def measure_less(fig) -> list:
    """Spare matplotlib work that cannot change the pixels, and give back the axes whose
    titles it no longer places. The constrained layout measures every axes twice before
    the drawing; each time, matplotlib works out each axis's ticks once for the axis and
    again for each of its spines, makes a tick for every value its locator gives, in view
    or not (a log axis gets a decade or two more on each side), and measures the y axis
    again for each title. So here:

    - an axis makes ticks only for the values in its view, where that leaves its labels
      as they are (InView);
    - an axis without a label does not work out where it would go;
    - a spine is left out of the measurements where its side has no ticks, or has tick
      labels (they reach further out than the ticks, and are measured with the axis);
    - a title stays at the top of its axes, where matplotlib puts it where nothing of the
      x axis is on top. It would be raised over a y offset text ("1e-5"), known only once
      drawn: the caller then draws again with the titles placed as before.

    The figures are the same. Their pixels are, for every figure of the test shapes and
    of eight example sweeps (tests/test_plots.py). A spine can reach one rounding beyond
    its axes, though: on one 2-D data set's inside_run, axes 1e-13 of the figure apart
    gave 297 pixels that differ by 2 of 255. Drawing takes about a sixth less time."""
    placed = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            _ticks_once(axis)
            locator, formatter = axis.get_major_locator(), axis.get_major_formatter()
            if isinstance(formatter, InView.FORMATTERS) and not isinstance(locator, InView):
                axis.set_major_locator(InView(locator))  # shared axes share it
            if not axis.label.get_text():  # no label to place beyond the tick labels
                axis.set_label_coords(0.5, 0.5)
        sides = {**ax.xaxis.get_tick_params(), **ax.yaxis.get_tick_params()}
        for side, spine in ax.spines.items():
            default = side in ("left", "bottom")
            if not sides.get(side, default) or sides.get(f"label{side}", default):
                spine.set_in_layout(False)
        on_top = sides.get("top") or sides.get("labeltop") or ax.xaxis.get_label_position() == "top"
        if not on_top and not ax.child_axes and getattr(ax, "_autotitlepos", None) is not False:
            ax._autotitlepos = False  # as set_title(..., y=1.0) does, without resetting the font
            for title in (ax.title, ax._left_title, ax._right_title):
                title.set_y(1.0)
            placed.append(ax)
    return placed


def _ticks_once(axis) -> None:
    """Within one measuring or drawing of this axis, work out its ticks and their labels'
    extents once. Each is asked for up to three times: for the axis, again to place its
    label, and again for the label's spine (matplotlib's Axis.get_tightbbox and draw);
    nothing changes the ticks in between."""
    update = getattr(axis, "_update_ticks", None)
    extents = getattr(axis, "_get_ticklabel_bboxes", None)
    if update is None or extents is None:  # another matplotlib: leave it as it is
        return
    known, depth = {}, [0]

    def ticks():
        if not depth[0]:
            return update()
        if "ticks" not in known:
            known["ticks"] = update()
        return known["ticks"]

    def boxes(ticks, renderer):
        if not depth[0]:
            return extents(ticks, renderer)
        key = (*map(id, ticks), id(renderer))
        if key not in known:
            known[key] = extents(ticks, renderer)
        first, second = known[key]
        return list(first), list(second)

    def once(method):
        def within(*args, **kwargs):
            depth[0] += 1
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if not depth[0]:
                    known.clear()

        return within

    axis._update_ticks, axis._get_ticklabel_bboxes = ticks, boxes
    axis.get_tightbbox, axis.draw = once(axis.get_tightbbox), once(axis.draw)


class InView(Locator):
    """Another locator's tick values, only those in the axis's view: matplotlib makes a
    tick (two lines, two texts) for each value a locator gives, and draws those in view.
    Only for axes whose labels do not depend on the values out of view: a
    ScalarFormatter's digits follow the range of all of them, a FixedFormatter labels
    the ticks by their place in the list."""

    # Label a value by the value and the view only (fastbp's own FuncFormatters, and
    # set_ticks(..., labels)'s, ignore the tick's place).
    FORMATTERS = (FuncFormatter, LogFormatter, NullFormatter, PercentFormatter)

    def __init__(self, base: Locator):
        self.base = base

    def set_axis(self, axis):
        super().set_axis(axis)
        self.base.set_axis(axis)

    def __call__(self):
        values = np.asarray(self.base(), dtype=float)
        low, high = sorted(self.axis.get_view_interval())
        slack = 1e-10 * max(abs(low), abs(high))  # as matplotlib's own test of "in view"
        return values[(values >= low - slack) & (values <= high + slack)]

    def tick_values(self, vmin, vmax):
        return self.base.tick_values(vmin, vmax)

    def nonsingular(self, v0, v1):
        return self.base.nonsingular(v0, v1)

    def view_limits(self, vmin, vmax):
        return self.base.view_limits(vmin, vmax)


def _glyph_by_glyph() -> bool:
    """Whether this matplotlib draws text as 3.11 does, in Python, glyph by glyph, with the
    methods :class:`Canvas` uses (3.12 is to draw it otherwise: matplotlib PR #32120)."""
    version = tuple(int(part) for part in matplotlib.__version__.split(".")[:2])
    methods = ("_layout", "_render_glyph", "_set_transform", "set_size")
    return (
        version == (3, 11)
        and all(hasattr(ft2font.FT2Font, m) for m in methods)
        and hasattr(RendererAgg, "_prepare_font")
        and hasattr(ft2font, "RenderMode")
    )


GLYPH_BY_GLYPH = _glyph_by_glyph()
# What the text of fastbp's figures needs, kept for the process (each figure has its own
# renderer, and matplotlib's own caches are per renderer): a string's glyphs and their
# places, its extent, and each glyph's pixels at each position within a pixel (1/64ths).
# Each emptied when it grows past its bound: a few MB (every figure of random_search
# needs 194 strings and 2,923 glyphs at their positions).
_LAYOUTS, _EXTENTS, _GLYPHS = {}, {}, {}
STRINGS_KEPT, GLYPHS_KEPT = 3_000, 20_000
# The layouts and extents of strings set in their font alone (no fallback font) are also
# kept between processes, in a file in fastbp's cache per matplotlib and FreeType version,
# keyed by the font file (its path, size and time) and all else they depend on: a
# drawing's workers start with what the drawings before them laid out (for random_search
# about 0.15 s of CPU a worker, most of it the same tick labels and axis labels).
_STORED, _NEW = {}, {}  # key: [glyph, x, y, glyph, x, y, ...] or [width, height, descent]
_LOADED = []  # whether this process has read the file


class _Renderer(RendererAgg):
    """matplotlib 3.11's Agg renderer, its plain text drawn with the same pixels in about
    a third of the time. 3.11 lays a string out (FreeType and HarfBuzz: about 20 us a
    glyph) and renders each glyph at its place (set_size, which has FreeType work out
    the font's hinting again, then the glyph: 35 us), at every use. Here a string's
    layout and extent are worked out once, and a glyph is rendered once for each
    position within a pixel: moved by a whole number of pixels, FreeType's rendering
    of it is the same, moved (it works in 1/64ths of a pixel, in integers)."""

    def get_text_width_height_descent(self, s, prop, ismath):
        if ismath:
            return super().get_text_width_height_descent(s, prop, ismath)
        font, size, flags = self._prepare_font(prop), prop.get_size_in_points(), get_hinting_flag()
        key = (font, size, self.dpi, s, flags)
        extent = _EXTENTS.get(key)
        if extent is None:
            stored = _stored_key("extent", font, s, size, self.dpi, flags.value)
            extent = _STORED.get(stored)
            if extent is None:
                extent = super().get_text_width_height_descent(s, prop, ismath)
                if stored:
                    _NEW[stored] = list(extent)
            _EXTENTS[key] = extent = tuple(extent)
            _bounded(_EXTENTS, STRINGS_KEPT)
        return extent

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath:
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        font, flags = self._prepare_font(prop), get_hinting_flag()
        size = prop.get_size_in_points()
        features = mtext.get_fontfeatures() if mtext is not None else None  # tuples, as
        language = mtext.get_language() if mtext is not None else None  # Text keeps them
        key = (font, size, self.dpi, s, flags, features, language)
        glyphs = _LAYOUTS.get(key)
        if glyphs is None:
            stored = _stored_key("layout", font, s, size, self.dpi, flags.value, features, language)
            if stored in _STORED:  # glyph, x, y, glyph, x, y, ...
                places = _STORED[stored]
                glyphs = [(font, *places[k : k + 3]) for k in range(0, len(places), 3)]
            else:
                laid = font._layout(s, flags=flags, features=features, language=language)
                glyphs = [(g.ft_object, g.glyph_index, g.x, g.y) for g in laid]
                if stored and all(g.ft_object.fname == font.fname for g in laid):
                    _NEW[stored] = [v for _, *place in glyphs for v in place]
            _LAYOUTS[key] = glyphs
            _bounded(_LAYOUTS, STRINGS_KEPT)
        # As RendererAgg._draw_text_glyphs_and_boxes places them (no slant, no extension).
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        matrix = (0x10000 * np.array([[cos, -sin], [sin, cos]])).round().astype(int)
        turn = tuple(matrix.ravel())
        mode = ft2font.RenderMode.NORMAL if gc.get_antialiased() else ft2font.RenderMode.MONO
        x, y, height = float(x), float(y), float(self.height)  # not NumPy's: round() is faster
        for ft, index, dx, dy in glyphs:  # dy is upwards, and so is FreeType's y
            whole_x, part_x = divmod(round(0x40 * (x + dx * cos - dy * sin)), 0x40)
            whole_y, part_y = divmod(round(0x40 * (height - y + dx * sin + dy * cos)), 0x40)
            at = (ft, size, self.dpi, index, turn, part_x, part_y, flags, mode)
            glyph = _GLYPHS.get(at)
            if glyph is None:  # _prepare_font sized the font and its fallback fonts
                ft._set_transform(matrix, [part_x, part_y])
                bitmap = ft._render_glyph(index, flags, mode)
                pixels = bitmap.buffer
                if mode is ft2font.RenderMode.MONO:
                    pixels *= 0xFF
                glyph = _GLYPHS[at] = (pixels, bitmap.left, bitmap.top)
                _bounded(_GLYPHS, GLYPHS_KEPT)
            pixels, left, top = glyph
            self._renderer.draw_text_image(  # y downwards, to the bitmap's bottom
                pixels, left + whole_x, int(height) - (top + whole_y) + pixels.shape[0], 0, gc
            )


def _bounded(kept: dict, most: int) -> None:
    if len(kept) > most:
        kept.clear()


def _stored_key(kind, font, s, *rest) -> str | None:
    """The key of a string's layout or extent in the stored file; None where a character
    of it is not in the font itself (a fallback font's glyph: not stored)."""
    if not all(font.get_char_index(ord(c), _fallback=False) for c in s):
        return None
    mark = _font_mark(font.fname, font.face_index)
    return json.dumps([kind, mark, matplotlib.rcParams["text.kerning_factor"], s, *rest])


@functools.cache
def _font_mark(path, face) -> str:
    """A font file, by its path, face, size and time (hashed): another file there is
    another font."""
    try:
        stat = os.stat(path)
        mark = f"{path}|{face}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        mark = f"{path}|{face}"
    return hashlib.sha256(mark.encode()).hexdigest()[:16]


def _stored_file():
    name = f"text-{matplotlib.__version__}-{ft2font.__freetype_version__}.json"
    return cache_dir() / name


def _read_stored() -> dict:
    """The stored layouts and extents that have the shape of one ({} where there is no file,
    or it cannot be read)."""
    stored = read_json_object(_stored_file())

    def shaped(key, value):  # an extent: 3 numbers; a layout: 3 for each glyph
        extent = key.startswith('["extent"')
        return (isinstance(value, list) and (len(value) == 3 if extent else len(value) % 3 == 0)
                and all(isinstance(v, (int, float)) for v in value))  # fmt: skip

    return {key: value for key, value in stored.items() if shaped(key, value)}


def load_stored_text() -> None:
    """Read the stored layouts and extents, once per process."""
    if not _LOADED:
        _LOADED.append(True)
        _STORED.update(_read_stored())


def new_text() -> dict:
    """The layouts and extents this process worked out that the stored file lacks, handed
    over (a worker's, for the process that forked it to store: :func:`keep_text`)."""
    new = dict(_NEW)
    _NEW.clear()
    return new


def keep_text(new: dict) -> None:
    """Add another process's :func:`new_text` to what :func:`save_stored_text` stores."""
    _NEW.update(new)


def save_stored_text() -> None:
    """Add the layouts and extents worked out here (and handed over by workers) to the
    stored file, merged with what another process may have stored since (the newest
    STRINGS_KEPT kept). Nothing to do once the file has them all; where it cannot be
    written, they are kept for this process only."""
    if not _NEW:
        return
    stored = {**_read_stored(), **_NEW}
    stored = dict(list(stored.items())[-STRINGS_KEPT:])
    try:
        _stored_file().parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(_stored_file(), json.dumps(stored, separators=(",", ":")))
    except OSError:
        pass
    _STORED.update(_NEW)
    _NEW.clear()


class Canvas(FigureCanvasAgg):
    """FigureCanvasAgg, drawing with :class:`_Renderer` (matplotlib 3.11 only)."""

    def get_renderer(self):
        load_stored_text()
        w, h = self.get_width_height(physical=True)
        key = w, h, self.figure.dpi
        if self._lastKey != key:  # as FigureCanvasAgg.get_renderer
            self.renderer = _Renderer(w, h, self.figure.dpi)
            self._lastKey = key
        return self.renderer
