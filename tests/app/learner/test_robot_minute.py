"""The robot-minute method on the learner: the preset from the run config, demos -> critic pre-training rows
and the anchor (critic once, anchor at every start), robot-time accounting from the actors' episode stats,
and policies saved at robot-minute marks."""

from __future__ import annotations

import json
import time

import pytest
import torch

from app.learner.demos import anchor_batch, demo_rows, load_demos, save_demo_file
from app.learner.loop import Learner
from app.learner.robot_time import RobotClock, mark_name, saved_marks
from tests.app.learner.test_learner import _prime, _rollout

STATE_DIM, ACTION_DIM = 9, 6  # configs/sim_pirl_reach.json's native policy


def _episode(steps: int, success: bool = True) -> dict[str, torch.Tensor]:
    reward = torch.zeros(steps)
    reward[-1] = 1.0 if success else 0.0
    return {
        "observation.state": torch.randn(steps, STATE_DIM),
        "action": torch.arange(steps, dtype=torch.float32)[:, None].repeat(1, ACTION_DIM),
        "reward": reward,
    }


def _demo_file(tmp_path, episodes=None):
    return save_demo_file(tmp_path / "demos.pt", episodes or [_episode(12), _episode(7, success=False)])


def test_demos_become_whole_episode_takeover_rows(run_config, tmp_path):
    learner = Learner(run_config(), progress=None)
    model = learner.algorithm.model
    h, size = model.exec_horizon, model.policy.chunk_size  # 5 and 10 in the recipe
    episodes = load_demos(_demo_file(tmp_path))
    rows = demo_rows(episodes, model)
    assert len(rows) == 3 + 2  # ceil(12 / 5) + ceil(7 / 5)
    assert rows.intervention.all() and rows.human_steps().all()  # human-style rows, every step marked
    assert torch.equal(rows.episode_id, torch.tensor([-1, -1, -1, -2, -2]))
    assert torch.equal(rows.chunk_index, torch.tensor([0, 1, 2, 0, 1]))
    # human_action = the next chunk_size demo actions, the tail repeating the episode's last one
    assert torch.equal(rows.human_action[1, :, 0], torch.tensor([5, 6, 7, 8, 9, 10, 11, 11, 11, 11.0]))
    assert torch.equal(rows.obs["observation.state"][2], episodes[0]["observation.state"][10])
    # the successful demo ends done with its reward in its last row; the failed one is cut (truncated)
    assert rows.done.tolist() == [False, False, True, False, False]
    assert rows.truncated.tolist() == [False, False, False, False, True]
    assert rows.reward.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert (rows.chain == 0).all() and rows.chain.shape[1:] == (model.cfg.num_steps + 1, size, ACTION_DIM)
    anchor = anchor_batch(episodes, size)
    assert anchor["action"].shape == (12 + 7, size, ACTION_DIM) and "reward" not in anchor
    assert h == 5


