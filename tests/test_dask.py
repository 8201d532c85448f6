"""Sweeps on a Dask cluster: a real scheduler and workers on 127.0.0.1, and their faults."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from fastbp import load_results

Client = pytest.importorskip("distributed").Client  # the cluster tests need it

SMALL = """
[sweep]
name = "d"
[base]
steps = 2000
log_every = 100
[grid]
lr = [0.05, 0.01]
bias = [true, false]
seed = { range = [0, 3] }
"""
# Long enough that a fault lands mid-sweep: 80 runs, 10 blocks of 8 x 300,000 steps.
LONG = """
[sweep]
name = "long"
[base]
steps = 300_000
log_every = 1000
[grid]
lr = [0.01, 0.001]
seed = { range = [0, 40] }
"""


def start(args, log):
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers, as the README starts them by hand."""
    procs = []
    log = open(tmp_path / "cluster.log", "w")  # noqa: SIM115 - closed below
    try:
        info = tmp_path / "scheduler.json"
        procs.append(
            start(
                [
                    "distributed.cli.dask_scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(info),
                ],
                log,
            )
        )
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)  # let the file be written in full
        address = json.loads(info.read_text())["address"]
        for name in ("w1", "w2"):
            procs.append(
                start(
                    [
                        "distributed.cli.dask_worker",
                        address,
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--no-dashboard",
                        "--host",
                        "127.0.0.1",
                        "--name",
                        name,
                    ],
                    log,
                )
            )
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield {"address": address, "scheduler": procs[0], "workers": procs[1:]}
    finally:
        for proc in reversed(procs):
            stop(proc)
        log.close()


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def sweep(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "fastbp.sweep", *map(str, args), "--quiet", "--no-plots"],
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def assert_same_tables(a, b):
    a, b = load_results(a), load_results(b)
    pd.testing.assert_frame_equal(a.runs.drop(columns="wall_s"), b.runs.drop(columns="wall_s"))
    pd.testing.assert_frame_equal(a.curves, b.curves)
    pd.testing.assert_frame_equal(a.params, b.params)


def saved_shards(out):
    return len(list((out / "shards").glob("*.runs.parquet"))) if (out / "shards").exists() else 0


