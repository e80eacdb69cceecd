"""The learner loop in-process: staleness rule, checkpoint/resume state, config errors, Ctrl-C save."""

from __future__ import annotations

import json
import time

import pytest
import torch

from app.learner.checkpoint import CheckpointManager
from app.learner.loop import Learner, MetricsSink
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
    # the LeRobot-style policy folder in the checkpoint loads on its own (for `pirl eval`)
    from app.rl.lerobot_policy import PIRLFlowPolicy

    loaded = PIRLFlowPolicy.from_pretrained(path / "pretrained_model")
    assert all(torch.equal(loaded.model.get_trainable_state()[k], a[k]) for k in a)


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
