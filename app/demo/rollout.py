"""Episodes in the lockstep sim: scripted demos for BC, PI-RL rollouts as a RolloutBatch, and evaluation.

One chunk = one outer step (docs/algorithm.md): observe, sample a chunk for every arm still running (one
batched call), then each arm's executor (app/episode/, the actor's) runs its first `exec_horizon` actions
through the safety layer and sums their rewards. An episode ends on task success (terminal, `done`) or
after `max_steps` control steps (`truncated`, bootstrapped with V of the last observation). Rollout rows
are the actor's `ChunkRecord`s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from app.demo.sim_envs import SimEnvs
from app.episode import EpisodeRun, Executor, chunk_record
from app.rl.batch import ChunkRecord, RolloutBatch
from app.rl.model import PIRLModel
from app.rl.sampling import sample


@dataclass
class EpisodeStats:
    seed: int
    success: bool
    steps: int
    ret: float


def collect_demos(envs: SimEnvs, seeds: Sequence[int], task: str) -> tuple[list[dict], list[EpisodeStats]]:
    """Scripted-expert episodes (stop at success or max_steps) as per-step tensors for `make_chunks`."""
    from hardware.sim.expert import ExpertConfig, ScriptedExpert

    episodes, stats = [], []
    for seed in seeds:
        expert = ScriptedExpert(ExpertConfig(task=task, fps=envs.cfg.fps))
        obs = envs.reset(0, seed)
        observations, actions = [], []
        success, ret, steps = False, 0.0, 0
        for steps in range(1, envs.cfg.max_steps + 1):  # noqa: B007 - steps is read after the loop
            act = expert.act(obs)
            observations.append(obs)
            actions.append([act[k] for k in sorted(act, key=list(act).index)])
            obs, r, success = envs.step(0, act)
            ret += r
            if success:
                break
        ep = envs.to_tensors(observations)
        ep["action"] = torch.tensor(actions, dtype=torch.float32)
        episodes.append(ep)
        stats.append(EpisodeStats(seed, success, steps, ret))
    return episodes, stats


@torch.no_grad()
def run_episodes(
    model: PIRLModel,
    envs: SimEnvs,
    seeds: Sequence[int],
    mode: str = "train",
    policy_version: int = 0,
    episode_id_start: int = 0,
    group_ids: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    on_episode: Callable[[EpisodeStats], object] | None = None,
) -> tuple[RolloutBatch | None, list[EpisodeStats]]:
    """Run one episode per seed, `len(envs)` at a time. mode "train" samples stochastic chains and returns
    a RolloutBatch; "deterministic" runs the ODE (evaluation) and returns no batch. `on_episode(stats)` is
    called as each episode ends (in finishing order; progress bars)."""
    model.eval()
    n = len(envs)
    executors = [
        Executor(
            envs.guards[i],
            envs.episodes[i],
            envs.takeovers[i],
            exec_horizon=model.exec_horizon,
            chunk_size=model.policy.chunk_size,
        )
        for i in range(n)
    ]
    records: list[ChunkRecord] = []
    truncated: list[tuple[ChunkRecord, dict]] = []  # rows to bootstrap, with the observation after them
    stats: list[tuple[int, EpisodeStats]] = []
    pending = list(enumerate(seeds))
    runs: list[EpisodeRun | None] = [None] * n
    slot: list[dict] = [{} for _ in range(n)]  # per-arm episode bookkeeping

    def start(i: int) -> None:
        if not pending:
            runs[i] = None
            return
        k, seed = pending.pop(0)
        envs.start_episode(i, seed)
        runs[i] = executors[i].begin()
        envs.last_obs[i] = runs[i].obs
        slot[i] = {"k": k, "seed": seed, "ret": 0.0}

    for i in range(n):
        start(i)
    while any(r is not None for r in runs):
        live = [i for i in range(n) if runs[i] is not None]
        obs = envs.to_tensors([envs.last_obs[i] for i in live])
        out = sample(model, obs, mode="train" if mode == "train" else "deterministic", generator=generator)
        for j, i in enumerate(live):
            run, s = runs[i], slot[i]
            chunk = run.chunk
            result = run.run_chunk(out.actions[j])
            envs.last_obs[i] = run.obs
            s["ret"] += result.reward
            if mode == "train":
                record = chunk_record(
                    result,
                    obs,
                    out,
                    j,
                    policy_version=policy_version,
                    episode_id=episode_id_start + s["k"],
                    chunk_index=chunk,
                    group_id=-1 if group_ids is None else group_ids[s["k"]],
                )
                records.append(record)
                if result.truncated:
                    truncated.append((record, run.obs))
            if not run.active:
                stats.append((s["k"], EpisodeStats(s["seed"], result.terminated, run.steps, s["ret"])))
                if on_episode is not None:
                    on_episode(stats[-1][1])
                start(i)
    ordered = [e for _, e in sorted(stats, key=lambda kv: kv[0])]
    if mode != "train":
        return None, ordered
    if truncated:  # V(observation after the cut), one batched call
        boot = model.predict_value(envs.to_tensors([o for _, o in truncated])).float()
        for (record, _), v in zip(truncated, boot.tolist(), strict=True):
            record.bootstrap_value = v
    return RolloutBatch.from_records(records, model.policy.action_dim), ordered


def success_rate(stats: Sequence[EpisodeStats]) -> float:
    return sum(e.success for e in stats) / max(len(stats), 1)
