"""Smooth joint-space trajectories (min-jerk or cosine) for resets and parking, timed within the limits.

A reset that jumps is exactly what the safety layer would clamp (and count); planning a smooth profile
whose peak speed is below the velocity limit moves the arm home without a single clamp event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

PROFILES = ("min_jerk", "cosine", "linear")
# Peak speed of each profile relative to the average speed dist / T.
_PEAK_FACTOR = {"min_jerk": 1.875, "cosine": math.pi / 2, "linear": 1.0}


def blend(s: float, profile: str = "min_jerk") -> float:
    """Progress 0..1 along the path at normalised time s in 0..1."""
    s = min(max(s, 0.0), 1.0)
    if profile == "min_jerk":
        return s**3 * (10 - 15 * s + 6 * s * s)
    if profile == "cosine":
        return 0.5 - 0.5 * math.cos(math.pi * s)
    if profile == "linear":
        return s
    raise ValueError(f"unknown trajectory profile {profile!r}; use one of {PROFILES}")


def duration_for(
    start: Mapping[str, float],
    goal: Mapping[str, float],
    max_velocity: Mapping[str, float],
    profile: str = "min_jerk",
    speed_fraction: float = 0.5,
    min_duration_s: float = 0.5,
) -> float:
    """Shortest duration whose peak joint speed stays within `speed_fraction` of each joint's limit.

    Keys of `max_velocity` are motor names; `start`/`goal` use "<motor>.pos" keys.
    """
    if not 0 < speed_fraction <= 1:
        raise ValueError(f"speed_fraction must be in (0, 1], got {speed_fraction}")
    t = min_duration_s
    for motor, vmax in max_velocity.items():
        key = f"{motor}.pos"
        dist = abs(float(goal[key]) - float(start[key]))
        t = max(t, _PEAK_FACTOR[profile] * dist / (speed_fraction * vmax))
    return t


def waypoints(
    start: Mapping[str, float], goal: Mapping[str, float], n_steps: int, profile: str = "min_jerk"
) -> list[dict[str, float]]:
    """n_steps targets after `start`, the last one exactly `goal`."""
    n_steps = max(1, int(n_steps))
    out = []
    for i in range(1, n_steps + 1):
        b = blend(i / n_steps, profile)
        out.append({k: float(start[k]) + b * (float(goal[k]) - float(start[k])) for k in goal})
    return out
