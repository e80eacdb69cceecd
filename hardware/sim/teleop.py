"""`--teleop.type=sim_expert`: the scripted expert behind LeRobot's Teleoperator interface.

In sim there is no leader arm; this teleoperator plays the human. It must see the follower to act, so it
is bound to a simulated robot (`bind(robot)`, done by `hardware.factory.make_teleoperator(cfg, robot=...)`)
and each `get_action()` reads the robot's present observation and answers with a robot-unit action, as
a person moving a leader arm would. Cameras are not re-rendered for it: it reads the same cached frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.teleoperators import Teleoperator, TeleoperatorConfig

from hardware import so101_model
from hardware.sim.expert import ExpertConfig, ScriptedExpert


@TeleoperatorConfig.register_subclass("sim_expert")
@dataclass(kw_only=True)
class SimExpertTeleopConfig(TeleoperatorConfig):
    task: str | None = None  # task to solve; None = the bound robot's task
    max_speed_deg_s: float = 120.0  # joint speed cap of the expert's commands


class SimExpertTeleop(Teleoperator):
    """A scripted "human" for a simulated follower; emits `<motor>.pos` goals like an SO-101 leader."""

    config_class = SimExpertTeleopConfig
    name = "sim_expert"

    def __init__(self, config: SimExpertTeleopConfig):
        super().__init__(config)
        self.config = config
        self.robot = None
        self.expert: ScriptedExpert | None = None
        self._connected = False

    def bind(self, robot) -> None:
        """Attach the simulated follower whose observations the expert acts on."""
        task = getattr(getattr(robot, "config", None), "task", None)
        if task is None or not hasattr(robot, "task_success"):
            raise TypeError(
                f"sim_expert teleop needs a simulated robot (robot.type=sim_so101), got {type(robot).__name__}"
            )
        wanted = self.config.task or task
        if wanted != task:
            raise ValueError(f"sim_expert is configured for task {wanted!r} but the robot runs {task!r}")
        fps = float(getattr(robot.config, "fps", 30))
        self.robot = robot
        self.expert = ScriptedExpert(
            ExpertConfig(task=wanted, fps=fps, max_speed_deg_s=self.config.max_speed_deg_s)
        )

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
        if self.robot is None:
            raise RuntimeError("sim_expert teleop is not bound to a robot; call bind(robot) before connect()")
        self.expert.reset()
        self._connected = True

    def calibrate(self) -> None:
        """No-op: nothing to calibrate."""

    def configure(self) -> None:
        """No-op."""

    def reset(self) -> None:
        """Forget the expert's phase and last command (call at episode start or at takeover)."""
        if self.expert is not None:
            self.expert.reset()

    def get_action(self) -> dict[str, float]:
        if not self._connected:
            raise RuntimeError("sim_expert teleop is not connected")
        return self.expert.act(self.robot.get_observation())

    def send_feedback(self, feedback: dict) -> None:
        """No-op: a scripted human needs no force feedback."""

    def disconnect(self) -> None:
        self._connected = False
