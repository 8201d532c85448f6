"""The step is defined once (fastbp.engine.step): every kernel form is generated from its rules."""

import pytest

from fastbp.engine import codegen, kernels, step

FORMS = {  # (layers, lanes, dtype) of each generated form
    "registers": ((8, 3, 8), 8, "float64"),
    "vector": ((8, 3, 8), 1, "float64"),
    "single-run": ((6, 30, 6), 1, "float32"),
}


def sources(activation="relu", optimizer="sgd", decay=False):
    """The source of every kernel form (mini-batches too), and of the loop kernel."""
    out = {"loops": kernels.source.__wrapped__()}
    for form, (layers, lanes, dtype) in FORMS.items():
        assert codegen.form_for(layers, layers[0], lanes, dtype) == form
        args = (layers, activation, True, layers[0], lanes, dtype)
        out[form] = codegen._write(*args, None, "mse", optimizer, decay)
    args = ((8, 3, 8), activation, True, 8, 1, "float64", 3, "mse", optimizer, decay)
    out["mini-batch"] = codegen._write(*args)
    return out


def test_every_form_takes_the_update_from_the_rule(monkeypatch):
    def update(o, p, g, old, new, optimizer="sgd", decay=False):
        return [(name, o.mul(value, "STATE")) for name, value in zip(new, old, strict=True)], o.mul(
            g, "RULE"
        )

    monkeypatch.setattr(step, "update", update)
    for form, source in sources(optimizer="momentum").items():
        assert "RULE" in source and "STATE" in source, form
        assert "fma((-" not in source, form  # no update written by hand


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_every_form_has_every_optimizer_with_its_state(optimizer):
    names = step.state(optimizer)
    for form, source in sources(optimizer=optimizer, decay=True).items():
        assert source.count("decay_") >= 2, form  # defined, and used in the update
        for name in names:
            assert f"{name} = " in source, (form, name)
        if form != "loops":  # the loop kernel has every optimizer
            assert ("math.pow(hyper[1]" in source) == (optimizer == "adam"), form


def test_every_form_takes_the_loss_from_the_rule(monkeypatch):
    def loss(o, y, t, d, loss_fn="mse", sample=None, shares=None):
        return [(d, o.sub(y, t))], o.mul(d, "TERM"), o.div(d, "GRAD")

    monkeypatch.setattr(step, "loss", loss)
    for form, source in sources().items():
        assert "TERM" in source and "GRAD" in source, form
        assert "(two * " not in source, form  # no MSE gradient written by hand


@pytest.mark.parametrize("rule", ["activate", "slope"])
def test_every_form_takes_the_activation_from_the_rules(monkeypatch, rule):
    real = getattr(step, rule)
    monkeypatch.setattr(step, rule, lambda o, *a: o.mul(real(o, *a), "ACT"))
    for form, source in sources("tanh").items():
        assert "ACT" in source, form


def test_vectors_use_vector_instructions_where_they_round_as_scalars_do():
    V = step.Vector(4)
    assert V.apply(step.activate, ["z"], "relu") == "vrelu(z)"
    assert step.update(V, "p", "g", [], []) == ([], "vfma_chain(p, (-rate), g)")
    lets, new = step.update(V, "p", "g", ["m0", "v0"], ["m", "v"], "adam")
    assert "vsqrt(v)" in new and [name for name, _ in lets] == ["m", "v"]
    # tanh has no vector instruction, and the slope meets the float64 1.0: lane by lane
    lanes = V.apply(step.slope, ["e", "h"], "tanh")
    assert lanes.count("F(") == 4 and "(e[3] * (1.0 - (h[3] * h[3])))" in lanes
    assert V.apply(step.activate, ["z"], "sigmoid").count("math.exp") == 4


def test_a_loss_without_vector_instructions_is_applied_lane_by_lane(monkeypatch):
    def loss(o, y, t, d, loss_fn="mse", sample=None, shares=None):
        return [(d, o.sub(y, t))], o.mul(d, d), o.tanh(d)

    monkeypatch.setattr(step, "loss", loss)
    lets, term, grad = step.Vector(2).loss("y", "t", "d")
    assert lets == [("d_0", "(y[0] - t[0])"), ("d_1", "(y[1] - t[1])")]
    assert term == "(F((d_0 * d_0)), F((d_1 * d_1)), )"
    assert grad == "(F(math.tanh(d_0)), F(math.tanh(d_1)), )"
