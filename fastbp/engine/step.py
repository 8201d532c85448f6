"""The training step, defined once: the rules every kernel is generated from.

A rule writes one piece of the step as code: the hidden layers' activation and its
slope, the loss (its terms and its gradient at the outputs), the update of a parameter,
and the sums of products that the layers are made of. The kernels (:mod:`fastbp.engine.codegen`)
place these pieces in loops, in straight-line code per run, or in vector registers; they
never write the arithmetic themselves. A new loss or optimizer is a new rule here (and
its plain version in :mod:`fastbp.reference`, which stays independent): every kernel
form then has it, with the same bits.

Rules are written against ``o``, the operations of one kernel form: :class:`Scalar` (one
value at a time, code such as ``(a - b)``) or :class:`Vector` (one vector of values, code
such as ``vsub(a, b)`` on the tuples of :mod:`fastbp.engine.intrinsics`). Operands are code: the
names or expressions of values of the parameters' dtype, and ``o.zero`` and ``o.two``,
that dtype's 0 and 2, which every kernel defines as ``zero`` and ``two``. ``o.one`` is
the float64 literal 1.0, as in the reference: a float32 value meets it in float64, so a
vector form applies a rule that uses it lane by lane (:meth:`Vector.apply`).

The arithmetic, which fixes the results' bits (a faster kernel must keep it):
- a sum of products is a chain of fused multiply-adds (one rounding each,
  :func:`fastbp.engine.intrinsics.fma`) onto a zero, in a fixed order (:meth:`Scalar.dot`):
  Z[j, i] = (sum over k ascending of H[k, i] * W[k, j]) + b[j]; dW[k, j] sums
  H[k, i] * dZ[j, i] over samples i ascending; dH[k, i] is the sum over j ascending of
  dZ[j, i] * W[k, j], times the slope; db[j] adds dZ[j, i] over i ascending onto a zero;
- the loss is the sum, in float64, of its terms in the order of the (n_out, n) block of
  outputs (unit by unit, samples inside), divided by their count; a term is never
  negative (the kernels rely on it to skip the sum between logged steps);
- everything else is the expression its rule writes, in the parameters' dtype.
``fastmath`` stays off: results stay closest to the NumPy reference, and the NaN and
inf checks that detect divergence keep working.
"""

from __future__ import annotations


def activate(o, z, activation: str) -> str:
    """H = act(Z) for a hidden layer."""
    if activation == "relu":
        return o.relu(z)  # 0 below 0; NaN passes through, as with np.maximum
    if activation == "tanh":
        return o.tanh(z)
    if activation == "sigmoid":
        return o.div(o.one, o.add(o.one, o.exp(o.neg(z))))
    return z


def slope(o, e, h, activation: str) -> str:
    """e * act'(Z), the slope written via the activation's output h = act(Z)."""
    if activation == "relu":
        return o.where_positive(e, h)  # 0 where h is 0 or NaN
    if activation == "tanh":
        return o.mul(e, o.sub(o.one, o.mul(h, h)))
    if activation == "sigmoid":
        return o.mul(e, o.mul(h, o.sub(o.one, h)))
    return e


def folds(loss_fn: str) -> list[tuple[str, object, object]]:
    """What a loss needs from all the outputs of one sample before its terms, as folds
    over the units in order: (start, part, combine) per value: ``part(o, y, names)`` a
    unit's share (y its output, ``names`` the values' names: a part may use the values
    before its own), ``combine(o, acc, share)`` the next value, from ``start``: "first"
    (the first unit's share) or "zero". cross_entropy: m, the largest output, then s, the
    sum of exp(y - m) (:func:`shifted_exp`). Empty for the other losses."""
    if loss_fn != "cross_entropy":
        return []
    return [
        ("first", lambda o, y, names: y, lambda o, acc, share: o.max(acc, share)),
        ("zero", shifted_exp, lambda o, acc, share: o.add(acc, share)),
    ]


def shifted_exp(o, y, names) -> str:
    """exp(y - m), m the largest output of y's sample (``names[0]``): a unit's share of the
    softmax's sum, and the numerator of its softmax."""
    return o.exp(o.sub(y, names[0]))


def per_sample(o, ys, names, loss_fn: str = "mse", kept=None) -> list[tuple[str, str]]:
    """:func:`folds` over one sample's outputs ``ys`` written out: (name, value) pairs to
    assign in order, under the kernel's ``names``. ``kept(k, j)``: where the kernel keeps
    fold k's share of unit j for later (:func:`loss` takes it back as ``shares``), or None:
    the share is then assigned there first."""
    lets = []
    for k, (name, (start, part, combine)) in enumerate(zip(names, folds(loss_fn), strict=False)):
        value = None if start == "first" else o.zero
        for j, y in enumerate(ys):
            share = part(o, y, names)
            if kept is not None and kept(k, j) is not None:
                lets.append((kept(k, j), share))
                share = kept(k, j)
            value = share if value is None else combine(o, value, share)
        lets.append((name, value))
    return lets


