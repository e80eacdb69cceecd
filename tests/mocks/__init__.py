"""Packet-level serial mocks: simulated Feetech and Dynamixel servo buses behind a fake serial port.

LeRobot's real `FeetechMotorsBus` / `DynamixelMotorsBus` (and the SO-100/SO-101/Koch robots and
teleoperators built on them) run unmodified on top; only the bytes on the wire are simulated.

    from tests.mocks import simulated_ports, so101_arm
    with simulated_ports() as ports:
        arm = so101_arm()
        ports.add("/dev/mock_so101", arm.bus)
        robot = SO101Follower(SO101FollowerConfig(port="/dev/mock_so101", ...))

Fixtures: `pytest_plugins = ["tests.mocks.fixtures"]` (see tests/mocks/fixtures.py).
"""

from tests.mocks.calibration_files import calibrate_registers, write_calibration_file
from tests.mocks.dynamixel_bus import DynamixelBus, DynamixelMotor, koch_arm, koch_bus
from tests.mocks.feetech_bus import FeetechBus, FeetechMotor, so101_arm, so101_bus
from tests.mocks.serial_port import FakeSerialPort, PortRegistry, simulated_ports
from tests.mocks.servo import SimulatedArm, SimulatedMotor

__all__ = [
    "DynamixelBus",
    "DynamixelMotor",
    "FakeSerialPort",
    "FeetechBus",
    "FeetechMotor",
    "PortRegistry",
    "SimulatedArm",
    "SimulatedMotor",
    "calibrate_registers",
    "koch_arm",
    "koch_bus",
    "simulated_ports",
    "so101_arm",
    "so101_bus",
    "write_calibration_file",
]
