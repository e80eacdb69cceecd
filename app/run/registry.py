"""The one list of config choices a pirl config file may name, for every command that parses one.

draccus resolves `--robot.type=...`, `--teleop.type=...`, camera and policy types through registries that
are filled by importing the modules that define them. `pirl learner`, `pirl actor`, `pirl console`,
`pirl eval` and `pirl doctor` all call `register_choices()` so no command can drift from another (an eval
list of its own once lacked the `opencv` camera).
"""

from __future__ import annotations

import importlib

from app.rl.factory import register_policies

# Modules whose import registers config choices (policies "pirl_flow" and "pirl_vla", robot "sim_so101",
# LeRobot robots, and the camera types a real robot's `cameras` section names: "opencv", "intelrealsense").
REGISTRATIONS = (
    "hardware.sim",
    "lerobot.robots.so_follower",
    "lerobot.robots.koch_follower",
    "lerobot.cameras.opencv",
    "lerobot.cameras.realsense",
    # teleoperators for `teleop` (sim_expert comes with hardware.sim)
    "lerobot.teleoperators.so_leader",
    "lerobot.teleoperators.koch_leader",
    "lerobot.teleoperators.gamepad",
    "lerobot.teleoperators.keyboard",
)


def register_choices() -> None:
    """Import every module whose classes a run, eval or doctor config may name (idempotent)."""
    register_policies()
    for name in REGISTRATIONS:
        importlib.import_module(name)