def per_sample_mean(loss_fn: str) -> bool:
    """Whether the loss is the sum of its terms over the samples (cross_entropy), not over
    the samples and outputs."""
    return loss_fn == "cross_entropy"


def loss(
    o, y, t, d: str, loss_fn: str = "mse", sample=None, shares=None
) -> tuple[list[tuple[str, str]], str, str]:
    """The loss at one output y with target t: (lets, term, gradient).

    ``lets`` are (name, value) pairs the kernel assigns first, under the name ``d`` it
    gives; the loss is the mean of the terms (never negative) over the ``n_out`` outputs
    of all samples (``n_out``: that count, in the dtype), and the gradient is dL/dy.

    mse: the term (y - t)², the gradient 2 (y - t) / n_out.
    bce: binary cross-entropy on sigmoid(y), as PyTorch's
    ``binary_cross_entropy_with_logits``: the term max(y, 0) - y t + log1p(exp(-|y|)),
    the gradient (sigmoid(y) - t) / n_out. Both in the dtype (a float32 run rounds them
    once, from float64).
    cross_entropy: softmax over a sample's outputs, as PyTorch's ``cross_entropy`` with
    probability targets: with ``sample`` = (m, s) from :func:`per_sample`, the term
    t (m + log s - y), so that a sample's terms add up to -sum t log softmax(y), and the
    gradient (exp(y - m) / s - t) / n_samples. ``shares``: y's shares of the folds where
    the kernel kept them (:func:`per_sample`), so that exp(y - m) is computed once."""
    if loss_fn == "cross_entropy":
        m, s = sample
        term = o.cast(o.mul(t, o.sub(o.add(m, o.log(s)), y)))
        numerator = shares[1] if shares and shares[1] else shifted_exp(o, y, sample)
        softmax = o.div(numerator, s)
        return [], term, o.cast(o.div(o.sub(softmax, t), "n_samples"))
    if loss_fn == "bce":
        softplus = o.add(o.relu(y), o.log1p(o.exp(o.neg(o.abs(y)))))
        term = o.cast(o.sub(softplus, o.mul(y, t)))
        sigmoid = o.div(o.one, o.add(o.one, o.exp(o.neg(y))))
        return [], term, o.cast(o.div(o.sub(sigmoid, t), "n_out"))
    return [(d, o.sub(y, t))], o.mul(d, d), o.div(o.mul(o.two, d), "n_out")


def guard(o, y, loss_fn: str = "mse") -> str | None:
    """A cheap stand-in for the loss's term at output y, for the check that the loss is
    finite: every kernel adds the terms up only when the loss is logged, or when some
    guard is at or above the bound LARGE (NaN included), below which the sum of all terms
    cannot overflow. None: the term is its own guard (mse). bce and cross_entropy: y²,
    since a term is at most a few times the largest |y| for targets in [0, 1] (plus log of
    the outputs' count), so it spares the exp and log of every step."""
    return o.mul(y, y) if loss_fn in ("bce", "cross_entropy") else None


# The optimizers' values a kernel reads from its float64 array ``hyper``, in this order
# (fields of RunConfig: None where they do not apply, passed as 0).
HYPER = ("momentum", "beta1", "beta2", "eps", "weight_decay")


def state(optimizer: str) -> tuple[str, ...]:
    """The names of an optimizer's state per parameter (each starts at zero)."""
    return {"momentum": ("buf",), "nesterov": ("buf",), "adam": ("m", "v")}.get(optimizer, ())


def constants(optimizer: str, decay: bool) -> list[tuple[str, str]]:
    """(name, code) of the optimizer's constants, in the dtype F, from ``hyper``: assigned
    once per kernel. ``decay`` is the weight decay; a kernel whose runs have none omits
    it (kernels that defer the update keep it zero until the first one, as the rate)."""
    lets = []
    if optimizer in ("momentum", "nesterov"):
        lets += [("mu", "F(hyper[0])")]
    if optimizer == "adam":  # as PyTorch: 1 - beta in float64, then in the dtype
        lets += [("c1", "F(1.0 - hyper[1])"), ("beta2", "F(hyper[2])")]
        lets += [("c2", "F(1.0 - hyper[2])"), ("eps", "F(hyper[3])")]
    return lets + ([("decay_", "F(hyper[4])")] if decay else [])


