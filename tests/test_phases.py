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
