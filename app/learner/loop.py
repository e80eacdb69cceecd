"""The PI-RL learner: serve LearnerService, batch whole episodes, update, push weights, checkpoint.

One job, the learner's main loop, in ~500 lines: what it starts, trains, pushes and saves must be read in
one place to check that nothing accepted is lost across a stop (the parts that stand alone are already out:
service, spool, checkpoint, versions, robot time, demos, recipe, ranks).

At start: the run's learning recipe (`learner.preset`, `learner.rl_overrides`: app/learner/recipe.py) is
applied to the policy before the trainer is built; `learner.demos` (app/learner/demos.py) set the anchor
batch (also after a resume) and pre-train the critic once, before the first update. Robot time (episode
and drive-home steps from the actors' episode stats, app/learner/robot_time.py) is logged with every update,
saves the policy at `learner.save_at_robot_minutes` marks and stops the run at `learner.max_robot_minutes`.

Top to bottom, one iteration:

1. drain the service queues: rollouts (one episode of chunk rows each) and episode stats (JSON);
2. when at least `algorithm.chunks_per_update` chunks are pending, apply the staleness rule and run one
   `PIRLAlgorithm.update` (GAE, PPO/GRPO epochs, see app/rl/trainer.py) on all of them;
3. publish the new trainable weights (version + 1, optionally bf16) to every actor stream;
4. log cleanrl-style metrics (stdout line, <output_dir>/metrics.jsonl, TensorBoard, optional wandb);
5. every `learner.save_every` updates (and at exit, Ctrl-C included) write an atomic checkpoint of the
   trainable state (the exit one also holds the LeRobot `pretrained_model/` folder).

Staleness rule (docs/runtime.md): an episode is tagged per chunk with the version that produced it. At
update time, with current version V, an episode whose newest chunk is older than
V - `algorithm.drop_episode_after_versions` is dropped whole; in a kept episode, chunks within
`policy.rl.staleness.max_staleness` versions enter the PPO surrogate (their ratio is taken against the
stored behaviour log-prob, clipped; or decoupled-PPO corrected when `policy.rl.staleness.decoupled`),
older chunks only shape returns and the critic. Episodes that arrive during an update join the next one.

Nothing an actor sends can stop the loop (docs/runtime.md, "Hostile input and stops"): the service checks
every rollout against `rollout_spec(policy)` before accepting it, and stores it in the spool
(<output_dir>/spool) before acknowledging it. A spooled rollout is deleted once a checkpoint includes the
update that consumed it; a resumed (or restarted) learner trains what is left, exactly once. Every version
pushed is recorded first (<output_dir>/pushed_version.json), so a learner resumed from an older checkpoint
continues above every version its actors may have seen.

Under torchrun with several ranks (app/learner/distributed.py, docs/runtime.md "Several GPUs") this is
rank 0: it does all of the above alone, and hands each update's batch to the other ranks, which share
the gradient work; `dist` is None in a single process and nothing of that runs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import draccus

from app.learner.checkpoint import CheckpointManager
from app.learner.distributed import Coordinator, DistContext, RankFailure
from app.learner.hub import push_after_run
from app.learner.metrics import MetricsSink, data_charts, progress_line, window_charts
from app.learner.recipe import DemoSetup, apply_recipe
from app.learner.robot_time import RobotTime
from app.learner.service import PIRLLearnerService, RolloutSpool
from app.learner.spec import check_meta, rollout_spec
from app.learner.versions import PUSHED_VERSION_FILE, read_pushed_version, write_pushed_version
from app.rl.algorithm import PIRLAlgorithm
from app.rl.batch import RolloutBatch
from app.rl.checkpoint_state import STATE_FORMAT, TRAINABLE_KEY, restore_policy_state, trainable_state
from app.rl.digests import frozen_digest, weights_digest
from app.run.config import PIRLRunConfig
from app.run.sections import ENDPOINT_FILE, PRETRAINED_DIR
from app.transport.channel import make_server
from app.transport.codec import DecodeError, Parameters, Rollout, decode_rollout

__all__ = ["PUSHED_VERSION_FILE", "Learner", "MetricsSink", "rollout_spec"]

log = logging.getLogger("pirl.learner")

SPOOL_DIR = "spool"  # accepted rollouts not yet in a checkpoint (one file each)
SPOOL_DONE_KEY = "spool_done"  # meta.json: spool files consumed by the updates this checkpoint holds
DEDUP_KEY = "service"  # state.pt: the service's de-duplication window


class Learner:
    def __init__(
        self,
        cfg: PIRLRunConfig,
        progress: Callable[[str], None] | None = print,
        shutdown: threading.Event | None = None,
        dist: DistContext | None = None,
    ):
        cfg.validate("learner")
        self.dist = dist  # rank 0 of several (app/learner/distributed.py); None: a single process
        self.save_pretrained = cfg.learner.save_pretrained  # "final" or "every" (validated)
        self.cfg = cfg
        self.progress = progress or (lambda _line: None)
        self.shutdown = shutdown or threading.Event()
        self.out = Path(cfg.learner.output_dir)
        self.ckpt = CheckpointManager(self.out / "checkpoints", keep=cfg.learner.keep_checkpoints)
        if not cfg.learner.resume and self.ckpt.latest() is not None:
            raise FileExistsError(
                f"{self.out} already holds a run (checkpoint {self.ckpt.latest().name}); "
                "continue it with --learner.resume=true or pick another --learner.output_dir"
            )
        device = cfg.policy.device if cfg.policy is not None else "cpu"
        self.policy = cfg.make_policy(device=dist.device if dist is not None else device)
        self.recipe = apply_recipe(cfg, self.policy)  # learner.preset / rl_overrides, before the trainer
        self.demos = DemoSetup(cfg, self.policy) if cfg.learner.demos else None
        self.algorithm = PIRLAlgorithm(self.policy, cfg.algorithm)
        self.algorithm.make_optimizers_and_scheduler()
        # fixed for the run: only trainable tensors change (taken before `Coordinator` may hold the frozen
        # base in bf16: the digest names the base the run config builds, the one the actors run)
        self.frozen = frozen_digest(self.algorithm.model)
        self.ranks = Coordinator(self)  # the other ranks, rank 0's side (app/learner/distributed.py)
        self.updates = 0
        self.env_steps = 0
        self.episodes = 0
        self.dropped_stale = 0
        self.run_id = uuid.uuid4().hex[:12]
        self._last_checkpoint: Path | None = None
        self.pending: list[tuple[Rollout, RolloutBatch]] = []
        self._pending_ids: set[int] = set()  # episode ids in `pending` (never two rollouts with one id)
        self._consumed: list[str] = []  # spool files consumed by updates since the last checkpoint
        self.window: deque[dict[str, Any]] = deque(maxlen=cfg.learner.stats_window)
        self.spec = rollout_spec(self.policy)
        self.spool = RolloutSpool(self.out / SPOOL_DIR)
        tcfg = cfg.transport
        self.service = PIRLLearnerService(
            self.shutdown,
            validate=self.validate_rollout,
            spool=self.spool,
            max_rollout_bytes=tcfg.max_rollout_bytes,
            max_interaction_bytes=tcfg.max_interaction_bytes,
        )
        self._pushed_path = self.out / PUSHED_VERSION_FILE
        self._highest_pushed = read_pushed_version(self._pushed_path)
        spool_done: list[str] = []
        if cfg.learner.resume:
            state, meta = self._resume()
            self.service.restore_dedup(state.get(DEDUP_KEY, {}).get("seen", ()))
            spool_done = [str(n) for n in meta.get(SPOOL_DONE_KEY, ())]
        self._load_spool(spool_done)
        self._continue_above_pushed()
        self.robot_time = RobotTime(cfg, self.out)  # robot-minute totals (continued on resume) and marks
        # demos: the anchor at every start (it is not checkpointed), the critic only before a fresh run's first update
        self._pretrain_due = self.demos is not None and not cfg.learner.resume
        self._pending_metrics: dict[str, float] = {}
        if self.demos is not None:
            self.demos.anchor(self.algorithm)
        self.server = None
        self.port: int | None = None
        self._saved_at = self.updates if cfg.learner.resume else -1

    def validate_rollout(self, rollout: Rollout) -> None:
        """What the service runs on every rollout before accepting it: `DecodeError` if this policy cannot
        train on it (see `rollout_spec`)."""
        self.spec.check(rollout.batch)
        check_meta(rollout)

    def _load_spool(self, done: list[str]) -> None:
        """Rollouts accepted before a stop and not in the checkpoint resumed from: pending again, in the
        order they came (those the checkpoint already holds are deleted; ones this policy cannot train
        are set aside as `<file>.rejected`)."""
        self.spool.remove(done)
        for name, payload in self.spool.entries():
            try:
                rollout = decode_rollout(payload)
                self.validate_rollout(rollout)
                why = self.service.register(rollout)
                if why is not None:
                    raise DecodeError(why)
                batch = RolloutBatch.from_dict(rollout.batch)
            except (DecodeError, KeyError, ValueError) as err:
                log.warning("spooled rollout %s cannot be trained, set aside: %s", name, err)
                self.spool.reject(name)
                continue
            self.spool.adopt(rollout.key, name)
            self._add_pending(rollout, batch)
        if self.pending:
            self.progress(
                f"learner: {len(self.pending)} episodes accepted before the stop and not trained yet "
                f"({self._pending_chunks()} chunks) will be trained"
            )

    def _continue_above_pushed(self) -> None:
        """Never push a version number twice with other weights: a learner resumed from a checkpoint older
        than its last push (killed between a push and the next save) continues above that push."""
        version = self.algorithm.policy_version
        if self._highest_pushed is not None and self._highest_pushed > version:
            self.algorithm.trainer.policy_version = self._highest_pushed + 1
            self.progress(
                f"learner: v{version + 1}..v{self._highest_pushed} were pushed before the stop but are not "
                f"in the checkpoint; the weights start as v{self._highest_pushed + 1}"
            )

    # ------------------------------------------------------------------------------- lifecycle

    def start_server(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.server, self.port = make_server(self.cfg.transport)
        self.service.add_to_server(self.server)
        self.server.start()
        self._publish()
        endpoint = {
            "host": self.cfg.transport.host,
            "port": self.port,
            "pid": os.getpid(),
            "run_id": self.run_id,
            "version": self.algorithm.policy_version,
        }
        tmp = self.out / f".{ENDPOINT_FILE}.tmp"
        tmp.write_text(json.dumps(endpoint))
        os.replace(tmp, self.out / ENDPOINT_FILE)
        self.progress(
            f"learner: serving on {self.cfg.transport.host}:{self.port} run {self.run_id} "
            f"policy v{self.algorithm.policy_version} (updates {self.updates})"
        )
        return self.port

    def run(self) -> int:
        if self.server is None:
            self.start_server()
        self.sink = MetricsSink(self.cfg, self.out, self.run_id)
        self.t_start = time.monotonic()
        self.steps_at_start = self.env_steps
        max_updates = self.cfg.learner.max_updates
        for line in self.recipe + ([f"demos: {self.demos.describe()}"] if self.demos else []):
            self.progress(f"learner: {line}")
        failed: RankFailure | None = None
        try:
            self._pretrain_critic()  # the actor already runs on the published weights meanwhile
            self.ranks.start()  # every rank starts from this state
            while not self.shutdown.is_set():
                self._drain(timeout=0.1)
                self.ranks.heartbeat()
                if self.robot_time.check(self.policy.save_pretrained, self.progress, self._counters()):
                    break
                if self._pending_chunks() >= self.cfg.algorithm.chunks_per_update:
                    self._update()
                    if max_updates and self.updates >= max_updates:
                        self.progress(f"learner: reached {max_updates} updates")
                        break
        except RankFailure as err:
            failed = err
        finally:
            self.service.close()  # sends from now on: UNAVAILABLE, re-sent to the next learner
            self.robot_time.save()
            unsaved = self.updates != self._saved_at
            if failed is None:
                failed = self.ranks.stop(gather=unsaved)  # zero1: the shards first, for the final save
            if self.ranks.may_save(failed, unsaved):
                self._final_save()
            self.sink.close()
            self.server.stop(grace=1.0).wait(timeout=5)
            if failed is None:
                push_after_run(
                    self.cfg, self._last_checkpoint, self.progress
                )  # never raises; one line on failure
        if failed is not None:
            self.ranks.failed(failed)
            return 1
        self.ranks.close()
        return 0

    # -------------------------------------------------------------------------------- data in

    def _pending_chunks(self) -> int:
        return sum(len(b) for _, b in self.pending)

    def _add_pending(self, rollout: Rollout, batch: RolloutBatch) -> None:
        ids = set(batch.episode_id.tolist())
        if ids & self._pending_ids:  # the service refuses reused ids; this guards the trainer regardless
            log.warning("dropped a rollout from %s reusing a pending episode id", rollout.actor_id)
            self._consume(rollout)
            return
        self._pending_ids |= ids
        self.pending.append((rollout, batch))
        steps = rollout.meta.get("steps", 0)
        self.env_steps += steps if type(steps) is int and steps >= 0 else 0

    def _consume(self, rollout: Rollout) -> None:
        """`rollout` left the pending set (trained, dropped): its spool file goes with the next checkpoint."""
        name = self.spool.name_of(rollout.key)
        if name is not None:
            self._consumed.append(name)

    def _drain(self, timeout: float) -> None:
        import queue

        try:
            first = self.service.rollouts.get(timeout=timeout)
        except queue.Empty:
            first = None
        items = [first] if first is not None else []
        while True:
            try:
                items.append(self.service.rollouts.get_nowait())
            except queue.Empty:
                break
        for rollout in items:
            try:
                batch = RolloutBatch.from_dict(rollout.batch)
            except (KeyError, ValueError) as err:  # the service validated it: not expected
                log.warning("dropped a malformed rollout from %s: %s", rollout.actor_id, err)
                self._consume(rollout)
                continue
            self._add_pending(rollout, batch)
        while True:
            try:
                msg = self.service.interactions.get_nowait()
            except queue.Empty:
                break
            if msg.get("type") == "episode":
                self.window.append(msg)
                self.episodes += 1
                self.robot_time.clock.add(msg)

    # ----------------------------------------------------------------------------------- update

    def _update(self) -> None:
        version = self.algorithm.policy_version
        limit = self.cfg.algorithm.drop_episode_after_versions
        kept = [(r, b) for r, b in self.pending if version - int(b.policy_version.max()) <= limit]
        self.dropped_stale += len(self.pending) - len(kept)
        consumed, self.pending, self._pending_ids = self.pending, [], set()
        if not kept:
            for r, _ in consumed:
                self._consume(r)
            return
        batch = RolloutBatch.cat([b for _, b in kept])
        stats = self.algorithm.update(iter([batch])) if self.dist is None else self.ranks.update(batch)
        for r, _ in consumed:  # trained (or dropped stale): in the spool until a checkpoint holds this update
            self._consume(r)
        self.updates += 1
        self._publish()
        metrics = stats.to_log_dict()
        metrics.update(self._charts(len(kept)))
        metrics.update(data_charts(batch, version, metrics.get("rl/minibatch_steps", 0.0)))
        metrics.update(self._pending_metrics)
        self._pending_metrics = {}
        self.sink.write(self.updates, metrics)
        self.robot_time.save()
        if self.cfg.learner.progress:
            self.progress(progress_line(self.updates, self.algorithm.policy_version, self.episodes, metrics))
        every = self.cfg.learner.save_every
        if every and self.updates % every == 0:
            from app.learner.checkpoint import NonFiniteWeightsError

            try:
                self._save()
            except NonFiniteWeightsError as err:  # the previous checkpoints (and the spool) stay
                log.error("learner: %s", err)

    def _charts(self, episodes_in_batch: int) -> dict[str, float]:
        elapsed = max(time.monotonic() - self.t_start, 1e-9)
        st = self.service.stats
        charts = {
            "charts/SPS": (self.env_steps - self.steps_at_start) / elapsed,
            "charts/env_steps": float(self.env_steps),
            "charts/episodes": float(self.episodes),
            "charts/episodes_in_batch": float(episodes_in_batch),
            "charts/dropped_stale_episodes": float(self.dropped_stale),
            "charts/learning_rate": float(self.algorithm.trainer.optimizer.param_groups[0]["lr"]),
            "charts/policy_version": float(self.algorithm.policy_version),
            "charts/actors": float(len(st.actors_seen)),
            "transport/rollouts_received": float(st.rollouts_received),
            "transport/duplicates_dropped": float(st.duplicates_dropped),
            "transport/parameter_pushes": float(st.parameter_pushes),
        }
        charts.update(window_charts(list(self.window)))
        charts.update(self.robot_time.clock.metrics())
        return charts

    # ------------------------------------------------------------------------------- robot time

    def _pretrain_critic(self) -> None:
        """Once per run, before the first update (its metrics go out with the first update's)."""
        if self._pretrain_due:
            self._pretrain_due = False
            self._pending_metrics = self.demos.pretrain(self.algorithm, self.progress)

    def _counters(self) -> dict[str, float]:
        return {"updates": self.updates, "policy_version": self.algorithm.policy_version,
                "wall_s": time.monotonic() - self.t_start}  # fmt: skip

    # ------------------------------------------------------------------------------- weights out

    def _publish(self) -> None:
        """Push the trainable weights to every actor. The live tensors are passed, not a copy: the service
        casts them into its reused payload buffer before returning, and nothing trains meanwhile."""
        version = self.algorithm.policy_version
        if self._highest_pushed is None or version > self._highest_pushed:
            write_pushed_version(self._pushed_path, version)  # before any actor can see it
            self._highest_pushed = version
        params = Parameters(
            version=version,
            state=self.algorithm.model.trainable_tensors(),
            run_id=self.run_id,
            base_digest=self.frozen,
        )
        self.service.publish_weights(params, bf16=self.cfg.algorithm.push_bf16)

    # ------------------------------------------------------------------------------- checkpoints

    def _save(self, final: bool = False) -> Path:
        """One checkpoint: trainable tensors, optimiser, RNG and counters (the frozen base is rebuilt from
        the run config and checked by `frozen_digest`); plus the LeRobot `pretrained_model/` folder when
        `final` (at exit) or with learner.save_pretrained=every."""
        trainer = self.algorithm.trainer
        self.ranks.gather()  # zero1 (several ranks): the optimiser shards to this rank; else nothing
        state = {
            TRAINABLE_KEY: trainable_state(self.algorithm.model),
            "algorithm": self.algorithm.training_state(),
            "generator": trainer.generator.get_state(),
            DEDUP_KEY: {"seen": self.service.dedup_state()},
        }
        consumed = list(self._consumed)
        meta = {
            "format": STATE_FORMAT,
            "run_id": self.run_id,
            "updates": self.updates,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "policy_version": self.algorithm.policy_version,
            "weights_digest": weights_digest(self.algorithm.model.trainable_tensors()),
            "frozen_digest": self.frozen,
            # relative policy_path / base_path / stats_path in the config are relative to this folder
            "cwd": os.getcwd(),
            # trained into these weights: deleted below, and by a learner resumed from here if this one dies
            SPOOL_DONE_KEY: consumed,
        }
        try:
            meta["config"] = draccus.encode(self.cfg)
        except Exception as err:  # the checkpoint must not fail because a config field cannot be encoded
            meta["config_error"] = str(err)
        pretrained = final or self.save_pretrained == "every"
        path = self.ckpt.save(
            self.algorithm.policy_version,
            state,
            meta,
            write_extra=(lambda d: self.policy.save_pretrained(d / PRETRAINED_DIR)) if pretrained else None,
        )
        self.ranks.release()
        self._saved_at = self.updates
        self._last_checkpoint = path
        self.spool.remove(consumed)
        self._consumed = self._consumed[len(consumed) :]
        self.progress(
            f"learner: checkpoint {path} (v{self.algorithm.policy_version}, weights {meta['weights_digest']})"
            + (f" with {PRETRAINED_DIR}/" if pretrained else "")
        )
        return path

    def _final_save(self) -> None:
        """At exit: a checkpoint of the current weights with `pretrained_model/`. When the newest checkpoint
        already holds these weights (saved at this update, or just resumed), the folder is added to it."""
        try:
            if self.updates != self._saved_at:
                self._save(final=True)
                return
            path = self._last_checkpoint
            if path is not None and self.ckpt.latest() == path and not (path / PRETRAINED_DIR).is_dir():
                self.ckpt.add_folder(path, PRETRAINED_DIR, self.policy.save_pretrained)
                self.progress(
                    f"learner: checkpoint {path} (v{self.algorithm.policy_version}) + {PRETRAINED_DIR}/"
                )
        except Exception:
            log.exception("final checkpoint failed; the previous one is intact")

    def _resume(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Restore the newest intact checkpoint: a damaged one (unreadable or pickled state.pt, a meta key
        missing, weights that do not match their digest, ...) is skipped with one warning line naming the
        file and why, and the next older one is tried (`CheckpointManager.load_newest_intact`); none intact
        is a one-line error (exit 2). Episodes trained into a skipped checkpoint are not trained again (its
        save deleted their spool files)."""
        from app.learner.checkpoint import DamagedCheckpointError, check_learner_checkpoint

        if not self.ckpt.candidates():
            raise FileNotFoundError(
                f"--learner.resume=true but {self.ckpt.root} holds no finished checkpoint; "
                "start without --learner.resume or point --learner.output_dir at the run to continue"
            )

        def restore(path: Path) -> tuple[dict[str, Any], dict[str, Any], tuple[int, int, int, str]]:
            state, meta, counters = check_learner_checkpoint(path)  # DamagedCheckpointError: try older
            # the policy was rebuilt from this run's config: prove its frozen part is the checkpoint's, then
            # load the trainable tensors (a format-1 checkpoint holds the whole state dict)
            self.frozen = restore_policy_state(self.policy, state, meta, path, frozen=self.frozen)
            try:
                self.algorithm.load_training_state(state["algorithm"])
                self.algorithm.trainer.generator.set_state(state["generator"])
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
                raise DamagedCheckpointError(
                    path / "state.pt", f"its optimiser / RNG state does not load ({str(err)[:120]})"
                ) from None
            return state, meta, counters

        path, (state, meta, counters) = self.ckpt.load_newest_intact(restore)
        self.updates, self.env_steps, self.episodes, self.run_id = counters
        self._last_checkpoint = path
        self.progress(
            f"learner: resumed {path} policy v{self.algorithm.policy_version} updates {self.updates} "
            f"(weights {meta['weights_digest']})"
        )
        return state, meta
