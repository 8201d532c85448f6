"""Sweep specs: grid expansion, unions, random draws, and one clear error for each mistake."""

import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from fastbp import RunConfig
from fastbp.spec import SpecError, load_spec, parse_spec


def spec_of(text, tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(textwrap.dedent(text))
    return load_spec(path)


def test_grid_is_the_cartesian_product_over_base(tmp_path):
    spec = spec_of(
        """
        [sweep]
        name = "g"
        threshold = 0.07
        [base]
        layers = [8, 4, 8]
        log_every = 10
        lr = 0.5            # the grid wins over base
        [grid]
        lr = [1e-2, 1e-3]
        bias = [true, false]
        seed = { range = [0, 3] }
        """,
        tmp_path,
    )
    assert spec.name == "g" and spec.threshold == 0.07
    assert len(spec.runs) == 2 * 2 * 3
    assert {r.lr for r in spec.runs} == {1e-2, 1e-3}
    assert {r.seed for r in spec.runs} == {0, 1, 2}
    assert all(r.layers == (8, 4, 8) and r.log_every == 10 for r in spec.runs)
    assert spec.runs[0] == RunConfig(layers=(8, 4, 8), log_every=10, lr=1e-2, bias=True, seed=0)
    assert spec.swept == ("lr", "bias", "seed")
    assert spec.total_steps == 12 * 50_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{ range = [2, 11, 3] }", [2, 5, 8]),
        ("{ logspace = [-2, -6, 5] }", [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]),
        ("{ linspace = [0.1, 0.5, 5] }", [0.1, 0.2, 0.3, 0.4, 0.5]),
        ("[0.5]", [0.5]),
    ],
)
def test_grid_generators(value, expected, tmp_path):
    key = "seed" if "range" in value else "lr"
    spec = spec_of(f'[sweep]\nname = "g"\n[grid]\n{key} = {value}\n', tmp_path)
    assert [getattr(r, key) for r in spec.runs] == expected  # exact: 1e-5, not 9.99...e-06


def test_generated_values_give_the_same_runs_as_listed_values(tmp_path):
    generated = spec_of('[sweep]\nname = "a"\n[grid]\nlr = { logspace = [-1, -5, 5] }\n', tmp_path)
    listed = spec_of('[sweep]\nname = "b"\n[grid]\nlr = [0.1, 0.01, 1e-3, 1e-4, 1e-5]\n', tmp_path)
    assert [r.run_id for r in generated.runs] == [r.run_id for r in listed.runs]


def test_array_of_grids_is_a_union_without_duplicates(tmp_path):
    spec = spec_of(
        """
        [sweep]
        name = "u"
        [[grid]]
        lr = [1e-2, 1e-4]
        steps = [1000]
        [[grid]]
        lr = [1e-4, 1e-6]
        steps = [1000, 3000]
        """,
        tmp_path,
    )
    pairs = [(r.lr, r.steps) for r in spec.runs]
    assert pairs == [(1e-2, 1000), (1e-4, 1000), (1e-4, 3000), (1e-6, 1000), (1e-6, 3000)]
    assert len({r.run_id for r in spec.runs}) == len(spec.runs)


def test_layers_in_a_grid_are_lists_of_lists(tmp_path):
    spec = spec_of('[sweep]\nname = "w"\n[grid]\nlayers = [[8, 3, 8], [8, 5, 5, 8]]\n', tmp_path)
    assert [r.layers for r in spec.runs] == [(8, 3, 8), (8, 5, 5, 8)]


