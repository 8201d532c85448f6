"""The vector operations of generated kernels, lane by lane against scalar arithmetic."""

from fractions import Fraction

import numpy as np
import pytest
from numba import from_dtype, njit

from fastbp.engine.intrinsics import (
    _python_fma,
    div_by,
    fma,
    native_lanes,
    not_below,
    relu,
    vadd,
    vcount_not_below,
    vdiv,
    vfma_chain,
    vload,
    vmul,
    vrelu,
    vstore,
    vsub,
    vtile,
    vtile_sums,
    vwhere_positive,
    vzeros,
    where_positive,
)

pytestmark = pytest.mark.kernel_forms  # run again on an emulated narrower CPU (test_hosts.py)


@njit
def vector_ops(ws, out):
    a, b, c = vload(ws, 0, 8), vload(ws, 8, 8), vload(ws, 16, 8)
    vstore(out, 0, vadd(a, b))
    vstore(out, 8, vsub(a, ws[3]))  # a float stands for itself in every lane
    vstore(out, 16, vmul(a, b))
    vstore(out, 24, vdiv(a, b))
    vstore(out, 32, vfma_chain(c, a, b, b[2], a))  # fma(b[2], a, fma(a, b, c))
    vstore(out, 40, vrelu(a))
    vstore(out, 48, vwhere_positive(a, b))
    return vcount_not_below(a, ws[1])


@njit
def scalar_fma_chain(a, b, c, s):
    return fma(s, a, fma(a, b, c))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vector_operations_round_as_scalar_ones(dtype):
    rng = np.random.default_rng(0)
    ws = rng.normal(size=24).astype(dtype) / 3
    ws[[2, 13]] = np.nan
    ws[5], ws[14] = -0.0, 1e30
    a, b, c = ws[:8], ws[8:16], ws[16:]
    out = np.zeros(56, dtype=dtype)
    count = vector_ops(ws, out)
    expected = [
        a + b,
        a - ws[3],
        a * b,
        a / b,
        [scalar_fma_chain(x, y, z, b[2]) for x, y, z in zip(a, b, c, strict=True)],
        np.where(a < 0, 0, a),  # NaN and -0.0 pass through
        np.where(b > 0, a, 0),  # NaN in b gives 0
    ]
    for k, want in enumerate(expected):
        got = out[8 * k : 8 * k + 8]
        assert got.tobytes() == np.asarray(want, dtype=dtype).tobytes(), k
    assert count == np.sum(~(a < ws[1]))  # NaN lanes count as not below
    assert np.isnan(out[40 + 2]) and np.signbit(out[40 + 5])


@njit
def compiled_fma(a, b, c, out):
    for p in range(a.shape[0]):
        out[p] = fma(a[p], b[p], c[p])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_plain_python_fma_rounds_as_the_compiled_one(dtype):
    """What NUMBA_DISABLE_JIT=1 runs (fastbp.engine.intrinsics._python_fma), against the CPU's."""
    from fastbp.engine.intrinsics import _python_fma

    rng = np.random.default_rng(1)
    n = 4000
    a, b = (rng.normal(size=n) * 2.0 ** rng.integers(-30, 30, n) for _ in range(2))
    c = -(a * b) * (1 + rng.normal(size=n) * 1e-7)  # near cancellations
    c[::3] = rng.normal(size=n)[::3]
    a[:6], b[:6], c[:6] = [0, -0.0, np.inf, np.nan, 1e30, 3], [5, 2, 0, 1, 1e300, 0], [-0.0] * 6
    b[4] = 1e10 if dtype == np.float32 else b[4]  # a product that overflows
    a, b, c = (x.astype(dtype) for x in (a, b, c))
    out = np.empty_like(a)
    compiled_fma(a, b, c, out)
    python = np.array([_python_fma(*abc) for abc in zip(a, b, c, strict=True)], dtype=dtype)
    assert python.tobytes() == out.tobytes()


def test_the_plain_python_fma_rounds_once_where_rounding_twice_would_not():
    from fastbp.engine.intrinsics import _round_once

    # Just above the midpoint between 1 and the next float32: via float64 it becomes the
    # midpoint, then rounds to even (1.0); rounded once, it goes up.
    exact = Fraction(1) + Fraction(1, 2**24) + Fraction(1, 2**80)
    assert np.float32(float(exact)) == 1
    assert _round_once(exact, np.float32(0)) == np.nextafter(np.float32(1), np.float32(2))


@njit
def choices(v, h, out):
    for i in range(v.shape[0]):
        out[0, i] = relu(v[i])
        out[1, i] = where_positive(v[i], h[i])
        out[2, i] = not_below(v[i], h[i])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_branch_free_choices_match_their_definitions_and_python_versions(dtype):
    from fastbp.engine import intrinsics

    special = [np.nan, -np.inf, -1.5, -0.0, 0.0, 2.0, np.inf]
    v = np.repeat(np.array(special, dtype=dtype), len(special))  # every pair of them
    h = np.tile(np.array(special, dtype=dtype), len(special))
    out = np.empty((3, v.size), dtype=dtype)
    choices(v, h, out)
    expected = np.array([
        [dtype(0.0) if x < 0.0 else x for x in v],  # NaN passes through
        [x if y > 0.0 else dtype(0.0) for x, y in zip(v, h, strict=True)],
        [dtype(0.0) if x < y else dtype(1.0) for x, y in zip(v, h, strict=True)],
    ], dtype=dtype)  # fmt: skip
    assert out.tobytes() == expected.tobytes()
    python = [intrinsics._python_choices[name] for name in ("relu", "where_positive", "not_below")]
    pairs = list(zip(v, h, strict=True))
    plain = np.array([[python[0](x) for x, _ in pairs], [python[1](x, y) for x, y in pairs],
                      [python[2](x, y) for x, y in pairs]], dtype=dtype)  # fmt: skip
    assert plain.tobytes() == expected.tobytes()


