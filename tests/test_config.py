"""RunConfig: defaults, normalisation, and one test per validation rule."""

import math
import os
import re
import subprocess
import sys

import pytest

from fastbp import ConfigError, RunConfig


def test_defaults_are_the_report_network():
    c = RunConfig()
    assert c.layers == (8, 3, 8)
    assert (c.activation, c.bias, c.lr, c.steps) == ("relu", True, 1e-3, 50_000)
    assert (c.seed, c.log_every, c.batch_size, c.init, c.dataset) == (0, 100, None, "he", "encoder")


def test_layers_list_is_stored_as_tuple_and_config_is_frozen_and_hashable():
    c = RunConfig(layers=[8, 4, 4, 8])
    assert c.layers == (8, 4, 4, 8)
    assert hash(c) == hash(RunConfig(layers=(8, 4, 4, 8)))
    with pytest.raises(AttributeError):
        c.lr = 0.1


def test_numbers_are_normalised():
    c = RunConfig(lr=1, steps=3e5, log_every=1000.0)
    assert isinstance(c.lr, float) and c.lr == 1.0
    assert isinstance(c.steps, int) and c.steps == 300_000
    assert isinstance(c.log_every, int)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("lr", 0.0, "lr must be a finite number > 0, got 0.0"),
        ("lr", -0.01, "lr must be a finite number > 0, got -0.01"),
        ("lr", math.inf, "lr must be a finite number > 0, got inf"),
        ("lr", math.nan, "lr must be a finite number > 0, got nan"),
        ("lr", "fast", "lr must be a finite number > 0, got 'fast'"),
        ("steps", 0, "steps must be an integer from 1 to 1,000,000,000,000, got 0"),
        ("steps", 2.5, "steps must be an integer from 1 to 1,000,000,000,000, got 2.5"),
        ("steps", True, "steps must be an integer from 1 to 1,000,000,000,000, got True"),
        ("log_every", 0, "log_every must be an integer from 1 to 1,000,000,000,000, got 0"),
        ("seed", -1, "seed must be an integer from 0 to 9,223,372,036,854,775,807, got -1"),
        ("seed", 2**63, "seed must be an integer from 0 to 9,223,372,036,854,775,807, got 9,2"),
        ("steps", 10**12 + 1, "steps must be an integer from 1 to 1,000,000,000,000, got 1,0"),
        ("layers", [8, 70_000, 8], "layers widths must be integers from 1 to 65,536"),
        ("layers", [8, 8], "layers must have at least 3 entries"),
        ("layers", [8, 0, 8], "layers widths must be integers from 1 to 65,536, got [8, 0, 8]"),
        ("layers", [8, -3, 8], "layers widths must be integers from 1 to 65,536"),
        ("layers", [8, 2.5, 8], "layers widths must be integers from 1 to 65,536"),
        ("layers", "8x3x8", 'layers must be a list of widths like [8, 3, 8] or "8-3-8"'),
        ("layers", "8-3", "layers must have at least 3 entries"),
        ("layers", [8, 3, 4], "layers must have as many outputs as inputs for dataset 'encoder'"),
        ("activation", "rleu", "activation must be one of 'relu', 'tanh', 'sigmoid', 'identity'"),
        ("init", "glorot", "init must be one of 'he', 'xavier', 'normal', got 'glorot'"),
        ("init_scale", -1.0, "init_scale must be a finite number > 0, got -1.0"),
        (
            "dataset",
            "mnist",
            "dataset must be one of 'encoder', 'xor', 'parity' or a .npz or .csv file, got 'mnist'",
        ),
        ("dataset", "xor", "layers must have 2 inputs and 1 output for dataset 'xor', got 8-3-8"),
        ("dataset", "parity", "layers must have 1 output and at most 16 inputs for dataset"),
        ("loss_fn", "ce", "loss_fn must be one of 'mse', 'bce', 'cross_entropy', got 'ce'"),
        ("batch_size", 0, "batch_size must be an integer from 1 to 1,000,000,000,000, got 0"),
        ("batch_size", 9, "batch_size must be None or between 1 and n_samples = 8, got 9"),
        ("bias", "yes", "bias must be true or false, got 'yes'"),
        ("bias", 1, "bias must be true or false, got 1"),
    ],
)
def test_each_invalid_value_names_field_rule_and_value(field, value, expected):
    with pytest.raises(ConfigError, match="^" + re.escape(expected)) as info:
        RunConfig(**{field: value})
    assert isinstance(info.value, ValueError)
    # a task the default layers do not fit is reported against the layers
    assert info.value.field == ("layers" if expected.startswith("layers must have") else field)


