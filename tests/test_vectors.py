"""The vector operations of generated kernels, lane by lane against scalar arithmetic."""

import numpy as np
import pytest
from numba import njit

from fastbp.intrinsics import fma
from fastbp.vectors import (
    vadd,
    vcount_not_below,
    vdiv,
    vfma_chain,
    vload,
    vmul,
    vrelu,
    vstore,
    vsub,
    vwhere_positive,
)


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
