"""`actor.record`: a sim actor run with a camera and scripted-expert takeovers is recorded as a LeRobot
dataset, step for step as the arm ran it (takeover steps flagged `intervention`, a re-recorded episode
left out, the camera as video), which `pirl bc`'s loader clones from and `lerobot-dataset-viz` renders.
A discarded episode still reaches the learner's robot clock."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app.actor.loop import Actor
from app.episode.record_config import ActorRecordConfig
from app.episode.recorder import RecordError
from app.learner.robot_time import RobotClock

CAMERA = '{"front": {"type": "sim_mujoco", "camera": "front", "width": 64, "height": 48}}'


def recording_actor(run_config, learner, root, *extra, rerecord_episode=None, **record):
    """A sim actor with a 64x48 camera, the expert taking over in every episode, recording to `root`
    (`actor.record` set on the parsed config: what `--actor.record.root=...` gives). It keeps what it sends
    and, per step, whether a human drove; `rerecord_episode`: the operator presses re-record in that
    episode (0-based) after 10 steps."""
    cfg = run_config(
        f"--transport.port={learner.port}",
        "--actor.expert_takeover_prob=1.0",
        f"--robot.cameras={CAMERA}",
        *extra,
    )
    cfg.actor.record = ActorRecordConfig(root=str(root), **record)
    actor = Actor(cfg, progress=lambda line: None)
    sent = {"stats": [], "rollouts": []}
    send_interaction, send_rollout = actor.client.send_interaction, actor.client.send_rollout
    actor.client.send_interaction = lambda m: (sent["stats"].append(m), send_interaction(m))[1]
    actor.client.send_rollout = lambda r: (sent["rollouts"].append(r), send_rollout(r))[1]
    steps: list[tuple[int, bool]] = []  # (episode attempt number, human drove) per control step
    on_step = actor.executor.on_step

    def watch(step):
        on_step(step)
        number = len(actor.episodes.records) - step.outcome.done  # episodes ended before this one
        steps.append((number, step.decision.intervention))
        in_episode = sum(1 for n, _ in steps if n == number)
        if number == rerecord_episode and in_episode == 10:
            actor.episodes.request_rerecord()

    actor.executor.on_step = watch
    return actor, sent, steps


def column(ds, key):
    return np.asarray(ds.hf_dataset.with_format("numpy", columns=[key])[:][key]).reshape(len(ds), -1)


def test_training_episodes_are_recorded_as_they_ran_and_a_discarded_one_still_counts_as_robot_time(
    run_config, served_learner, tmp_path
):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "episodes"
    actor, sent, steps = recording_actor(
        run_config, served_learner, root, "--actor.episodes=3", "--actor.control.port=0", rerecord_episode=1
    )
    assert actor.run() == 0
    records = actor.episodes.records
    assert [r.termination for r in records][1] == "rerecord" and len(records) == 4
    assert len(sent["rollouts"]) == 3 and actor.runner.episodes_recorded == 3

    ds = LeRobotDataset("local/pirl_actor", root=root)
    assert ds.num_episodes == 3
    assert ds.meta.features["observation.images.front"]["dtype"] == "video"
    assert ds.meta.features["observation.state"]["names"] == actor.runner.state_keys
    # The kept episodes' steps, in order, with who drove each: exactly what the arm ran.
    kept = [i for i, r in enumerate(records) if not r.rerecord]
    human = [h for n, h in steps if n in kept]
    assert len(ds) == len(human) == sum(records[i].steps for i in kept)
    assert column(ds, "intervention").reshape(-1).tolist() == human
    assert 0 < sum(human) < len(human)  # the expert took over part of each episode
    # ... matching the learner's rows: the human-driven steps per episode are the rollouts' human_mask
    index = column(ds, "episode_index").reshape(-1)
    flags = column(ds, "intervention").reshape(-1)
    for ep, rollout in enumerate(sent["rollouts"]):
        assert int(flags[index == ep].sum()) == int(rollout.batch["human_mask"].sum())
    done = column(ds, "next.done").reshape(-1)
    assert np.flatnonzero(done).tolist() == [int((index == ep).nonzero()[0][-1]) for ep in range(3)]
    frame = ds[int(len(ds) // 2)]["observation.images.front"]
    assert frame.shape == (3, 48, 64) and 0.0 < float(frame.mean()) < 1.0  # a decoded render, not blank

    # The learner's robot clock, fed the stats the actor sent, counts the discarded episode's steps too.
    clock = RobotClock(fps=30.0)
    for stats in sent["stats"]:
        clock.add(stats)
    assert clock.steps + clock.reset_steps == actor.env_steps + actor.episodes.reset_steps_total
    assert clock.human_steps == actor.runner.human_steps
    assert clock.robot_minutes == pytest.approx(actor.robot_minutes)
    assert clock.episodes == 3
    assert sent["stats"][1]["discarded_episodes"] == 1
    assert sent["stats"][1]["discarded_steps"] == records[1].steps + records[1].reset_steps > 10

    # The console's log pane said that it records, and how many episodes it saved.
    pane = [line.text for line in actor.console.log_buffer.lines()]
    assert any(f"recording every episode to {root}" in t and "front as video" in t for t in pane)
    assert any(t.startswith(f"recorded 3 episodes ({len(ds)} frames) to {root}") for t in pane)


def test_a_restarted_actor_appends_and_bc_and_the_viewer_read_the_takeovers(
    run_config, served_learner, tmp_path
):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from app.bc import BCCommandConfig, BCDatasetConfig, build_and_train, load_episodes

    root = tmp_path / "episodes"
    for _ in range(2):  # the second run continues the same dataset
        actor, _, _ = recording_actor(run_config, served_learner, root, "--actor.episodes=1")
        assert actor.run() == 0
    ds = LeRobotDataset("local/pirl_actor", root=root)
    assert ds.num_episodes == 2

    # `pirl bc`'s loader takes the dataset as is: only the takeover steps, with the camera.
    cfg = BCCommandConfig(
        dataset=BCDatasetConfig(root=str(root), repo_id="local/pirl_actor", only_interventions=True),
        image_keys=["front"],
        steps=2,
        batch_size=8,
        obs_hidden=16,
        expert_hidden=16,
        log_every=0,
        progress=False,
    )
    episodes, state_names, action_names, fps = load_episodes(cfg)
    assert len(episodes) == 2 and fps == 30 and state_names == ds.meta.features["observation.state"]["names"]
    flags = column(ds, "intervention").reshape(-1)
    assert torch.cat([e["keep"] for e in episodes]).tolist() == flags.tolist()
    assert episodes[0]["observation.images.front"].shape[1:] == (3, 48, 64)
    policy, data, losses = build_and_train(cfg, episodes, state_names, say=lambda line: None)
    assert data["action"].shape[0] == int(flags.sum()) and len(losses) >= 1
    assert all(np.isfinite(float(v)) for v in losses)

    # lerobot-dataset-viz's own function, in process, saving a rerun recording instead of opening a viewer.
    import rerun as rr
    from lerobot.scripts.lerobot_dataset_viz import visualize_dataset

    one = LeRobotDataset("local/pirl_actor", root=root, episodes=[1])
    rrd = visualize_dataset(one, 1, num_workers=0, mode="local", save=True, output_dir=tmp_path / "viz")
    assert rrd is not None and rrd.stat().st_size > 10_000
    rows: dict[str, int] = {}  # rows logged per entity, read back from the file
    for chunk in rr.recording.load_recording(rrd).chunks():
        rows[str(chunk.entity_path)] = rows.get(str(chunk.entity_path), 0) + chunk.num_rows
    for entity in ("/observation.images.front", "/action", "/state", "/next.success"):
        assert rows[entity] == one.num_frames > 0, rows


def test_a_dataset_of_another_run_is_refused_before_the_arm_moves(run_config, served_learner, tmp_path):
    root = tmp_path / "episodes"
    actor, _, _ = recording_actor(run_config, served_learner, root, "--actor.episodes=1")
    assert actor.run() == 0
    info = json.loads((root / "meta" / "info.json").read_text())
    cfg = run_config(f"--transport.port={served_learner.port}", '--actor.state_keys=["shoulder_pan.pos"]')
    cfg.actor.record = ActorRecordConfig(root=str(root))
    other = Actor(cfg, progress=lambda line: None)
    with pytest.raises(RecordError, match="other features.*choose a new --actor.record.root"):
        other.run()
    other.client.close()
    assert not other.robot.is_connected
    assert json.loads((root / "meta" / "info.json").read_text()) == info


def test_an_error_while_recording_stops_the_recording_not_the_run(
    run_config, served_learner, tmp_path, monkeypatch
):
    """The disk fills up while the second episode is saved: the actor says so, trains on, and the dataset
    keeps the first episode, valid."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "episodes"
    lines: list[str] = []
    actor, sent, _ = recording_actor(run_config, served_learner, root, "--actor.episodes=3")
    actor.progress = lines.append
    save = LeRobotDataset.save_episode

    def disk_full_at_the_second(self, *args, **kwargs):
        save(self, *args, **kwargs)  # half-way: the episode's files are written, then the disk is full
        if self.meta.total_episodes == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(LeRobotDataset, "save_episode", disk_full_at_the_second)
    assert actor.run() == 0
    assert len(sent["rollouts"]) == 3  # the run went on
    assert actor.runner.recorder is None and "No space left on device" in actor.runner.record_error
    assert any(
        "recording stopped (OSError" in line and f"1 episodes kept in {root}" in line for line in lines
    )
    ds = LeRobotDataset("local/pirl_actor", root=root)
    assert ds.num_episodes == 1 and len(ds) == actor.episodes.records[0].steps
