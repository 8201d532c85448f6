"""The compiled gradients: central finite differences, and the reference's backward pass."""

import numpy as np
import pytest

from fastbp import RunConfig, reference
from fastbp.config import ACTIVATIONS, LOSSES
from fastbp.data import make_dataset
from fastbp.engine.kernels import loop_kernel
from fastbp.params import flatten, init_params, unflatten
from fastbp.train import network


def kernel_loss_and_grad(config, theta):
    X, T = make_dataset(config)
    G = np.zeros_like(theta)
    loss = loop_kernel().loss_and_grad(theta, network(config), X, T, G)
    return loss, G


def random_theta(config, seed=1):
    """Parameters with non-zero biases, so bias gradients are tested from a generic point."""
    rng = np.random.default_rng(seed)
    params = init_params(config, rng)
    if config.bias:
        params = [(W, rng.normal(0, 0.3, size=b.shape)) for W, b in params]
    return flatten(params)


@pytest.mark.parametrize("loss_fn", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("layers", [(8, 3, 8), (5, 4, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_gradient_matches_central_finite_differences(activation, layers, bias, loss_fn):
    config = RunConfig(layers=layers, activation=activation, bias=bias, loss_fn=loss_fn)
    theta = random_theta(config)
    _, G = kernel_loss_and_grad(config, theta)
    eps = 1e-6
    numeric = np.empty_like(theta)
    for p in range(theta.size):
        plus, minus = theta.copy(), theta.copy()
        plus[p] += eps
        minus[p] -= eps
        numeric[p] = (
            kernel_loss_and_grad(config, plus)[0] - kernel_loss_and_grad(config, minus)[0]
        ) / (2 * eps)
    if not bias:  # b is not trained: its gradient is reported as zero
        for _, db in unflatten(G, layers):
            assert not db.any()
        keep = np.concatenate(
            [
                np.concatenate([np.ones(W.size), np.zeros(b.size)])
                for W, b in unflatten(theta, layers)
            ]
        ).astype(bool)
        G, numeric = G[keep], numeric[keep]
    np.testing.assert_allclose(G, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss_fn", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_loss_and_gradient_match_the_reference_backward_pass(activation, loss_fn):
    config = RunConfig(layers=(8, 5, 4, 8), activation=activation, loss_fn=loss_fn)
    theta = random_theta(config, seed=2)
    loss, G = kernel_loss_and_grad(config, theta)

    layers = [reference.Layer(W, b) for W, b in unflatten(theta, config.layers)]
    act, act_grad = reference.ACTIVATIONS[activation]
    X, T = make_dataset(config)
    Y, hidden = reference.forward(layers, X, act)
    value, grad = reference.LOSSES[loss_fn]
    reference.backward(layers, hidden, grad(Y, T), act_grad)

    assert loss == pytest.approx(value(Y, T), rel=1e-13)
    np.testing.assert_allclose(
        G, flatten([(layer.dW, layer.db) for layer in layers]), rtol=1e-12, atol=1e-15
    )
