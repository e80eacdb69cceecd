"""RobotGuard: the one object that owns the robot and the only path to `send_action`.

Everything that moves the arm (policy, leader arm, gamepad, scripted expert, resets) calls the guard, and
the guard puts every action through the SafetyLayer. It keeps the robot safe without help from the
learner, the network or the console:

* lockstep mode (sim, demo, synchronous loops): `step(action, source)` filters and applies one action
  and returns what was applied; in the simulator each call advances one control period, so the demo runs
  much faster than real time.
* realtime mode (real arms): a control thread at `control_hz` applies the newest action given to
  `submit(action, source)`, and holds the present position as soon as that action is older than
  `watchdog_timeout_s`.

In both modes: `estop(reason)` stops motion at once (hold, then optional torque-off) and latches until
`clear_estop()`; `hold()` freezes the arm; `close()` (also via `with`, atexit, SIGINT/SIGTERM) holds and
then disconnects, which releases torque. The signal handlers (SIGINT/SIGTERM and the e-stop signal,
SIGUSR1 by default) are installed for real and simulated robots alike, from the main thread only. A
learner-link watchdog can be attached; the guard records its state for the console while the
EpisodeManager decides what a lost link means for episodes.

One cohesive job, kept in one file on purpose (it is over our ~450-line guide): the robot's only owner.
Its hold, e-stop latch, realtime control thread and lockstep path share one lock and one state; spread
over several files, the invariant "nothing reaches send_action but through the SafetyLayer" would be
harder to see and to review.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from hardware.safety.config import SafetyConfig
from hardware.safety.layer import SafetyLayer, SafetyResult
from hardware.safety.limits import calibration_limits
from hardware.safety.signals import SignalHooks
from hardware.safety.trajectory import duration_for, waypoints
from hardware.watchdog import ActionWatchdog, Clock, LinkWatchdog

logger = logging.getLogger(__name__)

SOURCES = ("policy", "human", "reset", "hold")
# Holds that keep the servos' present goal (the last safe command) rather than stopping at the measured pose.
_KEEP_GOAL_HOLDS = frozenset({"no_action", "watchdog", "rejected"})
_SIM_TYPES = {"sim_so101"}
_TYPE_ALIASES = {"so_follower": "so101_follower"}


class GuardError(RuntimeError):
    """The guard cannot do what was asked (closed, wrong mode, robot units it cannot check)."""


@dataclass
class StepResult:
    """What one control step did. `action` is the target the robot was told (or is holding)."""

    action: dict[str, float]
    events: list[str] = field(default_factory=list)
    source: str = "policy"
    rejected: bool = False
    held: bool = False  # the robot held position instead of following the request
    hold_reason: str | None = None

    @property
    def intervention(self) -> bool:
        return self.source == "human"


@dataclass
class GuardStatus:
    """Snapshot for the operator console (plain data; `as_dict()` for JSON)."""

    mode: str
    robot_type: str
    connected: bool
    present: dict[str, float]
    commanded: dict[str, float]
    limits: dict[str, tuple[float, float]]
    estopped: bool
    estop_reason: str | None
    holding: bool
    hold_reason: str | None
    torque_enabled: bool
    last_action_age_s: float | None
    last_source: str | None
    link_ok: bool
    link_reason: str
    loop_hz: float | None
    episode_safety: dict[str, Any]
    total_events: dict[str, int]
    end_effector: list[float] | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["limits"] = {k: list(v) for k, v in self.limits.items()}
        return d


def robot_type_of(robot: Any) -> str:
    """ "so101_follower", "koch_follower", "sim_so101", ... from the robot's config (or class name)."""
    t = getattr(getattr(robot, "config", None), "type", None)
    if not isinstance(t, str) or not t:
        t = getattr(robot, "name", type(robot).__name__)
    return _TYPE_ALIASES.get(t, t)


