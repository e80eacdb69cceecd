"""The e-stop signal (SIGUSR1) behaves the same on the simulated arm as on a real one: it latches the
guard's e-stop and the process goes on. Every guard of the process stops, and guards may close in any order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardware.guard import RobotGuard
from hardware.safety.config import SafetyConfig
from hardware.sim import SimSO101Follower, SimSO101FollowerConfig
from tests.hardware.test_guard import HOME, FakeArm

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def keep_handlers():
    """Whatever a test does, the process's own handlers come back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    yield saved
    for sig, handler in saved.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.01)  # Python runs the handler at the next bytecode boundary


def test_sigusr1_latches_the_estop_of_a_simulated_arm(tmp_path, keep_handlers):
    robot = SimSO101Follower(SimSO101FollowerConfig(task="reach", id="sig", calibration_dir=tmp_path))
    guard = RobotGuard(robot, SafetyConfig())  # the defaults an actor gets: handlers on
    assert guard.is_sim and guard.mode == "lockstep"
    assert signal.getsignal(signal.SIGUSR1) is not keep_handlers[signal.SIGUSR1]
    with guard:
        start = guard.present()
        guard.step(start)
        _deliver(signal.SIGUSR1)  # without the handler this kills the test process
        assert guard.estopped and guard.estop_reason == "signal SIGUSR1"
        moved = dict(start, **{"shoulder_pan.pos": start["shoulder_pan.pos"] + 5.0})
        res = guard.step(moved)
        assert res.held and res.hold_reason == "estop"
        assert res.action["shoulder_pan.pos"] == pytest.approx(guard.status().commanded["shoulder_pan.pos"])
        assert abs(res.action["shoulder_pan.pos"] - start["shoulder_pan.pos"]) < 1.0  # held, not moved
    for sig, handler in keep_handlers.items():  # close() put every handler back
        assert signal.getsignal(sig) is handler


def test_handle_signals_false_leaves_the_sim_guard_without_handlers(tmp_path, keep_handlers):
    robot = SimSO101Follower(SimSO101FollowerConfig(task="reach", id="sig", calibration_dir=tmp_path))
    guard = RobotGuard(robot, SafetyConfig(handle_signals=False))
    try:
        assert signal.getsignal(signal.SIGUSR1) is keep_handlers[signal.SIGUSR1]
    finally:
        guard.close()


CHILD = r"""
import sys, time
from pathlib import Path
from hardware.guard import RobotGuard
from hardware.safety.config import SafetyConfig
from hardware.sim import SimSO101Follower, SimSO101FollowerConfig

robot = SimSO101Follower(SimSO101FollowerConfig(task="reach", id="sig", calibration_dir=Path(sys.argv[1])))
with RobotGuard(robot, SafetyConfig()) as guard:
    print("READY", flush=True)
    deadline = time.monotonic() + 60
    while not guard.estopped and time.monotonic() < deadline:
        guard.step(guard.present())
        time.sleep(0.005)
    print("ESTOPPED" if guard.estopped else "TIMEOUT", guard.estop_reason, flush=True)
"""


def test_kill_usr1_from_outside_latches_a_simulated_actor(tmp_path):
    """What an operator types: `kill -USR1 <pid>` on a sim actor's process e-stops it, does not kill it."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", MUJOCO_GL="egl")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGUSR1)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    assert "ESTOPPED signal SIGUSR1" in out


def test_estop_signal_stops_every_guard_and_guards_close_in_any_order(keep_handlers):
    a = RobotGuard(FakeArm(), SafetyConfig(mode="lockstep"), robot_type="so101_follower").connect()
    b = RobotGuard(FakeArm(), SafetyConfig(mode="lockstep"), robot_type="so101_follower").connect()
    try:
        a.step(HOME)
        b.step(HOME)
        _deliver(signal.SIGUSR1)
        assert a.estopped and b.estopped
        a.close()  # not the last installed: b keeps its handlers
        b.clear_estop()
        _deliver(signal.SIGUSR1)
        assert b.estopped and b.estop_reason == "signal SIGUSR1"
    finally:
        a.close()
        b.close()
    for sig, handler in keep_handlers.items():
        assert signal.getsignal(sig) is handler


def test_an_application_handler_installed_later_is_left_alone(keep_handlers):
    calls = []
    g = RobotGuard(FakeArm(), SafetyConfig(mode="lockstep"), robot_type="so101_follower").connect()
    try:
        signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
    finally:
        g.close()
    assert signal.getsignal(signal.SIGUSR1) is not keep_handlers[signal.SIGUSR1]  # theirs, not reset
    _deliver(signal.SIGUSR1)
    assert calls == [signal.SIGUSR1]


def test_a_guard_left_open_before_a_handler_replacement_does_not_keep_the_dispatcher():
    """A guard someone forgot to close, then a handler installed over ours (which took the signal from
    that guard): the next guard's close must put that handler back, not leave our dispatcher in place."""
    from hardware.safety.signals import SignalHooks

    before = signal.getsignal(signal.SIGUSR1)
    forgotten = SignalHooks(lambda reason: None, lambda: None)
    assert forgotten.install()
    try:

        def replacement(signum, frame):
            return None

        signal.signal(signal.SIGUSR1, replacement)
        fresh = SignalHooks(lambda reason: None, lambda: None)
        assert fresh.install()
        fresh.uninstall()
        assert signal.getsignal(signal.SIGUSR1) is replacement
    finally:
        forgotten.uninstall()
        signal.signal(signal.SIGUSR1, before)
