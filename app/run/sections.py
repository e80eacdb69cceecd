"""The process sections of the shared run config: `--learner.*` and `--actor.*`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.control.protocol import ControlConfig
from app.episode.record_config import ActorRecordConfig

# Files the learner writes into learner.output_dir that other processes read (launchers, the demo).
# {"host", "port", "pid", "run_id", "version"}, written when the server is up.
ENDPOINT_FILE = "learner.json"
METRICS_FILE = "metrics.jsonl"
# The checkpoint layout under <output_dir>/checkpoints/ (app/learner/checkpoint.py writes it): `LAST` names
# the newest finished checkpoint, `pretrained_model/` in one is a LeRobot policy folder (`pirl eval`).
LAST_FILE = "LAST"
PRETRAINED_DIR = "pretrained_model"
# Inside one checkpoint folder: the trainable state + optimiser + counters, and the JSON summary of it.
CHECKPOINT_STATE = "state.pt"
CHECKPOINT_META = "meta.json"
# Robot time (app/learner/robot_time.py): the running totals, and the policies saved at robot-minute marks
# (`learner.save_at_robot_minutes`) as <output_dir>/robot_minutes/<mark>/pretrained_model + meta.json.
ROBOT_TIME_FILE = "robot_time.json"
MARKS_DIR = "robot_minutes"
# `learner.preset` values: the policy's own `policy.rl` settings, or the robot-minute method on top of them.
PRESETS = ("", "robot_minute")


@dataclass
class ActorConfig:
    # Name of this actor in learner logs and episode stats; give each of several actors its own.
    actor_id: str = "actor0"
    # Episodes to run before exiting (0: until stopped with Ctrl-C, SIGTERM or the console's quit).
    episodes: int = 0
    # Seconds to wait for the learner's first weights before giving up (0: wait forever). The robot
    # holds while waiting: it never acts on weights the learner does not have.
    wait_for_weights_s: float = 0.0
    # Observation keys (robot units) that form `observation.state`, in order. Empty: every float feature
    # of the robot in its declared order (joints "<motor>.pos" then task keys such as "target.x").
    state_keys: list[str] = field(default_factory=list)
    # Robot camera keys fed to the policy as `observation.images.<key>` (floats 0..1). Empty: none.
    image_keys: list[str] = field(default_factory=list)
    # Seed of the chain noise (None: random per process).
    sample_seed: int | None = None
    # GRPO: this many consecutive episodes share one reset seed and one group id (1: no groups).
    group_size: int = 1
    # Sim only: the scripted expert stands in for a human operator when a takeover is requested
    # (console key or --actor.expert_takeover_prob) and the run config has no `teleop` section (a
    # configured teleoperator always takes precedence); False: takeovers need a configured teleoperator.
    expert: bool = True
    # Sim only: probability that an episode is driven by the expert (or the `teleop`) from a random chunk
    # onwards (tests and demos of the human-in-the-loop path without a person). 0 disables it.
    expert_takeover_prob: float = 0.0
    # Most payloads (episodes, stats) queued for the learner while it is unreachable; oldest dropped.
    max_outbox: int = 64
    # Console control channel (status out, commands in). None: no console (headless).
    control: ControlConfig | None = None
    # Print one progress line per this many episodes (0: silent).
    progress_every: int = 1
    # Record every episode this actor runs as a LeRobot dataset (--actor.record.root=DIR): each control
    # step, takeover steps flagged `intervention`, cameras as videos (app/episode/record_config.py).
    record: ActorRecordConfig = field(default_factory=ActorRecordConfig)
    # CPU threads for torch in this process (0: torch's default, one per core). Beside a learner on the
    # same small machine, 1 leaves it a core (see learner.torch_threads).
    torch_threads: int = 0

    def validate(self) -> None:
        if self.episodes < 0:
            raise ValueError(f"actor.episodes must be >= 0, got {self.episodes}")
        if self.group_size < 1:
            raise ValueError(f"actor.group_size must be >= 1, got {self.group_size}")
        if not 0.0 <= self.expert_takeover_prob <= 1.0:
            raise ValueError(f"actor.expert_takeover_prob must be in [0, 1], got {self.expert_takeover_prob}")
        if self.torch_threads < 0:
            raise ValueError(
                f"actor.torch_threads must be >= 0 (0 = torch's default), got {self.torch_threads}"
            )
        if not self.wait_for_weights_s >= 0 or self.wait_for_weights_s == float("inf"):  # NaN fails too
            raise ValueError(
                f"actor.wait_for_weights_s must be a number of seconds >= 0 (0 = forever), got {self.wait_for_weights_s}"
            )
        if self.max_outbox < 1:
            raise ValueError(f"actor.max_outbox must be >= 1, got {self.max_outbox}")
        if self.progress_every < 0:
            raise ValueError(f"actor.progress_every must be >= 0 (0 = silent), got {self.progress_every}")
        if not self.actor_id or any(c.isspace() for c in self.actor_id):
            raise ValueError(f"actor.actor_id must be a non-empty name without spaces, got {self.actor_id!r}")


# `learner.distributed` choices (app/learner/distributed.py; docs/runtime.md "Several GPUs").
DIST_BACKENDS = ("auto", "gloo", "nccl")
DIST_STRATEGIES = ("ddp", "zero1")
DIST_FROZEN_DTYPES = ("keep", "bfloat16")


@dataclass
class LearnerDistributedConfig:
    """Only read when the learner runs under torchrun with WORLD_SIZE > 1; a single process ignores it."""

    # torch.distributed backend: "auto" = nccl when the policy is on CUDA, gloo on CPU; or force one.
    backend: str = "auto"
    # "ddp": every rank holds the whole model and a whole AdamW, computes its share of every minibatch,
    # and the gradients are all-reduced (data parallel). "zero1": the same, but the AdamW state of the
    # trainable subset is sharded across the ranks (torch's ZeroRedundancyOptimizer: each rank keeps
    # ~1/N of it; app/rl/sharding.py) and the frozen base is replicated; checkpoints are the same either
    # way. "fsdp" (sharded weights) is refused: see app/rl/sharding.py for why zero1 instead.
    strategy: str = "ddp"
    # "bfloat16": every rank holds the frozen base's weight matrices in bf16 (half their memory; the
    # trainable subset stays fp32), each such layer computing in bf16 (app/rl/frozen_dtype.py says what
    # that changes). "keep": the dtype the policy config builds.
    frozen_dtype: str = "keep"
    # Seconds a collective (a batch broadcast, a gradient all-reduce) may wait for the other ranks before
    # the learner treats a rank as dead and stops. Rank 0 pings the others while it waits for rollouts.
    timeout_s: float = 600.0

    def validate(self) -> None:
        if self.backend not in DIST_BACKENDS:
            raise ValueError(
                f"learner.distributed.backend must be one of {DIST_BACKENDS}, got {self.backend!r}"
            )
        if self.strategy == "fsdp":
            raise ValueError(
                "learner.distributed.strategy=fsdp is not supported; use zero1 (ddp with the optimiser state "
                "sharded; docs/runtime.md, Several GPUs, says why not FSDP)"
            )
        if self.strategy not in DIST_STRATEGIES:
            raise ValueError(
                f"learner.distributed.strategy must be one of {DIST_STRATEGIES}, got {self.strategy!r}"
            )
        if self.frozen_dtype not in DIST_FROZEN_DTYPES:
            raise ValueError(
                f"learner.distributed.frozen_dtype must be one of {DIST_FROZEN_DTYPES}, got {self.frozen_dtype!r}"
            )
        if not self.timeout_s > 0 or self.timeout_s == float("inf"):
            raise ValueError(
                f"learner.distributed.timeout_s must be a number of seconds > 0, got {self.timeout_s}"
            )


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
    # Which checkpoints also get pretrained_model/ (the whole model as a LeRobot folder, for `pirl eval`
    # and LeRobot tools): "final" = only the one written at exit (max_updates, Ctrl-C, SIGTERM); "every"
    # = all of them (full model size each). Every checkpoint holds the trainable state, optimiser and
    # counters, which is all resume needs.
    save_pretrained: str = "final"
    # Episodes in the sliding window of charts/success_rate and charts/intervention_rate.
    stats_window: int = 20
    # Write TensorBoard event files to <output_dir>/tb.
    tensorboard: bool = True
    # (Weights & Biases is the run config's top-level `--wandb.*` section, LeRobot's WandBConfig:
    # --wandb.enable=true; see app/run/config.py.)
    # Print one progress line per update (headless); metrics also go to <output_dir>/metrics.jsonl.
    progress: bool = True
    # CPU threads for torch in this process (0: torch's default, one per core). When the learner shares
    # a small machine with the actor, give each its own core: with both spread over every core, the sim
    # demo's PPO updates took 10-24 s instead of 0.3-0.4 s on 2 cores (docs/runtime.md).
    torch_threads: int = 0
    # Push the final policy (the final checkpoint's pretrained_model/) to the Hugging Face hub at exit. For
    # runs started from --policy_path; with a policy section use LeRobot's --policy.push_to_hub=true
    # --policy.repo_id=owner/name (app/learner/hub.py). Checked at start: a missing repo id, offline or
    # not logged in is refused before any training.
    push_to_hub: bool = False
    # The hub repository (owner/name) to push to; created if missing.
    repo_id: str | None = None
    # Create the repository private (None: the hub's default, public).
    private: bool | None = None
    # -- the robot-minute method (docs/algorithm.md "Learning in robot minutes", docs/recipes.md) --
    # "" trains with the policy's own `policy.rl` settings as they are (on-policy PI-RL unless they say
    # otherwise). "robot_minute" applies app.rl.config_robot_minute.robot_minute_preset to them at start-up
    # (replay with decoupled PPO, critic pre-training, AWR on takeovers and successes, the demo anchor) and,
    # while algorithm.chunks_per_update is at its default (64), ROBOT_MINUTE_LEARNER_OVERRIDES (16).
    preset: str = ""
    # Dotted `policy.rl` overrides applied after the preset, e.g. {"anchor.coef": 0, "replay.utd": 1.0}:
    # the way to change PI-RL settings of a policy given as `policy_path` (ablations, tuning).
    rl_overrides: dict[str, Any] = field(default_factory=dict)
    # Demonstrations: a LeRobotDataset folder (what `pirl bc --dataset.root` reads) or a demo file written
    # by `pirl demo` (demos.pt). With the robot-minute preset they pre-train the critic once before the
    # first update (Monte-Carlo returns; `policy.rl.critic_pretrain.steps`) and form the anchor batch
    # (`policy.rl.anchor`, set again after a resume). Empty: neither.
    demos: str = ""
    # Save the policy (a LeRobot folder for `pirl eval`) when the robot time of the run passes each of these
    # marks, in robot-minutes: <output_dir>/robot_minutes/<mark>/. Robot time = the actors' episode and
    # drive-home control steps / safety.control_hz (from their episode stats).
    save_at_robot_minutes: list[float] = field(default_factory=list)
    # Stop (with the final checkpoint) once this much robot time was spent (0: no limit).
    max_robot_minutes: float = 0.0
    # Several GPUs (or CPU ranks) for one learner under `torchrun --nproc_per_node N pirl learner ...`:
    # backend, strategy, collective timeout (docs/runtime.md "Several GPUs"). Ignored by a single process.
    distributed: LearnerDistributedConfig = field(default_factory=LearnerDistributedConfig)

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(
                f"learner.preset must be one of {PRESETS} ('' = the policy's own settings), got {self.preset!r}"
            )
        if any(not m > 0 for m in self.save_at_robot_minutes):
            raise ValueError(
                f"learner.save_at_robot_minutes must all be > 0, got {self.save_at_robot_minutes}"
            )
        if not self.max_robot_minutes >= 0:
            raise ValueError(
                f"learner.max_robot_minutes must be >= 0 (0 = no limit), got {self.max_robot_minutes}"
            )
        if self.max_updates < 0:
            raise ValueError(f"learner.max_updates must be >= 0 (0 = until stopped), got {self.max_updates}")
        if self.save_every < 0:
            raise ValueError(f"learner.save_every must be >= 0 (0 = only at exit), got {self.save_every}")
        if self.torch_threads < 0:
            raise ValueError(
                f"learner.torch_threads must be >= 0 (0 = torch's default), got {self.torch_threads}"
            )
        if self.save_pretrained not in ("final", "every"):
            raise ValueError(
                f"learner.save_pretrained must be 'final' or 'every', got {self.save_pretrained!r}"
            )
        if self.keep_checkpoints < 1:
            raise ValueError(f"learner.keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.stats_window < 1:
            raise ValueError(f"learner.stats_window must be >= 1, got {self.stats_window}")
        self.distributed.validate()
