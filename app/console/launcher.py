"""Start and stop the actor process that the console watches.

The actor runs as its own process in its own session: the console's terminal, its signals (Ctrl-C, a
dropped SSH connection) and its death never reach the robot loop directly. The actor's output goes to a
log file, because the terminal belongs to the console.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

# Seconds the actor gets to shut down after QUIT (hold, end the episode, release torque) before SIGTERM,
# and after SIGTERM (the guard's handler holds and disconnects) before SIGKILL.
QUIT_GRACE_S = 10.0
TERM_GRACE_S = 5.0


class ActorProcess:
    def __init__(self, argv: list[str], log_path: str | Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = Path(log_path)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # the log is appended to: this run's output starts here

    def start(self) -> ActorProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._log_start = log.tell()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(self.env or {})},
            )
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def tail(self, lines: int = 20, max_bytes: int = 64 * 1024) -> list[str]:
        """The last `lines` non-empty lines this run wrote to its log (an exited actor's error is there)."""
        try:
            with open(self.log_path, "rb") as f:
                end = f.seek(0, os.SEEK_END)
                start = max(self._log_start, end - max_bytes)
                f.seek(start)
                data = f.read()
        except OSError as exc:
            return [f"cannot read {self.log_path}: {exc.strerror or exc}"]
        text = data.decode("utf-8", errors="replace").replace("\r", "\n").expandtabs(4)
        out = [line.rstrip() for line in text.splitlines() if line.strip()]
        return out[-lines:]

    def stop(self, quit_grace_s: float = QUIT_GRACE_S, term_grace_s: float = TERM_GRACE_S) -> int | None:
        """Wait for the actor to exit after QUIT; escalate to SIGTERM, then SIGKILL. Returns its code."""
        if self.proc is None:
            return None
        for sig, grace in ((None, quit_grace_s), (signal.SIGTERM, term_grace_s), (signal.SIGKILL, 5.0)):
            if sig is not None and self.proc.poll() is None:
                print(f"pirl console: actor did not stop, sending {sig.name}", file=sys.stderr)
                self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.poll()
