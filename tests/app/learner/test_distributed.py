"""One learner over 2 ranks (gloo on CPU, app/learner/distributed.py): the same update as one process, the
learner's rank-0 path with a follower, resume across rank counts, a real torchrun learner training an actor,
and a dead rank ending the run with one line."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from app.learner.checkpoint import CheckpointManager
from app.learner.loop import Learner, MetricsSink
from app.rl.algorithm import PIRLAlgorithm
from app.rl.digests import weights_digest
from app.run.launch import RunProcesses, free_port
from tests.app.conftest import tiny_run_config
from tests.app.learner.test_algorithm import _batch

REPO = Path(__file__).resolve().parents[3]
# 12-row batches in minibatches of 11 over 2 epochs: shares of 6/5 rows and of 1/0 rows (an empty share)
SPLIT = ("--policy.rl.ppo.epochs=2", "--policy.rl.ppo.minibatch_size=11")


def _init(rank: int, world: int, port: int) -> None:
    os.chdir(REPO)
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)


def _spawn(fn, port: int, *args) -> None:
    mp.start_processes(fn, args=(2, port, *args), nprocs=2, join=True, start_method="spawn")


def _algorithm(tmp: Path, *extra: str) -> PIRLAlgorithm:
    cfg = tiny_run_config(tmp, *SPLIT, *extra)
    algo = PIRLAlgorithm(cfg.make_policy(), cfg.algorithm)
    algo.make_optimizers_and_scheduler()
    return algo


def _batches(algo: PIRLAlgorithm) -> list:
    torch.manual_seed(0)
    first = _batch(algo.policy, n_episodes=3, chunks=4, version=0)
    second = _batch(algo.policy, n_episodes=3, chunks=4, version=0)
    second.policy_version[4:] = -1  # two of its episodes too old for the surrogate: uneven masks
    second.episode_id += 10
    return [first, second]


def _update_worker(rank: int, world: int, port: int, tmp: str, strategy: str) -> None:
    from app.learner.distributed import DistContext, shard

    _init(rank, world, port)
    algo = _algorithm(Path(tmp))
    algo.trainer.set_data_parallel(rank, world)
    shard(DistContext(rank, world, rank, "gloo", "cpu", 60.0, strategy), algo.trainer)
    metrics = []
    for batch in torch.load(Path(tmp) / "batches.pt", weights_only=False):
        algo.update(iter([batch]))
        metrics.append(algo.last_metrics)
    opt = algo.trainer.optimizer
    if strategy == "zero1":
        opt.consolidate()  # every rank's shard to rank 0
    torch.save(
        {
            "weights": algo.get_weights(),
            "metrics": metrics,
            "opt": opt.state_dict() if strategy == "ddp" or rank == 0 else None,
            "opt_numel": opt.local_state_numel() if strategy == "zero1" else None,
        },
        Path(tmp) / f"rank{rank}.pt",
    )
    torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "zero1"])
def test_two_ranks_make_the_same_update_as_one_process(tmp_path, monkeypatch, strategy):
    """Two PPO updates (2 epochs of 11-row minibatches, stale rows masked) on 2 gloo ranks give the
    parameters, optimiser moments and metrics of the same updates in one process, on both ranks; with
    zero1 each rank holds only its shard of the moments (about half), and rank 0 gathers them whole."""
    monkeypatch.chdir(REPO)
    single = _algorithm(tmp_path)
    batches = _batches(single)
    torch.save(batches, tmp_path / "batches.pt")
    before = {k: v.clone() for k, v in single.get_weights().items()}
    metrics = []
    for batch in batches:
        single.update(iter([batch]))
        metrics.append(single.last_metrics)
    _spawn(_update_worker, free_port(), str(tmp_path), strategy)
    want = single.get_weights()
    assert any(not torch.equal(before[k], want[k]) for k in want)  # the updates moved the weights
    exp_avg = single.trainer.optimizer.state_dict()["state"]
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for k, v in want.items():
            torch.testing.assert_close(got["weights"][k], v, rtol=1e-4, atol=1e-6, msg=k)
        if got["opt"] is not None:
            assert sorted(got["opt"]["state"]) == sorted(exp_avg)
            for i, st in got["opt"]["state"].items():
                torch.testing.assert_close(st["exp_avg_sq"], exp_avg[i]["exp_avg_sq"], rtol=1e-3, atol=1e-10)
        for mine, ref in zip(got["metrics"], metrics, strict=True):
            for key in ("losses/policy_loss", "losses/value_loss", "losses/approx_kl", "losses/grad_norm"):
                assert mine[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-6), key
            assert mine["rl/minibatch_steps"] == ref["rl/minibatch_steps"] == 4
    if strategy == "zero1":  # the moments are split: ~1/2 each (a parameter is never split), none twice
        shards = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False)["opt_numel"] for r in (0, 1)]
        whole = sum(t.numel() for st in exp_avg.values() for k, t in st.items() if k != "step")
        largest = 2 * max(t.numel() for t in want.values())
        assert sum(shards) == whole and max(shards) <= whole / 2 + largest < whole


def _learner_worker(rank: int, world: int, port: int, tmp: str, strategy: str) -> None:
    """Rank 0: a resumed `Learner` with a follower, two updates through its own `_update`, a checkpoint
    (with zero1 the checkpoint gathers the follower's optimiser shard)."""
    from app.learner.distributed import DistContext, Follower

    _init(rank, world, port)
    cfg = tiny_run_config(
        Path(tmp), *SPLIT, "--learner.resume=true", f"--learner.distributed.strategy={strategy}"
    )
    ctx = DistContext(rank, world, rank, "gloo", "cpu", 60.0, strategy)
    if rank != 0:
        assert Follower(cfg, ctx, progress=lambda _line: None).run() == 0
        return
    learner = Learner(cfg, progress=None, dist=ctx)
    learner.sink = MetricsSink(learner.cfg, learner.out, learner.run_id)
    learner.t_start, learner.steps_at_start = time.monotonic(), 0
    learner.ranks.start()  # rank 0's state out; zero1: then rank 0 keeps only its shard
    assert (type(learner.algorithm.trainer.optimizer).__name__ == "ShardedAdamW") == (strategy == "zero1")
    for batch in torch.load(Path(tmp) / "batches.pt", weights_only=False):
        learner.pending = [(_rollout_of(batch), batch)]
        learner._update()
    learner._save()
    ctx.send_stop()
    ctx.close()


def _rollout_of(batch):
    from app.transport.codec import Rollout

    return Rollout("a", int(batch.episode_id[0]), batch.to_dict(), {"steps": 10})


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "zero1"])
def test_a_checkpoint_resumes_across_rank_counts(tmp_path, monkeypatch, strategy):
    """1 rank -> 2 ranks -> 1 rank: a single-process checkpoint resumes on 2 ranks (the follower gets rank
    0's restored optimiser and weights), their two updates equal a 1-rank resume's, and the 2-rank
    checkpoint resumes in one process with the whole optimiser state (zero1: gathered from both shards)."""
    monkeypatch.chdir(REPO)
    cfg = tiny_run_config(tmp_path, *SPLIT)
    first = Learner(cfg, progress=None)
    first.sink = MetricsSink(first.cfg, first.out, first.run_id)
    first.t_start, first.steps_at_start = time.monotonic(), 0
    b0 = _batch(first.policy, n_episodes=3, chunks=4, version=0)
    first.pending = [(_rollout_of(b0), b0)]
    first._update()
    first._save()  # v1, written by one process
    batches = _batches(first.algorithm)
    for b in batches:
        b.episode_id += 100
        b.policy_version += 1
    torch.save(batches, tmp_path / "batches.pt")

    # the reference: the same two updates on a 1-rank resume, in a copy of the run
    import shutil

    ref_dir = tmp_path / "ref"
    shutil.copytree(tmp_path / "run", ref_dir / "run")
    ref = Learner(tiny_run_config(ref_dir, *SPLIT, "--learner.resume=true"), progress=None)
    ref.sink = MetricsSink(ref.cfg, ref.out, ref.run_id)
    ref.t_start, ref.steps_at_start = time.monotonic(), 0
    for b in batches:
        ref.pending = [(_rollout_of(b), b)]
        ref._update()

    _spawn(_learner_worker, free_port(), str(tmp_path), strategy)  # 2 ranks: resume, 2 updates, checkpoint v3

    back = Learner(tiny_run_config(tmp_path, *SPLIT, "--learner.resume=true"), progress=None)
    assert back.algorithm.policy_version == 3 and back.updates == 3
    assert CheckpointManager(tmp_path / "run" / "checkpoints").latest().name == "000003"
    got, want = back.algorithm.get_weights(), ref.algorithm.get_weights()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6, msg=k)
    assert weights_digest(got) != weights_digest(first.algorithm.get_weights())
    moments, ref_moments = (x.algorithm.trainer.optimizer.state_dict()["state"] for x in (back, ref))
    assert sorted(moments) == sorted(ref_moments) and moments
    for i, st in ref_moments.items():
        torch.testing.assert_close(moments[i]["exp_avg_sq"], st["exp_avg_sq"], rtol=1e-3, atol=1e-10)
        assert int(moments[i]["step"]) == int(st["step"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [int(r["charts/policy_version"]) for r in rows] == [1, 2, 3]  # rank 0 logged every update


# ------------------------------------------------------------------------------------- processes


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    cfg = json.loads((REPO / "configs" / "sim_pirl_reach.json").read_text())
    cfg["policy"]["native"].update({"obs_hidden": 32, "expert_hidden": 32, "time_embed_dim": 8})
    cfg["policy"]["rl"]["value_hidden"] = [32]
    cfg["policy"]["rl"]["noise"] = {"hidden": [16]}
    cfg["policy"]["rl"]["ppo"] = {"epochs": 1, "minibatch_size": 32}
    cfg["algorithm"]["chunks_per_update"] = 12
    cfg["episode"]["time_limit_s"] = 1.0
    cfg["learner"].update({"save_every": 1, "tensorboard": False, "torch_threads": 1})
    cfg["actor"]["torch_threads"] = 1
    cfg["transport"].update({"backoff_initial_s": 0.1, "backoff_max_s": 0.5, "keepalive_s": 2.0})
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    return path


def _update_no(line: str) -> int:
    m = re.match(r"learner: update (\d+) v(\d+)", line)
    return int(m.group(1)) if m else 0


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "zero1"])
def test_a_two_rank_learner_under_torchrun_trains_an_actor(tiny_config, tmp_path, strategy):
    """torchrun, 2 gloo ranks: rank 0 serves the actor, both ranks update, the actor gets new weights; at
    max_updates rank 0 writes the final checkpoint (zero1: after gathering rank 1's optimiser shard) and
    stops rank 1 (torchrun exits 0), and a single process resumes that checkpoint."""
    out = tmp_path / "run"
    run = RunProcesses(tiny_config, out, free_port(), env={"OMP_NUM_THREADS": "1"})
    # save_every=2: update 3 is saved by the final checkpoint only (zero1 gathers the shards before the stop)
    args = ["--learner.max_updates=3", "--learner.save_every=2", f"--learner.distributed.strategy={strategy}"]
    run.start_learner(args, ranks=2)
    run.start_actor(["--actor.actor_id=actor0"])
    try:
        run.wait_for(lambda n, ln: "rank 1 of 2 ready" in ln, timeout=60, what="rank 1")
        run.wait_for(lambda n, ln: _update_no(ln) >= 3, timeout=120, what="3 learner updates")
        assert run.learner.wait(60) == 0, run.tail()
        history = "\n".join(run.learner.history)
        assert "learner: rank 1 stops after 3 updates" in history, history[-2000:]
        assert re.search(r"loaded weights v[1-9]", "\n".join(run.actors[0].history)), run.tail()
        assert run.actors[0].alive  # the learner is gone: the actor holds, as with one process
    finally:
        run.stop()
    rows = run.metrics()
    assert [int(r["charts/policy_version"]) for r in rows] == [1, 2, 3]  # logged once, by rank 0
    cfg = tiny_run_config(tmp_path, "--learner.resume=true", f"--learner.output_dir={out}")
    resumed = Learner(cfg, progress=None)
    assert resumed.updates == 3 and resumed.algorithm.policy_version == 3
    moments = resumed.algorithm.trainer.optimizer.state_dict()["state"]
    trained = [p for g in resumed.algorithm.trainer.optimizer.param_groups for p in g["params"]]
    assert len(moments) == len(trained) and all(int(st["step"]) > 0 for st in moments.values())


