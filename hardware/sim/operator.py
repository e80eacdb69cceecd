"""`--teleop.type=sim_operator`: an honest simulated operator, the stand-in for the person at the console.

Benchmarks in robot time need someone who watches the policy, takes over when it goes wrong, hands back,
and presses success/failure like the real user does, without knowing more than that user could. The
operator therefore never holds the robot: it gets an `OperatorView`, a function returning the visible part
of `robot.get_observation()` (joint positions and the task's own observation keys, which the policy sees
too), plus the task name and the control rate. From the joints it works out where the gripper is (the
SO-101 kinematic model); it counts its own steps for the time in the episode. It never calls
`task_success()`, never reads MuJoCo's model/data and never sees the policy's plans
(`tests/hardware/test_sim_operator.py` runs it against a robot proxy that raises on anything else).

Once per control step the actor's `Takeover.arbitrate` calls `get_teleop_events()`; that is where the
operator looks, decides and answers with LeRobot's teleop events:

- **take over** (`is_intervention=True`) when it sees no progress towards the goal for a while, the gripper
  outside the workspace box or clearly further from the goal than at the start, or (pick_cube) a stalled
  grasp: gripper closed at the cube but the cube not rising. Like a person it reacts after a delay drawn
  from `reaction_delay_s` and notices a problem only with probability `react_probability` (seeded RNG).
  While it intervenes, `get_action()` returns the scripted expert's action (the same `ScriptedExpert` as
  `sim_expert`), so it goes through the same takeover path as a leader arm (safety guard, flags).
- **hand back** after `max_takeover_s`, or once the goal is nearly reached (the policy finishes).
- **press keys** (`press_keys`): SUCCESS when it sees the task done, FAILURE when the episode looks
  hopeless, each after a short seeded delay.
- stays within a **budget**: at most `max_intervention_share` of all steps so far and
  `max_takeovers_per_episode` takeovers.

A new episode starts on `reset()` (call it at episode start) and is also detected from what is visible:
the arm back at home after having been away, or the reach target / cube moved while the arm is at home.
`stats()` gives the counters a benchmark reports.

One cohesive job (over our ~450-line guide on purpose): the view, the triggers, the hand-back, the keys
and the budget are one person's decisions over one shared episode state, and read best together.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from lerobot.teleoperators import TeleoperatorConfig
from lerobot.teleoperators.utils import TeleopEvents

from hardware import so101_model
from hardware.sim.ik import ArmIK
from hardware.sim.scene import CUBE_HALF_SIZE
from hardware.sim.tasks import PickCubeTask, ReachTask
from hardware.sim.teleop_base import SimTeleop, SimTeleopConfig, bound_task

OPERATOR_TASKS = ("reach", "pick_cube")
MODES = ("auto", "off")
TRIGGERS = ("no_progress", "out_of_workspace", "diverging", "stalled_grasp")
# The gripper frame sits on the fixed jaw's pad; the grasp point is half a cube (plus the pad) along the jaw
# axis (the scripted expert aims for the same point).
_GRASP_OFFSET_M = CUBE_HALF_SIZE + 0.006
# No joint moves this far in one control period under its own power (measured <10 deg unguarded at 30 Hz):
# a bigger jump between two looks means the scene was reset in between.
_RESET_JUMP_DEG = 20.0
_HANDBACK_REMAINING_M = {"reach": 0.035, "pick_cube": 0.02}


@TeleoperatorConfig.register_subclass("sim_operator")
@dataclass(kw_only=True)
class SimOperatorTeleopConfig(SimTeleopConfig):
    # `task` (the task it judges and solves; None = the bound robot's) and `max_speed_deg_s` (its hands'
    # joint speed cap) come from SimTeleopConfig.
    mode: str = "auto"  # "auto": watch, take over, press keys; "off": never intervenes nor presses a key
    seed: int = 0  # seed of its reaction delays and misses (episode i draws from (seed, i))
    # -- when it takes over --
    progress_window_s: float = 1.5  # no progress = remaining distance not reduced by progress_min_m in this
    progress_min_m: float = 0.01
    diverge_m: float = 0.08  # gripper this much further from the goal than at the episode's start
    workspace_min: tuple[float, float, float] = (0.02, -0.32, -0.01)  # gripper box it expects (m, base frame)
    workspace_max: tuple[float, float, float] = (0.40, 0.32, 0.30)
    stall_window_s: float = 1.0  # pick_cube: gripper closed at the cube this long ...
    stall_near_m: float = 0.03  # ... within this of the cube (grasp point to cube centre) ...
    stall_min_rise_m: float = 0.01  # ... and the cube rose less than this: a stalled grasp
    gripper_closed_below: float = 15.0  # gripper reading (0..100) below which the jaws count as closed
    reaction_delay_s: tuple[float, float] = (0.3, 0.8)  # seeded delay between seeing a problem and acting
    react_probability: float = 0.9  # chance it acts on a problem it sees (a miss looks again after a delay)
    # -- when it hands back --
    max_takeover_s: float = 3.0  # longest takeover
    handback_near_goal: bool = True  # hand back once the goal is nearly reached (the policy finishes)
    # "nearly": remaining distance; None = per task: reach 0.035 (1 cm outside the success radius),
    # pick_cube 0.02 (grasp gap + lift still to go: the cube in the jaws and about 3 cm up)
    handback_remaining_m: float | None = None
    retake_cooldown_s: float = 1.0  # no new takeover this soon after a hand-back
    min_takeover_s: float = 0.5  # shortest takeover (unless over budget); needs this much budget to start
    # -- budget --
    max_intervention_share: float | None = 0.2  # of all its steps so far (robot time); None = no cap
    max_takeovers_per_episode: int | None = 3  # None = no cap
    # -- keys --
    press_keys: bool = True  # press SUCCESS / FAILURE (the simulator knows success anyway)
    key_delay_s: tuple[float, float] = (0.2, 0.5)  # seeded delay before a key press
    episode_time_s: float = 20.0  # the episode time limit it knows (match episode.time_limit_s)
    fail_at_fraction: float = 0.9  # FAILURE when this much of episode_time_s is gone without progress
    reach_tolerance_m: float | None = None  # reach success radius it judges by; None = the task's (2.5 cm)
    lift_m: float | None = None  # pick_cube success lift it judges by; None = the task's (4 cm)
    home_tolerance_deg: float = 3.0  # "arm at home" (new-episode detection), per arm joint

    def __post_init__(self) -> None:
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        # YAML (and so the command line) reads a bare `off` as false, which draccus then makes "False"
        self.mode = {"false": "off", "true": "auto"}.get(str(self.mode).lower(), self.mode)
        if self.mode not in MODES:
            raise ValueError(f"sim_operator mode must be one of {MODES}, got {self.mode!r}")
        for name in ("reaction_delay_s", "key_delay_s"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"sim_operator {name} must be [low, high] with 0 <= low <= high")
        if not 0 <= self.react_probability <= 1:
            raise ValueError("sim_operator react_probability must be in [0, 1]")
        if self.max_intervention_share is not None and not 0 <= self.max_intervention_share <= 1:
            raise ValueError("sim_operator max_intervention_share must be in [0, 1] (or null)")
        if self.max_takeover_s <= 0 or self.progress_window_s <= 0 or self.episode_time_s <= 0:
            raise ValueError("sim_operator max_takeover_s, progress_window_s, episode_time_s must be > 0")
        if any(a >= b for a, b in zip(self.workspace_min, self.workspace_max, strict=True)):
            raise ValueError("sim_operator workspace_min must be below workspace_max on every axis")


class OperatorView:
    """What a person beside the arm sees: joints (`<motor>.pos`) and the task's visible keys, nothing else.

    `observe` returns a robot observation dict; the view keeps only the visible keys. `of_robot` builds one
    from a simulated robot touching only `robot.get_observation`, `robot.config.task`, `robot.config.fps`.
    """

    def __init__(self, observe: Callable[[], Mapping[str, Any]], task: str, fps: float) -> None:
        if task not in OPERATOR_TASKS:
            raise ValueError(f"sim_operator knows tasks {OPERATOR_TASKS}, not {task!r}")
        self._observe = observe
        self.task = task
        self.fps = float(fps)
        task_keys = (ReachTask if task == "reach" else PickCubeTask)().observation_features()
        self.keys = tuple(f"{m}.pos" for m in so101_model.MOTORS) + tuple(task_keys)

    @classmethod
    def of_robot(cls, robot: Any, task: str | None = None) -> OperatorView:
        wanted, fps = bound_task(robot, task, "sim_operator")
        get_observation = robot.get_observation
        return cls(lambda: get_observation(), wanted, fps)

    def __call__(self) -> dict[str, float]:
        obs = self._observe()
        try:
            return {k: float(obs[k]) for k in self.keys}
        except KeyError as exc:
            raise KeyError(f"sim_operator cannot see {exc.args[0]!r} in the robot's observation") from exc


@dataclass
class Sight:
    """What the operator makes of one look at the scene."""

    remaining: float  # metres still to go (reach: to the target; pick_cube: grasp gap + lift still needed)
    done: bool  # the task looks done
    ee: np.ndarray  # gripper frame position
    in_workspace: bool
    stall_candidate: bool  # pick_cube: jaws closed at the cube
    cube_z: float  # pick_cube: cube centre height (0 for reach)
    hopeless: bool  # pick_cube: the cube is out of the workspace


class SimulatedOperator:
    """The decisions of the simulated operator; `SimOperatorTeleop` wraps it as a LeRobot Teleoperator."""

    def __init__(self, config: SimOperatorTeleopConfig, view: OperatorView) -> None:
        self.config = config
        self.view = view
        self.task = view.task
        self.fps = view.fps
        self._ik = ArmIK()
        self._home = np.array([so101_model.HOME_POSITION[m] for m in so101_model.ARM_MOTORS])
        self._box = (np.asarray(config.workspace_min, float), np.asarray(config.workspace_max, float))
        self._tol = ReachTask.tolerance_m if config.reach_tolerance_m is None else config.reach_tolerance_m
        self._lift = PickCubeTask.lift_m if config.lift_m is None else config.lift_m
        self._near = config.handback_remaining_m
        if self._near is None:
            self._near = _HANDBACK_REMAINING_M[self.task]
        self._window = self._steps(config.progress_window_s)
        self._stall = self._steps(config.stall_window_s)
        self._max_takeover = self._steps(config.max_takeover_s)
        self._cooldown = self._steps(config.retake_cooldown_s)
        self._min_takeover = self._steps(config.min_takeover_s)
        self.episode = -1
        self.total_steps = 0
        self.intervened_steps = 0
        self.takeovers = 0
        self.success_presses = 0
        self.failure_presses = 0
        self.missed = 0  # problems it saw but did not act on (the react_probability roll)
        self.triggers = dict.fromkeys(TRIGGERS, 0)
        self.handbacks = {"timeout": 0, "near_goal": 0, "budget": 0}
        self._last_arm: np.ndarray | None = None
        self._last_task: np.ndarray | None = None
        self._new_episode_pending = True
        self.rng = np.random.default_rng([config.seed, 0])
        self._clear_episode()

    # ------------------------------------------------------------------ public

    def reset(self) -> None:
        """A new episode begins (its first look starts the clock)."""
        self._new_episode_pending = True

    def events(self) -> dict[TeleopEvents, bool]:
        """Look once (one control step), decide, and answer with this step's teleop events."""
        obs = self.view()
        self._maybe_new_episode(obs)
        self.total_steps += 1
        self.step += 1
        sight = self._see(obs)
        self._remember(sight)
        out = dict.fromkeys((TeleopEvents.IS_INTERVENTION, TeleopEvents.SUCCESS, TeleopEvents.FAILURE), False)
        if self.config.mode == "off" or self._episode_over:
            return out
        if self.config.press_keys:
            key = self._key(sight)
            if key is not None:
                out[key] = True
                self._episode_over = True
                self.intervening = False
                return out
        if self.intervening:
            self._maybe_hand_back(sight)
        else:
            self._maybe_take_over(sight)
        if self.intervening:
            self.intervened_steps += 1
            self._takeover_steps += 1
            out[TeleopEvents.IS_INTERVENTION] = True
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "episodes": self.episode + 1,
            "steps": self.total_steps,
            "takeovers": self.takeovers,
            "intervened_steps": self.intervened_steps,
            "intervention_share": self.intervened_steps / self.total_steps if self.total_steps else 0.0,
            "success_presses": self.success_presses,
            "failure_presses": self.failure_presses,
            "key_presses": self.success_presses + self.failure_presses,
            "missed": self.missed,
            "triggers": dict(self.triggers),
            "handbacks": dict(self.handbacks),
            "episode_takeovers": self.ep_takeovers,
            "intervening": self.intervening,
        }

    # ------------------------------------------------------------------ episodes

    def _steps(self, seconds: float) -> int:
        return max(1, round(seconds * self.fps))

    def _maybe_new_episode(self, obs: dict[str, float]) -> None:
        """A new episode when told (`reset()`) or when the scene visibly starts over: the reach target moved
        (it never moves within an episode), the arm is back at home after a jump no servo makes in one
        control period (a reset happened between two looks), or the cube reappeared elsewhere at rest."""
        arm = np.array([obs[f"{m}.pos"] for m in so101_model.ARM_MOTORS])
        task = np.array([obs[k] for k in self.view.keys[len(so101_model.MOTORS) :]])
        if not self._new_episode_pending and self._last_arm is not None:
            at_home = float(np.abs(arm - self._home).max()) <= self.config.home_tolerance_deg
            jumped = float(np.abs(arm - self._last_arm).max()) > _RESET_JUMP_DEG
            if self.task == "reach":
                scene_reset = float(np.abs(task[:3] - self._last_task[:3]).max()) > 1e-4
            else:
                at_rest = abs(task[2] - CUBE_HALF_SIZE) < 0.003
                scene_reset = at_rest and float(np.linalg.norm(task[:2] - self._last_task[:2])) > 0.03
            self._new_episode_pending = (self.task == "reach" and scene_reset) or (
                at_home and (jumped or scene_reset)
            )
        self._last_arm, self._last_task = arm, task
        if self._new_episode_pending:
            self._start_episode()

    def _start_episode(self) -> None:
        self._new_episode_pending = False
        self.episode += 1
        self.rng = np.random.default_rng([self.config.seed, self.episode])
        self._clear_episode()

    def _clear_episode(self) -> None:
        self.step = 0
        self.ep_takeovers = 0
        self.intervening = False
        self._episode_over = False
        self._start_remaining: float | None = None
        self._history: deque[float] = deque(maxlen=self._window + 1)
        self._stall_z: deque[float] = deque(maxlen=self._stall + 1)  # cube heights while gripping it
        self._pending_at: int | None = None  # step at which it acts on the problem it saw
        self._pending_act = False
        self._key_at: int | None = None
        self._key_kind: TeleopEvents | None = None
        self._quiet_until = 0
        self._takeover_steps = 0
        self._takeover_far = False

    # ------------------------------------------------------------------ seeing

    def _see(self, obs: dict[str, float]) -> Sight:
        present = {m: obs[f"{m}.pos"] for m in so101_model.MOTORS}
        ee, _ = self._ik.pose(present)
        lo, hi = self._box
        in_ws = bool(np.all(ee >= lo) and np.all(ee <= hi))
        if self.task == "reach":
            target = np.array([obs["target.x"], obs["target.y"], obs["target.z"]])
            dist = float(np.linalg.norm(ee - target))
            return Sight(dist, dist <= self._tol, ee, in_ws, False, 0.0, False)
        cube = np.array([obs["cube.x"], obs["cube.y"], obs["cube.z"]])
        grasp = ee + self._ik.jaw_axis() * _GRASP_OFFSET_M
        gap = float(np.linalg.norm(grasp - cube))
        lift = float(cube[2]) - CUBE_HALF_SIZE  # the cube rests on the table: its height is visible
        closed = present["gripper"] < self.config.gripper_closed_below
        stall = closed and gap < self.config.stall_near_m
        hopeless = not bool(np.all(cube[:2] >= lo[:2]) and np.all(cube[:2] <= hi[:2]))
        return Sight(
            gap + max(0.0, self._lift - lift), lift >= self._lift, ee, in_ws, stall, float(cube[2]), hopeless
        )

    def _remember(self, s: Sight) -> None:
        if self._start_remaining is None:
            self._start_remaining = s.remaining
        self._history.append(s.remaining)
        if s.stall_candidate:
            self._stall_z.append(s.cube_z)
        else:
            self._stall_z.clear()

    def _no_progress(self) -> bool:
        h = self._history
        return len(h) == h.maxlen and h[0] - h[-1] < self.config.progress_min_m

    def _problems(self, s: Sight) -> list[str]:
        if s.done:
            return []
        found = []
        if self._no_progress():
            found.append("no_progress")
        if not s.in_workspace:
            found.append("out_of_workspace")
        if s.remaining > self._start_remaining + self.config.diverge_m:
            found.append("diverging")
        z = self._stall_z
        if len(z) == z.maxlen and z[-1] - z[0] < self.config.stall_min_rise_m:
            found.append("stalled_grasp")
        return found

    # ------------------------------------------------------------------ deciding

    def _delay(self, bounds: tuple[float, float]) -> int:
        return round(float(self.rng.uniform(*bounds)) * self.fps)

    def _within_budget(self) -> bool:
        cfg = self.config
        if cfg.max_takeovers_per_episode is not None and self.ep_takeovers >= cfg.max_takeovers_per_episode:
            return False
        share = cfg.max_intervention_share
        return share is None or self.intervened_steps + self._min_takeover <= share * self.total_steps

    def _maybe_take_over(self, s: Sight) -> None:
        problems = self._problems(s)
        if not problems or self.step < self._quiet_until or not self._within_budget():
            self._pending_at = None  # the problem went away (or it may not act): forget what it saw
            return
        if self._pending_at is None:  # it notices: will it act, and after how long?
            self._pending_act = bool(self.rng.random() < self.config.react_probability)
            self._pending_at = self.step + self._delay(self.config.reaction_delay_s)
            if not self._pending_act:
                self.missed += 1
        if self.step < self._pending_at:
            return
        if not self._pending_act:  # missed it; look again
            self._pending_at = None
            return
        self._pending_at = None
        self.intervening = True
        self.takeovers += 1
        self.ep_takeovers += 1
        self._takeover_steps = 0
        self._takeover_far = s.remaining > self._near
        for name in problems:
            self.triggers[name] += 1
        self.on_takeover()

    def on_takeover(self) -> None:
        """Hook: a takeover starts (the teleop restarts its expert's plan from the present state)."""

    def _maybe_hand_back(self, s: Sight) -> None:
        cfg = self.config
        reason = None
        if self._takeover_steps >= self._max_takeover:
            reason = "timeout"
        elif (
            cfg.handback_near_goal
            and self._takeover_far
            and self._takeover_steps >= self._min_takeover
            and s.remaining <= self._near
        ):
            reason = "near_goal"
        elif cfg.max_intervention_share is not None and (
            self.intervened_steps + 1 > cfg.max_intervention_share * self.total_steps
        ):
            reason = "budget"
        if reason is None:
            return
        self.intervening = False
        self.handbacks[reason] += 1
        self._history.clear()  # judge the policy afresh from here
        self._stall_z.clear()
        self._quiet_until = self.step + self._cooldown

    def _key(self, s: Sight) -> TeleopEvents | None:
        cfg = self.config
        if s.done or self._key_kind is TeleopEvents.SUCCESS:  # what it saw done, it presses
            kind = TeleopEvents.SUCCESS
        elif not self.intervening and (
            s.hopeless
            or (self.step >= cfg.fail_at_fraction * cfg.episode_time_s * self.fps and self._no_progress())
        ):
            kind = TeleopEvents.FAILURE
        else:
            self._key_at = self._key_kind = None
            return None
        if self._key_kind is not kind:
            self._key_kind, self._key_at = kind, self.step + self._delay(cfg.key_delay_s)
        if self.step < self._key_at:
            return None
        if kind is TeleopEvents.SUCCESS:
            self.success_presses += 1
        else:
            self.failure_presses += 1
        return kind


