"""LLVM operations that Numba does not offer, for fastbp's kernels: on floats, and on
vectors of floats.

``fma(a, b, c)``: a * b + c rounded once (IEEE 754 fusedMultiplyAdd), for floats of one
type. It is one instruction on CPUs with FMA (x86-64 since 2013, every 64-bit ARM), and
a correct, slower library call elsewhere; its result is the same bits on every CPU and
whether or not it is vectorised. Unlike ``fastmath`` contraction, which LLVM may or may
not apply to each operation, an explicit fma is part of what the kernel computes.

``sqrt(v)``: the square root as one instruction (Numba's ``math.sqrt`` is a library
call, which LLVM does not vectorise).

``div_by(x, c, r)``: x / c, with the bits of the division, from ``r = 1 / c`` (rounded
once, computed once for many x): a product and two fused corrections, no divider.
Division is the slowest of the arithmetic instructions (a 512-bit one issues every 10
cycles or so, against two fused multiply-adds per cycle), and Adam divides every
parameter by the same bias correction. q1 = x r is within 1.5 ulp of x / c; the
correction q2 = q1 + (x - q1 c) r makes it faithful (within an ulp); then, with the
remainder x - q2 c exact in one fma and r within half an ulp of 1 / c, q3 = q2 + (x - q2 c)
r is x / c correctly rounded (Markstein's theorem; Muller et al., Handbook of
Floating-Point Arithmetic, 2018, section 4.9). Where x is infinite or NaN the
corrections would give NaN: q1 (or q2, should the quotient overflow) is then the result,
as the division gives it. The theorem needs the remainders to be normal numbers, which
holds for x >= 0 from about 2^-916 in float64 and 2^-78 in float32 (quotients of smaller
x were seen to miss below 2^-1000 and 2^-116), and for c in (0, 1]. Adam's x, the square
root of a float, is 0 or at least 2^-537 (2^-74.5 in float32). Checked against the
division there: every non-negative float32 v, 4.5e9 float64 pairs, a sample in the tests.

``stack_align_64()``: makes the function that calls it align its stack frame to 64
bytes. Vector registers that LLVM spills to the stack are then stored aligned; at the
16-byte alignment Numba's functions otherwise get, a 512-bit spill can straddle two
cache lines, and the same kernel ran up to 1.7x slower depending on where the stack
happened to be.

With ``NUMBA_DISABLE_JIT=1`` (to step through kernels in a debugger), plain Python
versions take their place: ``fma`` then computes the exact result with fractions and
rounds it once, so results keep their bits.

Vectors (the ``v`` operations) for generated kernels: a vector is a tuple of floats of one
type.

Numba has no vector type, and LLVM's vectorisers do not find the best vector code for
one run of a tiny network on their own. Here a tuple of W floats stands for one
W-lane vector register: each operation turns its tuple operands into an LLVM vector,
applies one vector instruction (or one per lane, for the FMA chain) and turns the
result back into a tuple; LLVM folds the conversions between consecutive operations
away. A float operand where a vector is expected stands for that float in every lane.
Lane ``i`` of a vector ``v`` is ``v[i]``, and a vector is built lane by lane as a tuple.

Every operation rounds exactly as its scalar counterpart does, lane by lane: ``vfma``
is :func:`fma` per lane, ``vadd`` is ``+``, and so on. With
``NUMBA_DISABLE_JIT=1``, plain Python versions on tuples take their place.
"""

import math
from fractions import Fraction

import numpy as np

# isort: split
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
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
        return _llvm(builder, "sqrt", *args)

    return v(v), codegen


def _div_by(builder, x, c, r):
    """x / c from r = 1 / c (see the module's docstring)."""
    inf = x.type(float("inf")) if not isinstance(x.type, ir.VectorType) else (
        ir.Constant(x.type, [x.type.element(float("inf"))] * x.type.count))  # fmt: skip

    def fma(a, b, c):
        return _llvm(builder, "fma", a, b, c)

    def finite(q):
        return builder.fcmp_ordered("<", _llvm(builder, "fabs", q), inf)

    minus_c = builder.fneg(c)
    q1 = builder.fmul(x, r)
    q2 = fma(fma(q1, minus_c, x), r, q1)
    q3 = fma(fma(q2, minus_c, x), r, q2)
    return builder.select(finite(q2), q3, builder.select(finite(q1), q2, q1))


