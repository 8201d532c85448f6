"""The user's own data: files and arrays, their errors, identity by content, the
validation split and the validation metrics."""

import os
import pickle
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest

from fastbp import reference
from fastbp.config import ConfigError, RunConfig
from fastbp.data import Data, make_dataset, make_validation
from fastbp.spec import SpecError, parse_spec
from fastbp.train import train, train_batch

RNG = np.random.default_rng(3)
X = RNG.normal(size=(24, 3))
T = (X[:, :1] * X[:, 1:2] > 0).astype(float)  # same sign of the first two inputs


def write_csv(path, X, T, names=("a", "b", "c", "y")):
    rows = [",".join(names)] + [
        ",".join(repr(float(v)) for v in [*x, *t]) for x, t in zip(X, T, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def files(tmp_path):
    np.savez(tmp_path / "d.npz", X=X, T=T)
    write_csv(tmp_path / "d.csv", X, T)
    return tmp_path


def test_a_file_trains_as_its_arrays_and_its_id_is_its_content(files, tmp_path):
    base = dict(layers=(3, 6, 1), lr=0.1, steps=300, log_every=100, loss_fn="bce")
    by_npz = RunConfig(dataset=str(files / "d.npz"), **base)
    by_csv = RunConfig(dataset=str(files / "d.csv"), **base)
    by_arrays = RunConfig(dataset=Data(X, T), **base)
    assert by_npz.run_id == by_csv.run_id == by_arrays.run_id  # the same numbers
    assert by_npz.n_samples == 24 and str(by_npz.dataset) == str(files / "d.npz")
    results = [train(c, engine="loops") for c in (by_npz, by_csv, by_arrays)]
    assert all(np.array_equal(r.losses, results[0].losses) for r in results)
    moved = tmp_path / "elsewhere.npz"
    shutil.copy(files / "d.npz", moved)
    assert RunConfig(dataset=str(moved), **base).run_id == by_npz.run_id
    np.savez(moved, X=X, T=1 - T)  # edited: another run
    assert RunConfig(dataset=str(moved), **base).run_id != by_npz.run_id


def test_the_data_travels_with_the_config(files, tmp_path):
    shutil.copy(files / "d.npz", tmp_path / "gone.npz")
    config = RunConfig(dataset=str(tmp_path / "gone.npz"), layers=(3, 4, 1), steps=50)
    shipped = pickle.dumps(config)
    os.remove(tmp_path / "gone.npz")  # a worker without the file
    again = pickle.loads(shipped)
    assert again == config and again.run_id == config.run_id
    assert np.array_equal(train(again, engine="loops").losses, train(config, engine="loops").losses)


def test_csv_targets_are_the_last_columns_unless_named(files):
    last = RunConfig(dataset=str(files / "d.csv"), layers=(3, 4, 1))
    np.testing.assert_array_equal(make_dataset(last)[1], T)
    named = RunConfig(dataset=str(files / "d.csv"), layers=(3, 4, 1), targets=["a"])
    Xn, Tn = make_dataset(named)
    np.testing.assert_array_equal(Tn[:, 0], X[:, 0])
    np.testing.assert_array_equal(Xn, np.column_stack([X[:, 1:], T]))


@pytest.mark.parametrize(
    ("make", "values", "field", "message"),
    [
        (None, {"layers": (4, 4, 1)}, "dataset", "d.npz: X has shape (24, 3), layers 4-4-1 need"),
        (None, {"layers": (3, 4, 2)}, "dataset", "d.npz: T has shape (24, 1), layers 3-4-2 need"),
        (lambda p: np.savez(p / "d.npz", X=X), {}, "dataset", "d.npz: no array T (it has X)"),
        (lambda p: np.savez(p / "d.npz", X=X, T=T, W=X), {}, "dataset", "d.npz: unknown array W"),
        (lambda p: np.savez(p / "d.npz", X=X, T=T[:5]), {}, "dataset", "X has 24 rows and T has 5"),
        (lambda p: np.savez(p / "d.npz", X=np.where(X > 1, np.nan, X), T=T), {}, "dataset", "NaN"),
        (lambda p: (p / "d.npz").write_text("no"), {}, "dataset", "d.npz: not a .npz file"),
        (lambda p: os.remove(p / "d.npz"), {}, "dataset", "d.npz: no such file"),
        (None, {"targets": ["y"]}, "dataset", "targets names columns of a .csv file"),
        (None, {"val_fraction": 0.01}, "val_fraction", "holds out 0: at least one"),
        (None, {"batch_size": 30}, "batch_size", "between 1 and n_samples = 24"),
    ],
)  # fmt: skip
def test_bad_data_is_one_line_naming_the_file_and_the_array(files, make, values, field, message):
    if make:
        make(files)
    with pytest.raises(ConfigError) as err:
        RunConfig(**{"dataset": str(files / "d.npz"), "layers": (3, 4, 1), **values})
    assert err.value.field == field and message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_csv_cells_name_the_line_and_column(files):
    text = (files / "d.csv").read_text().splitlines()
    text[3] = text[3].replace(text[3].split(",")[1], "oops", 1)
    (files / "d.csv").write_text("\n".join(text))
    with pytest.raises(ConfigError, match=r"d.csv: line 4, column 'b': not a number: 'oops'"):
        RunConfig(dataset=str(files / "d.csv"), layers=(3, 4, 1))


def test_a_relative_path_is_relative_to_the_spec_file(files, tmp_path, monkeypatch):
    doc = {"sweep": {"name": "s"}, "base": {"dataset": "d.npz", "layers": [3, 4, 1]}}
    spec_file = files / "spec.toml"
    (run,) = parse_spec(doc, spec_file).runs
    assert str(run.dataset) == str(files / "d.npz")
    monkeypatch.chdir(tmp_path.parent)  # from a dict: the working directory
    with pytest.raises(SpecError, match=r"\[base\].dataset: dataset .*d.npz: no such file"):
        parse_spec(doc)
    monkeypatch.chdir(files)
    (run,) = parse_spec(doc).runs
    assert run.dataset == Data(X, T)


def test_the_validation_split_is_seeded_and_shared_by_every_run(files):
    config = RunConfig(dataset=str(files / "d.npz"), layers=(3, 4, 1), val_fraction=0.25)
    (Xt, Tt), (Xv, Tv) = make_dataset(config), make_validation(config)
    assert config.n_samples == len(Xt) == 18 and len(Xv) == 6
    rows = {tuple(x) for x in X}
    assert {tuple(x) for x in Xt} | {tuple(x) for x in Xv} == rows
    assert not {tuple(x) for x in Xt} & {tuple(x) for x in Xv}
    other = RunConfig(dataset=str(files / "d.npz"), layers=(3, 4, 1), val_fraction=0.25, seed=9)
    np.testing.assert_array_equal(make_validation(other)[0], Xv)
    own = RunConfig(dataset=Data(Xt, Tt, Xv, Tv), layers=(3, 4, 1))
    np.testing.assert_array_equal(make_validation(own)[0], Xv)
    with pytest.raises(ConfigError, match="it has X_val and T_val"):
        RunConfig(dataset=Data(Xt, Tt, Xv, Tv), layers=(3, 4, 1), val_fraction=0.2)
    parity = RunConfig(dataset="parity", layers=(6, 8, 1), val_fraction=0.25)
    assert parity.n_samples == 48 and len(make_validation(parity)[0]) == 16


def test_validation_metrics_at_each_logged_step_match_the_reference(files):
    config = RunConfig(dataset=str(files / "d.npz"), layers=(3, 6, 1), lr=0.05, steps=400,
                       log_every=200, loss_fn="bce", val_fraction=0.25)  # fmt: skip
    result = train(config)
    Xv, Tv = make_validation(config)
    for i, step in enumerate(result.steps):
        params = (
            reference.init_params(config)
            if step == 0
            else train(RunConfig(**{**config.to_dict(), "steps": int(step)})).params
        )
        Y = reference.predict(params, Xv, config.activation)
        assert result.val_loss[i] == pytest.approx(reference.bce(Y, Tv), rel=1e-12)
        assert result.val_accuracy[i] == np.mean((Y[:, 0] >= 0) == (Tv[:, 0] == 1))
    block = train_batch([RunConfig(**{**config.to_dict(), "seed": s}) for s in (1, 2)] + [config])
    np.testing.assert_array_equal(block[-1].val_loss, result.val_loss)
    no_split = RunConfig(layers=(3, 6, 1), dataset=str(files / "d.npz"), steps=10)
    assert train(no_split, engine="loops").val_loss is None


def test_results_of_a_data_file_stay_usable_from_anywhere(files, tmp_path):
    """The file is recorded by its absolute path: a sweep resumed from another folder
    names it the same, and figures drawn from elsewhere, after the file moved, finish and
    say once what they cannot draw (a figure process that failed once hung them)."""
    import subprocess
    import sys

    from fastbp.results import load_results

    folder = files / "f"
    folder.mkdir()
    shutil.copy(files / "d.csv", folder / "mydata.csv")
    (folder / "s.toml").write_text(
        '[sweep]\nname = "s"\n[base]\ndataset = "mydata.csv"\nlayers = [3, 4, 1]\n'
        'loss_fn = "bce"\nsteps = 40\nlog_every = 20\n[grid]\nseed = [0, 1]\n'
    )

    def run(module, *args, cwd):
        command = [sys.executable, "-m", module, *map(str, args)]
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)

    out = files / "out"
    first = run("fastbp.sweep", "f/s.toml", "--out", out, "--no-plots", cwd=files)
    assert first.returncode == 0, first.stderr
    (folder / "s.toml").write_text((folder / "s.toml").read_text().replace("[0, 1]", "[0, 1, 2]"))
    again = run("fastbp.sweep", "s.toml", "--out", out, "--no-plots", cwd=folder)
    assert again.returncode == 0, again.stderr
    runs = load_results(out).runs
    assert set(runs["dataset"]) == {str((folder / "mydata.csv").resolve())} and len(runs) == 3
    (folder / "mydata.csv").rename(folder / "moved.csv")
    drawn = run("fastbp.plot", out, cwd=tmp_path.parent)
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout.count("skipped learned_params: its outputs need the data again") == 1
    assert "mydata.csv" in drawn.stdout and (out / "plots" / "report.html").exists()
    assert (out / "plots" / "loss_curves.png").exists()


def test_errors_travel_between_processes_whole():
    error = ConfigError("lr", "lr must be > 0, got -1")
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.field, str(again)) == (ConfigError, "lr", str(error))
    spec_error = SpecError("s.toml", "[grid].lr", "bad")
    again = pickle.loads(pickle.dumps(spec_error))
    assert (again.path, again.where, again.message, str(again)) == (
        "s.toml", "[grid].lr", "bad", str(spec_error)
    )  # fmt: skip