class RobotGuard:
    """Owns a LeRobot `Robot`; filters, applies, watches and finally releases it. See module docstring."""

    def __init__(
        self,
        robot: Any,
        config: SafetyConfig | None = None,
        *,
        robot_type: str | None = None,
        link: LinkWatchdog | None = None,
        clock: Clock = time.monotonic,
        install_signal_handlers: bool | None = None,
        layer: SafetyLayer | None = None,
    ) -> None:
        self.config = config or SafetyConfig()
        self.config.validate()
        self.robot = robot
        self.robot_type = robot_type or robot_type_of(robot)
        self.is_sim = self.robot_type in _SIM_TYPES or bool(getattr(robot, "is_simulated", False))
        mode = self.config.mode
        # a simulator on the wall clock (sim_so101 realtime=True) behaves like a real arm: realtime mode
        sim_lockstep = self.is_sim and not getattr(getattr(robot, "config", None), "realtime", False)
        self.mode = ("lockstep" if sim_lockstep else "realtime") if mode == "auto" else mode
        if getattr(getattr(robot, "config", None), "use_degrees", True) is False:
            raise GuardError(
                f"{self.robot_type} is configured with use_degrees=False; pirl's limits are in degrees: "
                "set --robot.use_degrees=true"
            )
        self.keys: tuple[str, ...] = tuple(k for k in robot.action_features if k.endswith(".pos"))
        if not self.keys or len(self.keys) != len(robot.action_features):
            raise GuardError(
                f"{self.robot_type} has action keys {list(robot.action_features)}; the guard supports "
                "joint-position robots whose actions are all '<motor>.pos'"
            )
        motors = [k.removesuffix(".pos") for k in self.keys]
        # a per-joint option naming a joint this robot lacks is a typo whose limit would never apply
        self.config.validate_joints(motors, self.robot_type)
        self.layer = layer or SafetyLayer.from_config(
            self.config, self.robot_type, motors, calibrated=calibration_limits(robot)
        )
        self.link = link
        self._clock = clock
        self._lock = threading.Lock()
        self.watchdog = ActionWatchdog(self.config.watchdog_timeout_s, clock)
        self._present: dict[str, float] | None = None
        self._present_fresh = False
        self._commanded: dict[str, float] = {}
        self._hold_target: dict[str, float] | None = None
        self._hold_reason: str | None = None
        self._estop_reason: str | None = None
        self._pending_estop: str | None = None
        self._torque_enabled = True
        self._latest: tuple[Any, str] | None = None
        self._last_source: str | None = None
        self.last_result: StepResult | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop_hz: float | None = None
        self._atexit = _weak_close(self)
        # Real and simulated arms alike: `kill -USR1` must latch the e-stop of a sim actor too, not kill it.
        want_handlers = (
            self.config.handle_signals if install_signal_handlers is None else install_signal_handlers
        )
        self._signals = SignalHooks(self.request_estop, self._stop.set, self.config.estop_signal)
        if want_handlers:
            self._signals.install()

    # ------------------------------------------------------------------ lifecycle

    def connect(self, calibrate: bool = False) -> RobotGuard:
        """Connect the robot if needed, read where it is and start the control thread (realtime)."""
        if self._closed:
            raise GuardError("guard is closed; create a new RobotGuard")
        if not self.robot.is_connected:
            self.robot.connect(calibrate=calibrate)
        # registered after the robot connected, so it runs before exit handlers the robot's own libraries
        # registered while connecting (atexit is last-in, first-out): e.g. EGL teardown for sim cameras
        atexit.unregister(self._atexit)
        atexit.register(self._atexit)
        with self._lock:
            present = self._read_present()
            self._hold_target = self.layer.hold_action(present)
            self.layer.reset_reference(present)
        if self.mode == "realtime" and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._control_loop, name="pirl-guard", daemon=True)
            self._thread.start()
        return self

    def __enter__(self) -> RobotGuard:
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop motion, then disconnect (LeRobot disables torque on disconnect). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        acquired = self._lock.acquire(timeout=2.0)
        try:
            if self.robot.is_connected:
                try:
                    if self._torque_enabled:
                        self._send(self.layer.hold_action(self._read_present()))
                except Exception:
                    logger.exception("could not hold %s before release", self.robot_type)
                try:
                    self.robot.disconnect()
                except Exception:
                    logger.exception(
                        "disconnect of %s failed; trying to disable torque directly", self.robot_type
                    )
                    self._disable_torque()
        finally:
            if acquired:
                self._lock.release()
            self._signals.uninstall()
            atexit.unregister(self._atexit)
        logger.info("guard closed; %s released", self.robot_type)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ reading

    def observation(self) -> dict[str, Any]:
        """The robot's full observation (joints + cameras); also refreshes the present position."""
        with self._lock:
            self._check_open()
            obs = self.robot.get_observation()
            self._present = {k: float(obs[k]) for k in self.keys}
            self._present_fresh = True
            return obs

    def present(self) -> dict[str, float]:
        """Present joint positions ("<motor>.pos"), read now."""
        with self._lock:
            self._check_open()
            return dict(self._read_present())

    def resync(self) -> dict[str, float]:
        """Re-read the arm after something outside the guard moved it (a simulator reset teleports the
        arm home): the velocity limit then measures from the new position, and any hold is re-latched."""
        with self._lock:
            self._check_open()
            present = self._read_present()
            self.layer.reset_reference(present)
            if self._hold_reason is not None:
                self._hold_target = self.layer.hold_action(present)
            return dict(present)

    @property
    def limits(self) -> dict[str, tuple[float, float]]:
        return dict(self.layer.limits)

    # ------------------------------------------------------------------ acting

    def step(self, action: Mapping[str, float] | None, source: str = "policy") -> StepResult:
        """Lockstep: filter and apply one action now. `None` holds. Returns what was applied."""
        if self.mode != "lockstep":
            raise GuardError("step() is the lockstep API; in realtime mode use submit()")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        with self._lock:
            self._check_open()
            self._service_pending_estop()
            self.watchdog.feed()
            return self._apply(action, source)

    def submit(self, action: Mapping[str, float], source: str = "policy") -> bool:
        """Realtime: hand the newest action to the control thread. False (ignored) while e-stopped."""
        if self.mode != "realtime":
            raise GuardError("submit() is the realtime API; in lockstep mode use step()")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        self._check_open()
        if self._estop_reason is not None:
            return False
        with self._lock:
            self._latest = (action, source)
            self.watchdog.feed()
        return True

    def hold(self, reason: str = "operator") -> StepResult:
        """Freeze at the present position (realtime: until the next fresh action)."""
        with self._lock:
            self._check_open()
            self._latest = None
            self.watchdog.clear()
            return self._hold_step(reason)

    def move_to(
        self,
        goal: Mapping[str, float],
        duration_s: float | None = None,
        profile: str = "min_jerk",
        speed_fraction: float = 0.5,
        settle_steps: int = 15,
        tolerance: float = 1.0,
        source: str = "reset",
        should_abort: Callable[[], bool] | None = None,
    ) -> tuple[bool, float]:
        """Drive smoothly to `goal` through the safety layer; returns (reached, max joint error).

        The duration defaults to the shortest one whose peak speed stays within `speed_fraction` of every
        joint's velocity limit, so a reset never needs clamping. After the path, up to `settle_steps` more
        periods let the servos converge to within `tolerance`.
        """
        self._check_open()
        start = self.present()
        goal = {k: float(goal[k]) for k in self.keys}
        if duration_s is None:
            duration_s = duration_for(start, goal, self.layer.max_velocity, profile, speed_fraction)
        n = max(1, round(duration_s * self.layer.control_hz))
        period = 1.0 / self.layer.control_hz
        path = waypoints(start, goal, n, profile) + [goal] * settle_steps
        err = float("inf")
        for i, target in enumerate(path):
            if self.estopped or (should_abort is not None and should_abort()):
                return False, err
            if self.mode == "lockstep":
                self.step(target, source=source)
            else:
                self.submit(target, source=source)
                time.sleep(period)
            if i >= n - 1:
                err = max(abs(v - goal[k]) for k, v in self.present().items())
                if err <= tolerance:
                    return True, err
        return err <= tolerance, err

    # ------------------------------------------------------------------ e-stop

    def estop(self, reason: str = "operator") -> None:
        """Stop now and latch: hold the present position, then (optionally) switch torque off."""
        with self._lock:
            self._estop_locked(reason)

    def clear_estop(self) -> None:
        """Operator release: torque back on without a jump (goal := present first), then hold."""
        with self._lock:
            self._check_open()
            if self._estop_reason is None:
                return
            if not self._torque_enabled:
                present = self._read_present()
                self._send(
                    self.layer.hold_action(present)
                )  # goal register = where the arm is now, before torque returns
                self._enable_torque()
            self._estop_reason = None
            self._pending_estop = None
            self._latest = None
            self.watchdog.clear()
            self._hold_reason = None  # the arm may have been moved while limp: hold where it is *now*
            self._hold_step("estop_cleared")
            logger.warning("e-stop cleared by operator")

    @property
    def estopped(self) -> bool:
        return self._estop_reason is not None

    @property
    def estop_reason(self) -> str | None:
        return self._estop_reason

    @property
    def holding(self) -> bool:
        return self._hold_reason is not None

    # ------------------------------------------------------------------ learner link

    def link_lost(self, reason: str = "learner link lost") -> None:
        """Hook for the transport; forwards to the attached LinkWatchdog (creating one if needed)."""
        if self.link is None:
            self.link = LinkWatchdog(self.config.link_timeout_s, self._clock)
        self.link.lost(reason)
        self.layer.report.count("link_lost")

    def link_restored(self) -> None:
        if self.link is None:
            self.link = LinkWatchdog(self.config.link_timeout_s, self._clock)
        self.link.restored()

    @property
    def link_ok(self) -> bool:
        return True if self.link is None else self.link.ok

    # ------------------------------------------------------------------ status

    def status(self) -> GuardStatus:
        """Snapshot for the console. Does not touch the robot (uses the last read)."""
        present = dict(self._present or {})
        ee = None
        if present and self.layer.workspace is not None:
            ee = [float(v) for v in self.layer.end_effector(present)]
        return GuardStatus(
            mode=self.mode,
            robot_type=self.robot_type,
            connected=bool(self.robot.is_connected) and not self._closed,
            present=present,
            commanded=dict(self._commanded),
            limits=self.limits,
            estopped=self.estopped,
            estop_reason=self._estop_reason,
            holding=self.holding,
            hold_reason=self._hold_reason,
            torque_enabled=self._torque_enabled,
            last_action_age_s=self.watchdog.age(),
            last_source=self._last_source,
            link_ok=self.link_ok,
            link_reason="" if self.link is None else self.link.reason,
            loop_hz=self._loop_hz,
            episode_safety=self.layer.report.report(),
            total_events=dict(self.layer.report.total_events),
            end_effector=ee,
        )

    # ------------------------------------------------------------------ internals (lock held)

    def _check_open(self) -> None:
        if self._closed:
            raise GuardError("guard is closed; the robot has been released")

    def _read_present(self) -> dict[str, float]:
        """Joint positions only; the cheapest read the robot offers (bus read for LeRobot arms)."""
        reader = getattr(self.robot, "read_joint_positions", None)
        bus = getattr(self.robot, "bus", None)
        if callable(reader):
            raw = reader()
            present = {k: float(raw[k]) for k in self.keys}
        elif bus is not None and hasattr(bus, "sync_read"):
            retries = getattr(getattr(self.robot, "config", None), "num_read_retries", 0)
            raw = bus.sync_read("Present_Position", num_retry=retries)
            present = {f"{m}.pos": float(v) for m, v in raw.items() if f"{m}.pos" in self.keys}
        else:
            obs = self.robot.get_observation()
            present = {k: float(obs[k]) for k in self.keys}
        self._present = present
        self._present_fresh = True
        return present

    def _present_now(self) -> dict[str, float]:
        if self._present_fresh and self._present is not None:
            return self._present
        return self._read_present()

    def _send(self, target: dict[str, float]) -> dict[str, float]:
        sent = self.robot.send_action(target)
        self._commanded = {k: float(v) for k, v in (sent or target).items()}
        self._present_fresh = False
        return self._commanded

    def _apply(self, action: Mapping[str, float] | None, source: str) -> StepResult:
        if self._estop_reason is not None:
            return self._hold_step("estop", source=source)
        if action is None:
            return self._hold_step("no_action", source=source)
        present = self._present_now()
        previous = self.layer.last_command  # filter() overwrites it with the hold for a rejected action
        r: SafetyResult = self.layer.filter(action, present)
        if r.rejected:
            self._enter_hold(present, "rejected", previous)
            self._send(dict(self._hold_target))
            self.layer.reset_reference(self._hold_target)
            res = StepResult(dict(self._hold_target), r.events, source, True, True, "rejected")
        else:
            self._hold_reason = None
            self._hold_target = None
            self._send(r.action)
            res = StepResult(dict(r.action), r.events, source)
        self._last_source = source
        self.last_result = res
        return res

    def _enter_hold(
        self, present: dict[str, float], reason: str, previous: dict[str, float] | None = None
    ) -> None:
        """Latch the hold target at the first hold (so a sagging arm is held where it stopped)."""
        if self._hold_target is None or self._hold_reason is None:
            if previous is None and reason in _KEEP_GOAL_HOLDS:
                previous = self.layer.last_command
            self._hold_target = self._hold_target_for(present, reason, previous)
        if reason != self._hold_reason:
            self.layer.report.count(f"hold:{reason}")
        self._hold_reason = reason

    def _hold_target_for(
        self, present: dict[str, float], reason: str, previous: dict[str, float] | None
    ) -> dict[str, float]:
        """Where a hold for `reason` keeps the arm.

        A stalled or rejected source (no action, stale action, rejected action) keeps the goal the servos
        already have, the last command the safety layer let through, as a real servo does when no new
        goal arrives. Holding the *measured* pose instead moves the goal back by the tracking lag, and the
        position loop then sags a further static error below it: on the simulated arm stretched out
        forward that carried the gripper 2 cm below the workspace box. The previous command qualifies
        only when it is within the limits and within max_step of the arm. E-stop, operator holds and
        link loss stop at the measured pose (hold_action) at once.
        """
        if reason in _KEEP_GOAL_HOLDS and previous is not None:
            goal = {f"{m}.pos": float(previous[m]) for m in self.layer.motors}
            ok = all(
                self.layer.limits[m][0] <= goal[k] <= self.layer.limits[m][1]
                and abs(goal[k] - present[k]) <= self.layer.max_step[m]
                for m, k in zip(self.layer.motors, self.layer.keys, strict=True)
            )
            if ok:
                return goal
        return self.layer.hold_action(present)

    def _hold_step(self, reason: str, source: str = "hold") -> StepResult:
        present = self._present_now()
        self._enter_hold(present, reason)
        if any(
            abs(self._hold_target[k] - present[k]) > self.layer.max_step[m]
            for m, k in zip(self.layer.motors, self.layer.keys, strict=True)
        ):
            # the arm is far from the latched target (moved by hand, dropped): never jump back to it
            self._hold_target = self.layer.hold_action(present)
        if self._torque_enabled:
            self._send(dict(self._hold_target))
        self.layer.reset_reference(self._hold_target)
        res = StepResult(dict(self._hold_target), [f"hold:{reason}"], source, False, True, reason)
        self.last_result = res
        return res

    def _estop_locked(self, reason: str) -> None:
        if self._closed or not self.robot.is_connected:
            self._estop_reason = self._estop_reason or reason
            return
        first = self._estop_reason is None
        self._estop_reason = self._estop_reason or reason
        self._latest = None
        self.watchdog.clear()
        if first:
            logger.error("E-STOP: %s", reason)
            self.layer.report.count("estop")
            self._hold_reason = None  # latch a fresh hold target at the present position
            present = self._read_present()
            self._enter_hold(present, "estop")
            self._send(dict(self._hold_target))
            self.layer.reset_reference(self._hold_target)
            if self.config.torque_off_on_estop:
                self._disable_torque()

    def _service_pending_estop(self) -> None:
        if self._pending_estop is not None and self._estop_reason is None:
            reason, self._pending_estop = self._pending_estop, None
            self._estop_locked(reason)

    def _disable_torque(self) -> None:
        target = getattr(self.robot, "bus", None) or self.robot
        fn = getattr(target, "disable_torque", None)
        if fn is None:
            logger.warning("%s cannot switch torque off; holding position instead", self.robot_type)
            return
        fn()
        self._torque_enabled = False

    def _enable_torque(self) -> None:
        target = getattr(self.robot, "bus", None) or self.robot
        fn = getattr(target, "enable_torque", None)
        if fn is not None:
            fn()
        self._torque_enabled = True

    # ------------------------------------------------------------------ realtime control thread

    def _control_loop(self) -> None:
        period = 1.0 / self.layer.control_hz
        next_t = time.monotonic()
        last_t: float | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                self._tick()
                failures = 0
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % round(self.layer.control_hz * 10) == 0:  # not 30 tracebacks/s
                    logger.exception("guard control tick failed (%d in a row); e-stop latched", failures)
                try:
                    with self._lock:
                        self._estop_locked(f"control loop error: {exc}")
                except Exception:
                    if failures == 1:
                        logger.exception("could not hold after a control loop error")
            now = time.monotonic()
            if last_t is not None:
                hz = 1.0 / max(now - last_t, 1e-6)
                self._loop_hz = hz if self._loop_hz is None else 0.9 * self._loop_hz + 0.1 * hz
            last_t = now
            next_t += period
            delay = next_t - time.monotonic()
            if delay < -period:  # fell behind (e.g. a slow bus read): restart the schedule, do not burst
                next_t = time.monotonic()
            elif delay > 0:
                self._stop.wait(delay)

    def _tick(self) -> None:
        with self._lock:
            if self._closed or not self.robot.is_connected:
                return
            self._service_pending_estop()
            self._read_present()
            if self._estop_reason is not None:
                self._hold_step("estop")
                return
            latest = self._latest
            if latest is not None and self.watchdog.expired():
                logger.warning("no fresh action for %.3f s: holding", self.watchdog.age() or 0.0)
                self._latest = None
                self._hold_step("watchdog")
                return
            if latest is None:
                self._hold_step(self._hold_reason or "idle")
                return
            if self._apply(*latest).rejected:
                self._latest = None  # hold (counted once) until a new action arrives

    # ------------------------------------------------------------------ signals

    def request_estop(self, reason: str) -> None:
        """Async-safe e-stop (signal handlers): act now if the bus is free, else on the next step/tick."""
        self._pending_estop = reason
        if self._lock.acquire(blocking=False):
            try:
                self._service_pending_estop()
            finally:
                self._lock.release()


def _weak_close(guard: RobotGuard) -> Callable[[], None]:
    ref = weakref.ref(guard)

    def close() -> None:
        g = ref()
        if g is not None:
            g.close()

    return close
