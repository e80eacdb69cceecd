"""hardware.factory: sim and real devices from LeRobot configs; real drivers over packet-level serial mocks."""

from __future__ import annotations

from dataclasses import dataclass

import draccus
import pytest
from lerobot.cameras.opencv import OpenCVCameraConfig
from lerobot.cameras.realsense import RealSenseCameraConfig
from lerobot.robots import RobotConfig
from lerobot.robots.koch_follower import KochFollower, KochFollowerConfig
from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig
from lerobot.teleoperators import TeleoperatorConfig
from lerobot.teleoperators.gamepad import GamepadTeleopConfig
from lerobot.teleoperators.keyboard import KeyboardEndEffectorTeleopConfig
from lerobot.teleoperators.koch_leader import KochLeaderConfig
from lerobot.teleoperators.so_leader import SO101Leader, SO101LeaderConfig

from hardware import factory
from hardware.factory import CalibrationMissingError, DeviceOpenError, HardwareConfigError
from hardware.sim import SimCameraConfig, SimExpertTeleop, SimExpertTeleopConfig, SimSO101Follower
from tests.mocks.calibration_files import (
    KOCH_RANGES,
    SO101_RANGES,
    calibrate_registers,
    write_calibration_file,
)
from tests.mocks.dynamixel_bus import koch_arm

pytest_plugins = ["tests.mocks.fixtures"]

MISSING_VIDEO = "/nonexistent/pirl-video99"


@dataclass
class RunConfig:
    robot: RobotConfig
    teleop: TeleoperatorConfig | None = None


def test_one_line_switches_between_sim_and_real(tmp_path):
    sim = draccus.parse(RunConfig, args=["--robot.type=sim_so101", "--robot.task=pick_cube"])
    real = draccus.parse(RunConfig, args=["--robot.type=so101_follower", "--robot.port=/dev/ttyACM0"])
    assert sim.robot.type == "sim_so101" and sim.robot.task == "pick_cube"
    # LeRobot registers one class under both SO names, so `.type` reads "so100_follower" for either.
    assert real.robot.type in ("so100_follower", "so101_follower") and real.robot.port == "/dev/ttyACM0"
    sim.robot.calibration_dir = tmp_path
    assert isinstance(factory.make_robot(sim.robot), SimSO101Follower)


def test_sim_robot_and_sim_expert_teleop_end_to_end(tmp_path):
    robot = factory.connect_robot(factory.make_robot(_sim_cfg(tmp_path)))
    teleop = factory.make_teleoperator(SimExpertTeleopConfig(calibration_dir=tmp_path), robot=robot)
    assert isinstance(teleop, SimExpertTeleop)
    factory.connect_teleoperator(teleop)
    for _ in range(60):
        action = teleop.get_action()
        assert set(action) == set(robot.action_features)
        robot.send_action(action)
        if robot.task_success():
            break
    assert robot.task_success()
    teleop.disconnect()
    robot.disconnect()


def test_sim_expert_needs_a_sim_robot(tmp_path):
    with pytest.raises(HardwareConfigError, match="needs the simulated robot"):
        factory.make_teleoperator(SimExpertTeleopConfig(calibration_dir=tmp_path))
    real = SO101Follower(SO101FollowerConfig(port="/dev/x", id="a", calibration_dir=tmp_path))
    with pytest.raises(TypeError, match="sim_so101"):
        factory.make_teleoperator(SimExpertTeleopConfig(calibration_dir=tmp_path), robot=real)
    sim = factory.make_robot(_sim_cfg(tmp_path))
    with pytest.raises(ValueError, match="pick_cube"):
        factory.make_teleoperator(
            SimExpertTeleopConfig(task="pick_cube", calibration_dir=tmp_path), robot=sim
        )


def test_real_so101_follower_connects_reads_and_writes_through_the_factory(so101_sim, calib_dir):
    write_calibration_file(calib_dir / "arm1.json", calibrate_registers(so101_sim, SO101_RANGES))
    cfg = SO101FollowerConfig(port=so101_sim.port, id="arm1", calibration_dir=calib_dir)
    robot = factory.connect_robot(factory.make_robot(cfg))
    try:
        assert isinstance(robot, SO101Follower)
        obs = robot.get_observation()
        assert set(obs) == set(robot.observation_features)
        sent = robot.send_action({"elbow_flex.pos": -20.0, "gripper.pos": 40.0})
        assert sent == {"elbow_flex.pos": -20.0, "gripper.pos": 40.0}
        obs = robot.get_observation()
        assert obs["elbow_flex.pos"] == pytest.approx(-20.0, abs=0.1)
        assert obs["gripper.pos"] == pytest.approx(40.0, abs=0.1)
    finally:
        robot.disconnect()


def test_real_koch_follower_connects_reads_and_writes_through_the_factory(koch_sim, calib_dir):
    write_calibration_file(calib_dir / "koch.json", calibrate_registers(koch_sim, KOCH_RANGES))
    cfg = KochFollowerConfig(port=koch_sim.port, id="koch", calibration_dir=calib_dir)
    robot = factory.connect_robot(factory.make_robot(cfg))
    try:
        assert isinstance(robot, KochFollower)
        robot.send_action({"shoulder_lift.pos": 15.0})
        assert robot.get_observation()["shoulder_lift.pos"] == pytest.approx(15.0, abs=0.1)
    finally:
        robot.disconnect()