def test_a_demo_file_without_rewards_counts_as_successes_and_bad_files_are_named(tmp_path):
    ep = _episode(4)
    del ep["reward"]
    episodes = load_demos(save_demo_file(tmp_path / "d.pt", [ep]))
    assert episodes[0]["reward"].tolist() == [0.0, 0.0, 0.0, 1.0]
    torch.save({"format": 99}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a demo file"):
        load_demos(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="learner.demos"):
        load_demos(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="steps"):
        save_demo_file(tmp_path / "x.pt", [{**_episode(4), "reward": torch.zeros(3)}])


def test_robot_minute_preset_comes_from_the_run_config(run_config):
    learner = Learner(
        run_config("--learner.preset=robot_minute", '--learner.rl_overrides={"awr.coef": 0.25}')
    )
    rl = learner.algorithm.model.cfg
    assert rl.replay.enabled and rl.staleness.decoupled and rl.anchor.coef == 0.1
    assert rl.awr.coef == 0.25  # the override after the preset
    assert learner.algorithm.trainer.replay is not None  # the trainer was built with the preset on
    assert learner.policy.config.rl is rl  # what checkpoints save is what trains
    # the run config's explicit chunks_per_update (12 in the tiny test config) wins over the preset's 16
    assert learner.cfg.algorithm.chunks_per_update == 12
    with pytest.raises(ValueError, match="no option 'awr.nope'"):
        Learner(run_config('--learner.rl_overrides={"awr.nope": 1}'), progress=None)
    # what the actors sample with, or the model reads when built, is refused (it was silently ignored)
    for key, value in (("noise.std_min", 0.2), ("num_steps", 8), ("trainable", ["expert"])):
        with pytest.raises(ValueError, match=f"policy.rl.{key} is fixed when the policy is built"):
            Learner(run_config(f"--learner.rl_overrides={json.dumps({key: value})}"), progress=None)
    with pytest.raises(ValueError, match="learner.preset"):
        run_config("--learner.preset=fast").validate("learner")


def test_critic_is_pretrained_once_and_the_anchor_is_set_at_every_start(run_config, tmp_path, monkeypatch):
    from app.rl.algorithm import PIRLAlgorithm

    calls = {"pretrain": 0, "anchor": 0}
    real_pretrain, real_anchor = PIRLAlgorithm.pretrain_critic, PIRLAlgorithm.set_anchor_batch

    def pretrain(self, episodes, steps=None):
        calls["pretrain"] += 1
        assert episodes.intervention.all() and len(episodes) == 5
        return real_pretrain(self, episodes, 3)

    def anchor(self, data):
        calls["anchor"] += 1
        return real_anchor(self, data)

    monkeypatch.setattr(PIRLAlgorithm, "pretrain_critic", pretrain)
    monkeypatch.setattr(PIRLAlgorithm, "set_anchor_batch", anchor)
    demos = _demo_file(tmp_path)
    args = ("--learner.preset=robot_minute", f"--learner.demos={demos}", "--learner.save_every=0")
    lines: list[str] = []
    learner = Learner(run_config(*args), progress=lines.append)
    assert calls == {"pretrain": 0, "anchor": 1}  # anchor at construction, critic not yet
    assert learner.algorithm.trainer.anchor_batch["action"].shape[0] == 19
    learner.start_server()
    learner.pending = [_rollout(learner, 0, 0), _rollout(learner, 1, 0)]
    import threading

    t = threading.Thread(target=learner.run)
    t.start()
    deadline = time.monotonic() + 60
    while learner.updates < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    learner.shutdown.set()
    t.join(60)
    assert calls == {"pretrain": 1, "anchor": 1} and learner.updates == 1
    first = json.loads((learner.out / "metrics.jsonl").read_text().splitlines()[0])
    assert first["update"] == 1 and first["critic_pretrain/steps"] == 3.0  # with the first update's metrics
    assert any("critic pre-trained" in line for line in lines) and any(
        "19 anchor chunks" in line for line in lines
    )
    resumed = Learner(run_config(*args, "--learner.resume=true"), progress=None)
    assert calls == {"pretrain": 1, "anchor": 2}  # the anchor again, the critic not again
    assert resumed.algorithm.trainer.anchor_batch is not None and not resumed._pretrain_due


def _stats(steps: int, reset: int, human: int, hz: float | None = 30.0) -> dict:
    msg = {"type": "episode", "steps": steps, "reset_steps": reset, "human_steps": human, "success": True}
    if hz is not None:
        msg["control_hz"] = hz
    return msg


def test_robot_and_human_minutes_from_the_actors_episode_stats(run_config):
    learner = Learner(run_config(), progress=None)
    _prime(learner)
    for msg in (_stats(900, 450, 300), _stats(900, 450, 0), _stats(300, 0, 0, hz=None)):
        learner.service.interactions.put(msg)
    # an actor without robot-time fields: steps only, human steps from its intervention rate
    learner.service.interactions.put({"type": "episode", "steps": 60, "intervention_rate": 0.5})
    learner._drain(timeout=0.0)
    learner.pending = [_rollout(learner, 0, 0), _rollout(learner, 1, 0)]
    learner._update()
    m = json.loads((learner.out / "metrics.jsonl").read_text().splitlines()[-1])
    assert m["charts/robot_minutes"] == pytest.approx((900 + 450 + 900 + 450 + 300 + 60) / 30 / 60)
    assert m["charts/human_minutes"] == pytest.approx((300 + 30) / 30 / 60)
    assert m["charts/robot_reset_steps"] == 900 and m["charts/human_steps"] == 330
    assert m["charts/update_to_data"] == pytest.approx(m["rl/minibatch_steps"] / 12)
    assert m["charts/data_staleness_hist_0"] == 1.0 and m["charts/new_human_chunk_frac"] == 0.0
    saved = json.loads((learner.out / "robot_time.json").read_text())
    assert saved["robot_minutes"] == pytest.approx(m["charts/robot_minutes"])
    # a resumed learner continues the robot time (it was spent whatever checkpoint it resumes from)
    learner._save()
    resumed = Learner(run_config("--learner.resume=true"), progress=None)
    assert resumed.robot_time.clock.robot_minutes == pytest.approx(m["charts/robot_minutes"])
    line = __import__("app.learner.metrics", fromlist=["progress_line"]).progress_line(1, 1, 4, m)
    assert "robot_min 1.70" in line and "human_min 0.18" in line and "utd" in line


def test_policies_are_saved_at_robot_minute_marks_and_the_budget_stops_the_run(run_config):
    args = ("--learner.save_at_robot_minutes=[0.5,1,2]", "--learner.max_robot_minutes=1.5")
    lines: list[str] = []
    learner = Learner(run_config(*args), progress=lines.append)
    _prime(learner)
    clock = learner.robot_time.clock
    counters = {"updates": 0}
    assert not learner.robot_time.check(learner.policy.save_pretrained, lines.append, counters)
    clock.add(_stats(1200, 0, 0))  # 40 s
    assert not learner.robot_time.check(learner.policy.save_pretrained, lines.append, counters)
    clock.add(_stats(1500, 300, 60))  # 100 s in all: passes 0.5 and 1 at once, then the 1.5 budget
    assert learner.robot_time.check(learner.policy.save_pretrained, lines.append, counters)
    marks = saved_marks(learner.out)
    assert [m for m, _, _ in marks] == [0.5, 1.0]
    assert [p.parent.name for _, p, _ in marks] == [mark_name(0.5), mark_name(1.0)] == ["000.5", "001"]
    mark, folder, meta = marks[1]
    assert (folder / "config.json").is_file() and meta["robot_minutes"] == pytest.approx(100 / 60)
    assert meta["human_minutes"] == pytest.approx(2 / 60) and meta["episodes"] == 2
    from app.rl.lerobot_policy import PIRLFlowPolicy

    loaded = PIRLFlowPolicy.from_pretrained(folder)  # what `pirl eval` / the benchmark evaluate
    w = learner.algorithm.get_weights()
    assert all(torch.equal(loaded.model.get_trainable_state()[k], w[k]) for k in w)
    assert (
        sum("robot-minute mark" in line for line in lines) == 2 and "reached 1.5 robot minutes" in lines[-1]
    )
    # a mark is saved once, also after a resume (robot_time.json remembers it)
    assert learner.robot_time.clock.due_marks([0.5, 1.0, 2.0]) == []
    assert RobotClock.load(learner.out, 30.0).marks_saved == [0.5, 1.0]
