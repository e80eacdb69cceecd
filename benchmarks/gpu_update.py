"""PI-RL update cost for SmolVLA-, pi0- and pi0.5-size models (random weights, built offline).

For each model: rollout sampling throughput (chunks/s through PI-RL's sampler, the actor's job), then one
PPO update by the core trainer, `app.rl.trainer.PIRLTrainer.update` (value recompute, GAE, re-score of the
stored chains, clipped surrogate + value loss + entropy bonus, backward, grad-norm clip, AdamW step over
the trainable groups: expert + noise head + value head, VLM frozen), one epoch of one minibatch holding
the whole batch: seconds per update, chunks/s, and peak GPU memory.

    python benchmarks/gpu_update.py                      # full size on CUDA (skips cleanly without CUDA)
    python benchmarks/gpu_update.py --tiny               # tiny models on CPU: a smoke test of the script
    python benchmarks/gpu_update.py --models pi0 --batch 32 --method flow_sde
    python benchmarks/gpu_update.py --models smolvla --device cpu --batch 1 --iters 1   # full size, slow
    python benchmarks/gpu_update.py --models pi0 --ranks 8        # data parallel: 1 rank, then 8 (NCCL)
    python benchmarks/gpu_update.py --tiny --models pi05 --ranks 2 # gloo on CPU: a smoke test of that mode

`--ranks N` times the learner's data-parallel update (app/learner/distributed.py: every rank runs
`PIRLTrainer.update` on the same global batch, computing its share of each minibatch, gradients all-reduced)
at 1 rank and at N ranks, each rank a process (torch.multiprocessing spawn; NCCL on CUDA, gloo on CPU):
seconds per update, updates/s, chunks/s (global batch / update time), the bytes of the optimiser state and
of the weights one rank holds (counted from its live tensors after the updates: exact, on any device), and
peak memory per rank (GPU GiB allocated on CUDA; peak RSS MiB of the whole process on CPU, which the
interpreter, torch and the libraries dominate for tiny models). `--batch` is the global batch.
`--strategy zero1` shards the AdamW state across the N ranks (app/rl/sharding.py; at 1 rank it is the
plain AdamW); `--frozen-dtype bfloat16` holds the frozen base in bf16 on every rank, 1 rank included
(app/rl/frozen_dtype.py).

    python benchmarks/gpu_update.py --tiny --models pi0 --ranks 2 --strategy zero1 --frozen-dtype bfloat16

Random weights give the same cost as trained ones; nothing here says anything about task success.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from typing import Any

import torch

TASKS = ["pick the red cube", "put the block in the bowl"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(name: str, tiny: bool, device: torch.device, folder: str) -> tuple[Any, Any]:
    """(adapter, tokenizer) for "smolvla" | "pi0" | "pi05"."""
    from app.rl.adapters import tiny as builders
    from app.rl.adapters.pi0 import PI0Adapter
    from app.rl.adapters.smolvla import SmolVLAAdapter

    if name == "smolvla":
        if tiny:
            policy = builders.build_tiny_smolvla(folder)
        else:
            policy = builders.build_smolvla_random(folder, device=str(device))
        return SmolVLAAdapter(policy).to(device), policy.model.vlm_with_expert.processor.tokenizer
    if tiny:
        policy, tok = builders.build_tiny_pi0(name)
    else:
        policy, tok = builders.build_pi0_random(name, device=str(device))
    return PI0Adapter(policy).to(device), tok


def make_obs(adapter: Any, tok: Any, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    from app.rl.adapters.tiny import tokenize

    cfg = adapter.policy.config
    obs = {"observation.state": torch.randn(batch, 6, device=device)}
    for key, feat in cfg.image_features.items():
        obs[key] = torch.rand(batch, *feat.shape, device=device)
    obs.update(tokenize(tok, [TASKS[i % 2] for i in range(batch)], cfg.tokenizer_max_length, device))
    return obs


def rollout_batch(model: Any, obs: dict[str, torch.Tensor], s: Any, episode_len: int = 4) -> Any:
    """The sampled chunks as the learner receives them: episodes of `episode_len` chunks, random rewards,
    a success at each episode's end, no takeovers. Random data costs the same as real data."""
    from app.rl.batch import RolloutBatch

    n, dev = s.chain.shape[0], s.chain.device
    index = torch.arange(n, device=dev)
    zeros = torch.zeros(n, dtype=torch.bool, device=dev)
    return RolloutBatch(
        obs={k: v.detach() for k, v in obs.items()},
        chain=s.chain.detach(),
        sde_step=s.sde_step.long(),
        logprob=s.logprob.float(),
        value=s.value.float(),
        reward=torch.rand(n, device=dev),
        done=index % episode_len == episode_len - 1,
        truncated=zeros,
        bootstrap_value=torch.zeros(n, device=dev),
        intervention=zeros,
        human_action=torch.zeros(n, model.policy.chunk_size, model.policy.action_dim, device=dev),
        takeover_start=zeros,
        policy_version=torch.zeros(n, dtype=torch.long, device=dev),
        episode_id=index // episode_len,
        chunk_index=index % episode_len,
        group_id=torch.full((n,), -1, dtype=torch.long, device=dev),
    )


