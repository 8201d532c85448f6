"""The loop kernel: one compiled kernel for every architecture, from the rules of the step.

It trains one run at a time, with every size read at run time: compiled once, it serves
every network, mini-batches included, where :mod:`fastbp.engine.codegen`'s kernels are
compiled per architecture (seconds each). Its source is written here from the rules of
:mod:`fastbp.engine.step` (the activations, loss and update, as code) and loaded by
:mod:`fastbp.engine.kernel_cache`, like the generated kernels: edit a rule and it is
regenerated.

Its products of matrices (the forward pass, the weight gradients, the backpropagated
errors) run in tiles kept in vector registers, as codegen's single-run form does, with
the sizes given at run time: a product of an 8-row tile by two vectors of columns loads
each row once for 16 columns (:func:`fastbp.engine.intrinsics.vtile`). On networks
wider than a few units it takes 1.2-1.4x the time of a kernel generated for the
architecture on AVX-512, up to 2x on AVX2 with 8 samples; on the 8-3-8 it is about 5x
the generated vector form.
Every sum keeps its order (the tiles only choose which sums run side by side), so the
bits are those of every other form.

Contract of its functions: float arrays are C-contiguous and all float64 or all float32
(lr and loss sums stay float64); sizes, offsets and sample counts are unsigned (uint64),
because indexing with a signed integer costs a negative-index check on every access
(about 2x the time of these tiny loops).

Layout. Parameters live in one flat vector ``theta``: per layer l, W of shape
(fan_in, fan_out) row-major at ``w_off[l]``, then b at ``b_off[l]``; gradients ``G`` use
the same layout. Activations ``A`` and their gradients ``D`` are flat work buffers with
one block per layer m (0 = input, last = output) at ``a_off[m]``, stored *transposed*:
(sizes[m], stride), one row per unit with the samples along it, ``stride`` the samples
padded to whole tiles of columns (the padding is computed and never read), so the
inner loops run over contiguous samples. A weight gradient, a sum over the samples in
their order, runs its vectors along the layer's wider side, from a transposed copy.
Helpers take (buffer, offset) pairs rather than views: a view costs reference counting
per call, a reshaped view a function call (~60 ns), which on these tiny layers is as
much as the arithmetic.
"""

from __future__ import annotations

import textwrap
from functools import cache
from typing import NamedTuple

import numpy as np

from fastbp.config import ACTIVATIONS, LOSSES, OPTIMIZERS
from fastbp.engine import codegen, kernel_cache, step

S = step.SCALAR


class Network(NamedTuple):
    """A run's network, as the loop kernel reads it: the layer sizes, and each layer's
    offsets of W and b in theta (uint64 arrays, see the module's docstring); whether it
    has biases; its activation and loss function by their numbers (positions in
    fastbp.config.ACTIVATIONS and LOSSES): one compiled kernel serves them all."""

    sizes: np.ndarray
    w_off: np.ndarray
    b_off: np.ndarray
    activation: int
    bias: bool
    loss: int


class Training(NamedTuple):
    """How the loop kernel trains a run: the learning rate; the optimizer by its number
    (in fastbp.config.OPTIMIZERS) and its values (float64, in the order of
    fastbp.engine.step.HYPER); the logged update counts (int64, increasing, the last
    one the number of updates); samples per update (at least the data's: full batch),
    and ``order``, int64 (n_epochs, n_samples): row e the order of the samples in epoch
    e, walked a batch per update (unused in full batch); ``rates``, float64: empty, or
    the learning rate of each update (row u: update u + 1's), which then replaces lr."""

    lr: float
    optimizer: int
    hyper: np.ndarray
    log_steps: np.ndarray
    batch_size: int
    order: np.ndarray
    rates: np.ndarray


def loop_kernel():
    """The compiled loop kernel's module: ``train_kernel`` and ``loss_and_grad``."""
    return _module()


def _module():
    return kernel_cache.load(source())