@pytest.mark.parametrize(
    ("T_bad", "loss_fn", "message"),
    [
        ([[-1.0], [2.0]], "bce", "T holds -1 (sample 0): loss_fn 'bce' needs targets from 0 to 1"),
        ([[0.5, 0.4], [1.0, 0.0]], "cross_entropy", "T row 0 is [0.5, 0.4] (sum 0.9)"),
        ([[-0.5, 1.5], [1.0, 0.0]], "cross_entropy", "T row 0 is [-0.5, 1.5] (sum 1)"),
    ],
)
def test_targets_a_loss_cannot_take_are_refused(files, T_bad, loss_fn, message):
    n_out = len(T_bad[0])
    T_ok = np.eye(n_out)[np.arange(24) % n_out] if n_out > 1 else T
    T_new = np.vstack([T_bad, T_ok[2:]])
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        RunConfig(dataset=Data(X, T_new), layers=(3, 4, n_out), loss_fn=loss_fn)
    assert info.value.field == "dataset"
    RunConfig(dataset=Data(X, T_new), layers=(3, 4, n_out), loss_fn="mse")  # any target
    RunConfig(dataset=Data(X, T_ok), layers=(3, 4, n_out), loss_fn=loss_fn)  # in range
    np.savez(files / "bad.npz", X=X, T=T_ok, X_val=X[:2], T_val=np.array(T_bad))
    with pytest.raises(ConfigError, match="T_val"):
        RunConfig(dataset=str(files / "bad.npz"), layers=(3, 4, n_out), loss_fn=loss_fn)


