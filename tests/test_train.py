"""train(): the compiled engine against the NumPy reference, and its exact semantics."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from fastbp import RunConfig, init_params, reference, train
from fastbp.data import make_dataset
from fastbp.train import batch_order


def assert_same_run(fast, slow, rtol=1e-10):
    np.testing.assert_array_equal(fast.steps, slow.steps)
    np.testing.assert_allclose(fast.losses, slow.losses, rtol=rtol, atol=0)
    for (W, b), (W_ref, b_ref) in zip(fast.params, slow.params, strict=True):
        scale = max(np.abs(W_ref).max(), np.abs(b_ref).max(), 1e-300)
        np.testing.assert_allclose(W, W_ref, rtol=rtol, atol=rtol * scale)
        np.testing.assert_allclose(b, b_ref, rtol=rtol, atol=rtol * scale)
    assert fast.diverged == slow.diverged


@pytest.mark.kernel_forms
@pytest.mark.parametrize(
    "config",
    [
        RunConfig(steps=1500, lr=1e-2, log_every=50),
        RunConfig(steps=1000, lr=5e-2, bias=False),
        RunConfig(layers=(8, 5, 8), activation="tanh", steps=800, lr=0.1, init="xavier"),
        RunConfig(layers=(8, 6, 4, 8), activation="sigmoid", steps=600, lr=0.5, seed=3),
        RunConfig(layers=(4, 7, 5, 3, 4), activation="relu", steps=700, lr=0.05, bias=False),
        RunConfig(layers=(6, 2, 6), activation="identity", steps=500, lr=0.1, log_every=7),
        RunConfig(layers=(3, 16, 3), init="normal", init_scale=0.5, steps=400, lr=0.02),
        RunConfig(layers=(2, 4, 1), dataset="xor", activation="tanh", steps=500, lr=0.05),
        RunConfig(layers=(4, 6, 1), dataset="parity", activation="sigmoid", steps=300, lr=0.5),
        RunConfig(
            layers=(2, 4, 1), dataset="xor", activation="relu", loss_fn="bce", lr=0.3, steps=500
        ),  # fmt: skip
        RunConfig(layers=(8, 3, 8), loss_fn="bce", lr=0.2, steps=600, log_every=50),
        RunConfig(layers=(8, 3, 8), loss_fn="cross_entropy", lr=0.5, steps=600, log_every=50),
        RunConfig(
            layers=(5, 4, 3, 5), activation="tanh", loss_fn="cross_entropy", lr=0.3, steps=400
        ),  # fmt: skip
    ],
    ids=lambda c: (
        f"{c.dataset}-{'-'.join(map(str, c.layers))}-{c.activation}-bias{c.bias}-{c.loss_fn}"
    ),
)
def test_compiled_engine_matches_reference(config):
    # The loop kernel defines the bits (test_batch checks the generated kernels give the
    # same); the generated one is checked here too for the 8-3-8, which others compile
    # anyway, to keep the suite's compile time down.
    engines = ["loops", "auto"] if config.layers == (8, 3, 8) else ["loops"]
    for engine in engines:
        assert_same_run(train(config, engine=engine), reference.train(config))


def test_logged_steps_start_at_zero_and_end_at_steps():
    r = train(RunConfig(steps=250, log_every=100))
    assert r.steps.dtype == np.int64 and r.losses.dtype == np.float64
    assert r.steps.tolist() == [0, 100, 200, 250]
    assert train(RunConfig(steps=300, log_every=100)).steps.tolist() == [0, 100, 200, 300]
    assert train(RunConfig(steps=1, log_every=100)).steps.tolist() == [0, 1]


def test_first_logged_loss_is_that_of_the_initial_parameters():
    config = RunConfig(steps=10)
    X, T = make_dataset(config)
    Y = reference.predict(init_params(config), X, config.activation)
    assert train(config).losses[0] == pytest.approx(np.mean((Y - T) ** 2), rel=1e-14)


def test_one_sgd_step_worked_by_hand():
    # 2-1-2 identity network, no hidden nonlinearity: every number can be checked on paper.
    config = RunConfig(layers=(2, 1, 2), activation="identity", lr=0.5, steps=1, log_every=1)
    W1, b1 = np.array([[1.0], [2.0]]), np.array([0.5])
    W2, b2 = np.array([[1.0, -1.0]]), np.array([0.0, 1.0])
    r = train(config, params=[(W1, b1), (W2, b2)])
    # X = T = I. Hidden h = [1.5, 2.5]; Y = [[1.5, -0.5], [2.5, -1.5]]; Y - T =
    # [[0.5, -0.5], [2.5, -2.5]]; loss = mean((Y - T)²) = 13 / 4.
    assert r.losses[0] == 3.25
    dY = 2 * np.array([[0.5, -0.5], [2.5, -2.5]]) / 4
    dW2 = np.array([[1.5, 2.5]]) @ dY
    dh = dY @ W2.T
    np.testing.assert_allclose(r.params[1][0], W2 - 0.5 * dW2)
    np.testing.assert_allclose(r.params[1][1], b2 - 0.5 * dY.sum(0))
    np.testing.assert_allclose(r.params[0][0], W1 - 0.5 * np.eye(2) @ dh)
    np.testing.assert_allclose(r.params[0][1], b1 - 0.5 * dh.sum(0))


def test_same_config_gives_bit_identical_results_and_seeds_differ():
    config = RunConfig(steps=500, lr=1e-2)
    a, b = train(config), train(config)
    assert a.losses.tobytes() == b.losses.tobytes()
    for (W, bias), (W2, bias2) in zip(a.params, b.params, strict=True):
        assert W.tobytes() == W2.tobytes() and bias.tobytes() == bias2.tobytes()
    c = train(RunConfig(steps=500, lr=1e-2, seed=1))
    assert not np.array_equal(a.losses, c.losses)
    assert not np.array_equal(a.params[0][0], c.params[0][0])


def test_given_params_are_used_copied_and_not_modified():
    config = RunConfig(steps=200, lr=1e-2)
    params = init_params(RunConfig(seed=7))
    before = [(W.copy(), b.copy()) for W, b in params]
    r = train(config, params=params)
    for (W, b), (W0, b0) in zip(params, before, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    assert_same_run(r, reference.train(config, params=before), rtol=1e-12)
    assert not np.array_equal(r.losses, train(config).losses)  # not the seed-0 parameters
    assert r.params[0][0] is not params[0][0]


def test_given_params_equal_to_the_drawn_ones_reproduce_the_default_run():
    config = RunConfig(steps=300, lr=0.1, batch_size=3)
    a, b = train(config), train(config, params=init_params(config))
    assert a.losses.tobytes() == b.losses.tobytes()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([(np.zeros((8, 3)), np.zeros(3))], r"params must have 2 \(W, b\) pairs"),
        (
            [(np.zeros((3, 8)), np.zeros(3)), (np.zeros((3, 8)), np.zeros(8))],
            r"params\[0\] must be W of shape \(8, 3\)",
        ),
        (
            [(np.full((8, 3), np.nan), np.zeros(3)), (np.zeros((3, 8)), np.zeros(8))],
            r"params\[0\] must be finite",
        ),
    ],
)
def test_bad_params_raise_value_error(params, message):
    with pytest.raises(ValueError, match=message):
        train(RunConfig(steps=5), params=params)


def test_without_bias_every_b_is_zero_and_stays_zero():
    r = train(RunConfig(steps=500, lr=1e-2, bias=False, layers=(8, 4, 4, 8)), engine="loops")
    for _, b in r.params:
        assert not b.any()
    with pytest.raises(ValueError, match=r"params\[1\] b must be zero when bias is false"):
        params = init_params(RunConfig())
        params[1] = (params[1][0], np.ones(8))
        train(RunConfig(bias=False, steps=5), params=params)


def minibatch_reference(config):
    """Mini-batch SGD with the reference's Layer classes, on the order train() draws."""
    rng = np.random.default_rng(config.seed)
    layers = [reference.Layer(W, b) for W, b in init_params(config, rng)]
    order = batch_order(config, rng)
    act, act_grad = reference.ACTIVATIONS[config.activation]
    X, T = make_dataset(config)
    batches = [
        epoch[i : i + config.batch_size]
        for epoch in order
        for i in range(0, len(epoch), config.batch_size)
    ]
    optimizer = reference.Optimizer(config)
    losses = []
    for step in range(config.steps + 1):
        if step % config.log_every == 0 or step == config.steps:
            losses.append(reference.mse(reference.forward(layers, X, act)[0], T))
        if step == config.steps:
            break
        rows = batches[step]
        Y, hidden = reference.forward(layers, X[rows], act)
        reference.backward(layers, hidden, reference.mse_grad(Y, T[rows]), act_grad)
        optimizer.step([pair for layer in layers for pair in layer.parameters(config.bias)])
    return np.array(losses), [(layer.W, layer.b) for layer in layers]


