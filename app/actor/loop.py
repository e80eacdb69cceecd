"""The PI-RL actor: episodes on the robot (sim or real) -> chunk transitions -> the learner.

One outer step = one action chunk: read the observation, sample a chunk with the current weights, execute
its first `exec_horizon` actions one control step at a time through Takeover (policy or human) ->
RobotGuard (safety) -> EpisodeManager (reward, success, limits), and record one row. The parts, one job
each:

- `app.actor.weights.WeightSync`: the learner's weights, swapped in between chunks only;
- `app.actor.rollouts.EpisodeRunner`: one episode through the executor (app/episode/) -> ChunkRecords ->
  one rollout and one stats message;
- `app.actor.teleop.HumanInput`: who drives during a takeover (teleoperator or sim expert);
- `app.actor.console.ActorConsole`: the operator console's commands and status (when one may listen);
- `app.episode.recorder.EpisodeRecorder` (`actor.record.root`): every episode as it ran, takeover steps
  flagged `intervention`, saved to a LeRobot dataset as each episode ends (cameras as videos).

This module builds them and runs the loop: wait for the first weights, then reset -> episode -> reset.
The actor keeps the robot safe without the learner: the client feeds the link watchdog with the traffic
it actually receives (heartbeats every 0.5 s), so a broken stream or `safety.link_timeout_s` of silence
counts as a lost link; the EpisodeManager then ends the episode and holds, and neither the drive home nor
the next episode starts until the link is back.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from typing import Any

from app.actor.client import LearnerClient
from app.actor.rollouts import EpisodeRunner
from app.actor.teleop import HumanInput
from app.actor.weights import ActorError, WeightSync
from app.episode import Executor
from app.episode.observation import resolve_state_keys
from app.episode.recorder import EpisodeRecorder
from app.rl.algorithm import pirl_model_of
from app.run.config import PIRLRunConfig
from hardware.episodes import EpisodeManager, EpisodeState
from hardware.factory import make_robot
from hardware.guard import RobotGuard
from hardware.takeover import Takeover
from hardware.watchdog import LinkWatchdog

__all__ = ["Actor", "ActorError"]


class Actor:
    def __init__(
        self,
        cfg: PIRLRunConfig,
        progress: Callable[[str], None] | None = print,
        shutdown: threading.Event | None = None,
    ):
        cfg.validate("actor")
        self.cfg = cfg
        self.progress = progress or (lambda _line: None)
        self.shutdown = shutdown or threading.Event()
        self.paused = False
        self._was_linked = False
        self._refusals_seen = 0

        # The native policy samples on the CPU; a VLA names its `actor_device` (it needs an accelerator).
        self.policy = cfg.make_policy()
        self.policy.to(getattr(self.policy.config, "actor_device", "cpu"))
        self.model = pirl_model_of(self.policy)
        self.exec_h = self.model.exec_horizon

        self.link = LinkWatchdog(timeout_s=cfg.safety.link_timeout_s, start_ok=False)
        self.robot = make_robot(cfg.robot)
        self.guard = RobotGuard(self.robot, cfg.safety, link=self.link)
        self.is_sim = self.guard.is_sim
        self.human = HumanInput(cfg, self.robot, self.is_sim)  # connected in run(), released in _close()
        self.takeover = Takeover(human=self.human.source)
        if self.human.action_map is not None:  # an end-effector target starts from where the gripper is
            self.takeover.on_takeover(self.human.action_map.reset)
        self.episodes = EpisodeManager(
            self.guard,
            cfg.episode,
            takeover=self.takeover,
            task_success=getattr(self.robot, "task_success", None) if self.is_sim else None,
            env_reset=self._env_reset if self.is_sim else None,
            link=self.link,
        )
        self.client = LearnerClient(
            cfg.transport, cfg.actor.actor_id, max_outbox=cfg.actor.max_outbox, link=self.link
        )
        self.weights = WeightSync(self.model, self.client)
        self.client.check = self.weights.check  # pushes are checked in the receive thread, off this loop
        self.executor = Executor(
            self.guard,
            self.episodes,
            self.takeover,
            exec_horizon=self.exec_h,
            chunk_size=self.model.policy.chunk_size,
        )
        self.runner = EpisodeRunner(
            cfg,
            self.policy,
            self.executor,
            self.weights,
            self.client,
            session=uuid.uuid4().hex[:8],
            say=self._say,
            service=self._service,
            shutdown=self.shutdown,
        )
        self.console = None
        self.control = None  # the console's control server, when one may listen
        if cfg.actor.control is not None:
            from app.actor.console import ActorConsole

            self.console = ActorConsole(self, cfg.actor.control)
            self.control = self.console.server
            self.runner.while_blocked = self.console.while_blocked  # status keeps coming while it saves
            self.progress = self.console.tee(self.progress, f"actor {cfg.actor.actor_id}: ")

    # What other parts read off the actor (the console's tests, benchmarks, recipes).
    @property
    def version(self) -> int | None:
        return self.weights.version

    @property
    def teleop(self) -> Any:
        return self.human.teleop

    @property
    def episodes_done(self) -> int:
        return self.runner.episodes_done

    @property
    def env_steps(self) -> int:
        return self.runner.env_steps

    @property
    def robot_minutes(self) -> float:
        """Robot time spent on training episodes and the drives home: (env + reset steps) / rate / 60."""
        steps = self.runner.env_steps + self.episodes.reset_steps_total
        return steps / self.guard.layer.control_hz / 60.0

    @property
    def human_minutes(self) -> float:
        """The part of the episodes' robot time a human drove: human steps / rate / 60."""
        return self.runner.human_steps / self.guard.layer.control_hz / 60.0

    def _say(self, line: str) -> None:
        self.progress(f"actor {self.cfg.actor.actor_id}: {line}")

    def _env_reset(self, seed: int | None) -> None:
        group = self.cfg.actor.group_size
        if group > 1:  # GRPO: G consecutive episodes start from the same state
            seed = (self.cfg.episode.seed or 0) + self.episodes_done // group
        self.robot.reset(seed=seed)
        self.human.reset_scene()

    # --------------------------------------------------------------------------------------- run

    def run(self) -> int:
        """Run episodes until done or stopped. Returns a process exit code."""
        self._open_recording()  # first: a dataset folder it may not write is refused before anything moves
        try:
            self.human.connect(self._say)  # a leader that does not open fails before the follower's torque
            try:
                self.guard.connect()
            except BaseException:
                self.human.disconnect()
                raise
        except BaseException:
            self._close_recording()
            raise
        self.runner.state_keys = resolve_state_keys(self.robot, self.cfg.actor.state_keys)
        # A VLA names the cameras it reads; the native policy's come from actor.image_keys.
        self.runner.image_keys = list(self.cfg.actor.image_keys) or list(
            getattr(self.policy, "image_keys", [])
        )
        self.client.start()
        if self.console is not None:
            self.console.start()
        try:
            if not self.weights.wait_first(
                self.shutdown,
                self._service,
                self.cfg.actor.wait_for_weights_s,
                self._say,
                self.cfg.transport.address,
            ):
                return 3
            target = self.cfg.actor.episodes
            while not self.shutdown.is_set() and (target == 0 or self.episodes_done < target):
                self._service()
                if not self.paused and self._reset_if_due():
                    # Home again: serve the console and the link once more, then start at once. An idle
                    # wait here cost 50 ms per episode, a third of the sim demo's actor time.
                    continue
                if self.paused or not self.episodes.can_start:
                    self.shutdown.wait(0.05)
                    continue
                self.runner.run_episode()
            return 0
        finally:
            self._close()

    def _close(self) -> None:
        try:
            self.client.close(flush_timeout_s=5.0)
            if self.console is not None:
                self.console.close()
            try:
                self.guard.close()  # the follower first: it stops moving before its leader is let go
            finally:
                self.human.disconnect()
        finally:
            self._close_recording()  # the episodes saved so far were final already; this closes the files

    @property
    def record_config(self) -> Any:
        """`actor.record` (None, or its root None: no recording)."""
        return getattr(self.cfg.actor, "record", None)

    def _open_recording(self) -> None:
        """Start the dataset recorder when `actor.record.root` is set: the robot's joints and task keys as
        `observation.state` (the policy's state keys), every camera of the robot (`record.images`)."""
        rc = self.record_config
        if rc is None or not rc.root:
            return
        task = rc.task or getattr(self.cfg.robot, "task", "") or ""
        cfg = dataclasses.replace(rc, task=task if task and task != "none" else "pirl actor")
        features = self.robot.observation_features
        cameras = {k: tuple(v) for k, v in features.items() if isinstance(v, tuple) and len(v) == 3}
        state_keys = resolve_state_keys(self.robot, self.cfg.actor.state_keys)
        rec = EpisodeRecorder(
            cfg,
            round(self.cfg.safety.control_hz),
            state_keys,
            list(self.guard.keys),
            cameras if rc.images else {},
            self.cfg.robot.type,
            option="--actor.record",
        )
        self.runner.recorder = rec
        there = rec.dataset.num_episodes
        self._say(
            f"recording every episode to {rec.root}"
            + (f" (appending to its {there} episodes)" if there else "")
            + (
                f", cameras {', '.join(rec.image_keys)} as {'video' if rec.encoder else 'PNG'}"
                if rec.image_keys
                else ""
            )
        )

    def _close_recording(self) -> None:
        rec, self.runner.recorder = self.runner.recorder, None
        if rec is None:
            return
        rec.close()
        self._say(f"recorded {rec.episodes} episodes ({rec.frames} frames) to {rec.root}")

    def _reset_if_due(self) -> bool:
        """Drive home after an episode; True when that reset finished (False: none due, e-stop latched,
        learner link down, or home not reached, which the next pass retries after the idle wait). While
        the link is down the arm holds where the episode left it: the drive home waits for the link."""
        if self.episodes.state is not EpisodeState.RESETTING or self.guard.estopped:
            return False
        if not self.episodes.link_ok:
            return False
        if self.console is None:
            self.episodes.reset()
        else:  # the console keeps getting status while the arm drives home
            self.console.while_blocked(self.episodes.reset)
        return self.episodes.state is not EpisodeState.RESETTING

    def _service(self) -> None:
        """Say when the link goes down or comes back, and when a weights push was refused; serve the
        console (never blocks). The link watchdog is fed by the client's threads, from the traffic they
        receive, not from here: it must see a silent link even while this loop is busy."""
        linked = self.link.poll()
        if linked != self._was_linked and self.version is not None:
            if linked:
                self._say(f"learner link back (reconnects {self.client.status.reconnects})")
            else:
                self._say(
                    f"learner link down ({self.link.reason}); holding, no drive home and no new episode "
                    "until it is back"
                )
        self._was_linked = linked
        status = self.client.status
        if status.weights_refused != self._refusals_seen:
            self._refusals_seen = status.weights_refused
            if status.weights_error:
                kept = "no weights yet" if self.version is None else f"keeping v{self.version}"
                self._say(f"refused a weights push ({kept}): {status.weights_error}")
        if self.console is not None:
            self.console.serve()
