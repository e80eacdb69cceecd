"""PIRLTrainer: learning on a toy bandit, the trainable/frozen split, interventions and staleness."""

from __future__ import annotations

import pytest
import torch

from app.rl.config import OptimConfig, PPOConfig
from app.rl.trainer import PIRLTrainer
from tests.app.rl.toy import bandit_batch, tiny_model

torch.set_num_threads(1)
TARGET = torch.tensor([0.8, -0.5])


def _fast_cfg(method: str, algorithm: str = "ppo") -> dict:
    return {
        "method": method,
        "algorithm": algorithm,
        "exec_horizon": 4,
        "ppo": PPOConfig(epochs=4, minibatch_size=64),
        "optim": OptimConfig(actor_lr=1e-3, value_lr=3e-3),
    }


@pytest.mark.parametrize(
    ("method", "algorithm"), [("flow_noise", "ppo"), ("flow_sde", "ppo"), ("flow_sde", "grpo")]
)
def test_update_improves_mean_reward_on_a_toy_bandit(method: str, algorithm: str) -> None:
    model = tiny_model(**_fast_cfg(method, algorithm))
    trainer = PIRLTrainer(model, seed=0)
    gen = torch.Generator().manual_seed(1)
    rewards = []
    for _ in range(25):
        batch, r = bandit_batch(model, 128, gen, TARGET, version=trainer.policy_version)
        metrics = trainer.update(batch)
        rewards.append(r)
    for key in ("losses/policy_loss", "losses/approx_kl", "losses/clipfrac"):
        assert key in metrics
    if algorithm == "ppo":
        assert {"losses/value_loss", "losses/explained_variance"} <= metrics.keys()
    if method == "flow_noise":
        assert "losses/entropy" in metrics
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert last > first + 0.1, (first, last)
    assert trainer.policy_version == 25


def test_gradients_reach_only_the_trainable_parameters() -> None:
    model = tiny_model(**_fast_cfg("flow_noise"))
    model.apply_trainable(("expert", "value_head"))
    trainer = PIRLTrainer(model, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch, _ = bandit_batch(model, 64, torch.Generator().manual_seed(0), TARGET)
    trainer.update(batch)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("policy.expert", "value_head")) for n in trainable)
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if n in trainable:
            assert changed, f"trainable {n} did not move"
        else:
            assert not changed and p.grad is None, f"frozen {n} moved or got a gradient"
    # Only the trainable subset ships, and it loads into a fresh model with the same split.
    state = trainer.get_trainable_state()
    assert set(state) == trainable
    fresh = tiny_model(seed=5, **_fast_cfg("flow_noise"))
    fresh.apply_trainable(("expert", "value_head"))
    fresh.load_trainable_state(state)
    for n in trainable:
        assert torch.equal(dict(fresh.named_parameters())[n], dict(model.named_parameters())[n])
    with pytest.raises(ValueError, match="unknown trainable group"):
        model.apply_trainable(("lora",))


def _clone_and_update(model_seed: int, batch, **kw) -> dict[str, torch.Tensor]:
    model = tiny_model(seed=model_seed, **_fast_cfg("flow_sde", **kw))
    PIRLTrainer(model, seed=0).update(batch)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_human_chunks_never_enter_the_ratio_but_bc_can_use_them() -> None:
    model = tiny_model(seed=3, **_fast_cfg("flow_sde"))
    batch, _ = bandit_batch(model, 32, torch.Generator().manual_seed(0), TARGET)
    batch.intervention[:8] = True
    # Garbage chain data and log-probs on human rows must not change the update at all.
    garbled = batch.index(slice(None))
    garbled.logprob[:8] = 1e6
    garbled.chain[:8] = 123.0
    garbled.sde_step[:8] = -1
    a = _clone_and_update(3, batch)
    b = _clone_and_update(3, garbled)
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=0, msg=n)
    # With a BC weight, human actions do teach the expert.
    garbled.human_action[:8] = 5.0
    model_bc = tiny_model(seed=3, **_fast_cfg("flow_sde"))
    model_bc.cfg.intervention.bc_coef = 1.0
    metrics = PIRLTrainer(model_bc, seed=0).update(garbled)
    assert metrics["losses/bc_loss"] > 0 and metrics["rl/intervention_chunks"] == 8
    assert metrics["rl/policy_chunks"] == 24


def test_stale_chunks_are_dropped_from_the_surrogate() -> None:
    model = tiny_model(**_fast_cfg("flow_noise"))
    trainer = PIRLTrainer(model, seed=0, policy_version=5)
    batch, _ = bandit_batch(model, 32, torch.Generator().manual_seed(0), TARGET, version=5)
    batch.policy_version[:10] = 3  # two versions old with max_staleness=1
    batch.policy_version[10:14] = 4  # one version old: kept
    metrics = trainer.update(batch)
    assert metrics["rl/stale_chunks"] == 10 and metrics["rl/policy_chunks"] == 22
    assert trainer.policy_version == 6


def test_decoupled_ppo_runs_and_masks_overweighted_samples() -> None:
    cfg = _fast_cfg("flow_noise")
    model = tiny_model(**cfg)
    model.cfg.staleness.decoupled = True
    model.cfg.staleness.max_staleness = 3
    trainer = PIRLTrainer(model, seed=0, policy_version=3)
    batch, _ = bandit_batch(model, 32, torch.Generator().manual_seed(0), TARGET, version=1)
    # Pretend behaviour was far less likely than now: pi_prox / pi_b = exp(alpha * 50) > 2 -> masked.
    batch.logprob[:4] -= 50.0
    metrics = trainer.update(batch)
    assert metrics["rl/policy_chunks"] == 28
    assert torch.isfinite(torch.tensor(metrics["losses/policy_loss"]))
