"""The SAC / HIL-SERL route: LeRobot's own learner and actor, run unchanged through `pirl`.

`pirl learner --algorithm.type=sac ...` (or a config whose `"algorithm": {"type": "sac"}`) and the
matching `pirl actor` call `lerobot.rl.learner.train_cli` / `lerobot.rl.actor.actor_cli` with the same
arguments LeRobot takes, after three fixes that do not touch LeRobot's code:

- `"dataset": null` (no offline demos, the normal online-RL case) crashes LeRobot's
  `TrainPipelineConfig.validate` on `self.dataset.repo_id` (LeRobot issue #1546). We wrap
  `TrainRLServerPipelineConfig.validate` so it validates with a placeholder dataset and restores None;
  LeRobot's learner already treats `cfg.dataset is None` as "online only".
- The actor validates the same config as the learner and refuses an `output_dir` that exists (the
  learner made it). Unless `--output_dir` is given, the actor gets `<output_dir>/actor-<time>`.
- `env.processor.reset.fixed_reset_joint_positions` is typed `Any | None`, which draccus cannot encode,
  so any config with a `reset` section crashes the learner at `cfg.to_dict()` (and at every checkpoint).
  We retype that one field as `list[float] | None` (what the reset code actually uses).
- `--config` is accepted as an alias of LeRobot's `--config_path`.

Everything else (SAC, replay buffer, its gRPC service with pickled interactions) is LeRobot's as is;
the robustness and no-pickle guarantees of the PI-RL route do not apply to this route.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
from pathlib import Path

_PLACEHOLDER_REPO = "pirl/online-only-placeholder"


def requested_algorithm(argv: list[str], default: str = "pirl") -> str:
    """`--algorithm.type` from the command line, else from the config file, else `default`."""
    for i, arg in enumerate(argv):
        if arg.startswith("--algorithm.type="):
            return arg.split("=", 1)[1]
        if arg == "--algorithm.type" and i + 1 < len(argv):
            return argv[i + 1]
    path = config_path(argv)
    if path is not None:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError):
            return default  # the command's own parser reports a bad file with full context
        algorithm = data.get("algorithm") if isinstance(data, dict) else None
        if isinstance(algorithm, dict) and isinstance(algorithm.get("type"), str):
            return algorithm["type"]
    return default


def config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        for flag in ("--config", "--config_path"):
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
            if arg == flag and i + 1 < len(argv):
                return argv[i + 1]
    return None


def normalise_argv(argv: list[str]) -> list[str]:
    """`--config X` / `--config=X` -> `--config_path=X` (LeRobot's spelling); other args unchanged."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--config" and i + 1 < len(argv):
            out.append(f"--config_path={argv[i + 1]}")
            skip = True
        elif arg.startswith("--config="):
            out.append("--config_path=" + arg.split("=", 1)[1])
        else:
            out.append(arg)
    return out


def install_dataset_null_workaround() -> None:
    """Let `TrainRLServerPipelineConfig.validate` accept `dataset: null` (LeRobot issue #1546)."""
    from lerobot.configs.default import DatasetConfig
    from lerobot.rl.train_rl import TrainRLServerPipelineConfig

    original = TrainRLServerPipelineConfig.validate
    if getattr(original, "_pirl_dataset_null_fix", False):
        return

    @functools.wraps(original)
    def validate(self) -> None:
        if self.dataset is not None:
            return original(self)
        self.dataset = DatasetConfig(repo_id=_PLACEHOLDER_REPO)
        try:
            return original(self)
        finally:
            self.dataset = None

    validate._pirl_dataset_null_fix = True  # type: ignore[attr-defined]
    TrainRLServerPipelineConfig.validate = validate  # type: ignore[method-assign]


def install_reset_pose_encoding_workaround() -> None:
    """Make `ResetConfig.fixed_reset_joint_positions` encodable by draccus (it is a joint list)."""
    from lerobot.envs.configs import ResetConfig

    hint = "list[float] | None"
    ResetConfig.__annotations__["fixed_reset_joint_positions"] = hint
    ResetConfig.__dataclass_fields__["fixed_reset_joint_positions"].type = hint


def _with_actor_output_dir(argv: list[str]) -> list[str]:
    if any(a.startswith("--output_dir") for a in argv):
        return argv
    base = None
    path = config_path(argv)
    if path is not None:
        try:
            base = json.loads(Path(path).read_text()).get("output_dir")
        except (OSError, json.JSONDecodeError, AttributeError):
            base = None
    stamp = f"actor-{dt.datetime.now():%Y%m%d-%H%M%S-%f}"
    out = Path(base) / stamp if base else Path("outputs/actor") / stamp
    return [*argv, f"--output_dir={out}"]


def _run_lerobot(entry, prog: str, argv: list[str]) -> int:
    install_dataset_null_workaround()
    install_reset_pose_encoding_workaround()
    saved = sys.argv
    sys.argv = [prog, *argv]
    try:
        entry()
    finally:
        sys.argv = saved
    return 0


def run_learner(argv: list[str]) -> int:
    """LeRobot's SAC learner (`python -m lerobot.rl.learner`), unchanged, with the fixes above."""
    from lerobot.rl.learner import train_cli

    return _run_lerobot(train_cli, "pirl learner", normalise_argv(argv))


def run_actor(argv: list[str]) -> int:
    """LeRobot's SAC actor (`python -m lerobot.rl.actor`), unchanged, with the fixes above."""
    from lerobot.rl.actor import actor_cli

    return _run_lerobot(actor_cli, "pirl actor", _with_actor_output_dir(normalise_argv(argv)))
