"""LLVM operations that Numba does not offer, for fastbp's kernels.

``fma(a, b, c)``: a * b + c rounded once (IEEE 754 fusedMultiplyAdd), for floats of one
type. It is one instruction on CPUs with FMA (x86-64 since 2013, every 64-bit ARM), and
a correct, slower library call elsewhere; its result is the same bits on every CPU and
whether or not it is vectorised. Unlike ``fastmath`` contraction, which LLVM may or may
not apply to each operation, an explicit fma is part of what the kernel computes.

``sqrt(v)``: the square root as one instruction (Numba's ``math.sqrt`` is a library
call, which LLVM does not vectorise).

``stack_align_64()``: makes the function that calls it align its stack frame to 64
bytes. Vector registers that LLVM spills to the stack are then stored aligned; at the
16-byte alignment Numba's functions otherwise get, a 512-bit spill can straddle two
cache lines, and the same kernel ran up to 1.7x slower depending on where the stack
happened to be.

With ``NUMBA_DISABLE_JIT=1`` (to step through kernels in a debugger), plain Python
versions take their place: ``fma`` then computes the exact result with fractions and
rounds it once, so results keep their bits.
"""

import math
from fractions import Fraction

import numpy as np

from fastbp import numba_settings  # noqa: F401 - first: before Numba reads its settings

# isort: split
from llvmlite import ir
from numba import types
from numba.core import config
from numba.core.extending import intrinsic


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c, rounded once."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


@intrinsic
def fma_chain(typingctx, acc, *pairs):
    """fma(a_n, b_n, ... fma(a_1, b_1, fma(a_0, b_0, acc))) for fma_chain(acc, a_0, b_0, a_1,
    b_1, ...): one call instead of one per term, which Numba types much faster."""
    if len(pairs) == 1 and isinstance(pairs[0], types.BaseTuple):
        pairs = tuple(pairs[0])
    if not (isinstance(acc, types.Float) and len(pairs) % 2 == 0 and all(t == acc for t in pairs)):
        return None

    def codegen(context, builder, signature, args):
        total, terms = args
        terms = [builder.extract_value(terms, i) for i in range(len(pairs))]
        for a, b in zip(terms[::2], terms[1::2], strict=True):
            total = builder.fma(a, b, total)
        return total

    return acc(acc, types.StarArgTuple.from_types(pairs)), codegen


def _select(typingctx_types, choose):
    """Typing and code of a branch-free choice between floats of one type: a Python
    ``a if cond else b`` is control flow, which on thousands of lines of generated code
    costs Numba seconds of compile time; ``select`` is one instruction."""
    first = typingctx_types[0]
    if not (isinstance(first, types.Float) and all(t == first for t in typingctx_types)):
        return None

    def codegen(context, builder, signature, args):
        return choose(builder, *args)

    return first(*typingctx_types), codegen


@intrinsic
def relu(typingctx, v):
    """0 where v < 0, else v (NaN passes through)."""

    def choose(builder, v):
        zero = ir.Constant(v.type, 0.0)
        return builder.select(builder.fcmp_ordered("<", v, zero), zero, v)

    return _select((v,), choose)


@intrinsic
def where_positive(typingctx, v, h):
    """v where h > 0, else 0 (also where h is NaN)."""

    def choose(builder, v, h):
        zero = ir.Constant(v.type, 0.0)
        return builder.select(builder.fcmp_ordered(">", h, zero), v, zero)

    return _select((v, h), choose)


@intrinsic
def not_below(typingctx, q, bound):
    """1.0 where q is not below bound (NaN is not), else 0.0, in q's type."""

    def choose(builder, q, bound):
        one, zero = ir.Constant(q.type, 1.0), ir.Constant(q.type, 0.0)
        return builder.select(builder.fcmp_unordered(">=", q, bound), one, zero)

    return _select((q, bound), choose)


@intrinsic
def sqrt(typingctx, v):
    """The square root, correctly rounded, as LLVM's intrinsic: Numba's math.sqrt calls
    the C library's, which LLVM does not vectorise (it may set errno)."""
    if not isinstance(v, types.Float):
        return None

    def codegen(context, builder, signature, args):
        return builder.call(builder.module.declare_intrinsic("llvm.sqrt", [args[0].type]), args)

    return v(v), codegen


@intrinsic
def stack_align_64(typingctx):
    """Align the caller's stack frame to 64 bytes (an aligned slot it must keep)."""

    def codegen(context, builder, signature, args):
        slot = builder.alloca(ir.IntType(64), name="align64")
        slot.align = 64
        keep = ir.InlineAsm(ir.FunctionType(ir.VoidType(), [slot.type]), "", "r", side_effect=True)
        builder.call(keep, [slot])
        return context.get_dummy_value()

    return types.none(), codegen


def _round_once(exact, like):
    """The float of ``like``'s type nearest to the rational ``exact`` (ties to even)."""
    try:
        x = float(exact)  # correctly rounded to float64 (CPython divides integers exactly)
    except OverflowError:
        x = math.inf if exact > 0 else -math.inf
    if not isinstance(like, np.float32):
        return type(like)(x)
    with np.errstate(over="ignore"):  # too large: inf, as in compiled code
        y = np.float32(x)  # rounding twice can miss the nearest float32: check neighbours
    if not np.isfinite(y) or Fraction(float(y)) == exact:
        return y
    toward = np.float32(np.inf if Fraction(float(y)) < exact else -np.inf)
    lo, hi = sorted([y, np.nextafter(y, toward)])
    below, above = exact - Fraction(float(lo)), Fraction(float(hi)) - exact
    if below != above:
        return lo if below < above else hi
    return lo if lo.view(np.uint32) % 2 == 0 else hi


def _python_fma(a, b, c):
    """fma in Python: the exact a * b + c, rounded once."""
    exact = None
    if math.isfinite(a) and math.isfinite(b) and math.isfinite(c):
        exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if not exact:  # non-finite, or an exact zero: its sign as IEEE 754 gives it
        with np.errstate(all="ignore"):  # inf * 0 is NaN, as in compiled code
            return a * b + c
    return _round_once(exact, c)


def _python_fma_chain(acc, *pairs):
    for a, b in zip(pairs[::2], pairs[1::2], strict=True):
        acc = _python_fma(a, b, acc)
    return acc


_python_choices = {  # the branch-free choices in plain Python
    "relu": lambda v: type(v)(0.0) if v < 0.0 else v,
    "where_positive": lambda v, h: v if h > 0.0 else type(v)(0.0),
    "not_below": lambda q, bound: type(q)(0.0) if q < bound else type(q)(1.0),
}

if config.DISABLE_JIT:  # NUMBA_DISABLE_JIT=1: the same operations in plain Python
    fma, fma_chain = _python_fma, _python_fma_chain
    relu, where_positive, not_below = _python_choices.values()

    def sqrt(v):
        return type(v)(math.sqrt(v))

    def stack_align_64():
        pass
