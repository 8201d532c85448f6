"""Runs trained side by side, or sharing one trajectory, give the bits of runs trained alone."""

import importlib
import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

import fastbp
from fastbp import RunConfig, reference, train
from fastbp.engine import codegen, kernel_cache, tuning
from fastbp.params import flatten
from fastbp.train import generated, train_batch

ARCHITECTURES = [  # few, since each is compiled once per lane count
    dict(layers=(8, 3, 8), activation="relu", bias=True, dtype="float64"),
    dict(layers=(8, 3, 8), activation="relu", bias=True, dtype="float32"),
    dict(layers=(6, 5, 4, 6), activation="tanh", bias=False, dtype="float64"),
    dict(layers=(4, 3, 4), activation="sigmoid", bias=True, dtype="float32"),
    dict(layers=(6, 30, 6), activation="tanh", bias=True, dtype="float32"),  # one at a time
    dict(layers=(2, 3, 1), activation="tanh", bias=True, dtype="float64", dataset="xor"),
    dict(layers=(3, 4, 1), activation="relu", bias=True, dtype="float32", dataset="parity"),
    dict(layers=(8, 3, 8), activation="relu", bias=True, dtype="float64", loss_fn="bce"),
    dict(
        layers=(2, 3, 1),
        activation="tanh",
        bias=False,
        dtype="float32",
        dataset="xor",
        loss_fn="bce",
    ),
    dict(layers=(8, 3, 8), activation="relu", bias=True, dtype="float32", loss_fn="cross_entropy"),
    dict(layers=(6, 30, 6), activation="tanh", bias=True, dtype="float64", loss_fn="cross_entropy"),
]


@pytest.fixture
def no_lane_settings(tmp_path, monkeypatch):
    """No FASTBP_LANES and no calibration (an empty kernel directory)."""
    monkeypatch.delenv("FASTBP_LANES", raising=False)
    monkeypatch.setenv("FASTBP_KERNEL_DIR", str(tmp_path))
    return tmp_path


