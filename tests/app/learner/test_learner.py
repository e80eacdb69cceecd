"""The learner loop in-process: staleness rule, checkpoint/resume state, config errors, Ctrl-C save."""

from __future__ import annotations

import json
import re
import time

import pytest
import torch

from app.learner.checkpoint import CheckpointManager
from app.learner.loop import Learner, MetricsSink
from app.rl.digests import weights_digest
from app.transport.codec import Rollout, decode_parameters
from tests.app.learner.test_algorithm import _batch


def _prime(learner: Learner) -> None:
    learner.sink = MetricsSink(learner.cfg, learner.out, learner.run_id)
    learner.out.mkdir(parents=True, exist_ok=True)
    learner.t_start = time.monotonic()
    learner.steps_at_start = 0


def _rollout(learner, ep: int, version: int) -> tuple[Rollout, object]:
    b = _batch(learner.policy, n_episodes=1, chunks=6, version=version)
    b.episode_id[:] = ep
    return Rollout("a", ep, b.to_dict(), {"steps": 30}), b


def test_stale_episodes_are_dropped_whole_and_fresh_ones_train(run_config):
    learner = Learner(run_config("--algorithm.drop_episode_after_versions=2"), progress=None)
    _prime(learner)
    learner.algorithm.trainer.policy_version = 5
    learner.pending = [_rollout(learner, 0, 2), _rollout(learner, 1, 3), _rollout(learner, 2, 5)]
    learner._update()
    assert learner.dropped_stale == 1  # version 2 is 3 behind v5: dropped; v3 (2 behind) and v5 train
    assert learner.algorithm.policy_version == 6 and learner.updates == 1
    m = json.loads((learner.out / "metrics.jsonl").read_text().splitlines()[-1])
    assert m["rl/chunks"] == 12 and m["charts/dropped_stale_episodes"] == 1
    assert m["rl/stale_chunks"] == 6  # v3 chunks are beyond rl.staleness.max_staleness=1: critic only
    assert m["charts/policy_version"] == 6
    # the published weights are the new version's trainable subset
    version, payload = learner.service.published_payload()
    params = decode_parameters(payload)
    assert version == 6 == params.version and params.base_digest == learner.frozen
    assert all(torch.equal(params.state[k], v) for k, v in learner.algorithm.get_weights().items())


def test_checkpoint_resume_restores_weights_optimizer_version_and_counters(run_config):
    first = Learner(run_config(), progress=None)
    _prime(first)
    first.pending = [_rollout(first, 0, 0), _rollout(first, 1, 0)]
    first._update()
    first.env_steps, first.episodes = 123, 7
    path = first._save()
    assert path.name == "000001"
    lines: list[str] = []
    resumed = Learner(run_config("--learner.resume=true"), progress=lines.append)
    assert resumed.algorithm.policy_version == 1 and resumed.updates == 1
    assert (resumed.env_steps, resumed.episodes, resumed.run_id) == (123, 7, first.run_id)
    a, b = first.algorithm.get_weights(), resumed.algorithm.get_weights()
    assert all(torch.equal(a[k], b[k]) for k in a)
    opt_a = first.algorithm.trainer.optimizer.state_dict()["state"]
    opt_b = resumed.algorithm.trainer.optimizer.state_dict()["state"]
    assert opt_a.keys() == opt_b.keys() and all(
        torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_a
    )
    assert torch.equal(
        first.algorithm.trainer.generator.get_state(), resumed.algorithm.trainer.generator.get_state()
    )
    assert "resumed" in lines[0] and "v1" in lines[0]
    # an intermediate checkpoint holds the trainable tensors only: no frozen weights, no LeRobot folder
    state, meta = CheckpointManager.load(path)
    assert sorted(state["trainable"]) == sorted(a) and "policy" not in state
    assert meta["format"] == 2 and meta["frozen_digest"] == first.frozen == resumed.frozen
    assert meta["weights_digest"] == weights_digest(resumed.algorithm.model.trainable_tensors())
    assert not (path / "pretrained_model").exists()


def _updated(learner: Learner, n: int = 1) -> Learner:
    for i in range(n):
        v = learner.algorithm.policy_version
        learner.pending = [_rollout(learner, 2 * i, v), _rollout(learner, 2 * i + 1, v)]
        learner._update()
    return learner


