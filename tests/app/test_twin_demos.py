"""Real demonstrations anchor twin training: the twin run config takes `learner.demos` (a LeRobotDataset of
demos, here the scripted expert's reach episodes that `pirl bc`'s tests record) with the anchor on
(`policy.rl.anchor.coef`), exactly as docs/simulation.md ("Real demonstrations anchor the twin") writes it,
and the learner's PPO updates then carry the flow-matching loss on those demos."""

from __future__ import annotations

import json

import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from app.learner.loop import Learner
from tests.app.learner.test_learner import _prime, _rollout
from tests.app.test_bc import demo_dataset  # noqa: F401 (the fixture: four expert reach episodes)
from tests.app.test_twin_checkpoint import REPO, twin_config

ANCHOR = ("--policy.rl.anchor.coef=0.1", "--policy.rl.anchor.decay=0.99", "--policy.rl.anchor.min_coef=0.02")


def test_a_twin_run_with_demos_sets_the_anchor_from_them(demo_dataset, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(REPO)
    cfg = twin_config(tmp_path / "run", f"--learner.demos={demo_dataset}", *ANCHOR, "--learner.save_every=0")
    assert cfg.robot.randomize.enable and str(cfg.learner.demos) == str(demo_dataset)
    anchor = cfg.policy.rl.anchor
    assert (anchor.coef, anchor.decay, anchor.min_coef) == (0.1, 0.99, 0.02)
    cfg.validate("learner")
    lines: list[str] = []
    learner = Learner(cfg, progress=lines.append)

    data = LeRobotDataset("local/demos", root=demo_dataset).hf_dataset.with_format(
        "torch", columns=["observation.state", "action"]
    )[:]
    batch = learner.algorithm.trainer.anchor_batch
    assert batch is not None  # set at construction from the demos
    assert batch["action"].shape == (len(data["action"]), learner.policy.config.native.chunk_size, 6)
    assert torch.equal(batch["observation.state"], data["observation.state"])  # one chunk per demo step
    assert torch.equal(batch["action"][:, 0], data["action"])

    _prime(learner)
    learner.pending = [_rollout(learner, 0, 0), _rollout(learner, 1, 0)]
    learner._update()
    metrics = json.loads((learner.out / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["losses/anchor"] > 0  # the PPO update trained the flow-matching loss on the demos


def test_without_the_anchor_the_demos_set_no_anchor_batch(demo_dataset, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(REPO)
    learner = Learner(twin_config(tmp_path / "run", f"--learner.demos={demo_dataset}"), progress=None)
    assert learner.cfg.policy.rl.anchor.coef == 0 and learner.algorithm.trainer.anchor_batch is None
    with pytest.raises(FileNotFoundError, match="learner.demos"):
        Learner(twin_config(tmp_path / "bad", f"--learner.demos={tmp_path / 'missing'}"), progress=None)
