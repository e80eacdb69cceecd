"""Torque is released however the process ends: normal exit without close(), an uncaught exception,
Ctrl-C (SIGINT) and SIGTERM, each in its own process, on LeRobot's real so101_follower over the serial
mock, with the guard's realtime control thread running (what a real actor has).

The child registers a reporter with atexit *before* the guard exists; atexit runs last-in first-out, so
the reporter sees the motors after the guard's own exit path has held and released them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import atexit, json, os, signal, sys, tempfile, time
from pathlib import Path
from lerobot.robots.so_follower import SO101FollowerConfig
from hardware import factory
from hardware.guard import RobotGuard
from hardware.safety.config import SafetyConfig
from tests.mocks.calibration_files import SO101_RANGES, calibrate_registers, write_calibration_file
from tests.mocks.feetech_bus import so101_arm
from tests.mocks.serial_port import PortRegistry, simulated_ports

how = sys.argv[1]
registry = PortRegistry()
ports = simulated_ports(registry)
ports.__enter__()
arm = so101_arm()
registry.add("/dev/mock_so101", arm.bus)
calib = Path(tempfile.mkdtemp())
write_calibration_file(calib / "arm1.json", calibrate_registers(arm, SO101_RANGES))
motors = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]

def report():
    state = {"torque": {m: arm[m].torque_enabled for m in motors}, "connected": robot.is_connected}
    print("REPORT " + json.dumps(state), flush=True)

atexit.register(report)
robot = factory.make_robot(SO101FollowerConfig(port="/dev/mock_so101", id="arm1", calibration_dir=calib))
guard = RobotGuard(robot, SafetyConfig(mode="realtime"), install_signal_handlers=True).connect()
start = guard.present()
for i in range(10):
    guard.submit(dict(start, **{"elbow_flex.pos": start["elbow_flex.pos"] + i}))
    time.sleep(1 / 30)
assert all(arm[m].torque_enabled for m in motors)
print("MOVING", flush=True)
if how == "exception":
    raise RuntimeError("policy crashed")
if how == "exit":
    sys.exit(0)
os.kill(os.getpid(), getattr(signal, how))
time.sleep(5)
print("SIGNAL IGNORED", flush=True)
"""


@pytest.mark.slow  # four fresh interpreters importing LeRobot: ~6 s each on the 2-core box
@pytest.mark.parametrize("how", ["exit", "exception", "SIGINT", "SIGTERM"])
def test_torque_is_released_when_the_process_ends(how):
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, how], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert "MOVING" in out.stdout, out.stderr[-2000:]
    assert "SIGNAL IGNORED" not in out.stdout
    lines = [line for line in out.stdout.splitlines() if line.startswith("REPORT ")]
    assert len(lines) == 1, (out.stdout, out.stderr[-2000:])
    state = json.loads(lines[0].removeprefix("REPORT "))
    assert not any(state["torque"].values()), state
    assert state["connected"] is False
    if how == "exception":
        assert out.returncode == 1 and "policy crashed" in out.stderr
    elif how == "exit":
        assert out.returncode == 0
    else:  # interrupted: a non-zero status the shell can see
        assert out.returncode != 0
