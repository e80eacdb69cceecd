"""The recipes (configs/*.json and docs/recipes.md) are runnable as written.

Offline there is no robot, no GPU and no hub, so "runnable" is checked as far as a machine without them
can go, with the same code the commands run:

- every run config parses through `pirl learner` / `pirl actor`'s own parser, validates for both sides,
  builds its robot (not connected) and its policy, and the policy's shape fits that robot (state, action,
  cameras); the SAC config parses as LeRobot's `TrainRLServerPipelineConfig`;
- every `pirl ...` line in docs/recipes.md parses with its command's own parser (no unknown option, no
  missing config file), and every config has a recipe;
- the two sim recipes really run: learner + actor processes on loopback, one PI-RL update each;
- the real-arm recipes' (Koch, SO-101) envelope/check lines and configs run on packet-level simulated
  servo buses (actor and learner in-process, real-time control), every command inside the envelope;
- the two-machine recipe's openssl, learner and actor lines (TLS + token) work together on loopback;
- the VLA PI-RL settings (configs/vla/) build a tiny SmolVLA / pi0 / pi0.5 with exactly the trainable
  groups the recipe names, and one PPO update + a bf16 weight push work with them.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

import draccus
import pytest
import torch

from app.run.config import PIRLRunConfig
from app.run.parse import parse_run_config
from app.run.sac import config_path, normalise_argv, requested_algorithm
from tests.mocks import sim_fixtures

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "recipes.md"
RUN_CONFIGS = sorted((REPO / "configs").glob("*.json"))
# configs/vla/: PI-RL settings files (the `policy.rl` section) and full run configs (they name a robot).
_VLA_FILES = sorted((REPO / "configs" / "vla").glob("*.json"))
VLA_RUN_CONFIGS = [p for p in _VLA_FILES if "robot" in json.loads(p.read_text())]
VLA_CONFIGS = [p for p in _VLA_FILES if p not in VLA_RUN_CONFIGS]
# The sim recipes' policy is the BC policy `pirl demo` writes; its PI-RL method comes with it.
SIM_RECIPES = {
    "sim_reach_flow_noise.json": "flow_noise",
    "sim_reach_flow_sde.json": "flow_sde",
    "sim_reach_robot_minute.json": "flow_noise",  # + the demos `pirl demo` records in <output_dir>/demos
    "sim_twin_reach_bc.json": "flow_noise",  # the twin from the demo's BC policy, anchored on its demos
}
# Simulated servo buses (packet-level Dynamixel/Feetech mocks) for the real-arm recipes.
sim_ports, calib_dir = sim_fixtures.sim_ports, sim_fixtures.calib_dir
koch_sim, so101_sim = sim_fixtures.koch_sim, sim_fixtures.so101_sim


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch):
    """Recipes use paths relative to the repository root, where the doc says to run them."""
    monkeypatch.chdir(REPO)


def _is_sac(path: Path) -> bool:
    return requested_algorithm(["--config", str(path)]) == "sac"


def _parse_sac(argv: list[str]):
    from lerobot.rl.train_rl import TrainRLServerPipelineConfig

    from app.run.sac import install_dataset_null_workaround

    install_dataset_null_workaround()
    path = config_path(argv)
    assert path is not None and (REPO / path).is_file(), f"SAC command without an existing --config: {argv}"
    args = [a for a in normalise_argv(argv) if not a.startswith("--config_path=")]
    with draccus.config_type("json"):
        return draccus.parse(TrainRLServerPipelineConfig, config_path=path, args=args)


def _tiny_policy_folder(folder: Path, method: str) -> Path:
    """A real `pirl_flow` pretrained folder shaped like the demo's BC policy (sim reach: 9 state values,
    6 joints, chunk 10), tiny widths so two processes start and update in seconds."""
    from app.rl.config import FlowNoiseConfig, PIRLConfig, PPOConfig
    from app.rl.lerobot_policy import PIRLFlowConfig, PIRLFlowPolicy
    from app.rl.native import NativeFlowConfig

    torch.manual_seed(0)
    native = NativeFlowConfig(
        state_dim=9, action_dim=6, chunk_size=10, obs_hidden=32, expert_hidden=32, time_embed_dim=8
    )
    rl = PIRLConfig(
        method=method,
        num_steps=4,
        exec_horizon=5,
        value_hidden=(32,),
        noise=FlowNoiseConfig(hidden=(16,)),
        ppo=PPOConfig(epochs=1, minibatch_size=32),
    )
    PIRLFlowPolicy(PIRLFlowConfig(native=native, rl=rl, device="cpu", push_to_hub=False)).save_pretrained(
        folder
    )
    return folder


# ------------------------------------------------------------------------------------- run configs


def test_there_are_recipes_for_every_route():
    names = {p.name for p in RUN_CONFIGS}
    assert set(SIM_RECIPES) <= names
    assert {"koch_native.json", "so101_two_machines.json", "sac_gym_hil.json"} <= names
    assert {p.name for p in VLA_CONFIGS} >= {"smolvla_flow_sde.json", "pi0_flow_sde.json"}
    assert {p.name for p in VLA_RUN_CONFIGS} >= {"so101_smolvla.json", "pi0_two_machines.json"}


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_run_config_parses_validates_and_fits_its_robot(path: Path, tmp_path: Path):
    if _is_sac(path):
        cfg = _parse_sac(["--config", str(path.relative_to(REPO)), f"--output_dir={tmp_path / 'sac'}"])
        cfg.validate()
        assert cfg.algorithm.type == "sac" and cfg.policy.type == "gaussian_actor"
        assert cfg.dataset is None and cfg.env is not None
        return

    from app.episode.observation import resolve_state_keys
    from hardware.factory import CAMERA_TYPES, ROBOT_TYPES, make_robot

    cfg: PIRLRunConfig = parse_run_config(["--config", str(path.relative_to(REPO))])
    if cfg.policy_path is not None:
        # Written by `pirl demo` (test_doc_commands checks the doc creates exactly this folder); here a
        # real pretrained folder of the same shape stands in for it.
        assert path.name in SIM_RECIPES, f"{path.name}: only the sim recipes start from a demo's BC policy"
        cfg.policy_path = _tiny_policy_folder(tmp_path / "bc_policy", SIM_RECIPES[path.name])
    cfg.validate("learner")
    cfg.validate("actor")

    assert cfg.robot.type in ROBOT_TYPES
    for key, cam in getattr(cfg.robot, "cameras", {}).items():
        # a real arm's cameras are real ones; the simulated arm renders its own (MuJoCo)
        sim_camera = cfg.robot.type == "sim_so101" and cam.type == "sim_mujoco"
        assert cam.type in CAMERA_TYPES or sim_camera, f"{path.name}: camera {key} has type {cam.type}"
    if cfg.robot.type != "sim_so101":
        assert cfg.robot.use_degrees, "the safety layer's limits are in degrees"
        assert cfg.safety.envelope_path, f"{path.name}: a real arm recipe must name its safety envelope"
        assert str(cfg.safety.envelope_path).startswith("envelopes/"), "doc records it with --output"
    robot = make_robot(cfg.robot, require_calibration=False)  # instance only: no port, no camera opened

    policy = cfg.make_policy()
    native = policy.config.native
    state_keys = resolve_state_keys(robot, cfg.actor.state_keys)
    assert native.state_dim == len(state_keys), (native.state_dim, state_keys)
    assert native.action_dim == len(robot.action_features)
    assert list(native.image_keys) == list(cfg.actor.image_keys)
    for cam in cfg.actor.image_keys:
        h, w, c = robot.observation_features[cam]
        assert (c, *native.image_size) == (3, h, w), f"{path.name}: camera {cam} is {h}x{w}"
    model = policy.model
    assert model.cfg.exec_horizon <= native.chunk_size
    groups = model.parameter_groups()
    named = {id(p) for g in model.cfg.trainable for p in groups[g]}
    assert named and named == {id(p) for p in model.parameters() if p.requires_grad}, path.name


@pytest.mark.parametrize("path", VLA_CONFIGS, ids=lambda p: p.name)
def test_vla_settings_parse_as_the_policy_rl_section(path: Path):
    from app.rl.config import PIRLConfig

    with draccus.config_type("json"):
        rl = draccus.parse(PIRLConfig, config_path=str(path), args=[])
    assert rl.method == "flow_sde"
    assert "vlm" not in rl.trainable, "the recipes keep the VLM frozen (memory, see docs/vla_adapters.md)"


@pytest.mark.parametrize("path", VLA_RUN_CONFIGS, ids=lambda p: p.name)
def test_vla_run_config_parses_validates_and_builds_with_a_tiny_base(path: Path):
    """Recipes 4-5's run configs: they parse and validate for both sides, carry exactly the PI-RL settings
    of their settings file, and with the base VLA swapped for a tiny one of the robot's shape (no model
    files here) the `pirl_vla` policy builds and reads the cameras the actor sends."""
    from app.episode.observation import resolve_state_keys
    from app.rl.config import PIRLConfig
    from hardware.factory import make_robot

    cfg: PIRLRunConfig = parse_run_config(["--config", str(path.relative_to(REPO))])
    cfg.validate("learner")
    cfg.validate("actor")
    pol = cfg.policy
    assert pol.type == "pirl_vla" and pol.task
    robot = make_robot(cfg.robot, require_calibration=False)  # instance only: no port, no camera opened
    cameras = {k for k, v in robot.observation_features.items() if isinstance(v, tuple)}
    if pol.tiny.enabled:  # the CPU try-out: a tiny random VLA on the simulated arm
        assert cfg.robot.type == "sim_so101", f"{path.name}: a tiny random VLA only drives the sim"
    else:
        assert str(pol.base_path).startswith("/") and str(pol.stats_path).endswith("meta/stats.json")
        assert cfg.algorithm.push_bf16, "a VLA's expert is large: push it in bf16"
        settings = REPO / "configs" / "vla" / _VLA_RECIPE[pol.base_type]
        with draccus.config_type("json"):
            rl = draccus.parse(PIRLConfig, config_path=str(settings), args=[])
        assert pol.rl == rl, f"{path.name}: policy.rl differs from configs/vla/{settings.name}"
        if pol.base_type != "smolvla":
            assert pol.tokenizer_path, "pi0/pi0.5 need a local PaliGemma tokenizer"
        assert set(cfg.actor.image_keys) <= cameras
        # No model files here: a tiny base of the robot's shape stands in for the recipe's VLA.
        state_dim = len(resolve_state_keys(robot, cfg.actor.state_keys))
        pol.base_path = pol.stats_path = pol.tokenizer_path = None
        pol.tiny.enabled, pol.tiny.state_dim = True, state_dim
        pol.tiny.action_dim, pol.tiny.cameras = len(robot.action_features), tuple(cfg.actor.image_keys)
    policy = cfg.make_policy()
    assert set(policy.image_keys) <= cameras
    assert policy.config.input_features["observation.state"].shape == (
        len(resolve_state_keys(robot, cfg.actor.state_keys)),
    )
    assert policy.model.exec_horizon == pol.rl.exec_horizon


# ------------------------------------------------------------------------------------- the doc


def _doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def _doc_commands() -> list[list[str]]:
    """Every shell command in the doc's bash blocks, as argv (continuations joined, comments dropped)."""
    commands = []
    for block in _doc_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def _parse_pirl(argv: list[str]):
    """Parse a `pirl ...` command line with that command's own parser, starting nothing."""
    name, args = argv[1], argv[2:]
    if name in ("learner", "actor"):
        if requested_algorithm(args) == "sac":
            return _parse_sac(args)
        path = config_path(args)  # what both commands read (--config X, --config=X, --config_path)
        assert path is not None and (REPO / path).is_file(), f"{argv}: no config {path}"
        return parse_run_config(args)
    if name == "console":
        from app.console.main import ConsoleConfig

        cfg = draccus.parse(config_class=ConsoleConfig, args=args)
        assert cfg.config and (REPO / cfg.config).is_file(), f"{argv}: no config {cfg.config}"
        return cfg
    if name == "calibrate":
        from calibration import cli

        sub = args[0] if args and args[0] in cli.SUBCOMMANDS else None
        rest = args[1:] if sub else args
        if sub == "validate":
            rest = cli._without_port_means_offline(rest)  # noqa: SLF001 (what `main` does first)
        config_class, _command = cli._COMMANDS[sub]  # noqa: SLF001
        return draccus.parse(config_class=config_class, args=rest)
    if name == "demo":
        from app.demo.cli import DemoCLIConfig

        with draccus.config_type("json"):
            return draccus.parse(DemoCLIConfig, args=args)
    if name == "eval":
        from app.eval import parse_config

        return parse_config(args)
    if name == "doctor":
        from app.doctor import DoctorConfig

        return draccus.parse(config_class=DoctorConfig, args=args)
    raise AssertionError(f"docs/recipes.md runs `pirl {name}`, which the tests do not know how to parse")


