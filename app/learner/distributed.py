"""One learner over several ranks (GPUs, or CPU processes with gloo) under torchrun: the torch.distributed
plumbing, and the loop of the ranks other than 0.

    torchrun --nproc_per_node 8 --no-python pirl learner --config C        # one box, 8 GPUs

Why torchrun and not `accelerate launch`: torchrun ships with torch (nothing to configure: no
`accelerate config` file per machine), sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR for the
env:// rendezvous that `init_process_group` reads, works the same with gloo on CPU (the tests) and NCCL on
GPUs, and its multi-node flags (--nnodes, --node_rank, --rdzv_endpoint) are the standard ones. The learner
needs nothing else from accelerate: it does its own device placement, mixed precision and checkpoints.

Who does what. Rank 0 is the learner as in a single process: it serves LeRobot's `LearnerService`, keeps
the spool, decides when to update, checkpoints, pushes weights and logs. The other ranks build the same
policy and trainer and follow rank 0's messages (`broadcast_object_list`, rank 0 the source):

- ("state", ...): the trainable weights, the trainer's optimiser / counters / generators / replay and the
  demo anchor batch: sent once before the first update (after a resume or critic pre-training), so every
  rank starts from rank 0's state whatever checkpoint it came from (resume works across rank counts: a
  checkpoint is the same whoever wrote it);
- ("update", batch): the update's whole batch; every rank then runs `PIRLAlgorithm.update` on it with the
  trainer in data-parallel mode (app/rl/data_parallel.py: each rank computes its share of every minibatch,
  the gradients are SUM all-reduced, so each step equals the single-process step);
- ("gather",): with `learner.distributed.strategy=zero1` (the AdamW state sharded across the ranks,
  app/rl/sharding.py) before rank 0 reads the whole optimiser state (a checkpoint, the stop before the
  final one): every rank sends its shard to rank 0;
- ("ping",): sent by rank 0 every few seconds while it waits for rollouts, so a dead rank is found within
  seconds rather than at the next update, and a long wait never trips the collective timeout;
- ("stop",): the run ended; the follower exits 0.

Why an explicit gradient all-reduce and not `DistributedDataParallel`: see app/rl/data_parallel.py (the
trainer calls several model methods per step, never one `forward()`, which is what DDP hooks).

Rank 0's side of this is `Coordinator` (the Learner's `ranks`). A rank that dies: the next collective on
rank 0 fails (at once for a killed process, after `learner.distributed.timeout_s` for a hung one); rank 0
prints one line and exits 1 without a final checkpoint when the failure hit mid-update (its weights would
be half an update), with one otherwise; the spool keeps every rollout not yet in a checkpoint, so
`--learner.resume=true` loses nothing. The actors hold and reconnect to the next learner as they always do.

Strategies (`learner.distributed.strategy`): `ddp` keeps a whole AdamW on every rank; `zero1` swaps the
trainer's AdamW for app/rl/sharding.py's `ShardedAdamW` on every rank once they share rank 0's state
(followers at start, rank 0 right after sending it), so each rank holds about 1/N of the optimiser state.
The swap happens here, not in the trainer: the trainer only ever calls `zero_grad`, `step`,
`param_groups` and `(load_)state_dict`, which `ShardedAdamW` keeps. With zero1 a rank that dies takes its
shard with it: rank 0 then writes no final checkpoint (the last periodic one stands).

With WORLD_SIZE unset or 1 nothing here runs (`init_from_env` returns None): no process group is created.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch

from app.rl.algorithm import PIRLAlgorithm
from app.rl.batch import RolloutBatch
from app.rl.trainer import PIRLTrainer
from app.run.config import PIRLRunConfig
from app.run.sections import LearnerDistributedConfig

if TYPE_CHECKING:
    from app.learner.loop import Learner

PING_S = 5.0  # rank 0's heartbeat while idle (capped at a third of the collective timeout)


class RankFailure(RuntimeError):
    """A collective failed: another rank died, hung past the timeout, or its connection broke."""


def world_size_from_env() -> int:
    """WORLD_SIZE as torchrun sets it (1 when unset: a plain process)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer, got {os.environ.get('WORLD_SIZE')!r}") from None