def _llvm(builder, name, *args):
    """LLVM's intrinsic ``name`` (sqrt, fma, fabs ...) on floats or vectors of one type."""
    ty = args[0].type
    kind = f"v{ty.count}{ty.element.intrinsic_name}" if isinstance(ty, ir.VectorType) else (
        ty.intrinsic_name)  # fmt: skip
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ty, [ty] * len(args)), f"llvm.{name}.{kind}"
    )
    return builder.call(function, list(args))


@intrinsic
def div_by(typingctx, x, c, r):
    """x / c, with its bits, from r = 1 / c: no division (see the module's docstring)."""
    if not (isinstance(x, types.Float) and x == c == r):
        return None

    def codegen(context, builder, signature, args):
        return _div_by(builder, *args)

    return x(x, c, r), codegen


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


def _python_div_by(x, c, r):
    """div_by in Python: the same operations, in the same order."""
    with np.errstate(all="ignore"):  # inf - inf is NaN, as in compiled code
        q1 = x * r
        q2 = _python_fma(_python_fma(q1, -c, x), r, q1)
        q3 = _python_fma(_python_fma(q2, -c, x), r, q2)
    return q3 if math.isfinite(q2) else q2 if math.isfinite(q1) else q1


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
    fma, fma_chain, div_by = _python_fma, _python_fma_chain, _python_div_by
    relu, where_positive, not_below = _python_choices.values()

    def sqrt(v):
        return type(v)(math.sqrt(v))

    def stack_align_64():
        pass


# Vectors: tuples of floats as LLVM vectors.
def _float_of(*tys):
    """The float type shared by these tuple and float types (None if there is none), and
    the width of the tuples among them (None if there is no tuple or they differ)."""
    floats, widths = set(), set()
    for ty in tys:
        if isinstance(ty, types.UniTuple) and isinstance(ty.dtype, types.Float):
            floats.add(ty.dtype)
            widths.add(ty.count)
        elif isinstance(ty, types.Float):
            floats.add(ty)
        else:
            return None, None
    if len(floats) != 1 or len(widths) != 1:
        return None, None
    return floats.pop(), widths.pop()


def _to_vector(builder, value, ty, width):
    """An LLVM <width x float> from a tuple, or from a float put in every lane."""
    if isinstance(ty, types.UniTuple):
        lanes = [builder.extract_value(value, i) for i in range(width)]
    else:
        lanes = [value] * width
    vec = ir.Constant(ir.VectorType(lanes[0].type, width), ir.Undefined)
    for i, lane in enumerate(lanes):
        vec = builder.insert_element(vec, lane, ir.IntType(32)(i))
    return vec


def _to_tuple(context, builder, vec, tuple_type):
    out = cgutils.get_null_value(context.get_value_type(tuple_type))
    for i in range(tuple_type.count):
        out = builder.insert_value(out, builder.extract_element(vec, ir.IntType(32)(i)), i)
    return out


def _elementwise(operation, tys):
    """Typing and code generation of an operation applied lane by lane."""
    dtype, width = _float_of(*tys)
    if dtype is None:
        return None
    result = types.UniTuple(dtype, width)

    def codegen(context, builder, signature, args):
        vecs = [_to_vector(builder, a, t, width) for a, t in zip(args, signature.args, strict=True)]
        return _to_tuple(context, builder, operation(builder, *vecs), result)

    return result(*tys), codegen


@intrinsic
def vadd(typingctx, a, b):
    """a + b per lane."""
    return _elementwise(ir.IRBuilder.fadd, (a, b))


@intrinsic
def vsub(typingctx, a, b):
    """a - b per lane."""
    return _elementwise(ir.IRBuilder.fsub, (a, b))


@intrinsic
def vmul(typingctx, a, b):
    """a * b per lane."""
    return _elementwise(ir.IRBuilder.fmul, (a, b))


@intrinsic
def vdiv(typingctx, a, b):
    """a / b per lane."""
    return _elementwise(ir.IRBuilder.fdiv, (a, b))


@intrinsic
def vsqrt(typingctx, v):
    """The square root per lane (correctly rounded, as math.sqrt)."""
    return _elementwise(lambda builder, v: _llvm(builder, "sqrt", v), (v,))


def _relu(builder, v):
    zero = ir.Constant(v.type, None)
    return builder.select(builder.fcmp_ordered("<", v, zero), zero, v)


@intrinsic
def vrelu(typingctx, v):
    """0 where v < 0, else v (NaN passes through), per lane."""
    return _elementwise(_relu, (v,))


def _where_positive(builder, v, h):
    zero = ir.Constant(v.type, None)
    return builder.select(builder.fcmp_ordered(">", h, zero), v, zero)


@intrinsic
def vwhere_positive(typingctx, v, h):
    """v where h > 0, else 0 (also where h is NaN), per lane."""
    return _elementwise(_where_positive, (v, h))


