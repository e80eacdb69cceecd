"""The same guard on LeRobot's real so101_follower / koch_follower, over packet-level serial mocks.

Nothing here is simulated above the serial port: LeRobot's FeetechMotorsBus / DynamixelMotorsBus encode
real instruction packets, the mocks (tests/mocks) answer them like the servos' firmware, so the guard's
reads, goal writes, torque switching and release are checked byte-for-byte against what a real arm gets.
"""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lerobot.robots.koch_follower import KochFollower, KochFollowerConfig
from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig

from hardware import so101_model
from hardware.guard import GuardError, RobotGuard
from hardware.kinematics import SO101Kinematics
from hardware.safety.config import SafetyConfig
from tests.mocks.calibration_files import (
    KOCH_RANGES,
    SO101_RANGES,
    calibrate_registers,
    write_calibration_file,
)

pytest_plugins = ["tests.mocks.fixtures"]

MOTORS = list(so101_model.MOTORS)
KEYS = [f"{m}.pos" for m in MOTORS]
BOX = ((0.05, -0.25, 0.03), (0.45, 0.25, 0.35))  # contains the mock's power-on pose (all joints mid-range)
TICK_DEG = 360 / 4095  # one encoder tick: the resolution of every check on the real bus
FK = SO101Kinematics()


def so101(so101_sim, calib_dir, **cfg):
    write_calibration_file(calib_dir / "arm1.json", calibrate_registers(so101_sim, SO101_RANGES))
    return SO101Follower(
        SO101FollowerConfig(port=so101_sim.port, id="arm1", calibration_dir=calib_dir, **cfg)
    )


wild = st.one_of(st.floats(min_value=-720, max_value=720), st.sampled_from([math.nan, math.inf, -1e9]))
stream = st.lists(
    st.one_of(
        st.fixed_dictionaries({k: st.floats(min_value=-720, max_value=720) for k in KEYS}),
        st.fixed_dictionaries({k: wild for k in KEYS}),
        st.dictionaries(st.sampled_from(KEYS), wild, max_size=5),
        st.none(),
    ),
    min_size=1,
    max_size=25,
)


def test_adversarial_streams_on_the_real_so101_follower(so101_sim, calib_dir):
    robot = so101(so101_sim, calib_dir)
    cfg = SafetyConfig(mode="lockstep", workspace_min=list(BOX[0]), workspace_max=list(BOX[1]))
    guard = RobotGuard(robot, cfg, install_signal_handlers=False).connect()
    assert guard.robot_type in ("so100_follower", "so101_follower")  # one LeRobot class serves both
    limits = guard.layer.limits
    # calibration ranges intersect the model defaults: the mocked gripper range maps onto 0..100
    assert limits["gripper"] == (0.0, 100.0)
    assert (
        limits["shoulder_pan"][1]
        <= (SO101_RANGES["shoulder_pan"][1] - SO101_RANGES["shoulder_pan"][0]) / 2 * TICK_DEG
    )

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(actions=stream)
    def check(actions):
        for action in actions:
            guard.step(action)
            present = guard.present()  # read back over the bus
            for m in MOTORS:
                lo, hi = limits[m]
                assert lo - TICK_DEG <= present[f"{m}.pos"] <= hi + TICK_DEG, (m, present)
            xyz = FK.fk({m: present[f"{m}.pos"] for m in MOTORS})
            assert all(BOX[0][i] - 0.003 <= xyz[i] <= BOX[1][i] + 0.003 for i in range(3)), xyz

    try:
        check()
        assert so101_sim.bus.traffic["sync_write"] > 0
        rep = guard.layer.report
        assert rep.total_events["rejected:nan"] + rep.total_events["rejected:shape"] > 0
    finally:
        guard.close()
    assert not any(so101_sim[m].torque_enabled for m in MOTORS)  # released on close


def test_realtime_watchdog_estop_torque_and_release_on_the_real_bus(so101_sim, calib_dir):
    robot = so101(so101_sim, calib_dir)
    cfg = SafetyConfig(mode="realtime", torque_off_on_estop=True)
    guard = RobotGuard(robot, cfg, install_signal_handlers=False).connect()
    try:
        start = guard.present()
        target = dict(start)
        for i in range(12):
            target["elbow_flex.pos"] = start["elbow_flex.pos"] + 3.0 * (i + 1)
            guard.submit(dict(target))
            t_last = time.monotonic()
            time.sleep(1 / 30)
        while guard.status().hold_reason != "watchdog":
            assert time.monotonic() - t_last < 1.0, "watchdog never fired"
            time.sleep(0.002)
        assert time.monotonic() - t_last < 0.1 + 2 / 30 + 0.05
        time.sleep(0.1)
        moved = guard.present()["elbow_flex.pos"]
        assert moved > start["elbow_flex.pos"] + 20.0
        elbow = so101_sim["elbow_flex"]
        held_ticks = elbow.actual
        time.sleep(0.15)
        assert elbow.actual == pytest.approx(held_ticks)  # holding

        guard.estop("test")
        assert all(not so101_sim[m].torque_enabled for m in MOTORS)  # torque off after the hold
        # the operator pushes the limp elbow back by ~200 ticks while e-stopped
        elbow.script(lambda i: held_ticks - min(200, 20 * i))
        time.sleep(0.4)
        pushed = elbow.actual
        assert pushed < held_ticks - 150
        guard.clear_estop()
        assert all(so101_sim[m].torque_enabled for m in MOTORS)
        time.sleep(0.2)
        assert elbow.actual == pytest.approx(pushed, abs=1.0)  # no snap back to the old goal
        assert guard.submit(dict(target))  # accepted again after the clear
    finally:
        guard.close()
    assert not any(so101_sim[m].torque_enabled for m in MOTORS)
    assert not robot.is_connected


def test_koch_limits_come_from_calibration_and_degrees_are_required(koch_sim, calib_dir):
    write_calibration_file(calib_dir / "koch.json", calibrate_registers(koch_sim, KOCH_RANGES))
    koch = KochFollower(KochFollowerConfig(port=koch_sim.port, id="koch", calibration_dir=calib_dir))
    with pytest.raises(GuardError, match="use_degrees"):
        RobotGuard(koch, SafetyConfig(), install_signal_handlers=False)

    koch = KochFollower(
        KochFollowerConfig(port=koch_sim.port, id="koch", calibration_dir=calib_dir, use_degrees=True)
    )
    guard = RobotGuard(koch, SafetyConfig(mode="lockstep"), install_signal_handlers=False).connect()
    try:
        lo, hi = KOCH_RANGES["shoulder_lift"]
        half = (hi - lo) / 2 * TICK_DEG
        assert guard.layer.limits["shoulder_lift"] == pytest.approx((-half, half))
        assert guard.layer.workspace is None  # no kinematic model for Koch: joint limits only
        for _ in range(40):
            res = guard.step({k: 500.0 for k in KEYS})
        assert res.action["shoulder_lift.pos"] == pytest.approx(half)
        assert guard.present()["shoulder_lift.pos"] == pytest.approx(half, abs=TICK_DEG)
    finally:
        guard.close()
