"""PIRLTrainer: learning on a toy bandit, the trainable/frozen split, interventions and staleness."""

from __future__ import annotations

import pytest
import torch

from app.rl.config import FlowSDEConfig, OptimConfig, PIRLConfig, PPOConfig
from app.rl.model import PIRLModel
from app.rl.sampling import sample
from app.rl.trainer import PIRLTrainer
from tests.app.rl.toy import bandit_batch, rand_obs, tiny_model, tiny_native

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
    ("method", "algorithm", "hybrid"),
    [
        ("flow_noise", "ppo", True),
        ("flow_sde", "ppo", True),
        ("flow_sde", "ppo", False),
        ("flow_sde", "grpo", True),
    ],
)
def test_update_improves_mean_reward_on_a_toy_bandit(method: str, algorithm: str, hybrid: bool) -> None:
    model = tiny_model(**_fast_cfg(method, algorithm), sde=FlowSDEConfig(hybrid=hybrid))
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


def test_critic_warmup_trains_only_the_value_head() -> None:
    cfg = _fast_cfg("flow_noise")
    model = tiny_model(**cfg)
    model.cfg.ppo.critic_warmup_updates = 1
    trainer = PIRLTrainer(model, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    m1 = trainer.update(bandit_batch(model, 32, torch.Generator().manual_seed(0), TARGET)[0])
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert m1["rl/critic_warmup"] == 1.0 and moved and all(n.startswith("value_head") for n in moved)
    m2 = trainer.update(bandit_batch(model, 32, torch.Generator().manual_seed(1), TARGET, version=1)[0])
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert m2["rl/critic_warmup"] == 0.0 and any(n.startswith("policy.expert") for n in moved)


def test_lora_group_trains_adapters_and_leaves_the_expert_frozen() -> None:
    torch.manual_seed(0)
    plain = tiny_native()
    pol = tiny_native(lora_rank=4)
    # Same base weights under the wrapped names: the untouched adapter must not change the velocity.
    renamed = {}
    for k, v in plain.state_dict().items():
        parts = k.split(".")
        if k.startswith("expert_trunk."):
            k = ".".join([*parts[:2], "base", *parts[2:]])
        elif k.startswith("expert_out."):
            k = "expert_out.base." + parts[-1]
        renamed[k] = v
    missing, unexpected = pol.load_state_dict(renamed, strict=False)
    assert not unexpected and all("lora_" in k for k in missing)
    obs = rand_obs(4, torch.Generator().manual_seed(0))
    x = torch.randn(4, 4, 2)
    t = torch.rand(4)
    with torch.no_grad():
        torch.testing.assert_close(
            pol.velocity(x, t, pol.encode(obs))[0], plain.velocity(x, t, plain.encode(obs))[0]
        )
    cfg = PIRLConfig(**{**_fast_cfg("flow_sde"), "trainable": ("lora", "value_head")})
    model = PIRLModel(pol, cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("value_head") for n in trainable)
    x0 = torch.randn(4, 4, 2, generator=torch.Generator().manual_seed(1))
    before = sample(model, obs, mode="deterministic", x0=x0).actions
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainer = PIRLTrainer(model, seed=0)
    for v in range(3):
        trainer.update(bandit_batch(model, 64, torch.Generator().manual_seed(v), TARGET, version=v)[0])
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(frozen[n], p.detach()), n
    after = sample(model, obs, mode="deterministic", x0=x0).actions
    assert not torch.equal(before, after)  # the zero-initialised B moved


def test_colliding_episode_ids_are_rejected() -> None:
    model = tiny_model(**_fast_cfg("flow_sde"))
    batch, _ = bandit_batch(model, 8, torch.Generator().manual_seed(0), TARGET)
    batch.episode_id[:] = 0  # eight rows claim to be chunk 0 of episode 0
    with pytest.raises(ValueError, match="unique"):
        PIRLTrainer(model).update(batch)


def test_prepare_applies_takeover_penalty_and_masks() -> None:
    model = tiny_model(**_fast_cfg("flow_sde"))
    model.cfg.intervention.takeover_penalty = 0.5
    trainer = PIRLTrainer(model, policy_version=4)
    batch, _ = bandit_batch(model, 6, torch.Generator().manual_seed(0), TARGET, version=4)
    batch.takeover_start[1] = True
    batch.intervention[1] = True
    batch.policy_version[2] = 2  # too old
    batch.policy_version[3] = 5  # from the future: also out
    p = trainer.prepare(batch)
    torch.testing.assert_close(p.reward, batch.reward - 0.5 * batch.takeover_start.float())
    assert p.policy_mask.tolist() == [True, False, False, False, True, True]
    assert p.stale.tolist() == [False, False, True, True, False, False]
    # One-chunk terminal episodes: return = reward, advantage = reward - V (before normalisation).
    torch.testing.assert_close(p.returns, p.reward)
    assert trainer.policy_version == 4  # prepare changes nothing


def test_grpo_advantages_reach_the_surrogate_unchanged() -> None:
    model = tiny_model(**_fast_cfg("flow_sde", "grpo"))
    batch, _ = bandit_batch(model, 16, torch.Generator().manual_seed(0), TARGET, group_size=4)
    p = PIRLTrainer(model).prepare(batch)
    for g in range(4):
        rows = p.batch.group_id == g
        r = p.reward[rows]
        torch.testing.assert_close(p.advantages[rows], (r - r.mean()) / (r.std() + 1e-6))
    assert bool(p.policy_mask.all())


@pytest.mark.parametrize("bootstrap", [True, False])
def test_truncated_episodes_bootstrap_only_when_configured(bootstrap: bool) -> None:
    model = tiny_model(**_fast_cfg("flow_noise"))
    model.cfg.gae.bootstrap_truncated = bootstrap
    batch, _ = bandit_batch(model, 4, torch.Generator().manual_seed(0), TARGET)
    batch.done[:] = False
    batch.truncated[:] = True  # every one-chunk episode hit the time limit
    batch.bootstrap_value[:] = torch.tensor([5.0, -2.0, 0.5, 1.0])
    p = PIRLTrainer(model).prepare(batch)
    gamma = model.cfg.gae.gamma
    expected = p.reward + (gamma * p.batch.bootstrap_value if bootstrap else 0.0)
    torch.testing.assert_close(p.returns, expected)