def test_mismatched_motors_get_the_file_calibration_without_a_prompt(so101_sim, calib_dir):
    """LeRobot would block on input() here; the factory writes the file to the motors instead."""
    cal = calibrate_registers(so101_sim, SO101_RANGES)
    write_calibration_file(calib_dir / "arm1.json", cal)
    so101_sim["wrist_flex"].set(so101_sim["wrist_flex"].MIN_LIMIT, 100)  # motor disagrees with the file
    robot = factory.make_robot(SO101FollowerConfig(port=so101_sim.port, id="arm1", calibration_dir=calib_dir))
    factory.connect_robot(robot)
    try:
        assert so101_sim["wrist_flex"].get(so101_sim["wrist_flex"].MIN_LIMIT) == SO101_RANGES["wrist_flex"][0]
        assert robot.is_calibrated
        assert "calibrate" not in robot.__dict__  # the override does not outlive connect
    finally:
        robot.disconnect()


def test_missing_port_id_or_calibration_file_are_clear_errors(sim_ports, calib_dir):
    with pytest.raises(HardwareConfigError, match=r"--robot.port=/dev/ttyACM0"):
        factory.make_robot(SO101FollowerConfig(port="", id="arm1", calibration_dir=calib_dir))
    with pytest.raises(HardwareConfigError, match="needs an id"):
        factory.make_robot(SO101FollowerConfig(port="/dev/ttyACM0", calibration_dir=calib_dir))
    with pytest.raises(
        CalibrationMissingError, match=r"pirl calibrate --robot.type=so10[01]_follower"
    ) as err:
        factory.make_robot(SO101FollowerConfig(port="/dev/ttyACM0", id="arm9", calibration_dir=calib_dir))
    assert str(calib_dir / "arm9.json") in str(err.value)
    with pytest.raises(CalibrationMissingError, match="teleop.id=lead9"):
        factory.make_teleoperator(
            SO101LeaderConfig(port="/dev/ttyACM1", id="lead9", calibration_dir=calib_dir)
        )


def test_a_port_that_does_not_open_is_a_device_open_error(sim_ports, calib_dir):
    write_calibration_file(calib_dir / "arm1.json", {})
    robot = factory.make_robot(
        SO101FollowerConfig(port="/dev/ttyNOPE7", id="arm1", calibration_dir=calib_dir)
    )
    with pytest.raises(
        DeviceOpenError, match=r"'/dev/ttyNOPE7' did not open \(no such device\).*lerobot-find-port"
    ):
        factory.connect_robot(robot)


def test_a_camera_that_does_not_open_is_named_and_the_bus_is_closed(so101_sim, calib_dir):
    write_calibration_file(calib_dir / "arm1.json", calibrate_registers(so101_sim, SO101_RANGES))
    cam = OpenCVCameraConfig(index_or_path=MISSING_VIDEO, width=64, height=48, fps=30)
    cfg = SO101FollowerConfig(
        port=so101_sim.port, id="arm1", calibration_dir=calib_dir, cameras={"wrist": cam}
    )
    robot = factory.make_robot(cfg)
    with pytest.raises(
        DeviceOpenError, match=r"camera 'wrist' \(opencv .*pirl-video99.*lerobot-find-cameras opencv"
    ):
        factory.connect_robot(robot)
    assert not robot.bus.is_connected


def test_standalone_cameras(tmp_path):
    cams = factory.make_cameras(
        {"top": OpenCVCameraConfig(index_or_path=MISSING_VIDEO, width=64, height=48, fps=30)}
    )
    with pytest.raises(DeviceOpenError, match="camera 'top'"):
        factory.open_cameras(cams)
    with pytest.raises(HardwareConfigError, match="pyrealsense2|RealSense"):
        cams = factory.make_cameras(
            {"d": RealSenseCameraConfig(serial_number_or_name="123", width=64, height=48, fps=30)}
        )
        factory.open_cameras(cams)  # only reached where pyrealsense2 is installed: no camera there either
    with pytest.raises(HardwareConfigError, match="sim camera"):
        factory.make_cameras({"front": SimCameraConfig()})


def test_teleoperators_from_configs(sim_ports, calib_dir):
    leader_arm = koch_arm(leader=True)
    sim_ports.add("/dev/mock_koch_leader", leader_arm.bus)
    write_calibration_file(calib_dir / "kl.json", calibrate_registers(leader_arm, KOCH_RANGES))
    leader = factory.make_teleoperator(
        KochLeaderConfig(port="/dev/mock_koch_leader", id="kl", calibration_dir=calib_dir)
    )
    factory.connect_teleoperator(leader)
    try:
        assert set(leader.get_action()) == {f"{m}.pos" for m in KOCH_RANGES}
    finally:
        leader.disconnect()
    # Input devices that need a desktop or a USB gamepad are only built here, not connected.
    pad = factory.make_teleoperator(GamepadTeleopConfig(calibration_dir=calib_dir))
    keys = factory.make_teleoperator(KeyboardEndEffectorTeleopConfig(calibration_dir=calib_dir))
    assert type(pad).__name__ == "GamepadTeleop" and type(keys).__name__ == "KeyboardEndEffectorTeleop"
    so_leader = factory.make_teleoperator(
        SO101LeaderConfig(port="/dev/ttyACM1", id="x", calibration_dir=calib_dir), require_calibration=False
    )
    assert isinstance(so_leader, SO101Leader)
    with pytest.raises(HardwareConfigError, match="unsupported teleop type"):
        factory.make_teleoperator(TeleoperatorConfig.get_choice_class("keyboard")(calibration_dir=calib_dir))


def test_unsupported_robot_type_is_a_clear_error(tmp_path):
    from lerobot.robots.omx_follower import OmxFollowerConfig

    with pytest.raises(HardwareConfigError, match="unsupported robot type 'omx_follower'"):
        factory.make_robot(OmxFollowerConfig(port="/dev/x", id="o", calibration_dir=tmp_path))


def _sim_cfg(tmp_path, **kw):
    from hardware.sim import SimSO101FollowerConfig

    return SimSO101FollowerConfig(calibration_dir=tmp_path, **kw)