def wait_for_a_shard(out, proc, limit=120):
    deadline = time.monotonic() + limit
    while saved_shards(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert saved_shards(out) >= 1, "no run finished"


def test_a_cluster_gives_the_tables_of_a_local_run(cluster, tmp_path):
    spec = write(tmp_path, SMALL)
    remote = sweep(
        spec, "--out", tmp_path / "remote", "--backend", "dask", "--scheduler", cluster["address"]
    )
    assert remote.returncode == 0, remote.stderr
    assert "on 2 worker(s)" in remote.stderr
    assert sweep(spec, "--out", tmp_path / "local").returncode == 0
    assert_same_tables(tmp_path / "remote", tmp_path / "local")
    again = sweep(
        spec, "--out", tmp_path / "remote", "--backend", "dask", "--scheduler", cluster["address"]
    )
    assert again.returncode == 0 and "0 run(s) trained in 0.0 s; 12 reused" in again.stdout


def test_successive_halving_on_a_cluster_decides_as_it_does_here(cluster, tmp_path):
    spec = write(tmp_path, SMALL.replace("lr = [0.05, 0.01]", "lr = [0.3, 0.05, 0.01]")
                 + "[halving]\nmin_steps = 200\n")  # fmt: skip
    remote = sweep(
        spec, "--out", tmp_path / "remote", "--backend", "dask", "--scheduler", cluster["address"]
    )
    assert remote.returncode == 0, remote.stderr
    assert "halving: rung at 200 steps: 6 setting(s) ranked, 2 go on" in remote.stderr
    assert sweep(spec, "--out", tmp_path / "local").returncode == 0
    assert_same_tables(tmp_path / "remote", tmp_path / "local")


def test_the_spec_can_name_the_backend_and_the_command_line_wins(cluster, tmp_path):
    spec = write(
        tmp_path,
        SMALL.replace(
            'name = "d"', f'name = "d"\nbackend = "dask"\nscheduler = "{cluster["address"]}"'
        ),
    )
    out = sweep(spec, "--out", tmp_path / "a")
    assert out.returncode == 0 and "on 2 worker(s)" in out.stderr
    local = sweep(spec, "--out", tmp_path / "b", "--backend", "sequential")
    assert local.returncode == 0 and "on 1 worker(s)" in local.stderr
    assert_same_tables(tmp_path / "a", tmp_path / "b")


def on_cluster(spec, out, cluster):
    """The arguments of `python -m` for a sweep of spec into out on the cluster."""
    return [
        "fastbp.sweep",
        str(spec),
        "--out",
        str(out),
        "--quiet",
        "--no-plots",
        "--backend",
        "dask",
        "--scheduler",
        cluster["address"],
    ]


def fault_mid_sweep(cluster, tmp_path, fault):
    """Start the LONG sweep on the cluster, call fault() once a run is saved, and return
    (spec, out, exit code, what the sweep printed)."""
    spec = write(tmp_path, LONG)
    out = tmp_path / "out"
    with open(tmp_path / "sweep.log", "w") as log:
        proc = start(on_cluster(spec, out, cluster), log)
        wait_for_a_shard(out, proc)
        fault()
        code = proc.wait(timeout=600)
    return spec, out, code, (tmp_path / "sweep.log").read_text()


def test_a_worker_killed_mid_sweep_loses_nothing(cluster, tmp_path):
    def kill_a_worker():
        os.kill(cluster["workers"][0].pid, signal.SIGKILL)

    spec, out, code, text = fault_mid_sweep(cluster, tmp_path, kill_a_worker)
    if code != 0:  # the engine gave up on the lost tasks: a rerun completes the sweep
        assert "resume with:" in text
        assert sweep(spec, "--out", out).returncode == 0
    assert len(load_results(out).runs) == 80
    assert sweep(spec, "--out", tmp_path / "fresh").returncode == 0
    assert_same_tables(out, tmp_path / "fresh")


def test_a_scheduler_stopped_mid_sweep_fails_clearly_and_the_rerun_resumes(cluster, tmp_path):
    spec, out, code, text = fault_mid_sweep(cluster, tmp_path, lambda: stop(cluster["scheduler"]))
    assert code != 0
    assert "error: the sweep stopped:" in text and "resume with:" in text
    assert "Traceback" not in text
    kept = saved_shards(out)
    assert kept >= 1
    resumed = sweep(spec, "--out", out)
    assert resumed.returncode == 0
    assert json.loads((out / "meta.json").read_text())["runs_reused"] > 0
    assert len(load_results(out).runs) == 80


def test_a_local_dask_cluster_is_started_and_stopped(tmp_path):
    spec = write(tmp_path, SMALL)
    out = sweep(spec, "--out", tmp_path / "a", "--backend", "dask", "--n-jobs", "2")
    assert out.returncode == 0, out.stderr
    assert sweep(spec, "--out", tmp_path / "b").returncode == 0
    assert_same_tables(tmp_path / "a", tmp_path / "b")


def test_an_unreachable_scheduler_is_one_line(tmp_path, monkeypatch, capsys):
    from fastbp import backends
    from fastbp.sweep import main

    monkeypatch.setattr(backends, "CONNECT_TIMEOUT_S", 1)  # not the 10 s a real one gets
    spec = write(tmp_path, SMALL)
    args = ["--out", str(tmp_path / "o"), "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"]
    assert main([str(spec), *args]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    )
    assert "Traceback" not in err


def test_runs_left_to_the_loop_kernel_train_on_it_on_the_clusters_workers(tmp_path):
    """Runs too short to pay for a kernel of their own train on the loop kernel on Dask's
    workers too: they compile no kernel per architecture (they did, inside the training
    time, when the set of such kernels reached them as a set of Dask Futures)."""
    # four architectures: in a kernel folder of its own the loop kernel is not compiled yet,
    # and takes over only where it spares more compiling than its own (planner)
    spec = write(tmp_path, '[sweep]\nname = "a"\n[base]\nsteps = 200\nlog_every = 100\n'
                 "[grid]\nlayers = [[3, 5, 3], [3, 6, 3], [3, 4, 3], [3, 7, 3]]\n"
                 "seed = [0, 1]\n")  # fmt: skip
    env = {**os.environ, "FASTBP_KERNEL_DIR": str(tmp_path / "k")}
    env.pop("FASTBP_LOOP_BUDGET_S", None)
    out = sweep(spec, "--out", tmp_path / "out", "--backend", "dask", "--n-jobs", "2", env=env)
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert {k["form"] for k in meta["kernels"].values()} == {"loop kernel"}
    kernels = list((tmp_path / "k").glob("build-*/fastbp_kernel_*.py"))
    assert len(kernels) == 1 and "def train_kernel" in kernels[0].read_text()  # that one alone
