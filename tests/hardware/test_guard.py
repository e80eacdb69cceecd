"""RobotGuard on a small in-test arm: lockstep and realtime paths, watchdog, e-stop, release, signals."""

from __future__ import annotations

import math
import os
import signal
import threading
import time

import pytest

from hardware import so101_model
from hardware.guard import GuardError, RobotGuard
from hardware.safety.config import SafetyConfig

MOTORS = list(so101_model.MOTORS)
KEYS = [f"{m}.pos" for m in MOTORS]
HOME = {
    "shoulder_pan.pos": 0.0,
    "shoulder_lift.pos": -40.0,
    "elbow_flex.pos": 40.0,
    "wrist_flex.pos": 60.0,
    "wrist_roll.pos": 0.0,
    "gripper.pos": 20.0,
}


class FakeArm:
    """A duck-typed LeRobot robot: servos move a fraction `gain` towards the goal per command.

    It logs every call, so tests can check what reached the "motors" and in which order; with torque off
    the arm sags (shoulder_lift drifts down), like a real one.
    """

    name = "fake_arm"

    def __init__(self, start=None, gain: float = 1.0) -> None:
        self.pos = dict(start or HOME)
        self.gain = gain
        self.connected = False
        self.torque = True
        self.log: list[tuple[str, float, object]] = []
        self.lock = threading.Lock()
        self.disconnects = 0

    action_features = {k: float for k in KEYS}
    observation_features = {k: float for k in KEYS}

    @property
    def is_connected(self) -> bool:
        return self.connected

    def connect(self, calibrate: bool = True) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.log.append(("disconnect", time.monotonic(), None))
        self.torque = False
        self.connected = False
        self.disconnects += 1

    def get_observation(self):
        assert self.connected, "read while disconnected"
        if not self.torque:
            self.pos["shoulder_lift.pos"] -= 1.0
        return dict(self.pos)

    def send_action(self, action):
        assert self.connected, "write while disconnected"
        assert set(action) == set(KEYS)
        assert all(math.isfinite(v) for v in action.values())
        with self.lock:
            self.log.append(("send", time.monotonic(), dict(action)))
            if self.torque:
                for k, v in action.items():
                    self.pos[k] += self.gain * (v - self.pos[k])
        return dict(action)

    def disable_torque(self) -> None:
        self.log.append(("torque_off", time.monotonic(), None))
        self.torque = False

    def enable_torque(self) -> None:
        self.log.append(("torque_on", time.monotonic(), None))
        self.torque = True

    def sends(self):
        return [entry for entry in self.log if entry[0] == "send"]


def lockstep_guard(arm=None, **cfg) -> RobotGuard:
    cfg.setdefault("mode", "lockstep")
    g = RobotGuard(
        arm or FakeArm(), SafetyConfig(**cfg), robot_type="so101_follower", install_signal_handlers=False
    )
    return g.connect()


def test_step_filters_and_reports():
    arm = FakeArm()
    with lockstep_guard(arm) as g:
        res = g.step(dict(HOME, **{"shoulder_pan.pos": 90.0}), source="policy")
        assert res.action["shoulder_pan.pos"] == pytest.approx(4.0)  # 120 deg/s at 30 Hz
        assert res.events == ["velocity:shoulder_pan"] and not res.held
        assert arm.pos["shoulder_pan.pos"] == pytest.approx(4.0)
        res = g.step(dict(HOME, **{"gripper.pos": math.nan}))
        assert res.rejected and res.held and res.hold_reason == "rejected"
        assert arm.pos["shoulder_pan.pos"] == pytest.approx(4.0)  # held where it was
        st = g.status().as_dict()
        assert st["episode_safety"]["rejected"] == 1 and st["episode_safety"]["clamped_steps"] == 1
        assert st["present"]["shoulder_pan.pos"] == pytest.approx(4.0) and st["holding"]
        assert st["limits"]["gripper"] == [0.0, 100.0]
        assert st["end_effector"] is not None and len(st["end_effector"]) == 3
        res = g.step(dict(HOME, **{"shoulder_pan.pos": 5.0}), source="human")
        assert res.intervention and not g.holding
    assert arm.disconnects == 1


def test_estop_latches_until_cleared_and_torque_returns_without_jump():
    arm = FakeArm()
    g = lockstep_guard(arm, torque_off_on_estop=True)
    g.step(dict(HOME, **{"shoulder_pan.pos": 3.0}))
    g.estop("test")
    assert g.estopped and g.estop_reason == "test"
    assert [e[0] for e in arm.log[-2:]] == ["send", "torque_off"]
    for _ in range(5):
        res = g.step(dict(HOME, **{"shoulder_pan.pos": 60.0}))
        assert res.held and res.hold_reason == "estop"
    assert arm.pos["shoulder_pan.pos"] == pytest.approx(3.0)
    assert g.estopped
    sagged = arm.get_observation()["shoulder_lift.pos"]
    g.clear_estop()
    # the goal was set to where the sagged arm is before torque came back: no snap back up
    kinds = [e[0] for e in arm.log]
    on = kinds.index("torque_on")
    assert kinds[on - 1] == "send"
    assert arm.log[on - 1][2]["shoulder_lift.pos"] == pytest.approx(sagged, abs=1.01)
    assert not g.estopped
    # and the hold after the clear is where the arm is now, not the target latched before the e-stop
    assert arm.sends()[-1][2]["shoulder_lift.pos"] == pytest.approx(sagged, abs=1.01)
    res = g.step(dict(HOME, **{"shoulder_pan.pos": 60.0}))
    assert not res.held and res.action["shoulder_pan.pos"] == pytest.approx(7.0)
    g.close()
    assert g.layer.report.total_events["estop"] == 1


