"""The PI-RL learner: serve LearnerService, batch whole episodes, update, push weights, checkpoint.

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
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import draccus

from app.learner.checkpoint import PRETRAINED_DIR, CheckpointManager
from app.learner.service import PIRLLearnerService
from app.rl.algorithm import PIRLAlgorithm
from app.rl.batch import RolloutBatch
from app.rl.checkpoint_state import STATE_FORMAT, TRAINABLE_KEY, restore_policy_state, trainable_state
from app.rl.digests import frozen_digest, weights_digest
from app.run.config import PIRLRunConfig
from app.run.sections import ENDPOINT_FILE, METRICS_FILE
from app.transport.channel import make_server
from app.transport.codec import Parameters, Rollout

log = logging.getLogger("pirl.learner")


class MetricsSink:
    """metrics.jsonl always; TensorBoard and wandb when enabled. One `write(step, metrics)` per update."""

    def __init__(self, cfg: PIRLRunConfig, out: Path, run_id: str):
        self.path = out / METRICS_FILE
        self.tb = None
        self.wandb = None
        if cfg.learner.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(out / "tb"))
            except ImportError:  # tensorboard is a declared dependency; degrade rather than die
                log.warning("tensorboard is not installed; TensorBoard logging is off")
        if cfg.learner.wandb:
            import wandb  # optional; fails loudly if asked for and missing

            self.wandb = wandb.init(project=cfg.learner.wandb_project, id=run_id, resume="allow")

    def write(self, step: int, metrics: dict[str, float]) -> None:
        clean = {
            k: (v if isinstance(v, (int, str)) or math.isfinite(v) else None) for k, v in metrics.items()
        }
        with open(self.path, "a") as f:
            f.write(json.dumps({"update": step, "time": time.time(), **clean}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


class Learner:
    def __init__(
        self,
        cfg: PIRLRunConfig,
        progress: Callable[[str], None] | None = print,
        shutdown: threading.Event | None = None,
    ):
        cfg.validate("learner")
        self.save_pretrained = _save_pretrained_mode(cfg)
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
        self.policy = cfg.make_policy(device=cfg.policy.device if cfg.policy is not None else "cpu")
        self.algorithm = PIRLAlgorithm(self.policy, cfg.algorithm)
        self.algorithm.make_optimizers_and_scheduler()
        self.updates = 0
        self.env_steps = 0
        self.episodes = 0
        self.dropped_stale = 0
        self.run_id = uuid.uuid4().hex[:12]
        self._last_checkpoint: Path | None = None
        self.frozen = frozen_digest(self.algorithm.model)  # fixed for the run: only trainable tensors change
        if cfg.learner.resume:
            self._resume()
        self.pending: list[tuple[Rollout, RolloutBatch]] = []
        self.window: deque[dict[str, Any]] = deque(maxlen=cfg.learner.stats_window)
        self.service = PIRLLearnerService(self.shutdown)
        self.server = None
        self.port: int | None = None
        self._saved_at = self.updates if cfg.learner.resume else -1

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
        try:
            while not self.shutdown.is_set():
                self._drain(timeout=0.1)
                if self._pending_chunks() >= self.cfg.algorithm.chunks_per_update:
                    self._update()
                    if max_updates and self.updates >= max_updates:
                        self.progress(f"learner: reached {max_updates} updates")
                        break
        finally:
            self._final_save()
            self.sink.close()
            self.server.stop(grace=1.0).wait(timeout=5)
        return 0

    # -------------------------------------------------------------------------------- data in

    def _pending_chunks(self) -> int:
        return sum(len(b) for _, b in self.pending)

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
            except (KeyError, ValueError) as err:
                log.warning("dropped a malformed rollout from %s: %s", rollout.actor_id, err)
                continue
            self.pending.append((rollout, batch))
            self.env_steps += int(rollout.meta.get("steps", 0))
        while True:
            try:
                msg = self.service.interactions.get_nowait()
            except queue.Empty:
                break
            if msg.get("type") == "episode":
                self.window.append(msg)
                self.episodes += 1

    # ----------------------------------------------------------------------------------- update

    def _update(self) -> None:
        version = self.algorithm.policy_version
        limit = self.cfg.algorithm.drop_episode_after_versions
        kept = [(r, b) for r, b in self.pending if version - int(b.policy_version.max()) <= limit]
        self.dropped_stale += len(self.pending) - len(kept)
        self.pending = []
        if not kept:
            return
        batch = RolloutBatch.cat([b for _, b in kept])
        stats = self.algorithm.update(iter([batch]))
        self.updates += 1
        self._publish()
        metrics = stats.to_log_dict()
        metrics.update(self._charts(len(kept)))
        self.sink.write(self.updates, metrics)
        if self.cfg.learner.progress:
            self.progress(self._line(metrics))
        every = self.cfg.learner.save_every
        if every and self.updates % every == 0:
            self._save()

    def _charts(self, episodes_in_batch: int) -> dict[str, float]:
        elapsed = max(time.monotonic() - self.t_start, 1e-9)
        win = list(self.window)
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
        if win:
            charts["charts/success_rate"] = sum(bool(m.get("success")) for m in win) / len(win)
            charts["charts/intervention_rate"] = sum(
                float(m.get("intervention_rate", 0.0)) for m in win
            ) / len(win)
            charts["charts/episodic_return"] = sum(float(m.get("return", 0.0)) for m in win) / len(win)
            charts["charts/episodic_length"] = sum(float(m.get("steps", 0)) for m in win) / len(win)
        return charts

    def _line(self, m: dict[str, float]) -> str:
        def f(key: str, fmt: str = ".3f") -> str:
            v = m.get(key)
            return "-" if v is None else format(v, fmt)

        return (
            f"learner: update {self.updates} v{self.algorithm.policy_version} "
            f"chunks {int(m.get('rl/chunks', 0))} episodes {self.episodes} "
            f"success {f('charts/success_rate', '.2f')} return {f('charts/episodic_return', '.2f')} "
            f"interv {f('charts/intervention_rate', '.2f')} SPS {f('charts/SPS', '.0f')} "
            f"kl {f('losses/approx_kl', '.4f')} clipfrac {f('losses/clipfrac', '.3f')} "
            f"vloss {f('losses/value_loss', '.4f')} ev {f('losses/explained_variance', '.2f')}"
        )

    # ------------------------------------------------------------------------------- weights out

    def _publish(self) -> None:
        """Push the trainable weights to every actor. The live tensors are passed, not a copy: the service
        casts them into its reused payload buffer before returning, and nothing trains meanwhile."""
        params = Parameters(
            version=self.algorithm.policy_version,
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
        state = {
            TRAINABLE_KEY: trainable_state(self.algorithm.model),
            "algorithm": self.algorithm.training_state(),
            "generator": trainer.generator.get_state(),
        }
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
        self._saved_at = self.updates
        self._last_checkpoint = path
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

    def _resume(self) -> None:
        path = self.ckpt.latest()
        if path is None:
            raise FileNotFoundError(
                f"--learner.resume=true but {self.ckpt.root} holds no finished checkpoint; "
                "start without --learner.resume or point --learner.output_dir at the run to continue"
            )
        state, meta = CheckpointManager.load(path)
        # the policy was rebuilt from this run's config: prove its frozen part is the checkpoint's, then
        # load the trainable tensors (a format-1 checkpoint holds the whole state dict)
        self.frozen = restore_policy_state(self.policy, state, meta, path, frozen=self.frozen)
        self.algorithm.load_training_state(state["algorithm"])
        self.algorithm.trainer.generator.set_state(state["generator"])
        self.updates = int(meta["updates"])
        self.env_steps = int(meta["env_steps"])
        self.episodes = int(meta["episodes"])
        self.run_id = str(meta["run_id"])
        self._last_checkpoint = path
        self.progress(
            f"learner: resumed {path} policy v{self.algorithm.policy_version} updates {self.updates} "
            f"(weights {meta['weights_digest']})"
        )


def _save_pretrained_mode(cfg: PIRLRunConfig) -> str:
    """learner.save_pretrained: "final" (only the checkpoint written at exit) or "every"."""
    mode = getattr(cfg.learner, "save_pretrained", "final")
    if mode not in ("final", "every"):
        raise ValueError(f"learner.save_pretrained must be 'final' or 'every', got {mode!r}")
    return mode
