"""Who drives during a takeover: the configured teleoperator (`teleop` in the run config: leader arm,
gamepad, keyboard, sim expert) or, in sim without one, the built-in scripted expert; opening it before the
follower and letting it go after.

Leader arms give joint goals in the follower's units; gamepad / keyboard_ee give end-effector deltas,
mapped to joints by IK from the present pose; their intervention button reaches Takeover as the
`is_intervention` event.
"""

from __future__ import annotations

import logging
from typing import Any

from app.run.config import LEADER_ARMS, PIRLRunConfig
from hardware.takeover import ExpertSource, HumanSource

log = logging.getLogger("pirl.actor")

# What the console calls each kind (LeRobot reads both SO leaders' type as "so100_leader": name the kind).
LABELS = {
    **dict.fromkeys(LEADER_ARMS, "leader arm"),
    "gamepad": "gamepad",
    "keyboard_ee": "keyboard",
    "sim_expert": "sim expert",
    "sim_operator": "sim operator",
}


class HumanInput:
    """Builds the takeover source from the run config (nothing is opened yet; errors name the missing
    port, id or calibration file). `source` is what Takeover arbitrates with (None: nobody to take over),
    `teleop` the LeRobot teleoperator if one is configured, `label` what the console shows, `action_map`
    the end-effector map to restart on every takeover."""

    def __init__(self, cfg: PIRLRunConfig, robot: Any, is_sim: bool) -> None:
        self.cfg = cfg
        self.teleop: Any = None
        self.label = ""
        self.action_map: Any = None
        self._expert: Any = None
        self.source: HumanSource | None = self._build(robot, is_sim)

    def _build(self, robot: Any, is_sim: bool) -> HumanSource | None:
        if self.cfg.teleop is not None:
            return self._teleop_source(robot)
        if not (is_sim and self.cfg.actor.expert):
            return None
        task = getattr(self.cfg.robot, "task", None)
        if task not in ("reach", "pick_cube"):
            return None
        from hardware.sim.expert import ExpertConfig, ScriptedExpert

        self._expert = ScriptedExpert(ExpertConfig(task=task, fps=float(self.cfg.robot.fps)))
        self.label = "sim expert"
        return ExpertSource(self._expert.act)

    def _teleop_source(self, robot: Any) -> HumanSource:
        from hardware.factory import leader_in_degrees, make_teleoperator
        from hardware.takeover import EndEffectorDeltaMap, TeleopSource

        tcfg = self.cfg.teleop
        self.teleop = make_teleoperator(tcfg, robot=robot)
        self.label = LABELS.get(tcfg.type, tcfg.type)
        if tcfg.type == "sim_expert":
            # The expert acts on the guard's observation, like the built-in one (and is reset with the scene).
            self._expert = self.teleop.expert
            return ExpertSource(self.teleop.expert.act)
        if tcfg.type == "koch_leader" and getattr(self.cfg.robot, "use_degrees", False):
            leader_in_degrees(self.teleop)
        if tcfg.type in ("gamepad", "keyboard_ee"):
            self.action_map = EndEffectorDeltaMap()
        return TeleopSource(self.teleop, self.action_map)

    def reset_scene(self) -> None:
        """The simulator reset its scene: a scripted expert starts its plan again."""
        if self._expert is not None:
            self._expert.reset()

    def connect(self, say) -> None:
        if self.teleop is None:
            return
        from hardware.factory import connect_teleoperator

        connect_teleoperator(self.teleop)
        say(f"teleop connected ({self.label}) (console `t`, or its intervention button, takes over)")

    def disconnect(self) -> None:
        """Release the teleoperator; never raises (it runs on the way out, after the follower is safe)."""
        teleop = self.teleop
        if teleop is None or not getattr(teleop, "is_connected", False):
            return
        try:
            teleop.disconnect()
        except Exception:
            log.exception("could not disconnect teleop %s cleanly", self.cfg.teleop.type)
