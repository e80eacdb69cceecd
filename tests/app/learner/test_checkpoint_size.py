"""A learner checkpoint holds the trainable state, not the frozen base: its size is set by the trainable
tensors (+ AdamW's two moments), and only the final one also carries the full LeRobot policy folder."""

from __future__ import annotations

import torch

from app.learner.checkpoint import CheckpointManager
from app.learner.loop import Learner
from app.rl.checkpoint_state import tensor_bytes
from tests.app.learner.test_learner import _prime, _rollout


def _folder_bytes(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_an_intermediate_checkpoint_is_the_size_of_the_trainable_state(run_config, capsys):
    # a native policy with a large frozen observation encoder (policy.rl.trainable leaves it out), as a
    # VLA's frozen backbone would be: 512-wide encoder, 32-wide action expert
    learner = Learner(run_config("--policy.native.obs_hidden=512"), progress=None)
    _prime(learner)
    learner.pending = [_rollout(learner, 0, 0), _rollout(learner, 1, 0)]
    learner._update()  # AdamW now holds exp_avg / exp_avg_sq for every trainable tensor
    inter = learner._save()

    trainable = tensor_bytes(learner.algorithm.model.trainable_tensors())
    full = tensor_bytes(learner.policy.state_dict())
    optimiser = sum(
        tensor_bytes({k: v for k, v in s.items() if torch.is_tensor(v) and v.dim() > 0})
        for s in learner.algorithm.trainer.optimizer.state_dict()["state"].values()
    )
    state_pt = (inter / "state.pt").stat().st_size
    assert full > 5 * trainable  # the test model is mostly frozen
    assert trainable + optimiser <= state_pt < full  # before: full + optimiser in state.pt, + full again
    assert state_pt < 1.1 * (trainable + optimiser) + 32_000  # little but pickling overhead on top
    assert state_pt < 3.5 * trainable
    assert _folder_bytes(inter) < full and not (inter / "pretrained_model").exists()

    # the final checkpoint adds the LeRobot folder (the whole model, for `pirl eval` and LeRobot tools)
    learner.pending = [_rollout(learner, 2, 1), _rollout(learner, 3, 1)]
    learner._update()
    learner._final_save()
    final = CheckpointManager(learner.out / "checkpoints").latest()
    assert final.name == "000002" and (final / "pretrained_model" / "model.safetensors").is_file()
    pretrained = _folder_bytes(final / "pretrained_model")
    assert pretrained > full
    with capsys.disabled():
        print(
            f"\ncheckpoint sizes (bytes): trainable {trainable}, optimiser {optimiser}, full model {full}; "
            f"intermediate state.pt {state_pt}, folder {_folder_bytes(inter)}; final folder "
            f"{_folder_bytes(final)} (pretrained_model {pretrained})"
        )
