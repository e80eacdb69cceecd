"""`pirl eval` in sim: the deterministic ODE through the training path, repeatable, and its dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lerobot.datasets.lerobot_dataset import LeRobotDataset

import app.rl.sampling as sampling
from app.eval import EvalConfig, EvalError, RecordConfig, main, run_eval
from hardware.episodes import EpisodeConfig
from hardware.guard import RobotGuard
from hardware.sim.so101_follower import SimSO101Follower


def cfg(policy: str, episodes: int = 2, **kw) -> EvalConfig:
    """Short (0.5 s = 15-step) episodes: an untrained policy times out, the scripted expert succeeds."""
    return EvalConfig(
        policy=policy,
        episodes=episodes,
        episode=EpisodeConfig(time_limit_s=kw.pop("time_limit_s", 0.5), seed=1_000_000),
        progress=False,
        **kw,
    )


@pytest.fixture
def spy(monkeypatch):
    """What reached the robot through the guard (source, action), and which sampling mode planned it."""
    seen = {"modes": [], "steps": []}
    real_sample, real_step = sampling.sample, RobotGuard.step

    def sample(model, obs, mode="train", **kw):
        seen["modes"].append(mode)
        return real_sample(model, obs, mode=mode, **kw)

    def step(self, action, source="policy"):
        seen["steps"].append(
            (source, None if action is None else tuple(round(v, 6) for v in action.values()))
        )
        return real_step(self, action, source)

    monkeypatch.setattr(sampling, "sample", sample)
    monkeypatch.setattr(RobotGuard, "step", step)
    return seen


def episode_steps(seen):
    return [a for src, a in seen["steps"] if src in ("policy", "human")]


def test_deterministic_ode_through_the_guard_and_repeatable(reach_policy, spy):
    first = run_eval(cfg(reach_policy, episodes=2))
    assert set(spy["modes"]) == {"deterministic"}  # never the stochastic training chain
    acted = episode_steps(spy)
    assert len(acted) == first.env_steps == sum(e["steps"] for e in first.episodes) == 30
    assert [e["seed"] for e in first.episodes] == [1_000_000, 1_000_001]
    assert first.success.episodes == 2 and first.success.successes == 0  # untrained: time limit
    assert all(e["termination"] == "time_limit" for e in first.episodes)

    spy["steps"].clear()
    again = run_eval(cfg(reach_policy, episodes=2))
    assert episode_steps(spy) == acted  # same seeds: the same actions, bit for bit
    assert again.episodes == [
        {**e, "wall_s": a["wall_s"]} for e, a in zip(first.episodes, again.episodes, strict=True)
    ]

    spy["steps"].clear()
    run_eval(cfg(reach_policy, episodes=1))
    assert episode_steps(spy) == acted[:15]  # episode 0 does not depend on how many follow

    spy["steps"].clear()
    run_eval(cfg(reach_policy, episodes=1, sample_seed=1))
    assert episode_steps(spy) != acted[:15]  # the seed is what fixes x_0


def test_records_a_lerobot_dataset_with_interventions(reach_policy, tmp_path):
    root = tmp_path / "ds"
    result = run_eval(
        cfg(
            reach_policy,
            episodes=4,
            time_limit_s=1.5,
            takeover_prob=0.6,
            record=RecordConfig(root=str(root), repo_id="local/eval_test"),
        )
    )
    eps = result.episodes
    taken = [e for e in eps if e["interventions"]]
    assert 0 < len(taken) < 4, eps  # both kinds, with this seed
    assert result.success.episodes == 4 - len(taken)  # takeovers are reported apart
    assert all(e["success"] for e in taken)  # the scripted expert finishes the reach

    ds = LeRobotDataset("local/eval_test", root=root)  # offline: a local root needs no hub
    assert ds.num_episodes == 4 and ds.num_frames == sum(e["steps"] for e in eps)
    assert ds.meta.fps == 30 and ds.meta.robot_type == "sim_so101"
    assert ds.meta.features["observation.state"]["names"][-3:] == ["target.x", "target.y", "target.z"]
    assert ds.meta.features["intervention"]["dtype"] == "bool"
    frames = ds.hf_dataset.with_format("numpy")[:]
    index = np.asarray(frames["episode_index"])
    flag = np.asarray(frames["intervention"]).reshape(-1).astype(bool)
    done = np.asarray(frames["next.done"]).reshape(-1).astype(bool)
    success = np.asarray(frames["next.success"]).reshape(-1).astype(bool)
    reward = np.asarray(frames["next.reward"]).reshape(-1)
    for i, e in enumerate(eps):
        mine = index == i
        assert mine.sum() == e["steps"]
        assert flag[mine].sum() == e["intervention_steps"]
        if e["interventions"]:  # the policy drove until the takeover chunk, then the expert to the end
            assert flag[mine][-1] and sorted(flag[mine]) == list(flag[mine])
        assert done[mine].tolist() == [False] * (e["steps"] - 1) + [True]
        assert success[mine][-1] == e["success"] and reward[mine].sum() == pytest.approx(e["return"])
    item = ds[0]
    assert item["task"] == "reach" and tuple(item["action"].shape) == (6,)
    assert tuple(item["observation.state"].shape) == (9,)


def test_cli_prints_rate_and_interval_and_writes_json(reach_policy, tmp_path, capsys):
    out = tmp_path / "result.json"
    args = ["--policy", reach_policy, "--episodes", "2", "--episode.time_limit_s=0.3", f"--output={out}"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "eval: episode 2/2 failure (time_limit, 9 steps)" in text
    assert "eval: success 0.0% (0/2), 95% CI [0.0%, 65.8%]" in text
    assert "episodes/s" in text
    data = json.loads(out.read_text())
    assert (
        data["successes"] == 0
        and data["episodes_counted"] == 2
        and data["ci_high"] == pytest.approx(0.6576, 1e-3)
    )
    assert data["config"]["policy"] == reach_policy and len(data["per_episode"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the checkpoint to evaluate: --policy PATH"),
        (["--policy", "/nonexistent/p"], "no such folder"),
        (["--policy", "{tmp}"], "is not a LeRobot pretrained folder (no config.json)"),
        (["--policy", "{run}"], "did you mean"),
        (["--policy", "{noweights}"], "no model.safetensors"),
        (["--policy", "{bad}"], "config.json is not a LeRobot policy config"),
        (["--policy", "{policy}", "--episodes", "0"], "--episodes must be >= 1, got 0"),
        (["--policy", "{policy}", "--takeover_prob", "2"], "--takeover_prob must be in [0, 1]"),
        (["--policy", "{policy}", "--robot.type=sim_so101", "--robot.task=pick_cube"], "state size mismatch"),
        (["--policy", "{joints}", "--episodes", "1"], "the policy expects observation.state of 6 values"),
        (["--policy", "{policy}", "--record.root={tmp}"], "already exists"),
        (["--policy", "{policy}", "--teleop.type=gamepad"], "--teleop is for real robots"),
        (["--policy", "{policy}", "--confidence=1"], "--confidence must be in (0, 1)"),
    ],
)
def test_clear_errors_exit_2(args, message, reach_policy, joints_policy, tmp_path, capsys):
    (tmp_path / "run" / "pretrained_model").mkdir(parents=True)
    (tmp_path / "run" / "pretrained_model" / "config.json").write_text("{}")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text("{}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"type": "no_such_policy"}')
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    subs = {"tmp": str(tmp_path), "run": str(tmp_path / "run"), "noweights": str(tmp_path / "noweights")}
    subs |= {"bad": str(tmp_path / "bad"), "policy": reach_policy, "joints": joints_policy}
    assert main([a.format(**subs) for a in args]) == 2
    assert message in capsys.readouterr().err


def test_unparsable_episodes_is_a_usage_error(reach_policy):
    assert main(["--policy", reach_policy, "--episodes", "many"]) == 2


@pytest.fixture(scope="session")
def camera_policy(tmp_path_factory) -> str:
    from tests.app.eval.conftest import save_policy

    return save_policy(tmp_path_factory.mktemp("policy") / "cam", image_keys=("front",))


def test_camera_policy_sees_and_records_its_camera(camera_policy, tmp_path):
    from hardware.sim.cameras import SimCameraConfig
    from hardware.sim.so101_follower import SimSO101FollowerConfig

    robot = SimSO101FollowerConfig(task="reach", cameras={"front": SimCameraConfig(width=32, height=24)})
    root = tmp_path / "ds"
    # no --image_keys: the policy's own cameras (observation.images.front) are used
    result = run_eval(
        cfg(camera_policy, episodes=1, time_limit_s=0.2, robot=robot, record=RecordConfig(root=str(root)))
    )
    ds = LeRobotDataset("local/pirl_eval", root=root)
    assert ds.num_frames == result.env_steps == 6
    assert tuple(ds.meta.features["observation.images.front"]["shape"]) == (24, 32, 3)
    img = ds[0]["observation.images.front"]  # LeRobot hands images back as float CHW in 0..1
    assert tuple(img.shape) == (3, 24, 32) and 0.0 <= float(img.min()) < float(img.max()) <= 1.0

    with pytest.raises(Exception, match="needs cameras"):
        run_eval(cfg(camera_policy, episodes=1, image_keys=["wrist"], robot=robot))


@pytest.fixture(scope="session")
def lerobot_sac_policy(tmp_path_factory) -> str:
    """A LeRobot (not pirl) policy: the SAC Gaussian actor, saved with its processor pipelines."""
    import torch
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from lerobot.policies.gaussian_actor.configuration_gaussian_actor import GaussianActorConfig

    torch.manual_seed(0)
    pcfg = GaussianActorConfig(
        input_features={"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(9,))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))},
        device="cpu",
        push_to_hub=False,
    )
    ones = {"observation.state": torch.ones(9), "action": torch.ones(6)}
    stats = {k: {"mean": 0 * v, "std": v, "min": -90 * v, "max": 90 * v} for k, v in ones.items()}
    pre, post = make_pre_post_processors(pcfg, dataset_stats=stats)
    path = tmp_path_factory.mktemp("policy") / "sac"
    for part in (get_policy_class("gaussian_actor")(pcfg), pre, post):
        part.save_pretrained(path)
    return str(path)


def test_a_lerobot_policy_runs_through_its_processors_repeatably(lerobot_sac_policy, spy):
    first = run_eval(cfg(lerobot_sac_policy, episodes=1, time_limit_s=0.2))
    acted = episode_steps(spy)
    assert first.env_steps == len(acted) == 6 and spy["modes"] == []  # select_action, not the PI-RL chain
    # the postprocessor un-normalises [-1, 1] to the +-90 degree action range: far beyond what raw tanh
    # outputs could ask for (the safety layer then clamps the step)
    assert max(abs(v) for a in acted for v in a) > 1.5
    spy["steps"].clear()
    run_eval(cfg(lerobot_sac_policy, episodes=1, time_limit_s=0.2))
    assert episode_steps(spy) == acted


def test_explore_samples_refuses_a_policy_without_the_chain_before_the_robot_is_built(
    lerobot_sac_policy, spy, monkeypatch
):
    import hardware.factory

    built = []
    real_make = hardware.factory.make_robot
    monkeypatch.setattr(hardware.factory, "make_robot", lambda c: built.append(c) or real_make(c))
    with pytest.raises(EvalError, match="a gaussian_actor policy has none"):
        run_eval(cfg(lerobot_sac_policy, episodes=1, explore_samples=2))
    assert built == [] and spy["steps"] == []


@pytest.fixture(scope="session")
def bc_policy(tmp_path_factory) -> str:
    """The demo's few-shot start (20 scripted demos, 100 BC steps): imprecise, so the stochastic policy
    succeeds on some scenes sometimes (docs/demo.md measured 72 of 100 evaluation scenes)."""
    from app.demo.pipeline import DemoConfig, build_policy, pretrain
    from app.demo.sim_envs import SimEnvs

    cfg = DemoConfig()
    cfg.bc.demos, cfg.bc.steps = 20, 100  # not the demo's default start: this one is mostly "sometimes"
    envs = SimEnvs(4, cfg.env)
    policy = build_policy(cfg, envs)
    pretrain(cfg, envs, policy.model)
    path = tmp_path_factory.mktemp("policy") / "bc"
    policy.save_pretrained(path)
    return str(path)


def test_explore_samples_replays_each_scene_with_the_stochastic_chain(bc_policy, spy, tmp_path, monkeypatch):
    resets = []
    real_reset = SimSO101Follower.reset

    def reset(self, seed=None):
        if seed is not None:  # the unseeded reset is connect()'s
            resets.append(seed)
        return real_reset(self, seed=seed)

    monkeypatch.setattr(SimSO101Follower, "reset", reset)
    out = tmp_path / "x.json"
    plain = run_eval(cfg(bc_policy, episodes=6, time_limit_s=1.5))
    n_plain = len(resets)
    result = run_eval(cfg(bc_policy, episodes=6, time_limit_s=1.5, explore_samples=4, output=str(out)))
    # The deterministic part is untouched: same episodes, same rate; the replays come after it.
    pairs = zip(plain.episodes, result.episodes, strict=True)
    assert result.episodes == [{**e, "wall_s": r["wall_s"]} for e, r in pairs]
    scenes = list(range(1_000_000, 1_000_006))
    assert resets[:n_plain] == resets[n_plain : 2 * n_plain] == scenes
    assert resets[2 * n_plain :] == scenes * 4  # every scene again, 4 times, same reset seeds
    modes = spy["modes"]
    assert "train" in modes and modes[-1] == "train" and set(modes) == {"deterministic", "train"}
    x = result.exploration
    assert x.samples == 4 and len(x.successes) == 6 and all(0 <= k <= 4 for k in x.successes)
    assert x.never + x.sometimes + x.always == 6
    assert x.sometimes > 0  # the imprecise start: the chain's noise decides some scenes
    assert x.rate == sum(x.successes) / 24
    saved = json.loads(out.read_text())["exploration"]
    assert saved == {"samples": 4, "successes": x.successes}

    again = run_eval(cfg(bc_policy, episodes=6, time_limit_s=1.5, explore_samples=4))
    assert again.exploration.successes == x.successes  # seeded: repeatable
    other = run_eval(cfg(bc_policy, episodes=6, time_limit_s=1.5, explore_samples=4, sample_seed=7))
    assert other.exploration.successes != x.successes  # ...and the sample seed is what draws the noise


def test_explore_samples_line_and_errors(reach_policy, capsys):
    assert main(["--policy", reach_policy, "--episodes", "2", "--explore_samples", "2"]) == 0
    text = capsys.readouterr().out
    assert "eval: exploration pass 2/2: 0 successes so far" in text
    assert "eval: exploration (2 stochastic rollouts per scene, 0.0% success): 2 scenes never succeed" in text
    for args, message in [
        (["--explore_samples", "-1"], "--explore_samples must be >= 0, got -1"),
        (["--explore_samples", "2", "--takeover_prob", "0.5"], "measures the policy alone"),
        (["--explore_samples", "2", "--robot.type=so101_follower", "--robot.port=/dev/null"], "simulator"),
    ]:
        assert main(["--policy", reach_policy, *args]) == 2
        assert message in capsys.readouterr().err


def _png_size(path) -> tuple[int, int]:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path).shape[:2]


def test_plot_writes_the_per_scene_png_and_the_json_names_it(reach_policy, tmp_path, capsys):
    png, out = tmp_path / "plots" / "scenes.png", tmp_path / "r.json"
    args = ["--policy", reach_policy, "--episodes", "3", "--episode.time_limit_s=0.3"]
    assert main([*args, f"--plot={png}", f"--output={out}", "--progress=false"]) == 0
    h, w = _png_size(png)
    assert h > 300 and w > 500
    assert f"eval: per-scene plot written to {png}" in capsys.readouterr().out  # even with --progress=false
    assert json.loads(out.read_text())["plot"] == str(png)
    # with --explore_samples the bars are the stochastic replays' rates
    result = run_eval(cfg(reach_policy, episodes=2, explore_samples=2, plot=str(tmp_path / "x.png")))
    assert result.plot == str(tmp_path / "x.png") and _png_size(tmp_path / "x.png")[0] > 300
    assert main([*args, "--plot=scenes.jpg"]) == 2
    assert "--plot writes a PNG: give a path ending in .png" in capsys.readouterr().err


def test_a_plot_that_cannot_be_written_is_a_warning_not_a_failed_eval(reach_policy, tmp_path, caplog):
    (tmp_path / "file").write_text("")
    with caplog.at_level("WARNING", logger="pirl.eval"):
        result = run_eval(
            cfg(reach_policy, episodes=1, time_limit_s=0.2, plot=str(tmp_path / "file" / "p.png"))
        )
    assert result.plot is None and len(result.episodes) == 1 and result.stopped is None
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["per-scene plot not written"]
