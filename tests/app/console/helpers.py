"""Shared helpers for the console tests: waiting on conditions, and a console on a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time


async def until(pilot, cond, timeout: float = 10.0, what: str = "condition") -> None:
    """Let the app run until `cond()` holds (Pilot side)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.03)


def wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class PtyConsole:
    """`python -m app.console --attach` (or with `args`, e.g. `--config X` to start an actor too) on an
    80x24 pseudo-terminal, typed into like a keyboard."""

    def __init__(self, port: int, args: list[str] | None = None) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.output = bytearray()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.console",
                *(args if args is not None else ["--attach=true"]),
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

    def drain(self) -> bytes:
        """Read what the console wrote so far (keeps its pty from filling up); returns all of it."""
        try:
            while chunk := os.read(self.master, 65536):
                self.output += chunk
        except (BlockingIOError, OSError):
            pass
        return bytes(self.output)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        os.close(self.master)
