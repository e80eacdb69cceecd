"""EpisodeManager: when an episode runs, how it ends, and how the arm gets home for the next one.

State machine (the console shows `state`):

    resetting --reset() ok--> idle (auto start: sim)  --start()--> running --(end)--> resetting
                         \\-> waiting_confirmation --confirm() (operator: real robot)--> idle

An episode ends on task success/failure (the simulator's `task_success()`, a teleop event, or the
operator's mark), on the time limit, on an e-stop, on an operator stop or re-record request, or when the
learner link is lost (policy `on_link_lost`). Resets drive the arm home on a smooth min-jerk (or cosine)
trajectory through the RobotGuard, so the safety layer checks every waypoint; `start()` refuses while the
learner link is down or the e-stop is latched, and so does `reset()`: while the link is down the arm holds
where it is (a reset the link loss interrupts stops and holds) and the drive home starts once the link is
back. `reset_steps_total` counts the control steps spent driving home (robot time). Every episode yields
an `EpisodeRecord` (length, success, reward, interventions, safety report, the drive-home steps before
it) for the actor to log and send.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from hardware.guard import RobotGuard, StepResult
from hardware.safety.trajectory import PROFILES
from hardware.takeover import FAILURE, RERECORD, SUCCESS, TERMINATE, Takeover, TakeoverDecision
from hardware.watchdog import LinkWatchdog

logger = logging.getLogger(__name__)


class EpisodeState(StrEnum):
    IDLE = "idle"  # at home, ready: start() may begin an episode
    RUNNING = "running"
    RESETTING = "resetting"  # episode over (or first start): reset() must bring the arm home
    WAITING_CONFIRMATION = "waiting_confirmation"  # at home; the operator must confirm() the next one


class EpisodeError(RuntimeError):
    """An episode operation that is not allowed now; the message says why and what unblocks it."""


@dataclass
class EpisodeConfig:
    """Episode length, reset and start policy."""

    # Episode time limit in seconds of control (time_limit_s * control_hz steps).
    time_limit_s: float = 20.0
    # Reset target, "<motor>.pos" -> robot units. Empty: the envelope's home_pose, else the robot's own
    # home pose (the simulator has one); a real robot without either must set it.
    home_pose: dict[str, float] = field(default_factory=dict)
    # Shape of the reset trajectory: "min_jerk", "cosine" or "linear".
    reset_profile: str = "min_jerk"
    # Peak reset speed as a fraction of each joint's velocity limit (0..1]: the reset never needs clamping.
    reset_speed_fraction: float = 0.5
    # Fixed reset duration (s); None: the shortest one within reset_speed_fraction.
    reset_duration_s: float | None = None
    # A reset succeeds when every joint is within this many units of home.
    home_tolerance: float = 2.0
    # Start the next episode without the operator: None = automatic in sim, operator confirmation on real.
    auto_start: bool | None = None
    # Learner link lost mid-episode: "hold" ends the episode now and holds the arm; "finish" lets it run to
    # its end. Either way no new episode starts until the link is back.
    on_link_lost: str = "hold"
    # Reward given on the step the task succeeds (when no reward classifier is configured).
    success_reward: float = 1.0
    # With a reward classifier: reward >= this counts as success (None: the classifier only shapes reward).
    classifier_success_threshold: float | None = None
    # Base seed for simulator resets: episode i uses seed + i (None: the simulator picks).
    seed: int | None = None

    def validate(self) -> None:
        if self.time_limit_s <= 0:
            raise ValueError(f"episode.time_limit_s must be > 0, got {self.time_limit_s}")
        if self.reset_profile not in PROFILES:
            raise ValueError(f"episode.reset_profile must be one of {PROFILES}, got {self.reset_profile!r}")
        if not 0 < self.reset_speed_fraction <= 1:
            raise ValueError(
                f"episode.reset_speed_fraction must be in (0, 1], got {self.reset_speed_fraction}"
            )
        if self.on_link_lost not in ("hold", "finish"):
            raise ValueError(f"episode.on_link_lost must be 'hold' or 'finish', got {self.on_link_lost!r}")
        if self.home_tolerance <= 0:
            raise ValueError(f"episode.home_tolerance must be > 0, got {self.home_tolerance}")


@dataclass
class StepOutcome:
    """What the last step meant for the episode (Gym-style flags)."""

    reward: float
    done: bool
    terminated: bool  # the task ended (success or failure)
    truncated: bool  # cut short (time limit, e-stop, link loss, operator stop, re-record)
    success: bool | None
    reason: str | None
    intervention: bool


@dataclass
class EpisodeRecord:
    index: int  # episode number (a re-recorded episode is repeated with the same index)
    attempt: int  # 0 for the first try at this index, +1 per re-record
    seed: int | None
    steps: int
    duration_s: float  # control time: steps / control_hz
    wall_s: float
    success: bool | None
    reward: float
    termination: str  # success | failure | time_limit | estop | link_lost | operator | rerecord
    truncated: bool
    rerecord: bool  # the actor should discard this episode's data
    interventions: int
    intervention_steps: int
    intervention_rate: float
    safety: dict[str, Any]
    # control steps spent driving home before this episode (all reset attempts since the previous one)
    reset_steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class EpisodeManager:
    """Runs the episode state machine around a RobotGuard. See the module docstring."""

    def __init__(
        self,
        guard: RobotGuard,
        config: EpisodeConfig | None = None,
        *,
        takeover: Takeover | None = None,
        task_success: Callable[[], bool | None] | None = None,
        reward_classifier: Callable[[Mapping[str, Any]], float] | None = None,
        env_reset: Callable[[int | None], Any] | None = None,
        link: LinkWatchdog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or EpisodeConfig()
        self.config.validate()
        self.guard = guard
        self.takeover = takeover
        self.task_success = task_success
        self.reward_classifier = reward_classifier
        self.env_reset = env_reset
        self.link = link or guard.link
        self._clock = clock
        self.auto_start = guard.is_sim if self.config.auto_start is None else self.config.auto_start
        self.max_steps = max(1, round(self.config.time_limit_s * guard.layer.control_hz))
        self.home = self._resolve_home()
        self.state = EpisodeState.RESETTING
        self.index = 0
        self.attempt = 0
        self.records: list[EpisodeRecord] = []
        self._listeners: list[Callable[[EpisodeRecord], None]] = []
        self.reset_steps_total = 0  # control steps of every drive home so far (robot time)
        self._reset_steps_pending = 0  # those since the last start(), for the next episode's record
        self._episode_reset_steps = 0
        self.last_reset_error: float | None = None
        self._reset_ep_counters()

    # ------------------------------------------------------------------ queries

    @property
    def link_ok(self) -> bool:
        return True if self.link is None else self.link.poll()

    @property
    def can_start(self) -> bool:
        return self.why_not_start() is None

    def why_not_start(self) -> str | None:
        """None when start() would succeed, else the reason (for the console)."""
        if self.guard.estopped:
            return f"e-stop latched ({self.guard.estop_reason}); clear it first"
        if not self.link_ok:
            return f"learner link down ({self.link.reason if self.link else ''}); waiting for it to return"
        if self.state is EpisodeState.WAITING_CONFIRMATION:
            return "waiting for the operator to confirm the next episode"
        if self.state is EpisodeState.RESETTING:
            return "the arm has not been reset to home yet; call reset()"
        if self.state is EpisodeState.RUNNING:
            return "an episode is already running"
        return None

    def on_record(self, fn: Callable[[EpisodeRecord], None]) -> None:
        """Call `fn(record)` whenever an episode ends."""
        self._listeners.append(fn)

    @property
    def seed(self) -> int | None:
        return None if self.config.seed is None else self.config.seed + self.index

    # ------------------------------------------------------------------ operator / task inputs

    def confirm(self) -> None:
        """Operator: the scene is ready, the next episode may start."""
        if self.state is EpisodeState.WAITING_CONFIRMATION:
            self.state = EpisodeState.IDLE

    def mark_success(self) -> None:
        self._operator_verdict = True

    def mark_failure(self) -> None:
        self._operator_verdict = False

    def request_rerecord(self) -> None:
        """Discard the running episode and repeat it (same index) after the reset."""
        self._rerecord = True

    def begin_attempt(self, index: int, attempt: int = 0) -> None:
        """Make the next episode attempt `attempt` of episode `index` (its reset seed is seed + index):
        an evaluation re-runs an episode the operator discarded, or replays an evaluated scene."""
        if self.state is EpisodeState.RUNNING:
            raise EpisodeError("begin_attempt() while an episode is running; stop() it first")
        if index < 0 or attempt < 0:
            raise ValueError(f"episode index and attempt must be >= 0, got {index}, {attempt}")
        self.index, self.attempt = int(index), int(attempt)

    def stop(self, reason: str = "operator") -> EpisodeRecord | None:
        """End the running episode now (truncated); the arm holds."""
        if self.state is not EpisodeState.RUNNING:
            return None
        self.guard.hold(reason)
        return self._finish(reason, success=None, terminated=False)

    # ------------------------------------------------------------------ the loop

    def start(self) -> int:
        """Begin an episode; returns its index. Raises EpisodeError saying why not, when it may not."""
        why = self.why_not_start()
        if why is not None:
            raise EpisodeError(f"cannot start an episode: {why}")
        self.guard.layer.report.reset_episode()
        if self.takeover is not None:
            self.takeover.reset_episode()
        self._reset_ep_counters()
        self._episode_reset_steps, self._reset_steps_pending = self._reset_steps_pending, 0
        self._t0 = self._clock()
        self.state = EpisodeState.RUNNING
        logger.info(
            "episode %d (attempt %d) started", self.index + 1, self.attempt
        )  # 1-based, as the console
        return self.index

    def record_step(
        self,
        decision: TakeoverDecision | None = None,
        result: StepResult | None = None,
        observation: Mapping[str, Any] | None = None,
    ) -> StepOutcome:
        """Account for one control step that the actor just applied; ends the episode when it is over.

        `observation` is the one *after* the step (for the reward classifier); `decision` carries the
        intervention flag and teleop events; `result` is the guard's StepResult (lockstep).
        """
        if self.state is not EpisodeState.RUNNING:
            raise EpisodeError(f"record_step() while {self.state.value}; call start() first")
        self.steps += 1
        intervention = (
            bool(decision.intervention) if decision is not None else bool(result and result.intervention)
        )
        events = dict(decision.events) if decision is not None else {}

        success: bool | None = None
        reward = 0.0
        if self.reward_classifier is not None and observation is not None:
            reward = float(self.reward_classifier(observation))
            thr = self.config.classifier_success_threshold
            if thr is not None and reward >= thr:
                success = True
        if self._operator_verdict is not None:
            success = self._operator_verdict
        elif events.get(SUCCESS):
            success = True
        elif events.get(FAILURE):
            success = False
        elif success is None and self.task_success is not None and self.task_success():
            success = True
        if success and self.reward_classifier is None:
            reward = self.config.success_reward
        self.reward_sum += reward

        reason: str | None = None
        terminated = success is not None
        if terminated:
            reason = "success" if success else "failure"
        elif self._rerecord or events.get(RERECORD):
            reason = "rerecord"
        elif self.guard.estopped:
            reason = "estop"
        elif events.get(TERMINATE):
            reason = "operator"
        elif not self.link_ok and self.config.on_link_lost == "hold":
            reason = "link_lost"
            self.guard.hold("link_lost")
        elif self.steps >= self.max_steps:
            reason = "time_limit"
        done = reason is not None
        truncated = done and not terminated
        if done:
            if reason == "rerecord":
                self._rerecord = True
            if reason == "time_limit":
                success = False  # the task was not achieved in time
            self._finish(reason, success=success, terminated=terminated)
        return StepOutcome(reward, done, terminated, truncated, success, reason, intervention)

    def reset(self, seed: int | None = None) -> bool:
        """Drive home smoothly through the guard, then reset the scene (sim). True when home is reached.

        Refused (False, nothing moves) while the e-stop is latched or the learner link is down; a link
        lost during the drive stops it where it is and holds. The caller retries once the link is back."""
        if self.state is EpisodeState.RUNNING:
            raise EpisodeError("reset() while an episode is running; stop() it first")
        if self.guard.estopped:
            logger.warning("reset refused: e-stop latched")
            return False
        self.state = EpisodeState.RESETTING
        if not self.link_ok:
            logger.debug("reset deferred: learner link down (%s)", self.link.reason if self.link else "")
            return False
        cfg = self.config
        link_lost = False

        def should_abort() -> bool:  # called once before each step of the drive: count the steps here
            nonlocal link_lost
            if self.guard.estopped:
                return True
            if not self.link_ok:
                link_lost = True
                return True
            self.reset_steps_total += 1
            self._reset_steps_pending += 1
            return False

        reached, err = self.guard.move_to(
            self.home,
            duration_s=cfg.reset_duration_s,
            profile=cfg.reset_profile,
            speed_fraction=cfg.reset_speed_fraction,
            tolerance=cfg.home_tolerance,
            settle_steps=max(10, round(0.5 * self.guard.layer.control_hz)),
            should_abort=should_abort,
        )
        self.last_reset_error = err
        if link_lost:
            self.guard.hold("link_lost")
            logger.warning(
                "reset stopped: learner link down (%s); holding until it is back",
                self.link.reason if self.link else "",
            )
            return False
        if not reached:
            logger.warning("reset did not reach home (max error %.2f > %.2f)", err, cfg.home_tolerance)
            return False
        if self.env_reset is not None:
            self.env_reset(self.seed if seed is None else seed)
            self.guard.resync()
        self.state = EpisodeState.IDLE if self.auto_start else EpisodeState.WAITING_CONFIRMATION
        return True

    def reset_in_place(self, seed: int | None = None) -> None:
        """Simulator only: reset the scene where the arm stands, without the drive home (the simulator puts
        its arm home itself, in no simulated time), then be ready for start() as after reset(). The
        batched sim rollouts reset this way."""
        if self.state is EpisodeState.RUNNING:
            raise EpisodeError("reset_in_place() while an episode is running; stop() it first")
        if self.env_reset is None:
            raise EpisodeError("reset_in_place() needs a simulator (env_reset); a real arm must reset()")
        self.env_reset(self.seed if seed is None else seed)
        self.guard.resync()
        self.state = EpisodeState.IDLE if self.auto_start else EpisodeState.WAITING_CONFIRMATION

    # ------------------------------------------------------------------ internals

    def _reset_ep_counters(self) -> None:
        self.steps = 0
        self.reward_sum = 0.0
        self._operator_verdict: bool | None = None
        self._rerecord = False
        self._t0 = self._clock()

    def _finish(self, reason: str, success: bool | None, terminated: bool) -> EpisodeRecord:
        tk = self.takeover.report() if self.takeover is not None else {}
        record = EpisodeRecord(
            index=self.index,
            attempt=self.attempt,
            seed=self.seed,
            steps=self.steps,
            duration_s=self.steps / self.guard.layer.control_hz,
            wall_s=self._clock() - self._t0,
            success=success,
            reward=self.reward_sum,
            termination=reason,
            truncated=not terminated,
            rerecord=self._rerecord,
            interventions=tk.get("interventions", 0),
            intervention_steps=tk.get("intervention_steps", 0),
            intervention_rate=tk.get("intervention_rate", 0.0),
            safety=self.guard.layer.report.report(),
            reset_steps=self._episode_reset_steps,
        )
        self.records.append(record)
        if self._rerecord:
            self.attempt += 1
        else:
            self.index += 1
            self.attempt = 0
        if self.guard.mode == "realtime" and not self.guard.estopped and not self.guard.holding:
            # an episode that ended by itself (success, time limit) stops the arm now: otherwise the
            # realtime guard replays the last action until its watchdog fires (a warning at every boundary)
            self.guard.hold("episode_end")
        self.state = EpisodeState.RESETTING
        logger.info(
            "episode %d ended: %s (%d steps, reward %.2f)",
            record.index + 1,
            reason,
            record.steps,
            record.reward,
        )
        for fn in self._listeners:
            fn(record)
        return record

    def _resolve_home(self) -> dict[str, float]:
        keys = self.guard.keys
        sources: list[tuple[str, Mapping[str, float] | None]] = [("episode.home_pose", self.config.home_pose)]
        if self.guard.config.envelope_path:
            from hardware.safety.envelope import SafetyEnvelope

            sources.append(("envelope", SafetyEnvelope.load(self.guard.config.envelope_path).home_pose))
        robot_home = getattr(self.guard.robot, "home_position", None)  # the simulator's (motor keys)
        sources.append(("robot", robot_home() if callable(robot_home) else robot_home))
        for name, pose in sources:
            if pose:
                pose = {(k if k.endswith(".pos") else f"{k}.pos"): v for k, v in pose.items()}
                missing = [k for k in keys if k not in pose]
                if missing:
                    raise ValueError(f"home pose from {name} lacks {missing}; give every '<motor>.pos'")
                home = {k: float(pose[k]) for k in keys}
                for k, v in home.items():
                    lo, hi = self.guard.layer.limits[k.removesuffix(".pos")]
                    if not lo <= v <= hi:
                        raise ValueError(
                            f"home pose from {name}: {k}={v} is outside the joint limit [{lo}, {hi}]"
                        )
                if not self.guard.layer.in_workspace(home):
                    raise ValueError(f"home pose from {name} puts the end effector outside the workspace box")
                return home
        raise ValueError(
            "no home pose: set --episode.home_pose, or record one in the safety envelope "
            "(`pirl calibrate envelope`)"
        )
