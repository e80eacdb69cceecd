"""PIRLAlgorithm behind LeRobot's RLAlgorithm contract, registered as --algorithm.type=pirl."""

from __future__ import annotations

import draccus
import pytest
import torch
from lerobot.rl.algorithms.configs import RLAlgorithmConfig
from lerobot.rl.algorithms.factory import make_algorithm_config

from app.rl.algorithm import PIRLAlgorithm, PIRLAlgorithmConfig, make_algorithm
from app.rl.batch import RolloutBatch
from app.rl.sampling import sample


def _batch(policy, n_episodes=2, chunks=4, version=0) -> RolloutBatch:
    model = policy.model
    rows = []
    for ep in range(n_episodes):
        obs = {"observation.state": torch.randn(chunks, model.policy.cfg.state_dim)}
        s = sample(model, obs, generator=torch.Generator().manual_seed(ep))
        done = torch.zeros(chunks, dtype=torch.bool)
        done[-1] = True
        rows.append(
            RolloutBatch(
                obs=obs, chain=s.chain, sde_step=s.sde_step, logprob=s.logprob, value=s.value,
                reward=torch.rand(chunks), done=done, truncated=torch.zeros(chunks, dtype=torch.bool),
                bootstrap_value=torch.zeros(chunks), intervention=torch.zeros(chunks, dtype=torch.bool),
                human_action=torch.zeros(chunks, model.policy.chunk_size, model.policy.action_dim),
                takeover_start=torch.zeros(chunks, dtype=torch.bool),
                policy_version=torch.full((chunks,), version), episode_id=torch.full((chunks,), ep),
                chunk_index=torch.arange(chunks), group_id=torch.full((chunks,), -1),
            )
        )  # fmt: skip
    return RolloutBatch.cat(rows)


def test_pirl_is_a_registered_lerobot_algorithm_choice(run_config):
    assert RLAlgorithmConfig.get_choice_class("pirl") is PIRLAlgorithmConfig
    cfg = make_algorithm_config("pirl", chunks_per_update=8)
    assert isinstance(cfg, PIRLAlgorithmConfig) and cfg.type == "pirl"
    parsed = run_config("--algorithm.type=pirl", "--algorithm.push_bf16=true").algorithm
    assert isinstance(parsed, PIRLAlgorithmConfig) and parsed.push_bf16
    assert draccus.encode(parsed, RLAlgorithmConfig)["type"] == "pirl"


def test_update_runs_ppo_and_bumps_the_version(run_config):
    cfg = run_config()
    policy = cfg.make_policy()
    algo = make_algorithm(cfg.algorithm, policy)
    assert isinstance(algo, PIRLAlgorithm) and algo.config.policy_config is policy.config
    assert set(algo.make_optimizers_and_scheduler()) == {"pirl"}
    before = {k: v.clone() for k, v in algo.get_weights().items()}
    stats = algo.update(iter([_batch(policy)]))
    log = stats.to_log_dict()
    for key in ("losses/approx_kl", "losses/clipfrac", "losses/value_loss", "rl/policy_version"):
        assert key in log, key
    assert algo.policy_version == 1 and algo.optimization_step == 1
    after = algo.get_weights()
    assert set(after) == set(before) and any(not torch.equal(before[k], after[k]) for k in after)
    # only trainable tensors travel; the frozen encoder does not
    assert not any(k.startswith("policy.obs_encoder") for k in after)
    # training state round trip (optimiser + version + step)
    state = algo.training_state()
    other = PIRLAlgorithm(cfg.make_policy(), cfg.algorithm)
    other.load_weights(after)
    other.load_training_state(state)
    assert other.policy_version == 1 and other.optimization_step == 1
    assert all(torch.equal(other.get_weights()[k], after[k]) for k in after)


def test_a_policy_without_pirl_model_gets_a_clear_error():
    with pytest.raises(TypeError, match="pirl_flow"):
        PIRLAlgorithm(torch.nn.Linear(2, 2), PIRLAlgorithmConfig())
    with pytest.raises(ValueError, match="chunks_per_update"):
        PIRLAlgorithmConfig(chunks_per_update=0).validate()
