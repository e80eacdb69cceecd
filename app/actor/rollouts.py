"""One PI-RL episode on the actor's arm, as the learner's rows.

Chunk by chunk: serve the console and the link, swap in newer weights (the safe point: a chunk is always
executed by the weights that sampled it), sample a chunk with the stochastic train-time chain (its
behaviour log-prob and value), run it through the executor (app/episode/: Takeover -> RobotGuard ->
EpisodeManager), and keep one `ChunkRecord`. A finished episode goes to the learner as one rollout
(SendTransitions) plus one JSON stats message (SendInteractions).

Robot time: `env_steps` counts every control step of every episode and `human_steps` those a human drove;
the EpisodeManager counts the drive-home steps. Each episode's rollout meta and stats carry `steps`,
`human_steps` and `reset_steps` (the drive home before it), at `control_hz` (also in the stats). An episode
the operator discards (re-record) sends nothing to train on, but its robot time was spent: its steps and
its drive home are added to the next episode's stats (`reset_steps` and `human_steps`, which the
learner's robot clock counts; `discarded_steps` / `discarded_human_steps` / `discarded_episodes` say how
much of them is that), so the learner's robot minutes match the actor's own.

Recording (`actor.record.root`): every control step goes to an `EpisodeRecorder` (app/episode/recorder.py)
as it is applied, and each episode is saved to the LeRobot dataset when it ends (a re-recorded one is
dropped); an error while recording stops the recording, never the run.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import torch

from app.actor.weights import WeightSync
from app.episode import Executor, Step, chunk_record
from app.episode.observation import to_policy_observation
from app.episode.recorder import EpisodeRecorder
from app.rl.batch import ChunkRecord, RolloutBatch
from app.rl.digests import weights_digest
from app.rl.sampling import sample
from app.run.config import PIRLRunConfig
from app.transport.codec import Rollout
from hardware.episodes import EpisodeRecord


class EpisodeRunner:
    """Runs the actor's episodes and counts them. `service()` is called between chunks (console, link);
    an episode the operator ends between chunks (pause, reset, quit) is cut there (truncated)."""

    def __init__(
        self,
        cfg: PIRLRunConfig,
        policy: Any,
        executor: Executor,
        weights: WeightSync,
        client: Any,
        *,
        session: str,
        say: Callable[[str], None],
        service: Callable[[], None],
        shutdown: threading.Event,
    ) -> None:
        self.cfg = cfg
        self.policy = policy
        self.model = weights.model
        self.executor = executor
        self.episodes = executor.episodes
        self.weights = weights
        self.client = client
        self.say = say
        self.service = service
        self.shutdown = shutdown
        self.rollout_actor = f"{cfg.actor.actor_id}-{session}"  # identity for learner-side de-dup
        self._episode_base = (zlib.crc32(self.rollout_actor.encode()) & 0x7FFFFF) << 32
        self._gen = torch.Generator()
        seed = cfg.actor.sample_seed
        self._gen.manual_seed(seed if seed is not None else random.getrandbits(62))
        self._rng = random.Random(seed)
        self.state_keys: list[str] = []  # set once the robot is connected
        self.image_keys: list[str] = []
        self.episodes_done = 0
        self.env_steps = 0  # control steps of every episode (re-recorded ones too: robot time is spent)
        self.human_steps = 0  # those a human drove
        self._episode_human_steps = 0
        self.t_start = time.monotonic()
        self.infer_ms: float | None = None  # recent mean of one chunk's sampling time
        self.last_obs: dict[str, Any] | None = None
        self._first_chunk_logged = False
        # Robot time of discarded episodes not yet reported to the learner (goes with the next stats).
        self._carry = {"discarded_steps": 0, "discarded_human_steps": 0, "discarded_episodes": 0}
        self.recorder: EpisodeRecorder | None = None  # set by the actor when actor.record.root is given
        self.record_error = ""  # why recording stopped (empty: it did not)
        self.episodes_recorded = 0  # episodes this actor saved to the dataset
        # Runs a slow call (saving an episode's videos) while the console keeps getting status.
        self.while_blocked: Callable[[Callable[[], Any]], Any] = lambda fn: fn()
        executor.on_step = self._on_step

    def _on_step(self, step: Step) -> None:
        self.env_steps += 1
        if step.decision.intervention:
            self.human_steps += 1
            self._episode_human_steps += 1
        self.last_obs = step.next_obs
        if self.recorder is not None:
            o = step.outcome
            self._record(
                self.recorder.add,
                step.obs,
                step.applied,
                step.decision.intervention,
                o.reward,
                o.done,
                bool(o.success),
            )

    def _record(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call the recorder; an error stops the recording (said once, the dataset closed so that what
        was saved stays valid) and the run goes on."""
        try:
            fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - disk full, encoder failure, ...: the robot run goes on
            recorder, self.recorder = self.recorder, None
            self.record_error = f"{type(err).__name__}: {err}"
            kept = f"{self.episodes_recorded} episodes kept in {recorder.root}"
            self.say(f"recording stopped ({self.record_error}); {kept}")
            try:
                recorder.close()
            except Exception as close_err:  # noqa: BLE001
                self.say(f"closing the dataset failed too: {close_err}")

    def _end_recording(self, record: EpisodeRecord) -> None:
        """Save the episode to the dataset (a re-recorded or empty one is dropped)."""
        rec = self.recorder
        if rec is None:
            return
        if record.rerecord or record.steps == 0:
            self._record(rec.discard_episode)
            return
        success_reward = self.cfg.episode.success_reward
        self._record(self.while_blocked, lambda: rec.end_episode(bool(record.success), success_reward))
        if self.recorder is not None:
            self.episodes_recorded += 1

    def policy_obs(self, obs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Robot observation -> the tensors the model reads (and the rollout stores). A VLA policy
        (`pirl_vla`) runs its LeRobot pre-processor here: normalised state, task tokens."""
        pobs = to_policy_observation(obs, self.state_keys, self.image_keys)
        prepare = getattr(self.policy, "prepare_observation", None)
        return prepare(pobs) if prepare is not None else pobs

    def group_id(self) -> int:
        g = self.cfg.actor.group_size
        return -1 if g <= 1 else self._episode_base + self.episodes_done // g

    def run_episode(self) -> None:
        ep = self.episodes.start()
        self._episode_human_steps = 0
        episode_id = self._episode_base + self.episodes_done * 1000 + self.episodes.attempt
        group_id = self.group_id()
        run = self.executor.begin(
            takeover_at=self.executor.takeover_chunk(self._rng, self.cfg.actor.expert_takeover_prob)
        )
        records: list[ChunkRecord] = []
        versions: list[int] = []
        t0 = time.monotonic()
        while True:
            self.service()
            if self.shutdown.is_set():  # console quit, Ctrl-C, SIGTERM: end the episode now, not at its limit
                self.episodes.stop("shutdown")
            if not run.active:
                # The operator ended the episode between chunks (console pause, reset or quit): the chunk
                # already recorded was the last one, cut short here.
                if records:
                    records[-1].truncated = True
                    records[-1].bootstrap_value = self._value(run.obs)
                break
            self.weights.update()  # the safe point: between chunks only
            pobs = self.policy_obs(run.obs)
            t_infer = time.perf_counter()
            s = sample(self.model, pobs, mode="train", generator=self._gen)
            ms = (time.perf_counter() - t_infer) * 1e3
            self.infer_ms = ms if self.infer_ms is None else 0.8 * self.infer_ms + 0.2 * ms
            version = int(self.weights.version)
            if not self._first_chunk_logged:
                self._first_chunk_logged = True
                self.say(
                    f"first chunk with policy v{version} "
                    f"(weights {weights_digest(self.model.trainable_tensors())})"
                )
            chunk = run.chunk
            result = run.run_chunk(s.actions[0])
            records.append(
                chunk_record(
                    result,
                    pobs,
                    s,
                    policy_version=version,
                    episode_id=episode_id,
                    chunk_index=chunk,
                    group_id=group_id,
                    bootstrap_value=self._value(run.obs) if result.truncated else 0.0,
                )
            )
            versions.append(version)
            if result.done:
                break
        record = self.episodes.records[-1]
        self._end_recording(record)
        if not records:  # stopped before its first chunk: no transition to learn from
            self.say(f"episode {ep + 1} {record.termination} before acting")  # 1-based, as the console
            self._carry_robot_time(record)
            return
        self._finish(ep, record, records, versions, time.monotonic() - t0)

    def _carry_robot_time(self, record: EpisodeRecord) -> None:
        """An episode that sends no stats: its steps and drive home go with the next episode's stats."""
        self._carry["discarded_steps"] += int(record.steps) + int(record.reset_steps)
        self._carry["discarded_human_steps"] += self._episode_human_steps
        self._carry["discarded_episodes"] += 1

    def _value(self, obs: dict[str, Any]) -> float:
        """V(obs): the bootstrap value of a cut episode."""
        return float(self.model.predict_value(self.policy_obs(obs))[0])

    def _finish(
        self, ep: int, record: EpisodeRecord, records: list[ChunkRecord], versions: list[int], wall_s: float
    ) -> None:
        if record.rerecord:
            self.say(f"episode {ep + 1} discarded (re-record)")
            self._carry_robot_time(record)
            return
        batch = RolloutBatch.from_records(records, self.model.policy.action_dim)
        meta = {
            "steps": record.steps,
            "human_steps": self._episode_human_steps,
            "reset_steps": int(record.reset_steps),
            "success": bool(record.success),
            "policy_version": max(versions),
        }
        self.client.send_rollout(Rollout(self.rollout_actor, self.episodes_done, batch.to_dict(), meta))
        carry, self._carry = self._carry, dict.fromkeys(self._carry, 0)
        stats = {
            "type": "episode",
            "actor_id": self.cfg.actor.actor_id,
            "episode": self.episodes_done,
            "steps": record.steps,
            # robot time the learner counts: this episode's, plus that of the episodes discarded before it
            "human_steps": self._episode_human_steps + carry["discarded_human_steps"],
            "reset_steps": int(record.reset_steps) + carry["discarded_steps"],
            **carry,
            "control_hz": float(self.episodes.guard.layer.control_hz),
            "chunks": len(records),
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
            rec = f" recorded {self.episodes_recorded}" if self.recorder is not None else ""
            self.say(
                f"episode {ep + 1} {record.termination} return {record.reward:.2f} "
                f"steps {record.steps} v{self.weights.version} interventions {record.interventions} "
                f"sps {sps:.0f} link {link}{rec}"
            )
