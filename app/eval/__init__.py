"""`pirl eval`: success rate of a checkpoint, with a confidence interval, in sim or on a real arm.

    pirl eval --policy outputs/demo/bc_policy --episodes 100
    pirl eval --policy PATH --episodes 20 --robot.type=so101_follower --robot.port=/dev/ttyACM0 \
        --robot.id=follower --episode.home_pose='{...}' --record.root=outputs/eval_ds
    pirl eval --policy owner/name --config configs/so101_two_machines.json --episodes 20

`--policy` may be a Hugging Face hub id (resolved through the hub cache, app/rl/hub.py). `--config` takes
the robot, teleop, safety and episode sections of a run config; options given on the line override them.

Evaluation uses deterministic ODE sampling and the same path to the motors as training (policy ->
Takeover -> RobotGuard -> robot, EpisodeManager); see app/eval/runner.py. The result is the Wilson score
interval (app/eval/stats.py); `--output` writes it as JSON; `--record.root` writes every step to a
LeRobotDataset (app/episode/recorder.py). Options: app/eval/config.py; guide: docs/eval.md.
"""

from __future__ import annotations

import logging
import sys

from app.episode.recorder import EpisodeRecorder, RecordConfig
from app.eval.config import EvalConfig
from app.eval.runner import EvalError, EvalResult, run_eval
from app.eval.stats import SuccessRate, wilson_interval

# The config choices `pirl eval` parses (policy, robot and camera types, teleoperators) come from the one
# list every command shares.
from app.run.registry import register_choices

__all__ = [
    "EpisodeRecorder",
    "EvalConfig",
    "EvalError",
    "EvalResult",
    "RecordConfig",
    "SuccessRate",
    "main",
    "parse_config",
    "run_eval",
    "wilson_interval",
]


