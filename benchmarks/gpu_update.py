"""PI-RL update cost for SmolVLA-, pi0- and pi0.5-size models (random weights, built offline).

For each model: rollout sampling throughput (chunks/s through PI-RL's sampler, the actor's job), then the
PPO update (re-score stored chains, clipped surrogate + value loss, backward, clip, AdamW step over the
trainable groups: expert + noise head + value head, VLM frozen): seconds per update, chunks/s, and peak
GPU memory.

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


def ppo_update(model: Any, opt: torch.optim.Optimizer, obs: dict, s: Any, adv: torch.Tensor) -> float:
    """One PPO minibatch step (DESIGN.md section 5): clip 0.2, value loss, grad clip 1.0."""
    from app.rl.sampling import evaluate_chain

    ev = evaluate_chain(model, obs, s.chain, s.sde_step)
    ratio = torch.exp(ev.logprob - s.logprob)
    surrogate = torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
    loss = -surrogate.mean() + (ev.value - s.value).square().mean() - 0.005 * ev.entropy.mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()
    return float(loss.detach())


def bench(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from app.rl.config import PIRLConfig
    from app.rl.model import PIRLModel
    from app.rl.sampling import sample

    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        adapter, tok = build(name, args.tiny, device, folder)
        build_s = time.perf_counter() - t0
    cfg = PIRLConfig(method=args.method, num_steps=args.steps)
    model = PIRLModel(adapter, cfg).to(device)
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=5e-6, betas=(0.9, 0.95), eps=1e-5
    )
    counts = adapter.parameter_count()
    obs = make_obs(adapter, tok, args.batch, device)
    adv = torch.randn(args.batch, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    sample_s, update_s = [], []
    for i in range(args.warmup + args.iters):
        _sync(device)
        t = time.perf_counter()
        s = sample(model, obs, mode="train")
        _sync(device)
        t_mid = time.perf_counter()
        ppo_update(model, opt, obs, s, adv)
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
            f"{args.warmup} warm-up; update = re-score + PPO loss + backward + AdamW (expert + heads).",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