def per_update(optimizer: str, number: str) -> list[tuple[str, str]]:
    """(name, code) of the values that change with the update's ``number`` (1 for the
    first), the same for every run of a kernel: for adam, the bias corrections as
    PyTorch computes them, in float64, bc1 = 1 - beta1^n and bc2 = sqrt(1 - beta2^n)
    (then in the dtype), and 1 / bc2 in the dtype, for dividing by bc2 without a
    divider (:meth:`Scalar.div_by`)."""
    if optimizer != "adam":
        return []
    return [
        ("bc1", f"1.0 - math.pow(hyper[1], {number})"),
        ("bc2", f"F(math.sqrt(1.0 - math.pow(hyper[2], {number})))"),
        ("inv_bc2", "F(1.0) / bc2"),
    ]


def rate(optimizer: str, lr: str) -> str:
    """The step size in the dtype, from the float64 learning rate ``lr``: lr itself, or
    for adam lr / bc1 (in float64, as PyTorch; bc1 from :func:`per_update`)."""
    return f"F({lr} / bc1)" if optimizer == "adam" else f"F({lr})"


def update(
    o, p, g, old, new, optimizer: str = "sgd", decay: bool = False
) -> tuple[list[tuple[str, str]], str]:
    """The update of one parameter p with gradient g: (lets, p's new value). ``old``: the
    optimizer's state values (:func:`state`), ``new``: the names the lets give the new
    ones, which the kernel stores. As PyTorch's optimizers (no dampening, amsgrad off):

    weight decay: g <- g + decay * p (one fused multiply-add), for every optimizer;
    sgd: p - rate * g;
    momentum: buf <- mu * buf + g; p - rate * buf;
    nesterov: buf as momentum; p - rate * (g + mu * buf);
    adam: m <- m + (1 - beta1) (g - m) (PyTorch's lerp); v <- beta2 v + (1 - beta2) g g;
    p + (-rate * m) / (sqrt(v) / bc2 + eps), with :func:`rate` and :func:`per_update`
    (sqrt(v) / bc2 with the division's bits but no divider: :meth:`Scalar.div_by`).
    Each fused multiply-add rounds once; everything else rounds at every operation."""
    lets = []
    if decay:
        lets.append(("g_", o.fma("decay_", p, g)))
        g = "g_"
    if optimizer in ("momentum", "nesterov"):
        lets.append((new[0], o.add(o.mul("mu", old[0]), g)))
        step = new[0] if optimizer == "momentum" else o.fma("mu", new[0], g)
        return lets, o.fma(o.neg("rate"), step, p)
    if optimizer == "adam":
        m, v = old
        lets.append((new[0], o.fma("c1", o.sub(g, m), m)))
        lets.append((new[1], o.add(o.mul("beta2", v), o.mul(o.mul("c2", g), g))))
        denom = o.add(o.div_by(o.sqrt(new[1]), "bc2", "inv_bc2"), "eps")
        return lets, o.add(p, o.div(o.mul(o.neg("rate"), new[0]), denom))
    return lets, o.fma(o.neg("rate"), g, p)


class Lanewise(Exception):
    """A rule that no vector instruction computes with the bits of the scalar code."""


class Scalar:
    """Operations on one value at a time, as code."""

    zero, two, one = "zero", "two", "1.0"

    def add(self, a, b):
        return f"({a} + {b})"

    def sub(self, a, b):
        return f"({a} - {b})"

    def mul(self, a, b):
        return f"({a} * {b})"

    def div(self, a, b):
        return f"({a} / {b})"

    def neg(self, a):
        return f"(-{a})"

    def fma(self, a, b, c):
        return f"fma({a}, {b}, {c})"

    def relu(self, v):
        return f"relu({v})"  # 0 if v < 0 else v, as one instruction

    def where_positive(self, v, h):
        return f"where_positive({v}, {h})"  # v if h > 0 else 0

    def tanh(self, v):
        return f"math.tanh({v})"

    def exp(self, v):
        return f"math.exp({v})"

    def log1p(self, v):
        return f"math.log1p({v})"

    def log(self, v):
        return f"math.log({v})"

    def sqrt(self, v):
        return f"sqrt({v})"  # fastbp.engine.intrinsics.sqrt, which LLVM vectorises

    def div_by(self, x, c, inverse):
        """x / c with the division's bits, from ``inverse`` = 1 / c, by fused
        multiply-adds (:func:`fastbp.engine.intrinsics.div_by`): exact for c in (0, 1] and
        x = 0, inf, NaN or from about 2^-916 (float64) or 2^-78 (float32), so for Adam's
        sqrt(v) / bc2."""
        return f"div_by({x}, {c}, {inverse})"

    def max(self, a, b):
        return f"max({a}, {b})"

    def abs(self, v):
        return f"abs({v})"

    def cast(self, v):
        return f"F({v})"  # to the dtype, F, which every kernel defines

    def dot(self, pairs, zero=None):
        """The sum of the products a * b over pairs, each added with one rounding, in
        order, onto a zero (one call: Numba types it much faster than nested fmas)."""
        return f"fma_chain({zero or self.zero}, {', '.join(f'{a}, {b}' for a, b in pairs)})"

    def sum(self, terms, zero=None):
        """The terms added left to right onto a zero (of the dtype, or the float64 0.0
        of a loss; it also turns a -0.0 first term into 0.0)."""
        text = zero or self.zero
        for term in terms:
            text = self.add(text, term)
        return text


