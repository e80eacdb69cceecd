"""What the simulated teleoperators (`sim_expert`, `sim_operator`) share behind LeRobot's Teleoperator.

Both stand in for a person with a leader arm beside a simulated SO-101: they have nothing to calibrate or
configure, emit SO-101 `<motor>.pos` goals through the same `ScriptedExpert` (their "hands"), take no
force feedback, and must be bound to the simulated follower (`bind(robot)`, done by
`hardware.factory.make_teleoperator(cfg, robot=...)`) before `connect()`. That plumbing lives here once;
each subclass keeps only what it does differently: what it binds to and when it acts.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from lerobot.teleoperators import Teleoperator, TeleoperatorConfig

from hardware import so101_model
from hardware.sim.expert import ExpertConfig, ScriptedExpert


@dataclass(kw_only=True)
class SimTeleopConfig(TeleoperatorConfig):
    """Options every simulated teleoperator has. Not a choice itself: each subclass registers its type."""

    task: str | None = None  # task to solve; None = the bound robot's task
    max_speed_deg_s: float = 120.0  # joint speed cap of its hands (the scripted expert's commands)


def bound_task(robot: Any, configured: str | None, who: str) -> tuple[str, float]:
    """(task, control rate) of the simulated follower a teleop binds to, or a one-line error.

    Reads only `robot.config.task` and `robot.config.fps` (the simulated operator may see nothing else).
    """
    robot_config = getattr(robot, "config", None)
    task = getattr(robot_config, "task", None)
    if task is None:
        raise TypeError(
            f"{who} teleop needs a simulated robot (robot.type=sim_so101), got {type(robot).__name__}"
        )
    wanted = configured or task
    if wanted != task:
        raise ValueError(f"{who} is configured for task {wanted!r} but the robot runs {task!r}")
    return wanted, float(getattr(robot_config, "fps", 30))


class SimTeleop(Teleoperator):
    """The Teleoperator plumbing of a simulated teleop; subclasses set `config_class` and `name` and
    implement `bind`, `is_bound`, `reset` and `get_action`."""

    config: SimTeleopConfig

    def __init__(self, config: SimTeleopConfig):
        super().__init__(config)
        self.config = config
        self.expert: ScriptedExpert | None = None  # its hands, made by bind()
        self._connected = False

    def make_expert(self, task: str, fps: float) -> ScriptedExpert:
        """The scripted expert that acts for this teleop on `task` at `fps`."""
        self.expert = ScriptedExpert(
            ExpertConfig(task=task, fps=fps, max_speed_deg_s=self.config.max_speed_deg_s)
        )
        return self.expert

    @abc.abstractmethod
    def bind(self, robot: Any) -> None:
        """Attach the simulated follower it acts on (or looks at)."""

    @abc.abstractmethod
    def is_bound(self) -> bool:
        """True once `bind(...)` gave it what it needs to act."""

    @abc.abstractmethod
    def reset(self) -> None:
        """A new episode (or a takeover): forget the plan made so far."""

    def check_connected(self) -> None:
        if not self._connected:
            raise RuntimeError(f"{self.name} teleop is not connected")

    @property
    def action_features(self) -> dict[str, type]:
        return {f"{m}.pos": float for m in so101_model.MOTORS}

    @property
    def feedback_features(self) -> dict:
        return {}

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def is_calibrated(self) -> bool:
        return True

    def connect(self, calibrate: bool = True) -> None:
        """Start a fresh episode (`reset()`); needs `bind(...)` first."""
        if not self.is_bound():
            raise RuntimeError(
                f"{self.name} teleop is not bound to a robot; call bind(robot) before connect()"
            )
        self.reset()
        self._connected = True

    def calibrate(self) -> None:
        """No-op: nothing to calibrate."""

    def configure(self) -> None:
        """No-op."""

    def send_feedback(self, feedback: dict) -> None:
        """No-op: a simulated human needs no force feedback."""

    def disconnect(self) -> None:
        self._connected = False
