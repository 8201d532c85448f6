"""Compiled kernels: forward pass, MSE loss, backpropagation and SGD for an MLP of any depth.

Numeric code only: no validation, no I/O, no randomness (the caller passes all of it in).
Contract for every function: float arrays are C-contiguous and all float64 or all float32
(lr and loss sums stay float64); sizes, offsets
and sample counts are unsigned (uint64), because indexing with a signed integer costs a
negative-index check on every access (about 2× the time of these tiny loops here).

Layout. Parameters live in one flat vector ``theta``: per layer l, W of shape
(fan_in, fan_out) row-major at ``w_off[l]``, then b at ``b_off[l]``; gradients ``G`` use
the same layout. Activations ``A`` and their gradients ``D`` are flat work buffers with
one block per layer m (0 = input, last = output) at ``a_off[m]``, stored *transposed*:
(sizes[m], n), one row per unit with the samples along it, so the inner loops run over
contiguous samples. Helpers take (buffer, offset) pairs rather than views: a view costs
reference counting per call, a reshaped view a function call (~60 ns), which on these
tiny layers is as much as the arithmetic.

Arithmetic (it fixes the results' bits; a faster kernel must keep it). Every sum of
products is a chain of fused multiply-adds (one rounding each, :func:`fastbp.intrinsics.fma`)
onto a zero, in a fixed order: Z[j, i] = (sum over k ascending of H[k, i] * W[k, j]) + b[j];
dW[k, j] sums H[k, i] * dZ[j, i] over samples i ascending; dH[k, i] = (sum over j
ascending of dZ[j, i] * W[k, j]) times the slope. db[j] adds dZ[j, i] over i ascending.
The update p - lr * g is one fma too. The loss adds the squares (Y - T)² in float64
(plain multiplications and additions), in the order of the (n_out, n) block.

``fastmath`` is off: results stay closest to the NumPy reference, and the NaN/inf checks
that detect divergence keep working (``fastmath=True`` would compile them to ``False``).
Every jitted helper lives in this file because Numba's cache does not notice edits to
jitted functions in other files (``cached_njit`` is ``njit(cache=True)``, with a fallback
for read-only installs); the only globals are the activation codes below, which never
change (globals are frozen into compiled code).
"""

import math

import numpy as np

from fastbp.intrinsics import fma
from fastbp.numba_settings import cached_njit

# Activation codes: positions in fastbp.config.ACTIVATIONS (a test checks they agree).
RELU, TANH, SIGMOID, IDENTITY = 0, 1, 2, 3


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
    """Apply the activation in place to A[start : start + count]."""
    if act == RELU:
        for p in range(start, start + count):
            if A[p] < 0.0:  # NaN passes through, as with np.maximum
                A[p] = 0.0
    elif act == TANH:
        for p in range(start, start + count):
            A[p] = math.tanh(A[p])
    elif act == SIGMOID:
        for p in range(start, start + count):
            A[p] = 1.0 / (1.0 + math.exp(-A[p]))


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
    for k in range(fan_in):
        row = h + k * n
        for i in range(n):
            D[row + i] = 0.0
        for j in range(fan_out):
            w_kj = theta[w + k * fan_out + j]
            for i in range(n):
                D[row + i] = fma(D[z + j * n + i], w_kj, D[row + i])
    if act == RELU:
        for p in range(h, h + fan_in * n):
            if not A[p] > 0.0:
                D[p] = 0.0
    elif act == TANH:
        for p in range(h, h + fan_in * n):
            D[p] *= 1.0 - A[p] * A[p]
    elif act == SIGMOID:
        for p in range(h, h + fan_in * n):
            D[p] *= A[p] * (1.0 - A[p])


@cached_njit
def workspace(sizes, n_samples, theta):
    """Offsets a_off (uint64, one more than layers) and zeroed buffers A, D for n_samples,
    of theta's dtype."""
    a_off = np.zeros(sizes.shape[0] + 1, dtype=np.uint64)
    for m in range(sizes.shape[0]):
        a_off[m + 1] = a_off[m] + sizes[m] * n_samples
    return a_off, np.zeros(a_off[-1], dtype=theta.dtype), np.zeros(a_off[-1], dtype=theta.dtype)


@cached_njit
def forward(theta, sizes, w_off, b_off, act, a_off, A, n):
    """Forward pass for n samples: reads block 0 of A (inputs), writes every later block.

    Hidden layers: H = act(H_prev @ W + b); the last layer is linear.
    """
    n_layers = sizes.shape[0] - 1
    for l in range(n_layers):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        _dense(theta, w_off[l], b_off[l], A, a_off[l], a_off[l + 1], fan_in, fan_out, n)
        if l < n_layers - 1:
            _activate(A, a_off[l + 1], fan_out * n, act)