def test_random_draws_are_reproducible_and_in_range(tmp_path):
    text = """
        [sweep]
        name = "r"
        [base]
        steps = 100
        [random]
        n = 30
        seed = 4
        lr = { loguniform = [1e-5, 1e-1] }
        init_scale = { uniform = [0.05, 0.5] }
        activation = { choice = ["relu", "tanh"] }
        log_every = [10, 20]
        steps = { uniform = [100, 200] }
        """
    a, b = spec_of(text, tmp_path), spec_of(text, tmp_path)
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs]
    assert len(a.runs) == 30
    assert all(1e-5 <= r.lr <= 1e-1 and 0.05 <= r.init_scale <= 0.5 for r in a.runs)
    assert {r.activation for r in a.runs} == {"relu", "tanh"}
    assert {r.log_every for r in a.runs} == {10, 20}
    assert all(isinstance(r.steps, int) and 100 <= r.steps <= 200 for r in a.runs)
    other = spec_of(text.replace("seed = 4", "seed = 5"), tmp_path)
    assert [r.lr for r in other.runs] != [r.lr for r in a.runs]


def test_random_draws_are_crossed_with_the_grid(tmp_path):
    text = """
        [sweep]
        name = "r"
        [random]
        n = 4
        lr = { loguniform = [1e-3, 1.0] }
        activation = ["relu", "tanh"]
        [grid]
        seed = { range = [0, 3] }
        """
    spec = spec_of(text, tmp_path)
    alone = spec_of(text.replace("[grid]", "[base]").replace("{ range = [0, 3] }", "0"), tmp_path)
    assert len(spec.runs) == 12 and len(alone.runs) == 4
    for k, drawn in enumerate(alone.runs):  # each draw at every seed, its seeds together
        three = spec.runs[3 * k : 3 * k + 3]
        assert [r.seed for r in three] == [0, 1, 2]
        assert all(replace(r, seed=0) == drawn for r in three)
    assert set(spec.swept) == {"lr", "activation", "seed"}
    with pytest.raises(SpecError, match=r"\[grid\]\.lr: lr is also drawn in \[random\]"):
        spec_of(text + "lr = [0.1]\n", tmp_path)
    doc = {"sweep": {"name": "b"}, "random": {"n": 1000, "lr": [0.1]},
           "grid": {"seed": {"range": [0, 1001]}}}  # fmt: skip
    with pytest.raises(SpecError, match=r"\[grid\]: 1,001,000 runs"):
        parse_spec(doc)


def test_no_grid_is_a_single_run(tmp_path):
    spec = spec_of('[sweep]\nname = "one"\n[base]\nlr = 0.1\n', tmp_path)
    assert spec.runs == (RunConfig(lr=0.1),) and spec.swept == ()


def test_run_id_is_stable_across_processes():
    code = "from fastbp import RunConfig; print(RunConfig(lr=1e-4, layers=[8, 3, 8]).run_id)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == RunConfig(lr=1e-4).run_id
    assert RunConfig(lr=1e-4).run_id != RunConfig(lr=1e-4, seed=1).run_id


