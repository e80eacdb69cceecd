"""Kill -9 the console in the middle of an episode: the actor notices, keeps stepping, the robot holds and
never leaves its limits. The console runs as a real process on a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.app.console.actor_double import SimActorDouble


def wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class PtyConsole:
    """`python -m app.console --attach` on an 80x24 pseudo-terminal, typed into like a keyboard."""

    def __init__(self, port: int) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.console",
                "--attach=true",
                f"--control.port={port}",
                "--control.heartbeat_s=0.2",
                "--control.console_timeout_s=1.0",
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"},
        )
        os.close(slave)
        os.set_blocking(self.master, False)

    def drain(self) -> None:
        try:
            while os.read(self.master, 65536):
                pass
        except (BlockingIOError, OSError):
            pass

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        os.close(self.master)


@pytest.fixture
def actor():
    double = SimActorDouble(console_timeout_s=1.0).start()
    yield double
    double.stop()


def test_actor_keeps_robot_safe_when_the_console_is_killed(actor):
    console = PtyConsole(actor.port)
    try:
        wait(lambda: actor.server.console_alive, 30, "console heartbeat")
        for _ in range(100):  # the console needs a moment after connecting before it reads keys
            console.drain()
            console.type("p")
            if actor.state == "running":
                break
            time.sleep(0.2)
        wait(lambda: actor.state == "running", 5, "episode started from the console's keyboard")
        moving_from = actor.guard.present()
        wait(
            lambda: abs(actor.guard.present()["shoulder_pan.pos"] - moving_from["shoulder_pan.pos"]) > 1,
            5,
            "motion",
        )

        console.proc.send_signal(signal.SIGKILL)
        console.proc.wait(5)
        killed_at_step = actor.steps
        wait(lambda: not actor.server.console_alive, 3, "actor notices the console is gone")
        wait(lambda: actor.state == "paused", 3, "actor pauses")
        held_at = len(actor.present_log)
        wait(lambda: actor.steps > killed_at_step + 60, 10, "actor keeps stepping")
    finally:
        console.close()

    assert not actor.quit.is_set() and actor._thread.is_alive()
    limits = actor.guard.limits
    for present in actor.present_log:  # every step of the run, before and after the kill
        for key, value in present.items():
            lo, hi = limits[key.removesuffix(".pos")]
            assert lo - 1.0 <= value <= hi + 1.0, f"{key}={value:.1f} outside [{lo}, {hi}]"
    settled = actor.present_log[held_at + 10 :]
    drift = max(abs(p[k] - settled[0][k]) for p in settled for k in p)
    assert drift < 0.5, f"robot drifted {drift:.2f} deg while holding without a console"
