"""`pirl bc`: a LeRobot dataset of scripted-expert demos -> a pirl_flow policy that imitates them."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch

from app.bc import main
from app.episode.recorder import EpisodeRecorder, RecordConfig


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory):
    """Four expert reach episodes in sim, recorded the way `pirl eval` records; the odd ones are
    flagged as takeovers and episode 3 is marked failed."""
    from app.demo.sim_envs import SimEnvConfig, SimEnvs
    from hardware.sim.expert import ExpertConfig, ScriptedExpert

    root = tmp_path_factory.mktemp("ds") / "demos"
    envs = SimEnvs(1, SimEnvConfig(max_steps=30))
    rec = EpisodeRecorder(
        RecordConfig(root=str(root), repo_id="local/demos", task="reach"),
        fps=30,
        state_names=envs.keys,
        action_names=envs.keys[:6],
    )
    try:
        for ep in range(4):
            expert = ScriptedExpert(ExpertConfig(task="reach", fps=30))
            obs = envs.reset(0, 500 + ep)
            for _ in range(30):
                act = expert.act(obs)
                prev = obs
                obs, reward, success = envs.step(0, act)
                rec.add(prev, act, intervention=ep % 2 == 1, reward=reward, done=success, success=success)
                if success:
                    break
            rec.end_episode(success=ep != 3)
    finally:
        rec.close()
        envs.close()
    return root


def args(root, out, *extra):
    return [
        f"--dataset.root={root}",
        "--dataset.repo_id=local/demos",
        f"--output_dir={out}",
        "--obs_hidden=32",
        "--expert_hidden=64",
        "--batch_size=64",
        "--log_every=0",
        *extra,
    ]


def test_clones_the_demos_into_a_loadable_policy(demo_dataset, tmp_path, capsys):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from app.rl.bc import make_chunks
    from app.rl.lerobot_policy import PIRLFlowPolicy
    from app.rl.losses import flow_matching_loss

    assert main(args(demo_dataset, tmp_path / "fresh", "--steps=1")) == 0
    out = tmp_path / "bc"
    assert main(args(demo_dataset, out, "--steps=300")) == 0
    report = json.loads((out / "bc_report.json").read_text())
    assert report["episodes"] == 4 and report["state_names"][:1] == ["shoulder_pan.pos"]
    assert "use it as `policy_path`" in capsys.readouterr().out

    # Reloaded from disk, the trained policy explains the demos' action chunks far better (flow-matching
    # loss, same noise) than the same policy after one step: the weights that were learned are the ones saved.
    ds = LeRobotDataset("local/demos", root=demo_dataset)
    cols = ds.hf_dataset.with_format("torch", columns=["observation.state", "action", "episode_index"])[:]
    episodes = [
        {"observation.state": cols["observation.state"][m].float(), "action": cols["action"][m].float()}
        for m in (cols["episode_index"] == e for e in cols["episode_index"].unique())
    ]
    data = make_chunks(episodes, 10)
    obs, target = {"observation.state": data["observation.state"]}, data["action"]

    def loss_of(path):
        policy = PIRLFlowPolicy.from_pretrained(path).eval()
        assert policy.config.native.state_dim == len(report["state_names"])
        with torch.no_grad():
            ctx = policy.model.policy.encode(obs)
            g = torch.Generator().manual_seed(0)
            return float(flow_matching_loss(policy.model.policy, ctx, target, generator=g))

    fresh, trained = loss_of(tmp_path / "fresh"), loss_of(out)
    assert trained < 0.7 * fresh, (trained, fresh)


def test_filters_interventions_and_failed_episodes(demo_dataset, tmp_path):
    out = tmp_path / "bc"
    assert main(args(demo_dataset, out, "--steps=5", "--dataset.only_interventions=true")) == 0
    only_human = json.loads((out / "bc_report.json").read_text())
    out2 = tmp_path / "bc2"
    assert main(args(demo_dataset, out2, "--steps=5", "--dataset.only_successful=true")) == 0
    only_ok = json.loads((out2 / "bc_report.json").read_text())
    everything_out = tmp_path / "bc3"
    assert main(args(demo_dataset, everything_out, "--steps=5")) == 0
    everything = json.loads((everything_out / "bc_report.json").read_text())
    assert 0 < only_human["chunks"] < everything["chunks"]
    assert only_ok["episodes"] == 3 and only_ok["chunks"] < everything["chunks"]


def test_the_learner_reads_a_dataset_of_demos_as_pirl_bc_does(demo_dataset):
    """`learner.demos=<dataset folder>` and `pirl bc` share one reader (app/rl/datasets.py): the same
    episodes, states and actions; the learner adds each episode's `next.reward` column as its reward."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from app.bc import BCCommandConfig, BCDatasetConfig, load_episodes
    from app.learner.demos import load_demos

    cfg = BCCommandConfig(dataset=BCDatasetConfig(root=str(demo_dataset), repo_id="local/demos"))
    cloned, state_names, _, fps = load_episodes(cfg)
    demos = load_demos(demo_dataset)
    assert len(demos) == len(cloned) == 4 and fps == 30 and state_names[0] == "shoulder_pan.pos"
    cols = LeRobotDataset("local/demos", root=demo_dataset).hf_dataset.with_format(
        "torch", columns=["episode_index", "next.reward"]
    )[:]
    for ep, (b, d) in enumerate(zip(cloned, demos, strict=True)):
        assert torch.equal(b["observation.state"], d["observation.state"])
        assert torch.equal(b["action"], d["action"]) and d["action"].dtype == torch.float32
        assert b["keep"].all() and "keep" not in d
        assert torch.equal(d["reward"], cols["next.reward"][cols["episode_index"] == ep].reshape(-1))
    with pytest.raises(ValueError, match=r"learner.demos=.* lacks \['observation.images.front'\]"):
        load_demos(demo_dataset, image_keys=["front"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (['--image_keys=["front"]'], "lacks ['observation.images.front']"),
        (["--dataset.episodes=[7]"], "[7] are not in the dataset"),
        (["--method=sac"], "flow_noise or flow_sde"),
    ],
)
def test_bad_options_are_one_line_errors(demo_dataset, tmp_path, capsys, extra, message):
    assert main(args(demo_dataset, tmp_path / "x", *extra)) == 2
    assert message in capsys.readouterr().err


def test_not_a_dataset_and_existing_output(demo_dataset, tmp_path, capsys):
    assert main([f"--dataset.root={tmp_path}"]) == 2
    assert "not a LeRobot dataset" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    assert main(args(demo_dataset, tmp_path / "taken")) == 2
    assert "--overwrite=true" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("progress", ["true", "false"])
def test_progress_bar_only_on_a_terminal_above_unchanged_lines(demo_dataset, tmp_path, monkeypatch, progress):
    """On a terminal: a bar with ETA on stderr over the steps, the loss lines still on stdout, whole;
    --progress=false (or stderr not a terminal, as in every other test here): no bar."""
    err, out = _Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    argv = [a for a in args(demo_dataset, tmp_path / "bc") if not a.startswith("--log_every")]
    assert main([*argv, "--steps=4", "--log_every=2", f"--progress={progress}"]) == 0
    lines = out.getvalue().splitlines()
    assert [ln[:14] for ln in lines if ln.startswith("bc step")] == ["bc step 2/4 lo", "bc step 4/4 lo"]
    assert lines[-1].startswith("pirl bc: policy written to")
    if progress == "true":
        assert "bc: 100%" in err.getvalue() and "4/4 [" in err.getvalue()
    else:
        assert err.getvalue() == ""
