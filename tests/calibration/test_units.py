"""A Koch leader's -100..100 actions become the degrees a follower with the same calibration reports."""

from __future__ import annotations

import pytest
from lerobot.robots.koch_follower import KochFollower, KochFollowerConfig
from lerobot.teleoperators.koch_leader import KochLeader, KochLeaderConfig

from calibration.errors import CalibrationError
from calibration.units import leader_degrees_map
from tests.mocks.calibration_files import KOCH_RANGES, calibrate_registers, write_calibration_file
from tests.mocks.dynamixel_bus import koch_arm


def test_koch_leader_actions_map_to_follower_degrees(sim_ports, koch_sim, calib_dir):
    leader_arm = koch_arm(leader=True)
    sim_ports.add("/dev/mock_koch_leader", leader_arm.bus)
    write_calibration_file(calib_dir / "kl.json", calibrate_registers(leader_arm, KOCH_RANGES))
    write_calibration_file(calib_dir / "k.json", calibrate_registers(koch_sim, KOCH_RANGES))
    pose = {"shoulder_lift": 1400, "elbow_flex": 2900, "wrist_flex": 1100, "gripper": 2650}
    leader_arm.set_actual(pose)
    koch_sim.set_actual(pose)  # the follower physically in the same pose
    leader = KochLeader(KochLeaderConfig(port="/dev/mock_koch_leader", id="kl", calibration_dir=calib_dir))
    follower = KochFollower(
        KochFollowerConfig(port=koch_sim.port, id="k", calibration_dir=calib_dir, use_degrees=True)
    )
    leader.connect()
    follower.connect()
    try:
        raw = leader.get_action()
        assert raw["elbow_flex.pos"] == pytest.approx((2900 - 950) / 2200 * 200 - 100)  # -100..100 units
        mapped = leader_degrees_map(leader)(raw, None)
        obs = follower.get_observation()
        for key in (
            "shoulder_pan.pos",
            "shoulder_lift.pos",
            "elbow_flex.pos",
            "wrist_flex.pos",
            "wrist_roll.pos",
        ):
            assert mapped[key] == pytest.approx(obs[key], abs=0.1), key
        # the gripper stays 0..100 (LeRobot's Koch leader drives its own gripper as a spring trigger)
        assert mapped["gripper.pos"] == raw["gripper.pos"]
    finally:
        leader.disconnect()
        follower.disconnect()


def test_uncalibrated_leader_is_refused(calib_dir):
    leader = KochLeader(KochLeaderConfig(port="/dev/none", id="nobody", calibration_dir=calib_dir))
    with pytest.raises(CalibrationError, match="no calibration"):
        leader_degrees_map(leader)
