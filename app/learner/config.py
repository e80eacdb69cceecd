"""One typed config for a PI-RL run, read by both `pirl learner` and `pirl actor` (draccus, JSON).

A learner and its actors read the same file, so they agree on the policy, the port and the token:

    pirl learner --config configs/sim_pirl_reach.json
    pirl actor   --config configs/sim_pirl_reach.json --actor.actor_id=a1

Sections: `policy` (LeRobot policy config, `--policy.type=pirl_flow`, with the PPO settings under
`policy.rl`) or `policy_path` (a LeRobot pretrained folder, e.g. after BC), `algorithm`
(`--algorithm.type=pirl`), `robot` (LeRobot robot config, `--robot.type=sim_so101`), `safety`,
`episode`, `transport`, `learner`, `actor`, and `teleop` (the operator's takeover device, optional).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import draccus
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.rl.algorithms.configs import RLAlgorithmConfig
from lerobot.robots import RobotConfig
from lerobot.teleoperators import TeleoperatorConfig

from app.actor.config import ActorConfig
from app.learner.algorithm import PIRLAlgorithmConfig
from app.transport.config import TransportConfig
from hardware.episodes import EpisodeConfig
from hardware.safety.config import SafetyConfig

# Modules whose import registers config choices (policies "pirl_flow" and "pirl_vla", robot "sim_so101",
# LeRobot robots, and the camera types a real robot's `cameras` section names: "opencv", "intelrealsense").
_REGISTRATIONS = (
    "app.rl.lerobot_policy",
    "app.rl.vla_policy",
    "hardware.sim",
    "lerobot.robots.so_follower",
    "lerobot.robots.koch_follower",
    "lerobot.cameras.opencv",
    "lerobot.cameras.realsense",
    # teleoperators for `teleop` (sim_expert comes with hardware.sim)
    "lerobot.teleoperators.so_leader",
    "lerobot.teleoperators.koch_leader",
    "lerobot.teleoperators.gamepad",
    "lerobot.teleoperators.keyboard",
)


def register_choices() -> None:
    for name in _REGISTRATIONS:
        importlib.import_module(name)


@dataclass
class LearnerConfig:
    # Where checkpoints, metrics.jsonl and TensorBoard logs go.
    output_dir: Path = Path("outputs/pirl")
    # Continue the run in output_dir from its newest checkpoint (policy, optimiser, version, counters).
    resume: bool = False
    # Stop after this many updates (0: run until stopped).
    max_updates: int = 0
    # Updates between checkpoints (0: only the final one at exit).
    save_every: int = 10
    # Finished checkpoints kept on disk (older ones are deleted after each save).
    keep_checkpoints: int = 3
    # Episodes in the sliding window of charts/success_rate and charts/intervention_rate.
    stats_window: int = 20
    # Write TensorBoard event files to <output_dir>/tb.
    tensorboard: bool = True
    # Also log to Weights & Biases (needs wandb installed and configured; off by default, offline OK).
    wandb: bool = False
    wandb_project: str = "pirl"
    # Print one progress line per update (headless); metrics also go to <output_dir>/metrics.jsonl.
    progress: bool = True
    # CPU threads for torch in this process (0: torch's default, one per core). When the learner shares
    # a small machine with the actor, give each its own core: with both spread over every core, the sim
    # demo's PPO updates took 10-24 s instead of 0.3-0.4 s on 2 cores (docs/runtime.md).
    torch_threads: int = 0

    def validate(self) -> None:
        if self.max_updates < 0 or self.save_every < 0:
            raise ValueError("learner.max_updates and learner.save_every must be >= 0")
        if self.torch_threads < 0:
            raise ValueError(
                f"learner.torch_threads must be >= 0 (0 = torch's default), got {self.torch_threads}"
            )
        if self.keep_checkpoints < 1:
            raise ValueError("learner.keep_checkpoints must be >= 1")
        if self.stats_window < 1:
            raise ValueError("learner.stats_window must be >= 1")


@dataclass
class PIRLRunConfig:
    # The flow policy (LeRobot policy config). Mutually exclusive with policy_path.
    policy: PreTrainedConfig | None = None
    # A LeRobot pretrained policy folder (config.json + model.safetensors), e.g. a BC-pretrained one.
    policy_path: Path | None = None
    # The RL algorithm (`pirl`; `sac` routes to LeRobot's own learner/actor, see app/learner/sac.py).
    algorithm: RLAlgorithmConfig | None = None
    # The robot the actor drives (LeRobot robot config, e.g. sim_so101 or so101_follower).
    robot: RobotConfig | None = None
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    # The operator's device for takeovers (LeRobot teleoperator config; the console's `t` key, or the
    # device's own intervention button, hands it the arm). A leader arm (`so100_leader`/`so101_leader`
    # with `use_degrees` like the follower, `koch_leader`; each needs `port` and the `id` of its
    # calibration file) streams joint positions; `gamepad` / `keyboard_ee` (SO-10x arms only) move the
    # gripper in Cartesian steps through IK and take over while their intervention button / key is held;
    # `sim_expert` (sim_so101 only) is the scripted expert. Human actions go through the same safety layer
    # (a leader far from the follower is followed at the clamped speed, never jumped to) and their chunks
    # are flagged as interventions. None: no teleoperator (on sim the scripted expert still stands in while
    # `actor.expert` is true; on a real arm `t` does nothing).
    teleop: TeleoperatorConfig | None = None
    # Seed for policy construction (learner and actor must agree) and everything else not seeded.
    seed: int = 0

    def validate(self, side: str) -> None:
        """Check what `side` ("learner" or "actor") needs; errors say which option to fix."""
        if self.policy is not None and self.policy_path is not None:
            raise ValueError("give either --policy.* or --policy_path, not both")
        if self.policy is None and self.policy_path is None:
            raise ValueError(
                "no policy: set --policy.type=pirl_flow (fresh native policy), --policy.type=pirl_vla "
                "--policy.base_path=<SmolVLA/pi0/pi05 folder>, or --policy_path=<pretrained dir>"
            )
        if self.policy_path is not None and not (Path(self.policy_path) / "config.json").is_file():
            raise ValueError(
                f"policy_path={self.policy_path} is not a LeRobot pretrained folder (no config.json)"
            )
        if self.algorithm is None:
            self.algorithm = PIRLAlgorithmConfig()
        if not isinstance(self.algorithm, PIRLAlgorithmConfig):
            raise ValueError(
                f"algorithm.type={self.algorithm.type!r} is not PI-RL; `pirl {side}` routes "
                "--algorithm.type=sac to LeRobot's own runtime with a LeRobot config (see docs/runtime.md)"
            )
        self.algorithm.validate()
        self.transport.validate()
        if side == "learner":
            self.learner.validate()
        else:
            if self.robot is None:
                raise ValueError("no robot: set --robot.type=sim_so101 (simulated) or a real follower type")
            self.actor.validate()
            if self.teleop is not None:
                _check_teleop(self.teleop, self.robot)
            if self.actor.expert_takeover_prob > 0 and self.robot.type != "sim_so101":
                # a real leader would be handed the arm at random moments, held or not
                raise ValueError("actor.expert_takeover_prob is for the simulated arm only; set it to 0")
            self.safety.validate()
            self.episode.validate()


# Teleoperators that are leader arms (serial port, calibration id, joint-space takeover).
LEADER_ARMS = {"so100_leader", "so101_leader", "koch_leader"}
_END_EFFECTOR_TELEOPS = {"gamepad", "keyboard_ee"}


def _check_teleop(teleop: TeleoperatorConfig, robot: RobotConfig) -> None:
    """Fail before anything is built when the teleoperator cannot drive this robot."""
    from hardware.factory import TELEOP_TYPES

    kind = teleop.type
    if kind not in TELEOP_TYPES:
        raise ValueError(f"teleop.type={kind!r} is not supported; choose one of {', '.join(TELEOP_TYPES)}")
    if kind == "sim_expert" and robot.type != "sim_so101":
        raise ValueError("teleop.type=sim_expert drives the simulated arm only (robot.type=sim_so101)")
    if kind in _END_EFFECTOR_TELEOPS and robot.type not in ("sim_so101", "so100_follower", "so101_follower"):
        raise ValueError(
            f"teleop.type={kind} moves the gripper through SO-10x kinematics; robot.type={robot.type} "
            "needs its leader arm (e.g. teleop.type=koch_leader)"
        )
    if kind in LEADER_ARMS:
        if not getattr(teleop, "port", None):
            raise ValueError(
                f"teleop.type={kind} needs the leader arm's serial port: set teleop.port "
                "(e.g. --teleop.port=/dev/ttyACM1; find it with `lerobot-find-port`)"
            )
        if not teleop.id:
            raise ValueError(f"teleop.type={kind} needs an id (teleop.id): it names the calibration file")
        degrees = getattr(robot, "use_degrees", True)  # sim_so101 speaks degrees
        if getattr(teleop, "use_degrees", degrees) != degrees:
            raise ValueError(
                f"teleop.use_degrees={teleop.use_degrees} but the follower's is {degrees}: "
                "leader and follower must report the same units (set both to true)"
            )


def parse_run_config(argv: list[str]) -> PIRLRunConfig:
    """`--config X` (alias of --config_path) and dotted overrides -> PIRLRunConfig."""
    from app.learner.sac import config_path

    register_choices()
    path = config_path(argv)
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(
            f"config file {path} not found (recipes live in configs/, see docs/recipes.md)"
        )
    args = [a for a in _drop_config_args(argv)]
    try:
        with draccus.config_type("json"):
            return draccus.parse(PIRLRunConfig, config_path=path, args=args)
    except draccus.utils.DecodingError as exc:
        device = next((d for d in ("teleop", "robot") if f"`{d}`" in str(exc)), None)
        if device is None or "`port`" not in str(exc):
            raise
        # draccus only says "could not decode": name the option and where to find its value
        raise ValueError(
            f"{device} needs a serial port: set {device}.port in the config or --{device}.port=/dev/ttyACM0 "
            f"(find it with `lerobot-find-port`). Parser: {' '.join(str(exc).split())}"
        ) from None


def _drop_config_args(argv: list[str]) -> list[str]:
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("--config", "--config_path") and i + 1 < len(argv):
            skip = True
            continue
        if arg.startswith(("--config=", "--config_path=")):
            continue
        out.append(arg)
    return out


def make_policy(cfg: PIRLRunConfig, device: str | torch.device = "cpu") -> Any:
    """The LeRobot policy both sides run. Same seed + same config (or same folder) = same weights, which
    matters because only the trainable subset travels; the actor checks a digest of the rest."""
    register_choices()
    if cfg.policy_path is not None:
        pcfg = PreTrainedConfig.from_pretrained(cfg.policy_path)
        policy_cls = _policy_class(pcfg)
        policy = policy_cls.from_pretrained(cfg.policy_path, config=pcfg)
    else:
        torch.manual_seed(cfg.seed)
        policy_cls = _policy_class(cfg.policy)
        policy = policy_cls(cfg.policy)
    return policy.to(device).eval()


def _policy_class(pcfg: PreTrainedConfig) -> type:
    if pcfg.type == "pirl_flow":
        from app.rl.lerobot_policy import PIRLFlowPolicy

        return PIRLFlowPolicy
    if pcfg.type == "pirl_vla":
        from app.rl.vla_policy import PIRLVLAPolicy

        return PIRLVLAPolicy
    if pcfg.type in ("smolvla", "pi0", "pi05"):
        # A bare VLA has no PI-RL heads, task or statistics: wrap it (see docs/recipes.md, recipes 4-5).
        raise ValueError(
            f"policy_path holds a bare {pcfg.type} policy; PI-RL runs it wrapped: --policy.type=pirl_vla "
            f"--policy.base_path=<that folder> --policy.task='<instruction>' "
            "--policy.stats_path=<dataset>/meta/stats.json (configs/vla/ has full run configs)"
        )
    from lerobot.policies.factory import get_policy_class

    return get_policy_class(pcfg.type)
