"""The kernel-form tests (marked ``kernel_forms``) run a second time for an emulated CPU
with narrower vectors than this one (AVX2 on an AVX-512 host, SSE4.2 on an AVX2 host), so
that what breaks on such a CPU breaks here first. That run is a pytest process of its own,
started when the suite is collected so that it uses the second core while the suite runs;
``tests/test_hosts.py`` waits for it and reports it."""

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

# fastbp's Numba settings (fastbp.engine.kernel_cache) before any test module makes a
# jitted function of its own: Numba then builds its code generator without them, and
# kernels compiled here would not be the ones a new process finds in the disk cache.
import fastbp.engine  # noqa: F401, E402 - isort: skip

# Numba targets this machine can run, as ../shared/PERF-NOTES.md has them: both the name
# and the features are set, since fastbp fills in the host's features where they are not.
HASWELL = (
    "+64bit,+avx,+avx2,+fma,+bmi,+bmi2,+f16c,+popcnt,+sse4.2,+sse4.1,+ssse3,+sse3,+sse2,"
    "+sse,+mmx,+fxsr,+cx8,+cx16,+cmov,+movbe,+lzcnt,+xsave"
)
NEHALEM = "+64bit,+popcnt,+sse4.2,+sse4.1,+ssse3,+sse3,+sse2,+sse,+mmx,+fxsr,+cx8,+cx16,+cmov"
EMULATION_TEST = "test_hosts.py::test_kernel_forms_keep_their_bits_on_a_cpu_with_narrower_vectors"
FLAG = "FASTBP_EMULATED_RUN"  # set in the second run, which starts no third

emulated = {}  # "target", "process", "log": what test_hosts.py reads


def narrower_target() -> tuple[str, str] | None:
    """(NUMBA_CPU_NAME, NUMBA_CPU_FEATURES) of an x86 CPU with narrower vectors than the
    one the kernels are compiled for here, which this machine runs; None where there is
    none (not x86, or no wider than SSE)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    features = os.environ.get("NUMBA_CPU_FEATURES")
    if not features:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features().flatten()
    features = features.split(",")
    if "+avx512f" in features:
        return "haswell", HASWELL
    if "+avx2" in features:
        return "nehalem", NEHALEM
    return None


def pytest_collection_modifyitems(session, config, items):
    chosen = [item for item in items if item.nodeid.endswith(EMULATION_TEST)]
    if not chosen or os.environ.get(FLAG) or config.option.collectonly:
        return
    items.remove(chosen[0])
    items.append(chosen[0])  # last: it waits for the second run
    target = narrower_target()
    if target is None:
        return
    env = {**os.environ, FLAG: "1", "NUMBA_CPU_NAME": target[0], "NUMBA_CPU_FEATURES": target[1]}
    log = tempfile.TemporaryFile(mode="w+")
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m",
               "kernel_forms", str(root / "tests")]  # fmt: skip
    process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    emulated.update(target=target, process=process, log=log)


def pytest_unconfigure(config):
    process = emulated.get("process")
    if process is not None and process.poll() is None:  # the suite stopped early (-x)
        process.kill()
        process.wait()
    if "log" in emulated:
        emulated["log"].close()
