"""The actor's side of the operator console: its commands reach the robot, its status shows the run.

The control channel (app/control/) carries JSON lines; this module turns the console's commands into
actions on the EpisodeManager, Takeover and RobotGuard, and the actor's state into `ActorStatus` records
(with the joints view and log tail of app/actor/status.py). Commands are handled between chunks, where the
actor serves its console; an e-stop latches at once from the control thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from app.actor.status import JointView, LogBuffer
from app.control.protocol import (
    ActorStatus,
    CameraThumbnail,
    Command,
    ControlConfig,
    EpisodeStatus,
    LearnerLinkStatus,
    LoopStatus,
    RecordStatus,
)
from app.control.protocol import EpisodeRecord as CurvePoint
from app.control.server import ControlServer
from hardware.episodes import EpisodeState

if TYPE_CHECKING:
    from app.actor.loop import Actor

log = logging.getLogger("pirl.actor")

_LINK_FIELDS = {f.name for f in dataclasses.fields(LearnerLinkStatus)}

# Loggers whose records reach the console's log pane (the actor's own, and the robot side's safety,
# takeover and episode messages); at the level the process logs at (INFO under `pirl actor`).
CONSOLE_LOGGERS = ("pirl", "hardware")


class ActorConsole:
    """The control server of one actor, its command handling and its status snapshots."""

    def __init__(self, actor: Actor, cfg: ControlConfig) -> None:
        self.actor = actor
        self.server = ControlServer(cfg)
        self.joint_view = JointView()
        self.log_buffer = LogBuffer()
        # The progress line already says how each episode ended: the episode manager's own INFO start/end
        # lines would push everything else out of the pane. Its warnings still come.
        self.log_buffer.addFilter(lambda r: r.name != "hardware.episodes" or r.levelno >= logging.WARNING)

    def tee(self, progress: Callable[[str], None], prefix: str) -> Callable[[str], None]:
        """`progress` that also puts each line in the log pane (without `prefix`: the pane is narrow)."""

        def progress_and_console(line: str) -> None:
            progress(line)
            self.log_buffer.add("INFO", line.removeprefix(prefix))

        return progress_and_console

    def start(self) -> None:
        guard = self.actor.guard
        self.server.on_estop = lambda: guard.estop("console")
        self.server.start()
        for name in CONSOLE_LOGGERS:
            logging.getLogger(name).addHandler(self.log_buffer)

    def close(self) -> None:
        self.server.close()
        for name in CONSOLE_LOGGERS:
            logging.getLogger(name).removeHandler(self.log_buffer)

    def serve(self) -> None:
        """Handle the commands that came in; publish a status when one is due (never blocks)."""
        self.handle_commands()
        if self.server.status_due():
            self.server.publish(self.status())

    def while_blocked(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` (a drive home: seconds on a real arm) while a side thread keeps the status coming, so
        the operator watches the arm move instead of a silent screen. Commands still wait for the loop
        (their acks come after); e-stop latches at once from the control thread."""
        done = threading.Event()

        def publish() -> None:
            while not done.wait(1.0 / self.server.cfg.rate_hz):
                if self.server.status_due():
                    self.server.publish(self.status())

        watcher = threading.Thread(target=publish, name="pirl-reset-status", daemon=True)
        watcher.start()
        try:
            return fn()
        finally:
            done.set()
            watcher.join()

    def handle_commands(self) -> None:
        a = self.actor
        episodes, takeover, guard = a.episodes, a.takeover, a.guard
        for cmd in self.server.poll_commands():
            if cmd is Command.START:
                a.paused = False
                episodes.confirm()
            elif cmd is Command.PAUSE:
                a.paused = True
                episodes.stop("operator")
            elif cmd is Command.TAKEOVER_ON:
                if takeover.human is None:
                    log.warning("takeover: no teleoperator configured, the policy keeps driving")
                elif episodes.state is EpisodeState.RUNNING:
                    takeover.request(True)
                else:  # between episodes: the next one starts with the human
                    takeover.request_next_episode()
            elif cmd is Command.TAKEOVER_OFF:
                takeover.request(False)
            elif cmd is Command.SUCCESS:
                episodes.mark_success()
            elif cmd is Command.FAILURE:
                episodes.mark_failure()
            elif cmd is Command.RERECORD:
                episodes.request_rerecord()
            elif cmd is Command.RESET:
                episodes.stop("operator")
            elif cmd is Command.ESTOP:
                guard.estop("console")
            elif cmd is Command.CLEAR_ESTOP:
                guard.clear_estop()
            elif cmd is Command.QUIT:
                a.shutdown.set()

    def link_status(self, cs: Any, loaded_at: float | None) -> LearnerLinkStatus:
        """The learner-link section. `connected` means traffic arrived within the link timeout (an open
        but silent connection is not connected). `error` (when the protocol has it) says why the link is
        down, or why the newest weights push was refused (kept until good weights are loaded)."""
        a = self.actor
        linked = a.link.ok
        error = ""
        if cs.weights_error:
            error = f"weights refused: {cs.weights_error}"
        elif not linked:
            error = a.link.reason or cs.last_error
        fields: dict[str, Any] = {
            "connected": cs.connected and linked,
            "address": a.cfg.transport.address,
            "policy_version": a.weights.version,
            "seconds_since_weights": None if loaded_at is None else time.monotonic() - loaded_at,
            "queue_depth": cs.pending,
            "rtt_ms": cs.rtt_ms,
            "error": error,
            "weights_refused": cs.weights_refused,
        }
        return LearnerLinkStatus(**{k: v for k, v in fields.items() if k in _LINK_FIELDS})

    def record_status(self) -> RecordStatus:
        """The recording section. The folder stays named after an error stopped the recording (the
        episodes saved before it are kept there); "" only when the actor was not asked to record."""
        runner = self.actor.runner
        rec = runner.recorder
        if rec is not None:
            root = str(rec.root)
        else:
            rc = self.actor.record_config
            root = str(rc.root) if runner.record_error and rc is not None and rc.root else ""
        return RecordStatus(root=root, episodes=int(runner.episodes_recorded), error=runner.record_error)

    def status(self) -> ActorStatus:
        """One snapshot for the console. While an episode runs it shows that episode; between episodes
        (resetting, waiting for the operator) the one that just ended, with its outcome. Episodes are
        numbered from 1, as in the progress lines."""
        a = self.actor
        g = a.guard.status()
        cs = a.client.status
        eps = a.episodes
        hz = a.guard.layer.control_hz
        running = eps.state is EpisodeState.RUNNING
        last = eps.records[-1] if eps.records else None
        if running or last is None:
            tk = a.takeover.report()
            number, reward, outcome, interventions = eps.index + 1, eps.reward_sum, None, tk["interventions"]
            time_left = max(0.0, (eps.max_steps - eps.steps) / hz) if running else None
        else:
            number, reward, interventions, time_left = last.index + 1, last.reward, last.interventions, None
            outcome = {True: "success", False: "failure"}.get(last.success, last.termination)
        history = [
            CurvePoint(
                number=r.index + 1,
                success=r.success,
                episode_return=float(r.reward),
                interventions=int(r.interventions),
                intervention_rate=float(r.intervention_rate),
                steps=int(r.steps),
            )
            for r in eps.records[-200:]
            if not r.rerecord
        ]
        pacer = a.executor.pacer
        realtime = g.mode == "realtime"
        rate = (g.loop_hz or 0.0) if realtime else (1.0 / pacer.step_dt if pacer.step_dt else 0.0)
        cameras = {}
        for name in getattr(a.robot, "cameras", None) or {}:
            frame = (a.runner.last_obs or {}).get(name)
            if isinstance(frame, np.ndarray) and frame.ndim == 3:
                cameras[name] = CameraThumbnail.from_array(frame)
        loaded_at = a.weights.loaded_at
        return ActorStatus(
            robot=g.robot_type,
            estop=g.estopped,
            holding=g.holding,
            hold_reason=g.hold_reason or "",
            joints=self.joint_view(g.present, g.commanded, g.limits, g.episode_safety.get("events", {})),
            safety_events=dict(g.episode_safety.get("by_kind", {})),
            episode=EpisodeStatus(
                number=number,
                state="paused" if a.paused else eps.state.value,
                time_left_s=time_left,
                length_s=a.cfg.episode.time_limit_s,
                reward=float(reward),
                outcome=outcome,
                # a human drives, or will drive the next episode (takeover asked between episodes)
                intervention=(a.takeover.active and running) or a.takeover.pending,
                interventions=int(interventions),
                takeover_source=a.human.label,
            ),
            learner=self.link_status(cs, loaded_at),
            # Realtime (real arm, wall-clock sim): the guard's control thread rate against its target.
            # Lockstep sim: no wall-clock target (it steps as fast as it can); the actor's own step rate.
            loop=LoopStatus(
                hz=rate,
                target_hz=hz if realtime else 0.0,
                inference_ms=a.runner.infer_ms,
                dropped_steps=pacer.dropped,
                steps=a.runner.env_steps,
                robot_minutes=a.robot_minutes,
                human_minutes=a.human_minutes,
            ),
            record=self.record_status(),
            history=history,
            log=self.log_buffer.lines(),
            cameras=cameras,
        )