def test_close_releases_once_and_refuses_further_use():
    arm = FakeArm()
    g = lockstep_guard(arm)
    g.close()
    g.close()
    assert arm.disconnects == 1 and not arm.torque
    with pytest.raises(GuardError, match="closed"):
        g.step(HOME)


def test_exception_inside_context_releases_torque():
    arm = FakeArm()
    with pytest.raises(RuntimeError, match="boom"), lockstep_guard(arm) as g:
        g.step(HOME)
        raise RuntimeError("boom")
    assert arm.disconnects == 1
    # the last thing before release was a hold at the present position
    last_send = arm.sends()[-1][2]
    assert last_send == pytest.approx(arm.pos)


def test_move_to_reaches_home_without_clamping():
    arm = FakeArm(start=dict(HOME, **{"shoulder_pan.pos": 80.0, "elbow_flex.pos": 0.0}), gain=0.6)
    with lockstep_guard(arm) as g:
        g.layer.report.reset_episode()
        reached, err = g.move_to(HOME)
        assert reached and err <= 1.0
        assert g.layer.report.report()["clamped_steps"] == 0
        # smooth: consecutive commands never differ by more than the velocity bound
        cmds = [s[2] for s in arm.sends()]
        for a, b in zip(cmds, cmds[1:], strict=False):
            assert max(abs(a[k] - b[k]) for k in KEYS) <= 4.0 + 1e-6


def test_realtime_watchdog_holds_within_timeout():
    arm = FakeArm()
    cfg = SafetyConfig(mode="realtime", control_hz=100.0, watchdog_timeout_s=0.1)
    g = RobotGuard(arm, cfg, robot_type="so101_follower", install_signal_handlers=False).connect()
    try:
        with pytest.raises(GuardError):
            g.step(HOME)
        target = dict(HOME)
        for i in range(20):  # a policy streaming at 50 Hz, moving the pan joint
            target["shoulder_pan.pos"] = float(i)
            assert g.submit(dict(target))
            t_last = time.monotonic()
            time.sleep(0.02)
        while not (g.holding and g.status().hold_reason == "watchdog"):
            assert time.monotonic() - t_last < 1.0, "watchdog never fired"
            time.sleep(0.002)
        latency = time.monotonic() - t_last
        # fires after the timeout, within a few control periods of it (2-core shared CI: generous slack)
        assert 0.1 <= latency < 0.1 + 0.1
        held = dict(arm.pos)
        time.sleep(0.1)
        assert arm.pos == pytest.approx(held)  # nothing moves while held
        assert g.status().loop_hz is not None and g.status().loop_hz > 50
        # a fresh action resumes from where the arm is, through the clamps
        g.submit(dict(HOME, **{"shoulder_pan.pos": 60.0}))
        time.sleep(0.05)
        assert not g.holding
        assert g.layer.report.total_events["hold:watchdog"] == 1
        g.estop("key")
        assert not g.submit(dict(HOME))
        time.sleep(0.05)
        assert g.estopped and g.status().hold_reason == "estop"
    finally:
        g.close()
    assert arm.disconnects == 1 and g._thread is not None and not g._thread.is_alive()


def test_estop_signal_latches_and_sigint_releases():
    arm = FakeArm()
    old = signal.getsignal(signal.SIGINT)
    g = RobotGuard(
        arm, SafetyConfig(mode="lockstep"), robot_type="so101_follower", install_signal_handlers=True
    )
    assert signal.getsignal(signal.SIGINT) is not old
    with pytest.raises(KeyboardInterrupt), g:
        g.step(HOME)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.01)
        assert g.estopped and g.estop_reason == "signal SIGUSR1"
        assert g.step(dict(HOME, **{"shoulder_pan.pos": 20.0})).held
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)  # the handler raises KeyboardInterrupt before this returns
    assert arm.disconnects == 1
    assert signal.getsignal(signal.SIGINT) is old  # handlers restored on close


def test_link_hooks_show_in_status():
    with lockstep_guard() as g:
        assert g.link_ok
        g.link_lost("stream broke")
        st = g.status()
        assert not st.link_ok and st.link_reason == "stream broke"
        g.link_restored()
        assert g.link_ok


def test_rejects_robots_it_cannot_check():
    class Velocity(FakeArm):
        action_features = {"x.vel": float}

    with pytest.raises(GuardError, match=r"<motor>\.pos"):
        RobotGuard(Velocity(), SafetyConfig(), robot_type="so101_follower", install_signal_handlers=False)


def test_exit_signal_chains_to_the_applications_own_handler():
    """An actor that installed its own SIGTERM shutdown keeps it; the guard e-stops first."""
    calls = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        g = RobotGuard(
            FakeArm(),
            SafetyConfig(mode="lockstep"),
            robot_type="so101_follower",
            install_signal_handlers=True,
        )
        g.connect()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert calls == [signal.SIGTERM] and g.estopped and g.estop_reason == "signal SIGTERM"
        g.close()
    finally:
        signal.signal(signal.SIGTERM, old)


def test_a_failing_bus_latches_estop_in_realtime():
    class Flaky(FakeArm):
        fail = False

        def get_observation(self):
            if self.fail:
                raise ConnectionError("Incorrect status packet")
            return super().get_observation()

    arm = Flaky()
    cfg = SafetyConfig(mode="realtime", control_hz=100.0)
    g = RobotGuard(arm, cfg, robot_type="so101_follower", install_signal_handlers=False).connect()
    try:
        g.submit(dict(HOME))
        time.sleep(0.05)
        arm.fail = True
        deadline = time.monotonic() + 1.0
        while not g.estopped:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert "Incorrect status packet" in g.estop_reason
        assert not g.submit(dict(HOME))
    finally:
        arm.fail = False
        g.close()
    assert arm.disconnects == 1
