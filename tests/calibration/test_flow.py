"""`pirl calibrate` runs LeRobot's real calibration over the packet-level bus mocks and writes its file."""

from __future__ import annotations

import json

import pytest
from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig

from calibration.cli import main
from tests.calibration.operator import ScriptedOperator
from tests.mocks.feetech_bus import so101_arm

HALF = 2047
SO_MIDDLE = {
    "shoulder_pan": 1800,  # negative homing offset (sign-magnitude on the wire)
    "shoulder_lift": 2300,
    "elbow_flex": 2048,
    "wrist_flex": 2600,
    "wrist_roll": 3000,
    "gripper": 1500,
}
SO_SWEEPS = {
    "shoulder_pan": [1500, 1000, 2200, 2900, 1800],
    "shoulder_lift": [2100, 1250, 2400, 3300],
    "elbow_flex": [2500, 3100, 1900, 1000],
    "wrist_flex": [2000, 1700, 3400],
    "gripper": [1700, 2900, 1400],
}


def expected_file(middle, sweeps, full_turn, offset_sign):
    """What LeRobot must write: homing puts each middle at 2047; ranges are the sweep extremes after that."""
    out = {}
    for i, (m, mid) in enumerate(middle.items(), start=1):
        offset = offset_sign * (mid - HALF)
        if m in full_turn:
            lo, hi = 0, 4095
        else:
            seen = [mid, *sweeps[m]]
            lo, hi = min(seen) - mid + HALF, max(seen) - mid + HALF
        out[m] = {"id": i, "drive_mode": 0, "homing_offset": offset, "range_min": lo, "range_max": hi}
    return out


def run(argv, operator):
    return main(argv, io=operator.io())


def test_so101_follower_calibration_writes_lerobots_file(so101_sim, calib_dir):
    op = ScriptedOperator(so101_sim, SO_MIDDLE, SO_SWEEPS, record_samples=8)
    argv = ["--robot.type=so101_follower", f"--robot.port={so101_sim.port}", "--robot.id=arm1",
            f"--robot.calibration_dir={calib_dir}"]  # fmt: skip
    assert run(argv, op) == 0
    written = json.loads((calib_dir / "arm1.json").read_text())
    assert written == expected_file(SO_MIDDLE, SO_SWEEPS, {"wrist_roll"}, offset_sign=+1)
    assert any("middle of its range" in p for p in op.prompts)
    assert "[4/4] validating" in op.text and ": OK" in op.text
    # the motors hold it too, so LeRobot's own follower connects without asking to calibrate
    pan = so101_sim["shoulder_pan"]
    assert pan.get(pan.HOMING_OFFSET) == 1800 - HALF and pan.get(pan.MIN_LIMIT) == 1000 - 1800 + HALF
    robot = SO101Follower(SO101FollowerConfig(port=so101_sim.port, id="arm1", calibration_dir=calib_dir))
    robot.connect(calibrate=True)  # would call input() (and fail under pytest) if it disagreed
    try:
        assert robot.is_calibrated
    finally:
        robot.disconnect()


def test_koch_follower_calibration(koch_sim, calib_dir):
    middle = {"shoulder_pan": 1000, "shoulder_lift": 2047, "elbow_flex": 2500, "wrist_flex": 1500,
              "wrist_roll": 2047, "gripper": 2200}  # fmt: skip
    sweeps = {"shoulder_lift": [1500, 2900], "elbow_flex": [1200, 3500], "wrist_flex": [900, 2500],
              "gripper": [2000, 2900]}  # fmt: skip
    op = ScriptedOperator(koch_sim, middle, sweeps)
    argv = ["--robot.type=koch_follower", f"--robot.port={koch_sim.port}", "--robot.id=koch1",
            f"--robot.calibration_dir={calib_dir}"]  # fmt: skip
    assert run(argv, op) == 0
    written = json.loads((calib_dir / "koch1.json").read_text())
    # Dynamixel: present = actual + offset, so the offset has the other sign
    assert written == expected_file(middle, sweeps, {"shoulder_pan", "wrist_roll"}, offset_sign=-1)
    elbow = koch_sim["elbow_flex"]
    assert elbow.get(elbow.OPERATING_MODE) == 4  # LeRobot's Koch flow: extended position mode


def test_so101_leader_calibration_via_teleop_flags(sim_ports, calib_dir):
    leader = so101_arm()
    sim_ports.add("/dev/mock_leader", leader.bus)
    op = ScriptedOperator(leader, SO_MIDDLE, SO_SWEEPS)
    argv = ["--teleop.type=so101_leader", "--teleop.port=/dev/mock_leader", "--teleop.id=lead1",
            f"--teleop.calibration_dir={calib_dir}"]  # fmt: skip
    assert run(argv, op) == 0
    assert json.loads((calib_dir / "lead1.json").read_text())["gripper"]["range_max"] == 2900 - 1500 + HALF


def test_joint_left_still_is_a_clear_error(so101_sim, calib_dir, capsys):
    sweeps = {m: s for m, s in SO_SWEEPS.items() if m != "wrist_flex"}  # nobody moved the wrist
    op = ScriptedOperator(so101_sim, SO_MIDDLE, sweeps)
    argv = ["--robot.type=so101_follower", f"--robot.port={so101_sim.port}", "--robot.id=arm1",
            f"--robot.calibration_dir={calib_dir}"]  # fmt: skip
    assert run(argv, op) == 1
    err = capsys.readouterr().err
    assert "did not move" in err and "wrist_flex" in err and "end to end" in err
    assert not (calib_dir / "arm1.json").exists()


def test_missing_motor_names_its_id(so101_sim, calib_dir, capsys):
    so101_sim["elbow_flex"].responding = False
    op = ScriptedOperator(so101_sim, SO_MIDDLE, SO_SWEEPS)
    argv = ["--robot.type=so101_follower", f"--robot.port={so101_sim.port}", "--robot.id=arm1",
            f"--robot.calibration_dir={calib_dir}"]  # fmt: skip
    assert run(argv, op) == 1
    err = capsys.readouterr().err
    assert "could not talk to every motor" in err and "- 3" in err and "lerobot-setup-motors" in err


def test_corrupt_old_file_is_set_aside_and_replaced(so101_sim, calib_dir):
    (calib_dir / "arm1.json").write_text('{"shoulder_pan": {"id": 1, ')  # truncated by a crash
    op = ScriptedOperator(so101_sim, SO_MIDDLE, SO_SWEEPS)
    argv = ["--robot.type=so101_follower", f"--robot.port={so101_sim.port}", "--robot.id=arm1",
            f"--robot.calibration_dir={calib_dir}"]  # fmt: skip
    assert run(argv, op) == 0
    backups = list(calib_dir.glob("arm1.json.bad-*"))
    assert len(backups) == 1 and "moved it to" in op.text
    assert json.loads((calib_dir / "arm1.json").read_text())["elbow_flex"]["range_max"] == 3100 - 2048 + HALF


@pytest.mark.parametrize(
    "argv", [[], ["check", "--help"], ["--robot.type=so101_follower", "--robot.port=/dev/x"]]
)
def test_usage_errors(argv, capsys, calib_dir):
    if not argv or "--help" in argv:
        assert main(argv) == 0 and "pirl calibrate" in capsys.readouterr().out
    else:  # no id: LeRobot would write "None.json"
        assert main([*argv, f"--robot.calibration_dir={calib_dir}"]) == 1
        assert "--robot.id=" in capsys.readouterr().err