GOOD = '[sweep]\nname = "s"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sweep\nname = 1", "invalid TOML"),
        ('[sweep]\nname = "s"\n[grdi]\n', "[grdi]: unknown section; did you mean 'grid'?"),
        ("[base]\nlr = 0.1\n", "[sweep]: missing section"),
        ("[sweep]\nthreshold = 0.1\n", "[sweep].name: missing"),
        ('[sweep]\nname = "a/b"\n', "[sweep].name: must be a name of letters"),
        ('[sweep]\nname = "s"\nthreshold = -1\n', "[sweep].threshold: must be a finite number > 0"),
        (
            GOOD + "[grid]\nlerning_rate = [0.1]\n",
            "[grid].lerning_rate: unknown key 'lerning_rate' in [grid]; did you mean 'lr'?",
        ),
        (
            GOOD + "[base]\nactivaton = 'tanh'\n",
            "[base].activaton: unknown key 'activaton' in [base]",
        ),
        (
            GOOD + "[grid]\nlr = [0.1, -0.01]\n",
            "[grid].lr: lr must be a finite number > 0, got -0.01",
        ),
        (GOOD + "[base]\nlr = 'fast'\n", "[base].lr: lr must be a finite number > 0, got 'fast'"),
        (GOOD + "[grid]\nlr = []\n", "[grid].lr: empty list"),
        (GOOD + "[grid]\nlr = 0.1\n", "[grid].lr: must be a list of values"),
        (
            GOOD + "[grid]\nseed = { range = [5, 5] }\n",
            "[grid].seed: range [5, 5] yields no values",
        ),
        (GOOD + "[grid]\nseed = { rnage = [0, 5] }\n", "did you mean 'range'?"),
        (
            GOOD + "[grid]\nlr = { logspace = [-1, -3] }\n",
            "[grid].lr: logspace takes [low, high, count]",
        ),
        (GOOD + "[grid]\nlayers = [8, 3, 8]\n", "[grid].layers: in a grid, layers takes a list of"),
        (
            GOOD + "[grid]\nlayers = [[8, 3, 4]]\n",
            "[grid].layers: layers must have as many outputs",
        ),
        (
            GOOD + "[[grid]]\nlr = [0.1]\n[[grid]]\nsteps = [0]\n",
            "[grid #2].steps: steps must be an integer from 1 to 1,000,000,000,000, got 0",
        ),
        (GOOD + "[random]\nlr = { loguniform = [0.1, 1] }\n", "[random].n: missing"),
        (
            GOOD + "[random]\nn = 3\nlr = { loguniform = [0, 1] }\n",
            "[random].lr: loguniform needs 0 < low",
        ),
        (
            GOOD + "[random]\nn = 3\nlr = { gauss = [0, 1] }\n",
            "[random].lr: must be a list or one of",
        ),
    ],
)
def test_each_spec_mistake_is_one_line_exit_2_and_no_traceback(text, expected, tmp_path, capsys):
    from fastbp.sweep import main  # the command, in this process (one real one: below)

    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert expected in str(info.value)
    assert main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ")
    assert expected in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # nothing started


def test_missing_file_is_reported_with_its_name(tmp_path):
    missing = tmp_path / "nope.toml"
    out = subprocess.run(
        [sys.executable, "-m", "fastbp.sweep", str(missing)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {missing}: no such file"  # one line, no traceback


def test_parse_spec_accepts_a_document():
    spec = parse_spec({"sweep": {"name": "d"}, "grid": {"seed": [1, 2]}})
    assert [r.seed for r in spec.runs] == [1, 2]


def test_a_spec_of_too_many_runs_is_refused_before_it_is_read(tmp_path):
    import time

    from fastbp.spec import MAX_RUNS

    spec = tmp_path / "big.toml"
    spec.write_text('[sweep]\nname = "big"\n[grid]\nseed = { range = [0, 5000000] }\n')
    start = time.perf_counter()
    with pytest.raises(SpecError, match=r"\[grid\].seed: 5,000,000 runs; a spec holds at most"):
        load_spec(spec)
    assert time.perf_counter() - start < 5  # refused at once, not after minutes of reading
    grid = {"seed": {"range": [0, 2000]}, "lr": {"logspace": [-4, 0, 1000]}}
    with pytest.raises(SpecError, match=r"\[grid\]: 2,000,000 runs"):
        parse_spec({"sweep": {"name": "b"}, "grid": grid})
    with pytest.raises(SpecError, match=r"\[random\].n: 1,000,001 runs"):
        parse_spec({"sweep": {"name": "b"}, "random": {"n": MAX_RUNS + 1, "lr": [0.1]}})


def test_a_run_that_cannot_fit_in_memory_is_refused_when_the_spec_is_read():
    doc = {"sweep": {"name": "huge"}, "base": {"steps": 1_000_000_000_000}}
    with pytest.raises(SpecError, match=r"\[base\].steps: steps = 1,000,000,000,000 with "
                       r"log_every = 100 would hold .* TiB for its logged steps"):  # fmt: skip
        parse_spec(doc)
    doc["base"]["log_every"] = 10**9  # a few points: it fits (and would train for hours)
    assert parse_spec(doc).runs[0].steps == 10**12
    doc["base"].update(steps=10**10, batch_size=4)  # one index per sample and step
    with pytest.raises(SpecError, match="for the order of its samples.*: lower steps$"):
        parse_spec(doc)