def test_small_networks_train_in_blocks_and_large_ones_one_run_at_a_time(no_lane_settings):
    """Blocks: the registers form. One run at a time: the vector form where the samples
    and every layer fit in one vector, else the single-run form."""

    bits = kernel_cache.vector_bits()  # one vector register's worth of runs by default
    assert bits in (128, 256, 512)
    assert chosen((8, 3, 8), 8, "float64") == (bits // 64, "not measured")
    assert chosen((8, 3, 8), 8, "float32")[0] == bits // 32
    assert chosen((6, 5, 4, 6), 6, "float64")[0] == bits // 64
    assert chosen((6, 30, 6), 6, "float32") == (1, "large network")
    assert codegen.form_for((8, 3, 8), 8, 8, "float64") == "registers"
    assert codegen.form_for((8, 3, 8), 8, 1, "float64") == "vector"
    assert codegen.form_for((6, 30, 6), 6, 1, "float32") == "single-run"
    source = codegen._source(codegen.Kernel((8, 3, 8), "relu", True, 8, 8, "float64"))
    assert "registers form" in source.split("\n")[1]
    assert (
        "vector form"
        in codegen._source(codegen.Kernel((8, 3, 8), "relu", True, 8, 1, "float64")).split("\n")[1]
    )
    wide = codegen._source(
        codegen.Kernel((6, 30, 6), "tanh", True, 6, 1, "float32")
    )  # wider than a vector
    assert "single-run form" in wide.split("\n")[1]


def test_vector_width_follows_the_target_cpu(monkeypatch):
    avx2 = "+64bit,+avx,+avx2,+fma,+sse4.2"
    for features, bits in [(avx2, 256), (avx2 + ",+avx512f,-prefer-256-bit", 512),
                           (avx2 + ",+avx512f,+prefer-256-bit", 256), ("+sse4.2,+sse2", 128),
                           ("+neon,+fp-armv8", 128)]:  # fmt: skip
        monkeypatch.setenv("NUMBA_CPU_FEATURES", features)
        assert kernel_cache.vector_bits() == bits, features


def test_blocks_stop_at_a_smaller_network_where_a_register_holds_fewer_runs(
    no_lane_settings, monkeypatch
):
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+64bit,+avx,+avx2,+fma,+sse4.2")  # AVX2
    assert chosen((8, 3, 8), 8, "float64") == (4, "not measured")
    assert chosen((8, 8, 8), 8, "float64") == (1, "large network")
    assert chosen((8, 8, 8), 8, "float32") == (8, "not measured")
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+64bit,+avx2,+fma,+avx512f,-prefer-256-bit")
    assert chosen((8, 8, 8), 8, "float64") == (8, "not measured")


def test_steps_that_call_exp_per_value_train_one_run_at_a_time(no_lane_settings):
    bits = kernel_cache.vector_bits()
    assert chosen((8, 3, 8), 8, "float64", "sigmoid") == (1, "exp per lane")
    assert chosen((8, 3, 8), 8, "float64", "relu", "bce") == (1, "exp per lane")
    assert chosen((8, 3, 8), 8, "float64", "tanh") == (bits // 64, "not measured")


def chosen(layers, n_samples, dtype, activation="relu", loss_fn="mse", optimizer="sgd"):
    """(lanes, why) as the engine chooses them on this host."""
    choice = tuning.choose(layers, n_samples, dtype, activation, loss_fn, optimizer)
    return choice.lanes, choice.why


KEY = "float64 sgd, 1024+ products"  # the 8-3-8's measurement (1,152 products a step)


def test_lanes_can_be_pinned_or_measured(no_lane_settings, monkeypatch):
    assert tuning.key_of((8, 3, 8), 8, "float64", "sgd") == KEY
    tuning.record(KEY, {1: 50.0, 8: 80.0}, 1, "a test")
    tuning.record(tuning.key_of((8, 3, 8), 8, "float32", "adam"), {1: 90.0, 4: 30.0}, 4, "a test")
    assert chosen((8, 3, 8), 8, "float64") == (1, "measured")
    assert chosen((8, 3, 8), 8, "float32", optimizer="adam") == (4, "measured")
    assert chosen((8, 3, 8), 8, "float64", optimizer="adam")[1] == "not measured"  # its own
    assert chosen((8, 4, 8), 8, "float64")[1] == "measured"  # 1,536 products: the same size
    tuning.record(tuning.key_of((8, 3, 8), 8, "float32", "sgd"), {1: 60.0, 8: 20.0}, 8, "a test")
    assert chosen((8, 4, 8), 8, "float32") == (8, "measured")
    # 2,304: the next size (in float32: 4 float64 lanes, AVX2's, leave it one run at a time)
    assert chosen((8, 6, 8), 8, "float32")[1] == "not measured"
    assert tuning.key_of((3, 2, 3), 3, "float64", "sgd") == "float64 sgd, under 1024 products"
    choice = tuning.choose((8, 3, 8), 8, "float64")
    assert choice.detail.startswith("1 at a time 50 ns, 8 at a time 80 ns per run-step (")
    assert choice.detail.endswith(", by a test)")
    monkeypatch.setenv("FASTBP_LANES", "2")
    assert chosen((8, 3, 8), 8, "float64") == (2, "pinned")
    assert chosen((6, 30, 6), 6, "float32") == (1, "large network")
    monkeypatch.setenv("FASTBP_LANES", "3")
    with pytest.raises(tuning.LanesError, match="FASTBP_LANES must be one of 1, 2, 4, 8, 16"):
        chosen((8, 3, 8), 8, "float64")


def test_measurements_are_kept_per_build_of_the_kernels(no_lane_settings, monkeypatch):
    """A new Numba, CPU target or engine source measures again (the old entry stays, for
    going back); the file keeps the newest builds only."""
    tuning.record(KEY, {1: 50.0, 8: 80.0}, 1, "a test")
    monkeypatch.setattr(kernel_cache, "build_key", lambda: "another build")
    assert chosen((8, 3, 8), 8, "float64")[1] == "not measured"
    for k in range(tuning.KEEP + 3):
        monkeypatch.setattr(kernel_cache, "build_key", lambda k=k: f"build {k}")
        tuning.record(KEY, {1: 50.0, 8: 80.0}, 1, "a test")
    table = json.loads(kernel_cache.calibration_file().read_text())
    assert len(table) == tuning.KEEP and f"build {tuning.KEEP + 2}" in table


def test_a_damaged_calibration_file_is_said_once_and_removed(no_lane_settings, capsys, monkeypatch):
    bits = kernel_cache.vector_bits()
    for damaged in ("[1, 2]", "{not json"):
        (no_lane_settings / "calibration.json").write_text(damaged)
        monkeypatch.setattr(tuning, "_noted", False)
        for _ in range(2):
            assert chosen((8, 3, 8), 8, "float64") == (bits // 64, "not measured")
        err = capsys.readouterr().err
        assert err.count("calibration.json is damaged") == 1
        assert not (no_lane_settings / "calibration.json").exists()
    # fastbp's table, edited by hand: what is not a measurement is left out, said nowhere
    entry = {"lanes": 1, "ns_per_run_step": {"1": "fast"}, "measured": 3, "by": None}
    (no_lane_settings / "calibration.json").write_text(json.dumps({
        kernel_cache.build_key(): {"forms": {KEY: entry, "x": {"lanes": 3}}}}))  # fmt: skip
    assert tuning.choose((8, 3, 8), 8, "float64") == tuning.Choice(1, "measured")
    assert list(tuning.host_table()) == [KEY]


def test_blocks_are_kept_only_where_clearly_faster_twice(no_lane_settings, monkeypatch):
    """The measurement keeps blocks only where they beat one run at a time by more than
    tuning.MARGIN in two measurements (timings faked here): one at a time is the safe
    choice, since the choice is kept for good."""
    from fastbp import RunConfig, planner

    default = kernel_cache.vector_bits() // 64
    timings = []
    monkeypatch.setattr(tuning, "time_forms", lambda trainers, rounds: timings.pop(0))
    run = RunConfig(steps=10)
    timings[:] = [{1: 2e-8, default: 1e-8}, {1: 2e-8, default: 3e-8}]  # a lucky spell
    assert planner.measure(run).lanes == 1 and not timings
    assert tuning.host_table()[KEY]["lanes"] == 1
    timings[:] = [{1: 2e-8, default: 1.96e-8}]  # not clearly faster: measured once
    assert planner.measure(run).lanes == 1 and not timings
    timings[:] = [{1: 2e-8, default: 1e-8}, {1: 2.2e-8, default: 1.1e-8}]  # twice: kept
    assert planner.measure(run).lanes == default
    assert chosen((8, 3, 8), 8, "float64") == (default, "measured")
    saved = tuning.host_table()[KEY]
    assert saved["by"] == "a sweep" and saved["ns_per_run_step"] == {"1": 20.0, str(default): 11.0}


def test_a_gain_one_process_cannot_settle_is_measured_again_by_the_next(
    no_lane_settings, monkeypatch
):
    """Blocks between tuning.LOW and tuning.MARGIN faster: blocks, "not settled",
    measured again while the kernels are cached, until tuning.TRIES processes have each
    found blocks faster by more than LOW; a gain of LOW or less settles one run at a time
    (timings faked here)."""
    from fastbp import RunConfig, planner

    default = kernel_cache.vector_bits() // 64
    timings = []
    monkeypatch.setattr(tuning, "time_forms", lambda trainers, rounds: timings.pop(0))
    run = RunConfig(steps=10)
    cached = []
    monkeypatch.setattr(planner.codegen, "is_cached", lambda kernel: bool(cached))

    def measured_at(gain):
        timings[:] = [{1: gain * 1e-8, default: 1e-8}]
        return planner.measure(run)

    detail = tuning.describe({1: 11.0, default: 10.0}, "a sweep", unsettled=[1.1])
    assert measured_at(1.10) == tuning.Choice(default, "not settled", detail)
    assert "blocks faster by 10%" in detail
    assert chosen((8, 3, 8), 8, "float64") == (default, "not settled")
    assert tuning.host_table()[KEY]["unsettled_gains"] == [1.1]
    assert not planner.measuring_due(run)  # the block kernel is not cached: no compiling
    cached.append(True)
    assert planner.measuring_due(run) and planner.unmeasured([run]) == {KEY: run}  # a sweep's
    assert measured_at(1.08).why == "not settled"
    detail = tuning.describe({1: 11.2, default: 10.0}, "a sweep")
    assert measured_at(1.12) == tuning.Choice(default, "measured", detail)
    assert "unsettled_gains" not in tuning.host_table()[KEY]
    assert chosen((8, 3, 8), 8, "float64") == (default, "measured")
    assert not planner.measuring_due(run)

    tuning.record(KEY, {1: 11.0, default: 10.0}, 1, "a test", [1.1])
    assert measured_at(1.03) == tuning.Choice(1, "measured", tuning.describe(
        {1: 10.3, default: 10.0}, "a sweep"))  # fmt: skip
    assert not planner.measuring_due(run)
    # a file written before the gains were kept: one run at a time for a gain in between
    for ns, why in (({"1": 95.4, "4": 84.9}, "not settled"), ({"1": 95.0, "4": 93.0}, "measured")):
        tuning._update("forms", KEY, {"lanes": 1, "ns_per_run_step": ns})
        assert chosen((8, 3, 8), 8, "float64") == (1, why)
    assert tuning.verdict([1.2]) and tuning.verdict([1.1, 1.06, 1.07])
    assert tuning.verdict([1.1]) is None and tuning.verdict([1.2, 1.05]) is False


def test_train_batch_measures_once_per_dtype_and_optimizer(no_lane_settings, monkeypatch):
    from fastbp import RunConfig, planner

    measured = []
    real = planner.measure
    monkeypatch.setattr(
        planner, "measure", lambda run, **kw: measured.append(run) or real(run, **kw)
    )
    configs = [RunConfig(seed=s, steps=20) for s in range(3)]
    first = train_batch(configs)
    assert [(r.dtype, r.optimizer) for r in measured] == [("float64", "sgd")]
    again = train_batch(configs)
    train_batch(configs[:1])  # one family: nothing to measure
    assert len(measured) == 1
    for a, b in zip(first, again, strict=True):
        assert_bits(a, b)


def assert_bits(a, b):
    """Two RunResults are the same to the bit (timings aside)."""
    assert a.config == b.config
    np.testing.assert_array_equal(a.steps, b.steps)
    assert a.losses.tobytes() == b.losses.tobytes()
    assert flatten(a.params).tobytes() == flatten(b.params).tobytes()
    assert (a.diverged, a.diverged_at) == (b.diverged, b.diverged_at)


def many_runs(arch):
    """Several learning rates (one diverging), seeds, step counts and logging intervals."""
    return [
        RunConfig(**arch, lr=lr, seed=seed, steps=steps, log_every=log_every)
        for lr in (0.05, 0.5, 80.0)
        for seed in (0, 1)
        for steps, log_every in ((150, 50), (400, 50), (333, 7))
    ]


@pytest.mark.kernel_forms
@pytest.mark.parametrize(
    "arch",
    ARCHITECTURES,
    ids=lambda a: "-".join(
        [a.get("dataset", "encoder"), a["activation"], a["dtype"], a.get("loss_fn", "mse")]
    ),  # fmt: skip
)
def test_batched_runs_are_bit_identical_to_runs_trained_alone(arch):
    configs = many_runs(arch)
    batched = train_batch(configs)
    assert not all(r.diverged for r in batched)
    if arch.get("loss_fn", "mse") == "mse":  # lr=80 diverges (BCE's gradients are bounded)
        assert any(r.diverged for r in batched)
    for config, result in zip(configs, batched, strict=True):
        alone = train(config, engine="loops")  # the loop kernel: the definition of the bits
        assert_bits(result, alone)
        assert_bits(train(config), alone)  # the generated single-run kernel


def user_data(n_samples, n_in, n_out, classes=False, seed=0):
    """Random data of a user's size: n_samples rows (not whole tiles of the single-run
    form), one-hot classes or values in [0, 1]."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_in))
    if classes:
        T = np.eye(n_out)[rng.integers(n_out, size=n_samples)]
    else:
        T = rng.random((n_samples, n_out))
    return fastbp.Data(X, T, name=f"random {n_samples}x{n_in}")


@pytest.mark.kernel_forms
@pytest.mark.parametrize(
    "layers, n_samples, settings",
    [
        # rows of every product left over after whole tiles; the first weight gradient
        # along its inputs, the second along its outputs; a sigmoid, lane by lane
        (
            (13, 5, 11),
            37,
            dict(
                activation="sigmoid",
                loss_fn="bce",
                optimizer="nesterov",
                momentum=0.9,
                weight_decay=0.01,
            ),
        ),
        # three layers, classes, Adam, no biases, float32 (twice the lanes per vector)
        (
            (9, 20, 7, 3),
            45,
            dict(
                activation="tanh",
                loss_fn="cross_entropy",
                optimizer="adam",
                bias=False,
                dtype="float32",
            ),
        ),
        # long sums: many samples
        ((3, 17, 2), 301, dict(activation="relu", loss_fn="mse", optimizer="sgd")),
    ],
    ids=["bce-nesterov", "cross-entropy-adam-float32", "mse-sgd"],
)
def test_the_single_run_form_keeps_the_bits_at_users_sizes(layers, n_samples, settings):
    """The single-run form computes its sums in tiles of registers, over samples padded
    to whole tiles: every run gets the loop kernel's bits, whatever is left over."""
    data = user_data(n_samples, layers[0], layers[-1], settings["loss_fn"] == "cross_entropy")
    config = RunConfig(layers=layers, dataset=data, lr=0.05, steps=60, log_every=7, **settings)
    kernel = codegen.Kernel(
        layers, config.activation, config.bias, n_samples, 1, config.dtype,
        None, config.loss_fn, config.optimizer, bool(config.weight_decay),
    )  # fmt: skip
    assert kernel.form == "single-run"
    # the forward pass and the backpropagated errors finished from the tiles' sums, the
    # weight gradients stored as summed
    source = codegen._source(kernel)
    assert "ts = vtile_sums(ws, ws, " in source and "vtile(ws, ws, ws, " in source
    assert_bits(train(config), train(config, engine="loops"))
    huge = replace(config, lr=1e4)  # huge losses (mse: diverges), where the loop kernel has them
    assert_bits(train(huge), train(huge, engine="loops"))


@pytest.mark.kernel_forms
def test_results_do_not_depend_on_batch_size_companions_or_order():
    configs = many_runs(ARCHITECTURES[5])  # small: a kernel per lane count compiles here
    reference_results = train_batch(configs, lanes=16)
    for lanes in (1, 4, 8):  # 1: the vector form, with snapshots for steps and divergence
        for result, expected in zip(
            train_batch(configs, lanes=lanes), reference_results, strict=True
        ):
            assert_bits(result, expected)
    shuffled = list(np.random.default_rng(0).permutation(len(configs)))
    for k, result in zip(shuffled, train_batch([configs[k] for k in shuffled]), strict=True):
        assert_bits(result, reference_results[k])
    assert_bits(train_batch(configs[5:6])[0], reference_results[5])


def test_runs_that_differ_only_in_steps_share_one_trajectory():
    family = [RunConfig(lr=0.05, steps=s, log_every=100) for s in (1000, 250, 4000, 333)]
    results = train_batch(family)
    for config, result in zip(family, results, strict=True):
        assert_bits(result, train(config, engine="loops"))
    longest = results[2]
    np.testing.assert_array_equal(results[0].losses, longest.losses[: len(results[0].losses)])
    # the whole family costs one trajectory: each run's time is its share of it, by steps
    per_step = [r.wall_s / c.steps for c, r in zip(family, results, strict=True)]
    np.testing.assert_allclose(per_step, per_step[0], rtol=1e-12)


def test_float32_runs_track_the_float64_reference():
    config = RunConfig(lr=0.05, steps=2000, dtype="float32")
    result = train(config)
    assert result.params[0][0].dtype == np.float32
    expected = reference.train(RunConfig(lr=0.05, steps=2000))
    np.testing.assert_allclose(result.losses, expected.losses, rtol=1e-4)


@pytest.mark.kernel_forms
@pytest.mark.parametrize(
    "arch",
    [
        dict(layers=(8, 3, 8), activation="relu", bias=True, dtype="float64", batch_size=3),
        dict(layers=(8, 3, 8), activation="relu", bias=True, dtype="float64", batch_size=4),
        dict(layers=(4, 3, 4), activation="sigmoid", bias=False, dtype="float32", batch_size=1),
        dict(
            layers=(4, 3, 4),
            activation="relu",
            bias=True,
            dtype="float64",
            batch_size=3,
            loss_fn="cross_entropy",
        ),  # fmt: skip (a small network: its kernel compiles in a third of the time)
    ],
    ids=lambda a: "-".join(
        [a["activation"], a["dtype"], f"batch{a['batch_size']}", a.get("loss_fn", "mse")]
    ),  # fmt: skip
)
def test_mini_batch_runs_train_on_a_generated_kernel_with_the_loop_kernels_bits(arch):
    configs = many_runs(arch)  # epochs of equal batches, or a smaller last one
    assert all(generated(c) for c in configs)
    batched = train_batch(configs)
    assert not all(r.diverged for r in batched)
    if (
        arch["layers"] == (8, 3, 8) and "loss_fn" not in arch
    ):  # lr=80 diverges (mse): ending a run at a batch is checked
        assert any(r.diverged for r in batched)
    for config, result in zip(configs, batched, strict=True):
        alone = train(config, engine="loops")
        assert_bits(result, alone)
        assert_bits(train(config), alone)


@pytest.mark.kernel_forms
def test_cross_entropy_in_blocks_has_the_bits_of_runs_alone():
    # One run at a time is the default for it (exp per lane): blocks are asked for here.
    configs = many_runs(dict(layers=(4, 2, 4), loss_fn="cross_entropy"))[:6]
    for config, result in zip(configs, train_batch(configs, lanes=4), strict=True):
        assert_bits(result, train(config, engine="loops"))


def test_mini_batch_runs_too_wide_for_a_vector_take_the_loop_kernel():
    config = RunConfig(layers=(6, 30, 6), lr=0.05, steps=50, batch_size=2)
    assert not generated(config)
    (result,) = train_batch([config])
    assert_bits(result, train(config, engine="loops"))


@pytest.mark.kernel_forms
def test_a_mini_batch_step_is_the_full_batch_step_on_its_samples():
    """The loop kernel trains a mini-batch in rows padded for the whole data set, in tiles
    whose columns follow the batch (the last one of an epoch smaller): each step is the
    step a full-batch run takes on the batch's samples, bit for bit."""
    from fastbp.data import make_dataset
    from fastbp.params import init_params
    from fastbp.train import batch_order

    data = user_data(11, 6, 5)
    config = RunConfig(layers=(6, 19, 5), dataset=data, activation="tanh", lr=0.05, steps=7,
                       log_every=7, batch_size=4)  # fmt: skip
    rng = np.random.default_rng(config.seed)
    params, order = init_params(config, rng), batch_order(config, rng)
    X, T = make_dataset(config)
    for t in range(config.steps):  # batches of 4, 4 and 3 samples
        epoch, k = divmod(t, 3)
        rows = order[epoch, 4 * k : 4 * k + 4]
        one = replace(config, dataset=fastbp.Data(X[rows], T[rows]), steps=1, batch_size=None)
        params = train(one, params=params, engine="loops").params
    batched = train(config, engine="loops").params
    for (W, b), (W_batched, b_batched) in zip(params, batched, strict=True):
        assert np.array_equal(W, W_batched) and np.array_equal(b, b_batched)


def test_generated_kernels_go_to_the_kernel_directory(tmp_path):
    code = (
        "import fastbp; from fastbp.train import train_batch;"
        "train_batch([fastbp.RunConfig(steps=5, layers=(3, 2, 3))])"
    )
    # Without NUMBA_CACHE_DIR (a user may have it set), Numba caches beside the source.
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["FASTBP_KERNEL_DIR"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    (here,) = tmp_path.iterdir()  # one folder for this build
    assert here.name.startswith("build-") and (here / "used").exists()
    assert json.loads((here / "build.json").read_text())["fastbp"] == fastbp.__version__
    sources = list(here.glob("fastbp_kernel_*.py"))
    assert len(sources) == 1 and "layers [3, 2, 3]" in sources[0].read_text()
    assert list((here / "__pycache__").glob("*.nbi"))  # Numba cached it there


def test_a_kernels_name_holds_everything_its_machine_code_is_made_of(monkeypatch):
    import llvmlite
    import numba

    source = codegen._source(
        codegen.Kernel((3, 2, 3), "relu", True, 3, 4, "float64", None, "mse", "sgd", False)
    )
    names = {kernel_cache.name_of(source)}
    keys = {kernel_cache.build_key()}

    def changed():  # a new name, and a new folder, for each change
        names.add(kernel_cache.name_of(source))
        keys.add(kernel_cache.build_key())
        return len(names) == len(keys) == 1 + changes.pop(0)

    changes = list(range(1, 9))
    monkeypatch.setattr(fastbp, "__version__", "0.3.0+edited")
    assert changed()
    monkeypatch.setattr(numba, "__version__", "0.0.1")
    assert changed()
    monkeypatch.setattr(llvmlite, "__version__", "0.0.1")
    assert changed()
    # other values than those set (the emulated AVX2 build sets the first two)
    cpu = "skylake" if os.environ.get("NUMBA_CPU_NAME") == "haswell" else "haswell"
    monkeypatch.setenv("NUMBA_CPU_NAME", cpu)
    assert changed()
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+64bit,+avx,+sse4.2")
    assert changed()
    monkeypatch.setenv("NUMBA_OPT", "1" if os.environ.get("NUMBA_OPT") != "1" else "2")
    assert changed()
    digest = kernel_cache._digest  # an engine module the kernel imports, edited
    for module in kernel_cache.KERNEL_IMPORTS:
        monkeypatch.setattr(
            kernel_cache, "_digest", lambda m, edited=module: digest(m) + (m == edited) * "x"
        )
        assert changed()
    assert source.count("from fastbp.") == len(kernel_cache.KERNEL_IMPORTS)
    with pytest.raises(RuntimeError, match="fastbp.params, which is not in KERNEL_IMPORTS"):
        kernel_cache.name_of(source + "from fastbp.params import flatten\n")


def test_folders_of_builds_not_used_lately_are_deleted_when_a_new_build_writes_one(tmp_path):
    others = []
    for age in range(6):  # other builds (other versions, other environments), by last use
        folder = tmp_path / f"build-{age:016d}"
        (folder / "fastbp_kernel_x.py").parent.mkdir(parents=True)
        (folder / "fastbp_kernel_x.py").write_text("old")
        (folder / "used").write_text("")
        os.utime(folder / "used", (1e9 - age, 1e9 - age))
        others.append(folder)
    layout = tmp_path / "slp1-zmm" / "v15" / "fastbp_kernel_a.py"  # fastbp 0.3's older layout
    layout.parent.mkdir(parents=True)
    layout.write_text("old")
    code = (
        "import fastbp; from fastbp.train import train_batch;"
        "train_batch([fastbp.RunConfig(steps=5, layers=(3, 2, 3))])"
    )
    env = {**os.environ, "FASTBP_KERNEL_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    keep = kernel_cache.KEEP_BUILDS
    assert [folder.exists() for folder in others] == [True] * keep + [False] * (6 - keep)
    assert not (tmp_path / "slp1-zmm").exists()
    (new,) = set(tmp_path.iterdir()) - set(others)
    assert list(new.glob("fastbp_kernel_*.py"))


def test_numba_settings_are_applied_once_and_never_override_the_user():
    code = (
        "import os, fastbp.train;"  # the engine applies the settings before Numba reads them
        "from fastbp.engine.kernel_cache import build;"
        "print(build()['settings']['NUMBA_SLP_VECTORIZE'], os.environ['NUMBA_SLP_VECTORIZE'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    ours = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert ours.stdout.split() == ["1", "1"]
    env["NUMBA_SLP_VECTORIZE"] = "0"
    theirs = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert theirs.stdout.split() == ["0", "0"]


def test_kernels_compile_in_memory_with_a_note_where_nothing_can_be_cached(
    tmp_path, monkeypatch, capsys
):
    from fastbp.engine import kernel_cache

    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where a directory should be: nothing can be written
    monkeypatch.setenv("FASTBP_KERNEL_DIR", str(blocker))
    monkeypatch.setattr(kernel_cache.tempfile, "gettempdir", lambda: str(blocker))
    monkeypatch.setattr(kernel_cache, "_noted", False)
    codegen.block_kernel.cache_clear()
    kernel_cache.forget()
    try:
        config = RunConfig(layers=(3, 2, 3), steps=50)
        (result,) = train_batch([config])
    finally:
        codegen.block_kernel.cache_clear()
        kernel_cache.forget()
    assert_bits(result, train(config, engine="loops"))
    err = capsys.readouterr().err
    assert err.count("note: Numba cannot cache fastbp's kernels here") == 1
    assert "kernels go to" not in err  # no folder took them: nothing to name


def test_an_unwritable_kernel_folder_is_said_once(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = (
        "import fastbp; from fastbp.train import train_batch;"
        "[train_batch([fastbp.RunConfig(steps=5, layers=(3, 2, 3), seed=s)]) for s in (0, 1)]"
    )
    temp = tmp_path / "temp"  # the temporary directory, of this test's own
    temp.mkdir()
    env = {**os.environ, "FASTBP_KERNEL_DIR": str(blocker), "TMPDIR": str(temp)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (note,) = done.stderr.strip().splitlines()
    assert note.startswith(f"note: fastbp's kernel folder {blocker} cannot be written (")
    assert note.endswith(f"kernels go to {temp / 'fastbp-kernels'}")
    assert list(temp.glob("fastbp-kernels/build-*/fastbp_kernel_*.py"))


def test_runs_that_differ_only_in_steps_are_trained_as_one_family(monkeypatch):
    train_module = importlib.import_module("fastbp.train")  # fastbp.train is the function
    seen = []
    real = train_module._train_families
    monkeypatch.setattr(
        train_module, "_train_families", lambda fams, lanes: seen.append(fams) or real(fams, lanes)
    )
    short, long = RunConfig(steps=50, log_every=10), RunConfig(steps=120, log_every=10)
    assert short.run_id != long.run_id  # as a sweep asks for them first (and caches them)
    results = train_batch([short, long, RunConfig(steps=50, seed=1)])
    ((families),) = seen
    assert sorted(len(configs) for configs, *_ in families) == [1, 2]  # short + long: one
    assert_bits(results[0], train(short))
    assert_bits(results[1], train(long))


def test_initial_parameters_kept_for_reuse_are_those_of_each_runs_own_fields():
    # A sweep reuses a seed's initial parameters at every learning rate; whatever else
    # the draw depends on must tell them apart.
    base = dict(steps=20, seed=3, init="normal", init_scale=0.5)
    configs = [RunConfig(**base, lr=0.1), RunConfig(**base, lr=0.2),
               RunConfig(**{**base, "init_scale": 1.0}), RunConfig(**{**base, "init": "he"}),
               RunConfig(**{**base, "seed": 4}), RunConfig(**base, layers=(3, 16, 3))]  # fmt: skip
    for _ in range(2):  # the second time, from what was kept
        # one run at a time: the kernels test_train compiles anyway (the lanes do not matter)
        for config, result in zip(configs, train_batch(configs, lanes=1), strict=True):
            assert_bits(result, train(config))


def test_calibrate_keeps_every_kind_it_measures_or_says_it_cannot(
    no_lane_settings, monkeypatch, capsys
):
    """python -m fastbp.calibrate measures each dtype and optimizer asked for (faked here)
    and keeps them for the sweeps; a kernel folder that cannot be written is one line and
    exit 1, not "saved"."""
    from fastbp import calibrate, planner

    asked = []

    def fake(run, sizes, rounds, seconds, by):
        asked.append((run.dtype, run.optimizer, tuple(sizes)))
        key = tuning.key_of(run.layers, run.n_samples, run.dtype, run.optimizer)
        tuning.record(key, {n: 10.0 * n for n in sizes}, 1, by)
        return tuning.Choice(1, "measured", "faked")

    monkeypatch.setattr(planner, "measure", fake)
    assert calibrate.main(["--dtype", "float32", "--optimizer", "adam"]) == 0
    assert asked == [("float32", "adam", (1, 2, 4, 8, 16))]
    assert "saved in" in capsys.readouterr().out
    assert chosen((8, 3, 8), 8, "float32", optimizer="adam") == (1, "measured")
    monkeypatch.setattr(tuning, "record", lambda *args: None)  # as when it cannot write
    assert calibrate.main(["--dtype", "float64", "--optimizer", "sgd"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "cannot be written" in err[0]
