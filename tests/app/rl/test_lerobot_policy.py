"""The registered LeRobot policy "pirl_flow": exact save/load round trip and deployment behaviour."""

from __future__ import annotations

import json

import pytest
import torch
from lerobot.configs import PreTrainedConfig

from app.rl.batch import RolloutBatch
from app.rl.config import PIRLConfig
from app.rl.lerobot_policy import PIRLFlowConfig, PIRLFlowPolicy
from app.rl.native import NativeFlowConfig
from app.rl.sampling import sample
from app.rl.trainer import PIRLTrainer

torch.set_num_threads(1)


def _policy(**rl) -> PIRLFlowPolicy:
    native = NativeFlowConfig(
        state_dim=3,
        env_state_dim=2,
        image_keys=("front",),
        action_dim=2,
        chunk_size=6,
        obs_hidden=32,
        expert_hidden=64,
    )
    return PIRLFlowPolicy(PIRLFlowConfig(native=native, rl=PIRLConfig(exec_horizon=3, **rl), device="cpu"))


def _obs(n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "observation.state": torch.randn(n, 3, generator=g),
        "observation.environment_state": torch.randn(n, 2, generator=g),
        "observation.images.front": torch.rand(n, 3, 24, 24, generator=g),
    }


@pytest.mark.parametrize("method", ["flow_noise", "flow_sde"])
def test_save_load_round_trips_exactly(tmp_path, method: str) -> None:
    policy = _policy(method=method, trainable=("expert", "encoder", "noise_head", "value_head"))
    policy.flow.set_normalization(
        {
            "observation.state": {
                "mean": torch.tensor([1.0, 2.0, 3.0]),
                "std": torch.tensor([2.0, 2.0, 2.0]),
            },
            "action": {"mean": torch.tensor([10.0, -10.0]), "std": torch.tensor([5.0, 5.0])},
        }
    )
    # Move the weights away from their initialisation with one real update.
    tr = PIRLTrainer(policy.model)
    tr.update(_batch_for(policy))
    policy.save_pretrained(tmp_path)
    cfg_json = json.loads((tmp_path / "config.json").read_text())
    assert cfg_json["type"] == "pirl_flow" and cfg_json["rl"]["method"] == method
    assert (tmp_path / "model.safetensors").exists()
    loaded = PIRLFlowPolicy.from_pretrained(tmp_path)
    sd, sd2 = policy.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    assert loaded.config.rl == policy.config.rl and loaded.config.native == policy.config.native
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == [
        n for n, p in policy.named_parameters() if p.requires_grad
    ]
    x0 = torch.randn(2, 6, 2)
    a = sample(policy.model, _obs(), mode="deterministic", x0=x0).actions
    b = sample(loaded.model, _obs(), mode="deterministic", x0=x0).actions
    assert torch.equal(a, b)
    # LeRobot's registry knows the type.
    assert PreTrainedConfig.get_choice_class("pirl_flow") is PIRLFlowConfig


def _batch_for(policy: PIRLFlowPolicy):
    """A one-chunk-episode batch with this policy's observation layout."""
    obs = _obs(8)
    s = policy.sample(obs, generator=torch.Generator().manual_seed(0))
    n = 8
    zb = torch.zeros(n, dtype=torch.bool)
    return RolloutBatch(
        obs=obs,
        chain=s.chain,
        sde_step=s.sde_step,
        logprob=s.logprob,
        value=s.value,
        reward=-s.actions.abs().mean(dim=(1, 2)),
        done=~zb,
        truncated=zb,
        bootstrap_value=torch.zeros(n),
        intervention=zb,
        human_action=torch.zeros(n, 6, 2),
        takeover_start=zb,
        policy_version=torch.zeros(n, dtype=torch.long),
        episode_id=torch.arange(n),
        chunk_index=torch.zeros(n, dtype=torch.long),
        group_id=torch.zeros(n, dtype=torch.long),
    )


def test_select_action_replays_the_executed_slice_of_one_chunk() -> None:
    policy = _policy()
    obs = _obs(1)
    torch.manual_seed(0)
    actions = [policy.select_action(obs) for _ in range(3)]
    torch.manual_seed(0)
    chunk = policy.predict_action_chunk(obs)
    for i in range(3):
        torch.testing.assert_close(actions[i], chunk[:, i])
    policy.reset()
    assert not policy._queue
    loss, info = policy.forward({**obs, "action": torch.randn(1, 6, 2)})
    assert loss.requires_grad and info["bc_loss"] > 0


def test_bad_config_is_reported() -> None:
    with pytest.raises(ValueError, match="exec_horizon"):
        PIRLFlowConfig(native=NativeFlowConfig(chunk_size=4), rl=PIRLConfig(exec_horizon=5), device="cpu")
    with pytest.raises(ValueError, match="method"):
        PIRLConfig(method="flow_magic")  # type: ignore[arg-type]


def test_config_overrides_parse_like_lerobot_cli(tmp_path) -> None:
    PIRLFlowPolicy(PIRLFlowConfig(device="cpu")).save_pretrained(tmp_path)
    cfg = PreTrainedConfig.from_pretrained(
        tmp_path,
        cli_overrides=[
            "--rl.method=flow_sde",
            "--rl.trainable=[expert,value_head]",  # not strict JSON: still a tuple of names
            "--native.image_keys=[front,wrist]",
            "--native.chunk_size=8",
            "--rl.ppo.value_clip=null",
        ],
    )
    assert isinstance(cfg, PIRLFlowConfig)
    assert cfg.rl.method == "flow_sde" and cfg.rl.trainable == ("expert", "value_head")
    assert cfg.native.image_keys == ("front", "wrist") and cfg.native.chunk_size == 8
    assert cfg.rl.ppo.value_clip is None
    assert {"observation.images.front", "observation.images.wrist"} <= set(cfg.input_features)
