"""One typed config for a PI-RL run, read by both `pirl learner` and `pirl actor` (draccus, JSON).

A learner and its actors read the same file, so they agree on the policy, the port and the token:

    pirl learner --config configs/sim_pirl_reach.json
    pirl actor   --config configs/sim_pirl_reach.json --actor.actor_id=a1

Sections: `policy` (LeRobot policy config, `--policy.type=pirl_flow`, with the PPO settings under
`policy.rl`) or `policy_path` (a LeRobot pretrained folder, e.g. after BC), `algorithm`
(`--algorithm.type=pirl`), `robot` (LeRobot robot config, `--robot.type=sim_so101`), `safety`,
`episode`, `transport`, `learner`, `actor`, `teleop` (the operator's takeover device, optional) and
`wandb` (LeRobot's Weights & Biases section, read by the learner).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lerobot.configs.default import WandBConfig
from lerobot.configs.policies import PreTrainedConfig
from lerobot.rl.algorithms.configs import RLAlgorithmConfig
from lerobot.robots import RobotConfig
from lerobot.teleoperators import TeleoperatorConfig

from app.rl.algorithm import PIRLAlgorithmConfig
from app.rl.config import PIRLConfig
from app.rl.factory import make_policy
from app.run.sections import ActorConfig, LearnerConfig
from app.transport.config import TransportConfig
from hardware.episodes import EpisodeConfig
from hardware.safety.config import SafetyConfig


@dataclass
class PIRLRunConfig:
    # The flow policy (LeRobot policy config). Mutually exclusive with policy_path.
    policy: PreTrainedConfig | None = None
    # A LeRobot pretrained policy folder (config.json + model.safetensors), e.g. a BC-pretrained one.
    policy_path: Path | None = None
    # The RL algorithm (`pirl`; `sac` routes to LeRobot's own learner/actor, see app/run/sac.py).
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
    # Weights & Biases logging of the learner's metrics: LeRobot's own section, the class itself
    # (lerobot.configs.default.WandBConfig, defaults included), logged through LeRobot's WandBLogger
    # (app/learner/metrics.py). --wandb.enable=true turns it on; --wandb.project (LeRobot's default:
    # "lerobot"), --wandb.entity (user or team; unset: your default), --wandb.mode (online; offline: no
    # network, upload later with `wandb sync`; disabled; unset: $WANDB_MODE, else online), --wandb.notes,
    # --wandb.run_id (unset: pirl's run id, kept across --learner.resume=true), --wandb.add_tags (policy,
    # seed and robot type as tags). disable_artifact has no effect here: pirl uploads no checkpoints.
    wandb: WandBConfig = field(default_factory=WandBConfig)

    def make_policy(self, device: str | torch.device = "cpu") -> Any:
        """The policy this run names (`app.rl.factory.make_policy`), identical on learner and actor."""
        return make_policy(self.policy, self.policy_path, seed=self.seed, device=device)

    def validate(self, side: str) -> None:
        """Check what `side` ("learner" or "actor") needs; errors say which option to fix."""
        if self.policy is not None and self.policy_path is not None:
            raise ValueError("give either --policy.* or --policy_path, not both")
        if self.policy is None and self.policy_path is None:
            raise ValueError(
                "no policy: start from a recipe with --config configs/<recipe>.json (docs/recipes.md), or set "
                "--policy.type=pirl_flow (fresh native policy), --policy.type=pirl_vla "
                "--policy.base_path=<SmolVLA/pi0/pi05 folder>, or --policy_path=<pretrained dir>"
            )
        if self.policy_path is not None:  # a local folder or a hub id `owner/name[@revision]` (app/rl/hub.py)
            from app.rl.hub import HubError, resolve_folder

            try:
                folder = resolve_folder(self.policy_path)
            except HubError as exc:
                raise ValueError(f"policy_path={exc}") from exc
            if not folder.exists():
                raise ValueError(f"policy_path={self.policy_path}: no such folder")
            if not (folder / "config.json").is_file():
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
        rl = getattr(self.policy, "rl", None)
        if isinstance(rl, PIRLConfig):
            rl.validate("policy.rl")
        self.transport.validate()
        if side == "learner":
            self.learner.validate()
            _check_wandb(self.wandb)
            from app.rl.hub import push_problem

            problem = push_problem(self)  # repo_id missing or malformed, offline, not logged in
            if problem:
                raise ValueError(problem)
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


WANDB_MODES = ("online", "offline", "disabled")
# What a learner with --wandb.enable=true says when wandb cannot be imported (here and app/learner/metrics.py).
WANDB_MISSING = (
    "--wandb.enable=true needs the wandb package, which is not installed: `pip install wandb` "
    "(LeRobot's training extra) or leave --wandb.enable=false"
)


def _check_wandb(wandb: WandBConfig) -> None:
    """Refuse what LeRobot's WandBLogger would take silently (an unknown mode becomes "online") or only
    fail on after the learner started (wandb not installed)."""
    if not wandb.enable:
        return
    if wandb.mode is not None and wandb.mode not in WANDB_MODES:
        raise ValueError(
            f"wandb.mode must be one of {', '.join(WANDB_MODES)} (unset: $WANDB_MODE, else online), got {wandb.mode!r}"
        )
    if not wandb.project:
        raise ValueError("wandb.project must name a project when wandb.enable is true")
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        raise ValueError(WANDB_MISSING)


# Teleoperators that are leader arms (serial port, calibration id, joint-space takeover).
LEADER_ARMS = {"so100_leader", "so101_leader", "koch_leader"}
_END_EFFECTOR_TELEOPS = {"gamepad", "keyboard_ee"}


def _check_teleop(teleop: TeleoperatorConfig, robot: RobotConfig) -> None:
    """Fail before anything is built when the teleoperator cannot drive this robot."""
    from hardware.factory import TELEOP_TYPES

    kind = teleop.type
    if kind not in TELEOP_TYPES:
        raise ValueError(f"teleop.type={kind!r} is not supported; choose one of {', '.join(TELEOP_TYPES)}")
    if kind in ("sim_expert", "sim_operator") and robot.type != "sim_so101":
        raise ValueError(f"teleop.type={kind} drives the simulated arm only (robot.type=sim_so101)")
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
