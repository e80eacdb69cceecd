"""Takeover: who drives this step, the policy or the human, and a clean hand-back.

The operator can grab control at any moment (leader arm, gamepad, keyboard; in simulation a scripted
expert). While they do, the human action replaces the policy action, still through the RobotGuard's safety
layer, and the step is flagged as an intervention. When control returns, the policy must start from where
the arm *is*, not from where its old action chunk thought it would be: the decision says `handed_back`,
`on_handback` listeners run (the actor drops the rest of its chunk), and a lazily given policy action is
only computed after that, from the fresh observation. The guard's per-step and velocity clamps, measured
from the present position, make the switch itself jump-free in both directions.

Who is in control is decided by `request(active)` (console key, API) OR the teleoperator's own
`is_intervention` event (LeRobot gamepad/keyboard), whichever says "human".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

Action = dict[str, float]
PolicyAction = Mapping[str, float] | Callable[[], Mapping[str, float] | None] | None

# Names of LeRobot's TeleopEvents values (kept as strings so this module does not import lerobot).
IS_INTERVENTION = "is_intervention"
SUCCESS = "success"
FAILURE = "failure"
RERECORD = "rerecord_episode"
TERMINATE = "terminate_episode"


class HumanSource(Protocol):
    """Anything a human (or a scripted stand-in) drives the arm with."""

    def action(self, observation: Mapping[str, Any]) -> Mapping[str, float] | None: ...

    def events(self) -> dict[str, Any]: ...


class TeleopSource:
    """A LeRobot `Teleoperator` (leader arm, gamepad, keyboard) as a HumanSource.

    Leader arms already speak "<motor>.pos" in degrees. Teleoperators that speak something else (gamepad
    end-effector deltas) need `action_map(teleop_action, observation) -> joint action`.
    """

    def __init__(
        self,
        teleop: Any,
        action_map: Callable[[dict[str, Any], Mapping[str, Any]], Mapping[str, float]] | None = None,
    ) -> None:
        self.teleop = teleop
        self.action_map = action_map

    def action(self, observation: Mapping[str, Any]) -> Mapping[str, float] | None:
        raw = self.teleop.get_action()
        return self.action_map(raw, observation) if self.action_map is not None else raw

    def reset(self) -> None:
        """A new episode: an end-effector target starts again from where the arm is, and a device that
        keeps per-episode state (the simulated operator's clock and budget, the sim expert's phase) is
        told so through its own `reset()`; LeRobot's devices have none."""
        reset = getattr(self.action_map, "reset", None)
        if reset is not None:
            reset()
        device_reset = getattr(self.teleop, "reset", None)
        if callable(device_reset):
            device_reset()

    def events(self) -> dict[str, Any]:
        fn = getattr(self.teleop, "get_teleop_events", None)
        if fn is None:
            return {}
        return {getattr(k, "value", k): v for k, v in fn().items()}


