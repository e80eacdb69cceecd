"""Simulated SO-101 (MuJoCo) behind LeRobot's Robot/Teleoperator interfaces.

Importing this package registers `--robot.type=sim_so101`, camera type `sim_mujoco` and teleoperator types
`sim_expert` and `sim_operator` with LeRobot's draccus registries. The randomized twin
(`RandomizationConfig`, `--robot.randomize.*`) and the held-out stand-in arm (`STAND_IN`,
`--robot.variant=stand_in`) are docs/simulation.md, "Randomized twin".
"""

# ruff: noqa: E402

import os

# Headless machines (no DISPLAY) render through EGL; MuJoCo reads this once, when it is first imported.
if not os.environ.get("MUJOCO_GL") and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

from hardware.sim.cameras import SimCamera, SimCameraConfig
from hardware.sim.operator import SimOperatorTeleop, SimOperatorTeleopConfig
from hardware.sim.protocol import SimTaskRobot
from hardware.sim.randomization import RandomizationConfig, SimParams
from hardware.sim.so101_follower import SimSO101Follower, SimSO101FollowerConfig
from hardware.sim.stand_in import STAND_IN
from hardware.sim.teleop import SimExpertTeleop, SimExpertTeleopConfig

__all__ = [
    "SimCamera",
    "SimCameraConfig",
    "SimSO101Follower",
    "SimSO101FollowerConfig",
    "SimExpertTeleop",
    "SimExpertTeleopConfig",
    "SimOperatorTeleop",
    "SimOperatorTeleopConfig",
    "SimTaskRobot",
    "RandomizationConfig",
    "SimParams",
    "STAND_IN",
]
