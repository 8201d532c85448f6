"""Training kernels generated for one architecture, every size a compile-time constant.

A kernel whose sizes are only known at run time, and whose arrays may overlap as far
as LLVM can tell, is not vectorised well: the loop kernel (:mod:`fastbp.engine.kernels`)
is 4-6x the vector form on the 8-3-8, though close to the single-run form on wide
networks, whose products it runs in the same tiles. Here the source of a kernel is written out for one architecture
(layer widths, samples, activation, bias, dtype, runs per block), with constant bounds
and one workspace array at constant offsets, and the runs of a block are the lanes of
the vector registers. Every piece of arithmetic comes from the rules of
:mod:`fastbp.engine.step`; this module decides where values live and in which loops the rules
run. The source is loaded through :mod:`fastbp.engine.kernel_cache`, so that Numba's on-disk
cache works for it.

The forms. The registers form (blocks of 8 runs, 16 in float32, of small networks:
the 8-3-8 among them) writes one step of one run as straight-line code with every
value in a local variable, inside a loop over the runs that LLVM vectorises: each local
becomes one vector register (or an aligned stack slot). Its code, and its compile time,
grow with the network: above register_limit(), runs are trained one at a time instead.
One run at a time (``train``, and every run of those larger networks) is trained by the
vector form where the samples and every layer fit in one vector register: straight-line
code on explicit vectors (:mod:`fastbp.engine.intrinsics`) of samples, or of a layer's units for
the weight gradients, kept in registers through the whole step. Wider networks get the
single-run form: each of the step's products of matrices (forward pass, weight gradients,
backpropagated errors) in tiles of a few rows by two vectors of columns, kept in vector
registers through each sum, along the samples or along a layer's units; the rest (the
activations, the loss, the update) in loops with constant bounds, which LLVM vectorises.
Mini-batch runs of networks that fit the vector form train in it too, one step variant
per batch size (:func:`minibatch_form`); others take the loop kernel.

What stops LLVM from vectorising the loop over the runs, found the hard way: a load
whose address does not move with the run (the data are therefore scalar locals), a
store to a second array (the loss goes through the workspace as squares and flags),
and a long chain of dependent additions in every step (the loss is added up only when
it is logged or may not be finite).

Bits. The generated code performs, for every run, the operations of the loop kernel in
the same order (:mod:`fastbp.engine.step` states that order), so a run's results are the same
whichever kernel trains it. Numba settings that speed it
up (:mod:`fastbp.engine.kernel_cache`) change how it is vectorised, never what it computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from fastbp import __version__
from fastbp.engine import kernel_cache, step
from fastbp.engine.step import SCALAR as S


@dataclass(frozen=True)
class Kernel:
    """A generated kernel's identity: everything its source is written for. Two runs
    train in the same kernel when they give equal Kernels."""

    layers: tuple
    activation: str
    bias: bool
    n_samples: int
    lanes: int  # runs side by side; 1: one run at a time
    dtype: str
    batch_size: int | None = None  # None: full batch
    loss_fn: str = "mse"
    optimizer: str = "sgd"
    decay: bool = False  # with weight decay
    scheduled: bool = False  # a learning rate per update (lr: (lanes, updates + 1)), not per run

    @property
    def form(self) -> str:
        """Its form: "registers", "vector", "single-run" or "vector, mini-batch" (form_for)."""
        return form_for(self.layers, self.n_samples, self.lanes, self.dtype, self.batch_size)


@cache
def block_kernel(kernel: Kernel):
    """(train_block, workspace): the compiled kernel (generated and compiled if needed)
    and the function that makes the buffers it works in (``*workspace()`` goes last).
    Thread-safe: each kernel is generated and imported once per process.

    ``train_block(theta, lr, log_steps, snap_steps, X, T_t, losses, snaps, diverged_at,
    order, hyper, plog, *workspace())`` trains ``kernel.lanes`` runs side by side, full-batch,
    or one run in mini-batches of ``kernel.batch_size`` (see :func:`minibatch_form`):

    theta : (P * lanes,) parameter p of run r at p * lanes + r (the layout of
        :func:`fastbp.params.flatten`); updated in place.
    lr : (lanes,) float64, one learning rate per run; for a ``scheduled`` kernel
        (lanes, updates + 1): lr[r, u], the rate of run r's update u + 1 (the last
        column is read and not used).
    log_steps : (n_log,) int64, increasing, ending with the last step: losses[r, i] is
        run r's full-dataset loss after log_steps[i] updates (NaN once it diverged).
    snap_steps : (lanes, S) int64: run r's parameters after snap_steps[r, s] updates are
        copied to snaps[r, s] (P values); -1 marks an unused slot.
    diverged_at : (lanes,) int64, written: -1, or the step after which the run's loss
        was non-finite; its later snapshots then hold the parameters of that step, as
        the loop kernel returns them when it stops.
    X : (n_samples, n_in); T_t : (n_out * n_samples,) the targets, transposed.
    order : (n_epochs, n_samples) int64, mini-batches only: row e is the sample order of
        epoch e, walked ``batch_size`` samples per update, as the loop kernel does.
    hyper : float64, the optimizer's values (fastbp.engine.step.HYPER), the same for all lanes.
    plog : (lanes, n_log, P), or (lanes, 0, P) for none: plog[r, i] gets run r's
        parameters after log_steps[i] updates (left as given once the run diverged).
    The optimizer's state starts at zero.
    """
    module = kernel_cache.load(_source(kernel))
    return module.train_block, module.workspace


def name(kernel: Kernel) -> str:
    """The kernel's name in the kernel cache."""
    return kernel_cache.name_of(_source(kernel))


def mark_cached(kernel: Kernel) -> None:
    """Note that the kernel is in Numba's disk cache (after its first call)."""
    kernel_cache.mark_cached(name(kernel))


def is_cached(kernel: Kernel) -> bool:
    """Whether the kernel is known to be in Numba's disk cache."""
    return kernel_cache.is_cached(name(kernel))


@cache
def _source(kernel: Kernel) -> str:
    """The kernel's source."""
    k = kernel
    return _write(k.layers, k.activation, k.bias, k.n_samples, k.lanes, k.dtype, k.batch_size,
                  k.loss_fn, k.optimizer, k.decay, k.scheduled)  # fmt: skip


# Architectures with at most this many products per step (forward, weight gradients and
# backpropagated errors, over all samples) are trained in blocks, in the registers form
# (8-3-8: 1,152; 8-8-8: 3,072, 10-20 s to compile); larger ones one run at a time. The
# limit is for 8 runs per vector register; with fewer it is smaller in proportion
# (measured on AVX2, 4 float64 per register: 8-8-8 in blocks 235 ns per run-step, one
# at a time 184; the 8-3-8 in blocks 65, one at a time 75).
REGISTER_LIMIT = 4096


