"""The `pirl_vla` LeRobot policy type: a tiny SmolVLA / pi0 wrapped in a PIRLModel, saved and loaded the
LeRobot way, fed through the VLA's own pre-processor, and its rollout rows re-scored after the wire."""

from __future__ import annotations

import json

import pytest
import torch

from app.rl.config import PIRLConfig
from app.rl.vla_policy import PIRLVLAConfig, PIRLVLAPolicy, TinyVLAConfig

STATE_DIM = 9


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _config(base_type: str, **kw) -> PIRLVLAConfig:
    rl = PIRLConfig(method="flow_sde", num_steps=4, exec_horizon=5, value_hidden=(16,))
    return PIRLVLAConfig(
        base_type=base_type,
        tiny=TinyVLAConfig(enabled=True, state_dim=STATE_DIM),
        task="pick the red cube",
        rl=rl,
        device="cpu",
        push_to_hub=False,
        **kw,
    )


def _robot_obs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "observation.state": torch.randn(1, STATE_DIM, generator=g) * 3,
        "observation.images.front": torch.rand(1, 3, 48, 64, generator=g),
    }


@pytest.mark.parametrize("base_type", ["smolvla", "pi0"])
def test_round_trip_keeps_every_weight_and_the_settings(base_type: str, tmp_path):
    policy = PIRLVLAPolicy(_config(base_type))
    with torch.no_grad():  # trained weights differ from the tiny init the loader rebuilds first
        for p in policy.model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    policy.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["type"] == "pirl_vla" and saved["base_type"] == base_type
    assert saved["rl"]["method"] == "flow_sde" and saved["task"] == "pick the red cube"

    loaded = PIRLVLAPolicy.from_pretrained(tmp_path)
    assert loaded.config.rl == policy.config.rl and loaded.config.tiny == policy.config.tiny
    ours, theirs = policy.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k
    obs = _robot_obs()
    a = policy.sample(obs, mode="deterministic", generator=torch.Generator().manual_seed(1)).actions
    b = loaded.sample(obs, mode="deterministic", generator=torch.Generator().manual_seed(1)).actions
    assert a.shape == (1, 10, 6)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Only the action expert and the PI-RL heads train; the VLM is frozen.
    trainable = {n.split(".")[0] for n, p in loaded.named_parameters() if p.requires_grad}
    assert trainable == {"model"}
    assert loaded.model.trainable_parameter_count() < sum(p.numel() for p in loaded.parameters())


@pytest.mark.parametrize("base_type", ["smolvla", "pi0"])
def test_rollout_row_survives_the_wire_and_rescores_to_ratio_one(base_type: str):
    from app.rl.sampling import evaluate_chain
    from app.transport.codec import Rollout, decode_rollout, encode_rollout

    policy = PIRLVLAPolicy(_config(base_type))
    pobs = policy.prepare_observation(_robot_obs())
    assert pobs["observation.language.tokens"].dtype == torch.int64
    assert pobs["observation.language.attention_mask"].dtype == torch.bool
    s = policy.sample(pobs, generator=torch.Generator().manual_seed(3))
    row = {f"obs.{k}": v for k, v in pobs.items()} | {"chain": s.chain, "sde_step": s.sde_step.long()}
    got = decode_rollout(encode_rollout(Rollout("a", 0, row, {}))).batch  # weights-only load
    obs = {k[4:]: v for k, v in got.items() if k.startswith("obs.")}
    assert torch.equal(obs["observation.language.tokens"], pobs["observation.language.tokens"])
    with torch.no_grad():
        ev = evaluate_chain(policy.model, obs, got["chain"], got["sde_step"])
    torch.testing.assert_close(ev.logprob, s.logprob, rtol=0, atol=1e-5)


def test_pre_processor_normalises_state_and_actions_come_back_in_robot_units(tmp_path):
    stats = {
        "observation.state": {"mean": [1.0] * STATE_DIM, "std": [2.0] * STATE_DIM},
        "action": {"mean": [10.0] * 6, "std": [5.0] * 6},
    }
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats))
    policy = PIRLVLAPolicy(_config("smolvla", stats_path=str(path)))
    obs = _robot_obs()
    pobs = policy.prepare_observation(obs)
    torch.testing.assert_close(pobs["observation.state"], (obs["observation.state"] - 1.0) / 2.0)
    s = policy.sample(pobs, mode="deterministic")
    model_space = s.chain[:, -1, :, :6]
    torch.testing.assert_close(s.actions, model_space * 5.0 + 10.0)


def test_clear_errors_for_missing_inputs(tmp_path):
    policy = PIRLVLAPolicy(_config("pi0"))
    with pytest.raises(KeyError, match="observation.images.front"):
        policy.prepare_observation({"observation.state": torch.zeros(1, STATE_DIM)})
    with pytest.raises(ValueError, match="base_type"):
        PIRLVLAConfig(base_type="act")
    with pytest.raises(ValueError, match="base_path"):
        PIRLVLAPolicy(PIRLVLAConfig(base_type="smolvla", device="cpu"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        PIRLVLAPolicy(PIRLVLAConfig(base_type="smolvla", base_path=str(tmp_path), device="cpu"))


def test_a_bare_vla_folder_as_policy_path_says_how_to_wrap_it(tmp_path):
    from app.rl.adapters.tiny import build_tiny_smolvla
    from app.run.config import PIRLRunConfig

    build_tiny_smolvla(tmp_path / "vlm").save_pretrained(tmp_path / "smolvla")
    with pytest.raises(ValueError, match="--policy.type=pirl_vla --policy.base_path"):
        PIRLRunConfig(policy_path=tmp_path / "smolvla").make_policy()


def test_base_path_builds_from_a_local_smolvla_folder(tmp_path):
    from app.rl.adapters.tiny import build_tiny_smolvla

    base = build_tiny_smolvla(tmp_path / "vlm")
    base.save_pretrained(tmp_path / "smolvla")
    cfg = PIRLVLAConfig(base_type="smolvla", base_path=str(tmp_path / "smolvla"), device="cpu", task="pick")
    policy = PIRLVLAPolicy(cfg)
    for k, v in base.state_dict().items():
        assert torch.equal(policy.base.state_dict()[k], v), k
    with pytest.raises(ValueError, match="says type 'smolvla'"):
        PIRLVLAPolicy(PIRLVLAConfig(base_type="pi0", base_path=str(tmp_path / "smolvla"), device="cpu"))
