"""On another CPU: the kernel-form tests, run again for an emulated CPU with narrower
vectors (see conftest.py), pass there too."""

import re

import pytest
from conftest import emulated, narrower_target


def test_kernel_forms_keep_their_bits_on_a_cpu_with_narrower_vectors():
    if narrower_target() is None:
        pytest.skip("no x86 CPU with narrower vectors than this one to emulate")
    if "process" not in emulated:
        pytest.skip("run as part of the suite: conftest.py starts the emulated run")
    process, log = emulated["process"], emulated["log"]
    process.wait(timeout=1500)
    log.seek(0)
    output = log.read()
    name = emulated["target"][0]
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    assert process.returncode == 0, f"kernel-form tests for {name}:\n{output[-6000:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 20, f"for {name}: {summary}"
