"""Optimizers (sgd, momentum, nesterov, adam; weight decay): against the NumPy reference,
worked by hand, the same bits in every kernel form, and against torch.optim if installed."""

from dataclasses import replace

import numpy as np
import pytest

from fastbp import reference
from fastbp.config import OPTIMIZERS, ConfigError, RunConfig
from fastbp.params import init_params
from fastbp.train import train, train_batch

SMALL = dict(layers=(4, 2, 4), steps=200, log_every=25, lr=0.02)  # compiles in seconds


def same_bits(a, b) -> bool:
    return a.losses.tobytes() == b.losses.tobytes() and all(
        Wa.tobytes() == Wb.tobytes() and ba.tobytes() == bb.tobytes()
        for (Wa, ba), (Wb, bb) in zip(a.params, b.params, strict=True)
    )


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_each_optimizer_matches_the_reference(optimizer, weight_decay):
    for bias in (True, False):
        config = RunConfig(
            optimizer=optimizer, weight_decay=weight_decay, bias=bias, steps=400, lr=0.01
        )
        fast, ref = train(config, engine="loops"), reference.train(config)
        np.testing.assert_allclose(fast.losses, ref.losses, rtol=1e-9)
        for (W, b), (W_ref, b_ref) in zip(fast.params, ref.params, strict=True):
            np.testing.assert_allclose(W, W_ref, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(b, b_ref, rtol=1e-8, atol=1e-12)
            if not bias:
                assert not b.any()  # no biases: they stay zero, weight decay or not


@pytest.mark.kernel_forms
@pytest.mark.parametrize(
    ("optimizer", "weight_decay", "extra"),
    [  # each optimizer once, and weight decay (one rule for all of them) in two
        ("momentum", 0.0, {"momentum": 0.5}),
        ("nesterov", 0.01, {}),
        ("adam", 0.01, {"beta1": 0.8}),
    ],
)
def test_every_kernel_form_gives_the_loop_kernels_bits(optimizer, weight_decay, extra):
    config = RunConfig(optimizer=optimizer, weight_decay=weight_decay, **extra, **SMALL)
    loops = train(config, engine="loops")
    assert same_bits(train(config), loops)  # one run: the vector form
    others = [replace(config, seed=s, lr=config.lr * (1 + s)) for s in range(1, 6)]
    assert same_bits(train_batch([*others, config])[-1], loops)  # a block: registers form
    batches = replace(config, batch_size=3)  # mini-batches: vector form, update not deferred
    assert same_bits(train(batches), train(batches, engine="loops"))
    if optimizer == "adam":  # the single-run form (a layer wider than a vector), float32
        for wide in (replace(config, layers=(4, 10, 4)), replace(config, dtype="float32")):
            assert same_bits(train(wide), train(wide, engine="loops"))


def test_runs_of_a_block_may_have_other_optimizer_values():
    # (kernels the test above compiles: the same optimizers, Adam with weight decay)
    runs = [RunConfig(optimizer="momentum", momentum=m, **SMALL) for m in (0.5, 0.9, 0.99)]
    runs += [RunConfig(optimizer="adam", beta2=b, weight_decay=0.01, **SMALL) for b in (0.9, 0.999)]
    for together, alone in zip(train_batch(runs), map(train, runs), strict=True):
        assert same_bits(together, alone)
    assert len({r.final_loss for r in train_batch(runs)}) == len(runs)


def identity_network():
    """A 1-1-1 identity network on the encoder (X = T = [[1]]), and its gradients by hand:
    h = a + b1, y = c h + b2, L = (y - 1)², so dL/dc = 2 (y - 1) h, dL/db2 = 2 (y - 1),
    dL/da = dL/db1 = 2 (y - 1) c."""

    def grads(a, b1, c, b2):
        h = a + b1
        e = 2 * (c * h + b2 - 1)
        return np.array([e * c, e * c, e * h, e])  # in the order a, b1, c, b2

    return grads


def run_by_hand(config, p):
    """The parameters after training from p (the loop kernel: every form has its bits)."""
    params = [(np.array([[p[0]]]), np.array([p[1]])), (np.array([[p[2]]]), np.array([p[3]]))]
    (W1, b1), (W2, b2) = train(config, params=params, engine="loops").params
    return np.array([W1[0, 0], b1[0], W2[0, 0], b2[0]])


def test_two_momentum_and_nesterov_steps_worked_by_hand():
    grads, p0 = identity_network(), np.array([0.5, 0.25, 1.5, -0.5])
    base = dict(layers=(1, 1, 1), activation="identity", lr=0.1, steps=2, log_every=1)
    g0 = grads(*p0)
    p1 = p0 - 0.1 * g0  # the first step: buf = g
    g1 = grads(*p1)
    buf = 0.9 * g0 + g1
    expected = p1 - 0.1 * buf
    config = RunConfig(optimizer="momentum", **base)
    np.testing.assert_allclose(run_by_hand(config, p0), expected, rtol=1e-14)
    # nesterov steps along g + mu * buf
    p1 = p0 - 0.1 * (g0 + 0.9 * g0)
    g1 = grads(*p1)
    expected = p1 - 0.1 * (g1 + 0.9 * (0.9 * g0 + g1))
    config = RunConfig(optimizer="nesterov", **base)
    np.testing.assert_allclose(run_by_hand(config, p0), expected, rtol=1e-14)


def test_adams_first_step_moves_each_parameter_by_the_learning_rate():
    # m = (1 - b1) g, v = (1 - b2) g², bias-corrected: the step is lr g / (|g| + eps).
    grads, p0 = identity_network(), np.array([0.5, 0.25, 1.5, -0.5])
    config = RunConfig(layers=(1, 1, 1), activation="identity", lr=0.1, steps=1, log_every=1)
    g = grads(*p0)
    expected = p0 - 0.1 * g / (np.abs(g) + 1e-8)
    got = run_by_hand(replace(config, optimizer="adam"), p0)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(np.abs(got - p0), 0.1, rtol=1e-6)
    # with weight decay, decay * p joins the gradient first
    g = g + 0.5 * p0
    expected = p0 - 0.1 * g / (np.abs(g) + 1e-8)
    got = run_by_hand(replace(config, optimizer="adam", weight_decay=0.5), p0)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_weight_decay_is_added_to_the_gradient():
    # zero output weights: the first layer's gradient is zero at the first step, so
    # weight decay alone moves it, p <- p - lr decay p; the output layer gets both
    config = RunConfig(layers=(2, 2, 2), activation="identity", lr=0.1, steps=1, log_every=1)
    W1, b2 = np.array([[1.0, -2.0], [0.5, 3.0]]), np.array([0.5, 0.25])
    params = [(W1, np.zeros(2)), (np.zeros((2, 2)), b2)]
    decayed = train(replace(config, weight_decay=0.1), params=params, engine="loops")
    plain = train(config, params=params, engine="loops")
    np.testing.assert_allclose(decayed.params[0][0], W1 * 0.99, rtol=1e-15)
    np.testing.assert_array_equal(plain.params[0][0], W1)
    np.testing.assert_allclose(decayed.params[1][1], plain.params[1][1] - 0.1 * 0.1 * b2)


def test_optimizer_state_starts_at_zero_when_params_are_given():
    # two runs of 100 steps are not one of 200: the second starts with fresh state
    config = RunConfig(optimizer="adam", steps=100, lr=0.01)
    first = train(config, engine="loops")
    again = train(config, params=first.params, engine="loops")
    whole = train(replace(config, steps=200), engine="loops")
    assert not np.allclose(again.params[0][0], whole.params[0][0], rtol=1e-6)
    fresh = reference.train(config, params=first.params)
    np.testing.assert_allclose(again.params[0][0], fresh.params[0][0], rtol=1e-8)


def test_fields_of_other_optimizers_do_not_apply_and_stay_out_of_the_id():
    assert RunConfig(optimizer="momentum").momentum == 0.9
    assert RunConfig(optimizer="adam").to_dict() | {} == {
        **RunConfig(optimizer="adam", beta1=0.9, beta2=0.999, eps=1e-8).to_dict()
    }
    sgd = RunConfig(momentum=0.5, beta1=0.2)
    assert sgd.momentum is None and sgd.beta1 is None and sgd == RunConfig()
    assert sgd.run_id == RunConfig().run_id == "483745e610ca"  # fastbp 0.3's id
    assert RunConfig(weight_decay=0.0).run_id == RunConfig().run_id
    ids = {
        RunConfig(optimizer=o, **extra).run_id
        for o in OPTIMIZERS
        for extra in ({}, {"weight_decay": 1e-4})
    }
    assert len(ids) == 2 * len(OPTIMIZERS)
    assert RunConfig(optimizer="adam", beta1=0.8).run_id != RunConfig(optimizer="adam").run_id


@pytest.mark.parametrize(
    ("values", "field", "text"),
    [
        ({"optimizer": "adamw"}, "optimizer", "did you mean 'adam'?"),
        ({"optimizer": "momentum", "momentum": -0.1}, "momentum", "momentum must be a number >= 0"),
        ({"optimizer": "nesterov", "momentum": 0}, "momentum", "must be > 0 for optimizer"),
        ({"optimizer": "adam", "beta1": 1.0}, "beta1", "beta1 must be a number >= 0.0 and < 1.0"),
        ({"optimizer": "adam", "beta2": "0.9"}, "beta2", "got '0.9'"),
        ({"optimizer": "adam", "eps": float("nan")}, "eps", "eps must be a number > 0"),
        ({"optimizer": "adam", "eps": 0}, "eps", "eps must be a number > 0"),
        ({"weight_decay": -1e-4}, "weight_decay", "weight_decay must be a number >= 0"),
        ({"weight_decay": True}, "weight_decay", "got True"),
    ],
)  # fmt: skip
def test_bad_optimizer_values_name_the_field(values, field, text):
    with pytest.raises(ConfigError, match=text.replace("(", r"\(").replace("?", r"\?")) as err:
        RunConfig(**values)
    assert err.value.field == field


def test_adam_reaches_the_encoders_floor_where_sgd_at_the_same_rate_does_not():
    runs = [RunConfig(optimizer=o, lr=0.01, steps=3000, seed=0) for o in ("sgd", "adam")]
    sgd, adam = (train(c, engine="loops") for c in runs)  # any kernel's bits, compiled once
    assert adam.final_loss == pytest.approx(4 / 64, abs=1e-6)  # the floor with biases
    assert sgd.final_loss > 0.08  # still descending


def test_against_torch_optim():
    torch = pytest.importorskip("torch")
    for optimizer, make in {
        "sgd": lambda ps, c: torch.optim.SGD(ps, lr=c.lr, weight_decay=c.weight_decay),
        "momentum": lambda ps, c: torch.optim.SGD(
            ps, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
        ),
        "nesterov": lambda ps, c: torch.optim.SGD(
            ps, lr=c.lr, momentum=c.momentum, nesterov=True, weight_decay=c.weight_decay
        ),
        "adam": lambda ps, c: torch.optim.Adam(
            ps, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps, weight_decay=c.weight_decay
        ),
    }.items():
        config = RunConfig(optimizer=optimizer, weight_decay=1e-3, lr=0.01, steps=300)
        tensors = [
            torch.tensor(a, dtype=torch.float64) for W, b in init_params(config) for a in (W, b)
        ]
        for t in tensors:
            t.requires_grad_(True)
        opt = make(tensors, config)
        X = torch.eye(8, dtype=torch.float64)
        for _ in range(config.steps):
            opt.zero_grad()
            H = torch.relu(X @ tensors[0] + tensors[1])
            loss = torch.mean((H @ tensors[2] + tensors[3] - X) ** 2)
            loss.backward()
            opt.step()
        ours = [a for W, b in train(config).params for a in (W, b)]
        for a, t in zip(ours, tensors, strict=True):
            np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_a_sweep_over_optimizers_keeps_their_fields_where_they_apply(tmp_path, capsys):
    from fastbp import load_results
    from fastbp.results import config_from_row
    from fastbp.sweep import main

    spec = tmp_path / "opt.toml"
    spec.write_text(
        '[sweep]\nname = "opt"\nthreshold = 0.07\n'
        "[base]\nlayers = [4, 2, 4]\nsteps = 300\nlog_every = 100\n"
        '[grid]\noptimizer = ["sgd", "momentum", "adam"]\nmomentum = [0.5, 0.9]\n'
        "lr = [0.01, 0.1]\n"
    )
    assert main([str(spec), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    runs = load_results(tmp_path / "out").runs
    # sgd and adam have no momentum: 2 + 4 + 2 distinct runs, not 12
    assert len(runs) == 8 and runs["run_id"].is_unique
    by = runs.set_index(["optimizer", "lr", "momentum"], drop=False)
    assert runs.loc[runs.optimizer != "momentum", "momentum"].isna().all()
    assert runs.loc[runs.optimizer != "adam", ["beta1", "beta2", "eps"]].isna().all().all()
    assert set(runs.loc[runs.optimizer == "adam", "beta2"]) == {0.999}
    assert len(by.loc["momentum"]) == 4
    for _, row in runs.iterrows():  # each row gives back its config, and its results
        config = config_from_row(row)
        assert config.run_id == row["run_id"]
        assert train(config).final_loss == row["final_loss"]
    assert "by momentum:" in printed and "by beta1:" not in printed
    assert "best: lr=" in printed
