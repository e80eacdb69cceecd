"""Robot time on the learner: how many minutes of the robot (and of its operator) the run has used.

Every finished episode's stats message from an actor carries `steps` (control steps of the episode),
`reset_steps` (the drive home before it) and `human_steps` (steps a human drove), and `control_hz`
(app/actor/rollouts.py). Keys an older actor does not send count as 0 (`human_steps` then falls back to
`intervention_rate` x `steps`); without `control_hz` the run's `safety.control_hz` is used:

    robot_minutes = sum(steps + reset_steps) / control_hz / 60      human_minutes = sum(human_steps) / ... / 60

Robot time is a fact about the robot, not about the weights: a stopped or crashed learner does not give it
back. The totals are therefore written to <output_dir>/robot_time.json at every update (and at exit) and a
resumed learner continues from them, whatever checkpoint it resumes from.

`RobotClock.due_marks()` says which `learner.save_at_robot_minutes` marks were passed; `save_mark` writes
the policy at that moment to <output_dir>/robot_minutes/<mark>/ (`pretrained_model/` + `meta.json`), out of
the checkpoint rotation, so a benchmark can evaluate every mark afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.run.sections import MARKS_DIR, PRETRAINED_DIR, ROBOT_TIME_FILE


@dataclass
class RobotClock:
    """Running robot-time totals of a run, from the actors' episode stats."""

    fps: float  # default control rate (safety.control_hz) for stats that do not name theirs
    episodes: int = 0
    steps: int = 0  # episode control steps
    reset_steps: int = 0  # drive-home control steps
    human_steps: int = 0  # control steps a human drove
    robot_seconds: float = 0.0  # (steps + reset_steps) / control_hz, summed per episode
    human_seconds: float = 0.0
    takeovers: int = 0  # takeovers started (the stats' `interventions`)
    terminations: dict[str, int] = field(default_factory=dict)  # episodes per end reason (success, ...)
    marks_saved: list[float] = field(default_factory=list)

    def add(self, stats: Mapping[str, Any]) -> None:
        """One finished episode's stats message (`type: episode`)."""
        steps = _count(stats.get("steps", 0))
        resets = _count(stats.get("reset_steps", 0))
        if "human_steps" in stats:
            human = _count(stats.get("human_steps", 0))
        else:  # an actor before robot-time accounting: its intervention rate is per step
            human = round(_number(stats.get("intervention_rate", 0.0)) * steps)
        hz = _number(stats.get("control_hz", 0.0)) or self.fps
        self.episodes += 1
        self.steps += steps
        self.reset_steps += resets
        self.human_steps += human
        self.robot_seconds += (steps + resets) / hz
        self.human_seconds += human / hz
        self.takeovers += _count(stats.get("interventions", 0))
        reason = str(stats.get("termination", "unknown"))[:32]
        self.terminations[reason] = self.terminations.get(reason, 0) + 1

    @property
    def robot_minutes(self) -> float:
        return self.robot_seconds / 60.0

    @property
    def human_minutes(self) -> float:
        return self.human_seconds / 60.0

    def metrics(self) -> dict[str, float]:
        """`charts/robot_minutes`, `charts/human_minutes` and the step counts behind them."""
        return {
            "charts/robot_minutes": self.robot_minutes,
            "charts/human_minutes": self.human_minutes,
            "charts/robot_episode_steps": float(self.steps),
            "charts/robot_reset_steps": float(self.reset_steps),
            "charts/human_steps": float(self.human_steps),
            "charts/human_step_frac": self.human_steps / self.steps if self.steps else 0.0,
            "charts/takeovers": float(self.takeovers),
        }

    def due_marks(self, marks: list[float]) -> list[float]:
        """Marks passed and not saved yet, smallest first."""
        return [m for m in sorted(set(marks)) if m <= self.robot_minutes and m not in self.marks_saved]

    # -- persistence -----------------------------------------------------------------------------------
    def save(self, out: Path) -> None:
        """<out>/robot_time.json, atomically."""
        out.mkdir(parents=True, exist_ok=True)
        path = out / ROBOT_TIME_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        data = asdict(self) | {"robot_minutes": self.robot_minutes, "human_minutes": self.human_minutes}
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, out: Path, fps: float) -> RobotClock:
        """The totals a previous learner in `out` wrote (a fresh clock if there are none)."""
        path = out / ROBOT_TIME_FILE
        if not path.is_file():
            return cls(fps)
        try:
            data = json.loads(path.read_text())
            return cls(
                fps,
                episodes=int(data["episodes"]),
                steps=int(data["steps"]),
                reset_steps=int(data["reset_steps"]),
                human_steps=int(data["human_steps"]),
                robot_seconds=float(data["robot_seconds"]),
                human_seconds=float(data["human_seconds"]),
                takeovers=int(data.get("takeovers", 0)),
                terminations={str(k): int(v) for k, v in data.get("terminations", {}).items()},
                marks_saved=[float(m) for m in data.get("marks_saved", [])],
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is damaged ({err}); it records the run's robot time") from err


class RobotTime:
    """A learner's robot clock plus its robot-minute marks (`learner.save_at_robot_minutes`) and budget
    (`learner.max_robot_minutes`)."""

    def __init__(self, cfg: Any, out: Path) -> None:
        lc = cfg.learner
        fps = float(cfg.safety.control_hz)
        self.out = out
        self.clock = RobotClock.load(out, fps) if lc.resume else RobotClock(fps)
        self.marks = [float(m) for m in lc.save_at_robot_minutes]
        self.budget = float(lc.max_robot_minutes)

    def save(self) -> None:
        self.clock.save(self.out)

    def check(
        self, save_pretrained: Callable[[Path], None], say: Callable[[str], None], counters: dict[str, Any]
    ) -> bool:
        """Save the policy at every mark passed; True once the robot-minute budget is spent."""
        clock = self.clock
        for mark in clock.due_marks(self.marks):
            meta = {
                "robot_minutes": clock.robot_minutes,
                "human_minutes": clock.human_minutes,
                "episodes": clock.episodes,
                "env_steps": clock.steps,
                "reset_steps": clock.reset_steps,
                "human_steps": clock.human_steps,
                "time": time.time(),
                **counters,
            }
            path = save_mark(self.out, mark, save_pretrained, meta)
            clock.marks_saved.append(mark)
            self.save()
            say(f"learner: robot-minute mark {mark:g} ({clock.robot_minutes:.2f} robot min): {path}")
        if self.budget and clock.robot_minutes >= self.budget:
            say(f"learner: reached {self.budget:g} robot minutes ({counters.get('updates', 0)} updates)")
            return True
        return False


def mark_name(mark: float) -> str:
    """Folder name of a robot-minute mark: 5 -> "005", 7.5 -> "007.5" (sorts by time)."""
    whole, frac = divmod(float(mark), 1.0)
    return f"{int(whole):03d}" + (f"{frac:.3f}".rstrip("0")[1:] if frac else "")


def marks_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / MARKS_DIR


def save_mark(
    output_dir: Path, mark: float, save_pretrained: Callable[[Path], None], meta: dict[str, Any]
) -> Path:
    """Write the policy (`save_pretrained(folder)`) and `meta` to <output_dir>/robot_minutes/<mark>/,
    through a temporary folder renamed into place (a reader never sees half a mark)."""
    final = marks_dir(output_dir) / mark_name(mark)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_pretrained(tmp / PRETRAINED_DIR)
    (tmp / "meta.json").write_text(json.dumps({"mark_robot_minutes": float(mark), **meta}, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def saved_marks(output_dir: str | Path) -> list[tuple[float, Path, dict[str, Any]]]:
    """(mark, its pretrained_model folder, its meta) for every mark saved in a run, in time order."""
    root = marks_dir(output_dir)
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        meta_path = folder / "meta.json"
        if folder.name.startswith(".") or not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        out.append((float(meta["mark_robot_minutes"]), folder / PRETRAINED_DIR, meta))
    return sorted(out, key=lambda t: t[0])


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def _number(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0.0
    return v if v == v and 0 <= v < float("inf") else 0.0
