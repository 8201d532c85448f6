"""What a user installs: the wheel holds every module and example spec the checkout has,
and the example specs are found by name wherever fastbp is installed."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from fastbp.spec import SpecError, examples, load_spec

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_module_and_example_spec(tmp_path):
    # Built from a copy: setuptools leaves a build/ folder in the tree it builds.
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for folder in ("fastbp", "sweeps"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # The installed setuptools builds it (no download): a test extra.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("fastbp-*.whl")
    inside = {name for name in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in name}
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "fastbp").rglob("*.py")}
    specs = {f"fastbp/sweeps/{p.name}" for p in (ROOT / "sweeps").glob("*.toml")}
    assert modules and specs
    assert inside == modules | specs  # each one, and nothing else (no tests, no caches)


def test_an_example_spec_is_found_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no sweeps/ folder here, as for a user of the wheel
    assert set(examples()) == {p.stem for p in (ROOT / "sweeps").glob("*.toml")}
    assert load_spec("lr_grid").name == "lr_grid"
    assert load_spec("xor.toml").name == "xor"
    try:
        load_spec("lr_grd")
    except SpecError as err:
        assert "no such file (nor an example spec of that name: " in str(err)
        assert "lr_grid" in str(err)
    else:
        raise AssertionError("a name that is neither a file nor an example was accepted")
    (tmp_path / "lr_grid.toml").write_text('[sweep]\nname = "mine"\n[base]\nsteps = 5\n')
    assert load_spec("lr_grid.toml").name == "mine"  # a file of the user's comes first
