"""A handful of simulated SO-101s stepped in lockstep, seen through the policy's tensors.

The demo, the shortened CI demo, `pirl eval` in sim and benchmark 1 all need the same three things from
the simulator: seeded resets, "observation dict -> policy tensors", and success. Stepping several arms
side by side lets one batched policy call serve them all, which is what makes a few hundred episodes
affordable on a 2-core CPU. The arms are ordinary `sim_so101` robots (LeRobot `Robot`s); nothing here
touches MuJoCo directly. Each arm also has the runtime's EpisodeManager and Takeover, so policy rollouts
run through the same chunk executor as the actor (app/episode/).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch

from app.rl.native import STATE_KEY
from hardware import so101_model

__all__ = ["STATE_KEY", "SimEnvConfig", "SimEnvs", "action_dict", "state_keys"]


@dataclass
class SimEnvConfig:
    """Which simulated task the demo trains on and how long an episode may last."""

    task: str = "reach"  # sim task: "reach" (default demo) or "pick_cube"
    fps: int = 30  # control rate; one lockstep action = 1/fps simulated seconds
    max_steps: int = 45  # control steps before an episode is cut (truncated): 1.5 s at 30 Hz
    # Dense shaping added to the sparse success reward: `shaping` x (distance progress in metres / 0.1).
    # 0 keeps the reward sparse (1 on success, else 0); only tasks that report distance_m can shape.
    shaping: float = 0.0


def state_keys() -> list[str]:
    return [f"{m}.pos" for m in so101_model.MOTORS]


class SimEnvs:
    """N lockstep `sim_so101` arms with seeded resets; observations come back as policy tensors.

    Every action goes through a `RobotGuard` (the same safety layer, rate limits and workspace box the
    actor uses), so what the policy learns here is what it meets through the runtime. Resets use the
    simulator's own teleport-home (`robot.reset(seed)`) instead of the guard's smooth drive home: the
    resulting state is the same and it costs no simulated time.

    Arm i's `episodes[i]` (EpisodeManager: success, the `max_steps` limit, reward with the optional
    shaping) and `takeovers[i]` (no human: the policy drives) are what an `app.episode.Executor` needs;
    `start_episode(i, seed)` resets the scene and starts one. `reset`/`step` drive an arm directly
    (scripted demos).
    """

    def __init__(self, n: int, cfg: SimEnvConfig) -> None:
        from hardware.episodes import EpisodeConfig, EpisodeManager
        from hardware.guard import RobotGuard
        from hardware.safety.config import SafetyConfig
        from hardware.sim.so101_follower import SimSO101Follower, SimSO101FollowerConfig
        from hardware.takeover import Takeover

        if n < 1:
            raise ValueError(f"SimEnvs needs at least one arm, got {n}")
        self.cfg = cfg
        self.robots = [SimSO101Follower(SimSO101FollowerConfig(task=cfg.task, fps=cfg.fps)) for _ in range(n)]
        self.guards = [
            RobotGuard(r, SafetyConfig(control_hz=cfg.fps), install_signal_handlers=False).connect()
            for r in self.robots
        ]
        # Same convention as the actor (app.episode.observation): joints, then the task's extra keys.
        self.keys = state_keys() + list(self.robots[0].task.observation_features())
        self.state_dim = len(self.keys)
        self.action_dim = len(so101_model.MOTORS)
        self.last_obs: list[dict] = [g.observation() for g in self.guards]
        self._dist: list[float | None] = [None] * n
        self.takeovers = [Takeover() for _ in range(n)]
        episode = EpisodeConfig(time_limit_s=cfg.max_steps / cfg.fps)  # exactly max_steps control steps
        self.episodes = [
            EpisodeManager(
                self.guards[i],
                episode,
                takeover=self.takeovers[i],
                task_success=self.robots[i].task_success,
                # dense shaping: the reward is the whole step reward (success included), as step() gives it
                reward_classifier=(lambda _obs, i=i: self._reward(i)[0]) if cfg.shaping else None,
                env_reset=partial(self._reset_scene, i),
            )
            for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.robots)

    def close(self) -> None:
        for g in self.guards:
            g.close()

    def reset(self, i: int, seed: int) -> dict:
        self.robots[i].reset(seed=seed)
        self.guards[i].resync()
        self.last_obs[i] = self.guards[i].observation()
        self._dist[i] = self._distance(i)
        return self.last_obs[i]

    def step(self, i: int, action: dict[str, float]) -> tuple[dict, float, bool]:
        """Send one action to arm i; returns (observation, reward, success)."""
        self.guards[i].step(action, source="policy")
        self.last_obs[i] = obs = self.guards[i].observation()
        reward, success = self._reward(i)
        return obs, reward, success

    def start_episode(self, i: int, seed: int) -> None:
        """Reset arm i's scene with `seed` (the simulator's teleport home) and start an episode on its
        EpisodeManager; an episode left running by an interrupted rollout is stopped first."""
        manager = self.episodes[i]
        manager.stop("abandoned")
        manager.reset_in_place(seed)
        manager.start()

    def _reset_scene(self, i: int, seed: int | None) -> None:
        self.robots[i].reset(seed=seed)
        self._dist[i] = self._distance(i)

    def _reward(self, i: int) -> tuple[float, bool]:
        """Arm i's reward for the step just taken: 1 on success, plus the distance shaping."""
        success = self.robots[i].task_success()
        reward = 1.0 if success else 0.0
        if self.cfg.shaping:
            d = self._distance(i)
            if d is not None and self._dist[i] is not None:
                reward += self.cfg.shaping * (self._dist[i] - d) / 0.1
            self._dist[i] = d
        return reward, success

    def _distance(self, i: int) -> float | None:
        if not self.cfg.shaping:
            return None
        return self.robots[i].task_info().get("distance_m")

    # -- tensors -------------------------------------------------------------------------------------
    def to_tensors(self, observations: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Observation dicts -> {"observation.state": [B, joints + task keys]} (the actor's layout)."""
        rows = [[float(o[k]) for k in self.keys] for o in observations]
        return {STATE_KEY: torch.tensor(rows, dtype=torch.float32)}

    def state_std_floor(self) -> torch.Tensor:
        """Smallest std to normalise each state entry with: 2 deg (or gripper units) for joints, 2 cm for
        task positions. A joint the demos never moved (wrist roll, the gripper in a reach) would otherwise
        get std ~0 and turn a tenth of a degree of drift into a 100-sigma input."""
        return torch.tensor([2.0 if k.endswith(".pos") else 0.02 for k in self.keys])


def action_dict(row: torch.Tensor) -> dict[str, float]:
    """[6] robot-unit action -> LeRobot action keys."""
    return {k: float(v) for k, v in zip(state_keys(), row.tolist(), strict=True)}