def test_final_checkpoint_has_pretrained_model_and_intermediate_ones_do_not(run_config):
    from app.rl.lerobot_policy import PIRLFlowPolicy

    first = Learner(run_config(), progress=None)
    _prime(first)
    inter = _updated(first)._save()
    _updated(first)
    first._final_save()  # what run() does at exit / max_updates / Ctrl-C
    final = CheckpointManager(first.out / "checkpoints").latest()
    assert (inter.name, final.name) == ("000001", "000002")
    assert (
        not (inter / "pretrained_model").exists() and (final / "pretrained_model" / "config.json").is_file()
    )
    # the LeRobot-style folder loads on its own with the final weights (for `pirl eval`, LeRobot tools)
    loaded = PIRLFlowPolicy.from_pretrained(final / "pretrained_model")
    w = first.algorithm.get_weights()
    assert all(torch.equal(loaded.model.get_trainable_state()[k], w[k]) for k in w)
    # resume works from the final checkpoint too
    resumed = Learner(run_config("--learner.resume=true"), progress=None)
    assert resumed.updates == 2 and resumed.algorithm.policy_version == 2
    assert weights_digest(resumed.algorithm.model.trainable_tensors()) == weights_digest(w)


def test_exit_right_after_a_periodic_save_adds_pretrained_model_to_it(run_config):
    learner = Learner(run_config(), progress=None)
    _prime(learner)
    path = _updated(learner)._save()  # e.g. save_every divides max_updates, or Ctrl-C right after a save
    assert not (path / "pretrained_model").exists()
    learner._final_save()
    assert (path / "pretrained_model" / "model.safetensors").is_file()
    assert [p.name for p in CheckpointManager(learner.out / "checkpoints").finished()] == ["000001"]
    assert not list(path.glob(".tmp-*"))
    # a resumed run that stops without updating leaves its newest checkpoint with the folder as well
    (path / "pretrained_model").rename(path.parent / "moved")
    resumed = Learner(run_config("--learner.resume=true"), progress=None)
    resumed._final_save()
    assert (path / "pretrained_model" / "config.json").is_file()


def test_save_pretrained_every_writes_the_folder_into_each_checkpoint(run_config):
    cfg = run_config()
    cfg.learner.save_pretrained = "every"  # learner.save_pretrained (read with getattr until declared)
    learner = Learner(cfg, progress=None)
    _prime(learner)
    assert (_updated(learner)._save() / "pretrained_model" / "config.json").is_file()
    bad = run_config()
    bad.learner.save_pretrained = "sometimes"
    with pytest.raises(ValueError, match="learner.save_pretrained must be 'final' or 'every'"):
        Learner(bad, progress=None)


def test_resume_refuses_a_policy_whose_frozen_part_differs(run_config):
    first = Learner(run_config(), progress=None)
    _prime(first)
    path = _updated(first)._save()
    from app.rl.checkpoint_state import CheckpointMismatchError

    # another seed rebuilds another (frozen) encoder: the trainable tensors alone would not reproduce the run
    with pytest.raises(CheckpointMismatchError, match=f"frozen.*{re.escape(str(path / 'meta.json'))}"):
        Learner(run_config("--learner.resume=true", "--seed=1"), progress=None)
    # another trainable set: named as such
    with pytest.raises(CheckpointMismatchError, match="trainable changed"):
        Learner(
            run_config("--learner.resume=true", "--policy.rl.trainable=[expert,value_head]"), progress=None
        )


def test_a_format_1_checkpoint_with_the_whole_state_dict_still_resumes(run_config):
    first = Learner(run_config(), progress=None)
    _prime(first)
    path = _updated(first)._save()
    state, meta = CheckpointManager.load(path)
    state["policy"] = {k: v.detach().clone() for k, v in first.policy.state_dict().items()}
    del state["trainable"]
    meta.pop("format")
    torch.save(state, path / "state.pt")
    (path / "meta.json").write_text(json.dumps(meta))
    resumed = Learner(run_config("--learner.resume=true"), progress=None)
    assert resumed.updates == 1 and resumed.frozen == first.frozen
    w, r = first.algorithm.get_weights(), resumed.algorithm.get_weights()
    assert all(torch.equal(w[k], r[k]) for k in w)


def test_config_mistakes_get_actionable_errors(run_config, tmp_path):
    first = Learner(run_config(), progress=None)
    _prime(first)
    first._save()
    with pytest.raises(FileExistsError, match="resume"):
        Learner(run_config(), progress=None)
    with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
        Learner(
            run_config(f"--learner.output_dir={tmp_path / 'empty'}", "--learner.resume=true"), progress=None
        )
    with pytest.raises(ValueError, match="either"):
        run_config(f"--policy_path={tmp_path}").validate("learner")
    cfg = run_config()
    cfg.robot = None
    with pytest.raises(ValueError, match="robot.type"):
        cfg.validate("actor")


def test_stop_request_ends_the_loop_with_a_final_checkpoint(run_config):
    learner = Learner(run_config("--learner.save_every=0"), progress=None)
    learner.start_server()
    learner.pending = [_rollout(learner, 0, 0), _rollout(learner, 1, 0)]
    import threading

    t = threading.Thread(target=learner.run)
    t.start()
    deadline = time.monotonic() + 20
    while learner.updates < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    learner.shutdown.set()  # what the SIGINT handler does
    t.join(20)
    assert not t.is_alive()
    assert CheckpointManager(learner.out / "checkpoints").latest().name == "000001"
