"""`pirl eval` options (draccus: `--episodes=50` or `--episodes 50`, nested as `--record.root=...`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.robots import RobotConfig
from lerobot.teleoperators import TeleoperatorConfig

from app.episode.record_config import RecordConfig
from app.run.config import LEADER_ARMS
from hardware.episodes import EpisodeConfig
from hardware.safety.config import SafetyConfig

# First sim reset seed: disjoint from the demo's demo/training seeds (app.demo.pipeline.EVAL_SEED0 is the
# same number, so `pirl eval` and the demo's own evaluation see the same scenes).
DEFAULT_EVAL_SEED = 1_000_000
# Teleoperators that can take over during an eval. gamepad / keyboard_ee carry their own "intervention"
# button and success/failure/re-record events; leader arms (as in training, see app/run/config.py) have no
# button: Enter in the eval's terminal hands the arm to the leader and back (app/eval/runner.py).
END_EFFECTOR_TELEOPS = ("gamepad", "keyboard_ee")
EVAL_TELEOP_TYPES = (*END_EFFECTOR_TELEOPS, *sorted(LEADER_ARMS))


@dataclass
class EvalConfig:
    # The policy to evaluate: a LeRobot pretrained folder (config.json + model.safetensors, e.g. the demo's
    # bc_policy/ or a final checkpoint's pretrained_model/), or a `pirl learner` checkpoint folder
    # <output_dir>/checkpoints/<version> (an intermediate one holds only the trainable state: the policy is
    # rebuilt from the run config in its meta.json); either may also be a Hugging Face hub id
    # `owner/name[@revision]` (taken from the hub cache; downloaded once when online). Required.
    policy: str = ""
    # A `pirl learner`/`pirl actor` run config (JSON, e.g. configs/so101_two_machines.json): its robot,
    # teleop, safety and episode sections (and actor.state_keys / actor.image_keys) are this eval's, so a
    # real arm's port, id, cameras, envelope and leader need not be typed again. Options given here
    # override them; the episode seed stays this eval's (scenes disjoint from training's); a sim run's
    # teleop is not taken (sim takeovers: --takeover_prob). Written `--config configs/<recipe>.json`.
    config: str | None = None
    # Episodes to run. The interval shrinks with 1/sqrt(N): at a true rate of 0.9, 50 episodes give about
    # [0.79, 0.96] and 200 about [0.85, 0.93].
    episodes: int = 50
    # Robot to evaluate on (a LeRobot robot config: sim_so101, so101_follower, koch_follower, ...).
    # Default: the simulated SO-101 reach task at 30 Hz.
    robot: RobotConfig | None = None
    # Real robot only: a teleoperator to take over with. gamepad / keyboard_ee (SO-10x arms): their
    # intervention button hands control to the human, their success/failure buttons end the episode with
    # that verdict. A leader arm (so100_leader / so101_leader / koch_leader, with `port`, `id` and
    # `use_degrees` like the follower, as in the run config): Enter in the terminal takes over and hands
    # back; the operator gives the verdict at the prompt.
    teleop: TeleoperatorConfig | None = None
    # Safety layer between every action and the robot (joint limits, rate limits, workspace box, e-stop).
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    # Episode time limit, reset pose and (sim) the first reset seed: episode i resets with seed + i.
    # The default 1.5 s is the demo's episode length (45 steps at 30 Hz).
    episode: EpisodeConfig = field(
        default_factory=lambda: EpisodeConfig(time_limit_s=1.5, seed=DEFAULT_EVAL_SEED)
    )
    # Observation keys forming observation.state (empty: joints then the task's extra keys, like the actor).
    state_keys: list[str] = field(default_factory=list)
    # Cameras fed to the policy (and recorded) as observation.images.<cam>. Empty: the cameras the policy
    # was built with (its observation.images.* input features).
    image_keys: list[str] = field(default_factory=list)
    # Seed of the initial chain noise x_0 (the ODE is deterministic given x_0) and of the sim takeover
    # draws. Episode i uses its own stream derived from (sample_seed, i), so the first k episodes of a
    # longer run are the same as a k-episode run.
    sample_seed: int = 0
    # Nominal coverage of the reported interval (Wilson score).
    confidence: float = 0.95
    # Sim only: probability that the scripted expert takes an episode over from a random chunk on (exercises
    # and records interventions without a person).
    takeover_prob: float = 0.0
    # Count episodes with a takeover in the success rate. False: they are reported apart, because a human
    # finished them, not the policy.
    count_intervened: bool = False
    # Sim only, pirl policies: after the deterministic episodes, run each of their scenes this many more
    # times with the stochastic training sampler (the exploration PI-RL learns from) and report how many
    # scenes never, sometimes and always succeed. PI-RL's sparse reward only has a gradient on the
    # "sometimes" scenes; "never" ones improve only as their neighbours do (docs/eval.md). 0: off.
    explore_samples: int = 0
    # Record every step to a LeRobotDataset (see app/episode/recorder.py).
    record: RecordConfig = field(default_factory=RecordConfig)
    # Write the result (rate, interval, per-episode records, config) as JSON here. None: print only.
    output: str | None = None
    # Write a picture of the result here (a .png): a bar per evaluated scene with its success and Wilson
    # interval (with --explore_samples: the stochastic replays' rate, the deterministic outcome marked
    # above), takeovers hatched, the overall rate and interval as a band. None: no picture. A plot that
    # cannot be written is one warning line, never a failed evaluation.
    plot: str | None = None
    # Print one line per episode.
    progress: bool = True

    def validate(self) -> None:
        """Checks that need no robot and no policy weights; the error says what to pass instead."""
        if not self.policy:
            raise ValueError(
                "give the checkpoint to evaluate: --policy PATH (a LeRobot pretrained folder, a pirl learner "
                "checkpoint or a Hugging Face hub id owner/name)"
            )
        from app.eval.policy import EvalError, policy_folder_problem, resolve_policy

        try:
            path = resolve_policy(self.policy)  # a hub id: its snapshot in the hub cache
        except EvalError as exc:
            raise ValueError(str(exc)) from exc
        if not path.exists():
            raise ValueError(f"--policy {self.policy}: no such folder")

        problem = policy_folder_problem(path)
        if problem:
            raise ValueError(f"--policy {self.policy} {problem}")
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"--confidence must be in (0, 1), got {self.confidence}")
        if not 0 <= self.takeover_prob <= 1:
            raise ValueError(f"--takeover_prob must be in [0, 1], got {self.takeover_prob}")
        is_sim = self.robot is None or self.robot.type.startswith("sim_")
        if self.explore_samples < 0:
            raise ValueError(f"--explore_samples must be >= 0, got {self.explore_samples}")
        if self.explore_samples and not is_sim:
            raise ValueError(
                "--explore_samples replays each scene several times, which only a simulator can do"
            )
        if self.explore_samples and self.takeover_prob > 0:
            raise ValueError("--explore_samples measures the policy alone; drop --takeover_prob")
        if self.takeover_prob > 0 and not is_sim:
            raise ValueError(
                "--takeover_prob drives the scripted sim expert; on a real robot take over with --teleop"
            )
        if self.teleop is not None:
            if is_sim:
                raise ValueError(
                    "--teleop is for real robots; in sim use --takeover_prob for scripted takeovers"
                )
            if self.teleop.type not in EVAL_TELEOP_TYPES:
                raise ValueError(
                    f"--teleop.type={self.teleop.type} cannot take over in pirl eval; use one of "
                    f"{', '.join(EVAL_TELEOP_TYPES)}"
                )
            if self.robot.type == "koch_follower" and self.teleop.type in END_EFFECTOR_TELEOPS:
                raise ValueError(
                    "--teleop maps gamepad/keyboard end-effector moves with the SO-10x arm model; a Koch "
                    "follower has none: take over with its leader arm (--teleop.type=koch_leader)"
                )
            from app.run.config import _check_teleop

            _check_teleop(self.teleop, self.robot)  # a leader's port, id and units, as for training
        if self.plot is not None and not self.plot.lower().endswith(".png"):
            raise ValueError(f"--plot writes a PNG: give a path ending in .png, got {self.plot!r}")
        if self.record.root is not None and not self.record.repo_id.count("/") == 1:
            raise ValueError(f"--record.repo_id must look like 'owner/name', got {self.record.repo_id!r}")
        self.episode.validate()
