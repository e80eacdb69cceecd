"""The envelope recorder: the limits and box it writes contain every pose the operator moved through."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration.cli import main
from calibration.envelope import EnvelopeRecorder, Recording, build_envelope
from calibration.flow import OperatorIO
from calibration.session import open_follower
from hardware.kinematics import SO101Kinematics
from hardware.safety.envelope import SafetyEnvelope
from hardware.safety.limits import calibration_limits
from tests.mocks.calibration_files import (
    KOCH_RANGES,
    SO101_RANGES,
    calibrate_registers,
    write_calibration_file,
)

N = 40


def sweep(a: float, b: float, c: float, n: int = N) -> list[float]:
    """a -> b -> c in n raw-tick samples, like a hand moving a joint there and back."""
    half = n // 2
    return list(np.linspace(a, b, half)) + list(np.linspace(b, c, n - half))


SO_MOTION = {
    "shoulder_pan": sweep(2050, 1400, 2600),
    "shoulder_lift": sweep(2010, 1300, 2500),
    "elbow_flex": sweep(1970, 2700, 1500),
    "wrist_flex": sweep(2010, 1600, 2500),
    "wrist_roll": sweep(2048, 1500, 2600),
    "gripper": sweep(2100, 3000, 2300),
}


def to_degrees(motor: str, tick: float, ranges=SO101_RANGES) -> float:
    lo, hi = ranges[motor]
    if motor == "gripper":
        return (tick - lo) / (hi - lo) * 100
    return (tick - (lo + hi) / 2) * 360 / 4095


def quiet_io(lines: list[str], clock=None) -> OperatorIO:
    t = {"now": 0.0}

    def fake_clock() -> float:
        t["now"] += 0.01
        return t["now"]

    return OperatorIO(
        input=lambda p: "",
        stop=lambda: False,
        out=lines.append,
        clock=clock or fake_clock,
        sleep=lambda s: None,
    )


@pytest.fixture
def so_robot_files(so101_sim, calib_dir):
    write_calibration_file(calib_dir / "arm1.json", calibrate_registers(so101_sim, SO101_RANGES))
    so101_sim.script(SO_MOTION)
    return so101_sim, calib_dir


def test_cli_records_so101_envelope(so_robot_files, tmp_path):
    arm, calib_dir = so_robot_files
    out = tmp_path / "env.json"
    lines: list[str] = []
    argv = ["envelope", "--robot.type=so101_follower", f"--robot.port={arm.port}", "--robot.id=arm1",
            f"--robot.calibration_dir={calib_dir}", f"--output={out}", f"--max_samples={N}",
            "--joint_margin=1.0", "--workspace_margin=0.01"]  # fmt: skip
    assert main(argv, io=quiet_io(lines)) == 0
    env = SafetyEnvelope.load(out)
    assert env.robot_type in ("so100_follower", "so101_follower") and env.robot_id == "arm1"
    for m, ticks in SO_MOTION.items():
        lo, hi = env.joint_limits[m]
        rec_lo = min(to_degrees(m, t) for t in ticks)
        rec_hi = max(to_degrees(m, t) for t in ticks)
        if m == "gripper":  # whole calibrated range by default
            assert (lo, hi) == (0.0, 100.0)
            continue
        # recorded extremes (quantised to whole ticks by the servo) widened by the 1 degree margin
        assert lo == pytest.approx(rec_lo - 1.0, abs=0.1) and hi == pytest.approx(rec_hi + 1.0, abs=0.1)
    assert env.workspace_min is not None and env.notes["samples"] == str(N)
    assert env.home_pose["elbow_flex.pos"] == pytest.approx(to_degrees("elbow_flex", 1970), abs=0.1)
    text = "\n".join(lines)
    assert "Torque is OFF" in text and "stopped by max_samples" in text and "--safety.envelope_path=" in text
    assert "end effector (m) now" in text  # live progress shows the box growing
    assert not any(arm[m].torque_enabled for m in SO_MOTION)  # left limp, as disconnect does


def test_recorded_limits_and_box_contain_every_pose(so_robot_files):
    from lerobot.robots.so_follower import SO101FollowerConfig

    arm, calib_dir = so_robot_files
    robot = open_follower(
        SO101FollowerConfig(port=arm.port, id="arm1", calibration_dir=calib_dir), out=lambda s: None
    )
    try:
        robot.bus.disable_torque()
        fk = SO101Kinematics().fk
        rec = EnvelopeRecorder(
            lambda: robot.bus.sync_read("Present_Position"), tuple(robot.bus.motors), fk,
            max_samples=N, clock=iter(range(10_000)).__next__, sleep=lambda s: None, out=lambda s: None,
        ).run()  # fmt: skip
        env, warnings = build_envelope(
            rec, "so101_follower", "arm1", joint_margin=0.0, workspace_margin=0.0,
            reachable=calibration_limits(robot), gripper_full_range=False,
        )  # fmt: skip
    finally:
        robot.disconnect()
    assert len(rec.samples) == N and not warnings
    for pose, xyz in zip(rec.samples, rec.ee, strict=True):
        for m, v in pose.items():
            lo, hi = env.joint_limits[m]
            assert lo <= v <= hi, (m, v, lo, hi)
        assert all(env.workspace_min[i] <= xyz[i] <= env.workspace_max[i] for i in range(3))
    # margin 0: the limits are the recorded extremes themselves (up to the 1e-3 rounding outwards)
    assert env.joint_limits["elbow_flex"][1] == pytest.approx(
        max(p["elbow_flex"] for p in rec.samples), abs=1e-3
    )


def test_koch_gets_joint_limits_only_in_degrees(koch_sim, calib_dir, tmp_path):
    write_calibration_file(calib_dir / "k.json", calibrate_registers(koch_sim, KOCH_RANGES))
    koch_sim.script({"elbow_flex": sweep(2050, 1200, 2900)})
    out = tmp_path / "koch.json"
    lines: list[str] = []
    argv = ["envelope", "--robot.type=koch_follower", f"--robot.port={koch_sim.port}", "--robot.id=k",
            f"--robot.calibration_dir={calib_dir}", f"--output={out}", "--max_samples=30", "--joint_margin=0"]  # fmt: skip
    assert main(argv, io=quiet_io(lines)) == 0
    env = SafetyEnvelope.load(out)
    assert env.workspace_min is None and "joint limits only" in env.notes["workspace"]
    lo, hi = env.joint_limits["elbow_flex"]
    assert lo == pytest.approx(to_degrees("elbow_flex", 1200, KOCH_RANGES), abs=0.1)  # degrees, not -100..100
    assert "using degrees" in "\n".join(lines)


class FakeTime:
    """clock() reads, sleep() advances: the recorder's pacing without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, dt: float) -> None:
        self.now += dt