@cached_njit
def mse_and_output_grad(A, D, y, T, t, count):
    """Return mean((Y - T)²) over the count elements of Y = A[y:] and T[t:], and write
    its gradient 2 (Y - T) / count to D[y:]."""
    total = 0.0  # the loss is summed in float64 whatever the dtype
    two, n = D.dtype.type(2.0), D.dtype.type(count)  # the gradient stays in the dtype
    for p in range(count):
        d = A[y + p] - T[t + p]
        total += float(d * d)  # float64 (float(): also in plain Python)
        D[y + p] = two * d / n
    return total / count


@cached_njit
def backward(theta, sizes, w_off, b_off, act, use_bias, a_off, A, D, n, G):
    """Backpropagate from dL/dY (the last block of D); write dL/dtheta to G.

    Per layer, from the output back: dW = H_in @ dZ.T, db = row sums of dZ (zero when
    ``use_bias`` is false, so b stays zero), and for hidden inputs
    dZ_in = (W @ dZ) * act'(Z_in). Overwrites the hidden blocks of D.
    """
    for l in range(sizes.shape[0] - 2, -1, -1):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        h, z = a_off[l], a_off[l + 1]
        _dense_grads(A, h, D, z, G, w_off[l], b_off[l], fan_in, fan_out, n, use_bias)
        if l > 0:
            _backprop_input(theta, w_off[l], A, D, h, z, fan_in, fan_out, n, act)


@cached_njit
def _gather_transposed(dst, src, rows):
    """dst as a (width, n) block gets dst[k, i] = src[rows[i], k] (n = len(rows))."""
    n = rows.shape[0]
    for i in range(n):
        for k in range(src.shape[1]):
            dst[k * n + i] = src[rows[i], k]


@cached_njit
def loss_and_grad(theta, sizes, w_off, b_off, act, use_bias, X, T, G):
    """Full-batch loss of theta on X (n, n_in), T (n, n_out); writes dL/dtheta to G."""
    n = np.uint64(X.shape[0])
    last = sizes.shape[0] - 1
    a_off, A, D = workspace(sizes, n, theta)
    every = np.arange(X.shape[0])
    T_t = np.empty(T.size, dtype=T.dtype)
    _gather_transposed(A, X, every)
    _gather_transposed(T_t, T, every)
    forward(theta, sizes, w_off, b_off, act, a_off, A, n)
    loss = mse_and_output_grad(A, D, a_off[last], T_t, np.uint64(0), np.uint64(T.size))
    backward(theta, sizes, w_off, b_off, act, use_bias, a_off, A, D, n, G)
    return loss


@cached_njit
def train_kernel(
    theta,
    sizes,
    w_off,
    b_off,
    act,
    use_bias,
    lr,
    n_steps,
    log_steps,
    X,
    T,
    batch_size,
    order,
    losses,
):
    """Run ``n_steps`` SGD updates on theta in place, logging the full-dataset loss.

    X : (n_samples, n_in), T : (n_samples, n_out).
    log_steps : int64 (n_log,), increasing, last entry == n_steps. losses[i] is set to
        the loss after log_steps[i] updates; entries past a divergence are left as given.
    batch_size : samples per update; >= n_samples means full batch (``order`` unused).
    order : int64 (n_epochs, n_samples); row e is the sample order of epoch e, walked
        ``batch_size`` samples per update (the last batch of an epoch may be smaller).
    Returns -1, or the number of updates after which the loss became non-finite (theta
    then holds those parameters and training stopped there). All buffers are allocated
    before the loop.
    """
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
    lr_ = theta.dtype.type(lr)  # the update in the parameters' dtype
    i_log = 0
    for t in range(n_steps + 1):
        log_now = t == log_steps[i_log]
        if log_now or full:  # the loss over the whole dataset
            if not full:  # the last mini-batch overwrote the inputs
                _gather_transposed(A, X, every)
            forward(theta, sizes, w_off, b_off, act, a_off, A, n_samples)
            loss = mse_and_output_grad(A, D, a_off[y], T_all, np.uint64(0), np.uint64(T.size))
            if not math.isfinite(loss):
                return t
            if log_now:
                losses[i_log] = loss
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
            forward(theta, sizes, w_off, b_off, act, a_off, A, n)
            batch_loss = mse_and_output_grad(A, D, a_off[y], T_batch, np.uint64(0), sizes[y] * n)
            if not math.isfinite(batch_loss):
                return t
        backward(theta, sizes, w_off, b_off, act, use_bias, a_off, A, D, n, G)
        for p in range(theta.shape[0]):
            theta[p] = fma(-lr_, G[p], theta[p])
    return -1