@intrinsic
def vfma_chain(typingctx, acc, *pairs):
    """fma(a_n, b_n, ... fma(a_0, b_0, acc)) per lane, for vfma_chain(acc, a_0, b_0, ...)."""
    if len(pairs) == 1 and isinstance(pairs[0], types.BaseTuple):
        pairs = tuple(pairs[0])
    if len(pairs) % 2 or not isinstance(acc, types.UniTuple):
        return None
    dtype, width = _float_of(acc, *pairs)
    if dtype is None:
        return None

    def codegen(context, builder, signature, args):
        total, terms = args
        total = _to_vector(builder, total, acc, width)
        terms = [
            _to_vector(builder, builder.extract_value(terms, i), ty, width)
            for i, ty in enumerate(pairs)
        ]
        for a, b in zip(terms[::2], terms[1::2], strict=True):
            total = _llvm(builder, "fma", a, b, total)
        return _to_tuple(context, builder, total, acc)

    return acc(acc, types.StarArgTuple.from_types(pairs)), codegen


@intrinsic
def vcount_not_below(typingctx, v, bound):
    """How many lanes of v are not below the float ``bound`` (NaN lanes count)."""
    dtype, width = _float_of(v, bound)
    if dtype is None or not isinstance(v, types.UniTuple):
        return None

    def codegen(context, builder, signature, args):
        vec = _to_vector(builder, args[0], v, width)
        limit = _to_vector(builder, args[1], bound, width)
        mask = builder.fcmp_unordered(">=", vec, limit)
        bits = builder.bitcast(mask, ir.IntType(width))
        count = builder.call(builder.module.declare_intrinsic("llvm.ctpop", [bits.type]), [bits])
        return builder.zext(count, ir.IntType(64))

    return types.int64(v, bound), codegen


def _pointer(context, builder, arr, value, start, vec_type):
    """A pointer to a vector at value[start] (value of array type arr), and its alignment
    (the element's: whether the vector is aligned is not known here)."""
    data = context.make_array(arr)(context, builder, value).data
    ptr = builder.bitcast(builder.gep(data, [start]), vec_type.as_pointer())
    return ptr, arr.dtype.bitwidth // 8


def _loader(arr, result):
    """The code generation of a load of the vector type ``result`` from arr[start]."""

    def codegen(context, builder, signature, args):
        vec_type = ir.VectorType(context.get_value_type(arr.dtype), result.count)
        ptr, align = _pointer(context, builder, arr, args[0], args[1], vec_type)
        return _to_tuple(context, builder, builder.load(ptr, align=align), result)

    return codegen


@intrinsic
def vload(typingctx, arr, start, width):
    """arr[start : start + width] as a vector (``width`` a constant)."""
    if not (isinstance(arr, types.Array) and isinstance(width, types.IntegerLiteral)):
        return None
    result = types.UniTuple(arr.dtype, width.literal_value)
    return result(arr, start, width), _loader(arr, result)


