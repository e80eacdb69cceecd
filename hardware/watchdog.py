"""Watchdogs that make silence safe: a stale action source means hold, a lost learner means no new episode.

Both take an injectable monotonic clock so tests can drive time explicitly, and both are thread-safe: the
actor's network thread feeds them while the guard's control thread reads them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]


class ActionWatchdog:
    """Age of the newest action; `expired()` once it is older than the timeout (or none ever came)."""

    def __init__(self, timeout_s: float, clock: Clock = time.monotonic) -> None:
        if timeout_s <= 0:
            raise ValueError(f"watchdog timeout must be > 0 s, got {timeout_s}")
        self.timeout_s = timeout_s
        self._clock = clock
        self._last: float | None = None
        self._lock = threading.Lock()

    def feed(self) -> None:
        with self._lock:
            self._last = self._clock()

    def clear(self) -> None:
        """Forget the last action (after an e-stop or a hold, an old action must not become fresh)."""
        with self._lock:
            self._last = None

    def age(self) -> float | None:
        """Seconds since the last action, None if there was none."""
        with self._lock:
            return None if self._last is None else self._clock() - self._last

    def expired(self) -> bool:
        age = self.age()
        return age is None or age > self.timeout_s


class LinkWatchdog:
    """Health of the learner link, from heartbeats (traffic actually received from the learner) or events.

    The transport calls `heartbeat()` whenever something arrives from the learner (a Ready reply, a
    parameter chunk, a send's acknowledgement), never merely because a connection is open: a connection
    that is open but silent (a black-holed route, a learner frozen with SIGSTOP) must run into the timeout.
    `lost(reason)` marks a broken stream; `restored()` (or a heartbeat after a loss) brings it back. `ok` is
    False while the link is lost or silent for longer than `timeout_s`; `reason` says why. `losses` counts
    the transitions to lost that `heartbeat`, `lost` and `poll` noticed.
    """

    def __init__(self, timeout_s: float = 5.0, clock: Clock = time.monotonic, start_ok: bool = True) -> None:
        if not 0 < timeout_s < float("inf"):
            raise ValueError(f"link timeout must be a finite number of seconds > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat = clock()
        self._lost_reason: str | None = None if start_ok else "not connected yet"
        self._reported_ok = start_ok
        self.losses = 0

    def heartbeat(self, at: float | None = None) -> None:
        """Something arrived from the learner (at `at` on this watchdog's clock; default: now)."""
        with self._lock:
            now = self._clock() if at is None else at
            # never back in time, except after a loss (the time of the loss is no heartbeat)
            self._last_beat = now if self._lost_reason is not None else max(self._last_beat, now)
            self._lost_reason = None
        self._note()

    def lost(self, reason: str = "link lost") -> None:
        with self._lock:
            self._lost_reason = reason
        self._note()

    def restored(self) -> None:
        self.heartbeat()

    @property
    def ok(self) -> bool:
        ok, _ = self._state()
        return ok

    @property
    def reason(self) -> str:
        return self._state()[1]

    def silence(self) -> float:
        """Seconds since the last heartbeat."""
        with self._lock:
            return self._clock() - self._last_beat

    def poll(self) -> bool:
        """Re-evaluate the timeout now (counting a loss it finds); returns `ok`."""
        self._note()
        return self.ok

    def _state(self) -> tuple[bool, str]:
        with self._lock:
            if self._lost_reason is not None:
                return False, self._lost_reason
            silence = self._clock() - self._last_beat
            if silence > self.timeout_s:
                return False, f"no message from the learner for {silence:.1f} s"
            return True, ""

    def _note(self) -> None:
        ok, _ = self._state()
        with self._lock:
            if self._reported_ok and not ok:
                self.losses += 1
            self._reported_ok = ok
