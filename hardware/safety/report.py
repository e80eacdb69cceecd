"""The record of what the safety layer changed: one `SafetyResult` per filtered action, and the
`SafetyReport` that counts them (and other safety events: watchdog holds, e-stops, link losses) per episode
and for the whole run. The guard, the episode manager and the actor's status read it; `SafetyLayer`
(`hardware/safety/layer.py`) writes it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SafetyResult:
    """What the layer made of one action. `action` is always safe to send (the hold target if rejected)."""

    action: dict[str, float]
    events: list[str] = field(default_factory=list)
    rejected: bool = False

    @property
    def clamped(self) -> bool:
        return bool(self.events) and not self.rejected


class SafetyReport:
    """Counters for one episode (and for the whole run): how often, and which protection, acted."""

    def __init__(self) -> None:
        self.episode_steps = 0
        self.episode_clamped_steps = 0
        self.episode_rejected = 0
        self.episode_events: Counter[str] = Counter()
        self.total_steps = 0
        self.total_events: Counter[str] = Counter()

    def reset_episode(self) -> None:
        self.episode_steps = 0
        self.episode_clamped_steps = 0
        self.episode_rejected = 0
        self.episode_events = Counter()

    def record(self, result: SafetyResult) -> None:
        self.episode_steps += 1
        self.total_steps += 1
        if result.rejected:
            self.episode_rejected += 1
        elif result.events:
            self.episode_clamped_steps += 1
        self.episode_events.update(result.events)
        self.total_events.update(result.events)

    def count(self, event: str) -> None:
        """Count an event that is not a filtered action (watchdog hold, e-stop, link loss)."""
        self.episode_events[event] += 1
        self.total_events[event] += 1

    def report(self) -> dict[str, Any]:
        """Per-episode summary; by_kind folds "max_step:elbow_flex" into "max_step"."""
        by_kind: Counter[str] = Counter()
        for name, n in self.episode_events.items():
            by_kind[name.split(":", 1)[0]] += n
        return {
            "steps": self.episode_steps,
            "clamped_steps": self.episode_clamped_steps,
            "rejected": self.episode_rejected,
            "clamp_rate": self.episode_clamped_steps / self.episode_steps if self.episode_steps else 0.0,
            "events": dict(self.episode_events),
            "by_kind": dict(by_kind),
        }
