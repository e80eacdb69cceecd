"""`pirl eval --policy` on `pirl learner` checkpoints: the final one (with `pretrained_model/`), an
intermediate one (trainable state only: the policy is rebuilt from the run config in meta.json), and the
errors when neither form is there or the rebuilt frozen part is not the one the checkpoint trained."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from app.eval.policy import EvalError, load_policy, policy_folder_problem
from app.learner.loop import Learner
from app.run.parse import parse_run_config
from tests.app.eval.conftest import save_policy

REPO = Path(__file__).resolve().parents[3]


def _perturbed(learner: Learner, seed: int = 0) -> Learner:
    """Stand-in for training: move every trainable tensor (what a checkpoint must bring back)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in learner.algorithm.model.trainable_tensors().values():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    return learner


def _same_policy(loaded, learner: Learner) -> None:
    want, got = learner.policy.state_dict(), loaded.state_dict()
    assert sorted(got) == sorted(want)
    assert all(torch.equal(got[k].cpu(), want[k].cpu()) for k in want)
    assert not loaded.training


def test_eval_loads_an_intermediate_and_the_final_checkpoint(run_config):
    learner = _perturbed(Learner(run_config(), progress=None))
    inter = learner._save()
    assert not (inter / "pretrained_model").exists() and policy_folder_problem(inter) is None
    policy, pre, post = load_policy(inter)  # rebuilt from meta.json's run config + state.pt
    _same_policy(policy, learner)
    assert pre is None and post is None

    _perturbed(learner, seed=1).updates += 1
    learner.algorithm.trainer.policy_version += 1
    learner._final_save()
    final = learner.ckpt.latest()
    assert (inter.name, final.name) == ("000000", "000001") and (final / "pretrained_model").is_dir()
    for path in (final, final / "pretrained_model", str(final)):  # the checkpoint or its LeRobot folder
        _same_policy(load_policy(path)[0], learner)


def test_eval_rebuilds_a_tiny_vla_from_an_intermediate_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    torch.set_num_threads(1)
    cfg = parse_run_config(
        ["--config", "configs/vla/sim_tiny_vla.json", f"--learner.output_dir={tmp_path / 'run'}"]
        + ["--learner.tensorboard=false", "--learner.progress=false", "--transport.port=0"]
    )
    learner = _perturbed(Learner(cfg, progress=None))
    path = learner._save()
    policy = load_policy(path)[0]
    assert policy.config.type == "pirl_vla"
    _same_policy(policy, learner)


def test_a_relative_policy_path_is_found_from_another_folder(run_config, tmp_path, monkeypatch):
    bc = Path(save_policy(tmp_path / "bc_policy"))
    cfg = run_config()
    cfg.policy, cfg.policy_path = None, Path(os.path.relpath(bc, REPO))  # as the demo passes it: relative
    learner = _perturbed(Learner(cfg, progress=None))
    path = learner._save()
    monkeypatch.chdir(tmp_path / "run")  # eval started elsewhere: the path resolves from meta.json's cwd
    _same_policy(load_policy(path)[0], learner)


def test_clear_errors_when_a_checkpoint_cannot_be_loaded(run_config, tmp_path):
    learner = _perturbed(Learner(run_config(), progress=None))
    path = learner._save()
    meta_file = path / "meta.json"
    meta = json.loads(meta_file.read_text())

    meta_file.write_text(json.dumps({**meta, "frozen_digest": "0" * 16}))
    with pytest.raises(EvalError, match=f"frozen .*{re.escape(str(meta_file))}"):
        load_policy(path)
    meta_file.write_text(json.dumps({**meta, "weights_digest": "0" * 16}))
    with pytest.raises(EvalError, match="did not restore the weights it recorded"):
        load_policy(path)
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "config"}))
    with pytest.raises(EvalError, match="holds no run config to rebuild the policy from"):
        load_policy(path)

    (path / "state.pt").unlink()
    assert "without state.pt or pretrained_model/" in policy_folder_problem(path)
    with pytest.raises(EvalError, match="without state.pt or pretrained_model/"):
        load_policy(path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvalError, match=r"no config.json\) nor a `pirl learner` checkpoint"):
        load_policy(empty)
    assert "checkpoints/<version>" in policy_folder_problem(learner.out)
    assert "LAST names the newest" in policy_folder_problem(learner.out / "checkpoints")