@pytest.mark.parametrize("batch_size", [1, 3, 4])  # one sample; a short last batch; whole
def test_minibatch_walks_a_fresh_permutation_each_epoch(batch_size):
    config = RunConfig(steps=301, lr=0.05, batch_size=batch_size, log_every=20, seed=2)
    r = train(config)
    losses, params = minibatch_reference(config)
    np.testing.assert_allclose(r.losses, losses, rtol=1e-10)
    for (W, b), (W_ref, b_ref) in zip(r.params, params, strict=True):
        np.testing.assert_allclose(W, W_ref, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(b, b_ref, rtol=1e-10, atol=1e-13)
    order = batch_order(config, np.random.default_rng(0))
    assert all(sorted(row) == list(range(8)) for row in order)
    assert len({tuple(row) for row in order}) > 1  # fresh, not one permutation reused


def test_minibatch_is_deterministic_and_converges():
    # on the loop kernel, compiled once for all (the other kernels' bits: test_batch.py)
    config = RunConfig(layers=(8, 6, 8), steps=4000, lr=0.1, batch_size=2, log_every=500)
    a, b = train(config, engine="loops"), train(config, engine="loops")
    assert a.losses.tobytes() == b.losses.tobytes()
    assert not a.diverged and a.diverged_at is None
    assert a.losses[-1] < 0.2 * a.losses[0]
    other = train(RunConfig(**{**config.to_dict(), "seed": 1}), engine="loops")
    assert not np.array_equal(a.losses, other.losses)


def test_full_size_batch_is_full_batch():
    a = train(RunConfig(steps=200, batch_size=8))
    b = train(RunConfig(steps=200))
    assert a.losses.tobytes() == b.losses.tobytes()


@pytest.mark.parametrize("batch_size", [None, 2])
def test_divergence_stops_training_without_warnings(batch_size):
    config = RunConfig(steps=1000, lr=50.0, log_every=10, batch_size=batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = train(config)
    assert r.diverged
    assert np.isfinite(r.losses[0])
    assert 0 < r.diverged_at < config.steps  # stopped early, not run on through NaNs
    reached = r.steps < r.diverged_at
    assert np.isfinite(r.losses[reached]).all() and np.isnan(r.losses[~reached]).all()
    X, T = make_dataset(config)  # the parameters returned are those whose loss blew up
    with np.errstate(all="ignore"):
        assert not np.isfinite(np.mean((reference.predict(r.params, X, "relu") - T) ** 2))


def test_reference_reports_divergence_the_same_way():
    config = RunConfig(steps=200, lr=50.0, log_every=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        slow = reference.train(config)
    fast = train(config)
    assert slow.diverged and fast.diverged
    assert slow.diverged_at == fast.diverged_at
    np.testing.assert_array_equal(np.isnan(fast.losses), np.isnan(slow.losses))


def test_a_new_process_loads_the_kernels_from_the_disk_cache():
    config = RunConfig(steps=2)
    train(config), train(config, engine="loops")  # compiled (or loaded), so cached on disk
    code = (
        "import fastbp; from fastbp.engine import codegen;"
        "from fastbp.engine.kernels import loop_kernel;"
        "c = fastbp.RunConfig(steps=2); fastbp.train(c); fastbp.train(c, engine='loops');"
        "train_kernel = loop_kernel().train_kernel;"
        "k = codegen.block_kernel(codegen.Kernel((8, 3, 8), 'relu', True, 8, 1, 'float64'))[0];"
        "print(*(sum(d.stats.cache_hits.values()) for d in (k, train_kernel)),"
        "      *(sum(d.stats.cache_misses.values()) for d in (k, train_kernel)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert list(map(int, out.stdout.split())) == [1, 1, 0, 0]  # two hits, no compilation


def test_fastbps_numba_settings_take_effect_where_numba_was_imported_first():
    """Numba reads its settings when it is imported: fastbp, imported after it, has it
    read them again, so that its kernels are what their names in the cache say."""
    code = (
        "import numba.core.config as config; import fastbp.engine;"
        "print(config.SLP_VECTORIZE, config.CPU_FEATURES == __import__('os').environ.get("
        "'NUMBA_CPU_FEATURES'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_SLP_VECTORIZE",)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)  # fmt: skip
    assert out.stdout.split() == ["1", "True"]


@pytest.mark.parametrize("light", [True, False])
def test_cached_kernels_load_without_numbas_compiler_and_keep_their_bits(light):
    """A fresh process loads cached kernels with Numba's runtime alone, not its compiler
    (whose registries import SciPy), and trains the same bits; where that light path
    fails (another Numba), Numba's own path loads them."""
    config = RunConfig(steps=300, lr=0.05)
    expected = train(config).losses.tobytes().hex()  # compiled or loaded: cached on disk
    fail_once = (  # the light path's first step fails; Numba's own path works
        "from numba.core.runtime import rtsys; calls = [];"
        "init = rtsys.initialize;"
        "rtsys.initialize = lambda ctx: init(ctx) if calls or calls.append(1) else 1 / 0;"
    )
    code = (
        "import sys, fastbp;"
        + ("" if light else fail_once)
        + "r = fastbp.train(fastbp.RunConfig(steps=300, lr=0.05));"
        "print(r.losses.tobytes().hex(), 'numba.np.arraymath' in sys.modules,"
        "      'numba.np.arrayobj' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Nor its array implementations: the kernels allocate no arrays of their own.
    assert out.stdout.split() == [expected, str(not light), str(not light)]


def test_kernels_run_in_plain_python_with_numba_disabled_and_keep_their_bits():
    """NUMBA_DISABLE_JIT=1, for stepping through kernels in a debugger: the loop kernel
    and all three generated forms run as Python (fma with exact fractions), same bits."""
    code = (
        "import sys, fastbp; from fastbp.train import train_batch;"
        "from fastbp.params import flatten;"
        "cs = [fastbp.RunConfig(steps=9, lr=0.5, log_every=4, dtype=d, layers=l)"
        "      for d, l in (('float64', (8, 3, 8)), ('float32', (8, 3, 8)),"
        "                   ('float64', (3, 17, 3)))];"
        "rs = [r for c in cs for r in (fastbp.train(c, engine='loops'), fastbp.train(c))];"
        "rs += train_batch(cs[:2]);"
        "sys.stdout.write(''.join(r.losses.tobytes().hex() + flatten(r.params).tobytes().hex()"
        "                         + ',' for r in rs))"
    )
    runs = []
    for disable in ("0", "1"):
        env = {**os.environ, "NUMBA_DISABLE_JIT": disable}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
        )
        assert out.returncode == 0, out.stderr
        runs.append(out.stdout.split(","))
    assert len(runs[0]) == 9 and runs[0] == runs[1]


def test_train_takes_a_dict_of_fields_and_names_a_wrong_one():
    from fastbp.config import ConfigError

    by_dict, by_config = train({"lr": 0.1, "steps": 30}), train(RunConfig(lr=0.1, steps=30))
    assert by_dict.config == by_config.config
    np.testing.assert_array_equal(by_dict.losses, by_config.losses)
    with pytest.raises(ConfigError, match="unknown field 'stepz'; did you mean 'steps'"):
        train({"stepz": 30})
    with pytest.raises(TypeError, match="config must be a RunConfig or a dict of its fields"):
        train(30)


@pytest.mark.parametrize("init", ["he", "xavier", "normal"])
def test_initial_weights_have_the_documented_scale(init):
    # The reference draws with the same init_params, so its agreement cannot catch a
    # wrong scale: checked here against the formulas, on layers wide enough to tell.
    config = RunConfig(layers=(400, 200, 400), init=init, init_scale=0.3, seed=7)
    for W, b in init_params(config):
        fan_in, fan_out = W.shape
        expected = {
            "he": np.sqrt(2 / fan_in),
            "xavier": np.sqrt(2 / (fan_in + fan_out)),
            "normal": 0.3,
        }[init]  # fmt: skip  (xavier: U(-a, a) has std a / sqrt 3)
        assert abs(W.std() / expected - 1) < 0.02 and abs(W.mean()) < 0.01 * expected
        assert not b.any()
        if init == "xavier":
            assert np.abs(W).max() <= np.sqrt(6 / (fan_in + fan_out))


@pytest.mark.parametrize("damage", ["truncated data", "empty index", "garbled index"])
def test_a_damaged_numba_cache_is_named_removed_and_rebuilt(tmp_path, damage):
    code = (
        "import fastbp; r = fastbp.train(fastbp.RunConfig(layers=(3, 2, 3), steps=20));"
        "print(r.losses.tobytes().hex())"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["FASTBP_KERNEL_DIR"] = str(tmp_path)  # Numba caches beside the kernels, here

    def run():
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip

    first = run()
    assert first.returncode == 0, first.stderr
    (index,) = tmp_path.glob("build-*/__pycache__/*.train_block-*.nbi")
    (data,) = tmp_path.glob("build-*/__pycache__/*.train_block-*.nbc")
    if damage == "truncated data":
        data.write_bytes(data.read_bytes()[:100])
    else:
        index.write_bytes(b"" if damage == "empty index" else b"\x80\x04garbled")
    second = run()
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout  # compiled again: the same bits
    (note,) = second.stderr.strip().splitlines()
    assert note.startswith("note: Numba's cache of a fastbp kernel was damaged (") and (
        "were removed and the kernel compiles again" in note
    )
    third = run()
    assert (third.stdout, third.stderr) == (first.stdout, "")  # rebuilt, and read back
