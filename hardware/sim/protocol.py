"""The sim-only API the actor and episode manager may use when the robot is simulated.

A real robot has none of this; code that needs it checks `isinstance(robot, SimTaskRobot)` (the Protocol
is runtime-checkable) and otherwise falls back to human resets and operator success marks.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class SimTaskRobot(Protocol):
    """A LeRobot Robot that also owns a simulated task."""

    def reset(self, seed: int | None = None) -> None:
        """Arm to `home_position` (instantly), task re-randomised; `seed` restarts the sim RNG."""

    def task_success(self) -> bool:
        """Whether the task's success condition holds in the present state."""

    def task_info(self) -> dict:
        """Task name, success, task-specific diagnostics (distances, poses) and sim time."""

    @property
    def home_position(self) -> dict[str, float]:
        """Reset pose, motor -> value in robot units (deg; gripper 0..100)."""

    @property
    def control_period_s(self) -> float:
        """Simulated seconds advanced by one lockstep `send_action`."""
