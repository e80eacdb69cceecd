"""Fixtures for calibration tests: the simulated buses from tests/mocks and a scripted operator."""

from __future__ import annotations

from tests.calibration.operator import ScriptedOperator  # noqa: F401
from tests.mocks.sim_fixtures import calib_dir, koch_sim, sim_ports, so101_sim  # noqa: F401
