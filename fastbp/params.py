"""Network parameters: drawing them, checking user-given ones, and flattening them.

Parameters are a list with one ``(W, b)`` per layer, ``W`` of shape ``(fan_in, fan_out)``
and ``b`` of shape ``(fan_out,)``. The compiled kernel sees them as one flat float64 vector:
for each layer, ``W`` row-major, then ``b``.
"""

from functools import lru_cache

import numpy as np

from fastbp.config import RunConfig

Params = list[tuple[np.ndarray, np.ndarray]]


def layer_shapes(layers) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each weight layer."""
    return list(zip(layers[:-1], layers[1:], strict=False))


def init_params(config: RunConfig, rng: np.random.Generator | None = None) -> Params:
    """Draw initial parameters: weights by ``config.init``, biases zero.

    With ``rng=None`` the generator is ``numpy.random.default_rng(config.seed)``.
    ``he``: N(0, 2 / fan_in); ``xavier``: U(-a, a) with a = sqrt(6 / (fan_in + fan_out));
    ``normal``: N(0, init_scale²). Layers are drawn in order, input side first.
    """
    if rng is None:
        rng = np.random.default_rng(config.seed)
    params = []
    for fan_in, fan_out in layer_shapes(config.layers):
        if config.init == "he":
            W = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
        elif config.init == "xavier":
            a = np.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-a, a, size=(fan_in, fan_out))
        else:  # "normal"
            W = rng.normal(0.0, config.init_scale, size=(fan_in, fan_out))
        params.append((W, np.zeros(fan_out)))
    return params


def check_params(params, config: RunConfig) -> Params:
    """Return a float64 copy of user-given params after checking shapes and values.

    Raises ValueError naming the layer and the problem.
    """
    shapes = layer_shapes(config.layers)
    if len(params) != len(shapes):
        raise ValueError(
            f"params must have {len(shapes)} (W, b) pairs for layers {list(config.layers)}, "
            f"got {len(params)}"
        )
    checked = []
    for i, ((W, b), (fan_in, fan_out)) in enumerate(zip(params, shapes, strict=True)):
        W = np.array(W, dtype=np.float64)  # always a copy: the caller's arrays stay as given
        b = np.array(b, dtype=np.float64)
        if W.shape != (fan_in, fan_out) or b.shape != (fan_out,):
            raise ValueError(
                f"params[{i}] must be W of shape {(fan_in, fan_out)} and b of shape "
                f"{(fan_out,)}, got {W.shape} and {b.shape}"
            )
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ValueError(f"params[{i}] must be finite")
        if not config.bias and b.any():
            raise ValueError(f"params[{i}] b must be zero when bias is false")
        checked.append((W, b))
    return checked


def flatten(params: Params) -> np.ndarray:
    """One contiguous float64 vector: W (row-major) then b, layer by layer."""
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in params])


def unflatten(theta: np.ndarray, layers, copy: bool = True) -> Params:
    """Inverse of :func:`flatten`; copies, or views of ``theta`` with ``copy=False``."""
    params = []
    for w, shape, b in _slices(tuple(layers)):
        W, b = theta[w].reshape(shape), theta[b]
        params.append((W.copy(), b.copy()) if copy else (W, b))
    return params


@lru_cache(maxsize=256)  # a sweep unflattens every run's parameters
def _slices(layers: tuple) -> list[tuple[slice, tuple[int, int], slice]]:
    """Per layer: W's slice of the flat vector, W's shape, b's slice."""
    out, at = [], 0
    for fan_in, fan_out in layer_shapes(layers):
        end = at + fan_in * fan_out
        out.append((slice(at, end), (fan_in, fan_out), slice(end, end + fan_out)))
        at = end + fan_out
    return out


def offsets(layers) -> tuple[np.ndarray, np.ndarray]:
    """Start of each layer's W and b in the flat vector, as uint64 arrays (kernel indices)."""
    w_off, b_off, at = [], [], 0
    for fan_in, fan_out in layer_shapes(layers):
        w_off.append(at)
        at += fan_in * fan_out
        b_off.append(at)
        at += fan_out
    return np.array(w_off, dtype=np.uint64), np.array(b_off, dtype=np.uint64)


def logged_steps(steps: int, log_every: int, copy: bool = True) -> np.ndarray:
    """0, log_every, 2 log_every, ... below steps, then steps itself (int64); with
    ``copy=False``, one read-only array shared by every caller."""
    out = _logged_steps(steps, log_every)
    return out.copy() if copy else out


@lru_cache(maxsize=256)  # a sweep of many short runs asks for the same few, many times
def _logged_steps(steps: int, log_every: int) -> np.ndarray:
    below = -(-steps // log_every)  # multiples of log_every below steps
    out = np.empty(below + 1, dtype=np.int64)
    out[:below] = np.arange(below) * log_every
    out[below] = steps
    out.flags.writeable = False
    return out