@pytest.mark.slow  # each run-config parse builds draccus's parser over every LeRobot config type: ~3 s apiece
def test_every_command_in_the_doc_parses_and_names_existing_files():
    commands = _doc_commands()
    demos = []  # (method, output_dir) of every demo run the doc asks for
    seen_pirl = set()
    for argv in commands:
        if argv[0] == "torchrun":  # several learner ranks: torchrun's own flags, then `--no-python pirl ...`
            assert "--no-python" in argv, f"docs/recipes.md: torchrun without --no-python: {argv}"
            argv = argv[argv.index("--no-python") + 1 :]
            assert argv[:2] == ["pirl", "learner"], f"docs/recipes.md: torchrun runs only the learner: {argv}"
        tool = argv[0]
        if tool == "pirl":
            seen_pirl.add(argv[1])
            try:
                cfg = _parse_pirl(argv)
            except SystemExit as exc:  # draccus prints why (unknown option, bad value)
                raise AssertionError(f"docs/recipes.md: `{shlex.join(argv)}` does not parse") from exc
            if argv[1] == "demo":
                demos.append((cfg.method, Path(cfg.output_dir)))
        elif tool == "make":
            assert re.search(rf"^{argv[1]}:", (REPO / "Makefile").read_text(), flags=re.M), argv
            if argv[1] == "demo":
                demos.append(("flow_noise", Path("outputs/demo")))  # `make demo` = `pirl demo`, defaults
        elif tool == "python":
            script = REPO / argv[1]
            assert script.is_file(), f"docs/recipes.md runs {argv[1]}, which does not exist"
            source = script.read_text()
            for opt in (a for a in argv[2:] if a.startswith("--")):
                assert f'"{opt.split("=")[0]}"' in source, f"{argv[1]} has no option {opt}"
        else:
            assert tool in ("export", "mkdir", "openssl"), f"unexpected command in docs/recipes.md: {argv}"
    assert {"doctor", "calibrate", "learner", "actor", "console", "demo", "eval"} <= seen_pirl

    text = DOC.read_text()
    for path in [*RUN_CONFIGS, *VLA_CONFIGS, *VLA_RUN_CONFIGS]:
        assert str(path.relative_to(REPO / "configs")) in text, f"no recipe uses configs/{path.name}"
    # The sim recipes start from the BC policy that a demo command on the page writes, for its method.
    for name, method in SIM_RECIPES.items():
        cfg = parse_run_config(["--config", f"configs/{name}"])
        assert (method, Path(cfg.policy_path).parent) in demos, (name, cfg.policy_path, demos)


