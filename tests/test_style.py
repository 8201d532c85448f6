"""The code passes ruff, as configured in pyproject.toml: lint and format."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command):
    out = subprocess.run([sys.executable, "-m", "ruff", *command, "fastbp", "tests", "benchmarks"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


# The layers of the README's "How it is built": a module imports from its own layer and
# those this maps it to. Results and figures sit beside the engine, never importing it.
LAYERS = {
    "foundations": [
        "config",
        "schedules",
        "system",
        "cli",
        "data",
        "params",
        "reference",
        "metrics",
    ],  # fmt: skip
    "the engine": ["engine", "train", "planner", "calibrate"],
    "results and figures": [
        "results",
        "layout",
        "ranking",
        "importance",
        "plot",
        "drawing",
        "png",
        "explore",
        "report",
    ],
    "the sweep": ["spec", "halving", "sweep", "backends", "__main__"],
}
ENGINE_DOORS = {"train", "planner", "calibrate"}  # the rest reaches fastbp.engine through these
MAY_IMPORT = {
    "foundations": {"foundations"},
    "the engine": {"foundations", "the engine"},
    "results and figures": {"foundations", "results and figures"},
    "the sweep": set(LAYERS),
}


def fastbp_imports(path: Path) -> set[str]:
    """The fastbp modules a file imports, at its top or inside functions, by their first
    name under fastbp (``engine`` for fastbp.engine.codegen)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fastbp"):
            parts = node.module.split(".")
            names |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fastbp.")}
    return names


def test_imports_flow_one_way_through_the_layers():
    layer_of = {module: layer for layer, modules in LAYERS.items() for module in modules}
    files = [p for p in (ROOT / "fastbp").glob("*.py") if p.stem != "__init__"]
    assert {p.stem for p in files} | {"engine"} == set(layer_of)  # every module has its layer
    wrong = []
    for path in [*files, *(ROOT / "fastbp" / "engine").glob("*.py")]:
        layer = layer_of["engine" if path.parent.name == "engine" else path.stem]
        for name in fastbp_imports(path) - {"__version__"}:
            if name in layer_of and layer_of[name] not in MAY_IMPORT[layer]:
                wrong.append(f"{path.relative_to(ROOT)} ({layer}) imports {name}")
            if name == "engine" and path.stem not in ENGINE_DOORS and path.parent.name != "engine":
                wrong.append(f"{path.relative_to(ROOT)} imports the engine: go through train")
            if name not in layer_of and name not in {"RunConfig", "Data", "load_results"}:
                wrong.append(f"{path.relative_to(ROOT)} imports fastbp.{name}: no such module")
    assert not wrong
