"""`hold_frozen_in` (app/rl/frozen_dtype.py) on a tiny pi0: the frozen weight matrices become bf16 (about
half the frozen bytes), the trainable subset and the norms stay fp32, the model computes what it did
before within bf16 rounding, and a PI-RL update still trains the fp32 subset."""

from __future__ import annotations

import math

import torch

from app.rl.config import PIRLConfig, PPOConfig
from app.rl.frozen_dtype import hold_frozen_in
from app.rl.model import PIRLModel
from app.rl.sampling import sample
from app.rl.trainer import PIRLTrainer
from benchmarks.gpu_update import make_obs, rollout_batch


def test_a_tiny_pi0_runs_and_trains_with_its_frozen_base_in_bf16() -> None:
    from app.rl.adapters.pi0 import PI0Adapter
    from app.rl.adapters.tiny import build_tiny_pi0

    torch.manual_seed(0)
    policy, tok = build_tiny_pi0("pi0")
    cfg = PIRLConfig(num_steps=2, ppo=PPOConfig(epochs=1, minibatch_size=4, critic_warmup_updates=0))
    model = PIRLModel(PI0Adapter(policy), cfg)
    trainer = PIRLTrainer(model, seed=0)
    obs = make_obs(model.policy, tok, 4, torch.device("cpu"))
    with torch.no_grad():
        before = model.value(model.encode(obs))
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    done = hold_frozen_in(model)

    assert done.modules > 0 and done.bytes_after < 0.6 * done.bytes_before
    named = dict(model.named_parameters())
    assert all(named[n].dtype == torch.float32 for n in trained)  # the trainable subset: fp32
    frozen = {n: p for n, p in named.items() if not p.requires_grad}
    matrices = [n for n, p in frozen.items() if p.dim() >= 2]
    assert matrices and all(frozen[n].dtype == torch.bfloat16 for n in matrices)
    assert any(p.dim() == 1 and p.dtype == torch.float32 for p in frozen.values())  # norms stay
    with torch.no_grad():
        after = model.value(model.encode(obs))
    assert after.dtype == before.dtype == torch.float32
    torch.testing.assert_close(after, before, rtol=0.05, atol=0.05)  # bf16 rounding of the features
    assert not torch.equal(after, before)  # ... which did happen

    metrics = trainer.update(rollout_batch(model, obs, sample(model, obs, mode="train")))
    assert math.isfinite(metrics["losses/total_loss"])
    assert any(not torch.equal(named[n], v) for n, v in trained.items())
    assert all(named[n].dtype == torch.float32 for n in trained)
