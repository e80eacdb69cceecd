"""Scripted expert for the sim tasks: a stand-in for a human teleoperator.

It reads only what a policy sees (the observation dict: joint positions and the task's extra keys) and
returns an action in robot units with the same keys as `send_action`, so it can drive demos, tests, BC
data and takeovers alike. It plans with IK on the shipped arm model and moves each joint at most
`max_speed_deg_s`, like a person guiding a leader arm; it starts from whatever state it is handed (a
takeover in the middle of a bad policy rollout), not only from reset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardware import so101_model
from hardware.sim.ik import ArmIK

DOWN = np.array([0.0, 0.0, -1.0])


@dataclass
class ExpertConfig:
    task: str = "reach"  # which sim task to solve: "reach" or "pick_cube"
    fps: float = 30.0  # rate at which act() is called (sets the per-call joint step)
    max_speed_deg_s: float = 120.0  # joint speed cap of the commanded goal
    resync_deg: float = 15.0  # if the arm is this far from the last command, restart from the present pose


class ScriptedExpert:
    """`act(observation) -> action` for a sim task; stateful only to smooth its own commands."""

    def __init__(self, config: ExpertConfig | None = None) -> None:
        self.config = config or ExpertConfig()
        if self.config.task not in ("reach",):
            raise ValueError(f"no scripted expert for task {self.config.task!r}; use 'reach'")
        self._ik = ArmIK()
        self._step = self.config.max_speed_deg_s / self.config.fps
        self.reset()

    def reset(self) -> None:
        """Forget the previous command and phase (call at episode start)."""
        self._command: dict[str, float] | None = None
        self._phase = "approach"
        self._phase_steps = 0
        self._bias = np.zeros(3)
        self._goal_key: tuple | None = None

    # ---- helpers -----------------------------------------------------------------------------------
    def _present(self, obs: dict) -> dict[str, float]:
        try:
            return {m: float(obs[f"{m}.pos"]) for m in so101_model.MOTORS}
        except KeyError as exc:
            raise KeyError(f"scripted expert needs joint key {exc.args[0]!r} in the observation") from exc

    def _move_towards(self, present: dict[str, float], goal: dict[str, float]) -> dict[str, float]:
        """Rate-limited command from the last command (or the present pose after a jump) to the goal."""
        cmd = self._command
        if cmd is None or max(abs(cmd[m] - present[m]) for m in so101_model.MOTORS) > self.config.resync_deg:
            cmd = dict(present)
        out = {}
        for m in so101_model.MOTORS:
            delta = float(np.clip(goal[m] - cmd[m], -self._step, self._step))
            out[m] = cmd[m] + delta
        self._command = out
        return so101_model.as_action(out)

    def _reach_goal(self, present: dict[str, float], point: np.ndarray, gripper: float) -> dict[str, float]:
        """IK goal for `point`, corrected for the position loop's steady-state sag once close."""
        ee, _ = self._ik.pose(present)
        key = tuple(np.round(point, 4))
        if key != self._goal_key:
            self._goal_key, self._bias = key, np.zeros(3)
        err = point - ee
        if np.linalg.norm(err) < 0.03:
            self._bias = np.clip(self._bias + 0.3 * err, -0.03, 0.03)
        goal, _ = self._ik.solve(point + self._bias, present, approach=DOWN, approach_weight=0.5)
        goal["gripper"] = gripper
        return goal

    # ---- policy ------------------------------------------------------------------------------------
    def act(self, observation: dict) -> dict[str, float]:
        present = self._present(observation)
        if self.config.task == "reach":
            target = np.array([observation["target.x"], observation["target.y"], observation["target.z"]])
            return self._move_towards(present, self._reach_goal(present, target, present["gripper"]))
        raise AssertionError(self.config.task)
