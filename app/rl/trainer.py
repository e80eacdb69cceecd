"""PIRLTrainer: one PI-RL update over a RolloutBatch, top to bottom (cleanrl-style).

update(batch) does, in order:
  1. group rows by episode (rejecting colliding ids); apply the takeover penalty to rewards;
  2. values: recompute V(obs) with the current critic (or use the stored ones);
  3. advantages: GAE with truncation bootstrap (PPO), or group-relative returns (GRPO);
  4. the policy mask: not human-driven, not older than `max_staleness` versions, in a kept GRPO group;
  5. decoupled-PPO proximal log-probs and weights (if enabled) for stale-but-kept rows; AWR weights and
     targets (if `rl.awr.coef` > 0);
  6. epochs x minibatches of: re-score stored chains -> clipped surrogate + value loss - entropy bonus
     + BC on human chunks (+ AWR + demo anchor if enabled); AdamW step with grad-norm clipping; a step
     whose loss or gradient is not finite is skipped (`losses/skipped_nonfinite`, a warning);
  7. diagnostics with cleanrl names, and the policy version moves on by one.
Steps 1-5 are `prepare()` (no parameter changes), 6-7 the rest of `update()`.

With `rl.replay.enabled` the batch first goes into the trainer's ReplayBuffer; steps 1-7 then run over the
whole buffer (current critic, current proximal log-probs) for `utd` x new-chunks minibatch steps instead of
`ppo.epochs` passes. Everything new (replay, dual clip, AWR, anchor, critic pre-training, last-layer
training) is off by default; tests/app/rl/test_trainer_regression.py pins the default update.

Data parallel (`set_data_parallel`, wired by app/learner/distributed.py under torchrun): every rank runs
steps 1-5 on the whole batch and the forward/backward of its share of each minibatch only; the share
weights and the SUM all-reduce that make each step equal the single-process one live in
app/rl/data_parallel.py (which says why an explicit all-reduce, not DDP). With no data-parallel set (a
single process) none of that code runs.

One cohesive job, kept in one file on purpose (it is over our ~450-line guide): the update reads top to
bottom in one place, as cleanrl's do; the pieces that stand alone live beside it (losses.py, gae.py,
replay.py, awr.py, critic.py, layers.py, data_parallel.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from app.rl.awr import anchor_coef, awr_targets, awr_weights, concat_rows, success_chunks, success_rows
from app.rl.batch import RolloutBatch
from app.rl.critic import pretrain_critic
from app.rl.data_parallel import DataParallel, data_parallel, scaled
from app.rl.gae import compute_gae
from app.rl.layers import apply_trainable_expert_layers
from app.rl.losses import (
    decoupled_proximal,
    explained_variance,
    flow_matching_loss,
    grpo_advantages,
    ppo_policy_loss,
    value_loss,
    weighted_flow_matching_loss,
)
from app.rl.model import PIRLModel
from app.rl.replay import ReplayBuffer, UTDSchedule, minibatch_schedule
from app.rl.sampling import evaluate_chain

ANCHOR_ACTION_KEY = "action"
SKIPPED_KEY = "losses/skipped_nonfinite"  # minibatch steps skipped in an update: loss or gradient not finite

log = logging.getLogger("pirl.rl.trainer")


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
    # decoupled PPO: rows the weight threshold removed from the policy mask
    masked_by_weight: torch.Tensor | None = None  # [N] bool
    # AWR (rl.awr.coef > 0): rows, weights min(exp(A/beta), max), robot-unit targets, scored steps
    awr_rows: torch.Tensor | None = None  # [N] bool
    awr_weight: torch.Tensor | None = None  # [N]
    awr_actions: torch.Tensor | None = None  # [N, H, action_dim]
    awr_step_mask: torch.Tensor | None = None  # [N, H] bool
    success: torch.Tensor | None = None  # [N] bool, policy rows of successful episodes


class PIRLTrainer:
    """Owns the optimiser and the policy version of one PIRLModel."""

    def __init__(self, model: PIRLModel, seed: int = 0, policy_version: int = 0) -> None:
        self.model = model
        self.cfg = model.cfg
        o = self.cfg.optim
        if self.cfg.trainable_expert_layers > 0:
            apply_trainable_expert_layers(model, self.cfg.trainable_expert_layers)
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
        # AWR / anchor flow-matching noise (kept apart so enabling them does not move the shuffles)
        self.aux_generator = torch.Generator().manual_seed(seed + 1)
        self.anchor_batch: dict[str, torch.Tensor] | None = None  # set_anchor_batch
        # rl.anchor.success_chunks > 0: chunks of successful policy episodes beside the demos (CPU)
        self.success_pool: dict[str, torch.Tensor] | None = None
        self._anchor_pool: dict[str, torch.Tensor] | None = None  # demos + successes, rebuilt on change
        r = self.cfg.replay
        self.replay: ReplayBuffer | None = None
        self.utd: UTDSchedule | None = None
        if r.enabled:
            self.replay = ReplayBuffer(r.capacity_chunks, r.max_versions)
            self.utd = UTDSchedule(r.utd, r.min_steps_per_update, r.max_steps_per_update)
        self.data_parallel: DataParallel | None = None  # set_data_parallel; None: a single process

    def set_data_parallel(self, rank: int, world_size: int, group: Any = None) -> None:
        """Train as rank `rank` of `world_size` (module docstring); world_size 1 is a single process."""
        self.data_parallel = data_parallel(rank, world_size, group)

    # -- shipping and checkpointing ------------------------------------------------------------------
    def get_trainable_state(self) -> dict[str, torch.Tensor]:
        return self.model.get_trainable_state()

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_trainable_state(state)

    def state_dict(self) -> dict[str, Any]:
        """Optimiser, counters and, with replay, the buffer and the UTD carry (plain tensors, weights_only
        safe; with replay/AWR/anchor also the generator of their flow-matching noise). The anchor batch is
        not saved: call `set_anchor_batch` again after a resume."""
        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "policy_version": self.policy_version,
            "num_updates": self.num_updates,
        }
        if self.replay is not None and self.utd is not None:
            state["replay"] = self.replay.state_dict()
            state["utd"] = self.utd.state_dict()
        if self.replay is not None or self.cfg.awr.coef > 0 or self.cfg.anchor.coef > 0:
            state["aux_generator"] = self.aux_generator.get_state()
        if self.success_pool is not None:
            state["anchor_successes"] = {k: v.clone() for k, v in self.success_pool.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.policy_version = int(state["policy_version"])
        self.num_updates = int(state.get("num_updates", 0))
        if self.replay is not None and self.utd is not None and "replay" in state:
            self.replay.load_state_dict(state["replay"])
            self.utd.load_state_dict(state["utd"])
        if "aux_generator" in state:
            self.aux_generator.set_state(state["aux_generator"])
        if "anchor_successes" in state and self.cfg.anchor.success_chunks > 0:
            self.success_pool = {k: v.clone() for k, v in state["anchor_successes"].items()}
            self._anchor_pool = None

    # -- before RL: critic pre-training and the demo anchor ------------------------------------------
    def pretrain_critic(
        self, episodes: RolloutBatch, steps: int | None = None, seed: int = 0
    ) -> dict[str, float]:
        """Regress the value head on Monte-Carlo returns of `episodes` (whole episodes: demos, BC
        rollouts) for `steps` (default `rl.critic_pretrain.steps`) steps; see app/rl/critic.py."""
        cfg = self.cfg
        c = cfg.critic_pretrain
        n = c.steps if steps is None else int(steps)
        return pretrain_critic(
            self.model,
            episodes,
            n,
            lr=c.lr,
            batch_size=c.batch_size,
            gamma=cfg.gae.gamma,
            huber_delta=cfg.ppo.huber_delta,
            takeover_penalty=cfg.intervention.takeover_penalty,
            bootstrap_truncated=cfg.gae.bootstrap_truncated,
            seed=seed,
        )

    def set_anchor_batch(self, data: dict[str, torch.Tensor] | None) -> None:
        """The fixed demo batch of the anchor loss: `bc.make_chunks` format, observation keys [N, ...]
        plus "action" [N, chunk_size, action_dim] in robot units (None removes it). Kept on CPU; each
        gradient step draws `rl.anchor.batch_size` rows."""
        self._anchor_pool = None
        if data is None:
            self.anchor_batch = None
            return
        pol = self.model.policy
        act = data.get(ANCHOR_ACTION_KEY)
        if act is None or act.dim() != 3 or tuple(act.shape[1:]) != (pol.chunk_size, pol.action_dim):
            raise ValueError(
                f"anchor batch needs {ANCHOR_ACTION_KEY!r} [N, {pol.chunk_size}, {pol.action_dim}]; got "
                f"{None if act is None else tuple(act.shape)}"
            )
        bad = {k: tuple(v.shape) for k, v in data.items() if v.shape[0] != act.shape[0]}
        if bad:
            raise ValueError(f"anchor batch tensors must all have {act.shape[0]} rows; got {bad}")
        self.anchor_batch = {k: v.detach().to("cpu") for k, v in data.items()}

    def add_anchor_successes(self, batch: RolloutBatch) -> int:
        """Self-imitation (`rl.anchor.success_chunks` > 0): the policy rows of `batch`'s successful
        episodes join the anchor's pool (app/rl/awr.py `success_chunks`), the oldest leaving beyond the
        capacity. `update` calls it on every new batch; returns the rows added."""
        cap = self.cfg.anchor.success_chunks
        if cap <= 0 or len(batch) == 0:
            return 0
        new = success_chunks(batch, self.model.policy.unnormalize_actions, self.cfg.awr.success_reward)
        if new is None:
            return 0
        self.success_pool = concat_rows(self.success_pool, new, keep_last=cap)
        self._anchor_pool = None
        return int(new[ANCHOR_ACTION_KEY].shape[0])

    def anchor_pool(self) -> dict[str, torch.Tensor] | None:
        """What the anchor draws from: the demo batch, plus the successful policy chunks when kept."""
        if self._anchor_pool is None and self.success_pool is None:
            return self.anchor_batch
        if self._anchor_pool is None:
            self._anchor_pool = concat_rows(self.anchor_batch, self.success_pool)
        return self._anchor_pool

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

        # 5. decoupled PPO: pi_prox between behaviour and current, alpha = clip((age - 1) / age, 0, 1)
        prox_logprob: torch.Tensor | None = None
        weight: torch.Tensor | None = None
        masked_by_weight: torch.Tensor | None = None
        if decoupled:
            lp_b = batch.logprob.float()
            prox_logprob, weight, _ = decoupled_proximal(lp_b, cur_logprob, version, batch.policy_version)
            # rows outside the mask (human chunks' garbage log-probs) get weight 1
            weight = torch.where(policy_mask, weight, torch.ones_like(weight))
            masked_by_weight = policy_mask & ~(weight <= cfg.staleness.max_behaviour_weight)
            policy_mask = policy_mask & ~masked_by_weight

        # GRPO advantages are already normalised within their groups.
        if cfg.algorithm == "ppo" and cfg.ppo.normalize_advantages and int(policy_mask.sum()) > 1:
            sel = advantages[policy_mask]
            advantages = (advantages - sel.mean()) / (sel.std() + 1e-8)
        awr: dict[str, torch.Tensor] = {}
        if cfg.awr.coef > 0:
            rows, actions, step_mask = awr_targets(
                batch,
                model.policy.unnormalize_actions,
                cfg.awr.human,
                cfg.awr.success,
                cfg.awr.success_reward,
            )
            success = ~intervention & success_rows(batch, cfg.awr.success_reward)
            awr = {
                "awr_rows": rows,
                "awr_weight": awr_weights(advantages, cfg.awr.beta, cfg.awr.max_weight),
                "awr_actions": actions,
                "awr_step_mask": step_mask,
                "success": success,
            }
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
            masked_by_weight=masked_by_weight,
            **awr,
        )

    def update(self, batch: RolloutBatch, current_version: int | None = None) -> dict[str, float]:
        """One PI-RL update. `current_version` is the version of the weights being trained (defaults to
        this trainer's counter); afterwards the counter is that plus one. Returns a metrics dict.

        With `rl.replay.enabled`, `batch` holds the NEW episodes since the last update: they join the
        replay buffer and the update trains on the whole buffer for `UTDSchedule.steps(len(batch))`
        minibatch steps."""
        t_start = time.perf_counter()
        cfg, model = self.cfg, self.model
        version = self.policy_version if current_version is None else int(current_version)
        steps_budget: int | None = None
        replay_metrics: dict[str, float] = {}
        if cfg.anchor.success_chunks > 0 and cfg.anchor.coef > 0:
            replay_metrics["charts/anchor_success_added"] = float(self.add_anchor_successes(batch))
            replay_metrics["charts/anchor_success_pool"] = float(
                0 if self.success_pool is None else len(self.success_pool[ANCHOR_ACTION_KEY])
            )
        if self.replay is not None and self.utd is not None:
            if len(batch) == 0:
                raise ValueError("cannot update on an empty RolloutBatch")
            added = self.replay.add(batch)
            steps_budget = self.utd.steps(len(batch))
            replay_metrics |= {
                "replay/size_chunks": float(len(self.replay)),
                "replay/size_episodes": float(self.replay.num_episodes),
                "replay/new_chunks": float(len(batch)),
                "replay/evicted_chunks": float(added["evicted_chunks"]),
                "replay/grad_steps_planned": float(steps_budget),
                "replay/utd": steps_budget / len(batch),
            }
            for k, frac in self.replay.staleness_histogram(version).items():
                replay_metrics[f"replay/staleness_hist_{k}"] = frac
            batch = self.replay.batch()
        p = self.prepare(batch, version)
        batch, n = p.batch, len(p.batch)
        old_value, advantages, returns = p.old_value, p.advantages, p.returns
        policy_mask, intervention = p.policy_mask, p.intervention

        # 6. minibatch steps (during the critic warm-up only the value loss trains)
        actor_on = not (cfg.algorithm == "ppo" and self.num_updates < cfg.ppo.critic_warmup_updates)
        anchor_w = 0.0
        if self.anchor_pool() is not None and actor_on:
            a = cfg.anchor
            anchor_w = anchor_coef(a.coef, a.decay, a.min_coef, self.num_updates)
        model.train()
        sums: dict[str, float] = {}
        steps = 0
        skipped: list[str] = []  # why each skipped minibatch step was skipped
        stopped_early = False
        for minibatches in self._passes(n, steps_budget):
            for idx in minibatches:
                stats = self._minibatch_step(p, idx, actor_on, anchor_w)
                steps += 1
                if SKIPPED_KEY in stats:  # its loss terms are NaN/inf: kept out of the averages
                    skipped.append(str(stats[SKIPPED_KEY]))
                    continue
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
            applied = steps - len(skipped)
            if (
                cfg.ppo.target_kl is not None
                and sums.get("losses/approx_kl", 0.0) / max(applied, 1) > cfg.ppo.target_kl
            ):
                stopped_early = True
                break
        model.eval()

        # 7. diagnostics
        metrics = {k: v / max(steps - len(skipped), 1) for k, v in sums.items()}
        if skipped:  # the key only appears when it happened (the default metrics stay as they were)
            metrics[SKIPPED_KEY] = float(len(skipped))
            log.warning(
                "update of v%d: skipped %d of %d minibatch steps with a non-finite %s; the weights "
                "stay as they were before those steps",
                version,
                len(skipped),
                steps,
                " / ".join(sorted(set(skipped))),
            )
        self._check_finite_parameters(version)
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
            }
        )
        metrics.update(self._extra_metrics(p, anchor_w))
        metrics.update(replay_metrics)
        if self.replay is not None:
            metrics["replay/grad_steps"] = float(steps)
        metrics["rl/update_seconds"] = time.perf_counter() - t_start
        self.policy_version = version + 1
        self.num_updates += 1
        return metrics

    def _passes(self, n: int, steps_budget: int | None) -> Iterator[list[torch.Tensor]]:
        """Minibatch index lists, one list per pass (target_kl is checked after each pass): `ppo.epochs`
        shuffled passes over the batch, or (replay) `steps_budget` minibatches in passes of ceil(n / size)."""
        size = min(self.cfg.ppo.minibatch_size, n)
        if steps_budget is None:
            for _epoch in range(self.cfg.ppo.epochs):
                yield self._chunks(n, size, shuffle=True)
            return
        schedule = minibatch_schedule(n, size, steps_budget, self.generator)
        per_pass = math.ceil(n / size)
        for start in range(0, len(schedule), per_pass):
            yield schedule[start : start + per_pass]

    def _minibatch_step(
        self, p: PreparedBatch, idx: torch.Tensor, actor_on: bool, anchor_w: float
    ) -> dict[str, Any]:
        """One gradient step on rows idx of a prepared batch; returns its diagnostics.

        Non-finite guard: a NaN/inf loss (no backward) or gradient (before the step) skips the step, so
        neither the weights nor AdamW's moments see it; the returned dict then holds only
        `SKIPPED_KEY: "loss" | "gradient"`. With finite weights and finite gradients AdamW's step stays
        finite (its update is bounded by lr * m / sqrt(v)), so checking before the step suffices."""
        cfg, model = self.cfg, self.model
        device = p.reward.device
        dp = self.data_parallel
        w: dict[str, float] | None = None
        if dp is not None:
            idx, w = dp.share(p, idx, model.exec_horizon)
            if len(idx) == 0:  # a short last minibatch: nothing here, but every collective still runs
                return self._dp_finish(dp, {}, w, torch.zeros((), device=device))
        mb = p.batch.index(idx)
        ev = evaluate_chain(model, mb.obs, mb.chain, self._sde_steps(mb))
        pmask = p.policy_mask[idx]
        pl, stats = ppo_policy_loss(
            ev.logprob,
            mb.logprob.float(),
            p.advantages[idx],
            pmask,
            cfg.ppo.clip_coef,
            prox_logprob=None if p.prox_logprob is None else p.prox_logprob[idx],
            sample_weight=None if p.weight is None else p.weight[idx],
            dual_clip=cfg.replay.dual_clip,
        )
        loss = scaled(pl, w, "policy") if actor_on else torch.zeros((), device=device)
        if cfg.algorithm == "ppo":
            vl = value_loss(
                ev.value, p.old_value[idx], p.returns[idx], cfg.ppo.value_clip, cfg.ppo.huber_delta
            )
            loss = loss + cfg.ppo.value_coef * scaled(vl, w, "value")
            stats["losses/value_loss"] = float(vl.detach())
        if cfg.method == "flow_noise" and actor_on:
            m = pmask.float()
            ent = (ev.entropy * m).sum() / m.sum().clamp_min(1.0)
            loss = loss - cfg.noise.entropy_coef * scaled(ent, w, "policy")
            stats["losses/entropy"] = float(ent.detach())
        hmask = p.intervention[idx]
        if actor_on and cfg.intervention.bc_coef > 0 and bool(hmask.any()):
            bc = flow_matching_loss(
                model.policy,
                ev.ctx,
                mb.human_action.float(),
                horizon=model.exec_horizon,
                mask=hmask,
                step_mask=mb.human_steps(),
            )
            loss = loss + cfg.intervention.bc_coef * scaled(bc, w, "bc")
            stats["losses/bc_loss"] = float(bc.detach())
        if actor_on and p.awr_rows is not None and p.awr_weight is not None and cfg.awr.coef > 0:
            rows = p.awr_rows[idx]
            awr = torch.zeros((), device=device)
            if bool(rows.any()):
                awr = weighted_flow_matching_loss(
                    model.policy,
                    ev.ctx,
                    p.awr_actions[idx].float(),
                    p.awr_weight[idx],
                    horizon=model.exec_horizon,
                    mask=rows,
                    generator=self.aux_generator,
                    step_mask=p.awr_step_mask[idx],
                )
                loss = loss + cfg.awr.coef * scaled(awr, w, "awr")
            stats["losses/awr"] = float(awr.detach())
        if anchor_w > 0 and self.anchor_pool() is not None and (dp is None or dp.rank == 0):
            anchor = self._anchor_loss(device)
            loss = loss + anchor_w * anchor
            stats["losses/anchor"] = float(anchor.detach())
        if dp is not None:
            return self._dp_finish(dp, stats, w, loss)
        self.optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(float(loss.detach())):
            return {SKIPPED_KEY: "loss"}
        loss.backward()
        return self._clip_and_step(stats, float(loss.detach()))

    def _clip_and_step(self, stats: dict[str, Any], total_loss: float) -> dict[str, Any]:
        """Grad-norm clip, the non-finite gradient guard, the AdamW step (gradients already in `.grad`)."""
        cfg = self.cfg
        params = [q for g in self.optimizer.param_groups for q in g["params"]]
        if cfg.ppo.max_grad_norm > 0:
            gn = float(torch.nn.utils.clip_grad_norm_(params, cfg.ppo.max_grad_norm))
            stats["losses/grad_norm"] = gn
        else:
            gn = float(torch.nn.utils.get_total_norm([q.grad for q in params if q.grad is not None]))
        if not math.isfinite(gn):  # some gradient is NaN/inf (clipping scaled them all by NaN)
            self.optimizer.zero_grad(set_to_none=True)
            return {SKIPPED_KEY: "gradient"}
        self.optimizer.step()
        stats["losses/total_loss"] = total_loss
        return stats

    def _dp_finish(
        self, dp: DataParallel, stats: dict[str, Any], w: dict[str, float] | None, loss: torch.Tensor
    ) -> dict[str, Any]:
        """Reduce the diagnostics and the finite check, backward this rank's share, SUM-reduce the
        gradients, then the same clip/guard/step as a single process (app/rl/data_parallel.py)."""
        assert w is not None
        reduced, total_loss = dp.reduce_stats(stats, w, loss)
        self.optimizer.zero_grad(set_to_none=True)
        if reduced is None:
            return {SKIPPED_KEY: "loss"}
        if loss.requires_grad:
            loss.backward()
        dp.reduce_grads([q for g in self.optimizer.param_groups for q in g["params"]])
        return self._clip_and_step(reduced, total_loss)

    @torch.no_grad()
    def _check_finite_parameters(self, version: int) -> None:
        """Never let non-finite weights stand (they would be pushed to the robots): with the guard above this
        cannot happen from finite weights, so it is an error (one reduction and one sync per update)."""
        named = [(n, q) for n, q in self.model.named_parameters() if q.requires_grad]
        if not named or bool(torch.stack([q.isfinite().all() for _, q in named]).all()):
            return
        bad = [n for n, q in named if not bool(q.isfinite().all())]
        if bad:
            raise FloatingPointError(
                f"update of v{version}: trainable parameters are not finite ({', '.join(bad[:5])}); they were "
                "before this update or an optimiser setting is not finite. Resume from the last checkpoint"
            )

    def _anchor_loss(self, device: torch.device) -> torch.Tensor:
        """Flow matching on `rl.anchor.batch_size` rows drawn from the anchor batch (whole chunks)."""
        data = self.anchor_pool()
        assert data is not None
        act = data[ANCHOR_ACTION_KEY]
        idx = torch.randint(
            0, act.shape[0], (min(self.cfg.anchor.batch_size, act.shape[0]),), generator=self.aux_generator
        )
        obs = {k: v[idx].to(device) for k, v in data.items() if k != ANCHOR_ACTION_KEY}
        ctx = self.model.encode(obs)
        return flow_matching_loss(
            self.model.policy, ctx, act[idx].to(device).float(), generator=self.aux_generator
        )

    def _extra_metrics(self, p: PreparedBatch, anchor_w: float) -> dict[str, float]:
        """Diagnostics of the robot-minute parts, only when one is on (the default metrics stay as they were)."""
        cfg = self.cfg
        out: dict[str, float] = {}
        n = max(len(p.batch), 1)
        if p.masked_by_weight is not None and p.weight is not None:
            eligible = p.policy_mask | p.masked_by_weight
            out["losses/masked_by_weight_frac"] = float(p.masked_by_weight.sum()) / max(
                int(eligible.sum()), 1
            )
            out["losses/behaviour_weight_mean"] = (
                float(p.weight[p.policy_mask].mean()) if bool(p.policy_mask.any()) else 1.0
            )
        if p.awr_rows is not None and p.awr_weight is not None:
            out["charts/awr_chunks"] = float(p.awr_rows.sum())
            out["charts/awr_weight_mean"] = (
                float(p.awr_weight[p.awr_rows].mean()) if bool(p.awr_rows.any()) else 0.0
            )
            if p.success is not None:
                out["charts/success_chunk_frac"] = float(p.success.sum()) / n
        if cfg.anchor.coef > 0:
            out["charts/anchor_coef"] = anchor_w
        if self.replay is not None or cfg.awr.coef > 0 or cfg.anchor.coef > 0:
            out["charts/human_chunk_frac"] = float(p.intervention.sum()) / n
        return out