def test_duration_stop_and_enter_stop():
    t = FakeTime()
    reads = iter(range(1000))
    rec = EnvelopeRecorder(
        lambda: {"a": float(next(reads))},
        ["a"],
        fps=8,
        duration_s=1.0,
        clock=t.clock,
        sleep=t.sleep,
        out=lambda s: None,
    ).run()
    assert rec.stopped_by == "duration" and len(rec.samples) == 9 and t.now == 1.0  # 8 periods of 1/8 s
    presses = iter([False, False, True])
    rec = EnvelopeRecorder(
        lambda: {"a": 1.0},
        ["a"],
        stop=lambda: next(presses),
        clock=t.clock,
        sleep=t.sleep,
        out=lambda s: None,
    ).run()
    assert rec.stopped_by == "enter" and len(rec.samples) == 3


def test_non_finite_reading_aborts():
    from calibration.errors import CalibrationError

    with pytest.raises(CalibrationError, match="non-finite"):
        EnvelopeRecorder(lambda: {"a": float("nan")}, ["a"], clock=lambda: 0.0, sleep=lambda s: None).run()


def test_still_joint_gets_a_tight_valid_limit_and_a_warning():
    rec = Recording(("elbow_flex", "gripper"), [{"elbow_flex": 10.0, "gripper": 40.0}] * 5)
    env, warnings = build_envelope(rec, "koch_follower", "k", joint_margin=0.0, gripper_full_range=True,
                                   reachable={"elbow_flex": (-90, 90), "gripper": (0, 100)})  # fmt: skip
    assert env.joint_limits["elbow_flex"] == (9.5, 10.5) and env.joint_limits["gripper"] == (0, 100)
    assert len(warnings) == 1 and "elbow_flex barely moved" in warnings[0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-150, 150), st.floats(-150, 150), st.floats(0, 100)), min_size=1, max_size=30
    ),
    st.floats(0, 10),
)
def test_build_envelope_never_excludes_a_recorded_pose(poses, margin):
    motors = ("shoulder_pan", "elbow_flex", "gripper")
    rec = Recording(motors, [dict(zip(motors, p, strict=True)) for p in poses])
    rec.ee = [np.array([p[0] / 1000, p[1] / 1000, p[2] / 1000]) for p in poses]
    reach = {"shoulder_pan": (-120.0, 120.0), "elbow_flex": (-100.0, 100.0), "gripper": (0.0, 100.0)}
    env, _ = build_envelope(
        rec, "so101_follower", "x", joint_margin=margin, reachable=reach, workspace_margin=0.0
    )
    for pose, xyz in zip(rec.samples, rec.ee, strict=True):
        for m, v in pose.items():
            assert env.joint_limits[m][0] <= v <= env.joint_limits[m][1]
        assert all(env.workspace_min[i] <= xyz[i] <= env.workspace_max[i] for i in range(3))
    json.dumps(env.joint_limits)  # serialisable as the file needs


def test_without_a_terminal_enter_cannot_stop_so_a_duration_is_required(so_robot_files, capsys):
    arm, calib_dir = so_robot_files
    argv = ["envelope", "--robot.type=so101_follower", f"--robot.port={arm.port}", "--robot.id=arm1",
            f"--robot.calibration_dir={calib_dir}"]  # fmt: skip
    assert main(argv, io=OperatorIO(out=lambda s: None)) == 1  # pytest's stdin is not a terminal
    assert "give --duration_s" in capsys.readouterr().err
    assert arm.bus.traffic["ping"] == 0  # refused before touching the arm
