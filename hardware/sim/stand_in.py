"""The held-out twin: a fixed sim arm that plays "the real arm" and that training never sees.

Sim-to-real claims need an arm the policy was not trained on. Until a real SO-101 is on the desk, the
stand-in is that arm: one fixed `SimParams`, chosen once and kept here (changing it invalidates every
number measured against it), with values *outside* the default training distribution
(`RandomizationConfig()`) where a real arm is most likely to surprise a policy: calibration offsets of
3-4 degrees (training draws within +-2), two control periods of latency (training: 0-1), cameras moved
2-3 cm and turned 3-4 degrees (training: +-1 cm, +-2 deg), a cube or marker of a different colour
(training: +-0.15 per channel) and a brighter, tilted light. Select it with `--robot.variant=stand_in`;
the task itself is still drawn from the robot's seed, so episodes stay comparable with the nominal sim.
"""

from __future__ import annotations

from hardware.sim.randomization import SimParams

STAND_IN = SimParams(
    joint_offset={
        "shoulder_pan": 3.0,
        "shoulder_lift": -3.5,
        "elbow_flex": 4.0,
        "wrist_flex": -3.0,
        "wrist_roll": 2.5,
        "gripper": 3.0,
    },
    kp_scale=0.85,
    latency_steps=2,
    backlash_deg=0.5,
    damping_scale=1.2,
    friction_scale=1.6,
    object_size_scale=1.05,
    object_mass_scale=1.3,
    object_xy_jitter_m=(0.005, -0.004),
    object_yaw_jitter_deg=6.0,
    camera_pos_jitter_m={
        "front": (0.02, -0.025, 0.015),
        "top": (-0.02, 0.02, 0.025),
        "side": (0.025, 0.02, -0.015),
        "wrist": (0.003, -0.002, 0.002),
    },
    camera_rot_jitter_deg={
        "front": (3.0, -3.5, 2.0),
        "top": (-3.0, 3.0, 4.0),
        "side": (3.5, 2.0, -3.0),
        "wrist": (2.5, -2.5, 1.0),
    },
    camera_fovy_deg={"front": 5.0, "top": -4.0, "side": 4.0, "wrist": -5.0},
    light_scale=1.5,
    light_dir_deg=(25.0, -15.0),
    object_rgb_delta=(-0.25, 0.25, -0.2),
    table_rgb_delta=(0.15, 0.1, 0.05),
    period_jitter=0.08,
    period_seed=20260101,  # fixed: every stand-in episode has the same control-period jitter sequence
)

# `--robot.variant=` name -> fixed twin; "default" (none) is the nominal simulator.
VARIANTS: dict[str, SimParams | None] = {"default": None, "stand_in": STAND_IN}
