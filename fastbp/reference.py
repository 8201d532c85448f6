"""The readable NumPy implementation: backpropagation written out by hand, as in the report.

It is the oracle the compiled engine is tested against and the baseline the benchmarks
measure. Full batch only; same semantics as :func:`fastbp.train`.
"""

import math
import time

import numpy as np

from fastbp.config import RunConfig, RunResult
from fastbp.data import make_dataset
from fastbp.params import check_params, init_params, logged_steps

# name -> (activation, its derivative written in terms of the activation's output)
ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda h: (h > 0).astype(float)),
    "tanh": (np.tanh, lambda h: 1.0 - h**2),
    "sigmoid": (lambda z: 1.0 / (1.0 + np.exp(-z)), lambda h: h * (1.0 - h)),
    "identity": (lambda z: z, lambda h: np.ones_like(h)),
}


class Layer:
    """A fully-connected layer holding its weights W (n_in, n_out) and biases b (n_out,)."""

    def __init__(self, W, b):
        self.W = W.copy()
        self.b = b.copy()

    def forward(self, X):
        self.X = X  # kept for the backward pass
        return X @ self.W + self.b

    def backward(self, dZ):
        """Store dL/dW and dL/db; return dL/dX."""
        self.dW = self.X.T @ dZ
        self.db = dZ.sum(axis=0)
        return dZ @ self.W.T

    def parameters(self, bias=True):
        """The arrays an optimizer updates, with their gradients: W, and b if bias."""
        return [(self.W, self.dW), (self.b, self.db)] if bias else [(self.W, self.dW)]


class Optimizer:
    """torch.optim.SGD (momentum, nesterov, no dampening) and torch.optim.Adam (amsgrad
    off), with weight_decay added to every gradient; state starts at zero."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.state = {}  # id of a parameter array -> its momentum buffer, or Adam's (m, v)
        self.t = 0  # updates so far

    def step(self, parameters):
        """Update each (p, dL/dp) pair in place."""
        c = self.config
        self.t += 1
        lr = learning_rate(c, self.t)
        for p, g in parameters:
            g = g + c.weight_decay * p
            if c.optimizer in ("momentum", "nesterov"):
                buf = self.state.setdefault(id(p), np.zeros_like(p))
                buf *= c.momentum
                buf += g
                g = g + c.momentum * buf if c.optimizer == "nesterov" else buf
            if c.optimizer == "adam":
                m, v = self.state.setdefault(id(p), (np.zeros_like(p), np.zeros_like(p)))
                m += (1.0 - c.beta1) * (g - m)  # PyTorch's lerp
                v *= c.beta2
                v += (1.0 - c.beta2) * g * g
                step_size = lr / (1.0 - c.beta1**self.t)
                denom = np.sqrt(v) / np.sqrt(1.0 - c.beta2**self.t) + c.eps
                p -= step_size * m / denom
            else:
                p -= lr * g


def learning_rate(c: RunConfig, t: int) -> float:
    """The learning rate of update t (1 for the first), as PyTorch's schedulers give it
    in closed form, stepped after every update."""
    e = t - 1  # the scheduler's steps before this update
    if c.lr_schedule == "step":
        return c.lr * c.gamma ** (e // c.step_size)
    if c.lr_schedule == "exponential":
        return c.lr * c.gamma**e
    if c.lr_schedule == "cosine":
        return c.eta_min + (c.lr - c.eta_min) * (1 + math.cos(math.pi * e / c.steps)) / 2
    if c.lr_schedule == "warmup" or (c.lr_schedule == "warmup_cosine" and e < c.warmup_steps):
        ramp = (1.0 - c.start_factor) * min(e, c.warmup_steps) / c.warmup_steps
        return c.lr * (c.start_factor + ramp)
    if c.lr_schedule == "warmup_cosine":
        e, t_max = e - c.warmup_steps, c.steps - c.warmup_steps
        return c.eta_min + (c.lr - c.eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2
    return c.lr


def mse(Y, T):
    return np.mean((Y - T) ** 2)


def mse_grad(Y, T):
    return 2.0 * (Y - T) / Y.size


def bce(Y, T):
    """Binary cross-entropy on sigmoid(Y), written stably (as PyTorch's
    binary_cross_entropy_with_logits): mean of max(Y, 0) - Y T + log(1 + exp(-|Y|))."""
    return np.mean(np.maximum(Y, 0.0) - Y * T + np.log1p(np.exp(-np.abs(Y))))


def bce_grad(Y, T):
    return (1.0 / (1.0 + np.exp(-Y)) - T) / Y.size


def cross_entropy(Y, T):
    """Softmax cross-entropy with probability targets (as PyTorch's cross_entropy): the
    mean over samples of -sum T log softmax(Y), with the log-sum-exp taken stably."""
    m = Y.max(axis=1, keepdims=True)
    log_softmax = Y - m - np.log(np.exp(Y - m).sum(axis=1, keepdims=True))
    return -(T * log_softmax).sum() / len(Y)


def cross_entropy_grad(Y, T):
    m = Y.max(axis=1, keepdims=True)
    e = np.exp(Y - m)
    return (e / e.sum(axis=1, keepdims=True) - T) / len(Y)


LOSSES = {
    "mse": (mse, mse_grad),
    "bce": (bce, bce_grad),
    "cross_entropy": (cross_entropy, cross_entropy_grad),
}


def forward(layers, X, act):
    """Return the output and the hidden activations (needed by backward)."""
    hidden = []
    H = X
    for layer in layers[:-1]:
        H = act(layer.forward(H))
        hidden.append(H)
    return layers[-1].forward(H), hidden


def predict(params, X, activation: str):
    """Network outputs Y (n_samples, n_out) for inputs X with parameters [(W, b), ...]."""
    Y, _ = forward([Layer(W, b) for W, b in params], X, ACTIVATIONS[activation][0])
    return Y


def backward(layers, hidden, dY, act_grad):
    dH = layers[-1].backward(dY)
    for layer, H in zip(reversed(layers[:-1]), reversed(hidden), strict=True):
        dH = layer.backward(dH * act_grad(H))


def train(config: RunConfig, params=None) -> RunResult:
    """Full-batch training on the run's loss with its optimizer, one Python loop
    iteration per update."""
    if config.batch_size is not None and config.batch_size < config.n_samples:
        raise ValueError("the reference trains full batch only (batch_size None)")
    start = time.perf_counter()
    if params is None:
        params = init_params(config)
    layers = [Layer(W, b) for W, b in check_params(params, config)]
    act, act_grad = ACTIVATIONS[config.activation]
    loss_fn, loss_grad = LOSSES[config.loss_fn]
    X, T = make_dataset(config)
    optimizer = Optimizer(config)
    steps = logged_steps(config.steps, config.log_every)
    losses = np.full(len(steps), np.nan)
    diverged_at = None
    i_log = 0
    with np.errstate(all="ignore"):  # a diverging run overflows; it is reported, not warned
        for step in range(config.steps + 1):
            Y, hidden = forward(layers, X, act)
            loss = loss_fn(Y, T)
            if not np.isfinite(loss):
                diverged_at = step
                break
            if step == steps[i_log]:
                losses[i_log] = loss
                i_log += 1
            if step == config.steps:
                break
            backward(layers, hidden, loss_grad(Y, T), act_grad)
            optimizer.step([pair for layer in layers for pair in layer.parameters(config.bias)])
    return RunResult(
        config=config,
        logged_steps=steps,
        losses=losses,
        params=[(layer.W, layer.b) for layer in layers],
        diverged=diverged_at is not None,
        diverged_at=diverged_at,
        wall_s=time.perf_counter() - start,
    )
