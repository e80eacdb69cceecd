"""PIRLTrainer: one PI-RL update over a RolloutBatch, top to bottom (cleanrl-style).

update(batch) does, in order:
  1. group rows by episode (rejecting colliding ids); apply the takeover penalty to rewards;
  2. values: recompute V(obs) with the current critic (or use the stored ones);
  3. advantages: GAE with truncation bootstrap (PPO), or group-relative returns (GRPO);
  4. the policy mask: not human-driven, not older than `max_staleness` versions, in a kept GRPO group;
  5. decoupled-PPO proximal log-probs and weights (if enabled) for stale-but-kept rows;
  6. epochs x minibatches of: re-score stored chains -> clipped surrogate + value loss - entropy bonus
     + BC on human chunks; AdamW step with grad-norm clipping;
  7. diagnostics with cleanrl names, and the policy version moves on by one.
Steps 1-5 are `prepare()` (no parameter changes), 6-7 the rest of `update()`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from app.rl.batch import RolloutBatch
from app.rl.gae import compute_gae
from app.rl.losses import (
    explained_variance,
    flow_matching_loss,
    grpo_advantages,
    ppo_policy_loss,
    value_loss,
)
from app.rl.model import PIRLModel
from app.rl.sampling import evaluate_chain


@dataclass
class PreparedBatch:
    """A batch ready for the epochs: sorted rows and everything fixed before the first gradient step."""

    batch: RolloutBatch  # rows grouped by episode, in chunk order, on the model's device
    version: int  # the policy version being trained
    reward: torch.Tensor  # [N] after the takeover penalty
    old_value: torch.Tensor  # [N] V at the start of the update (GAE input, value-clip anchor)
    advantages: torch.Tensor  # [N] (normalised for PPO if configured)
    returns: torch.Tensor  # [N] value targets (zeros for GRPO)
    policy_mask: torch.Tensor  # [N] bool, rows the surrogate sees
    intervention: torch.Tensor  # [N] bool, human-driven rows
    stale: torch.Tensor  # [N] bool, older than max_staleness (or from a future version)
    prox_logprob: torch.Tensor | None  # [N] decoupled-PPO proximal log-prob
    weight: torch.Tensor | None  # [N] decoupled-PPO weight pi_prox / pi_behaviour


class PIRLTrainer:
    """Owns the optimiser and the policy version of one PIRLModel."""

    def __init__(self, model: PIRLModel, seed: int = 0, policy_version: int = 0) -> None:
        self.model = model
        self.cfg = model.cfg
        o = self.cfg.optim
        groups = [
            {"params": model.actor_parameters(), "lr": o.actor_lr, "name": "actor"},
            {"params": model.value_parameters(), "lr": o.value_lr, "name": "value"},
        ]
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ValueError(
                f"nothing to train: rl.trainable={list(self.cfg.trainable)} selects no parameters"
            )
        self.optimizer = torch.optim.AdamW(groups, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.policy_version = policy_version
        self.num_updates = 0  # updates run by this trainer (drives the critic warm-up)

    # -- shipping and checkpointing ------------------------------------------------------------------
    def get_trainable_state(self) -> dict[str, torch.Tensor]:
        return self.model.get_trainable_state()

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_trainable_state(state)

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "policy_version": self.policy_version,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.policy_version = int(state["policy_version"])
        self.num_updates = int(state.get("num_updates", 0))

    # -- helpers -------------------------------------------------------------------------------------
    def _chunks(self, n: int, size: int, shuffle: bool) -> list[torch.Tensor]:
        order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
        return list(order.split(size))

    @torch.no_grad()
    def _score_all(self, batch: RolloutBatch, want_logprob: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Current V(obs) and (optionally) current log-probs for every row, in minibatches."""
        values, logprobs = [], []
        for idx in self._chunks(len(batch), self.cfg.ppo.minibatch_size, shuffle=False):
            mb = batch.index(idx)
            if want_logprob:
                ev = evaluate_chain(self.model, mb.obs, mb.chain, self._sde_steps(mb))
                values.append(ev.value)
                logprobs.append(ev.logprob)
            else:
                values.append(self.model.value(self.model.encode(mb.obs)))
        lp = torch.cat(logprobs) if logprobs else torch.zeros(0)
        return torch.cat(values).float(), lp

    def _sde_steps(self, mb: RolloutBatch) -> torch.Tensor:
        # Human chunks carry sde_step -1; give them a valid index (their log-prob is masked anyway).
        return mb.sde_step.clamp(min=0, max=self.cfg.num_steps - 1)

    # -- the update ----------------------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, batch: RolloutBatch, current_version: int | None = None) -> PreparedBatch:
        """Steps 1-5 of the update: everything fixed before the first gradient step (no parameter
        changes). Exposed so callers and tests can inspect advantages and masks."""
        cfg, model = self.cfg, self.model
        version = self.policy_version if current_version is None else int(current_version)
        device = next(model.parameters()).device
        n = len(batch)
        if n == 0:
            raise ValueError("cannot update on an empty RolloutBatch")
        batch = batch.sorted_by_episode().to(device)
        dup = (batch.episode_id[1:] == batch.episode_id[:-1]) & (
            batch.chunk_index[1:] == batch.chunk_index[:-1]
        )
        if bool(dup.any()):
            ep = int(batch.episode_id[1:][dup][0])
            raise ValueError(
                f"RolloutBatch has two rows for episode {ep} with the same chunk_index; episode ids must be "
                "unique across actors/batches (GAE would mix episodes)"
            )
        # 1. reward shaping
        reward = batch.reward.float() - cfg.intervention.takeover_penalty * batch.takeover_start.float()
        intervention = batch.intervention.bool()

        # 2-3. values and advantages
        age = version - batch.policy_version.long()
        decoupled = cfg.staleness.decoupled
        model.eval()
        cur_value, cur_logprob = self._score_all(batch, want_logprob=decoupled)
        if cfg.algorithm == "ppo":
            old_value = cur_value if cfg.ppo.recompute_values else batch.value.float()
            # A truncation the config does not bootstrap ends its episode like a terminal failure.
            done = batch.done if cfg.gae.bootstrap_truncated else batch.done | batch.truncated
            advantages, returns = compute_gae(
                reward,
                old_value,
                done,
                batch.truncated,
                batch.bootstrap_value,
                batch.episode_id,
                cfg.gae.gamma,
                cfg.gae.lam,
            )
            group_ok = torch.ones(n, dtype=torch.bool, device=device)
        else:
            old_value = cur_value
            advantages, group_ok = grpo_advantages(
                reward, batch.episode_id, batch.group_id, cfg.grpo.eps, cfg.grpo.drop_uniform_groups
            )
            returns = torch.zeros(n, device=device)

        # 4. which rows the surrogate sees
        fresh = (age >= 0) & (age <= cfg.staleness.max_staleness)
        policy_mask = ~intervention & fresh & group_ok

        # 5. decoupled PPO: pi_prox between behaviour and current, alpha = (age - 1) / age
        prox_logprob: torch.Tensor | None = None
        weight: torch.Tensor | None = None
        if decoupled:
            lp_b = batch.logprob.float()
            a = age.float()
            alpha = torch.where(a > 0, (a - 1.0) / a.clamp_min(1.0), torch.ones_like(a))
            prox_logprob = lp_b + alpha * (cur_logprob.float() - lp_b)
            weight = torch.exp(torch.where(policy_mask, prox_logprob - lp_b, torch.zeros_like(lp_b)))
            policy_mask = policy_mask & (weight <= cfg.staleness.max_behaviour_weight)

        # GRPO advantages are already normalised within their groups.
        if cfg.algorithm == "ppo" and cfg.ppo.normalize_advantages and int(policy_mask.sum()) > 1:
            sel = advantages[policy_mask]
            advantages = (advantages - sel.mean()) / (sel.std() + 1e-8)
        return PreparedBatch(
            batch=batch,
            version=version,
            reward=reward,
            old_value=old_value,
            advantages=advantages,
            returns=returns,
            policy_mask=policy_mask,
            intervention=intervention,
            stale=~fresh,
            prox_logprob=prox_logprob,
            weight=weight,
        )

    def update(self, batch: RolloutBatch, current_version: int | None = None) -> dict[str, float]:
        """One PI-RL update. `current_version` is the version of the weights being trained (defaults to
        this trainer's counter); afterwards the counter is that plus one. Returns a metrics dict."""
        t_start = time.perf_counter()
        cfg, model = self.cfg, self.model
        p = self.prepare(batch, current_version)
        batch, version, n = p.batch, p.version, len(p.batch)
        device = p.reward.device
        old_value, advantages, returns = p.old_value, p.advantages, p.returns
        policy_mask, intervention = p.policy_mask, p.intervention
        prox_logprob, weight = p.prox_logprob, p.weight

        # 6. epochs x minibatches (during the critic warm-up only the value loss trains)
        actor_on = not (cfg.algorithm == "ppo" and self.num_updates < cfg.ppo.critic_warmup_updates)
        model.train()
        sums: dict[str, float] = {}
        steps = 0
        stopped_early = False
        for _epoch in range(cfg.ppo.epochs):
            for idx in self._chunks(n, min(cfg.ppo.minibatch_size, n), shuffle=True):
                mb = batch.index(idx)
                ev = evaluate_chain(model, mb.obs, mb.chain, self._sde_steps(mb))
                pmask = policy_mask[idx]
                pl, stats = ppo_policy_loss(
                    ev.logprob,
                    mb.logprob.float(),
                    advantages[idx],
                    pmask,
                    cfg.ppo.clip_coef,
                    prox_logprob=None if prox_logprob is None else prox_logprob[idx],
                    sample_weight=None if weight is None else weight[idx],
                )
                loss = pl if actor_on else torch.zeros((), device=device)
                if cfg.algorithm == "ppo":
                    vl = value_loss(
                        ev.value, old_value[idx], returns[idx], cfg.ppo.value_clip, cfg.ppo.huber_delta
                    )
                    loss = loss + cfg.ppo.value_coef * vl
                    stats["losses/value_loss"] = float(vl.detach())
                if cfg.method == "flow_noise" and actor_on:
                    m = pmask.float()
                    ent = (ev.entropy * m).sum() / m.sum().clamp_min(1.0)
                    loss = loss - cfg.noise.entropy_coef * ent
                    stats["losses/entropy"] = float(ent.detach())
                hmask = intervention[idx]
                if actor_on and cfg.intervention.bc_coef > 0 and bool(hmask.any()):
                    bc = flow_matching_loss(
                        model.policy,
                        ev.ctx,
                        mb.human_action.float(),
                        horizon=model.exec_horizon,
                        mask=hmask,
                        step_mask=mb.human_steps(),
                    )
                    loss = loss + cfg.intervention.bc_coef * bc
                    stats["losses/bc_loss"] = float(bc.detach())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.ppo.max_grad_norm > 0:
                    gn = torch.nn.utils.clip_grad_norm_(
                        [p for g in self.optimizer.param_groups for p in g["params"]], cfg.ppo.max_grad_norm
                    )
                    stats["losses/grad_norm"] = float(gn)
                self.optimizer.step()
                stats["losses/total_loss"] = float(loss.detach())
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                steps += 1
            if (
                cfg.ppo.target_kl is not None
                and sums.get("losses/approx_kl", 0.0) / max(steps, 1) > cfg.ppo.target_kl
            ):
                stopped_early = True
                break
        model.eval()

        # 7. diagnostics
        metrics = {k: v / max(steps, 1) for k, v in sums.items()}
        if cfg.algorithm == "ppo":
            metrics["losses/explained_variance"] = explained_variance(old_value, returns)
        metrics.update(
            {
                "rl/policy_version": float(version + 1),
                "rl/chunks": float(n),
                "rl/policy_chunks": float(policy_mask.sum()),
                "rl/intervention_chunks": float(intervention.sum()),
                "rl/stale_chunks": float(p.stale.sum()),
                "rl/advantage_mean": float(advantages[policy_mask].mean())
                if bool(policy_mask.any())
                else 0.0,
                "rl/minibatch_steps": float(steps),
                "rl/early_stop": float(stopped_early),
                "rl/critic_warmup": float(not actor_on),
                "rl/update_seconds": time.perf_counter() - t_start,
            }
        )
        self.policy_version = version + 1
        self.num_updates += 1
        return metrics
