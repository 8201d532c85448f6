"""Numba settings for fastbp's kernels, applied in this one place, once, at import.

Numba ships with LLVM's SLP vectoriser off, and LLVM prefers 256-bit vectors on CPUs
with AVX-512. fastbp's generated kernels (:mod:`fastbp.codegen`) run 2-6x faster with
the SLP vectoriser on and 512-bit vectors allowed. Numba reads both settings when it
builds its code generator, at the first compilation in a process, so they are set
here, when fastbp is imported, through Numba's own environment variables, and only
where the user has not set them. They change how code is vectorised, never what it
computes (fastmath stays off), so results are the same bits either way.

Numba's cache key holds the CPU features but not the SLP setting: generated kernels are
kept in a directory named by TAG, so a kernel compiled under other settings is never
picked up under these. If Numba compiled something before fastbp was imported, the
settings may not take effect in that process: it is slower, not wrong.
"""

import os


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
            import sys

            print(
                f"note: Numba cannot cache fastbp's kernels here ({err}); they are "
                "compiled in memory in every process",
                file=sys.stderr,
            )
        return njit(nogil=True, error_model="numpy")(fn)