def is_comm_error(err: BaseException) -> bool:
    """Whether `err` came from a torch.distributed collective (not a bug in the update itself)."""
    dist_error = getattr(torch.distributed, "DistError", ())
    if dist_error and isinstance(err, dist_error):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(
        s in text for s in ("gloo", "nccl", "connection", "timed out", "broken pipe", "peer")
    )


@dataclass
class DistContext:
    """This process's rank in an initialised process group, and the device its policy lives on."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: str
    timeout_s: float
    strategy: str = "ddp"  # learner.distributed.strategy: "ddp" or "zero1" (sharded AdamW state)
    frozen_dtype: str = "keep"  # learner.distributed.frozen_dtype: "keep" or "bfloat16"
    _last_send: float = 0.0

    # -- rank 0 -> the others ---------------------------------------------------------------------
    def _send(self, message: tuple[Any, ...]) -> None:
        assert self.rank == 0
        try:
            torch.distributed.broadcast_object_list([message], src=0)
        except Exception as err:
            if is_comm_error(err):
                raise RankFailure(_short(err)) from None
            raise
        self._last_send = time.monotonic()

    def send_state(self, trainer: PIRLTrainer) -> None:
        """Rank 0's trainable weights and training state to every rank (before the first update)."""
        self.gather(trainer)
        self._send(("state", _to_cpu(training_payload(trainer))))

    def gather(self, trainer: PIRLTrainer) -> None:
        """zero1: every rank's optimiser shard to rank 0, so `trainer.state_dict()` is whole there (no-op
        with ddp, or when nothing stepped since the last gather)."""
        opt = trainer.optimizer
        if not is_sharded(opt) or opt.consolidated:
            return
        self._send(("gather",))
        _collective(opt.consolidate)

    def send_update(self, batch: RolloutBatch) -> None:
        self._send(("update", batch.to("cpu")))

    def heartbeat(self) -> None:
        """A ping when nothing was sent for a while (rank 0's loop calls it between drains)."""
        if time.monotonic() - self._last_send >= min(PING_S, self.timeout_s / 3):
            self._send(("ping",))

    def send_stop(self) -> None:
        self._send(("stop",))

    def receive(self) -> tuple[Any, ...]:
        box: list[Any] = [None]
        try:
            torch.distributed.broadcast_object_list(box, src=0)
        except Exception as err:
            if is_comm_error(err):
                raise RankFailure(_short(err)) from None
            raise
        return box[0]

    def close(self) -> None:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def init_from_env(cfg: PIRLRunConfig) -> DistContext | None:
    """The process group torchrun asked for, or None for a plain single process (WORLD_SIZE unset or 1:
    nothing is initialised, today's code path)."""
    world = world_size_from_env()
    if world == 1:
        return None
    dcfg: LearnerDistributedConfig = cfg.learner.distributed
    dcfg.validate()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    wants_cuda = cfg.policy is not None and str(cfg.policy.device).startswith("cuda")
    backend = dcfg.backend if dcfg.backend != "auto" else ("nccl" if wants_cuda else "gloo")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("learner.distributed.backend=nccl needs CUDA; this machine has none (use gloo)")
    device = "cpu"
    if wants_cuda:
        if not torch.cuda.is_available():
            raise ValueError(f"policy.device={cfg.policy.device} but this machine has no CUDA device")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices: "
                "--nproc_per_node must not exceed the GPUs of the box"
            )
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    torch.distributed.init_process_group(backend, timeout=timedelta(seconds=dcfg.timeout_s))
    return DistContext(
        rank, world, local_rank, backend, device, dcfg.timeout_s, dcfg.strategy, dcfg.frozen_dtype
    )