class SimOperatorTeleop(SimTeleop):
    """A simulated person at the console for a simulated follower (see the module docstring); the
    Teleoperator plumbing it shares with `sim_expert` is in hardware/sim/teleop_base.py."""

    config_class = SimOperatorTeleopConfig
    name = "sim_operator"

    def __init__(self, config: SimOperatorTeleopConfig):
        super().__init__(config)
        self.view: OperatorView | None = None
        self.operator: SimulatedOperator | None = None

    def bind(self, robot: Any) -> None:
        """Look at the simulated follower through an `OperatorView` (the operator never holds the robot)."""
        self.bind_view(OperatorView.of_robot(robot, self.config.task))

    def bind_view(self, view: OperatorView) -> None:
        self.view = view
        self.make_expert(view.task, view.fps)
        self.operator = SimulatedOperator(self.config, view)
        self.operator.on_takeover = self.expert.reset

    def is_bound(self) -> bool:
        return self.operator is not None

    def reset(self) -> None:
        """A new episode: the operator's clock and the expert's plan start again."""
        if self.operator is not None:
            self.operator.reset()
            self.expert.reset()

    def get_action(self) -> dict[str, float]:
        """The operator's hands: the scripted expert's action for what it sees now."""
        self.check_connected()
        return self.expert.act(self.view())

    def get_teleop_events(self) -> dict[TeleopEvents, bool]:
        """Call once per control step: the operator looks, decides, and answers (takeover, keys)."""
        self.check_connected()
        return self.operator.events()

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks: takeovers, intervened steps, key presses, hand-backs, misses."""
        return self.operator.stats() if self.operator is not None else {}