def test_damaged_or_odd_files_are_one_line_naming_the_file(files):
    np.savez(files / "ok.npz", X=X, T=T)
    whole = (files / "ok.npz").read_bytes()
    np.save(files / "arr.npy", X)
    cases = {
        "empty.npz": b"",
        "truncated.npz": whole[: len(whole) // 2],
        "renamed.npz": (files / "arr.npy").read_bytes(),
        "garbage.npz": b"not numpy at all",
    }
    for name, content in cases.items():
        (files / name).write_bytes(content)
        with pytest.raises(ConfigError, match=re.escape(f"{name}: not a .npz file (a zip")):
            RunConfig(dataset=str(files / name), layers=(3, 4, 1))
    np.savez(files / "objects.npz", X=np.array([[1, "a"]], dtype=object), T=T[:1])
    with pytest.raises(ConfigError, match="holds arrays of Python objects"):
        RunConfig(dataset=str(files / "objects.npz"), layers=(2, 4, 1))
    (files / "bom.csv").write_text("\ufeffy,a,b,c\n1,2,3,4\n0,1,1,1\n", encoding="utf-8")
    config = RunConfig(dataset=str(files / "bom.csv"), layers=(3, 4, 1), targets=("y",))
    assert config.dataset.T.tolist() == [[1.0], [0.0]]  # the mark is not part of the name
    (files / "twice.csv").write_text("y,a,y\n1,2,3\n0,1,1\n")
    with pytest.raises(ConfigError, match=r"column 'y' appears twice \(columns 1 and 3\)"):
        RunConfig(dataset=str(files / "twice.csv"), layers=(2, 4, 1), targets=("y",))
    with pytest.raises(ValueError, match=r"T is missing \(Data\(X, T\) takes both\)"):
        Data(X, None)


def test_a_sweep_of_a_csv_with_named_targets_trains_halves_and_reports(files, tmp_path):
    # targets stayed on the config once its dataset was read (replace() refused it), and
    # parquet hands them back as arrays, which the report could not group
    import fastbp
    from fastbp.report import summarize
    from fastbp.results import load_results

    spec = (
        f'[sweep]\nname = "t"\n[base]\ndataset = "{files / "d.csv"}"\ntargets = ["y"]\n'
        'layers = [3, 4, 1]\nloss_fn = "bce"\nsteps = 60\nlog_every = 20\n'
        "[grid]\nlr = [0.01, 0.1, 1.0]\nseed = [0, 1]\n[halving]\nmin_steps = 20\n"
    )
    fastbp.run_sweep(spec, out=tmp_path / "out", plots=False, quiet=True)
    runs = load_results(tmp_path / "out").runs
    assert len(runs) == 6 and set(runs["targets"]) == {("y",)}
    assert runs["stopped_at"].notna().any()  # the halving ranked and stopped some
    assert "best:" in summarize(runs, ["lr", "seed"])
    config = replace(spec_runs(spec)[0], steps=20)  # a read config, checked again
    assert config.targets == ("y",)


def spec_runs(text):
    import tomllib

    return parse_spec(tomllib.loads(text)).runs