def attach(ctx: DistContext, trainer: PIRLTrainer) -> str | None:
    """Make `trainer` this rank's part of the data-parallel update; with frozen_dtype=bfloat16, hold the
    frozen base in bf16 (app/rl/frozen_dtype.py; the caller takes the frozen digest before). Returns a line
    saying what that cast did, or None."""
    trainer.set_data_parallel(ctx.rank, ctx.world_size)
    if ctx.strategy == "zero1":  # refused at start, before any rank serves or waits
        from app.rl.sharding import check_shardable

        check_shardable(trainer.optimizer)
    if ctx.frozen_dtype == "keep":
        return None
    from app.rl.frozen_dtype import FROZEN_DTYPES, hold_frozen_in

    done = hold_frozen_in(trainer.model, FROZEN_DTYPES[ctx.frozen_dtype])
    return (
        f"frozen base in {ctx.frozen_dtype} on every rank ({done.modules} layers; frozen weights "
        f"{done.bytes_before / 2**20:.1f} -> {done.bytes_after / 2**20:.1f} MiB per rank)"
    )


def is_sharded(optimizer: Any) -> bool:
    """Whether `optimizer` is a zero1 `ShardedAdamW` (without importing torch.distributed.optim for ddp)."""
    return getattr(optimizer, "consolidate", None) is not None


def shard(ctx: DistContext, trainer: PIRLTrainer) -> None:
    """zero1: replace the trainer's AdamW by a `ShardedAdamW` over the same groups, carrying its state
    (app/rl/sharding.py); nothing with ddp. No collective: every rank can do it when it suits it."""
    if ctx.strategy == "zero1":
        from app.rl.sharding import shard_optimizer

        trainer.optimizer = shard_optimizer(trainer.optimizer)


def training_payload(trainer: PIRLTrainer) -> dict[str, Any]:
    """Everything a follower needs to be rank 0's twin before an update."""
    return {
        "trainable": {k: v.detach() for k, v in trainer.get_trainable_state().items()},
        "trainer": trainer.state_dict(),
        "generator": trainer.generator.get_state(),
        "aux_generator": trainer.aux_generator.get_state(),
        "anchor": trainer.anchor_batch,
    }


def load_training_payload(trainer: PIRLTrainer, payload: dict[str, Any]) -> None:
    trainer.load_trainable_state(payload["trainable"])
    trainer.load_state_dict(payload["trainer"])
    trainer.generator.set_state(payload["generator"])
    trainer.aux_generator.set_state(payload["aux_generator"])
    trainer.set_anchor_batch(payload["anchor"])


class Coordinator:
    """Rank 0's side of the ranks for the Learner (app/learner/loop.py): its state out before the first
    update, the idle heartbeat, each update's batch out then its own share, the stop, and the one line a
    lost rank ends the run with. With the learner's `dist` None (a single process) every call but `update`
    (rank 0 of several only) does nothing."""

    def __init__(self, learner: Learner):
        self.learner = learner
        self.in_update = False  # a rank failed mid-update: rank 0's weights are half an update
        self.no_final: str | None = None  # why `may_save` said no final checkpoint
        if learner.dist is not None:
            line = attach(learner.dist, learner.algorithm.trainer)
            if line:
                learner.progress(f"learner: {line}")

    def start(self) -> None:
        """Every rank starts from rank 0's state (after a resume or critic pre-training); with zero1 rank 0
        then keeps only its shard of the optimiser state (sent whole, so each rank can keep its own)."""
        if self.learner.dist is not None:
            self.learner.dist.send_state(self.learner.algorithm.trainer)
            shard(self.learner.dist, self.learner.algorithm.trainer)

    def gather(self) -> None:
        """Before rank 0 reads the whole optimiser state (a checkpoint): zero1 gathers the shards."""
        if self.learner.dist is not None:
            self.learner.dist.gather(self.learner.algorithm.trainer)

    def release(self) -> None:
        """After a checkpoint: drop rank 0's gathered copy of the shards (host memory)."""
        opt = self.learner.algorithm.trainer.optimizer
        if is_sharded(opt):
            opt.release()

    def may_save(self, failed: RankFailure | None, unsaved: bool) -> bool:
        """Whether rank 0 can write its final checkpoint after `failed`: not mid-update (half an update),
        and with zero1, when updates are `unsaved`, only if the whole optimiser state is here (a dead rank
        took its shard with it)."""
        opt = self.learner.algorithm.trainer.optimizer
        if failed is not None and self.in_update:
            self.no_final = "mid-update, no final checkpoint"
        elif failed is not None and unsaved and is_sharded(opt) and not opt.consolidated:
            self.no_final = "the optimiser shards are not all here, no final checkpoint"
        return self.no_final is None

    def heartbeat(self) -> None:
        if self.learner.dist is not None:
            self.learner.dist.heartbeat()

    def update(self, batch: RolloutBatch):
        """The update on every rank: the batch out, then this rank's share of it."""
        dist = self.learner.dist
        assert dist is not None
        dist.send_update(batch)
        self.in_update = True
        try:
            stats = self.learner.algorithm.update(iter([batch]))
        except Exception as err:
            if is_comm_error(err):
                raise RankFailure(" ".join(str(err).split())[:160]) from None
            raise
        self.in_update = False
        return stats

    def stop(self, gather: bool = False) -> RankFailure | None:
        """Tell the other ranks the run ended (after gathering zero1's shards when `gather`: the final
        checkpoint needs them); the failure if one of them is already gone."""
        if self.learner.dist is not None:
            try:
                if gather:
                    self.gather()
                self.learner.dist.send_stop()
            except RankFailure as err:
                return err
        return None

    def failed(self, err: RankFailure) -> None:
        """The one line a lost rank ends the run with (module docstring)."""
        learner = self.learner
        where = self.no_final or "final checkpoint written"
        last = learner.ckpt.latest()
        learner.progress(
            f"learner: a rank of {learner.dist.world_size if learner.dist else '?'} failed ({err}); stopping "
            f"({where}); restart with --learner.resume=true to continue from {last or 'the start'}"
        )

    def close(self) -> None:
        if self.learner.dist is not None:
            self.learner.dist.close()