class ExpertSource:
    """A scripted expert `expert(observation) -> action dict` (the simulator's) as a HumanSource.

    It has no buttons: who is in control comes from `Takeover.request`, or from `wants_control(observation)`
    when given (e.g. "take over when the policy drifts away from the cube").
    """

    def __init__(
        self,
        expert: Callable[[Mapping[str, Any]], Mapping[str, float]],
        wants_control: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> None:
        self.expert = expert
        self.wants_control = wants_control
        self._last_obs: Mapping[str, Any] | None = None

    def action(self, observation: Mapping[str, Any]) -> Mapping[str, float] | None:
        return self.expert(observation)

    def events(self) -> dict[str, Any]:
        return {}

    def intervening(self, observation: Mapping[str, Any]) -> bool:
        return self.wants_control is not None and bool(self.wants_control(observation))


class EndEffectorDeltaMap:
    """`action_map` for end-effector teleoperators (LeRobot gamepad, keyboard_ee) on an SO-10x arm.

    They send {"delta_x", "delta_y", "delta_z"} in [-1, 1] (and "gripper": 0 close, 1 stay, 2 open); this
    moves an end-effector target by `step_m` per unit and per step, solves IK (the SO-101 MuJoCo model) from
    the present joints, and returns a joint action. The target resyncs to the measured gripper frame when
    they drift apart by more than `resync_m` (arm blocked, or the safety layer clamped the motion).
    """

    def __init__(self, step_m: float = 0.005, gripper_step: float = 5.0, resync_m: float = 0.03) -> None:
        from hardware.sim.ik import ArmIK  # model-based IK; valid for the real SO-10x arm too

        self.step_m = step_m
        self.gripper_step = gripper_step
        self.resync_m = resync_m
        self._ik = ArmIK()
        self._target = None

    def reset(self) -> None:
        self._target = None

    def __call__(self, teleop_action: Mapping[str, Any], observation: Mapping[str, Any]) -> Action:
        import numpy as np

        present = {k.removesuffix(".pos"): float(v) for k, v in observation.items() if k.endswith(".pos")}
        ee, _ = self._ik.pose(present)
        if self._target is None or float(np.linalg.norm(self._target - ee)) > self.resync_m:
            self._target = ee.copy()
        delta = np.array([float(teleop_action.get(f"delta_{a}", 0.0)) for a in "xyz"])
        self._target = self._target + self.step_m * np.clip(delta, -1.0, 1.0)
        joints, _ = self._ik.solve(self._target, present)
        grip = teleop_action.get("gripper")
        if grip is not None:
            joints["gripper"] = present["gripper"] + self.gripper_step * (float(grip) - 1.0)
        return {f"{m}.pos": float(v) for m, v in joints.items()}


@dataclass
class TakeoverDecision:
    """The arbitration for one step. `action=None` means hold (the guard holds the present position)."""

    action: Action | None
    source: str  # "policy" | "human"
    intervention: bool
    started: bool = False  # the human took over on this step
    handed_back: bool = False  # control returned to the policy on this step: drop the old chunk
    events: dict[str, Any] = field(default_factory=dict)  # teleop events (success, failure, rerecord...)


class Takeover:
    """Chooses the source of each action and keeps the per-episode intervention record."""

    def __init__(self, human: HumanSource | None = None) -> None:
        self.human = human
        self._requested = False
        self._next_episode = False
        self._active = False
        self._handback_listeners: list[Callable[[], None]] = []
        self._takeover_listeners: list[Callable[[], None]] = []
        self.reset_episode()

    # ------------------------------------------------------------------ control

    def request(self, active: bool) -> None:
        """Operator/console/API: take over (True) or hand back (False); applies from the next step.
        Handing back also cancels a takeover asked for the next episode."""
        if active and self.human is None:
            raise RuntimeError("no teleoperator or expert configured: nothing to take over with")
        self._requested = bool(active)
        if not active:
            self._next_episode = False

    def request_next_episode(self) -> None:
        """Between episodes: the next episode starts with the human in control (reset_episode() would
        otherwise clear a plain request)."""
        if self.human is None:
            raise RuntimeError("no teleoperator or expert configured: nothing to take over with")
        self._next_episode = True

    @property
    def pending(self) -> bool:
        """A takeover is asked for the next episode."""
        return self._next_episode

    @property
    def active(self) -> bool:
        """Whether the human drove the last arbitrated step."""
        return self._active

    def on_handback(self, fn: Callable[[], None]) -> None:
        """Call `fn` when control returns to the policy (the actor drops its queued chunk)."""
        self._handback_listeners.append(fn)

    def on_takeover(self, fn: Callable[[], None]) -> None:
        self._takeover_listeners.append(fn)

    # ------------------------------------------------------------------ arbitration

    def arbitrate(self, observation: Mapping[str, Any], policy_action: PolicyAction) -> TakeoverDecision:
        """Decide this step. `policy_action` may be a zero-argument callable: it is only called when the
        policy drives, after hand-back listeners ran, so no inference is spent (or stale) during takeover."""
        events = self.human.events() if self.human is not None else {}
        human_wants = self._requested or bool(events.get(IS_INTERVENTION, False))
        if isinstance(self.human, ExpertSource) and not human_wants:
            human_wants = self.human.intervening(observation)
        started = human_wants and not self._active
        handed_back = self._active and not human_wants
        self._active = human_wants
        self.steps += 1

        if human_wants:
            if started:
                self.interventions += 1
                logger.info("takeover: human in control")
                for fn in self._takeover_listeners:
                    fn()
            self.intervention_steps += 1
            action = self.human.action(observation)  # type: ignore[union-attr]
            return TakeoverDecision(_as_action(action), "human", True, started, False, events)

        if handed_back:
            logger.info("hand-back: policy resumes from the present state")
            for fn in self._handback_listeners:
                fn()
            if not callable(policy_action):
                # a precomputed action belongs to the chunk planned before the takeover: do not use it
                return TakeoverDecision(None, "policy", False, False, True, events)
        action = policy_action() if callable(policy_action) else policy_action
        return TakeoverDecision(_as_action(action), "policy", False, False, handed_back, events)

    # ------------------------------------------------------------------ per-episode record

    def reset_episode(self) -> None:
        """A new episode: counters cleared; the human drives from its first step only when a takeover
        was asked for it (request_next_episode); the human source starts afresh (its `reset()`, if any)."""
        self.steps = 0
        self.intervention_steps = 0
        self.interventions = 0
        self._active = False
        self._requested = self._next_episode
        self._next_episode = False
        reset = getattr(self.human, "reset", None)
        if reset is not None:
            reset()

    def report(self) -> dict[str, Any]:
        return {
            "interventions": self.interventions,
            "intervention_steps": self.intervention_steps,
            "steps": self.steps,
            "intervention_rate": self.intervention_steps / self.steps if self.steps else 0.0,
        }


def _as_action(action: Mapping[str, float] | None) -> Action | None:
    return None if action is None else dict(action)