@njit
def _divisions(x, c, out):
    """Each x / c: divided (out[0]), and by div_by (out[1]), in a loop LLVM vectorises."""
    inverse = c.dtype.type(1.0) / c[0]
    for i in range(x.size):
        out[0, i] = x[i] / c[0]
        out[1, i] = div_by(x[i], c[0], inverse)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_div_by_has_the_bits_of_the_division_for_adams_quotients(dtype):
    # Adam divides sqrt(v) by bc2 = sqrt(1 - beta2^t) in (0, 1]: x from every exponent
    # range of v (random bit patterns), the smallest subnormal v, zero, inf and NaN.
    from fastbp.engine.intrinsics import _python_div_by

    rng = np.random.default_rng(0)
    uint = np.uint64 if dtype == np.float64 else np.uint32
    top = np.array(np.inf, dtype).view(uint)
    v = rng.integers(0, top, 400_000, dtype=uint, endpoint=True).view(dtype)
    tiny = np.finfo(dtype).smallest_subnormal
    v = np.concatenate([[0.0, tiny, 2 * tiny, np.finfo(dtype).max, np.inf, np.nan], v])
    x = np.sqrt(v).astype(dtype)
    for beta2, t in [(0.999, 1), (0.999, 7), (0.999, 5000), (0.9, 3), (0.0, 1), (1 - 1e-9, 1)]:
        c = np.array([np.sqrt(1.0 - beta2**t)], dtype)
        out = np.empty((2, x.size), dtype)
        _divisions(x, c, out)
        assert out[1].tobytes() == out[0].tobytes(), beta2
        inverse = dtype(1.0) / c[0]
        some = np.concatenate([x[:6], x[:: x.size // 500]])  # plain Python, as with
        # NUMBA_DISABLE_JIT=1
        with np.errstate(all="ignore"):
            python = np.array([_python_div_by(a, c[0], inverse) for a in some], dtype)
        assert python.tobytes() == (some / c[0]).tobytes()


@njit  # not cached: Numba's cache would not see an edit of the intrinsics
def _tiles(O, S, X, Y, out, ldo, a, lda, b, b_row, b_t, count, columns):
    """Rows 0-7 in a tile of 4 rows by two vectors and tiles of 2, 1 and 1 by one vector
    (O, as vtile stores them); the first 4 rows again from vtile_sums, stored by hand (S)."""
    vtile(O, X, Y, out, ldo, a, lda, b, b_row, b_t, count, 0, columns, 4, 2)
    vtile(O, X, Y, out, ldo, a, lda, b, b_row, b_t, count, 4, columns, 2, 1)
    for r0 in (6, 7):
        vtile(O, X, Y, out, ldo, a, lda, b, b_row, b_t, count, r0, columns, 1, 1)
    lanes = len(vzeros(X))
    for tc in range(0, columns, 2 * lanes):
        sums = vtile_sums(X, Y, a, lda, b, b_row, b_t, count, 0, tc, 4, 2)
        for q in range(4):
            vstore(S, out + q * ldo + tc, sums[2 * q])
            vstore(S, out + q * ldo + tc + lanes, sums[2 * q + 1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_tile_of_a_product_is_every_sum_in_order_with_one_rounding_a_term(dtype):
    """vtile and vtile_sums, at odd offsets and strides, against each sum worked out one
    fused multiply-add at a time, in order (the bits every kernel form keeps)."""
    rng = np.random.default_rng(3)
    lanes = native_lanes(from_dtype(np.dtype(dtype)))
    columns, count, rows = 4 * lanes, 11, 8
    out, ldo, a, lda, b, b_row, b_t = 5, columns + 3, 7, columns + 1, 3, 1, rows + 2
    X = rng.standard_normal(a + count * lda + 8).astype(dtype)
    Y = rng.standard_normal(b + count * b_t + rows).astype(dtype)
    O, S = np.zeros(out + rows * ldo + 8, dtype), np.zeros(out + rows * ldo + 8, dtype)
    _tiles(O, S, X, Y, out, ldo, a, lda, b, b_row, b_t, count, columns)
    want = np.zeros_like(O)
    for r in range(rows):
        for c in range(columns):
            total = dtype(0.0)
            for m in range(count):
                total = _python_fma(X[a + m * lda + c], Y[b + r * b_row + m * b_t], total)
            want[out + r * ldo + c] = total
    assert O.tobytes() == want.tobytes()
    first = slice(out, out + 4 * ldo)
    assert S[first].tobytes() == want[first].tobytes()
