"""`pirl calibrate check`: slow moves through the real safety layer keep every command inside the envelope."""

from __future__ import annotations

import pytest

from calibration.cli import main
from hardware.kinematics import SO101Kinematics
from hardware.safety.envelope import SafetyEnvelope
from tests.calibration.test_envelope import SO_MOTION, quiet_io, sweep, to_degrees
from tests.mocks.calibration_files import (
    KOCH_RANGES,
    SO101_RANGES,
    calibrate_registers,
    write_calibration_file,
)

GOAL_POSITION_ADDR = {"feetech": 42, "dynamixel": 116}
FAST = ["--safety.mode=lockstep", "--safety.handle_signals=false", "--yes=true", "--speed_fraction=0.5"]


def robot_args(arm, calib_dir, type_="so101_follower", id_="arm1"):
    return [
        f"--robot.type={type_}",
        f"--robot.port={arm.port}",
        f"--robot.id={id_}",
        f"--robot.calibration_dir={calib_dir}",
    ]


def goals_on_wire(arm, ranges, family="feetech"):
    """Every Goal_Position the bus saw, per joint, converted back to robot units (deg; gripper 0..100)."""
    names = {i: n for n, i in arm.names.items()}
    assert len(arm.bus.writes) < arm.bus.writes.maxlen, "write log overflowed"
    out: dict[str, list[float]] = {}
    for motor_id, addr, value in arm.bus.writes:
        if addr == GOAL_POSITION_ADDR[family]:
            out.setdefault(names[motor_id], []).append(
                to_degrees(names[motor_id], int.from_bytes(value, "little"), ranges)
            )
    return out


def wire_poses(wire: dict[str, list[float]]) -> list[dict[str, float]]:
    """Each sync write carries all six joints: rebuild the commanded poses in order."""
    n = min(len(v) for v in wire.values())
    return [{m: v[i] for m, v in wire.items()} for i in range(n)]


@pytest.fixture
def recorded(so101_sim, calib_dir, tmp_path):
    """An SO-101 whose envelope was recorded by demonstration (the arm ends inside it)."""
    write_calibration_file(calib_dir / "arm1.json", calibrate_registers(so101_sim, SO101_RANGES))
    so101_sim.script(SO_MOTION)
    env_path = tmp_path / "env.json"
    argv = ["envelope", *robot_args(so101_sim, calib_dir), f"--output={env_path}", "--max_samples=40"]
    assert main(argv, io=quiet_io([])) == 0
    so101_sim.bus.writes.clear()
    return so101_sim, calib_dir, env_path


def test_check_moves_inside_the_envelope_and_passes(recorded):
    arm, calib_dir, env_path = recorded
    start = arm.actual()
    lines: list[str] = []
    rc = main(
        ["check", *robot_args(arm, calib_dir), f"--envelope_path={env_path}", *FAST], io=quiet_io(lines)
    )
    text = "\n".join(lines)
    assert rc == 0, text
    env = SafetyEnvelope.load(env_path)
    n = len(env.waypoints) + 1 + 24  # waypoints, back to start, 6 joints x (low, back, high, back)
    assert 2 <= len(env.waypoints) <= 12
    assert f"envelope check PASSED: {n}/{n} moves ok" in text
    wire = goals_on_wire(arm, SO101_RANGES)
    tick = 360 / 4095
    for m, (lo, hi) in env.joint_limits.items():
        assert wire[m], f"no goal sent to {m}"
        assert lo - tick <= min(wire[m]) and max(wire[m]) <= hi + tick, (
            m,
            min(wire[m]),
            max(wire[m]),
            lo,
            hi,
        )
        # the recorded extremes (the waypoints) were revisited: the check went to the envelope's edges
        rec_lo = min(wp[f"{m}.pos"] for wp in env.waypoints)
        rec_hi = max(wp[f"{m}.pos"] for wp in env.waypoints)
        assert min(wire[m]) <= rec_lo + tick and max(wire[m]) >= rec_hi - tick, m
    # the end effector of every commanded pose stayed in the recorded box
    fk = SO101Kinematics().fk
    for pose in wire_poses(wire):
        xyz = fk(pose)
        assert all(env.workspace_min[i] - 1e-3 <= xyz[i] <= env.workspace_max[i] + 1e-3 for i in range(3)), (
            xyz
        )
    assert arm.actual() == pytest.approx(start, abs=2)  # back where it started
    assert not any(arm[m].torque_enabled for m in SO101_RANGES)  # released at the end