def register_limit(dtype: str) -> int:
    """REGISTER_LIMIT for this dtype on the target CPU: in proportion to the runs one
    vector register holds, up to 8."""
    per_register = kernel_cache.vector_bits() // (64 if dtype == "float64" else 32)
    return REGISTER_LIMIT * min(per_register, 8) // 8


def _large(count: int, dtype: str) -> str:
    """(The source of) a bound such that ``count`` squares below it add up to a finite
    float64 sum: each below 2**(1023 - ceil(log2(count))), so the sum stays below
    2**1023. float32 squares are added in float64, where any finite ones do."""
    if dtype == "float32":
        return "np.inf"
    return repr(2.0 ** (1023 - math.ceil(math.log2(count))))


def products(layers, n_samples) -> int:
    """Products of one training step: forward, weight gradients, backpropagated errors."""
    return 3 * n_samples * sum(a * b for a, b in zip(layers[:-1], layers[1:], strict=False))


def _layout(layers, N, L, n_state=0) -> dict:
    """Workspace offsets, registers form: the parameters (P * L values, the layout of
    fastbp.params.flatten with runs innermost: ``weights`` and ``biases`` per layer),
    their gradients (``grads``) and the ``n_state`` values of the optimizer's state in
    the same layout, the ``rates`` (L), the flags of ``large`` squares (L) and the loss
    ``terms`` (squares) of one step (n_out * N * L)."""
    w_off, b_off, at = [], [], 0
    for fan_in, fan_out in zip(layers[:-1], layers[1:], strict=False):
        w_off.append(at)
        at += fan_in * fan_out * L
        b_off.append(at)
        at += fan_out * L
    lay = dict(weights=w_off, biases=b_off, n_params=at, grads=at)
    at *= 2 + n_state
    lay["rates"], lay["large"], lay["terms"] = at, at + L, at + 2 * L
    lay["size"] = at + 2 * L + N * layers[-1] * L
    return lay


def form_for(layers, n_samples, lanes, dtype, batch_size=None) -> str:
    """Which form a block kernel of ``lanes`` runs takes: "registers" (runs side by side),
    "vector" or "single-run" (one run at a time), "vector, mini-batch"; see the module
    docstring."""
    if batch_size is not None:
        return "vector, mini-batch"
    if lanes > 1:
        return "registers"
    return "vector" if _vector_width(layers, n_samples, dtype) else "single-run"


def minibatch_form(layers, n_samples, batch_size, dtype) -> bool:
    """Whether a generated kernel trains mini-batches of ``batch_size`` (else the loop
    kernel does): one run at a time in the vector form, where every layer, and all the
    samples, fit in one vector register."""
    return batch_size < n_samples and _vector_width(layers, n_samples, dtype) is not None