def test_python_in_the_doc_compiles_and_reads_existing_configs():
    blocks = _doc_blocks("python")
    assert blocks
    for src in blocks:
        compile(src, "docs/recipes.md", "exec")
        for path in re.findall(r'"(configs/[^"]+)"', src):
            assert (REPO / path).is_file(), path


# ------------------------------------------------------------------------------------- the sim recipes run


@pytest.mark.slow
@pytest.mark.parametrize(("name", "method"), sorted(SIM_RECIPES.items()))
def test_sim_recipe_runs_one_update_through_learner_and_actor(name: str, method: str, tmp_path: Path):
    """The recipe's own config, as `pirl learner` / `pirl actor` processes on a free loopback port. Only
    what a test must shrink is overridden: the BC policy (a tiny one of the demo's shape instead of a demo
    run), one 9-chunk episode per update instead of 320 chunks, one update."""
    from app.learner.checkpoint import CheckpointManager
    from app.run.launch import RunProcesses

    folder = _tiny_policy_folder(tmp_path / "bc_policy", method)
    out = tmp_path / "run"
    shrink = [f"--policy_path={folder}"]
    extra = []
    if parse_run_config(["--config", f"configs/{name}"]).learner.demos:  # a demo file instead of a demo run
        from app.learner.demos import save_demo_file

        demo = {
            "observation.state": torch.zeros(20, 9),
            "action": torch.zeros(20, 6),
            "reward": torch.zeros(20),
        }
        extra = [f"--learner.demos={save_demo_file(tmp_path / 'demos.pt', [demo])}"]
    run = RunProcesses.start(
        REPO / "configs" / name,
        out,
        actors=1,
        learner_args=[
            *shrink,
            "--learner.max_updates=1",
            "--algorithm.chunks_per_update=9",  # 1.5 s episodes, 5 actions per chunk: 9 chunks
            "--learner.tensorboard=false",
            *extra,
        ],
        actor_args=[*shrink, "--actor.sample_seed=0"],
        env={"OMP_NUM_THREADS": "1"},
    )
    try:
        run.wait_for(lambda n, ln: n == "actor0" and " episode 1 " in ln, timeout=240, what="an episode")
        run.wait_for(
            lambda n, ln: ln.startswith("learner: update 1 "), timeout=120, what="update 1", seen=True
        )
        run.wait_for(
            lambda n, ln: ln.startswith("learner: checkpoint"), timeout=60, what="checkpoint", seen=True
        )
    finally:
        run.stop()
    assert run.learner.popen.returncode == 0, run.tail()
    metrics = run.metrics()
    assert metrics and metrics[0]["charts/policy_version"] == 1
    assert all(k in metrics[0] for k in ("losses/approx_kl", "losses/value_loss", "charts/SPS"))
    assert ("losses/entropy" in metrics[0]) == (method == "flow_noise")  # only Flow-Noise has a learned std
    latest = CheckpointManager(out / "checkpoints").latest()
    saved = json.loads((latest / "pretrained_model" / "config.json").read_text())
    assert saved["rl"]["method"] == method