def test_probes_show_the_safety_layer_holds_the_limits(recorded):
    arm, calib_dir, env_path = recorded
    lines: list[str] = []
    argv = ["check", *robot_args(arm, calib_dir), f"--envelope_path={env_path}", *FAST,
            "--probe_limits=true", "--probe_overshoot=8"]  # fmt: skip
    rc = main(argv, io=quiet_io(lines))
    text = "\n".join(lines)
    assert rc == 0, text
    assert "past high limit" in text and "clamped at the limit" in text
    env = SafetyEnvelope.load(env_path)
    wire = goals_on_wire(arm, SO101_RANGES)
    tick = 360 / 4095
    for m, (lo, hi) in env.joint_limits.items():  # asked for 8 units past, never sent past the limit
        assert lo - tick <= min(wire[m]) and max(wire[m]) <= hi + tick


def test_arm_starting_outside_the_envelope_fails_without_moving(recorded):
    arm, calib_dir, env_path = recorded
    env = SafetyEnvelope.load(env_path)
    lo, hi = env.joint_limits["elbow_flex"]
    outside_tick = (860 + 3080) / 2 + (hi + 15) * 4095 / 360
    arm.set_actual({"elbow_flex": outside_tick})
    lines: list[str] = []
    rc = main(
        ["check", *robot_args(arm, calib_dir), f"--envelope_path={env_path}", *FAST], io=quiet_io(lines)
    )
    assert rc == 1
    assert "starts outside the envelope: elbow_flex" in "\n".join(lines)
    moved = [v for m, v in goals_on_wire(arm, SO101_RANGES).items() if m == "elbow_flex"]
    assert moved == []  # nothing was commanded at all
    assert arm["elbow_flex"].actual == pytest.approx(outside_tick)


def test_missing_or_foreign_envelope_is_a_clear_error(recorded, tmp_path, capsys):
    arm, calib_dir, env_path = recorded
    assert (
        main(["check", *robot_args(arm, calib_dir), f"--envelope_path={tmp_path / 'nope.json'}", *FAST]) == 1
    )
    assert "record one with `pirl calibrate envelope`" in capsys.readouterr().err
    env = SafetyEnvelope.load(env_path)
    env.robot_type = "koch_follower"
    env.workspace_min = env.workspace_max = None
    env.save(tmp_path / "koch.json")
    assert (
        main(["check", *robot_args(arm, calib_dir), f"--envelope_path={tmp_path / 'koch.json'}", *FAST]) == 1
    )
    assert "was recorded for koch_follower" in capsys.readouterr().err


def test_koch_check_with_joint_limits_only(koch_sim, calib_dir, tmp_path):
    write_calibration_file(calib_dir / "k.json", calibrate_registers(koch_sim, KOCH_RANGES))
    koch_sim.script({"elbow_flex": sweep(2050, 1400, 2700), "shoulder_lift": sweep(2050, 1500, 2600)})
    env_path = tmp_path / "k_env.json"
    argv = [
        "envelope",
        *robot_args(koch_sim, calib_dir, "koch_follower", "k"),
        f"--output={env_path}",
        "--max_samples=30",
    ]
    assert main(argv, io=quiet_io([])) == 0
    koch_sim.bus.writes.clear()
    lines: list[str] = []
    argv = [
        "check",
        *robot_args(koch_sim, calib_dir, "koch_follower", "k"),
        f"--envelope_path={env_path}",
        *FAST,
    ]
    assert main(argv, io=quiet_io(lines)) == 0, "\n".join(lines)
    env = SafetyEnvelope.load(env_path)
    wire = goals_on_wire(koch_sim, KOCH_RANGES, "dynamixel")
    lo, hi = env.joint_limits["elbow_flex"]
    assert lo - 0.1 <= min(wire["elbow_flex"]) and max(wire["elbow_flex"]) <= hi + 0.1
