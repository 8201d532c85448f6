"""The loss floor and the dead units of the runs table, against brute force."""

import numpy as np
import pandas as pd
import pytest

from fastbp import RunConfig, reference, train
from fastbp.config import layers_text
from fastbp.data import make_dataset
from fastbp.metrics import dead_units, floors, loss_floor
from fastbp.params import flatten, init_params


def test_the_floor_of_the_encoder_is_4_64_with_biases_and_5_64_without():
    assert loss_floor(RunConfig()) == 4 / 64
    assert loss_floor(RunConfig(bias=False)) == 5 / 64
    assert loss_floor(RunConfig(layers=(8, 7, 8))) is None  # the centred targets' rank is 7
    assert loss_floor(RunConfig(layers=(8, 7, 8), bias=False)) == 1 / 64
    assert loss_floor(RunConfig(loss_fn="bce")) is None  # a bound on the MSE only
    one_output = RunConfig(layers=(4, 1, 1), dataset="parity")  # targets of rank 1
    assert loss_floor(one_output) is None


@pytest.mark.parametrize("ulps", [-3, 3])
def test_the_floor_is_the_same_number_whatever_the_last_bits_of_the_svd(monkeypatch, ulps):
    """Hosts' LAPACK kernels round the singular values differently (0.062499999999999986 for
    the 8-3-8 on one AVX2 CPU): a few ulps either way must give the same floor."""
    from fastbp import metrics

    svd = np.linalg.svd

    def noisy_svd(*args, **kwargs):
        singular = svd(*args, **kwargs)
        return singular * (1 + ulps * np.finfo(float).eps)

    metrics._floor.cache_clear()
    monkeypatch.setattr(metrics.np.linalg, "svd", noisy_svd)
    try:
        assert loss_floor(RunConfig()) == 4 / 64
        assert loss_floor(RunConfig(bias=False)) == 5 / 64
    finally:
        metrics._floor.cache_clear()  # nothing computed with the noisy SVD stays cached


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("config", [RunConfig(layers=(8, 2, 8)), RunConfig(layers=(5, 1, 5))])
def test_the_floor_is_reached_by_the_best_code_and_beaten_by_no_random_one(config, bias):
    config = RunConfig(**{**config.to_dict(), "bias": bias})
    floor = loss_floor(config)
    _, T = make_dataset(config)
    h = config.layers[-2]
    rng = np.random.default_rng(0)

    def best_fit(H):  # the least-squares output layer for hidden code H, and its MSE
        A = np.hstack([H, np.ones((len(H), 1))]) if bias else H
        Y = A @ np.linalg.lstsq(A, T, rcond=None)[0]
        return np.mean((Y - T) ** 2)

    losses = [best_fit(rng.normal(size=(len(T), h))) for _ in range(500)]
    assert min(losses) >= floor * (1 - 1e-9)  # a lower bound
    centred = T - T.mean(axis=0) if bias else T
    U = np.linalg.svd(centred)[0]
    assert best_fit(U[:, :h]) == pytest.approx(floor, rel=1e-9)  # and reached


def test_no_trained_run_ends_below_its_floor():
    for bias in (True, False):
        for seed in range(4):
            config = RunConfig(lr=0.05, steps=3000, seed=seed, bias=bias)
            assert train(config).final_loss >= loss_floor(config) * (1 - 1e-12)


def test_dead_units_are_counted_as_a_forward_pass_finds_them():
    configs = [RunConfig(seed=s) for s in range(3)] + [RunConfig(layers=(8, 4, 3, 8), seed=5)]
    params = [init_params(c) for c in configs]
    W, b = params[1][0]
    W[:, 2], b[2] = -1.0, -1.0  # unit 2 of run 1 is off for every input
    W, b = params[3][1]
    W[:, :2], b[:2] = -5.0, -0.5  # two units of the second hidden layer of run 3
    runs = pd.DataFrame({"layers": [layers_text(c.layers) for c in configs],
                         "dataset": "encoder", "activation": "relu"})  # fmt: skip
    values = np.concatenate([flatten(p) for p in params])
    counted = dead_units(runs, values)
    for c, p, n in zip(configs, params, counted, strict=True):
        X, _ = make_dataset(c)
        _, hidden = reference.forward([reference.Layer(W, b) for W, b in p], X,
                                      reference.ACTIVATIONS["relu"][0])  # fmt: skip
        assert n == sum(int((H == 0).all(axis=0).sum()) for H in hidden)
    assert counted[1] >= 1 and counted[3] >= 2
    runs["activation"] = "tanh"
    assert (dead_units(runs, values) == -1).all()  # not counted: no ReLU
    assert np.isnan(floors(runs.assign(bias=True, loss_fn="bce"))).all()
