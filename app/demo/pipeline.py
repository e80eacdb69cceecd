"""The demo's learning recipe, in one process: scripted demos -> few-shot BC -> evaluate -> PI-RL -> evaluate.

This is the algorithmic half of `pirl demo` with no transport in between, so it is what benchmark 1, the
shortened CI demo and hyper-parameter tuning run. `pirl demo` runs the same steps (same config, same
seeds) with the PI-RL rounds split across a learner and an actor process on loopback.

Everything is seeded: demo seeds, evaluation seeds (disjoint from training seeds) and torch generators.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from app.demo.rollout import EpisodeStats, collect_demos, run_episodes, success_rate
from app.demo.sim_envs import SimEnvConfig, SimEnvs
from app.rl.batch import RolloutBatch
from app.rl.bc import bc_pretrain, floored_normalization_stats, make_chunks
from app.rl.config import PIRLConfig
from app.rl.lerobot_policy import PIRLFlowConfig, PIRLFlowPolicy
from app.rl.model import PIRLModel
from app.rl.native import STATE_KEY, NativeFlowConfig
from app.rl.trainer import PIRLTrainer

# Seed ranges: demos, training episodes and evaluation episodes never share a reset.
DEMO_SEED0 = 10_000
TRAIN_SEED0 = 100_000
EVAL_SEED0 = 1_000_000


@dataclass
class BCConfig:
    """Few-shot behaviour cloning: deliberately few demos, so the starting policy is mediocre."""

    # Few demos, trained to convergence: a sharp policy that is right near the scenes it saw and off by a
    # few cm elsewhere (49-63 % success over seeds 0-2). Flow-Noise took it to 83-97 % (90 % on average) in
    # 20 min on one core of the 2-core development VM (docs/benchmarks.md, benchmark 1).
    # The alternative way to be mediocre, many demos but few steps (20 x 100, about 25 %), leaves the flow
    # unable to contract its initial noise x_0: the outcome then depends on x_0, which PPO cannot credit,
    # and PI-RL stalled below 50 % however long it ran.
    demos: int = 12  # scripted expert episodes
    steps: int = 1000  # gradient steps of flow-matching BC
    batch_size: int = 128
    lr: float = 1e-3


@dataclass
class RLRunConfig:
    """How much PI-RL the demo runs and how often it measures success."""

    updates: int = 40  # PI-RL updates (each on a fresh on-policy batch)
    # Chunks collected between two updates (whole episodes, at least this many chunks): the learner's
    # `algorithm.chunks_per_update`, so the in-process and the runtime demo train on the same batch size.
    chunks_per_update: int = 320
    wall_budget_s: float = 0.0  # stop after this many seconds of PI-RL (0: no limit)
    eval_episodes: int = 50  # deterministic (ODE) episodes per evaluation, fixed seeds
    eval_every: int = 5  # evaluate every N updates (and always at the end)
    parallel_envs: int = 8  # arms stepped side by side (one batched policy call)
    # Episodes per reset state (GRPO groups; also used by PPO when > 1). 1: every episode has its own reset.
    group_size: int = 1


def default_pirl(method: str = "flow_noise") -> PIRLConfig:
    """PI-RL settings tuned for the small native policy on the sim reach task (see docs/demo.md)."""
    cfg = PIRLConfig(method=method, num_steps=4, exec_horizon=5)
    cfg.optim.actor_lr = 1e-4
    if method == "flow_sde":
        # Every step stochastic and scored, not the hybrid one-step chain that saves re-scoring cost on big
        # VLAs: on this small policy the hybrid chain's single-term ratio moved ~4x faster than Flow-Noise's
        # five-term mean and stalled (hard seed 1, 20 min: hybrid 74-75 % at 5e-5; full chain 84 % at 5e-5,
        # 93 % at 1e-4, same updates/s). docs/benchmarks.md, "Flow-SDE's chain".
        cfg.sde.hybrid = False
    cfg.optim.value_lr = 1e-3
    cfg.ppo.epochs = 4
    cfg.ppo.minibatch_size = 128
    # The 1.5 s limit is part of the task (evaluation uses it too): a time-out is a failure, not a cut to
    # bootstrap over. Bootstrapping it let the critic drift to V=10 and the policy collapse in several
    # variants of the tuning study (docs/demo.md); on the defaults both choices end within a few points.
    cfg.gae.bootstrap_truncated = False
    return cfg


@dataclass
class DemoConfig:
    seed: int = 0  # everything derives from it (demo/train/eval seeds are offsets of fixed ranges)
    method: str = "flow_noise"  # "flow_noise" (default) or "flow_sde"
    env: SimEnvConfig = field(default_factory=SimEnvConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    run: RLRunConfig = field(default_factory=RLRunConfig)
    chunk_size: int = 10  # actions per chunk (H)
    output_dir: str = "outputs/demo"  # checkpoint, metrics.jsonl and summary.json go here
    pirl: PIRLConfig | None = None  # None: default_pirl(method)


@dataclass
class DemoResult:
    success_before: float
    success_after: float
    curve: list[tuple[int, int, float]]  # (update, episodes so far, eval success)
    episodes: int
    updates: int
    wall_s: float
    rl_wall_s: float
    checkpoint: str
    metrics_path: str


def build_policy(cfg: DemoConfig, envs: SimEnvs) -> PIRLFlowPolicy:
    """The registered LeRobot policy "pirl_flow" around a fresh native flow policy + PI-RL heads."""
    torch.manual_seed(cfg.seed)
    native = NativeFlowConfig(state_dim=envs.state_dim, action_dim=envs.action_dim, chunk_size=cfg.chunk_size)
    pcfg = PIRLFlowConfig(
        native=native, rl=cfg.pirl or default_pirl(cfg.method), device="cpu", push_to_hub=False
    )
    return PIRLFlowPolicy(pcfg).eval()


def demo_episodes(cfg: DemoConfig, envs: SimEnvs) -> tuple[list[dict], list[EpisodeStats]]:
    """The scripted expert's demos (seeded by `cfg.seed`) as per-step tensors: observation keys, "action"
    and "reward" (1 at the step that succeeded, else 0)."""
    seeds = [DEMO_SEED0 + 1000 * cfg.seed + i for i in range(cfg.bc.demos)]
    episodes, stats = collect_demos(envs, seeds, cfg.env.task)
    for ep, st in zip(episodes, stats, strict=True):
        reward = torch.zeros(ep["action"].shape[0])
        reward[-1] = 1.0 if st.success else 0.0
        ep["reward"] = reward
    return episodes, stats


def record_demos(episodes: list[dict], envs: SimEnvs, root: Path, task: str) -> Path:
    """Write the demos as a LeRobotDataset (what a person's demos recorded on a real arm are, and what
    `pirl bc --dataset.root` and the learner's `learner.demos` read): `observation.state` named like the
    actor's state, `action`, `next.reward` / `next.done` / `next.success`, `intervention` True."""
    from app.demo.sim_envs import state_keys
    from app.episode.recorder import EpisodeRecorder, RecordConfig

    rec = EpisodeRecorder(
        RecordConfig(root=str(root), repo_id="local/pirl_demo_demos", task=task, overwrite=True),
        fps=envs.cfg.fps,
        state_names=envs.keys,
        action_names=state_keys(),
        robot_type="sim_so101",
    )
    try:
        for ep in episodes:
            states, actions, rewards = ep[STATE_KEY], ep["action"], ep["reward"]
            success = bool(rewards[-1] >= 1.0)
            for t in range(actions.shape[0]):
                last = t == actions.shape[0] - 1
                rec.add(
                    dict(zip(envs.keys, states[t].tolist(), strict=True)),
                    dict(zip(state_keys(), actions[t].tolist(), strict=True)),
                    intervention=True,
                    reward=float(rewards[t]),
                    done=last,
                    success=last and success,
                )
            rec.end_episode(success)
    finally:
        rec.close()
    return root


def pretrain(
    cfg: DemoConfig,
    envs: SimEnvs,
    model: PIRLModel,
    demos: tuple[list[dict], list] | None = None,
    on_step: Callable[[], object] | None = None,
) -> list[EpisodeStats]:
    """Scripted demos (or the given `demo_episodes` result) -> BC on the whole policy; returns the demos'
    episode stats. `on_step()` is called after every BC optimiser step (a progress bar)."""
    episodes, stats = demos if demos is not None else demo_episodes(cfg, envs)
    data = make_chunks(
        [{k: v for k, v in ep.items() if k != "reward"} for ep in episodes], model.policy.chunk_size
    )
    model.policy.set_normalization(floored_stats(data, envs))
    hook = None
    if on_step is not None:  # bc_pretrain has no callback: count its optimiser's steps, as `pirl bc` does
        from torch.optim.optimizer import register_optimizer_step_post_hook

        hook = register_optimizer_step_post_hook(lambda *_: on_step())
    try:
        bc_pretrain(
            model.policy,
            data,
            steps=cfg.bc.steps,
            batch_size=cfg.bc.batch_size,
            lr=cfg.bc.lr,
            seed=cfg.seed,
            fit_normalization=False,
        )
    finally:
        if hook is not None:
            hook.remove()
    return stats


ACTION_STD_FLOOR = 2.0  # deg / gripper units: see SimEnvs.state_std_floor


def floored_stats(data: dict[str, torch.Tensor], envs: SimEnvs) -> dict[str, dict[str, torch.Tensor]]:
    """normalization_stats with a floor on every std (see SimEnvs.state_std_floor)."""
    return floored_normalization_stats(data, envs.state_std_floor(), ACTION_STD_FLOOR)


def load_checkpoint(path: str | Path) -> PIRLFlowPolicy:
    """A `pirl_flow` pretrained folder (the BC start or a learner checkpoint) as an eval-mode policy."""
    from lerobot.configs.policies import PreTrainedConfig

    pcfg = PreTrainedConfig.from_pretrained(path)
    if not isinstance(pcfg, PIRLFlowConfig):
        raise ValueError(f"{path} holds a {pcfg.type!r} policy; the demo evaluates pirl_flow policies")
    return PIRLFlowPolicy.from_pretrained(path, config=pcfg).eval()


def evaluate(
    model: PIRLModel,
    envs: SimEnvs,
    n: int,
    seed: int = 0,
    on_episode: Callable[[EpisodeStats], object] | None = None,
) -> float:
    """Deterministic-ODE success rate over `n` fixed evaluation resets (`on_episode` as each one ends)."""
    g = torch.Generator().manual_seed(seed)
    seeds = [EVAL_SEED0 + i for i in range(n)]
    _, stats = run_episodes(model, envs, seeds, mode="deterministic", generator=g, on_episode=on_episode)
    return success_rate(stats)


def collect(
    cfg: DemoConfig,
    model: PIRLModel,
    envs: SimEnvs,
    policy_version: int,
    episodes_before: int,
    generator: torch.Generator,
) -> tuple[RolloutBatch, list[EpisodeStats]]:
    """One on-policy batch: rounds of `len(envs)` episodes until at least `chunks_per_update` chunks.

    Training resets are TRAIN_SEED0 + 100_000 * seed + episode index, the same seeds the runtime actor's
    EpisodeManager uses (`episode.seed` + index), so both demos see the same scenes in the same order."""
    g = max(1, cfg.run.group_size)
    batches: list[RolloutBatch] = []
    stats: list[EpisodeStats] = []
    chunks = 0
    while chunks < cfg.run.chunks_per_update:
        first = episodes_before + len(stats)
        n = len(envs) if g == 1 else max(g, len(envs) // g * g)
        seeds = [train_seed(cfg.seed) + (first + i) // g for i in range(n)]
        groups = [(first + i) // g for i in range(n)] if g > 1 else None
        batch, st = run_episodes(
            model, envs, seeds, "train", policy_version, first, groups, generator=generator
        )
        batches.append(batch)
        stats += st
        chunks += len(batch)
    return RolloutBatch.cat(batches), stats


def train_seed(seed: int) -> int:
    """Reset seed of training episode 0 for run seed `seed` (the runtime's `episode.seed`)."""
    return TRAIN_SEED0 + 100_000 * seed


def run_inprocess(cfg: DemoConfig, log: Callable[[str], None] = print) -> DemoResult:
    """The whole demo in this process. Logs one line per update; writes checkpoint + metrics."""
    t0 = time.monotonic()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"
    envs = SimEnvs(cfg.run.parallel_envs, cfg.env)
    try:
        policy = build_policy(cfg, envs)
        model = policy.model
        demo_stats = pretrain(cfg, envs, model)
        policy.save_pretrained(out / "bc_policy")
        log(
            f"bc: {len(demo_stats)} scripted demos ({success_rate(demo_stats):.0%} expert success), "
            f"{cfg.bc.steps} BC steps"
        )
        before = evaluate(model, envs, cfg.run.eval_episodes, cfg.seed)
        log(f"eval before PI-RL: {before:.0%} success over {cfg.run.eval_episodes} episodes")
        trainer = PIRLTrainer(model, seed=cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        curve = [(0, 0, before)]
        episodes = 0
        t_rl = time.monotonic()
        after = before
        done_updates = 0
        with metrics_path.open("w") as mf:
            for u in range(1, cfg.run.updates + 1):
                batch, stats = collect(cfg, model, envs, trainer.policy_version, episodes, gen)
                metrics = trainer.update(batch)
                episodes += len(stats)
                done_updates = u
                train_sr = success_rate(stats)
                line = {"update": u, "episodes": episodes, "train_success": train_sr, **metrics}
                over = cfg.run.wall_budget_s and time.monotonic() - t_rl >= cfg.run.wall_budget_s
                if u % cfg.run.eval_every == 0 or u == cfg.run.updates or over:
                    after = evaluate(model, envs, cfg.run.eval_episodes, cfg.seed)
                    curve.append((u, episodes, after))
                    line["eval_success"] = after
                line["wall_s"] = time.monotonic() - t0
                mf.write(json.dumps(line) + "\n")
                mf.flush()
                msg = (
                    f"update {u:3d}  episodes {episodes:5d}  train success {train_sr:4.0%}  "
                    f"clipfrac {metrics.get('losses/clipfrac', float('nan')):.2f}  "
                    f"kl {metrics.get('losses/approx_kl', float('nan')):.4f}"
                )
                if "eval_success" in line:
                    msg += f"  EVAL {after:.0%}"
                log(msg + f"  [{time.monotonic() - t0:.0f}s]")
                if over:
                    break
        rl_wall = time.monotonic() - t_rl
        ckpt = out / "final_policy"
        policy.save_pretrained(ckpt)
        (out / "demo_config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
        return DemoResult(
            before,
            after,
            curve,
            episodes,
            done_updates,
            time.monotonic() - t0,
            rl_wall,
            str(ckpt),
            str(metrics_path),
        )
    finally:
        envs.close()
