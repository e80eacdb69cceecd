"""Episodes in the lockstep sim: scripted demos for BC, PI-RL rollouts as a RolloutBatch, and evaluation.

One chunk = one outer step (DESIGN.md section 5): observe, sample a chunk for every arm still running
(one batched call), execute its first `exec_horizon` actions, sum their rewards. An episode ends on task
success (terminal, `done`) or after `max_steps` control steps (`truncated`, bootstrapped with V of the
last observation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from app.demo.sim_envs import SimEnvs, action_dict
from app.rl.batch import RolloutBatch
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
) -> tuple[RolloutBatch | None, list[EpisodeStats]]:
    """Run one episode per seed, `len(envs)` at a time. mode "train" samples stochastic chains and returns
    a RolloutBatch; "deterministic" runs the ODE (evaluation) and returns no batch."""
    model.eval()
    horizon = model.exec_horizon
    rows: list[dict[str, torch.Tensor]] = []
    stats: list[tuple[int, EpisodeStats]] = []
    pending = list(enumerate(seeds))
    n = len(envs)
    # per-arm episode state
    slot: list[dict | None] = [None] * n

    def start(i: int) -> None:
        if not pending:
            slot[i] = None
            return
        k, seed = pending.pop(0)
        envs.reset(i, seed)
        slot[i] = {"k": k, "seed": seed, "steps": 0, "ret": 0.0, "chunk": 0, "success": False}

    for i in range(n):
        start(i)
    while any(s is not None for s in slot):
        live = [i for i in range(n) if slot[i] is not None]
        obs = envs.to_tensors([envs.last_obs[i] for i in live])
        out = sample(model, obs, mode="train" if mode == "train" else "deterministic", generator=generator)
        for j, i in enumerate(live):
            s = slot[i]
            reward, done, truncated = 0.0, False, False
            for h in range(horizon):
                _, r, success = envs.step(i, action_dict(out.actions[j, h]))
                reward += r
                s["steps"] += 1
                if success:
                    done, s["success"] = True, True
                    break
                if s["steps"] >= envs.cfg.max_steps:
                    truncated = True
                    break
            s["ret"] += reward
            if mode == "train":
                rows.append(
                    {
                        "obs": {k: v[j : j + 1] for k, v in obs.items()},
                        "chain": out.chain[j : j + 1],
                        "sde_step": out.sde_step[j : j + 1],
                        "logprob": out.logprob[j : j + 1],
                        "value": out.value[j : j + 1],
                        "reward": torch.tensor([reward]),
                        "done": torch.tensor([done]),
                        "truncated": torch.tensor([truncated]),
                        "episode_id": torch.tensor([episode_id_start + s["k"]]),
                        "chunk_index": torch.tensor([s["chunk"]]),
                        "group_id": torch.tensor([-1 if group_ids is None else group_ids[s["k"]]]),
                        "last_obs": envs.last_obs[i] if truncated else None,
                    }
                )
            s["chunk"] += 1
            if done or truncated:
                stats.append((s["k"], EpisodeStats(s["seed"], s["success"], s["steps"], s["ret"])))
                start(i)
    ordered = [e for _, e in sorted(stats, key=lambda kv: kv[0])]
    if mode != "train":
        return None, ordered
    return _to_batch(model, envs, rows, policy_version), ordered


def _to_batch(model: PIRLModel, envs: SimEnvs, rows: list[dict], policy_version: int) -> RolloutBatch:
    n = len(rows)
    boot = torch.zeros(n)
    trunc_idx = [i for i, r in enumerate(rows) if r["last_obs"] is not None]
    if trunc_idx:
        last = envs.to_tensors([rows[i]["last_obs"] for i in trunc_idx])
        boot[trunc_idx] = model.predict_value(last).float()
    obs = {k: torch.cat([r["obs"][k] for r in rows]) for k in rows[0]["obs"]}
    chain = torch.cat([r["chain"] for r in rows])
    h, a = model.policy.chunk_size, model.policy.action_dim
    return RolloutBatch(
        obs=obs,
        chain=chain,
        sde_step=torch.cat([r["sde_step"] for r in rows]),
        logprob=torch.cat([r["logprob"] for r in rows]),
        value=torch.cat([r["value"] for r in rows]),
        reward=torch.cat([r["reward"] for r in rows]),
        done=torch.cat([r["done"] for r in rows]),
        truncated=torch.cat([r["truncated"] for r in rows]),
        bootstrap_value=boot,
        intervention=torch.zeros(n, dtype=torch.bool),
        human_action=torch.zeros(n, h, a),
        takeover_start=torch.zeros(n, dtype=torch.bool),
        policy_version=torch.full((n,), policy_version, dtype=torch.long),
        episode_id=torch.cat([r["episode_id"] for r in rows]),
        chunk_index=torch.cat([r["chunk_index"] for r in rows]),
        group_id=torch.cat([r["group_id"] for r in rows]),
    )


def success_rate(stats: Sequence[EpisodeStats]) -> float:
    return sum(e.success for e in stats) / max(len(stats), 1)
