"""Status builders on the actor side: the joints view and the log tail the console shows.

They turn the guard's numbers and the process's log records into the protocol's status records
(app/control/protocol.py); the console only ever sees the records."""

from __future__ import annotations

import logging
import threading
from collections import deque

from app.control.protocol import JointStatus, LogLine


class JointView:
    """Builds the joints part of a status from the guard's numbers, remembering clamp counts so that
    `clamped` means "clamped since the previous status" even when the loop runs faster than the status.

        view = JointView()
        gs = guard.status()
        status.joints = view(gs.present, gs.commanded, gs.limits, gs.episode_safety.get("events", {}))
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(
        self,
        present: dict[str, float],
        commanded: dict[str, float],
        limits: dict[str, tuple[float, float]],
        events: dict[str, int],
    ) -> list[JointStatus]:
        """Keys may be "<motor>" or "<motor>.pos"; events are the safety layer's "kind:motor" counters."""
        per_joint: dict[str, int] = {}
        for name, n in events.items():
            _, _, motor = name.partition(":")
            if motor:
                per_joint[motor] = per_joint.get(motor, 0) + int(n)
        if sum(per_joint.values()) < sum(self._seen.values()):  # a new episode reset the counters
            self._seen = {}
        out = []
        for motor, (lo, hi) in limits.items():
            key = motor.removesuffix(".pos")
            pres = present.get(key, present.get(f"{key}.pos", float("nan")))
            cmd = commanded.get(key, commanded.get(f"{key}.pos"))
            count = per_joint.get(key, 0)
            out.append(
                JointStatus(
                    key,
                    float(pres),
                    None if cmd is None else float(cmd),
                    float(lo),
                    float(hi),
                    clamped=count > self._seen.get(key, 0),
                    clamp_count=count,
                )
            )
        self._seen = per_joint
        return out


class LogBuffer(logging.Handler):
    """The actor's recent log lines for the console's log pane: a bounded deque, each line numbered, so a
    console appends every line once however often it sees it (and a late console still gets the tail).

        buf = LogBuffer(); logging.getLogger("pirl").addHandler(buf)   # WARNING/INFO records
        buf.add("INFO", "episode 3 success")                          # or lines from elsewhere
        status.log = buf.lines()
    """

    def __init__(self, maxlen: int = 40, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._lines: deque[LogLine] = deque(maxlen=maxlen)
        self._seq = 0
        self._guard = threading.Lock()  # emit() runs on whatever thread logged

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(record.levelname, record.getMessage())
        except Exception:  # a bad format string must never break the thread that logged
            self.handleError(record)

    def add(self, level: str, text: str) -> None:
        with self._guard:
            self._seq += 1
            self._lines.append(LogLine(self._seq, level, text))

    def lines(self) -> list[LogLine]:
        with self._guard:
            return list(self._lines)
