"""LeRobot's real SO-101 and Koch followers/leaders connect, observe and act through the simulated buses."""

from __future__ import annotations

import pytest
from lerobot.robots.koch_follower import KochFollower, KochFollowerConfig
from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig
from lerobot.teleoperators.so_leader import SO101Leader, SO101LeaderConfig

from tests.mocks.calibration_files import (
    KOCH_RANGES,
    SO101_RANGES,
    calibrate_registers,
    write_calibration_file,
)
from tests.mocks.feetech_bus import so101_arm


def test_so101_follower_connects_observes_and_acts(so101_sim, calib_dir):
    cal = calibrate_registers(so101_sim, SO101_RANGES, offsets={"shoulder_pan": -120})
    write_calibration_file(calib_dir / "arm1.json", cal)
    so101_sim.set_actual({"elbow_flex": 1970 + 600})  # where the arm rests; torque on will hold it there
    robot = SO101Follower(SO101FollowerConfig(port=so101_sim.port, id="arm1", calibration_dir=calib_dir))
    robot.connect()  # calibrated: no prompt (input() would raise under pytest)
    try:
        # configure() ran: position mode, PID written, gripper torque limited, torque back on
        grip = so101_sim["gripper"]
        assert grip.get(grip.MAX_LIMIT) == 3470 and grip.torque_enabled
        assert grip.regs[16:18] == (500).to_bytes(2, "little")  # Max_Torque_Limit 50 %

        obs = robot.get_observation()
        assert set(obs) == {f"{m}.pos" for m in SO101_RANGES}
        assert obs["elbow_flex.pos"] == pytest.approx(600 * 360 / 4095, abs=1e-6)  # mid of 860..3080 = 1970

        sent = robot.send_action({"elbow_flex.pos": -30.0, "gripper.pos": 25.0})
        assert sent == {"elbow_flex.pos": -30.0, "gripper.pos": 25.0}
        obs = robot.get_observation()
        assert obs["elbow_flex.pos"] == pytest.approx(-30.0, abs=0.1)
        assert obs["gripper.pos"] == pytest.approx(25.0, abs=0.1)
        assert so101_sim.bus.traffic["sync_write"] >= 1
    finally:
        robot.disconnect()
    assert not any(so101_sim[m].torque_enabled for m in SO101_RANGES)  # disable_torque_on_disconnect


def test_so101_follower_respects_max_relative_target(so101_sim, calib_dir):
    write_calibration_file(calib_dir / "arm1.json", calibrate_registers(so101_sim, SO101_RANGES))
    cfg = SO101FollowerConfig(
        port=so101_sim.port, id="arm1", calibration_dir=calib_dir, max_relative_target=5.0
    )
    robot = SO101Follower(cfg)
    robot.connect()
    try:
        start = robot.get_observation()["shoulder_lift.pos"]
        sent = robot.send_action({"shoulder_lift.pos": start + 40.0})
        assert sent["shoulder_lift.pos"] == pytest.approx(start + 5.0)
    finally:
        robot.disconnect()


def test_so101_leader_reads_a_scripted_human(sim_ports, calib_dir):
    leader_arm = so101_arm()
    sim_ports.add("/dev/mock_leader", leader_arm.bus)
    write_calibration_file(calib_dir / "lead.json", calibrate_registers(leader_arm, SO101_RANGES))
    leader = SO101Leader(SO101LeaderConfig(port="/dev/mock_leader", id="lead", calibration_dir=calib_dir))
    leader.connect()
    try:
        leader_arm.script({"gripper": [2020, 2745, 3470]})
        grips = [leader.get_action()["gripper.pos"] for _ in range(3)]
        assert grips == pytest.approx([0.0, 50.0, 100.0])
        assert not leader_arm["gripper"].torque_enabled  # leaders stay limp for the human
    finally:
        leader.disconnect()


def test_koch_follower_connects_observes_and_acts(koch_sim, calib_dir):
    write_calibration_file(calib_dir / "koch.json", calibrate_registers(koch_sim, KOCH_RANGES))
    robot = KochFollower(KochFollowerConfig(port=koch_sim.port, id="koch", calibration_dir=calib_dir))
    robot.connect()
    try:
        assert koch_sim["gripper"].get(koch_sim["gripper"].OPERATING_MODE) == 5  # current-based position
        assert koch_sim["elbow_flex"].get(koch_sim["elbow_flex"].OPERATING_MODE) == 4  # extended position
        obs = robot.get_observation()
        # Koch defaults to LeRobot's -100..100 range units (use_degrees=False): 2048 in 1000..3100
        assert obs["shoulder_lift.pos"] == pytest.approx((2048 - 1000) / 2100 * 200 - 100, abs=1e-6)
        robot.send_action({"shoulder_lift.pos": 20.0, "wrist_roll.pos": -90.0})
        obs = robot.get_observation()
        assert obs["shoulder_lift.pos"] == pytest.approx(20.0, abs=0.1)
        assert obs["wrist_roll.pos"] == pytest.approx(-90.0, abs=0.1)
    finally:
        robot.disconnect()