def native_lanes(dtype) -> int:
    """Lanes of one vector register of the CPU the kernels are compiled for, for floats of
    ``dtype`` (a Numba float type): 8 float64 on AVX-512, 4 on AVX2."""
    from fastbp.engine.kernel_cache import vector_bits

    return max(vector_bits() // dtype.bitwidth, 1)


@intrinsic
def vzeros(typingctx, arr):
    """A vector of zeros of arr's dtype, as many lanes as one register holds
    (:func:`native_lanes`): a kernel written once for float64 and float32 gets its width
    from the array it works on."""
    if not (isinstance(arr, types.Array) and isinstance(arr.dtype, types.Float)):
        return None
    result = types.UniTuple(arr.dtype, native_lanes(arr.dtype))

    def codegen(context, builder, signature, args):
        return cgutils.get_null_value(context.get_value_type(result))

    return result(arr), codegen


@intrinsic
def vload_like(typingctx, arr, start, like):
    """arr[start : start + len(like)] as a vector, ``like`` a vector of arr's dtype."""
    if not (isinstance(arr, types.Array) and isinstance(like, types.UniTuple)):
        return None
    if like.dtype != arr.dtype:
        return None
    return like(arr, start, like), _loader(arr, like)


@intrinsic
def vstore(typingctx, arr, start, v):
    """arr[start : start + len(v)] = v."""
    if not (isinstance(arr, types.Array) and isinstance(v, types.UniTuple)):
        return None
    if v.dtype != arr.dtype:
        return None

    def codegen(context, builder, signature, args):
        vec = _to_vector(builder, args[2], v, v.count)
        ptr, align = _pointer(context, builder, arr, args[0], args[1], vec.type)
        builder.store(vec, ptr, align=align)
        return context.get_dummy_value()

    return types.none(arr, start, v), codegen


def _tile_shape(arrays, sizes, rows, vectors):
    """(rows, vectors, lanes) of a tile (:func:`vtile`) whose arguments have these types
    (the arrays, the sizes and offsets, and the constants rows and vectors), or None."""
    dtype = arrays[0].dtype
    if not (
        all(isinstance(t, types.Array) and t.dtype == dtype for t in arrays)
        and isinstance(dtype, types.Float)
        and all(isinstance(t, types.Integer) for t in sizes)
        and isinstance(rows, types.IntegerLiteral)
        and isinstance(vectors, types.IntegerLiteral)
    ):
        return None
    return rows.literal_value, vectors.literal_value, native_lanes(dtype)


class _Tile:
    """The LLVM code of a tile of :func:`vtile`: the arrays' data pointers and the sizes,
    as given to the intrinsic (``named``: {name: (value, type)}), in intp."""

    def __init__(self, context, builder, shape, dtype, named):
        self.builder, (self.rows, self.vectors, self.lanes) = builder, shape
        for name, (value, ty) in named.items():
            if isinstance(ty, types.Array):
                value = context.make_array(ty)(context, builder, value).data
            else:
                value = context.cast(builder, value, ty, types.intp)
            setattr(self, name, value)
        self.dtype, self.int = dtype, context.get_value_type(types.intp)
        self.vector = ir.VectorType(context.get_value_type(dtype), self.lanes)
        self.align = dtype.bitwidth // 8

    def at(self, data, index):
        """A pointer to the vector at data[index]."""
        return self.builder.bitcast(self.builder.gep(data, [index]), self.vector.as_pointer())

    def sums(self, tc):
        """The code of the tile's sums from the column tc on: {(q, u): the sum of row r0 + q,
        vector u of columns, as an LLVM vector}."""
        b, i = self.builder, self.int
        slots = {
            (q, u): cgutils.alloca_once(b, self.vector)
            for q in range(self.rows)
            for u in range(self.vectors)
        }  # fmt: skip
        for slot in slots.values():  # registers, once LLVM promotes them
            b.store(ir.Constant(self.vector, None), slot)
        rows = [b.mul(b.add(self.r0, i(q)), self.b_row) for q in range(self.rows)]
        with cgutils.for_range(b, self.count) as loop:
            m = loop.index
            start = b.add(self.a, b.add(b.mul(m, self.lda), tc))
            xs = [
                b.load(self.at(self.X, b.add(start, i(u * self.lanes))), align=self.align)
                for u in range(self.vectors)
            ]
            along = b.add(self.b, b.mul(m, self.b_t))
            for q in range(self.rows):
                y = b.load(b.gep(self.Y, [b.add(along, rows[q])]))
                ys = _to_vector(b, y, self.dtype, self.lanes)  # y in every lane
                for u in range(self.vectors):
                    slot = slots[q, u]
                    b.store(_llvm(b, "fma", xs[u], ys, b.load(slot)), slot)
        return {key: b.load(slot) for key, slot in slots.items()}


_TILE_SIZES = ("a", "lda", "b", "b_row", "b_t", "count", "r0")


@intrinsic
def vtile(typingctx, O, X, Y, out, ldo, a, lda, b, b_row, b_t, count, r0, columns, rows, vectors):
    """A tile of a product of matrices, kept in vector registers through every sum: for
    the ``rows`` rows r from r0 and every column c < ``columns`` (whole tiles of
    ``vectors`` vectors of :func:`native_lanes`), O[out + r * ldo + c] = the sum over
    m < count, ascending, of X[a + m * lda + c] * Y[b + r * b_row + m * b_t], each
    product added with one rounding (fma) onto a sum that starts at zero. ``rows`` and
    ``vectors`` are constants; the rest may be known only at run time.

    One call is one loop nest of LLVM code where it is called: Numba types and lowers one
    statement, where the same tile written out in Python is dozens (the single-run
    form's products, written out, were half of its compile time)."""
    given = (O, X, Y, out, ldo, a, lda, b, b_row, b_t, count, r0, columns)
    shape = _tile_shape(given[:3], given[3:], rows, vectors)
    if shape is None:
        return None
    names = ("O", "X", "Y", "out", "ldo", *_TILE_SIZES, "columns")

    def codegen(context, builder, signature, args):
        named = dict(zip(names, zip(args, signature.args, strict=False), strict=False))
        tile = _Tile(context, builder, shape, X.dtype, named)
        i = tile.int
        width = i(tile.lanes * tile.vectors)
        with cgutils.for_range_slice(builder, i(0), tile.columns, width) as (tc, _):
            for (q, u), total in tile.sums(tc).items():
                row = builder.add(tile.out, builder.mul(builder.add(tile.r0, i(q)), tile.ldo))
                at = builder.add(row, builder.add(tc, i(u * tile.lanes)))
                builder.store(total, tile.at(tile.O, at), align=tile.align)
        return context.get_dummy_value()

    return types.none(*given, rows, vectors), codegen


@intrinsic
def vtile_sums(typingctx, X, Y, a, lda, b, b_row, b_t, count, r0, tc, rows, vectors):
    """The sums of :func:`vtile`'s tile from the column tc on (one tile of columns), as
    ``rows * vectors`` vectors (row r0 + q, vector u at q * vectors + u), for the caller
    to finish and store."""
    given = (X, Y, a, lda, b, b_row, b_t, count, r0, tc)
    shape = _tile_shape(given[:2], given[2:], rows, vectors)
    if shape is None:
        return None
    vector = types.UniTuple(X.dtype, shape[2])
    result = types.UniTuple(vector, shape[0] * shape[1])
    names = ("X", "Y", *_TILE_SIZES, "tc")

    def codegen(context, builder, signature, args):
        named = dict(zip(names, zip(args, signature.args, strict=False), strict=False))
        tile = _Tile(context, builder, shape, X.dtype, named)
        out = cgutils.get_null_value(context.get_value_type(result))
        for (q, u), total in tile.sums(tile.tc).items():
            lanes = _to_tuple(context, builder, total, vector)
            out = builder.insert_value(out, lanes, q * shape[1] + u)
        return out

    return result(*given, rows, vectors), codegen


if config.DISABLE_JIT:  # NUMBA_DISABLE_JIT=1: the same operations in plain Python

    def _per_lane(operation, *operands):
        width = max(len(v) for v in operands if isinstance(v, tuple))
        lanes = [v if isinstance(v, tuple) else (v,) * width for v in operands]
        return tuple(operation(*lane) for lane in zip(*lanes, strict=True))

    def vadd(a, b):
        return _per_lane(lambda x, y: x + y, a, b)

    def vsub(a, b):
        return _per_lane(lambda x, y: x - y, a, b)

    def vmul(a, b):
        return _per_lane(lambda x, y: x * y, a, b)

    def vdiv(a, b):
        return _per_lane(lambda x, y: x / y, a, b)

    def vsqrt(v):
        return _per_lane(lambda x: type(x)(math.sqrt(x)), v)

    def vrelu(v):
        return _per_lane(lambda x: type(x)(0) if x < 0 else x, v)

    def vwhere_positive(v, h):
        return _per_lane(lambda x, y: x if y > 0 else type(x)(0), v, h)

    def vfma_chain(acc, *pairs):
        return _per_lane(fma_chain, acc, *pairs)

    def vcount_not_below(v, bound):
        return sum(not x < bound for x in v)

    def vload(arr, start, width):
        return tuple(arr[start : start + width])

    def vstore(arr, start, v):
        arr[start : start + len(v)] = v

    def vzeros(arr):
        from fastbp.engine.kernel_cache import vector_bits

        return (arr.dtype.type(0.0),) * max(vector_bits() // (8 * arr.itemsize), 1)

    def vload_like(arr, start, like):
        return tuple(arr[start : start + len(like)])

    def vtile(O, X, Y, out, ldo, a, lda, b, b_row, b_t, count, r0, columns, rows, vectors):
        lanes = len(vzeros(X))
        for tc in range(0, columns, lanes * vectors):
            sums = vtile_sums(X, Y, a, lda, b, b_row, b_t, count, r0, tc, rows, vectors)
            for q in range(rows):
                for u in range(vectors):
                    vstore(O, out + (r0 + q) * ldo + tc + u * lanes, sums[q * vectors + u])

    def vtile_sums(X, Y, a, lda, b, b_row, b_t, count, r0, tc, rows, vectors):
        lanes = len(vzeros(X))
        out = []
        for q in range(r0, r0 + rows):
            for u in range(vectors):
                sums = []
                for c in range(tc + u * lanes, tc + (u + 1) * lanes):
                    s = X.dtype.type(0.0)
                    for m in range(count):
                        s = fma(X[a + m * lda + c], Y[b + q * b_row + m * b_t], s)
                    sums.append(s)
                out.append(tuple(sums))
        return tuple(out)
