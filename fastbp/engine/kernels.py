"""The loop kernel: one compiled kernel for every architecture, from the rules of the step.

It trains one run at a time, with every size read at run time: compiled once, it serves
every network, mini-batches included, where :mod:`fastbp.engine.codegen`'s kernels, faster, are
compiled per architecture. Its source is written here from the rules of
:mod:`fastbp.engine.step` (the activations, loss and update, as code) and loaded by
:mod:`fastbp.engine.kernel_cache`, like the generated kernels: edit a rule and it is
regenerated.

Contract of its functions: float arrays are C-contiguous and all float64 or all float32
(lr and loss sums stay float64); sizes, offsets and sample counts are unsigned (uint64),
because indexing with a signed integer costs a negative-index check on every access
(about 2x the time of these tiny loops).

Layout. Parameters live in one flat vector ``theta``: per layer l, W of shape
(fan_in, fan_out) row-major at ``w_off[l]``, then b at ``b_off[l]``; gradients ``G`` use
the same layout. Activations ``A`` and their gradients ``D`` are flat work buffers with
one block per layer m (0 = input, last = output) at ``a_off[m]``, stored *transposed*:
(sizes[m], n), one row per unit with the samples along it, so the inner loops run over
contiguous samples. Helpers take (buffer, offset) pairs rather than views: a view costs
reference counting per call, a reshaped view a function call (~60 ns), which on these
tiny layers is as much as the arithmetic.
"""

from __future__ import annotations

import textwrap
from functools import cache
from typing import NamedTuple

import numpy as np

from fastbp.config import ACTIVATIONS, LOSSES, OPTIMIZERS
from fastbp.engine import kernel_cache, step

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
        "for p in range(h, h + fan_in * n):",
        "    e, a = D[p], A[p]",
        f"    D[p] = {step.slope(S, 'e', 'a', activation)}",
    ]


