"""The suite's two phases (tests/conftest.py, scripts/test.sh): every test runs in exactly one of them, and
the `timing` tests only in the one-process phase."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SAMPLE = """
import pytest


def test_plain():
    pass


@pytest.mark.timing
def test_bound():
    pass


@pytest.mark.slow
def test_long():
    pass
"""


def _collect(tmp_path: Path, phase: str | None) -> tuple[int, list[str], str]:
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n"
    )
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: x\n    timing: y\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PIRL_TEST_PHASE", None)
    if phase is not None:
        env["PIRL_TEST_PHASE"] = phase
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    names = [line.split("::")[-1] for line in proc.stdout.splitlines() if "::" in line]
    return proc.returncode, names, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (None, ["test_long", "test_plain", "test_bound"]),  # one run: everything, the slow test first
        ("parallel", ["test_long", "test_plain"]),
        ("timing", ["test_bound"]),
    ],
)
def test_each_phase_collects_its_tests_and_together_they_are_the_whole_suite(tmp_path, phase, expected):
    rc, names, out = _collect(tmp_path, phase)
    assert rc == 0, out
    assert names == expected


def test_an_unknown_phase_is_refused(tmp_path):
    rc, _, out = _collect(tmp_path, "serial")
    assert rc != 0
    assert "PIRL_TEST_PHASE must be one of" in out


def test_a_real_time_policy_left_by_a_test_is_reset_before_the_next():
    """tests/conftest.py resets every thread to SCHED_OTHER before each test (a spinning SCHED_FIFO child
    once starved its own worker and hung the suite)."""
    from tests.conftest import _normal_scheduling

    if not hasattr(os, "sched_setscheduler"):
        pytest.skip("no POSIX scheduling API here")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except PermissionError:
        pytest.skip("setting a real-time policy needs privileges this run does not have")
    try:
        assert _normal_scheduling() == "policy 1, priority 1"
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
        assert _normal_scheduling() is None  # nothing left to reset
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
