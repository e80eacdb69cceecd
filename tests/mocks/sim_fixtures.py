"""pytest fixtures for the simulated servo buses (the implementation; see tests/mocks/fixtures.py).

Enable them in a test module with `pytest_plugins = ["tests.mocks.fixtures"]`, or in a conftest.py you own
with `from tests.mocks.sim_fixtures import calib_dir, koch_sim, sim_ports, so101_sim  # noqa: F401`
(importing this module, not the plugin module, keeps pytest from warning that the plugin was imported
before it could be registered).

Fixtures:
    sim_ports   -- PortRegistry; the Feetech and Dynamixel SDKs open simulated ports for the test's duration
    so101_sim   -- SimulatedArm (6 x STS3215) registered at `so101_sim.port` ("/dev/mock_so101")
    koch_sim    -- SimulatedArm (Koch follower servos) at `koch_sim.port` ("/dev/mock_koch")
    calib_dir   -- a temporary LeRobot calibration folder (pass it as `calibration_dir=` to robot configs)
"""

from __future__ import annotations

import pytest

from tests.mocks.dynamixel_bus import koch_arm
from tests.mocks.feetech_bus import so101_arm
from tests.mocks.serial_port import PortRegistry, simulated_ports
from tests.mocks.servo import SimulatedArm


@pytest.fixture
def sim_ports():
    with simulated_ports(PortRegistry()) as registry:
        yield registry


def _register(registry: PortRegistry, arm: SimulatedArm, port: str) -> SimulatedArm:
    registry.add(port, arm.bus)
    arm.port = port
    return arm


@pytest.fixture
def so101_sim(sim_ports) -> SimulatedArm:
    return _register(sim_ports, so101_arm(), "/dev/mock_so101")


@pytest.fixture
def koch_sim(sim_ports) -> SimulatedArm:
    return _register(sim_ports, koch_arm(), "/dev/mock_koch")


@pytest.fixture
def calib_dir(tmp_path):
    path = tmp_path / "calibration"
    path.mkdir()
    return path
