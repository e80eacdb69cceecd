"""A fixed, fully populated ActorStatus: what the snapshot tests render (no clocks, no randomness)."""

from __future__ import annotations

import numpy as np

from app.control.protocol import (
    ActorStatus,
    CameraThumbnail,
    EpisodeRecord,
    EpisodeStatus,
    JointStatus,
    LearnerLinkStatus,
    LogLine,
    LoopStatus,
    RecordStatus,
)


def sample_frame(height: int = 48, width: int = 64) -> np.ndarray:
    """A table (grey-brown), a red cube and a blue sky gradient: easy to recognise in a snapshot."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = 40 + (y * 100 // height)
    img[..., 1] = 60 + (y * 80 // height)
    img[..., 2] = 200 - (y * 80 // height)
    table = y > height // 2
    img[table] = (150, 120, 90)
    cube = (abs(x - width // 3) < width // 10) & (abs(y - 2 * height // 3) < height // 8)
    img[cube] = (220, 30, 30)
    return img


def sample_status() -> ActorStatus:
    joints = [
        JointStatus("shoulder_pan", 12.4, 15.0, -108.0, 108.0),
        JointStatus("shoulder_lift", -96.0, -99.5, -98.0, 98.0, clamped=True, clamp_count=3),
        JointStatus("elbow_flex", 45.1, 44.0, -94.0, 94.0),
        JointStatus("wrist_flex", 70.2, 71.0, -93.0, 93.0),
        JointStatus("wrist_roll", -3.0, None, -155.0, 155.0),
        JointStatus("gripper", 30.0, 30.0, 0.0, 100.0),
    ]
    history = [
        EpisodeRecord(
            number=i,
            success=(i % 3 != 0) if i > 8 else (i % 4 == 0),
            episode_return=round(-2.0 + 0.25 * i + (0.5 if i % 2 else 0.0), 2),
            interventions=max(0, 3 - i // 6),
            intervention_rate=max(0.0, 0.6 - 0.03 * i),
            steps=300,
        )
        for i in range(1, 24)
    ]
    return ActorStatus(
        robot="sim_so101",
        estop=False,
        holding=False,
        joints=joints,
        safety_events={"joint_limit": 3},
        episode=EpisodeStatus(
            number=24,
            state="running",
            time_left_s=12.5,
            length_s=30.0,
            reward=1.75,
            outcome=None,
            intervention=True,
            interventions=2,
            takeover_source="leader arm",
        ),
        learner=LearnerLinkStatus(
            connected=True,
            address="127.0.0.1:50051",
            policy_version=17,
            seconds_since_weights=4.2,
            queue_depth=1,
            rtt_ms=3.0,
        ),
        loop=LoopStatus(
            hz=29.7,
            target_hz=30.0,
            inference_ms=18.4,
            dropped_steps=2,
            steps=6912,
            robot_minutes=42.5,
            human_minutes=6.3,
        ),
        record=RecordStatus(root="outputs/run/episodes", episodes=23),
        history=history,
        log=[
            LogLine(1, "INFO", "episode 23 done: success, return +4.25"),
            LogLine(2, "INFO", "weights v17 loaded between chunks"),
            LogLine(3, "WARNING", "joint_limit clamp on shoulder_lift"),
            LogLine(4, "INFO", "takeover by leader arm"),
        ],
        cameras={"front": CameraThumbnail.from_array(sample_frame())},
    )
