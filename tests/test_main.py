"""``python -m fastbp``: one run from the command line; bad values get one line and exit 2."""

import os
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "fastbp", *args], capture_output=True, text=True, timeout=300
    )


def test_one_run_prints_the_curve_and_the_outputs():
    out = run("--steps", "2000", "--lr", "1e-2", "--layers", "[8, 3, 8]", "--activation", "tanh")
    assert out.returncode == 0, out.stderr
    assert "activation='tanh'" in out.stdout and "lr=0.01" in out.stdout
    assert "      2000  " in out.stdout  # the last logged step
    assert "finished in" in out.stdout
    assert out.stdout.count("\n [") == 7  # an 8 x 8 matrix of outputs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "-1"], "error: --lr: lr must be a finite number > 0, got -1"),
        (["--layers", "[8, 3]"], "error: --layers: layers must have at least 3 entries"),
        (["--activation", "rleu"], "did you mean 'relu'?"),
        (
            ["--batch-size", "0"],
            "error: --batch-size: batch_size must be an integer from 1 to 1,000,000,000,000, got 0",
        ),
    ],
)
def test_bad_value_is_one_line_and_exit_2(args, message):
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("fastbp", ["--bogus", "1"], "error: unrecognized arguments: --bogus 1"),
        ("fastbp.sweep", ["x.toml", "--backend", "x"], "error: argument --backend: invalid choice"),
        ("fastbp.sweep", [], "error: the following arguments are required: spec"),
        ("fastbp.plot", ["d", "--format", "gif"], "error: argument --format: invalid choice"),
    ],
)
def test_a_bad_command_line_is_one_line_and_exit_2(command, args, message):
    out = subprocess.run(
        [sys.executable, "-m", command, *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert out.stderr.startswith(message)
    assert len(out.stderr.strip().splitlines()) == 1


def test_help_shows_each_fields_default_and_choices_and_layers_take_8_4_8():
    out = run("--help")
    assert out.returncode == 0 and "``" not in out.stdout
    assert "--layers VALUE" in out.stdout and "default: 8-3-8" in out.stdout
    assert "default: relu; one of relu, tanh, sigmoid, identity" in out.stdout
    assert "default: 0.9 (optimizer momentum or nesterov)" in out.stdout
    out = run("--layers", "8-4-8", "--steps", "200")
    assert out.returncode == 0, out.stderr
    assert "layers=(8, 4, 8)" in out.stdout


@pytest.mark.parametrize("command", ["fastbp", "fastbp.sweep", "fastbp.plot"])
def test_every_command_says_its_version(command):
    import fastbp

    out = subprocess.run([sys.executable, "-m", command, "--version"], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == f"fastbp {fastbp.__version__}"


def test_a_reader_that_stops_reading_gets_no_traceback(tmp_path):
    # `python -m fastbp.sweep SPEC --dry-run | head -0`: the reader is gone before the
    # plan's first line. (Reading a line first, as head -2 does, left a race: the plan of
    # 5 runs fits the pipe, and could all be written before the reader closed it.)
    spec = tmp_path / "many.toml"
    spec.write_text('[sweep]\nname = "many"\n[grid]\nseed = { range = [0, 3000] }\n')
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "fastbp.sweep", str(spec), "--dry-run"],
                            stdout=write_end, stderr=subprocess.PIPE)  # fmt: skip
    os.close(write_end)
    os.close(read_end)  # long before Python has started in the child and printed
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141  # as a process stopped by SIGPIPE
    assert "Traceback" not in err and err == ""