def _doc_line(*head: str, config: str) -> list[str]:
    return next(c for c in _doc_commands() if c[: len(head)] == list(head) and config in c)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="the recipe makes its certificate with openssl")
def test_two_machine_recipe_token_and_tls_lines_work_together(tmp_path: Path):
    """Recipe 3 on loopback: the doc's own openssl line makes the certificate, the doc's learner and actor
    lines add TLS, the config's token_env asks for PIRL_TOKEN. The arm is the simulated SO-101 with one
    small camera named like the recipe's (no serial port here); the policy keeps the recipe's method."""
    from app.run.launch import RunProcesses, free_port

    config = "configs/so101_two_machines.json"
    openssl = next(c for c in _doc_commands() if c[:2] == ["openssl", "req"])
    (tmp_path / "certs").mkdir()
    subprocess.run(openssl, cwd=tmp_path, check=True, capture_output=True)

    cfg = json.loads((REPO / config).read_text())
    cam = {"front": {"type": "sim_mujoco", "camera": "front", "width": 64, "height": 48}}
    cfg["robot"] = {"type": "sim_so101", "task": "reach", "fps": 30, "cameras": cam}
    del cfg["teleop"]  # no leader arm here
    cfg["policy"]["device"] = "cpu"
    cfg["policy"]["native"].update(
        state_dim=9,
        image_keys=["front"],
        image_size=[48, 64],
        obs_hidden=32,
        expert_hidden=32,
        time_embed_dim=8,
    )
    cfg["policy"]["rl"].update(value_hidden=[32], ppo={"epochs": 1, "minibatch_size": 32})
    cfg["actor"]["image_keys"] = ["front"]
    del cfg["safety"]["envelope_path"]
    cfg["episode"] = {"time_limit_s": 1.0}
    cfg["algorithm"]["chunks_per_update"] = 6
    cfg["learner"].update(max_updates=1, tensorboard=False)
    path = tmp_path / "so101_two_machines.json"
    path.write_text(json.dumps(cfg))

    def local(argv: list[str]) -> list[str]:
        """The doc line's options, on loopback, with the certificate paths under tmp_path."""
        args = argv[argv.index(config) + 1 :]
        args = [
            re.sub(r"=certs/", f"={tmp_path}/certs/", a) for a in args if not a.startswith("--transport.host")
        ]
        return [*args, "--transport.host=127.0.0.1"]

    learner_args = local(_doc_line("pirl", "learner", config=config))
    actor_args = local(_doc_line("pirl", "actor", config=config))
    assert any(a.startswith("--transport.tls_cert=") for a in learner_args)
    assert any(a.startswith("--transport.tls_ca=") for a in actor_args)
    assert cfg["transport"]["token_env"] == "PIRL_TOKEN"

    run = RunProcesses(
        path, tmp_path / "run", free_port(), env={"PIRL_TOKEN": "t0k3n", "OMP_NUM_THREADS": "1"}
    )
    try:
        run.start_learner(learner_args)
        run.start_actor(["--actor.actor_id=so101", *actor_args])
        run.wait_for(lambda n, ln: "first chunk with policy v0" in ln, timeout=240, what="weights over TLS")
        run.wait_for(
            lambda n, ln: ln.startswith("learner: update 1 "), timeout=180, what="update 1", seen=True
        )
    finally:
        run.stop()
    metrics = run.metrics()
    assert metrics and metrics[0]["charts/policy_version"] == 1 and "losses/entropy" not in metrics[0]  # SDE