def name() -> str:
    """The loop kernel's name in the kernel cache."""
    return kernel_cache.name_of(source())


def mark_cached() -> None:
    """Note that the loop kernel is in Numba's disk cache (after its first call)."""
    kernel_cache.mark_cached(name())


def is_cached() -> bool:
    """Whether the loop kernel is known to be in Numba's disk cache."""
    return kernel_cache.is_cached(name())


def _by_activation(statements) -> str:
    """``if act == 0: ... elif ...``: one branch per activation whose code is not a no-op,
    ``statements(activation)`` giving its lines."""
    out, keyword = [], "if"
    for code, activation in enumerate(ACTIVATIONS):
        lines = statements(activation)
        if lines:
            out += [f"{keyword} act == {code}:  # {activation}", *("    " + s for s in lines)]
            keyword = "elif"
    return "\n".join(out)


def _activate(activation) -> list[str]:
    if step.activate(S, "z", activation) == "z":
        return []
    return [
        "for p in range(start, start + count):",
        "    z = A[p]",
        f"    A[p] = {step.activate(S, 'z', activation)}",
    ]


def _slope(activation) -> list[str]:
    if step.slope(S, "e", "h", activation) == "e":
        return []
    return [
        "for p in range(h, h + fan_in * stride):",
        "    e, a = D[p], A[p]",
        f"    D[p] = {step.slope(S, 'e', 'a', activation)}",
    ]


def _loss() -> str:
    """``if loss == 0: ...``: per loss function, its gradient, and its terms summed where
    ``needed`` or where a term's guard (step.guard) is not below ``large`` (as every
    generated kernel does: a loss that cannot be non-finite is not added up at every
    step); for a loss that needs values of each sample's outputs first (step.folds),
    those go to ``scratch`` (one row per value) in a first pass over the samples, and
    each unit's share of a later fold (the softmax's exp(y - m)) to a row of its own
    after them, computed once. The outputs and their gradients are rows of ``stride``,
    the targets rows of ``n``."""
    out = []
    for code, loss_fn in enumerate(LOSSES):
        folds = step.folds(loss_fn)
        names = [f"scratch[{k} * n + i]" for k in range(len(folds))]
        kept = [None] + [
            f"scratch[({len(folds)} + {k - 1} * units + j) * n + i]" for k in range(1, len(folds))
        ]
        y, target = "A[y + j * stride + i]", "T[t + j * n + i]"
        lets, term, grad = step.loss(S, y, target, "d", loss_fn, names or None, kept)
        guard = step.guard(S, y, loss_fn) or term
        out += [f"{'if' if code == 0 else 'elif'} loss == {code}:  # {loss_fn}"]
        for k, (name, (start, part, combine)) in enumerate(zip(names, folds, strict=True)):
            first = start == "first"
            share = part(S, "A[y + j * stride + i]", names)
            out += [
                "    for i in range(n):",
                f"        {name} = {part(S, 'A[y + i]', names) if first else 'zero'}",
                f"        for j in range({1 if first else 0}, units):",
            ]
            if kept[k] is not None:  # kept for the gradient, and read back as kept
                out += [f"            {kept[k]} = {share}"]
                share = kept[k]
            out += [f"            {name} = {combine(S, name, share)}"]
        loop = [
            "    for j in range(units):",
            "        for i in range(n):",
            *(f"            {name} = {value}" for name, value in lets),
        ]
        out += [
            *loop,
            f"            n_large += 0 if {guard} < large else 1",
            f"            D[y + j * stride + i] = {grad}",
            "    if needed or n_large > 0:",
            *("    " + x for x in loop),
            f"                total += float({term})  # float64 (float(): also in plain Python)",
        ]
    return "\n".join(out)