class Vector(Scalar):
    """Operations on W-lane vectors (:mod:`fastbp.engine.intrinsics`), each rounding as its scalar
    counterpart lane by lane. A float of the dtype stands for itself in every lane."""

    zero = "zv"  # a vector of zeros, defined by the kernel

    def __init__(self, width: int):
        self.width = width

    @property
    def one(self):
        raise Lanewise  # a float64 constant: float32 lanes would round differently

    def add(self, a, b):
        return f"vadd({a}, {b})"

    def sub(self, a, b):
        return f"vsub({a}, {b})"

    def mul(self, a, b):
        return f"vmul({a}, {b})"

    def div(self, a, b):
        return f"vdiv({a}, {b})"

    def neg(self, a):
        return f"(-{a})"  # of a float only (the rate): a tuple has no minus

    def fma(self, a, b, c):
        return f"vfma_chain({c}, {a}, {b})"

    def relu(self, v):
        return f"vrelu({v})"

    def where_positive(self, v, h):
        return f"vwhere_positive({v}, {h})"

    def sqrt(self, v):
        return f"vsqrt({v})"

    def div_by(self, x, c, inverse):
        return f"vdiv({x}, {c})"  # the division: with one run's parameters in the lanes,
        # the divider is not what limits a step, and div_by made it slower (Adam, 8-3-8)

    def _lanewise(self, *operands):
        raise Lanewise  # no vector instruction for it here

    tanh = exp = log1p = log = max = abs = cast = _lanewise

    def dot(self, pairs, zero=None):
        return f"vfma_chain({zero or self.zero}, {', '.join(f'{a}, {b}' for a, b in pairs)})"

    def apply(self, rule, vectors, *args) -> str:
        """``rule(o, *vectors, *args)`` on vectors: in vector instructions where they
        give the scalar code's bits, else lane by lane (lane i: the rule on the vectors'
        lane i, in the dtype F)."""
        try:
            return rule(self, *vectors, *args)
        except Lanewise:
            return self._lanes(rule(SCALAR, *self._lane(vectors, i), *args) for i in self._each)

    def loss(self, y, t, d, loss_fn="mse", sample=None) -> tuple[list[tuple[str, str]], str, str]:
        """:func:`loss` on vectors, as :meth:`apply` (lane by lane, d becomes d_0, d_1...)."""
        try:
            return loss(self, y, t, d, loss_fn, sample)
        except Lanewise:
            lanes = [
                loss(
                    SCALAR,
                    *self._lane([y, t], i),
                    f"{d}_{i}",
                    loss_fn,
                    sample and self._lane(sample, i),
                )  # fmt: skip
                for i in self._each
            ]
            lets = [let for each in lanes for let in each[0]]
            return lets, self._lanes(x[1] for x in lanes), self._lanes(x[2] for x in lanes)

    def per_sample(self, ys, names, loss_fn="mse") -> list[tuple[str, str]]:
        """:func:`per_sample` on vectors of samples, as :meth:`apply`: lane by lane, each
        name then a vector of its lanes' values (named name_0, name_1...)."""
        try:
            return per_sample(self, ys, names, loss_fn)
        except Lanewise:
            lets = []
            for i in self._each:
                lane = per_sample(SCALAR, self._lane(ys, i), [f"{n}_{i}" for n in names], loss_fn)
                lets += [(name, f"F({value})") for name, value in lane]
            return lets + [(n, self._lanes(f"{n}_{i}" for i in self._each)) for n in names]

    @property
    def _each(self):
        return range(self.width)

    @staticmethod
    def _lane(vectors, i):
        return [f"{v}[{i}]" for v in vectors]

    @staticmethod
    def _lanes(values) -> str:
        return "(" + "".join(f"F({value}), " for value in values) + ")"


SCALAR = Scalar()
