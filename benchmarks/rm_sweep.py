"""Fast in-process sweep of robot-minute PI-RL settings on the demo's reach task (issue 18).

One run = one config: the demo's BC start (app/demo/pipeline.py, exactly as `pirl demo` and
benchmarks/robot_time.py build it), then a loop that mirrors the runtime learner + actor without the
transport:

- roll out the current policy on `--arms` lockstep sim arms (app/demo/rollout.run_episodes: the actor's
  executor and `sample(mode="train")`, chunks, exec horizon), counting robot steps as the benchmark does:
  episode steps + `--reset_steps` drive-home steps per episode (the runtime's ~21 on reach);
- once at least `chunks_per_update` new chunks are pending, one `PIRLTrainer.update` on them (the learner's
  batch: whole episodes, `RolloutBatch.cat`); with the robot-minute recipe the trainer gets the critic
  pre-trained on the demo rows and the anchor batch first, both built by the learner's own code
  (app/learner/demos.py);
- at every `--marks` robot minute, the deterministic success on the benchmark's 100 fixed scenes
  (`app.demo.pipeline.evaluate`).

It is not the runtime: the actor here waits for each update (lockstep, no staleness beyond what
`--arms` episodes per round give) and runs unpaced. With `--arms 3` a round is about as many episodes as
the runtime learner saw per update (541 episodes, 166 updates in 15 robot minutes), so the update count
and gradient steps per robot minute match. Use it to rank settings fast, then confirm the winner with
benchmarks/robot_time.py.

    .venv/bin/python benchmarks/rm_sweep.py --recipe demo                      # preset + RL_OVERRIDES
    .venv/bin/python benchmarks/rm_sweep.py --recipe preset --set awr.coef=2   # preset, one change
    .venv/bin/python benchmarks/rm_sweep.py --recipe baseline                  # on-policy, 320 chunks

Options beyond the recipe: `--set key=value` (dotted `policy.rl` keys, as `learner.rl_overrides`),
`--chunks_per_update`, `--seed`, `--minutes`/`--marks`, `--no_critic_pretrain`/`--no_anchor`, and three that
the runtime has no equivalent of: `--sil_anchor N` (the prototype of `rl.anchor.success_chunks`, done here by
re-setting the anchor batch), `--noise_std MIN MAX` (the built noise head's bounds: `rl.noise.std_*` are
read only when the head is built, so `--set` cannot change them) and `--shaping` (the sim's dense reward).

Prints one line per mark: `mark <min> success <pct> episodes <n> updates <n> wall <s>`, and a final
`RESULT` line (config, successes at the marks) to paste into benchmarks/results/rm_sweep.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `app` and `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

FPS = 30


def parse_value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", choices=("baseline", "preset", "demo"), default="demo")
    p.add_argument("--set", action="append", default=[], help="dotted policy.rl key=value (after the recipe)")
    p.add_argument("--chunks_per_update", type=int, default=None)
    p.add_argument("--arms", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default="flow_noise")
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--marks", type=float, nargs="+", default=[5.0, 10.0, 15.0])
    p.add_argument("--reset_steps", type=int, default=21)
    p.add_argument("--eval_episodes", type=int, default=100)
    p.add_argument("--no_critic_pretrain", action="store_true")
    p.add_argument("--no_anchor", action="store_true")
    p.add_argument("--label", default="")
    # prototype of self-imitation through the anchor: successful policy chunks join the anchor batch
    p.add_argument(
        "--sil_anchor", type=int, default=0, help="keep up to N successful policy chunks in the anchor"
    )
    # rl.noise.std_min/max are read when the noise head is built (app/rl/heads.py), so a dotted override
    # after that is ignored; this sets the built head's bounds (the effect of building it with them)
    p.add_argument("--noise_std", type=float, nargs=2, default=None, metavar=("MIN", "MAX"))
    p.add_argument(
        "--shaping", type=float, default=0.0, help="dense reward shaping of the sim (in-process only)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from app.demo import cli
    from app.demo.pipeline import (
        build_policy,
        demo_episodes,
        evaluate,
        pretrain,
        train_seed,
    )
    from app.demo.rollout import run_episodes
    from app.demo.sim_envs import SimEnvConfig, SimEnvs
    from app.learner.demos import anchor_batch, demo_rows
    from app.learner.recipe import _set_dotted
    from app.rl.batch import RolloutBatch
    from app.rl.config_robot_minute import ROBOT_MINUTE_LEARNER_OVERRIDES, robot_minute_preset
    from app.rl.trainer import PIRLTrainer

    t0 = time.monotonic()
    baseline = args.recipe == "baseline"
    ccfg = cli.DemoCLIConfig(method=args.method, baseline=baseline, seed=args.seed)
    ccfg.resolve()
    dcfg = cli.demo_config(ccfg, Path("/tmp/rm_sweep_unused"))
    sim = SimEnvConfig()
    eval_envs = SimEnvs(8, sim)
    envs = SimEnvs(args.arms, SimEnvConfig(shaping=args.shaping))
    policy = build_policy(dcfg, eval_envs)
    model = policy.model
    demos = demo_episodes(dcfg, eval_envs)
    pretrain(dcfg, eval_envs, model, demos)
    before = evaluate(model, eval_envs, args.eval_episodes, args.seed)
    print(f"bc start: {before:.0%} ({time.monotonic() - t0:.0f} s)", flush=True)

    # the learner's recipe (app/learner/recipe.py), applied in place before the trainer exists
    rl = model.cfg
    new = rl
    cpu = 320 if baseline else ROBOT_MINUTE_LEARNER_OVERRIDES["chunks_per_update"]
    if not baseline:
        new = robot_minute_preset(rl)
        if args.recipe == "demo":
            for k, v in cli.RL_OVERRIDES.items():
                _set_dotted(new, k, v)
    for item in args.set:
        k, v = item.split("=", 1)
        _set_dotted(new, k, parse_value(v))
    for sub in ("replay", "critic_pretrain", "awr", "anchor"):
        getattr(new, sub).__post_init__()
    new.validate("policy.rl")
    for f in type(rl).__dataclass_fields__:
        setattr(rl, f, getattr(new, f))
    if args.chunks_per_update is not None:
        cpu = args.chunks_per_update

    if args.noise_std is not None:
        import math

        for mod in model.modules():
            if hasattr(mod, "logvar_min"):
                mod.logvar_min, mod.logvar_max = (2.0 * math.log(v) for v in args.noise_std)
    trainer = PIRLTrainer(model, seed=args.seed)
    if not baseline:
        demo_eps = [dict(ep) for ep in demos[0]]
        if rl.critic_pretrain.steps > 0 and not args.no_critic_pretrain:
            m = trainer.pretrain_critic(demo_rows(demo_eps, model, success_reward=rl.awr.success_reward))
            print(
                f"critic pretrain: {m.get('critic_pretrain/value_mse_before', 0):.4f} -> "
                f"{m.get('critic_pretrain/value_mse_after', 0):.4f}",
                flush=True,
            )
        if rl.anchor.coef > 0 and not args.no_anchor:
            trainer.set_anchor_batch(anchor_batch(demo_eps, model.policy.chunk_size))
    demo_anchor = trainer.anchor_batch
    sil: dict[str, torch.Tensor] | None = None

    gen = torch.Generator().manual_seed(args.seed + 1)
    marks = sorted(m for m in args.marks if m <= args.minutes)
    results: dict[float, float] = {0.0: before}
    robot_steps = episodes = updates = 0
    pending: list[RolloutBatch] = []
    train_succ: list[bool] = []
    budget = args.minutes * 60 * FPS
    next_mark = 0
    while robot_steps < budget:
        seeds = [train_seed(args.seed) + episodes + i for i in range(args.arms)]
        batch, stats = run_episodes(
            model, envs, seeds, "train", trainer.policy_version, episodes, generator=gen
        )
        episodes += len(stats)
        robot_steps += sum(s.steps for s in stats) + args.reset_steps * len(stats)
        train_succ += [s.success for s in stats]
        pending.append(batch)
        if args.sil_anchor:
            from app.rl.awr import success_rows

            b = batch.sorted_by_episode()
            ok = success_rows(b, 1.0) & ~b.intervention.bool()
            if bool(ok.any()):
                new = {k: v[ok] for k, v in b.obs.items()}
                new["action"] = model.policy.unnormalize_actions(b.chain[ok][:, -1].float())
                sil = (
                    new if sil is None else {k: torch.cat([sil[k], new[k]])[-args.sil_anchor :] for k in new}
                )
                parts = [d for d in (demo_anchor if not args.no_anchor else None, sil) if d is not None]
                trainer.set_anchor_batch({k: torch.cat([d[k] for d in parts]) for k in parts[0]})
        if sum(len(b) for b in pending) >= cpu:
            trainer.update(RolloutBatch.cat(pending))
            pending = []
            updates += 1
        while next_mark < len(marks) and robot_steps >= marks[next_mark] * 60 * FPS:
            sr = evaluate(model, eval_envs, args.eval_episodes, args.seed)
            results[marks[next_mark]] = sr
            recent = train_succ[-50:]
            print(
                f"mark {marks[next_mark]:g} success {sr:.0%} episodes {episodes} updates {updates} "
                f"train_success(last50) {sum(recent) / max(len(recent), 1):.0%} "
                f"wall {time.monotonic() - t0:.0f}",
                flush=True,
            )
            next_mark += 1
    envs.close()
    eval_envs.close()
    cfg_desc = {"recipe": args.recipe, "set": args.set, "chunks_per_update": cpu, "arms": args.arms}
    if args.no_critic_pretrain:
        cfg_desc["no_critic_pretrain"] = True
    if args.no_anchor:
        cfg_desc["no_anchor"] = True
    if args.sil_anchor:
        cfg_desc["sil_anchor"] = args.sil_anchor
    if args.shaping:
        cfg_desc["shaping"] = args.shaping
    if args.noise_std:
        cfg_desc["noise_std"] = args.noise_std
    line = " / ".join(f"{results[m]:.0%}" for m in [0.0, *marks] if m in results)
    print(
        f"RESULT {args.label} seed={args.seed} {json.dumps(cfg_desc)} success(0/{'/'.join(f'{m:g}' for m in marks)} min)"
        f" {line} episodes {episodes} updates {updates} train_success {success_rate_list(train_succ):.0%} "
        f"wall {time.monotonic() - t0:.0f}s",
        flush=True,
    )
    return 0


def success_rate_list(xs: list[bool]) -> float:
    return sum(xs) / max(len(xs), 1)


if __name__ == "__main__":
    raise SystemExit(main())