def bench(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from app.rl.config import PIRLConfig, PPOConfig
    from app.rl.model import PIRLModel
    from app.rl.sampling import sample
    from app.rl.trainer import PIRLTrainer

    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        adapter, tok = build(name, args.tiny, device, folder)
        build_s = time.perf_counter() - t0
    # one epoch, one minibatch of the whole batch: one gradient step per update (PI-RL's default
    # optimiser settings and losses, docs/algorithm.md "The update")
    ppo = PPOConfig(epochs=1, minibatch_size=args.batch, critic_warmup_updates=0)
    cfg = PIRLConfig(method=args.method, num_steps=args.steps, ppo=ppo)
    model = PIRLModel(adapter, cfg).to(device)
    trainer = PIRLTrainer(model, seed=0)
    counts = adapter.parameter_count()
    obs = make_obs(adapter, tok, args.batch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    sample_s, update_s = [], []
    for i in range(args.warmup + args.iters):
        _sync(device)
        t = time.perf_counter()
        s = sample(model, obs, mode="train")
        _sync(device)
        t_mid = time.perf_counter()
        trainer.update(rollout_batch(model, obs, s))
        _sync(device)
        if i >= args.warmup:
            sample_s.append(t_mid - t)
            update_s.append(time.perf_counter() - t_mid)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    su, ss = statistics.median(update_s), statistics.median(sample_s)
    return {
        "model": name,
        "params_M": counts["total"] / 1e6,
        "trainable_M": model.trainable_parameter_count() / 1e6,
        "build_s": build_s,
        "sample_s": ss,
        "sample_chunks_per_s": args.batch / ss,
        "update_s": su,
        "update_chunks_per_s": args.batch / su,
        "peak_GiB": peak,
    }


def _rank_worker(rank: int, world: int, port: int, name: str, opts: dict[str, Any], out: str) -> None:
    """One rank of `--ranks`: the model, then timed data-parallel updates; results to <out>/<rank>.pt."""
    import os
    import resource

    from app.rl.config import PIRLConfig, PPOConfig
    from app.rl.model import PIRLModel
    from app.rl.sampling import sample
    from app.rl.trainer import PIRLTrainer

    args = argparse.Namespace(**opts)
    cuda = args.device.startswith("cuda")
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if args.tiny:
        torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same weights and batches on every rank
    with tempfile.TemporaryDirectory() as folder:
        adapter, tok = build(name, args.tiny, device, folder)
    ppo = PPOConfig(epochs=1, minibatch_size=args.batch, critic_warmup_updates=0)
    model = PIRLModel(adapter, PIRLConfig(method=args.method, num_steps=args.steps, ppo=ppo)).to(device)
    trainer = PIRLTrainer(model, seed=0)
    trainer.set_data_parallel(rank, world)
    if args.frozen_dtype == "bfloat16":
        from app.rl.frozen_dtype import hold_frozen_in

        hold_frozen_in(model)
    if args.strategy == "zero1" and world > 1:
        from app.rl.sharding import shard_optimizer

        trainer.optimizer = shard_optimizer(trainer.optimizer)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    update_s = []
    for i in range(args.warmup + args.iters):
        torch.manual_seed(1000 + i)
        obs = make_obs(adapter, tok, args.batch, device)
        batch = rollout_batch(model, obs, sample(model, obs, mode="train"))
        batch.policy_version[:] = trainer.policy_version  # fresh: the surrogate sees every row
        _sync(device)
        t = time.perf_counter()
        trainer.update(batch)
        _sync(device)
        if i >= args.warmup:
            update_s.append(time.perf_counter() - t)
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    from app.rl.sharding import optimizer_state_bytes

    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    optim = optimizer_state_bytes(trainer.optimizer)
    torch.save({"update_s": update_s, "peak": peak, "optim": optim, "weights": weights}, f"{out}/{rank}.pt")
    if world > 1:
        torch.distributed.destroy_process_group()


def bench_ranks(name: str, args: argparse.Namespace, ranks: int) -> dict[str, Any]:
    """Median update time over the ranks' slowest; the largest optimiser state, weights and peak memory
    of a rank."""
    import torch.multiprocessing as mp

    from app.run.launch import free_port

    with tempfile.TemporaryDirectory() as out:
        opts = dict(vars(args), device=str(args.device))
        mp.start_processes(
            _rank_worker, args=(ranks, free_port(), name, opts, out), nprocs=ranks, start_method="spawn"
        )
        results = [torch.load(f"{out}/{r}.pt") for r in range(ranks)]
    per_iter = [max(r["update_s"][i] for r in results) for i in range(args.iters)]
    su = statistics.median(per_iter)
    return {
        "model": name,
        "ranks": ranks,
        "update_s": su,
        "updates_per_s": 1.0 / su,
        "chunks_per_s": args.batch / su,
        "optim_MiB": max(r["optim"] for r in results) / 2**20,
        "weights_MiB": max(r["weights"] for r in results) / 2**20,
        "peak": max(r["peak"] for r in results),
    }


def main_ranks(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and torch.cuda.device_count() < args.ranks:
        print(
            f"skipped: --ranks {args.ranks} needs {args.ranks} CUDA devices, found {torch.cuda.device_count()}"
        )
        return 0
    unit = "peak GiB" if device.type == "cuda" else "peak RSS MiB"
    print(
        f"device={device} batch={args.batch} K={args.steps} method={args.method} tiny={args.tiny} "
        f"ranks=1,{args.ranks} strategy={args.strategy} frozen_dtype={args.frozen_dtype}"
    )
    print(
        f"{'model':8} {'ranks':>5} {'update s':>9} {'upd/s':>8} {'chunk/s':>8} {'optim MiB':>10} "
        f"{'weights MiB':>11} {unit:>12}"
    )
    rows = []
    for name in args.models:
        for n in sorted({1, args.ranks}):
            r = bench_ranks(name, args, n)
            rows.append([r["model"], str(n), f"{r['update_s']:.3f}", f"{r['updates_per_s']:.2f}",
                         f"{r['chunks_per_s']:.2f}", f"{r['optim_MiB']:.3f}", f"{r['weights_MiB']:.3f}",
                         f"{r['peak']:.2f}"])  # fmt: skip
            print(
                f"{r['model']:8} {n:5d} {r['update_s']:9.3f} {r['updates_per_s']:8.2f} "
                f"{r['chunks_per_s']:8.2f} {r['optim_MiB']:10.3f} {r['weights_MiB']:11.3f} {r['peak']:12.2f}",
                flush=True,
            )
    from benchmarks.common import report

    print()
    print(
        report(
            f"PI-RL data-parallel update ({'tiny' if args.tiny else 'full size'}, random weights)",
            [
                "model",
                "ranks",
                "update s",
                "updates/s",
                "chunks/s",
                "optim MiB/rank",
                "weights MiB/rank",
                unit,
            ],
            rows,
            notes=f"global batch {args.batch} chunks split over the ranks, K={args.steps}, {args.method}, "
            f"median of {args.iters} after {args.warmup} warm-up (slowest rank per update); "
            f"{'nccl' if device.type == 'cuda' else 'gloo'}; PIRLTrainer.update with all-reduced gradients; "
            f"strategy {args.strategy} at N ranks, frozen base {args.frozen_dtype}; optim/weights MiB: "
            "bytes of the AdamW state / parameters one rank holds (the largest rank), counted from its tensors.",
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--models", nargs="+", default=["smolvla", "pi0", "pi05"], choices=["smolvla", "pi0", "pi05"]
    )
    ap.add_argument("--tiny", action="store_true", help="tiny models on CPU (smoke test of this script)")
    ap.add_argument(
        "--device",
        default=None,
        help="torch device (default: cuda; cpu with --tiny). Full size on cpu is slow",
    )
    ap.add_argument(
        "--batch", type=int, default=None, help="chunks per update minibatch (default 32, tiny 4)"
    )
    ap.add_argument("--steps", type=int, default=4, help="denoising steps K")
    ap.add_argument("--method", default="flow_noise", choices=["flow_noise", "flow_sde"])
    ap.add_argument("--iters", type=int, default=3, help="timed iterations (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument(
        "--ranks", type=int, default=0, help="data-parallel mode: time updates at 1 and at N ranks"
    )
    ap.add_argument(
        "--strategy",
        default="ddp",
        choices=["ddp", "zero1"],
        help="with --ranks: ddp (a whole AdamW per rank) or zero1 (AdamW state sharded over the ranks)",
    )
    ap.add_argument(
        "--frozen-dtype",
        default="keep",
        choices=["keep", "bfloat16"],
        help="with --ranks: hold the frozen base in bf16 on every rank (learner.distributed.frozen_dtype)",
    )
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device (run with --tiny for a CPU smoke test)")
        return 0
    if args.tiny:
        torch.set_num_threads(1)
    args.batch = args.batch or (4 if args.tiny else 32)
    if args.ranks:
        if args.ranks < 1 or args.batch < args.ranks:
            ap.error(f"--ranks must be >= 1 and <= --batch ({args.batch}), got {args.ranks}")
        args.device = str(device)
        return main_ranks(args)
    print(f"device={device} batch={args.batch} K={args.steps} method={args.method} tiny={args.tiny}")
    header = f"{'model':8} {'params M':>9} {'train M':>8} {'sample s':>9} {'chunk/s':>8} {'update s':>9} {'chunk/s':>8} {'peak GiB':>9}"
    print(header)
    rows = []
    for name in args.models:
        r = bench(name, args, device)
        rows.append(
            [r["model"], f"{r['params_M']:.2f}", f"{r['trainable_M']:.2f}", f"{r['sample_s']:.3f}",
             f"{r['sample_chunks_per_s']:.2f}", f"{r['update_s']:.3f}", f"{r['update_chunks_per_s']:.2f}",
             "n/a" if device.type != "cuda" else f"{r['peak_GiB']:.2f}"]
        )  # fmt: skip
        print(
            f"{r['model']:8} {r['params_M']:9.2f} {r['trainable_M']:8.2f} {r['sample_s']:9.3f} "
            f"{r['sample_chunks_per_s']:8.2f} {r['update_s']:9.3f} {r['update_chunks_per_s']:8.2f} {r['peak_GiB']:9.2f}",
            flush=True,
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
    from benchmarks.common import report

    cols = ["model", "params M", "trainable M", "sample s", "sample chunks/s", "update s", "update chunks/s"]
    print()
    print(
        report(
            f"PI-RL update cost ({'tiny' if args.tiny else 'full size'}, random weights)",
            [*cols, "peak GiB"],
            rows,
            notes=f"batch {args.batch} chunks, K={args.steps}, {args.method}, median of {args.iters} after "
            f"{args.warmup} warm-up; update = PIRLTrainer.update (values, GAE, re-score, PPO loss, "
            "backward, AdamW on expert + heads), 1 epoch x 1 minibatch.",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