def _write(
    layers,
    activation,
    bias,
    n_samples,
    lanes,
    dtype,
    batch_size=None,
    loss_fn="mse",
    optimizer="sgd",
    decay=False,
    scheduled=False,
) -> str:
    L, N = lanes, n_samples
    form = form_for(layers, N, L, dtype, batch_size)
    n_state = len(step.state(optimizer))
    opt = (optimizer, decay)
    # The full-batch forms (registers, vector) defer each update to the next step: their
    # first step applies none (rate and weight decay zero), and step t applies update t.
    deferred = form in ("registers", "vector")
    number = "t" if deferred else "t + 1"
    # What changes with every update: the learning rate where it is scheduled (row u of
    # lr: update u + 1's), adam's step size and bias corrections.
    schedule = [f"{n} = {v}" for n, v in step.per_update(optimizer, number)]
    if optimizer == "adam" or scheduled:
        lr_r, lr_0 = (f"lr[r, {number} - 1]", f"lr[0, {number} - 1]") if scheduled else (
            "lr[r]", "lr[0]")  # fmt: skip
        if form == "registers":
            rates = _layout(layers, N, L, n_state)["rates"]
            schedule += [
                f"for r in range({L}):",
                f"    ws[{rates} + r] = {step.rate(optimizer, lr_r)}",
            ]
        else:
            schedule += [f"rate = {step.rate(optimizer, lr_0)}"]
    width = _vector_width(layers, N, dtype) if form.startswith("vector") else None
    slot, param, where = "p * snaps.shape[0] + r", "p", None
    if form.startswith("vector"):
        lay = _layout_vectors(layers, N, width, batch_size, n_state)
        slot = param = "WHERE[p]"
        where = lay["where"]
        xt, x, tt = (
            lay[k + ("_all" if batch_size else "")] for k in ("inputs_t", "inputs", "targets_t")
        )
        data = [
            f"    rate = {'lr_[0]' if batch_size else 'zero'}",
            f"    for i in range({N}):",
            f"        for k in range({layers[0]}):",
            f"            ws[{xt} + k * {width} + i] = X[i, k]",
            f"            ws[{x} + i * {width} + k] = X[i, k]",
            f"        for j in range({layers[-1]}):",
            f"            ws[{tt} + j * {width} + i] = T_t[j * {N} + i]",
        ]
        if batch_size:
            body = _step_minibatch(
                layers, activation, bias, N, batch_size, width, lay, loss_fn, opt
            )
        else:
            body = (
                _step_vectors(layers, activation, bias, N, width, lay, loss_fn, opt)
                + _checks(1, slot)
                + ["if t == 0:  # from now on, every step starts with the last one's update"]
                + ["    rate = lr_[0]", *(["    decay_ = F(hyper[4])"] if decay else [])]
            )
    elif form == "single-run":
        tile = _tile(dtype)
        lay = _layout_single(layers, N, tile, n_state)
        NP, n_in = lay["padded"], layers[0]
        data = [
            "    rate = lr_[0]",
            f"    for i in range({N}):",
            f"        for k in range({n_in}):",
            f"            ws[{lay['acts'][0]} + k * {NP} + i] = X[i, k]",
            *(
                [f"            ws[{lay['acts_t'][0]} + i * {_padded(n_in, tile)} + k] = X[i, k]"]
                if 0 in lay["acts_t"]
                else []
            ),
            f"    for p in range({N * layers[-1]}):",
            f"        ws[{lay['targets']} + p] = T_t[p]",
        ]
        body = _step_single(layers, activation, bias, N, lay, tile, loss_fn, opt)
    else:
        lay = _layout(layers, N, L, n_state)
        # The data as scalar locals: loads from the workspace at addresses that do not
        # move with the lane would stop LLVM from proving the lanes independent.
        data = [f"    x{i}_{k} = F(X[{i}, {k}])" for i in range(N) for k in range(layers[0])]
        data += [f"    y{p} = F(T_t[{p}])" for p in range(N * layers[-1])]
        body = _step_registers(layers, activation, bias, N, L, lay, loss_fn, opt)
    if schedule and deferred:
        schedule = ["if t > 0:", *("    " + line for line in schedule)]
    body = schedule + body
    constants = [f"    {n} = {v}" for n, v in step.constants(optimizer, decay)]
    if deferred:  # see above: no update at the first step
        constants += ["    decay_ = zero"] * decay + ["    bc2 = one"] * (optimizer == "adam")
    out = [
        f'"""Generated by fastbp.engine.codegen (fastbp {__version__}) for layers {list(layers)}, '
        f"activation {activation}, bias {bias}, loss {loss_fn}, optimizer {optimizer}"
        f"{' with weight decay' if decay else ''}{', scheduled learning rates' if scheduled else ''},",
        f"{N} samples{f' in batches of {batch_size}' if batch_size else ''}, {L} runs per "
        f"block, {dtype}, {form} form.\n"
        'Do not edit: regenerated when needed."""',
        "",
        "import math",
        "",
        "import numpy as np",
        "",
        "from fastbp.engine.intrinsics import div_by, fma, fma_chain, not_below, relu, sqrt, "
        "stack_align_64, where_positive, vadd, vcount_not_below, vdiv, vfma_chain, vload, vmul, "
        "vrelu, vsqrt, vstore, vsub, vtile, vtile_sums, vwhere_positive",
        "from fastbp.engine.kernel_cache import cached_njit",
        "",
        f"F = np.{dtype}",
        "I = np.int64",
        f"LARGE = F({_large(layers[-1] * N, dtype)})  # see fastbp.engine.codegen._large",
        f"SIZE = {lay['size']}",
        f"N_THETA = {lay['n_params'] if where is None else len(where)}",
        *(
            []
            if where is None
            else [f"WHERE = np.array({where})  # parameter p lives in ws[WHERE[p]]"]
        ),
        "",
        "",
        "def workspace():",
        '    """The buffers train_block works in, made here, in Python: a kernel that allocates',
        "    its own makes Numba import its array implementations when it loads the kernel from",
        '    the cache (a fifth of a fresh process\'s time to its first trained run)."""',
        f"    return np.zeros(SIZE + 64, dtype=F), np.empty({L}, dtype=F), np.zeros({L}), np.ones({L}, dtype=np.bool_)",
        "",
        "",
        "@cached_njit",
        "def train_block(theta, lr, log_steps, snap_steps, X, T_t, losses, snaps, diverged_at, order,",
        "                hyper, plog, buf, lr_, loss, alive):",
        f'    """Train {L} runs side by side: see fastbp.engine.codegen.block_kernel. buf, lr_, loss',
        '    and alive: from workspace(), new for each call."""',
        "    stack_align_64()  # vector registers spilled to the stack: aligned stores",
        "    # One workspace, aligned to 64 bytes: a cache line, one 512-bit vector.",
        "    first = (64 - buf.ctypes.data % 64) % 64 // buf.itemsize",
        "    ws = buf[first : first + SIZE]",
        "    zero = F(0.0)",
        "    one = F(1.0)",
        "    two = F(2.0)",
        f"    n_out = F({layers[-1] * N})",
        f"    n_samples = F({N})",
        f"    for r in range({L}):",
        f"        lr_[r] = lr[r{', 0' if scheduled else ''}]  # the update in the parameters' dtype",
        *constants,
        f"    n_alive = {L}",
        "    for p in range(N_THETA):",
        f"        ws[{param}] = theta[p]",
        *data,
        f"    for r in range({L}):",
        "        diverged_at[r] = -1",
        "    next_snap = _next_snap(snap_steps, I(-1))",  # int64: one compilation, not a literal's too
        "    i_log = 0",
        "    n_steps = log_steps[-1]",
        "    for t in range(n_steps + 1):",
        *["        " + line for line in body],
        "    for p in range(N_THETA):",
        f"        theta[p] = ws[{param}]",
        "",
        "",
        "@cached_njit",
        "def _next_snap(snap_steps, t):",
        '    """The first step after t at which some lane wants a snapshot (-1: none)."""',
        "    best = -1",
        "    for r in range(snap_steps.shape[0]):",
        "        for s in range(snap_steps.shape[1]):",
        "            if snap_steps[r, s] > t and (best < 0 or snap_steps[r, s] < best):",
        "                best = snap_steps[r, s]",
        "    return best",
        "",
    ]
    return "\n".join(out)


def _state_at(lay, at, optimizer) -> list[tuple[str, int]]:
    """(name, offset) of each value of the optimizer's state of the parameter at ``at``: in
    every form's workspace, value k in the parameters' layout after the gradients."""
    return [(name, (2 + k) * lay["grads"] + at) for k, name in enumerate(step.state(optimizer))]


def _update_lines(name, at, grad, lay, opt, r="") -> list[str]:
    """The update of the parameter at ws[at + r] (``grad``: its gradient, as code) into the
    local ``name`` and the workspace, its optimizer's state at ws[state k + at + r]."""
    optimizer, decay = opt
    names = step.state(optimizer)
    old = [f"ws[{offset}{r}]" for _, offset in _state_at(lay, at, optimizer)]
    lets, new = step.update(S, f"ws[{at}{r}]", grad, old, names, optimizer, decay)
    return [
        *(f"{n} = {v}" for n, v in lets),
        *(f"{o} = {n}" for o, n in zip(old, names, strict=True)),
        f"{name} = {new}",
        f"ws[{at}{r}] = {name}",
    ]


