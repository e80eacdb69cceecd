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

Nothing an actor sends can stop the loop (docs/runtime.md, "Hostile input and stops"): the service checks
every rollout against `rollout_spec(policy)` before accepting it, and stores it in the spool
(<output_dir>/spool) before acknowledging it. A spooled rollout is deleted once a checkpoint includes the
update that consumed it; a resumed (or restarted) learner trains what is left, exactly once. Every version
pushed is recorded first (<output_dir>/pushed_version.json), so a learner resumed from an older checkpoint
continues above every version its actors may have seen.
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
import torch

from app.learner.checkpoint import PRETRAINED_DIR, CheckpointManager
from app.learner.service import PIRLLearnerService, RolloutSpool
from app.rl.algorithm import PIRLAlgorithm
from app.rl.batch import OBS_PREFIX, OPTIONAL_FIELDS, ChunkRecord, RolloutBatch
from app.rl.checkpoint_state import STATE_FORMAT, TRAINABLE_KEY, restore_policy_state, trainable_state
from app.rl.digests import frozen_digest, weights_digest
from app.run.config import PIRLRunConfig
from app.run.sections import ENDPOINT_FILE, METRICS_FILE
from app.transport.channel import make_server
from app.transport.codec import (
    DecodeError,
    FieldSpec,
    Parameters,
    Rollout,
    RolloutSpec,
    decode_rollout,
)

log = logging.getLogger("pirl.learner")

SPOOL_DIR = "spool"  # accepted rollouts not yet in a checkpoint (one file each)
PUSHED_VERSION_FILE = "pushed_version.json"  # the highest policy version ever pushed from this output_dir
SPOOL_DONE_KEY = "spool_done"  # meta.json: spool files consumed by the updates this checkpoint holds
DEDUP_KEY = "service"  # state.pt: the service's de-duplication window
IMAGE_OBS_PREFIX = OBS_PREFIX + "observation.images."


def rollout_spec(policy: Any) -> RolloutSpec:
    """What a rollout must hold to be trained by `policy`: the fields, dtypes and per-row shapes of a dry
    `RolloutBatch` built the way an actor builds one (`ChunkRecord` -> `RolloutBatch.from_records`) from a
    zero observation of the policy's input features (through its pre-processor for a VLA: task tokens and
    mask). Camera frames keep their channels; their height and width are free but fixed for the run (both
    encoders accept any size; a batch needs one). Integer ranges: chunk_index and policy_version >= 0,
    sde_step in [-1, K), language token ids below the tokenizer's size."""
    model = policy.model
    pol = model.policy
    k = int(model.cfg.num_steps)
    obs = _dry_observation(policy)
    record = ChunkRecord(
        obs={key: v[0] for key, v in obs.items()},
        reward=0.0,
        chain=torch.zeros(k + 1, pol.chunk_size, pol.model_action_dim),
    )
    template = RolloutBatch.from_records([record], pol.action_dim).to_dict()
    ranges: dict[str, tuple[int | None, int | None]] = {
        "chunk_index": (0, None),
        "policy_version": (0, None),
        "sde_step": (-1, k),
    }
    vocab = _vocabulary_size(policy)
    fields = {}
    for name, t in template.items():
        shape: tuple[int | None, ...] = tuple(int(d) for d in t.shape[1:])
        if name.startswith(IMAGE_OBS_PREFIX) and len(shape) == 3:
            shape = (shape[0], None, None)
        low, high = ranges.get(name, (None, None))
        if name.startswith(OBS_PREFIX) and not t.is_floating_point() and t.dtype != torch.bool:
            low, high = 0, vocab  # token ids index an embedding
        fields[name] = FieldSpec(t.dtype, shape, low, high)
    return RolloutSpec(fields, optional=OPTIONAL_FIELDS)


@torch.no_grad()
def _dry_observation(policy: Any) -> dict[str, torch.Tensor]:
    """A batch of one zero observation as the policy reads it (what the actor stores per row)."""
    from lerobot.configs import FeatureType

    feats = getattr(policy.config, "input_features", None) or {}
    raw = {
        key: torch.zeros(1, *feat.shape)
        for key, feat in feats.items()
        if key.startswith("observation.")
        and feat.type in (FeatureType.STATE, FeatureType.ENV, FeatureType.VISUAL)
    }
    prepare = getattr(policy, "prepare_observation", None)  # a VLA's LeRobot pre-processor, as the actor
    obs = prepare(raw) if prepare is not None else raw
    return {key: v.detach().cpu() for key, v in obs.items()}


def _vocabulary_size(policy: Any) -> int | None:
    """Size of the tokenizer of a VLA's pre-processor (None: no tokenizer)."""
    for step in getattr(getattr(policy, "preprocessor", None), "steps", ()) or ():
        tokenizer = getattr(step, "input_tokenizer", None) or getattr(step, "tokenizer", None)
        if tokenizer is not None:
            try:
                return len(tokenizer)
            except TypeError:
                return None
    return None


def _check_meta(rollout: Rollout) -> None:
    steps = rollout.meta.get("steps", 0)
    if type(steps) is not int or not 0 <= steps < 2**40:
        raise DecodeError(
            f"transitions: meta 'steps' must be a non-negative integer, got {str(steps)[:40]!r}"
        )


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
        self._highest_pushed = _read_pushed_version(self._pushed_path)
        spool_done: list[str] = []
        if cfg.learner.resume:
            state, meta = self._resume()
            self.service.restore_dedup(state.get(DEDUP_KEY, {}).get("seen", ()))
            spool_done = [str(n) for n in meta.get(SPOOL_DONE_KEY, ())]
        self._load_spool(spool_done)
        self._continue_above_pushed()
        self.server = None
        self.port: int | None = None
        self._saved_at = self.updates if cfg.learner.resume else -1

    def validate_rollout(self, rollout: Rollout) -> None:
        """What the service runs on every rollout before accepting it: `DecodeError` if this policy cannot
        train on it (see `rollout_spec`)."""
        self.spec.check(rollout.batch)
        _check_meta(rollout)

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
        try:
            while not self.shutdown.is_set():
                self._drain(timeout=0.1)
                if self._pending_chunks() >= self.cfg.algorithm.chunks_per_update:
                    self._update()
                    if max_updates and self.updates >= max_updates:
                        self.progress(f"learner: reached {max_updates} updates")
                        break
        finally:
            self.service.close()  # sends from now on: UNAVAILABLE, re-sent to the next learner
            self._final_save()
            self.sink.close()
            self.server.stop(grace=1.0).wait(timeout=5)
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
        stats = self.algorithm.update(iter([batch]))
        for r, _ in consumed:  # trained (or dropped stale): in the spool until a checkpoint holds this update
            self._consume(r)
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
        version = self.algorithm.policy_version
        if self._highest_pushed is None or version > self._highest_pushed:
            _write_pushed_version(self._pushed_path, version)  # before any actor can see it
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
        return state, meta


def _read_pushed_version(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["highest_pushed"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is damaged ({err}); it records the highest version pushed") from err


def _write_pushed_version(path: Path, version: int) -> None:
    """Atomically and durably: a learner killed right after a push still knows about it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps({"highest_pushed": int(version)}))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_pretrained_mode(cfg: PIRLRunConfig) -> str:
    """learner.save_pretrained: "final" (only the checkpoint written at exit) or "every"."""
    mode = getattr(cfg.learner, "save_pretrained", "final")
    if mode not in ("final", "every"):
        raise ValueError(f"learner.save_pretrained must be 'final' or 'every', got {mode!r}")
    return mode