def _update() -> str:
    """``if opt == 0 and not decay: ...``: per optimizer, with and without weight decay,
    the update of every parameter, its state in ``state`` (one block of P per value)."""
    out, keyword = [], "if"
    for code, optimizer in enumerate(OPTIMIZERS):
        names = step.state(optimizer)
        old = [f"state[{k} * P + p]" for k in range(len(names))]
        for decay in (False, True):
            lets, new = step.update(S, "theta[p]", "G[p]", old, names, optimizer, decay)
            out += [
                f"{keyword} opt == {code} and {'' if decay else 'not '}decay:  # {optimizer}",
                *(f"    {name} = {value}" for name, value in step.constants(optimizer, decay)),
                *(f"    {name} = {value}" for name, value in step.per_update(optimizer, "t + 1")),
                f"    rate = {step.rate(optimizer, 'lr')}",
                "    for p in range(P):",
                *(f"        {name} = {value}" for name, value in lets),
                *(f"        {o} = {n}" for o, n in zip(old, names, strict=True)),
                f"        theta[p] = {new}",
            ]
            keyword = "elif"
    return "\n".join(out)


def _tiles() -> str:
    """``_product``: the products of matrices, in tiles kept in vector registers
    (codegen's single-run form, written for sizes known at run time and any float dtype):
    tiles of the tile's rows, then of one row (the rows left over: tiles of 4 and 2 rows
    were no faster here), by two vectors, or one where the columns are one vector."""
    rows = codegen.tile_rows()
    lines = [
        "@cached_njit",
        "def _product(O, out, ldo, rows, columns, count, X, a, lda, Y, b, b_row, b_t):",
        '    """O[out + r * ldo + c] = the sum over m < count, ascending, of',
        "    X[a + m * lda + c] * Y[b + r * b_row + m * b_t], for r < rows and c < columns",
        '    (whole vectors of X\'s dtype), each product added with one rounding onto a zero."""',
        "    I = np.int64",
        "    out, ldo, a, lda, b = I(out), I(ldo), I(a), I(lda), I(b)",
        "    b_row, b_t, rows, count, columns = I(b_row), I(b_t), I(rows), I(count), I(columns)",
        "    two = columns % (2 * len(vzeros(X))) == 0",
        "    r0 = I(0)",
    ]
    for size, head in ((rows, f"while r0 + {rows} <= rows:"), (1, "while r0 < rows:")):
        pair, single = (codegen.tile_code(size, n, *_ARGS, arrays=("O", "X", "Y")) for n in (2, 1))
        lines += [f"    {head}", "        if two:", *("            " + x for x in pair)]
        lines += ["        else:", *("            " + x for x in single), f"        r0 += {size}"]
    return "\n".join(lines)


_ARGS = ("out", "ldo", "a", "lda", "b", "b_row", "b_t", "count", "r0", "columns")


def _indent(text: str, spaces: int) -> str:
    return textwrap.indent(text, " " * spaces).lstrip()


@cache
def source() -> str:
    return _TEMPLATE.format(
        activate=_indent(_by_activation(_activate), 4),
        slope=_indent(_by_activation(_slope), 4),
        loss=_indent(_loss(), 4),
        update=_indent(_update(), 8),
        tiles=_tiles(),
        per_sample_means=tuple(k for k, fn in enumerate(LOSSES) if step.per_sample_mean(fn)),
    )