def _step_registers(layers, activation, bias, N, L, lay, loss_fn, opt) -> list[str]:
    """One step, register form: per lane, one straight-line body with every parameter,
    activation, error and gradient sum in a local variable; the loop over the lanes
    around it is what LLVM vectorises, one vector register per local.

    The body applies the last step's update (deferred, so that the parameters go from
    the update to the forward pass in registers, and the checks between steps see the
    parameters of this step; the rates and gradients are zero at step 0), runs the
    forward pass for all samples, adds up the loss, then runs the backward pass. Sums
    are written term by term in the order of the loop kernel. The loss is a long chain
    of dependent additions: placed before the backward pass, it runs alongside it."""
    n_layers = len(layers) - 1
    body = [f"rate = ws[{lay['rates']} + r]"]
    for l in range(n_layers):
        fi, fo = layers[l], layers[l + 1]
        names = [
            (f"w{l}_{k}_{j}", lay["weights"][l] + (k * fo + j) * L)
            for k in range(fi)
            for j in range(fo)
        ]
        names += [(f"b{l}_{j}", lay["biases"][l] + j * L) for j in range(fo)]
        for name, at in names:
            body += _update_lines(name, at, f"ws[{lay['grads'] + at} + r]", lay, opt, " + r")
    # acts[m][i][u]: unit u of layer m (0: the input) for sample i.
    acts = [[[f"x{i}_{k}" for k in range(layers[0])] for i in range(N)]]
    for l in range(n_layers):
        fi, fo = layers[l], layers[l + 1]
        hidden = l < n_layers - 1
        acts.append([[f"a{l + 1}_{i}_{j}" for j in range(fo)] for i in range(N)])
        for i in range(N):
            h = acts[l][i]
            for j in range(fo):
                v = S.add(S.dot([(h[k], f"w{l}_{k}_{j}") for k in range(fi)]), f"b{l}_{j}")
                if hidden:
                    body += [
                        f"v = {v}",
                        f"{acts[-1][i][j]} = F({step.activate(S, 'v', activation)})",
                    ]
                else:
                    body += [f"{acts[-1][i][j]} = {v}"]
    n_out, count = layers[-1], layers[-1] * N
    err = [[f"e{n_layers}_{i}_{j}" for j in range(n_out)] for i in range(N)]
    terms, samples = [], []
    for i in range(N):  # what the loss needs from each sample's outputs first (if anything)
        names = [f"m{i}", f"s{i}"]
        lets = step.per_sample(S, acts[-1][i], names, loss_fn)
        body += [f"{name} = {value}" for name, value in lets]
        samples.append(names if lets else None)
    for j in range(n_out):
        for i in range(N):
            p = j * N + i
            lets, term, grad = step.loss(S, acts[-1][i][j], f"y{p}", f"d{p}", loss_fn, samples[i])
            body += [*(f"{name} = {value}" for name, value in lets), f"{err[i][j]} = {grad}"]
            terms.append(term)
    # The loss is needed when logged, and to see a run diverge; adding up its squares at
    # every step, one after the other, would be a long chain of dependent additions. So
    # each step stores the squares and counts those at or above LARGE (a NaN or an inf
    # is, too): while none is, the loss is finite (the sum of count squares below LARGE
    # cannot overflow), and it is added up, in order, only when logged or when some are.
    body += [f"q{p} = {term}" for p, term in enumerate(terms)]
    body += [f"ws[{lay['terms'] + p * L} + r] = q{p}" for p in range(count)]
    flags = [f"not_below(q{p}, LARGE)" for p in range(count)]
    body += [f"ws[{lay['large']} + r] = {_tree_sum(flags)}"]
    loss = [
        "flags = zero",
        f"for r in range({L}):",
        f"    flags += ws[{lay['large']} + r]",
        "if t == log_steps[i_log] or flags > zero:  # some lane's loss is needed",
        f"    for r in range({L}):",
        "        total = 0.0  # float64, the terms in order",
        f"        for p in range({count}):",
        f"            total += float(ws[{lay['terms']} + p * {L} + r])",
        f"        loss[r] = total / np.uint64({N if step.per_sample_mean(loss_fn) else count})",
        "else:  # all finite: no need to add them up",
        f"    for r in range({L}):",
        "        loss[r] = 0.0",
    ]
    for l in range(n_layers - 1, -1, -1):
        fi, fo = layers[l], layers[l + 1]
        for k in range(fi):
            for j in range(fo):
                terms = [(acts[l][i][k], err[i][j]) for i in range(N)]
                body += [
                    f"ws[{lay['grads'] + lay['weights'][l] + (k * fo + j) * L} + r] = {S.dot(terms)}"
                ]
        for j in range(fo):
            db = S.sum([err[i][j] for i in range(N)]) if bias else "zero"
            body += [f"ws[{lay['grads'] + lay['biases'][l] + j * L} + r] = {db}"]
        if l > 0:
            below = [[f"e{l}_{i}_{k}" for k in range(fi)] for i in range(N)]
            for i in range(N):
                for k in range(fi):
                    v = S.dot([(err[i][j], f"w{l}_{k}_{j}") for j in range(fo)])
                    slope = step.slope(S, "v", acts[l][i][k], activation)
                    body += [f"v = {v}", f"{below[i][k]} = F({slope})"]
            err = below
    return [
        f"for r in range({L}):",
        *["    " + line for line in body],
        *loss,
        *_checks(L),
        "if t == 0:  # from now on, every step starts with the last one's update",
        f"    for r in range({L}):",
        f"        ws[{lay['rates']} + r] = lr_[r]",
        *(["    decay_ = F(hyper[4])"] if opt[1] else []),
    ]


def _tile(dtype) -> tuple[int, int, int]:
    """(lanes, rows, vectors): the tile of the single-run form's products of matrices,
    kept in vector registers: ``rows`` rows by ``vectors`` vectors of ``lanes`` columns.
    Measured on the digits' 64 x 32 layer (1,437 samples, float64; AVX-512 EPYC, and
    emulated AVX2): 8 rows by 2 vectors of 8 is 4.4x the plain loops the loop kernel had
    then (AVX-512, 32 registers), 4 rows by 2 vectors of 4 is 2.7x (AVX2, 16 registers);
    tiles whose rows are not a power of two were 3-8x slower than these."""
    bits = kernel_cache.vector_bits()
    return bits // (64 if dtype == "float64" else 32), 8 if bits == 512 else 4, 2


def tile_rows() -> int:
    """The rows of the products' tiles on the CPU the kernels are compiled for (_tile)."""
    return _tile("float64")[1]


