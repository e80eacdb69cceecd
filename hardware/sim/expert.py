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
from hardware.sim.scene import CUBE_HALF_SIZE

DOWN = np.array([0.0, 0.0, -1.0])


@dataclass
class ExpertConfig:
    task: str = "reach"  # which sim task to solve: "reach" or "pick_cube"
    fps: float = 30.0  # rate at which act() is called (sets the per-call joint step)
    max_speed_deg_s: float = 120.0  # joint speed cap of the commanded goal
    resync_deg: float = 15.0  # if the arm is this far from the last command, restart from the present pose
    open_gripper: float = 35.0  # pick: gripper opening while approaching (0..100; ~55 mm between pads)
    closed_gripper: float = 0.0  # pick: gripper command when grasping (the servo's torque limit holds it)
    approach_height_m: float = 0.06  # pick: hover height above the grasp point before descending
    lift_height_m: float = 0.08  # pick: how high to lift above the grasp point


class ScriptedExpert:
    """`act(observation) -> action` for a sim task; stateful only to smooth its own commands."""

    def __init__(self, config: ExpertConfig | None = None) -> None:
        self.config = config or ExpertConfig()
        if self.config.task not in ("reach", "pick_cube"):
            raise ValueError(f"no scripted expert for task {self.config.task!r}; use 'reach' or 'pick_cube'")
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
        self._last_goal: dict[str, float] | None = None

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
        # Warm-start from the previous solution (same arm branch, few iterations); wrist roll from present.
        seed = {**(self._last_goal or present), "wrist_roll": present["wrist_roll"]}
        goal, _ = self._ik.solve(point + self._bias, seed, approach=DOWN, approach_weight=0.5)
        self._last_goal = dict(goal)
        goal["gripper"] = gripper
        return goal

    # ---- policy ------------------------------------------------------------------------------------
    def act(self, observation: dict) -> dict[str, float]:
        present = self._present(observation)
        if self.config.task == "reach":
            target = np.array([observation["target.x"], observation["target.y"], observation["target.z"]])
            return self._move_towards(present, self._reach_goal(present, target, present["gripper"]))
        return self._act_pick(observation, present)

    # ---- pick-and-lift -----------------------------------------------------------------------------
    def _roll_for_yaw(self, present: dict[str, float], goal: dict[str, float], cube_yaw: float) -> float:
        """Wrist roll that lines the jaw axis (site z) up with a cube face, turning the wrist the least."""

        def jaw_yaw(roll: float) -> float:
            _, _ = self._ik.pose({**goal, "wrist_roll": roll})
            z = self._ik.jaw_axis()
            return float(np.degrees(np.arctan2(z[1], z[0])))

        y0, y1 = jaw_yaw(0.0), jaw_yaw(20.0)
        slope = ((y1 - y0 + 180.0) % 360.0 - 180.0) / 20.0
        if abs(slope) < 1e-3:
            return present["wrist_roll"]
        # The cube is 4-fold symmetric: any face normal cube_yaw + k*90 will do; take the smallest roll.
        base = (cube_yaw - y0) / slope
        candidates = [base + k * 90.0 / slope for k in range(-3, 4)]
        lo, hi = so101_model.motor_limits()["wrist_roll"]
        candidates = [c for c in candidates if lo + 5 <= c <= hi - 5] or [0.0]
        return float(min(candidates, key=abs))

    def _act_pick(self, observation: dict, present: dict[str, float]) -> dict[str, float]:
        cfg = self.config
        cube = np.array([observation["cube.x"], observation["cube.y"], observation["cube.z"]])
        cube_yaw = float(observation["cube.yaw"])
        ee, _ = self._ik.pose(present)
        jaw = self._ik.jaw_axis()
        # The gripper frame sits on the fixed jaw's pad; the cube's centre should end up half a cube
        # further along the jaw axis, between the pads.
        grasp_site = cube - jaw * (CUBE_HALF_SIZE + 0.006)
        grasp_site[2] = cube[2]
        above = grasp_site + np.array([0.0, 0.0, cfg.approach_height_m])
        lifted = cube[2] > CUBE_HALF_SIZE + 0.01
        near_cube = np.linalg.norm((ee + jaw * (CUBE_HALF_SIZE + 0.006) - cube)[:2]) < 0.02

        # Re-plan from whatever state we are handed: a lost or never-grasped cube sends us back to approach.
        cube_in_hand = near_cube and abs(ee[2] - cube[2]) < 0.02
        if self._phase in ("close", "lift") and not cube_in_hand:
            self._phase, self._phase_steps = "approach", 0
        if (
            self._phase == "approach"
            and lifted
            and cube_in_hand
            and present["gripper"] < cfg.open_gripper / 2
        ):
            self._phase = "lift"
        self._phase_steps += 1

        if self._phase == "approach":
            goal = self._reach_goal(present, above, cfg.open_gripper)
            if np.linalg.norm(ee - above) < 0.015:
                self._phase, self._phase_steps = "descend", 0
        elif self._phase == "descend":
            goal = self._reach_goal(present, grasp_site, cfg.open_gripper)
            if np.linalg.norm(ee - grasp_site) < 0.01 or self._phase_steps > cfg.fps:
                self._phase, self._phase_steps = "close", 0
        elif self._phase == "close":
            goal = self._reach_goal(present, grasp_site, cfg.closed_gripper)
            if self._phase_steps > 0.4 * cfg.fps:
                self._phase, self._phase_steps = "lift", 0
        else:  # lift
            goal = self._reach_goal(
                present, grasp_site + np.array([0.0, 0.0, cfg.lift_height_m]), cfg.closed_gripper
            )
        if self._phase in ("approach", "descend"):
            goal["wrist_roll"] = self._roll_for_yaw(present, goal, cube_yaw)
        else:
            goal["wrist_roll"] = (self._command or present)["wrist_roll"]
        return self._move_towards(present, goal)