# Real-arm recipes: config, robot type and id as the doc writes them, the simulated bus that stands in.
_REAL_ARMS = {
    "koch_native.json": ("koch_follower", "koch1", "koch_sim", "dynamixel"),
    "so101_two_machines.json": ("so101_follower", "arm1", "so101_sim", "feetech"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_REAL_ARMS))
def test_real_arm_recipe_runs_on_a_simulated_bus(name: str, request, calib_dir, monkeypatch, tmp_path: Path):
    """Recipes 2 and 3 with a packet-level simulated servo bus (tests/mocks) in place of the USB arm: the
    doc's own `calibrate envelope` and `calibrate check` lines, then the recipe's config for its learner and
    actor (in this process, where the simulated port lives; learner on loopback), two episodes of the
    untrained policy in real time. Every Goal_Position on the wire stays inside the recorded envelope (and,
    on the SO-101, the recorded workspace box bounds every commanded end-effector position). The cameras
    are dropped (no device here; the camera path runs in the two-machine TLS test)."""
    from app.actor.loop import Actor
    from app.learner.loop import Learner
    from calibration.cli import main as calibrate
    from hardware.kinematics import SO101Kinematics
    from hardware.safety.envelope import SafetyEnvelope
    from tests.calibration.test_check import FAST, goals_on_wire, wire_poses
    from tests.calibration.test_envelope import SO_MOTION, quiet_io, sweep
    from tests.mocks.calibration_files import (
        KOCH_RANGES,
        SO101_RANGES,
        calibrate_registers,
        write_calibration_file,
    )

    robot_type, robot_id, fixture, family = _REAL_ARMS[name]
    arm = request.getfixturevalue(fixture)
    ranges = KOCH_RANGES if family == "dynamixel" else SO101_RANGES
    envelope = tmp_path / "envelopes" / f"{robot_id}.json"

    def here(argv: list[str]) -> list[str]:
        """A doc line's options with the simulated port, a temporary calibration folder and envelope."""
        args = [
            f"--robot.port={arm.port}"
            if a.startswith("--robot.port=")
            else a.replace("envelopes/", f"{envelope.parent}/")
            for a in argv[2:]
        ]
        return [*args, f"--robot.calibration_dir={calib_dir}"]

    # `pirl calibrate` itself is interactive (LeRobot's prompts); its result is this file.
    write_calibration_file(calib_dir / f"{robot_id}.json", calibrate_registers(arm, ranges))
    if family == "dynamixel":
        arm.script({"elbow_flex": sweep(2050, 1400, 2050), "shoulder_lift": sweep(2050, 1500, 2050)})
    else:
        arm.script(SO_MOTION)
    line = _doc_line("pirl", "calibrate", "envelope", config=f"--robot.type={robot_type}")
    assert calibrate([*here(line), "--max_samples=40"], io=quiet_io([])) == 0
    line = _doc_line("pirl", "calibrate", "check", config=f"--robot.type={robot_type}")
    lines: list[str] = []
    assert calibrate([*here(line), *FAST], io=quiet_io(lines)) == 0, "\n".join(lines)
    env = SafetyEnvelope.load(envelope)

    cfg = json.loads((REPO / "configs" / name).read_text())
    del cfg["robot"]["cameras"]  # no camera device here
    del cfg["teleop"]  # no leader arm here (leader takeovers: tests/app/actor/test_teleop_takeover.py)
    cfg["policy"]["native"]["image_keys"] = cfg["actor"]["image_keys"] = []
    config = tmp_path / name
    config.write_text(json.dumps(cfg))
    if cfg["transport"].get("token_env"):
        monkeypatch.setenv(cfg["transport"]["token_env"], "t0k3n")
    args = [
        "--config", str(config), f"--robot.port={arm.port}", f"--robot.calibration_dir={calib_dir}",
        f"--safety.envelope_path={envelope}", "--safety.handle_signals=false",
        "--episode.auto_start=true",  # the console's `p`, pressed for every episode
        "--episode.time_limit_s=1.0", "--algorithm.chunks_per_update=6",
        "--transport.host=127.0.0.1", "--transport.port=0",
        f"--learner.output_dir={tmp_path / 'run'}", "--learner.tensorboard=false", "--learner.progress=false",
        "--actor.episodes=2", "--actor.progress_every=0",
    ]  # fmt: skip
    learner = Learner(parse_run_config(args), progress=None)
    port = learner.start_server()
    thread = threading.Thread(target=learner.run, daemon=True)
    thread.start()
    try:
        arm.bus.writes.clear()
        actor = Actor(parse_run_config([*args, f"--transport.port={port}"]), progress=None)
        assert actor.guard.mode == "realtime" and not actor.guard.is_sim
        assert actor.run() == 0
        deadline = time.monotonic() + 60
        while learner.updates < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert learner.updates >= 1
    finally:
        learner.shutdown.set()
        thread.join(timeout=30)
    assert actor.episodes_done == 2 and actor.version is not None
    poses = wire_poses(goals_on_wire(arm, ranges, family))
    assert len(poses) > 30  # 2 x 30 control steps plus the resets
    for pose in poses:
        for motor, value in pose.items():
            lo, hi = env.joint_limits[motor]
            assert lo - 0.1 <= value <= hi + 0.1, (motor, value, lo, hi)
    if env.workspace_min is not None:
        fk = SO101Kinematics().fk
        lo, hi = env.workspace_min, env.workspace_max
        for pose in poses:
            xyz = fk(pose)
            assert all(lo[i] - 0.005 <= xyz[i] <= hi[i] + 0.005 for i in range(3)), (xyz, lo, hi)