@pytest.mark.slow
def test_a_dead_rank_stops_the_learner_with_one_line(tiny_config, tmp_path):
    """SIGKILL rank 1 while rank 0 waits for rollouts: rank 0's heartbeat fails, it prints one line naming
    the failure and exits non-zero; the actor keeps running (it holds until a learner is back)."""
    out = tmp_path / "run"
    run = RunProcesses(tiny_config, out, free_port(), env={"OMP_NUM_THREADS": "1"})
    run.start_learner(["--learner.max_updates=0"], ranks=2)
    run.start_actor(["--actor.actor_id=actor0"])
    try:
        _, line = run.wait_for(lambda n, ln: "rank 1 of 2 ready" in ln, timeout=60, what="rank 1")
        run.wait_for(lambda n, ln: _update_no(ln) >= 1, timeout=120, what="an update")
        os.kill(int(re.search(r"pid (\d+)", line).group(1)), signal.SIGKILL)
        _, fail = run.wait_for(lambda n, ln: "failed (" in ln, timeout=60, what="the failure line")
        assert fail.startswith("learner: a rank of 2 failed (") and "--learner.resume=true" in fail
        assert run.learner.wait(60) not in (0, None), run.tail()
        assert run.actors[0].alive
    finally:
        run.stop()


def test_a_single_process_creates_no_process_group_and_fsdp_is_refused(run_config, monkeypatch):
    from app.learner.distributed import init_from_env

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = run_config()
    assert init_from_env(cfg) is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_from_env(cfg) is None and not torch.distributed.is_initialized()
    assert Learner(cfg, progress=None).dist is None
    with pytest.raises(ValueError, match=r"strategy=fsdp is not supported; use zero1"):
        run_config("--learner.distributed.strategy=fsdp").validate("learner")
    with pytest.raises(ValueError, match=r"learner.distributed.backend must be one of"):
        run_config("--learner.distributed.backend=mpi").validate("learner")


