"""How fast the simulated SO-101 runs on this machine: `python -m hardware.sim.speed`.

One "step" is what the actor does per control period in lockstep mode: `send_action` (which advances
physics by one period, 17 x 2 ms at 30 Hz) and `get_observation` (joints, task state and, when configured,
camera frames), optionally through the RobotGuard's safety layer as in a real run. The arm follows a
scripted sweep so the contact solver and the renderer see a moving scene. Prints steps/s, the real-time
factor (simulated seconds per wall second) and the 1-minute load average, since on a shared machine the
numbers mean little without it.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

from hardware import so101_model


def measure(
    task: str, camera: int, steps: int, guarded: bool, fps: int = 30, camera_name: str = "front"
) -> dict[str, float]:
    """Time `steps` lockstep control periods; `camera` = 0 for state-only, else a camera x camera frame."""
    from hardware.guard import RobotGuard
    from hardware.sim import SimCameraConfig, SimSO101Follower, SimSO101FollowerConfig

    cameras = {}
    if camera > 0:
        cameras = {camera_name: SimCameraConfig(camera=camera_name, width=camera, height=camera, fps=fps)}
    cfg = SimSO101FollowerConfig(
        task=task, fps=fps, cameras=cameras, id="speed", calibration_dir=Path(tempfile.mkdtemp())
    )
    robot = SimSO101Follower(cfg)
    guard = RobotGuard(robot).connect() if guarded else None
    if guard is None:
        robot.connect()
    try:
        home = so101_model.as_action(so101_model.HOME_POSITION)
        act = guard.step if guard is not None else robot.send_action
        for _ in range(5):  # warm-up: first render allocates the GL buffers
            act(home)
            robot.get_observation()
        t_sim = robot.sim_time_s
        t0 = time.perf_counter()
        for i in range(steps):
            phase = 2 * math.pi * i / 90  # a 3 s sweep of pan, lift and gripper
            target = dict(home)
            target["shoulder_pan.pos"] += 30.0 * math.sin(phase)
            target["shoulder_lift.pos"] += 15.0 * math.sin(2 * phase)
            target["gripper.pos"] = 30.0 + 25.0 * math.sin(phase)
            act(target)
            obs = robot.get_observation()
        wall = time.perf_counter() - t0
        assert camera == 0 or obs[camera_name].shape == (camera, camera, 3)
        return {"steps_per_s": steps / wall, "realtime_factor": (robot.sim_time_s - t_sim) / wall}
    finally:
        if guard is not None:
            guard.close()
        elif robot.is_connected:
            robot.disconnect()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="reach", help="reach, pick_cube or none")
    p.add_argument("--steps", type=int, default=300, help="control periods to time per configuration")
    p.add_argument("--camera", type=int, nargs="*", default=[0, 128], help="square camera sizes; 0 = none")
    p.add_argument("--guard", action="store_true", help="also time the same loop through the RobotGuard")
    args = p.parse_args(argv)
    if args.steps <= 0:
        p.error("--steps must be positive")
    for guarded in (False, True) if args.guard else (False,):
        for cam in args.camera:
            r = measure(args.task, cam, args.steps, guarded)
            what = "state-only" if cam == 0 else f"one {cam}x{cam} camera"
            print(
                f"{args.task:9s} {what:22s} {'guarded' if guarded else 'raw':7s} "
                f"{r['steps_per_s']:7.1f} steps/s  {r['realtime_factor']:5.1f}x real time  "
                f"(load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
