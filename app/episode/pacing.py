"""How control steps meet the clock: one pacing policy for every loop that drives an arm.

* lockstep (the simulator, tests): `guard.step` filters and applies the action at once and returns what
  was applied; a step takes as long as the work takes.
* realtime (a real arm, a wall-clock simulator): the guard's control thread applies the newest submitted
  action at `control_hz`. Steps are paced by deadlines `t0 + k * period`, not by sleeping a period after
  each step: inference and bookkeeping between steps would otherwise stretch every period (24 Hz decisions
  at 30 Hz). A stall of a period or more counts the periods that got no fresh action (`dropped`; the guard
  held through them) and starts a new schedule instead of bursting to catch up.

The pacer also measures the mean interval between steps (`step_dt`, inference pauses included), what the
console shows as the lockstep loop's rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class Pacer:
    def __init__(
        self,
        guard: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.guard = guard
        self._clock = clock
        self._sleep = sleep
        self.dropped = 0  # realtime control periods that started a period or more late
        self.step_dt: float | None = None  # mean seconds between steps (exponential average)
        self._next_t: float | None = None  # realtime: deadline of the next step
        self._last_t: float | None = None

    @property
    def lockstep(self) -> bool:
        return self.guard.mode == "lockstep"

    def restart(self) -> None:
        """A new episode: the reset or pause before it is neither a dropped step nor a slow one."""
        self._next_t = self._last_t = None

    def apply(self, decision: Any) -> Any:
        """Apply one arbitrated step (`decision.action`, None = hold; `decision.source`). Lockstep: the
        guard's StepResult. Realtime: None, after waiting for this step's deadline."""
        now = self._clock()
        if self._last_t is not None:  # the mean of the intervals, not of rates
            dt = now - self._last_t
            self.step_dt = dt if self.step_dt is None else 0.95 * self.step_dt + 0.05 * dt
        self._last_t = now
        if self.guard.mode == "lockstep":
            return self.guard.step(decision.action, source=decision.source)
        period = 1.0 / self.guard.layer.control_hz
        if self._next_t is None:
            self._next_t = now
        late = now - self._next_t
        if late >= period:  # whole periods without a fresh action: the guard held through them
            self.dropped += int(late / period)
            self._next_t = now  # start a new schedule rather than bursting to catch up
        if decision.action is None:
            self.guard.hold("hand-back")
        else:
            self.guard.submit(decision.action, source=decision.source)
        self._next_t += period
        delay = self._next_t - self._clock()
        if delay > 0:
            self._sleep(delay)
        return None
