"""The PI-RL actor: episodes on the robot (sim or real) -> chunk transitions -> the learner.

One outer step = one action chunk: read the observation, sample a chunk with the current weights (the
stochastic train-time chain, with its behaviour log-prob and value), execute its first `exec_horizon`
actions one control step at a time through Takeover (policy or human) -> RobotGuard (safety) ->
EpisodeManager (reward, success, limits), and record one RolloutBatch row. A finished episode is sent as
one rollout (SendTransitions) plus one JSON stats message (SendInteractions).

Weights are only swapped between chunks (the safe point): a chunk is always executed by the weights that
sampled it, and every row says which version that was. The actor never acts before it holds the
learner's weights (so a resumed learner's weights are the first ones used, LeRobot PR #4560), refuses
weights whose frozen part differs from its own, and keeps the robot safe without the learner: when the
link drops, the EpisodeManager ends the episode and holds, and the next episode waits for the link.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from app.actor.client import LearnerClient
from app.actor.observation import action_dict, action_row, resolve_state_keys, to_policy_observation
from app.rl.algorithm import pirl_model_of
from app.rl.batch import RolloutBatch
from app.rl.digests import frozen_digest, weights_digest
from app.rl.sampling import sample
from app.run.config import LEADER_ARMS, PIRLRunConfig
from app.transport.codec import Parameters, Rollout
from hardware.episodes import EpisodeManager, EpisodeRecord, EpisodeState
from hardware.factory import make_robot
from hardware.guard import RobotGuard
from hardware.takeover import ExpertSource, Takeover
from hardware.watchdog import LinkWatchdog

log = logging.getLogger("pirl.actor")

# Loggers whose records reach the console's log pane (the actor's own, and the robot side's safety,
# takeover and episode messages); at the level the process logs at (INFO under `pirl actor`).
_CONSOLE_LOGGERS = ("pirl", "hardware")


class ActorError(RuntimeError):
    """The actor cannot go on (message says why and what to change)."""


_TELEOP_LABELS = {
    **dict.fromkeys(LEADER_ARMS, "leader arm"),
    "gamepad": "gamepad",
    "keyboard_ee": "keyboard",
    "sim_expert": "sim expert",
}


def _leader_in_degrees(teleop: Any) -> None:
    """LeRobot's Koch leader always reports -100..100 range units; a follower with use_degrees=true (what
    the safety layer needs) takes degrees. Read the leader's body joints in degrees too (about the middle of
    its calibrated range, as the follower does), so that one joint angle means the same on both arms."""
    from lerobot.motors import MotorNormMode

    for motor in teleop.bus.motors.values():
        if motor.norm_mode is MotorNormMode.RANGE_M100_100:
            motor.norm_mode = MotorNormMode.DEGREES


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
        self.session = uuid.uuid4().hex[:8]
        self.rollout_actor = f"{cfg.actor.actor_id}-{self.session}"  # identity for learner-side de-dup
        self._episode_base = (zlib.crc32(self.rollout_actor.encode()) & 0x7FFFFF) << 32
        self.version: int | None = None
        self.paused = False
        self.episodes_done = 0
        self.env_steps = 0
        self.t_start = time.monotonic()
        self.first_chunk_logged = False
        self._was_connected = False
        self._gen = torch.Generator()
        self._gen.manual_seed(
            cfg.actor.sample_seed if cfg.actor.sample_seed is not None else random.getrandbits(62)
        )
        self._rng = random.Random(cfg.actor.sample_seed)

        # The native policy samples on the CPU; a VLA names its `actor_device` (it needs an accelerator).
        self.policy = cfg.make_policy()
        self.policy.to(getattr(self.policy.config, "actor_device", "cpu"))
        self.model = pirl_model_of(self.policy)
        self.my_digest = frozen_digest(self.model)
        self.exec_h = self.model.exec_horizon

        self.link = LinkWatchdog(timeout_s=cfg.safety.link_timeout_s, start_ok=False)
        self.robot = make_robot(cfg.robot)
        self.guard = RobotGuard(self.robot, cfg.safety, link=self.link)
        self.is_sim = self.guard.is_sim
        self.teleop = None  # the configured LeRobot teleoperator (connected in run(), released in _close())
        self._teleop_map = None
        self._takeover_label = ""
        self.takeover = Takeover(human=self._human_source())
        if self._teleop_map is not None:  # an end-effector target starts from where the gripper is
            self.takeover.on_takeover(self._teleop_map.reset)
        self.episodes = EpisodeManager(
            self.guard,
            cfg.episode,
            takeover=self.takeover,
            task_success=getattr(self.robot, "task_success", None) if self.is_sim else None,
            env_reset=self._env_reset if self.is_sim else None,
            link=self.link,
        )
        self.client = LearnerClient(cfg.transport, cfg.actor.actor_id, max_outbox=cfg.actor.max_outbox)
        self.control = None
        # What the console shows beyond the guard's numbers (only kept up when a console may listen).
        self._weights_at: float | None = None  # monotonic time the current weights were loaded
        self._infer_ms: float | None = None  # recent mean of one chunk's sampling time
        self._dropped = 0  # wall-clock control steps that started a period or more late
        self._next_step_t: float | None = None  # realtime: deadline of the next control step
        self._step_dt: float | None = None  # mean seconds per actor step (its inverse is the lockstep rate)
        self._rate_t: float | None = None
        self._takeover_next = False  # the console asked for a takeover while no episode ran
        self._last_obs: dict[str, Any] | None = None
        if cfg.actor.control is not None:
            from app.actor.status import JointView, LogBuffer
            from app.control.server import ControlServer

            self.control = ControlServer(cfg.actor.control)
            self._joint_view = JointView()
            self._log_buffer = LogBuffer()
            # The progress line already says how each episode ended: the episode manager's own INFO
            # start/end lines would push everything else out of the pane. Its warnings still come.
            self._log_buffer.addFilter(
                lambda r: r.name != "hardware.episodes" or r.levelno >= logging.WARNING
            )
            progress = self.progress

            prefix = f"actor {cfg.actor.actor_id}: "

            def progress_and_console(line: str) -> None:
                progress(line)
                self._log_buffer.add("INFO", line.removeprefix(prefix))  # the pane is narrow

            self.progress = progress_and_console

    # ------------------------------------------------------------------------------------ set-up

    def _human_source(self):
        """Who drives during a takeover: the configured teleoperator, else (sim) the scripted expert."""
        if self.cfg.teleop is not None:
            return self._teleop_source()
        if not (self.is_sim and self.cfg.actor.expert):
            return None
        task = getattr(self.cfg.robot, "task", None)
        if task not in ("reach", "pick_cube"):
            return None
        from hardware.sim.expert import ExpertConfig, ScriptedExpert

        expert = ScriptedExpert(ExpertConfig(task=task, fps=float(self.cfg.robot.fps)))
        self._expert = expert
        self._takeover_label = "sim expert"
        return ExpertSource(expert.act)

    def _teleop_source(self):
        """Build `teleop` through hardware.factory (errors name the missing port, id or calibration file;
        nothing is opened yet) and wrap it for Takeover. Leader arms give joint goals in the follower's
        units; gamepad / keyboard_ee give end-effector deltas, mapped to joints by IK from the present pose;
        their intervention button reaches Takeover as the `is_intervention` event."""
        from hardware.factory import make_teleoperator
        from hardware.takeover import EndEffectorDeltaMap, TeleopSource

        tcfg = self.cfg.teleop
        self.teleop = make_teleoperator(tcfg, robot=self.robot)
        # what the console shows (LeRobot reads both SO leaders' type as "so100_leader": name the kind)
        self._takeover_label = _TELEOP_LABELS.get(tcfg.type, tcfg.type)
        if tcfg.type == "sim_expert":
            # The expert acts on the guard's observation, like the built-in one (and is reset with the scene).
            self._expert = self.teleop.expert
            return ExpertSource(self.teleop.expert.act)
        if tcfg.type == "koch_leader" and getattr(self.cfg.robot, "use_degrees", False):
            _leader_in_degrees(self.teleop)
        if tcfg.type in ("gamepad", "keyboard_ee"):
            self._teleop_map = EndEffectorDeltaMap()
        return TeleopSource(self.teleop, self._teleop_map)

    def _env_reset(self, seed: int | None) -> None:
        group = self.cfg.actor.group_size
        if group > 1:  # GRPO: G consecutive episodes start from the same state
            seed = (self.cfg.episode.seed or 0) + self.episodes_done // group
        self.robot.reset(seed=seed)
        if getattr(self, "_expert", None) is not None:
            self._expert.reset()

    # --------------------------------------------------------------------------------------- run

    def run(self) -> int:
        """Run episodes until done or stopped. Returns a process exit code."""
        self._connect_teleop()  # first: a leader that does not open fails before the follower's torque is on
        try:
            self.guard.connect()
        except BaseException:
            self._disconnect_teleop()
            raise
        self.robot_keys = list(self.guard.keys)
        self.state_keys = resolve_state_keys(self.robot, self.cfg.actor.state_keys)
        # A VLA names the cameras it reads; the native policy's come from actor.image_keys.
        self.image_keys = list(self.cfg.actor.image_keys) or list(getattr(self.policy, "image_keys", []))
        self.client.start()
        if self.control is not None:
            self.control.on_estop = lambda: self.guard.estop("console")
            self.control.start()
            for name in _CONSOLE_LOGGERS:
                logging.getLogger(name).addHandler(self._log_buffer)
        try:
            if not self._wait_for_first_weights():
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
                self._run_episode()
            return 0
        finally:
            self._close()

    def _close(self) -> None:
        self.client.close(flush_timeout_s=5.0)
        if self.control is not None:
            self.control.close()
            for name in _CONSOLE_LOGGERS:
                logging.getLogger(name).removeHandler(self._log_buffer)
        try:
            self.guard.close()  # the follower first: it stops moving before its leader is let go
        finally:
            self._disconnect_teleop()

    def _connect_teleop(self) -> None:
        if self.teleop is None:
            return
        from hardware.factory import connect_teleoperator

        connect_teleoperator(self.teleop)
        self.progress(
            f"actor {self.cfg.actor.actor_id}: teleop connected ({self._takeover_label}) "
            "(console `t`, or its intervention button, takes over)"
        )

    def _disconnect_teleop(self) -> None:
        """Release the teleoperator; never raises (it runs on the way out, after the follower is safe)."""
        teleop = self.teleop
        if teleop is None or not getattr(teleop, "is_connected", False):
            return
        try:
            teleop.disconnect()
        except Exception:
            log.exception("could not disconnect teleop %s cleanly", self.cfg.teleop.type)

    def _wait_for_first_weights(self) -> bool:
        limit = self.cfg.actor.wait_for_weights_s
        t0 = time.monotonic()
        self.progress(
            f"actor {self.cfg.actor.actor_id}: waiting for weights from {self.cfg.transport.address}"
        )
        while not self.shutdown.is_set():
            self._service()
            params = self.client.wait_for_parameters(0.2)
            if params is not None:
                self._load(params)
                return True
            if limit and time.monotonic() - t0 > limit:
                self.progress(
                    f"actor {self.cfg.actor.actor_id}: no weights from the learner after {limit:.0f} s "
                    f"({self.client.status.last_error or 'no answer'}); is `pirl learner` running?"
                )
                return False
        return False

    def _reset_if_due(self) -> bool:
        """Drive home after an episode; True when that reset finished (False: none due, e-stop latched, or
        home not reached, which the next pass retries after the idle wait)."""
        if self.episodes.state is not EpisodeState.RESETTING or self.guard.estopped:
            return False
        self._reset_watched()
        return self.episodes.state is not EpisodeState.RESETTING

    def _reset_watched(self) -> None:
        """Drive home (blocks for seconds on a real arm) while a side thread keeps the console's status
        coming, so the operator watches the arm move instead of a silent screen. Commands still wait for
        the loop (their acks come after the reset); e-stop latches at once from the control thread."""
        if self.control is None:
            self.episodes.reset()
            return
        done = threading.Event()

        def publish() -> None:
            while not done.wait(1.0 / self.control.cfg.rate_hz):
                if self.control.status_due():
                    self.control.publish(self._status())

        watcher = threading.Thread(target=publish, name="pirl-reset-status", daemon=True)
        watcher.start()
        try:
            self.episodes.reset()
        finally:
            done.set()
            watcher.join()

    def _service(self) -> None:
        """Feed the link watchdog from the client's connection state; serve the console (never blocks)."""
        status = self.client.status
        if status.connected:
            self.link.heartbeat()
        else:
            self.link.lost(status.last_error or "not connected to the learner")
        if status.connected != self._was_connected and self.version is not None:
            if status.connected:
                self.progress(
                    f"actor {self.cfg.actor.actor_id}: learner link back (reconnects {status.reconnects})"
                )
            else:
                self.progress(
                    f"actor {self.cfg.actor.actor_id}: learner link down ({status.last_error}); "
                    "holding, no new episode until it is back"
                )
        self._was_connected = status.connected
        if self.control is not None:
            self._handle_commands()
            if self.control.status_due():
                self.control.publish(self._status())

    # ------------------------------------------------------------------------------- weights

    def _maybe_update_weights(self) -> None:
        params = self.client.latest_parameters(newer_than=self.version)
        if params is not None:
            self._load(params)

    def _load(self, params: Parameters) -> None:
        if params.base_digest and params.base_digest != self.my_digest:
            raise ActorError(
                "the learner's policy differs from this actor's in the weights that are not sent "
                f"(frozen digest {params.base_digest} vs {self.my_digest}): start both from the same "
                "--policy_path, or the same --policy.* and --seed"
            )
        self.model.load_trainable_state(params.state)
        if self.version is not None and params.version < self.version:
            log.warning(
                "learner went back from v%d to v%d (restarted without --resume?)",
                self.version,
                params.version,
            )
        self.version = params.version
        self._weights_at = time.monotonic()
        self.client.release(params.version)  # the model holds them now; drop the client's copy
        log.info("loaded weights v%d", params.version)

    # ------------------------------------------------------------------------------- episode

    def _policy_obs(self, obs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Robot observation -> the tensors the model reads (and the rollout stores). A VLA policy
        (`pirl_vla`) runs its LeRobot pre-processor here: normalised state, task tokens."""
        pobs = to_policy_observation(obs, self.state_keys, self.image_keys)
        prepare = getattr(self.policy, "prepare_observation", None)
        return prepare(pobs) if prepare is not None else pobs

    def _run_episode(self) -> None:
        ep = self.episodes.start()
        if self._takeover_next:
            self._takeover_next = False
            self.takeover.request(True)
        self._next_step_t = self._rate_t = None  # the reset or pause before this episode: no dropped steps
        episode_id = self._episode_base + self.episodes_done * 1000 + self.episodes.attempt
        takeover_chunk = None
        if self.takeover.human is not None and self._rng.random() < self.cfg.actor.expert_takeover_prob:
            takeover_chunk = self._rng.randrange(max(1, self.episodes.max_steps // self.exec_h // 2))
        rows: list[dict[str, torch.Tensor]] = []
        versions: list[int] = []
        obs = self.guard.observation()
        t0 = time.monotonic()
        outcome = None
        chunk = 0
        while outcome is None or not outcome.done:
            self._service()
            if self.shutdown.is_set():  # console quit, Ctrl-C, SIGTERM: end the episode now, not at its limit
                self.episodes.stop("shutdown")
            if self.episodes.state is not EpisodeState.RUNNING:
                # The operator ended the episode between chunks (console pause, reset or quit): the chunk
                # already recorded was the last one, cut short here.
                if rows:
                    rows[-1]["truncated"] = torch.tensor([True])
                    nxt = self._policy_obs(obs)
                    rows[-1]["bootstrap_value"] = torch.tensor([float(self.model.predict_value(nxt)[0])])
                break
            self._maybe_update_weights()  # the safe point: between chunks only
            if takeover_chunk is not None and chunk == takeover_chunk:
                self.takeover.request(True)
            pobs = self._policy_obs(obs)
            t_infer = time.perf_counter()
            s = sample(self.model, pobs, mode="train", generator=self._gen)
            ms = (time.perf_counter() - t_infer) * 1e3
            self._infer_ms = ms if self._infer_ms is None else 0.8 * self._infer_ms + 0.2 * ms
            if not self.first_chunk_logged:
                self.first_chunk_logged = True
                self.progress(
                    f"actor {self.cfg.actor.actor_id}: first chunk with policy v{self.version} "
                    f"(weights {weights_digest(self.model.trainable_tensors())})"
                )
            human = torch.zeros(self.model.policy.chunk_size, self.model.policy.action_dim)
            intervened = started = False
            reward = 0.0
            for i in range(self.exec_h):
                planned = action_dict(s.actions[0, i], self.robot_keys)
                decision = self.takeover.arbitrate(obs, planned)
                result = self._apply(decision)
                obs = self._last_obs = self.guard.observation()
                outcome = self.episodes.record_step(decision, result, obs)
                self.env_steps += 1
                now = time.monotonic()
                if (
                    self._rate_t is not None
                ):  # mean of the intervals (inference pauses included), not of rates
                    dt = now - self._rate_t
                    self._step_dt = dt if self._step_dt is None else 0.95 * self._step_dt + 0.05 * dt
                self._rate_t = now
                reward += outcome.reward
                if decision.intervention:
                    intervened = True
                    applied = result.action if result is not None else decision.action
                    if applied:
                        human[i] = action_row(applied, self.robot_keys)
                started = started or decision.started
                if outcome.done or decision.handed_back:
                    break
            truncated = bool(outcome.done and outcome.truncated)
            bootstrap = 0.0
            if truncated:
                nxt = self._policy_obs(obs)
                bootstrap = float(self.model.predict_value(nxt)[0])
            rows.append(
                {
                    **{f"obs.{k}": v for k, v in pobs.items()},
                    "chain": s.chain,
                    "sde_step": s.sde_step.long(),
                    "logprob": s.logprob.float(),
                    "value": s.value.float(),
                    "reward": torch.tensor([reward]),
                    "done": torch.tensor([bool(outcome.done and outcome.terminated)]),
                    "truncated": torch.tensor([truncated]),
                    "bootstrap_value": torch.tensor([bootstrap]),
                    "intervention": torch.tensor([intervened]),
                    "human_action": human.unsqueeze(0),
                    "takeover_start": torch.tensor([started]),
                    "policy_version": torch.tensor([int(self.version)]),
                    "episode_id": torch.tensor([episode_id]),
                    "chunk_index": torch.tensor([chunk]),
                    "group_id": torch.tensor([self._group_id()]),
                }
            )
            versions.append(int(self.version))
            chunk += 1
        record = self.episodes.records[-1]
        if not rows:  # stopped before its first chunk: no transition to learn from
            self.progress(f"actor {self.cfg.actor.actor_id}: episode {ep} {record.termination} before acting")
            return
        self._finish_episode(ep, record, rows, versions, time.monotonic() - t0)

    def _group_id(self) -> int:
        g = self.cfg.actor.group_size
        return -1 if g <= 1 else self._episode_base + self.episodes_done // g

    def _apply(self, decision):
        if self.guard.mode == "lockstep":
            return self.guard.step(decision.action, source=decision.source)
        # Paced by deadlines (t0 + k * period), not by sleeping a period after each step: inference and
        # bookkeeping between steps would otherwise stretch every period (24 Hz decisions at 30 Hz).
        period = 1.0 / self.guard.layer.control_hz
        now = time.monotonic()
        if self._next_step_t is None:
            self._next_step_t = now
        late = now - self._next_step_t
        if late >= period:  # whole periods without a fresh action: the guard held through them
            self._dropped += int(late / period)
            self._next_step_t = now  # start a new schedule rather than bursting to catch up
        if decision.action is None:
            self.guard.hold("hand-back")
        else:
            self.guard.submit(decision.action, source=decision.source)
        self._next_step_t += period
        delay = self._next_step_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return None

    def _finish_episode(
        self, ep: int, record: EpisodeRecord, rows, versions: list[int], wall_s: float
    ) -> None:
        if record.rerecord:
            self.progress(f"actor {self.cfg.actor.actor_id}: episode {ep} discarded (re-record)")
            return
        batch = RolloutBatch.from_dict({k: torch.cat([r[k] for r in rows]) for k in rows[0]})
        meta = {"steps": record.steps, "success": bool(record.success), "policy_version": max(versions)}
        self.client.send_rollout(Rollout(self.rollout_actor, self.episodes_done, batch.to_dict(), meta))
        stats = {
            "type": "episode",
            "actor_id": self.cfg.actor.actor_id,
            "episode": self.episodes_done,
            "steps": record.steps,
            "chunks": len(rows),
            "return": float(record.reward),
            "success": bool(record.success),
            "termination": record.termination,
            "interventions": int(record.interventions),
            "intervention_rate": float(record.intervention_rate),
            "policy_version_min": min(versions),
            "policy_version_max": max(versions),
            "wall_s": round(wall_s, 4),
            "time": time.time(),
        }
        self.client.send_interaction(stats)
        self.episodes_done += 1
        every = self.cfg.actor.progress_every
        if every and self.episodes_done % every == 0:
            sps = self.env_steps / max(time.monotonic() - self.t_start, 1e-9)
            link = "ok" if self.client.status.connected else "down"
            self.progress(
                f"actor {self.cfg.actor.actor_id}: episode {self.episodes_done} {record.termination} "
                f"return {record.reward:.2f} steps {record.steps} v{self.version} "
                f"interventions {record.interventions} sps {sps:.0f} link {link}"
            )

    # ------------------------------------------------------------------------------- console

    def _handle_commands(self) -> None:
        from app.control.protocol import Command

        for cmd in self.control.poll_commands():
            if cmd is Command.START:
                self.paused = False
                self.episodes.confirm()
            elif cmd is Command.PAUSE:
                self.paused = True
                self.episodes.stop("operator")
            elif cmd is Command.TAKEOVER_ON:
                if self.takeover.human is None:
                    log.warning("takeover: no teleoperator configured, the policy keeps driving")
                elif self.episodes.state is EpisodeState.RUNNING:
                    self.takeover.request(True)
                else:  # between episodes: the next one starts with the human (start() clears requests)
                    self._takeover_next = True
            elif cmd is Command.TAKEOVER_OFF:
                self._takeover_next = False
                self.takeover.request(False)
            elif cmd is Command.SUCCESS:
                self.episodes.mark_success()
            elif cmd is Command.FAILURE:
                self.episodes.mark_failure()
            elif cmd is Command.RERECORD:
                self.episodes.request_rerecord()
            elif cmd is Command.RESET:
                self.episodes.stop("operator")
            elif cmd is Command.ESTOP:
                self.guard.estop("console")
            elif cmd is Command.CLEAR_ESTOP:
                self.guard.clear_estop()
            elif cmd is Command.QUIT:
                self.shutdown.set()

    def _status(self):
        """One snapshot for the console. While an episode runs it shows that episode; between episodes
        (resetting, waiting for the operator) the one that just ended, with its outcome. Episodes are
        numbered from 1, as in the progress lines."""
        from app.control.protocol import (
            ActorStatus,
            CameraThumbnail,
            EpisodeStatus,
            LearnerLinkStatus,
            LoopStatus,
        )
        from app.control.protocol import EpisodeRecord as CurvePoint

        g = self.guard.status()
        cs = self.client.status
        eps = self.episodes
        hz = self.guard.layer.control_hz
        running = eps.state is EpisodeState.RUNNING
        last = eps.records[-1] if eps.records else None
        if running or last is None:
            tk = self.takeover.report()
            number, reward, outcome, interventions = eps.index + 1, eps.reward_sum, None, tk["interventions"]
            time_left = max(0.0, (eps.max_steps - eps.steps) / hz) if running else None
        else:
            number, reward, interventions, time_left = last.index + 1, last.reward, last.interventions, None
            outcome = {True: "success", False: "failure"}.get(last.success, last.termination)
        source = self._takeover_label
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
        realtime = g.mode == "realtime"
        rate = (g.loop_hz or 0.0) if realtime else (1.0 / self._step_dt if self._step_dt else 0.0)
        cameras = {}
        for name in getattr(self.robot, "cameras", None) or {}:
            frame = (self._last_obs or {}).get(name)
            if isinstance(frame, np.ndarray) and frame.ndim == 3:
                cameras[name] = CameraThumbnail.from_array(frame)
        return ActorStatus(
            robot=g.robot_type,
            estop=g.estopped,
            holding=g.holding,
            hold_reason=g.hold_reason or "",
            joints=self._joint_view(g.present, g.commanded, g.limits, g.episode_safety.get("events", {})),
            safety_events=dict(g.episode_safety.get("by_kind", {})),
            episode=EpisodeStatus(
                number=number,
                state="paused" if self.paused else eps.state.value,
                time_left_s=time_left,
                length_s=self.cfg.episode.time_limit_s,
                reward=float(reward),
                outcome=outcome,
                # a human drives, or will drive the next episode (takeover asked between episodes)
                intervention=(self.takeover.active and running) or self._takeover_next,
                interventions=int(interventions),
                takeover_source=source,
            ),
            learner=LearnerLinkStatus(
                connected=cs.connected,
                address=self.cfg.transport.address,
                policy_version=self.version,
                seconds_since_weights=None
                if self._weights_at is None
                else time.monotonic() - self._weights_at,
                queue_depth=cs.pending,
                rtt_ms=cs.rtt_ms,
            ),
            # Realtime (real arm, wall-clock sim): the guard's control thread rate against its target.
            # Lockstep sim: no wall-clock target (it steps as fast as it can); the actor's own step rate.
            loop=LoopStatus(
                hz=rate,
                target_hz=hz if realtime else 0.0,
                inference_ms=self._infer_ms,
                dropped_steps=self._dropped,
                steps=self.env_steps,
            ),
            history=history,
            log=self._log_buffer.lines(),
            cameras=cameras,
        )