def test_misspelt_choice_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'relu'"):
        RunConfig(activation="rleu")


def test_from_dict_rejects_unknown_key_with_suggestion():
    with pytest.raises(ConfigError, match="unknown field 'lerning_rate'") as info:
        RunConfig.from_dict({"lerning_rate": 0.1})
    assert info.value.field == "lerning_rate"
    assert RunConfig.from_dict({"lr": 0.5, "layers": [4, 2, 4]}) == RunConfig(
        lr=0.5, layers=(4, 2, 4)
    )


def test_to_dict_round_trips():
    c = RunConfig(layers=(6, 2, 6), activation="tanh", batch_size=3, seed=4)
    assert RunConfig.from_dict(c.to_dict()) == c


def test_reading_configs_and_specs_imports_no_numba():
    code = (
        "import sys, fastbp, fastbp.config, fastbp.spec;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'pandas')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_results_figures_and_the_reference_import_no_engine():
    # The layers: results and figures above config, never importing the engine or the sweep.
    code = (
        "import sys, fastbp.results, fastbp.plot, fastbp.report, fastbp.reference;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'numba' or m in"
        " ('fastbp.train', 'fastbp.engine.codegen', 'fastbp.engine.kernels', 'fastbp.sweep')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "first", ["fastbp.engine.kernels", "fastbp.engine.intrinsics", "fastbp.train", "fastbp"]
)
def test_numba_settings_apply_whichever_module_is_imported_first(first):
    code = (
        f"import {first}, fastbp; from fastbp.train import train_batch;"
        "assert callable(fastbp.train) and fastbp.train.__name__ == 'train';"  # the function
        "from numba.core import config; print(config.SLP_VECTORIZE)"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_SLP_VECTORIZE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)  # fmt: skip
    assert out.stdout.strip() == "1"


def test_built_in_tasks_have_their_samples():
    from fastbp.data import make_dataset

    X, T = make_dataset(RunConfig(layers=(2, 3, 1), dataset="xor", batch_size=4))
    assert X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and T.ravel().tolist() == [0, 1, 1, 0]
    config = RunConfig(layers=(3, 5, 1), dataset="parity")
    X, T = make_dataset(config)
    assert config.n_samples == 8 and X.shape == (8, 3) and len({tuple(x) for x in X}) == 8
    assert (T.ravel() == X.sum(axis=1) % 2).all() and X[5].tolist() == [1, 0, 1]
    with pytest.raises(ConfigError, match="between 1 and n_samples = 4, got 5"):
        RunConfig(layers=(2, 3, 1), dataset="xor", batch_size=5)


def test_fields_added_since_0_3_leave_the_ids_of_earlier_results_alone():
    assert RunConfig().run_id == "483745e610ca"  # the id fastbp 0.3 gave the default run
    assert RunConfig(loss_fn="mse").run_id == RunConfig().run_id
    assert RunConfig(loss_fn="bce").run_id != RunConfig().run_id


def test_cross_entropy_needs_two_outputs():
    with pytest.raises(ConfigError, match="^loss_fn 'cross_entropy' needs at least 2 outputs") as e:
        RunConfig(layers=(2, 3, 1), dataset="xor", loss_fn="cross_entropy")
    assert e.value.field == "loss_fn" and "use 'bce'" in str(e.value)


def test_numpy_scalars_and_arrays_are_taken_as_the_python_values_they_hold():
    import numpy as np

    plain = RunConfig(layers=[8, 4, 8], seed=3, steps=300_000, lr=0.5, bias=False)
    numpy = RunConfig(layers=np.array([8, 4, 8]), seed=np.int64(3), steps=np.int32(300_000),
                      lr=np.float64(0.5), bias=np.False_)  # fmt: skip
    assert numpy == plain and numpy.run_id == plain.run_id
    assert type(numpy.seed) is int and type(numpy.layers[0]) is int and numpy.bias is False
    assert RunConfig(lr=np.float32(0.1)).lr == float(np.float32(0.1))  # its exact value
    with pytest.raises(
        ConfigError, match="^seed must be an integer from 0 to 9,223,372,036,854,775,807, got -1"
    ):
        RunConfig(seed=np.int64(-1))
    with pytest.raises(
        ConfigError, match="^steps must be an integer from 1 to 1,000,000,000,000, got 2.5"
    ):
        RunConfig(steps=np.float64(2.5))


def test_layers_may_be_written_as_the_tables_write_them():
    assert RunConfig(layers="8-4-3-8").layers == (8, 4, 3, 8)
    assert RunConfig(layers=" 8-3-8 ").run_id == RunConfig().run_id