def test_frozen_bf16_keeps_the_trainable_subset_fp32_and_the_digest_the_actors_check(run_config, tmp_path):
    """learner.distributed.frozen_dtype=bfloat16 on rank 0 of 2 (no collective runs in __init__): the
    frozen matrices are bf16, the trainable tensors fp32, and the frozen digest (pushes, checkpoints) is
    the one a single process with the base as built reports."""
    from app.learner.distributed import DistContext

    single = Learner(run_config(), progress=None)
    lines: list[str] = []
    ctx = DistContext(0, 2, 0, "gloo", "cpu", 60.0, "zero1", "bfloat16")
    cfg = run_config(
        f"--learner.output_dir={tmp_path / 'rank0'}", "--learner.distributed.frozen_dtype=bfloat16"
    )
    learner = Learner(cfg, progress=lines.append, dist=ctx)
    assert learner.frozen == single.frozen
    params = dict(learner.algorithm.model.named_parameters())
    assert {str(p.dtype) for p in params.values() if p.requires_grad} == {"torch.float32"}
    frozen = [p for p in params.values() if not p.requires_grad and p.dim() >= 2]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert any("frozen base in bfloat16 on every rank" in line for line in lines)
    with pytest.raises(ValueError, match=r"frozen_dtype must be one of"):
        run_config("--learner.distributed.frozen_dtype=fp8").validate("learner")