def _padded(count: int, tile) -> int:
    """``count`` rounded up to whole tiles of columns: one vector where it fits in one
    (a tile of two would be half padding), else whole tiles."""
    columns = tile[0] if count <= tile[0] else tile[0] * tile[2]
    return -(-count // columns) * columns


def _along_outputs(fan_in, fan_out) -> bool:
    """Whether a layer's weight gradient runs its vectors along the outputs (else along
    the inputs): along the wider side."""
    return fan_out >= fan_in


def _layout_single(layers, N, tile, n_state=0) -> dict:
    """Workspace offsets for one run, single-run form. The parameters (``weights`` and
    ``biases`` per layer, the layout of fastbp.params.flatten), their gradients
    (``grads``) and the optimizer's state; per layer m, the activations ``acts`` and
    errors ``errors`` as (units, NP), NP (``padded``) the samples padded to whole tiles
    (the padding is computed and never read); per layer l its ``weight_grads``, as
    (fan_in, fan_out padded) along the outputs, else (fan_out, fan_in padded), and what
    that product reads transposed: ``errors_t[l + 1]`` (N, fan_out padded) or
    ``acts_t[l]`` (N, fan_in padded), zeros in their padding; the ``targets``
    (n_out, N), the loss ``terms`` (or guards) of one step (n_out, N), two values
    ``per_sample`` and one per output (``shares``) for some losses (step.folds). Each
    block starts on a 64-byte boundary."""
    NP = _padded(N, tile)
    lay = dict(
        weights=[],
        biases=[],
        weight_grads=[],
        acts=[],
        errors=[],
        acts_t={},
        errors_t={},
        padded=NP,
    )
    at = 0
    for fan_in, fan_out in zip(layers[:-1], layers[1:], strict=False):
        lay["weights"].append(at)
        lay["biases"].append(at + fan_in * fan_out)
        at += fan_in * fan_out + fan_out
    lay["n_params"] = lay["grads"] = at
    at *= 2 + n_state  # the gradients, the optimizer's state, in the same layout

    def block(size):
        nonlocal at
        at = -(-at // 16) * 16
        start, at = at, at + size
        return start

    for l, (fan_in, fan_out) in enumerate(zip(layers[:-1], layers[1:], strict=False)):
        if _along_outputs(fan_in, fan_out):
            lay["weight_grads"].append(block(fan_in * _padded(fan_out, tile)))
            lay["errors_t"][l + 1] = block(N * _padded(fan_out, tile))
        else:
            lay["weight_grads"].append(block(fan_out * _padded(fan_in, tile)))
            lay["acts_t"][l] = block(N * _padded(fan_in, tile))
    for width in layers:
        lay["acts"].append(block(width * NP))
        lay["errors"].append(block(width * NP))
    lay["targets"], lay["terms"] = block(layers[-1] * N), block(layers[-1] * N)
    lay["per_sample"], lay["shares"] = block(2 * N), block(layers[-1] * N)
    lay["size"] = block(0)
    return lay


def tile_code(
    n_rows, vectors, out, ldo, a, lda, b, b_row, b_t, count, r0, columns, finish=None,
    arrays=("ws", "ws", "ws"), lanes=None,
):  # fmt: skip
    """Lines that set ws[out + r * ldo + c], for the rows r0 to r0 + n_rows and every
    column c < columns (whole tiles of ``vectors`` vectors of one register), to the sum
    over m < count, ascending, of ws[a + m * lda + c] * ws[b + r * b_row + m * b_t], each
    product added with one rounding onto a zero (:func:`fastbp.engine.intrinsics.vtile`).
    A tile of n_rows rows by vectors of columns stays in registers through the whole sum:
    every sum keeps the loop kernel's order, the tile only chooses which sums run side by
    side. Arguments: code (names or numbers); ``arrays``: the names of the arrays
    written, read along the columns and read one value at a time, in place of ``ws``.

    ``finish(sum, row, offset)``: the lines that store a sum (a vector) of the row
    ``row`` (code) at ``offset`` in its block (code: r * ldo + c), in place of storing it
    as it is at out + offset; with ``lanes``, the width of a vector (the dtype's register)."""
    _, x, y = arrays
    if finish is None:
        args = ", ".join(map(str, (*arrays, out, ldo, a, lda, b, b_row, b_t, count, r0, columns)))
        return [f"vtile({args}, {n_rows}, {vectors})"]
    args = ", ".join(map(str, (x, y, a, lda, b, b_row, b_t, count, r0, "tc")))
    lines = [
        f"for tc in range(0, {columns}, {vectors * lanes}):",
        f"    ts = vtile_sums({args}, {n_rows}, {vectors})",
        f"    for q in range({n_rows}):",
        f"        row = {r0} + q",
        f"        at = row * {ldo} + tc",
    ]
    for u in range(vectors):
        sum_ = f"ts[q * {vectors} + {u}]" if vectors > 1 else "ts[q]"
        lines += ["        " + line for line in finish(sum_, "row", u * lanes)]
    return lines


def _product(
    tile, out, ldo, rows, columns, count, a, lda, b, b_row, b_t, finish=None
) -> list[str]:  # fmt: skip
    """Lines that set ws[out + r * ldo + c], for rows r < rows and columns c < columns
    (whole tiles), to the sum over m < count, ascending, of
    ws[a + m * lda + c] * ws[b + r * b_row + m * b_t], each sum finished by ``finish``
    (:func:`tile_code`: its offset is a number, to add to ``at``): tiles of the tile's
    rows, then of the powers of two left (others were 3-8x slower)."""
    lanes, tile_rows, vectors = tile
    if columns % (lanes * vectors):  # one vector of columns (_padded)
        vectors = 1
    constants = (out, ldo, a, lda, b, b_row, b_t, count)
    full = rows - rows % tile_rows
    lines = []
    if full:
        lines += [f"for r0 in range(0, {full}, {tile_rows}):"]
        code = tile_code(tile_rows, vectors, *constants, "r0", columns, finish, lanes=lanes)
        lines += ["    " + x for x in code]
    r0 = full
    while r0 < rows:
        n_rows = 1 << ((rows - r0).bit_length() - 1)
        lines += tile_code(n_rows, vectors, *constants, r0, columns, finish, lanes=lanes)
        r0 += n_rows
    return lines


def _step_single(layers, activation, bias, N, lay, tile, loss_fn, opt) -> list[str]:
    """One step of one run, single-run form: the loop kernel's sums in tiles of registers
    (:func:`tile_code`): the forward pass and the backpropagated errors as products
    with vectors along the samples, a weight gradient, a sum over the samples that must
    be added in order, with vectors along its wider side (the outputs, from the errors
    transposed, or the inputs, from the activations transposed)."""
    n_layers, NP, g = len(layers) - 1, lay["padded"], lay["grads"]
    V = step.Vector(tile[0])
    body = []
    for l in range(n_layers):
        fi, fo = layers[l], layers[l + 1]
        z, b, hidden = lay["acts"][l + 1], lay["biases"][l], l < n_layers - 1

        def forward(s, row, offset, z=z, b=b, hidden=hidden):
            value = V.apply(step.activate, ["v"], activation) if hidden else "v"
            return [
                f"v = {V.add(s, f'ws[{b} + {row}]')}",
                f"vstore(ws, at + {z + offset}, {value})",
            ]

        args = (z, NP, fo, NP, fi, lay["acts"][l], NP, lay["weights"][l], 1, fo, forward)
        body += _product(tile, *args)
        if l + 1 in lay["acts_t"]:  # the next weight gradient reads them transposed
            body += _transpose(lay["acts_t"][l + 1], _padded(fo, tile), z, NP, fo, N)
    y, dy, fo = lay["acts"][-1], lay["errors"][-1], layers[-1]
    names = [f"ws[{lay['per_sample']} + i]", f"ws[{lay['per_sample'] + N} + i]"]

    def kept(k, j):  # the folds' shares (exp(y - m) of the softmax), for the gradient
        return None if k == 0 else f"ws[{lay['shares']} + {j * N} + i]"

    ys = [f"ws[{y} + {j * NP} + i]" for j in range(fo)]
    firsts = step.per_sample(S, ys, names, loss_fn, kept)
    if firsts:  # what the loss needs from each sample's outputs first
        body += [f"for i in range({N}):", *(f"    {n} = {v}" for n, v in firsts)]
    sample = names if firsts else None
    out, target = f"ws[{y} + j * {NP} + i]", f"ws[{lay['targets']} + j * {N} + i]"
    shares = [None, f"ws[{lay['shares']} + j * {N} + i]"]
    lets, term, grad = step.loss(S, out, target, "d", loss_fn, sample, shares)
    guard = step.guard(S, out, loss_fn)
    sq = f"ws[{lay['terms']} + j * {N} + i]"
    terms = [
        f"for j in range({fo}):",
        f"    for i in range({N}):",
        *(f"        {n} = {v}" for n, v in lets),
    ]
    body += [
        *terms,
        f"        {sq} = {guard or term}",
        f"        ws[{dy} + j * {NP} + i] = {grad}",
        "n_large = 0  # the loss only when needed, as in the registers form",
        f"for p in range({fo * N}):",
        f"    n_large += 0 if ws[{lay['terms']} + p] < LARGE else 1",
        "loss[0] = 0.0",
        "if t == log_steps[i_log] or n_large > 0:",
        "    total = 0.0",
        *("    " + x for x in terms),
        f"            total += float({term})",
        f"    loss[0] = total / np.uint64({N if step.per_sample_mean(loss_fn) else fo * N})",
        *_checks(1),
    ]
    for l in range(n_layers - 1, -1, -1):
        fi, fo = layers[l], layers[l + 1]
        h, dz, gw, gb = (
            lay["acts"][l],
            lay["errors"][l + 1],
            lay["weight_grads"][l],
            g + lay["biases"][l],
        )
        if _along_outputs(fi, fo):  # GW (fi, fo padded): rows k, vectors along j
            fo_p, dt = _padded(fo, tile), lay["errors_t"][l + 1]
            body += _transpose(dt, fo_p, dz, NP, fo, N)
            body += _product(tile, gw, fo_p, fi, fo_p, N, dt, fo_p, h, NP, 1)
        else:  # GW (fo, fi padded): rows j, vectors along k
            fi_p = _padded(fi, tile)
            body += _product(tile, gw, fi_p, fo, fi_p, N, lay["acts_t"][l], fi_p, dz, NP, 1)
        body += [f"for j in range({fo}):", "    v = zero"]
        if bias:
            body += [f"    for i in range({N}):", f"        v = v + ws[{dz} + j * {NP} + i]"]
        body += [f"    ws[{gb} + j] = v"]
        if l > 0:
            dh = lay["errors"][l]

            def backprop(s, row, offset, dh=dh, h=h):
                return [
                    f"hv = vload(ws, at + {h + offset}, {tile[0]})",
                    f"vstore(ws, at + {dh + offset}, {V.apply(step.slope, [s, 'hv'], activation)})",
                ]

            args = (dh, NP, fi, NP, fo, dz, NP, lay["weights"][l], fo, 1, backprop)
            body += _product(tile, *args)
    for l in range(n_layers):
        fi, fo = layers[l], layers[l + 1]
        w, b = lay["weights"][l], lay["biases"][l]
        if _along_outputs(fi, fo):
            grad = f"ws[{lay['weight_grads'][l]} + k * {_padded(fo, tile)} + j]"
        else:
            grad = f"ws[{lay['weight_grads'][l]} + j * {_padded(fi, tile)} + k]"
        body += [
            f"for k in range({fi}):",
            f"    for j in range({fo}):",
            *("        " + x for x in _update_lines("new", w, grad, lay, opt, f" + k * {fo} + j")),
            f"for j in range({fo}):",
            *("    " + x for x in _update_lines("new", b, f"ws[{g + b} + j]", lay, opt, " + j")),
        ]
    return body


def _transpose(dst, stride, src, src_stride, units, N) -> list[str]:
    """dst[i * stride + u] = src[u * src_stride + i] for the N samples i and the units u."""
    return [
        f"for i in range({N}):",
        f"    for u in range({units}):",
        f"        ws[{dst} + i * {stride} + u] = ws[{src} + u * {src_stride} + i]",
    ]


def _vector_width(layers, N, dtype) -> int | None:
    """Lanes per vector of the vector form: 8, or 16 in float32 where 8 are too few;
    None where it does not apply (the samples or some layer wider than that)."""
    widest = max(N, *layers)
    for width in (8, 16) if dtype == "float32" else (8,):
        if widest <= width:
            return width
    return None


def _layout_vectors(layers, N, width, batch_size=None, n_state=0) -> dict:
    """Workspace offsets, vector form, each block a whole number of width-lane vectors
    (the lanes past a layer's or the samples' count are zeros): per layer, its weights
    as vectors along the inputs (layer 0: one per output unit) or along the outputs
    (later layers: one per input unit), then its biases as one vector; the gradients
    in the same layout; the data: X transposed (a vector of samples per input), X (a
    vector per sample), T transposed (inputs_t, inputs, targets_t). With mini-batches,
    these hold the batch, and inputs_t_all, inputs_all and targets_t_all the whole data
    set (for the loss that is logged). ``where[p]``: the slot of parameter p of the
    layout of fastbp.params.flatten."""
    lay = dict(weights=[], biases=[], where=[])
    at = 0
    for l, (fan_in, fan_out) in enumerate(zip(layers[:-1], layers[1:], strict=False)):
        lay["weights"].append(at)
        for k in range(fan_in):
            lay["where"] += [
                at + (j * width + k if l == 0 else k * width + j) for j in range(fan_out)
            ]
        at += (fan_out if l == 0 else fan_in) * width
        lay["biases"].append(at)
        lay["where"] += [at + j for j in range(fan_out)]
        at += width
    lay["grads"] = at
    at *= 2 + n_state  # the gradients, the optimizer's state, in the same layout
    data = (("inputs_t", layers[0]), ("inputs", N), ("targets_t", layers[-1]))
    for name, count in data + tuple((k + "_all", n) for k, n in data if batch_size):
        lay[name] = at
        at += count * width
    lay["size"] = at
    return lay


class _Vectors:
    """Code of the vector form: straight-line code on width-lane vectors held in local
    variables (tuples: see fastbp.engine.intrinsics), which stay in vector registers.

    Activations and errors are vectors of samples, one per unit: a{m}_{u} and
    e{m}_{u} for unit u of layer m; forward and backward passes broadcast each weight
    from its lane. A weight gradient sums over the samples in order: a chain of fused
    multiply-adds on vectors along the inputs for layer 0 (X[i, :] times e_j[i]), along
    the outputs for later layers (A[i, k] times the errors of sample i, er_i: the error
    vectors transposed, lane by lane). The update is deferred to the next step, as in
    the registers form."""

    def __init__(self, layers, activation, bias, width, lay, loss_fn="mse", opt=("sgd", False)):
        self.layers, self.activation, self.bias, self.width, self.lay = (
            layers,
            activation,
            bias,
            width,
            lay,
        )
        self.loss_fn, self.opt = loss_fn, opt
        self.V = step.Vector(width)

    def vec(self, at):
        return f"vload(ws, {at}, {self.width})"

    def weight(self, l, k, j):
        return f"w{l}_{j}[{k}]" if l == 0 else f"w{l}_{k}[{j}]"

    def tuple_(self, values):  # a vector from its lanes, zeros after them
        return "(" + "".join(f"{v}, " for v in values) + "zero, " * (self.width - len(values)) + ")"

    def data(self, N, xt, tt, x):
        """The data as vectors, from the workspace (code): per input unit, a vector of
        the N samples (X transposed, at xt); per output unit, of their targets (at tt);
        per sample, its inputs (at x)."""
        vec, layers = self.vec, self.layers
        inputs = [vec(xt + k * self.width) for k in range(layers[0])]
        targets = [vec(tt + j * self.width) for j in range(layers[-1])]
        return inputs, targets, [vec(x + i * self.width) for i in range(N)]

    def _vectors(self):
        """(name, offset, trained) of every parameter vector."""
        layers, lay = self.layers, self.lay
        for l in range(len(layers) - 1):
            count = layers[l + 1] if l == 0 else layers[l]  # see _layout_vectors
            yield from (
                (f"w{l}_{v}", lay["weights"][l] + v * self.width, True) for v in range(count)
            )
            yield f"b{l}", lay["biases"][l], self.bias

    def _update(self, at) -> tuple[list[str], str]:
        """(lines, new value) of the update of the parameter vector at ``at``; the lines
        store the optimizer's new state."""
        optimizer, decay = self.opt
        state = _state_at(self.lay, at, optimizer)
        old, names = [self.vec(offset) for _, offset in state], [name for name, _ in state]
        grad = self.vec(self.lay["grads"] + at)
        lets, new = step.update(self.V, self.vec(at), grad, old, names, optimizer, decay)
        lines = [f"{n} = {v}" for n, v in lets]
        lines += [f"vstore(ws, {offset}, {name})" for name, offset in state]
        return lines, new

    def update(self) -> list[str]:
        """The last step's update (rate: zero at step 0), the parameters into locals."""
        lines = [f"zv = {self.tuple_([])}"]
        for name, at, trained in self._vectors():
            if not trained:
                lines += [f"{name} = {self.vec(at)}"]
                continue
            state, new = self._update(at)
            lines += [*state, f"{name} = {new}", f"vstore(ws, {at}, {name})"]
        return lines

    def load(self) -> list[str]:
        """The parameters into locals, as they are."""
        return [f"zv = {self.tuple_([])}"] + [
            f"{n} = {self.vec(at)}" for n, at, _ in self._vectors()
        ]

    def apply_update(self) -> list[str]:
        """This step's update, from the gradients just computed, into the workspace."""
        lines = []
        for _, at, trained in self._vectors():
            if trained:
                state, new = self._update(at)
                lines += [*state, f"vstore(ws, {at}, {new})"]
        return lines

    def forward(
        self, N, inputs, targets, loss="loss[0]", when="t == log_steps[i_log] or n_large > 0"
    ):
        """(lines, gradients at the outputs): the forward pass of N samples (``inputs``: a
        vector of samples per input unit, ``targets`` per output unit, as code), and the
        loss into ``loss`` if ``when`` (else 0)."""
        layers, V = self.layers, self.V
        n_layers = len(layers) - 1
        lines, terms, grads = [f"a0_{k} = {x}" for k, x in enumerate(inputs)], [], []
        guards = []
        for l in range(n_layers):
            fi, fo = layers[l], layers[l + 1]
            for j in range(fo):
                pairs = [(f"a{l}_{k}", self.weight(l, k, j)) for k in range(fi)]
                z = "z" if l < n_layers - 1 else f"y{j}"  # outputs: the loss reads them later
                lines += [f"{z} = {V.add(V.dot(pairs), f'b{l}[{j}]')}"]
                if l < n_layers - 1:
                    lines += [f"a{l + 1}_{j} = {V.apply(step.activate, ['z'], self.activation)}"]
        n_out = layers[-1]
        outputs = [f"y{j}" for j in range(n_out)]
        firsts = V.per_sample(outputs, ["m", "s"], self.loss_fn)  # per sample, if needed
        lines += [f"{name} = {value}" for name, value in firsts]
        for j, y in enumerate(outputs):
            lets, term, grad = V.loss(y, targets[j], f"d{j}", self.loss_fn, firsts and ["m", "s"])
            lines += [f"{name} = {value}" for name, value in lets]
            terms.append(term)
            grads.append(grad)
            guards.append(step.guard(V, y, self.loss_fn))
        # the terms every step where they are their own guards, else only when needed
        each_step = guards[0] is None
        terms_at = [f"q{j} = {term}" for j, term in enumerate(terms)]
        lines += terms_at if each_step else [f"g{j} = {g}" for j, g in enumerate(guards)]
        checked = "q" if each_step else "g"
        lines += [
            "n_large = "
            + " + ".join(f"vcount_not_below({checked}{j}, LARGE)" for j in range(n_out)),
            f"{loss} = 0.0",
            f"if {when}:  # the loss only when needed",
            *([] if each_step else ["    " + line for line in terms_at]),
            "    total = 0.0",
            *[f"    total += float(q{j}[{i}])" for j in range(n_out) for i in range(N)],
            f"    {loss} = total / np.uint64({N if step.per_sample_mean(self.loss_fn) else n_out * N})",
        ]
        return lines, grads

    def backward(self, N, samples, grads) -> list[str]:
        """The backward pass of N samples (``samples``: each one's inputs as a vector, as
        code), from the output gradients: the parameters' gradients into the workspace."""
        layers, V, lay, g = self.layers, self.V, self.lay, self.lay["grads"]
        n_layers = len(layers) - 1
        lines = [f"e{n_layers}_{j} = {grad}" for j, grad in enumerate(grads)]
        for l in range(n_layers - 1, -1, -1):
            fi, fo = layers[l], layers[l + 1]
            errors = [[f"e{l + 1}_{j}[{i}]" for i in range(N)] for j in range(fo)]
            if l == 0:  # dW[:, j] = sum over i of X[i, :] e_j[i]
                for j in range(fo):
                    pairs = [(errors[j][i], samples[i]) for i in range(N)]
                    lines += [
                        f"vstore(ws, {g + lay['weights'][l] + j * self.width}, {V.dot(pairs)})"
                    ]
                if self.bias:
                    sums = self.tuple_([S.sum(e) for e in errors])
                    lines += [f"vstore(ws, {g + lay['biases'][l]}, {sums})"]
            else:  # dW[k, :] = sum over i of A[i, k] er_i
                lines += [f"er_{i} = {self.tuple_([e[i] for e in errors])}" for i in range(N)]
                for k in range(fi):
                    pairs = [(f"a{l}_{k}[{i}]", f"er_{i}") for i in range(N)]
                    lines += [
                        f"vstore(ws, {g + lay['weights'][l] + k * self.width}, {V.dot(pairs)})"
                    ]
                if self.bias:
                    total = V.sum([f"er_{i}" for i in range(N)])
                    lines += [f"vstore(ws, {g + lay['biases'][l]}, {total})"]
            for k in range(fi if l > 0 else 0):  # the errors of the layer below
                pairs = [(f"e{l + 1}_{j}", self.weight(l, k, j)) for j in range(fo)]
                slope = V.apply(step.slope, ["v", f"a{l}_{k}"], self.activation)
                lines += [f"v = {V.dot(pairs)}", f"e{l}_{k} = {slope}"]
        return lines


def _step_vectors(layers, activation, bias, N, width, lay, loss_fn, opt) -> list[str]:
    """One full-batch step of one run, vector form (see _Vectors)."""
    code = _Vectors(layers, activation, bias, width, lay, loss_fn, opt)
    inputs, targets, samples = code.data(N, lay["inputs_t"], lay["targets_t"], lay["inputs"])
    forward, grads = code.forward(N, inputs, targets)
    return code.update() + forward + code.backward(N, samples, grads)


def _step_minibatch(layers, activation, bias, N, B, width, lay, loss_fn, opt) -> list[str]:
    """One mini-batch step of one run, vector form, as the loop kernel takes it: at a
    logged step, the loss over the whole data set; then the batch of this step, its
    samples read from ``order``, its forward and backward passes, the size of the batch
    a constant (B, or the smaller last batch of an epoch), and the update (at once, not
    deferred as in the full-batch forms: the checks and the logged loss sit between an
    update and the next forward pass, and the parameters would not stay in registers
    across them anyway). The batch's vectors are built from X and T_t directly (writing
    them to memory and loading them back as vectors stalls on every load). A batch
    whose loss is not finite ends the run."""
    code = _Vectors(layers, activation, bias, width, lay, loss_fn, opt)
    per_epoch = -(-N // B)
    last = N - (per_epoch - 1) * B
    inputs, targets, _ = code.data(N, lay["inputs_t_all"], lay["targets_t_all"], lay["inputs_all"])
    full, _ = code.forward(N, inputs, targets, when="True")
    lines = [
        "if t == log_steps[i_log]:",
        *("    " + line for line in code.load() + full),
        "else:",
        "    loss[0] = 0.0",
        *_checks(1, "WHERE[p]"),
        f"epoch = t // {per_epoch}",
        f"start = (t - epoch * {per_epoch}) * {B}",
    ]
    sizes = [B] if last == B else [B, last]
    for size in sizes:
        rows = [f"r{i}" for i in range(size)]
        inputs = [code.tuple_([f"X[{r}, {k}]" for r in rows]) for k in range(layers[0])]
        targets = [code.tuple_([f"T_t[{j * N} + {r}]" for r in rows]) for j in range(layers[-1])]
        samples = [f"vload(ws, {lay['inputs_all']} + {r} * {width}, {width})" for r in rows]
        forward, grads = code.forward(size, inputs, targets, "batch_loss", "n_large > 0")
        body = [
            *(f"{r} = np.uint64(order[epoch, start + {i}])" for i, r in enumerate(rows)),
            f"n_out = F({layers[-1] * size})",
            f"n_samples = F({size})",
            *code.load(),
            *forward,
            "if not math.isfinite(batch_loss):  # the run ends here, as it stands",
            "    diverged_at[0] = t",
            "    for s in range(snap_steps.shape[1]):",
            "        if snap_steps[0, s] >= t:",
            "            for p in range(snaps.shape[2]):",
            "                snaps[0, s, p] = ws[WHERE[p]]",
            "    break",
            *code.backward(size, samples, grads),
            *code.apply_update(),
        ]
        if len(sizes) == 1:
            lines += body
        else:
            first = f"if start + {B} <= {N}:"
            lines += [first if size == B else "else:", *("    " + b for b in body)]
    return lines


def _checks(L, slot="p * snaps.shape[0] + r") -> list[str]:
    """Between steps: divergence, snapshots, logging, the end (both forms)."""
    copy = [  # sizes read at run time: LLVM leaves this rare loop rolled up (compiles faster)
        "for p in range(snaps.shape[2]):",
        f"    snaps[r, s, p] = ws[{slot}]",
    ]
    return [
        f"for r in range({L}):",
        "    if alive[r] and not math.isfinite(loss[r]):",
        "        alive[r] = False",
        "        n_alive -= 1",
        "        diverged_at[r] = t",
        "        for s in range(snap_steps.shape[1]):",
        "            if snap_steps[r, s] >= t:",
        *["                " + line for line in copy],
        "if t == next_snap:",
        f"    for r in range({L}):",
        "        for s in range(snap_steps.shape[1]):",
        "            if alive[r] and snap_steps[r, s] == t:",
        *["                " + line for line in copy],
        "    next_snap = _next_snap(snap_steps, t)",
        "if t == log_steps[i_log]:",
        f"    for r in range({L}):",
        "        losses[r, i_log] = loss[r] if alive[r] else np.nan",
        "    if plog.shape[1] > 0:  # the parameters, for metrics computed from them",
        f"        for r in range({L}):",
        "            if alive[r]:",
        "                for p in range(plog.shape[2]):",
        f"                    plog[r, i_log, p] = ws[{slot}]",
        "    i_log += 1",
        "if t == n_steps or n_alive == 0:",
        "    break",
    ]


def _tree_sum(terms) -> str:
    """The sum of terms as a balanced tree of additions (for sums whose order does not
    matter: small whole numbers)."""
    if len(terms) == 1:
        return terms[0]
    half = len(terms) // 2
    return f"({_tree_sum(terms[:half])} + {_tree_sum(terms[half:])})"


LANE_CHOICES = (1, 2, 4, 8, 16)


# Steps that call exp for every output or unit do not vectorise across runs: LLVM has no
# vector exp without a vector math library, so each lane calls it in turn. Measured on the
# 8-3-8 (AVX-512 EPYC), ns per run-step in blocks of 8 against one run at a time: sigmoid
# 391 against 224, bce 1,317 against 1,036 (tanh: 252 against 290, blocks still pay).
SCALAR_EXP = {"activation": ("sigmoid",), "loss_fn": ("bce", "cross_entropy")}