def normalize_argv(argv: list[str]) -> list[str]:
    """`--policy PATH --episodes N` (space-separated, as the README writes them) -> `--policy=PATH ...`."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and "=" not in a and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
        else:
            out.append(a)
            i += 1
    return out


def parse_config(argv: list[str]) -> EvalConfig:
    """Options -> EvalConfig; a bad option or value raises a one-line ConfigError (app/run/errors.py).

    With `--config RUN.json` the run config's robot, teleop, safety and episode sections (and
    actor.state_keys / image_keys) are the defaults and the options on the line override them
    (`run_config_sections`)."""
    import json
    import tempfile
    from pathlib import Path

    from app.run.errors import parse_config as parse_checked

    register_choices()
    args = normalize_argv(argv)
    run_file = next((a.split("=", 1)[1] for a in args if a.startswith(("--config=", "--config_path="))), None)
    if run_file is None:
        return parse_checked(EvalConfig, args, command="pirl eval")
    args = [a for a in args if not a.startswith(("--config=", "--config_path="))]
    sections = run_config_sections(run_file, args)
    with tempfile.TemporaryDirectory(prefix="pirl_eval_") as tmp:
        merged = Path(tmp) / f"{Path(run_file).stem} (eval sections).json"
        merged.write_text(json.dumps(sections))
        cfg = parse_checked(EvalConfig, args, merged, command="pirl eval")
    cfg.config = run_file
    return cfg


def run_config_sections(run_file: str, args: list[str]) -> dict:
    """The eval options a run config supplies (EvalConfig.config): its robot, teleop, safety and episode
    sections as written, the episode seed replaced by the eval's (scenes disjoint from training's), and
    actor.state_keys / image_keys when set. A section whose `type` the options change is not taken (a new
    type starts from its defaults), nor is the teleop of a sim run or of a robot the options replaced."""
    from app.eval.config import DEFAULT_EVAL_SEED
    from app.run.errors import read_config_file
    from app.run.parse import RECIPES_HINT, parse_run_config

    parse_run_config(["--config", run_file], command="pirl eval")  # the whole file checked, errors name it
    raw = read_config_file(run_file, RECIPES_HINT)

    def retyped(section: str) -> bool:
        given = next((a.split("=", 1)[1] for a in args if a.startswith(f"--{section}.type=")), None)
        return given is not None and given != (raw.get(section) or {}).get("type")

    out: dict = {}
    robot = raw.get("robot")
    if isinstance(robot, dict) and not retyped("robot"):
        out["robot"] = robot
        teleop = raw.get("teleop")
        if (
            isinstance(teleop, dict)
            and not str(robot.get("type", "")).startswith("sim_")
            and not retyped("teleop")
        ):
            out["teleop"] = teleop
    if isinstance(raw.get("safety"), dict):
        out["safety"] = raw["safety"]
    out["episode"] = {**(raw.get("episode") or {}), "seed": DEFAULT_EVAL_SEED}
    actor = raw.get("actor") or {}
    for key in ("state_keys", "image_keys"):
        if actor.get(key):
            out[key] = actor[key]
    return out


HELP_OPTIONS = (
    (
        "--policy PATH",
        "a LeRobot pretrained folder, a pirl learner checkpoint or a hub id owner/name (required)",
    ),
    ("--config RUN.json", "take robot, teleop, safety and episode from a run config (options override)"),
    ("--episodes N", "episodes to run (default 50)"),
    ("--robot.type=T --robot.port=... --robot.id=ID", "a real arm (default: the simulated SO-101)"),
    ("--teleop.type=gamepad|keyboard_ee|<leader>", "take over on a real arm (a leader arm: Enter toggles)"),
    ("--episode.time_limit_s=S", "episode length"),
    ("--record.root=DIR", "record every step as a LeRobotDataset"),
    ("--output=FILE", "write the result as JSON"),
    ("--explore_samples=N", "sim: also measure the stochastic sampler's exploration"),
    ("--plot=FILE.png", "write the success per scene as a PNG"),
)


def short_help() -> str:
    lines = ["usage: pirl eval --policy PATH [--episodes N] [--section.option=VALUE ...]", ""]
    lines += [ln.rstrip() for ln in (__doc__ or "").strip().splitlines()]
    lines += ["", "Most used options:"]
    lines += [
        f"  {opt}\n      {what}" if len(opt) > 40 else f"  {opt:<40} {what}" for opt, what in HELP_OPTIONS
    ]
    lines += ["", "Every option (long: all robot and teleoperator types): pirl eval --help-all"]
    return "\n".join(lines)


def format_result(cfg: EvalConfig, result: EvalResult) -> list[str]:
    """The lines `pirl eval` ends with."""
    lines = [f"eval: success {result.success}"]
    if result.intervened and not cfg.count_intervened:
        lines[0] += f"; {result.intervened} episodes with a takeover not counted"
    lines.append(
        f"eval: {len(result.episodes)} episodes, {result.env_steps} steps in {result.wall_s:.1f} s "
        f"({result.episodes_per_s:.2f} episodes/s)"
    )
    x = result.exploration
    if x is not None:
        lines.append(
            f"eval: exploration ({x.samples} stochastic rollouts per scene, {100 * x.rate:.1f}% success): "
            f"{x.never} scenes never succeed, {x.sometimes} sometimes, {x.always} always"
        )
    if result.stopped:
        lines.append(f"eval: stopped early: {result.stopped}")
    if result.dataset:
        lines.append(
            f"eval: recorded {len(result.episodes)} episodes as a LeRobotDataset at {result.dataset}"
        )
    if cfg.output:
        lines.append(f"eval: result written to {cfg.output}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 all episodes ran, 1 stopped early (partial result printed), 2 bad options."""
    from draccus.utils import DraccusException

    from app.run.process import error_line, print_full_help
    from hardware.factory import CalibrationMissingError, DeviceOpenError

    argv = list(argv or [])
    if "--help-all" in argv:
        register_choices()
        print_full_help(EvalConfig, "pirl eval", __doc__ or "")
        return 0
    if any(a in ("-h", "--help") for a in argv):
        print(short_help())
        return 0
    try:  # before logging is set up: importing the robot modules logs lines that would bury the error
        cfg = parse_config(argv)
    except (ValueError, FileNotFoundError) as exc:  # ConfigError: one line naming the option
        print(f"pirl eval: {error_line(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    operator_errors = (ValueError, EvalError, FileExistsError, CalibrationMissingError, DeviceOpenError)
    try:
        result = run_eval(cfg)
    except (*operator_errors, DraccusException) as exc:  # draccus: e.g. a corrupt calibration file
        print(f"pirl eval: {error_line(exc)}", file=sys.stderr)
        return 2
    for line in format_result(cfg, result):
        print(line)
    return 1 if result.stopped else 0