class Follower:
    """A rank other than 0: the same policy and trainer as rank 0, driven by its messages."""

    def __init__(self, cfg: PIRLRunConfig, ctx: DistContext, progress=print):
        from app.learner.recipe import apply_recipe

        self.ctx = ctx
        self.progress = progress
        self.policy = cfg.make_policy(device=ctx.device)
        apply_recipe(cfg, self.policy)  # the same policy.rl settings as rank 0's trainer
        self.algorithm = PIRLAlgorithm(self.policy, cfg.algorithm)
        self.algorithm.make_optimizers_and_scheduler()
        attach(ctx, self.algorithm.trainer)
        shard(ctx, self.algorithm.trainer)  # zero1: rank 0's state arrives whole; this rank keeps its shard

    def run(self) -> int:
        ctx = self.ctx
        self.progress(
            f"learner: rank {ctx.rank} of {ctx.world_size} ready ({ctx.backend}, {ctx.device}, pid {os.getpid()})"
        )
        updates = 0
        try:
            while True:
                message = ctx.receive()
                kind = message[0]
                if kind == "state":
                    load_training_payload(self.algorithm.trainer, message[1])
                elif kind == "update":
                    try:
                        self.algorithm.update(iter([message[1].to(ctx.device)]))
                    except Exception as err:
                        if is_comm_error(err):
                            raise RankFailure(_short(err)) from None
                        raise
                    updates += 1
                elif kind == "gather":
                    _collective(self.algorithm.trainer.optimizer.consolidate)
                elif kind == "stop":
                    self.progress(f"learner: rank {ctx.rank} stops after {updates} updates")
                    ctx.close()
                    return 0
        except RankFailure as err:
            self.progress(f"learner: rank {ctx.rank} lost the other ranks ({err}); stopping")
            return 1


def _collective(fn) -> None:
    """Run a collective, a communication failure as RankFailure."""
    try:
        fn()
    except Exception as err:
        if is_comm_error(err):
            raise RankFailure(_short(err)) from None
        raise


def _to_cpu(obj: Any) -> Any:
    """Tensors to CPU, recursively (a CUDA tensor pickled on rank 0 would unpickle onto cuda:0)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _short(err: BaseException) -> str:
    line = " ".join(str(err).split())
    return line[:160] + ("..." if len(line) > 160 else "")
