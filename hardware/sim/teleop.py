"""`--teleop.type=sim_expert`: the scripted expert behind LeRobot's Teleoperator interface.

In sim there is no leader arm; this teleoperator plays the human. It must see the follower to act, so it
is bound to a simulated robot (`bind(robot)`, done by `hardware.factory.make_teleoperator(cfg, robot=...)`)
and each `get_action()` reads the robot's present observation and answers with a robot-unit action, as
a person moving a leader arm would. Cameras are not re-rendered for it: it reads the same cached frame.
The Teleoperator plumbing it shares with `sim_operator` is in hardware/sim/teleop_base.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.teleoperators import TeleoperatorConfig

from hardware.sim.teleop_base import SimTeleop, SimTeleopConfig, bound_task


@TeleoperatorConfig.register_subclass("sim_expert")
@dataclass(kw_only=True)
class SimExpertTeleopConfig(SimTeleopConfig):
    """`task` and `max_speed_deg_s` (SimTeleopConfig) are all it has."""


class SimExpertTeleop(SimTeleop):
    """A scripted "human" for a simulated follower; emits `<motor>.pos` goals like an SO-101 leader."""

    config_class = SimExpertTeleopConfig
    name = "sim_expert"

    def __init__(self, config: SimExpertTeleopConfig):
        super().__init__(config)
        self.robot = None

    def bind(self, robot) -> None:
        """Attach the simulated follower whose observations the expert acts on."""
        if not hasattr(robot, "task_success"):
            raise TypeError(
                f"sim_expert teleop needs a simulated robot (robot.type=sim_so101), got {type(robot).__name__}"
            )
        task, fps = bound_task(robot, self.config.task, self.name)
        self.robot = robot
        self.make_expert(task, fps)

    def is_bound(self) -> bool:
        return self.robot is not None

    def reset(self) -> None:
        """Forget the expert's phase and last command (call at episode start or at takeover)."""
        if self.expert is not None:
            self.expert.reset()

    def get_action(self) -> dict[str, float]:
        self.check_connected()
        return self.expert.act(self.robot.get_observation())