_TEMPLATE = '''\
"""The loop kernel: generated by fastbp.engine.kernels. Do not edit: regenerated when needed."""

import math

import numpy as np

from fastbp.engine.intrinsics import (
    div_by, fma, relu, sqrt, vtile, vzeros, where_positive,
)
from fastbp.engine.kernel_cache import cached_njit

PER_SAMPLE_MEANS = {per_sample_means}  # loss codes whose mean is over the samples only
ZERO, ONE = np.uint64(0), np.uint64(1)  # every size unsigned: one _product for all calls


@cached_njit
def _padded(count, lanes):
    """count rounded up to whole tiles of columns: one vector where it fits in one (a tile
    of two would be half padding), else whole tiles of two (codegen._padded)."""
    count, lanes = np.uint64(count), np.uint64(lanes)
    columns = lanes if count <= lanes else np.uint64(2) * lanes
    return (count + columns - np.uint64(1)) // columns * columns


{tiles}


@cached_njit
def _dense(theta, w, b, A, h, z, fan_in, fan_out, n, stride):
    """Z = (H.T @ W + b).T: H (fan_in, n) at A[h:], Z (fan_out, n) at A[z:], rows of
    ``stride``."""
    columns = _padded(n, len(vzeros(A)))
    _product(A, z, stride, fan_out, columns, fan_in, A, h, stride, theta, w, ONE, fan_out)
    for j in range(fan_out):
        b_j = theta[b + j]
        row = z + j * stride
        for i in range(n):
            A[row + i] += b_j


@cached_njit
def _activate(A, start, count, act):
    """Apply activation number ``act`` in place to A[start : start + count]."""
    zero = A.dtype.type(0.0)
    {activate}


@cached_njit
def _dense_grads(A, h, D, z, G, w, b, fan_in, fan_out, n, stride, use_bias, tr, out):
    """dW = H @ dZ.T and db = dZ summed over samples (zero without bias), into G: each
    sum over the samples in order, side by side along the layer's wider side, read from
    a transposed copy in ``tr``; the products go through ``out``."""
    if fan_out >= fan_in:  # out (fan_in, fan_out padded): rows k, vectors along j
        rows, units, along, at, by, by_at = fan_in, fan_out, D, z, A, h
    else:  # out (fan_out, fan_in padded): rows j, vectors along k
        rows, units, along, at, by, by_at = fan_out, fan_in, A, h, D, z
    width = _padded(units, len(vzeros(A)))
    _transpose(tr, width, along, at, stride, units, n)
    _product(out, ZERO, width, rows, width, n, tr, ZERO, width, by, by_at, stride, ONE)
    k_step, j_step = (width, ONE) if fan_out >= fan_in else (ONE, width)
    for k in range(fan_in):
        for j in range(fan_out):
            G[w + k * fan_out + j] = out[k * k_step + j * j_step]
    for j in range(fan_out):
        s = G.dtype.type(0.0)
        if use_bias:
            for i in range(n):
                s += D[z + j * stride + i]
        G[b + j] = s


@cached_njit
def _transpose(dst, width, src, start, stride, units, n):
    """dst[i * width + u] = src[start + u * stride + i] for the n samples i and the units u."""
    for i in range(n):
        for u in range(units):
            dst[i * width + u] = src[start + u * stride + i]


@cached_njit
def _backprop_input(theta, w, A, D, h, z, fan_in, fan_out, n, stride, act):
    """dH = (W @ dZ) * act'(Z_in) into D[h:], the slope written via H = act(Z_in) at A[h:]."""
    columns = _padded(n, len(vzeros(A)))
    _product(D, h, stride, fan_in, columns, fan_out, D, z, stride, theta, w, fan_out, ONE)
    zero = D.dtype.type(0.0)
    {slope}


@cached_njit
def workspace(sizes, n_samples, theta):
    """Offsets a_off (uint64, one more than layers) and zeroed buffers A, D for n_samples,
    of theta's dtype, each layer's block a row of ``stride`` (the samples padded to whole
    tiles) per unit; and the stride, and zeroed room for the transposed copies and the
    products of the weight gradients."""
    lanes = len(vzeros(theta))
    stride = _padded(n_samples, lanes)
    a_off = np.zeros(sizes.shape[0] + 1, dtype=np.uint64)
    widest = np.uint64(0)
    for m in range(sizes.shape[0]):
        a_off[m + 1] = a_off[m] + sizes[m] * stride
        widest = max(widest, _padded(sizes[m], lanes))
    size = a_off[-1] + np.uint64(2 * lanes)  # with room for a vector past the last row
    A, D = np.zeros(size, dtype=theta.dtype), np.zeros(size, dtype=theta.dtype)
    tr = np.zeros(n_samples * widest, dtype=theta.dtype)
    return a_off, A, D, stride, tr, np.zeros(widest * widest, dtype=theta.dtype)


@cached_njit
def forward(theta, net, a_off, A, n, stride):
    """Forward pass of the Network ``net`` for n samples: reads block 0 of A (inputs),
    writes every later block. Hidden layers: H = act(H_prev @ W + b); the last is linear."""
    sizes = net.sizes
    n_layers = sizes.shape[0] - 1
    for l in range(n_layers):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        h, z = a_off[l], a_off[l + 1]
        _dense(theta, net.w_off[l], net.b_off[l], A, h, z, fan_in, fan_out, n, stride)
        if l < n_layers - 1:
            _activate(A, a_off[l + 1], fan_out * stride, net.activation)


@cached_njit
def loss_and_output_grad(A, D, y, stride, T, t, count, loss, units, scratch, needed):
    """Write the gradient dL/dY of the loss of the count outputs Y = A[y:] (units rows of
    ``stride``) against T[t:], a (units, n) block (loss function number ``loss``), to
    D[y:]; return the loss (the sum of its terms over its divisor) where ``needed`` or
    where it may not be finite, else 0.0. ``scratch``: room for 2 + units values per
    sample."""
    total = 0.0  # the loss is summed in float64 whatever the dtype
    F = D.dtype.type  # the gradient stays in the dtype
    n = count // units
    zero, two, n_out, n_samples = F(0.0), F(2.0), F(count), F(n)
    large = np.inf  # guards not below it: the terms may not add up to a finite sum
    if D.itemsize == 8:  # as codegen._large: count squares below it add up
        k, power = 0, np.uint64(1)
        while power < count:
            power *= np.uint64(2)
            k += 1
        large = 2.0 ** (1023 - k)
    n_large = 0
    {loss}
    return total / (n if loss in PER_SAMPLE_MEANS else count)


@cached_njit
def backward(theta, net, a_off, A, D, n, stride, G, tr, out):
    """Backpropagate from dL/dY (the last block of D) through the Network ``net``; write
    dL/dtheta to G.

    Per layer, from the output back: dW = H_in @ dZ.T, db = row sums of dZ (zero without
    biases, so b stays zero), and for hidden inputs dZ_in = (W @ dZ) * act'(Z_in).
    Overwrites the hidden blocks of D.
    """
    sizes, w_off, b_off = net.sizes, net.w_off, net.b_off
    for l in range(sizes.shape[0] - 2, -1, -1):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        h, z = a_off[l], a_off[l + 1]
        _dense_grads(A, h, D, z, G, w_off[l], b_off[l], fan_in, fan_out, n, stride, net.bias,
                     tr, out)  # fmt: skip
        if l > 0:
            _backprop_input(theta, w_off[l], A, D, h, z, fan_in, fan_out, n, stride,
                            net.activation)  # fmt: skip


@cached_njit
def _gather_transposed(dst, src, rows, stride):
    """dst as a (width, stride) block gets dst[k, i] = src[rows[i], k]."""
    n = rows.shape[0]
    for i in range(n):
        for k in range(src.shape[1]):
            dst[k * stride + i] = src[rows[i], k]


@cached_njit
def loss_and_grad(theta, net, X, T, G):
    """Full-batch loss of theta (the Network ``net``) on X (n, n_in), T (n, n_out);
    writes dL/dtheta to G."""
    sizes = net.sizes
    n = np.uint64(X.shape[0])
    last = sizes.shape[0] - 1
    a_off, A, D, stride, tr, out = workspace(sizes, n, theta)
    every = np.arange(X.shape[0])
    T_t = np.empty(T.size, dtype=T.dtype)
    _gather_transposed(A, X, every, stride)
    _gather_transposed(T_t, T, every, n)
    forward(theta, net, a_off, A, n, stride)
    scratch = np.empty((2 + sizes[last]) * X.shape[0], dtype=theta.dtype)
    value = loss_and_output_grad(
        A, D, a_off[last], stride, T_t, np.uint64(0), np.uint64(T.size), net.loss, sizes[last],
        scratch, True,
    )  # fmt: skip
    backward(theta, net, a_off, A, D, n, stride, G, tr, out)
    return value


@cached_njit
def train_kernel(theta, net, training, X, T, losses, plog):
    """Train theta in place, a run of the Network ``net``, as ``training`` (a Training)
    says, logging the full-dataset loss.

    X : (n_samples, n_in), T : (n_samples, n_out).
    losses : (n_log,): losses[i] is set to the loss after training.log_steps[i]
        updates; entries past a divergence are left as given. The optimizer's state
        starts at zero; the last batch of an epoch may be smaller than the others.
    plog : (n_log, P) or (0, P): where it has rows, plog[i] gets the parameters after
        log_steps[i] updates (for metrics computed from them).
    Returns -1, or the number of updates after which the loss became non-finite (theta
    then holds those parameters and training stopped there). All buffers are allocated
    before the loop.
    """
    sizes, loss, opt, hyper = net.sizes, net.loss, training.optimizer, training.hyper
    log_steps, batch_size, order = training.log_steps, training.batch_size, training.order
    lr, rates, n_steps = training.lr, training.rates, training.log_steps[-1]
    n_samples = np.uint64(X.shape[0])
    y = sizes.shape[0] - 1
    a_off, A, D, stride, tr, out = workspace(sizes, n_samples, theta)
    G = np.empty_like(theta)
    every = np.arange(X.shape[0])
    T_all = np.empty(T.size, dtype=T.dtype)  # T transposed, like the output block
    T_batch = np.empty(T.size, dtype=T.dtype)
    _gather_transposed(T_all, T, every, n_samples)
    full = batch_size >= X.shape[0]
    per_epoch = (X.shape[0] + batch_size - 1) // batch_size
    _gather_transposed(A, X, every, stride)
    F = theta.dtype.type  # the update in the parameters' dtype
    P = theta.shape[0]
    state = np.zeros(2 * P, dtype=theta.dtype)  # the optimizer's, per parameter
    decay = hyper[4] != 0.0
    T_size = np.uint64(T.size)
    scratch = np.empty((2 + sizes[y]) * X.shape[0], dtype=theta.dtype)  # values of a loss
    i_log = 0
    for t in range(n_steps + 1):
        log_now = t == log_steps[i_log]
        if log_now or full:  # the loss over the whole dataset
            if not full:  # the last mini-batch overwrote the inputs
                _gather_transposed(A, X, every, stride)
            forward(theta, net, a_off, A, n_samples, stride)
            value = loss_and_output_grad(
                A, D, a_off[y], stride, T_all, np.uint64(0), T_size, loss, sizes[y], scratch,
                log_now,
            )
            if not math.isfinite(value):
                return t
            if log_now:
                losses[i_log] = value
                if plog.shape[0] > 0:
                    plog[i_log, :] = theta
                i_log += 1
        if t == n_steps:
            break
        n = n_samples
        if not full:
            epoch, k = divmod(t, per_epoch)
            start = k * batch_size
            n = np.uint64(min(batch_size, X.shape[0] - start))
            rows = order[epoch, start : start + n]
            _gather_transposed(A, X, rows, stride)
            _gather_transposed(T_batch, T, rows, n)
            forward(theta, net, a_off, A, n, stride)
            size = sizes[y] * n
            batch_loss = loss_and_output_grad(
                A, D, a_off[y], stride, T_batch, np.uint64(0), size, loss, sizes[y], scratch,
                False,
            )
            if not math.isfinite(batch_loss):
                return t
        backward(theta, net, a_off, A, D, n, stride, G, tr, out)
        if rates.shape[0] > 0:
            lr = rates[t]
        {update}
    return -1
'''