def _loss() -> str:
    """``if loss == 0: ...``: per loss function, its terms summed and its gradient; for a
    loss that needs values of each sample's outputs first (step.folds), those go to
    ``scratch`` (one row per value) in a first pass over the samples."""
    out = []
    for code, loss_fn in enumerate(LOSSES):
        folds = step.folds(loss_fn)
        names = [f"scratch[{k} * n + i]" for k in range(len(folds))]
        sample = [f"scratch[{k} * n + p % n]" for k in range(len(folds))] or None
        lets, term, grad = step.loss(S, "A[y + p]", "T[t + p]", "d", loss_fn, sample)
        out += [f"{'if' if code == 0 else 'elif'} loss == {code}:  # {loss_fn}"]
        for name, (start, part, combine) in zip(names, folds, strict=True):
            first = start == "first"
            share = part(S, "A[y + j * n + i]", names)
            out += [
                "    for i in range(n):",
                f"        {name} = {part(S, 'A[y + i]', names) if first else 'zero'}",
                f"        for j in range({1 if first else 0}, units):",
                f"            {name} = {combine(S, name, share)}",
            ]
        out += [
            "    for p in range(count):",
            *(f"        {name} = {value}" for name, value in lets),
            f"        total += float({term})  # float64 (float(): also in plain Python)",
            f"        D[y + p] = {grad}",
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


def _indent(text: str, spaces: int) -> str:
    return textwrap.indent(text, " " * spaces).lstrip()


@cache
def source() -> str:
    return _TEMPLATE.format(
        activate=_indent(_by_activation(_activate), 4),
        slope=_indent(_by_activation(_slope), 4),
        loss=_indent(_loss(), 4),
        update=_indent(_update(), 8),
        per_sample_means=tuple(k for k, fn in enumerate(LOSSES) if step.per_sample_mean(fn)),
    )


_TEMPLATE = '''\
"""The loop kernel: generated by fastbp.engine.kernels. Do not edit: regenerated when needed."""

import math

import numpy as np

from fastbp.engine.intrinsics import div_by, fma, relu, sqrt, where_positive
from fastbp.engine.kernel_cache import cached_njit

PER_SAMPLE_MEANS = {per_sample_means}  # loss codes whose mean is over the samples only


@cached_njit
def _dense(theta, w, b, A, h, z, fan_in, fan_out, n):
    """Z = (H.T @ W + b).T: H (fan_in, n) at A[h:], Z (fan_out, n) at A[z:]."""
    for j in range(fan_out):
        row = z + j * n
        for i in range(n):
            A[row + i] = 0.0
        for k in range(fan_in):
            w_kj = theta[w + k * fan_out + j]
            for i in range(n):
                A[row + i] = fma(A[h + k * n + i], w_kj, A[row + i])
        b_j = theta[b + j]
        for i in range(n):
            A[row + i] += b_j


@cached_njit
def _activate(A, start, count, act):
    """Apply activation number ``act`` in place to A[start : start + count]."""
    zero = A.dtype.type(0.0)
    {activate}


@cached_njit
def _dense_grads(A, h, D, z, G, w, b, fan_in, fan_out, n, use_bias):
    """dW = H @ dZ.T and db = dZ summed over samples (zero without bias), into G."""
    for k in range(fan_in):
        for j in range(fan_out):
            s = G.dtype.type(0.0)  # sums in the parameters' own precision
            for i in range(n):
                s = fma(A[h + k * n + i], D[z + j * n + i], s)
            G[w + k * fan_out + j] = s
    for j in range(fan_out):
        s = G.dtype.type(0.0)
        if use_bias:
            for i in range(n):
                s += D[z + j * n + i]
        G[b + j] = s


@cached_njit
def _backprop_input(theta, w, A, D, h, z, fan_in, fan_out, n, act):
    """dH = (W @ dZ) * act'(Z_in) into D[h:], the slope written via H = act(Z_in) at A[h:]."""
    zero = D.dtype.type(0.0)
    for k in range(fan_in):
        row = h + k * n
        for i in range(n):
            D[row + i] = 0.0
        for j in range(fan_out):
            w_kj = theta[w + k * fan_out + j]
            for i in range(n):
                D[row + i] = fma(D[z + j * n + i], w_kj, D[row + i])
    {slope}


@cached_njit
def workspace(sizes, n_samples, theta):
    """Offsets a_off (uint64, one more than layers) and zeroed buffers A, D for n_samples,
    of theta's dtype."""
    a_off = np.zeros(sizes.shape[0] + 1, dtype=np.uint64)
    for m in range(sizes.shape[0]):
        a_off[m + 1] = a_off[m] + sizes[m] * n_samples
    return a_off, np.zeros(a_off[-1], dtype=theta.dtype), np.zeros(a_off[-1], dtype=theta.dtype)


@cached_njit
def forward(theta, net, a_off, A, n):
    """Forward pass of the Network ``net`` for n samples: reads block 0 of A (inputs),
    writes every later block. Hidden layers: H = act(H_prev @ W + b); the last is linear."""
    sizes = net.sizes
    n_layers = sizes.shape[0] - 1
    for l in range(n_layers):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        _dense(theta, net.w_off[l], net.b_off[l], A, a_off[l], a_off[l + 1], fan_in, fan_out, n)
        if l < n_layers - 1:
            _activate(A, a_off[l + 1], fan_out * n, net.activation)


@cached_njit
def loss_and_output_grad(A, D, y, T, t, count, loss, units, scratch):
    """Return the loss of the count outputs Y = A[y:] against T[t:], a (units, n) block
    (loss function number ``loss``: the sum of its terms over its divisor), and write its
    gradient dL/dY to D[y:]. ``scratch``: room for two values per sample."""
    total = 0.0  # the loss is summed in float64 whatever the dtype
    F = D.dtype.type  # the gradient stays in the dtype
    n = count // units
    zero, two, n_out, n_samples = F(0.0), F(2.0), F(count), F(n)
    {loss}
    return total / (n if loss in PER_SAMPLE_MEANS else count)


@cached_njit
def backward(theta, net, a_off, A, D, n, G):
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
        _dense_grads(A, h, D, z, G, w_off[l], b_off[l], fan_in, fan_out, n, net.bias)
        if l > 0:
            _backprop_input(theta, w_off[l], A, D, h, z, fan_in, fan_out, n, net.activation)


@cached_njit
def _gather_transposed(dst, src, rows):
    """dst as a (width, n) block gets dst[k, i] = src[rows[i], k] (n = len(rows))."""
    n = rows.shape[0]
    for i in range(n):
        for k in range(src.shape[1]):
            dst[k * n + i] = src[rows[i], k]


@cached_njit
def loss_and_grad(theta, net, X, T, G):
    """Full-batch loss of theta (the Network ``net``) on X (n, n_in), T (n, n_out);
    writes dL/dtheta to G."""
    sizes = net.sizes
    n = np.uint64(X.shape[0])
    last = sizes.shape[0] - 1
    a_off, A, D = workspace(sizes, n, theta)
    every = np.arange(X.shape[0])
    T_t = np.empty(T.size, dtype=T.dtype)
    _gather_transposed(A, X, every)
    _gather_transposed(T_t, T, every)
    forward(theta, net, a_off, A, n)
    scratch = np.empty(2 * X.shape[0], dtype=theta.dtype)
    value = loss_and_output_grad(
        A, D, a_off[last], T_t, np.uint64(0), np.uint64(T.size), net.loss, sizes[last], scratch
    )
    backward(theta, net, a_off, A, D, n, G)
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
    a_off, A, D = workspace(sizes, n_samples, theta)
    G = np.empty_like(theta)
    every = np.arange(X.shape[0])
    T_all = np.empty(T.size, dtype=T.dtype)  # T transposed, like the output block
    T_batch = np.empty(T.size, dtype=T.dtype)
    _gather_transposed(T_all, T, every)
    full = batch_size >= X.shape[0]
    per_epoch = (X.shape[0] + batch_size - 1) // batch_size
    _gather_transposed(A, X, every)
    F = theta.dtype.type  # the update in the parameters' dtype
    P = theta.shape[0]
    state = np.zeros(2 * P, dtype=theta.dtype)  # the optimizer's, per parameter
    decay = hyper[4] != 0.0
    T_size = np.uint64(T.size)
    scratch = np.empty(2 * X.shape[0], dtype=theta.dtype)  # per-sample values of a loss
    i_log = 0
    for t in range(n_steps + 1):
        log_now = t == log_steps[i_log]
        if log_now or full:  # the loss over the whole dataset
            if not full:  # the last mini-batch overwrote the inputs
                _gather_transposed(A, X, every)
            forward(theta, net, a_off, A, n_samples)
            value = loss_and_output_grad(
                A, D, a_off[y], T_all, np.uint64(0), T_size, loss, sizes[y], scratch
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
            _gather_transposed(A, X, rows)
            _gather_transposed(T_batch, T, rows)
            forward(theta, net, a_off, A, n)
            size = sizes[y] * n
            batch_loss = loss_and_output_grad(
                A, D, a_off[y], T_batch, np.uint64(0), size, loss, sizes[y], scratch
            )
            if not math.isfinite(batch_loss):
                return t
        backward(theta, net, a_off, A, D, n, G)
        if rates.shape[0] > 0:
            lr = rates[t]
        {update}
    return -1
'''
