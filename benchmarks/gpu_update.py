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
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device (run with --tiny for a CPU smoke test)")
        return 0
    if args.tiny:
        torch.set_num_threads(1)
    args.batch = args.batch or (4 if args.tiny else 32)
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