# ------------------------------------------------------------------------------------- the VLA settings

_VLA_RECIPE = {"smolvla": "smolvla_flow_sde.json", "pi0": "pi0_flow_sde.json", "pi05": "pi0_flow_sde.json"}


def _tiny_vla(kind: str, folder: Path, chunk: int):
    """A tiny SmolVLA / pi0 / pi0.5 built offline with LeRobot's default chunk, and its tokenizer."""
    from app.rl.adapters import tiny

    if kind == "smolvla":
        from transformers import AutoProcessor

        policy = tiny.build_tiny_smolvla(folder, chunk_size=chunk, num_steps=10)
        return policy, AutoProcessor.from_pretrained(folder).tokenizer
    return tiny.build_tiny_pi0(kind, chunk_size=chunk, num_steps=10)


@pytest.mark.parametrize("kind", sorted(_VLA_RECIPE))
def test_vla_recipe_settings_train_the_named_groups_and_push_in_bf16(kind: str, tmp_path: Path):
    """With the recipe's PI-RL settings: exactly `rl.trainable` trains (the VLM stays frozen), one PPO
    update on a sampled batch moves it, and the bf16 push loads into an actor-side copy of the model."""
    from app.rl.adapters.factory import make_adapter
    from app.rl.adapters.tiny import tokenize
    from app.rl.batch import RolloutBatch
    from app.rl.config import PIRLConfig
    from app.rl.digests import frozen_digest
    from app.rl.model import PIRLModel
    from app.rl.sampling import sample
    from app.rl.trainer import PIRLTrainer
    from app.transport.codec import Parameters, decode_parameters, encode_parameters

    torch.set_num_threads(1)
    with draccus.config_type("json"):
        rl = draccus.parse(PIRLConfig, config_path=str(REPO / "configs" / "vla" / _VLA_RECIPE[kind]), args=[])
    chunk = 50  # LeRobot's default chunk for SmolVLA, pi0 and pi0.5
    policy, tok = _tiny_vla(kind, tmp_path / "vlm", chunk)
    model = PIRLModel(make_adapter(policy), rl)
    groups = model.parameter_groups()
    named = {id(p) for g in rl.trainable for p in groups[g]}
    assert {id(p) for p in model.parameters() if p.requires_grad} == named
    assert not any(p.requires_grad for p in groups["vlm"])

    n = 4
    g = torch.Generator().manual_seed(0)
    obs = {"observation.state": torch.randn(n, 6, generator=g)}
    for key, feat in policy.config.image_features.items():
        obs[key] = torch.rand(n, *feat.shape, generator=g)
    obs.update(tokenize(tok, ["pick the red cube"] * n, policy.config.tokenizer_max_length))
    s = sample(model, obs, mode="train", generator=g)
    assert s.actions.shape == (n, chunk, 6) and s.chain.shape[1] == rl.num_steps + 1
    flags = torch.zeros(n, dtype=torch.bool)
    batch = RolloutBatch(
        obs=obs, chain=s.chain, sde_step=s.sde_step, logprob=s.logprob, value=s.value,
        reward=torch.tensor([1.0, 0.0, 0.0, 1.0]), done=torch.ones(n, dtype=torch.bool), truncated=flags,
        bootstrap_value=torch.zeros(n), intervention=flags, human_action=torch.zeros(n, chunk, 6),
        takeover_start=flags, policy_version=torch.zeros(n, dtype=torch.long), episode_id=torch.arange(n),
        chunk_index=torch.zeros(n, dtype=torch.long), group_id=torch.full((n,), -1),
    )  # fmt: skip
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = PIRLTrainer(model, seed=0)
    metrics = trainer.update(batch)
    assert all(torch.isfinite(torch.tensor(metrics[k])) for k in ("losses/policy_loss", "losses/value_loss"))
    moved = {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert moved and moved <= trainable
    assert any(name.startswith("policy.") for name in moved), "the action expert did not move"

    state = trainer.get_trainable_state()
    wire = encode_parameters(Parameters(version=1, state=state), bf16=True)
    assert len(wire) < 0.6 * len(encode_parameters(Parameters(version=1, state=state)))
    actor_policy, _ = _tiny_vla(kind, tmp_path / "vlm_actor", chunk)  # same seed: same frozen weights
    actor_model = PIRLModel(make_adapter(actor_policy), rl)
    assert frozen_digest(actor_model) == frozen_digest(model)  # what the actor checks before loading
    actor_model.load_trainable_state(decode_parameters(wire).state)
    for name, tensor in actor_model.get_trainable_state().items():
        assert tensor.dtype == state[name].dtype
        assert torch.allclose(tensor, state[name], rtol=1e-2, atol=1e-2), name
