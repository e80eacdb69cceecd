"""The one chunk executor: planned chunks -> Takeover -> RobotGuard -> robot -> EpisodeManager.

Every loop that drives an arm (the PI-RL actor, `pirl eval`, the demo's batched sim rollouts) runs its
episodes through here, so takeover, safety, pacing and episode accounting mean the same thing everywhere:

    executor = Executor(guard, episodes, takeover, exec_horizon=model.exec_horizon)
    episodes.start()
    run = executor.begin(takeover_at=executor.takeover_chunk(rng, prob))
    while run.active:                       # the EpisodeManager still runs the episode
        chunk = plan(run.obs)               # [n, action_dim] robot units: the policy's chunk
        result = run.run_chunk(chunk)       # its first exec_horizon actions, one control step each

A step: `Takeover.arbitrate` picks the policy's action or the human's -> the `Pacer` applies it through
the guard (lockstep `step`, or deadline-paced `submit`) -> the next observation -> `record_step`. A chunk
ends early when the episode ends or control returns to the policy (hand-back drops the rest of a chunk
planned before the takeover). `ChunkResult` says what happened, including which steps a human drove
(`human_mask`): a takeover may start or end inside a chunk, and only those steps carry human actions.
`chunk_record` turns it into the actor -> learner row (`app.rl.batch.ChunkRecord`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from app.episode.pacing import Pacer
from app.rl.batch import ChunkRecord
from hardware.episodes import EpisodeManager, EpisodeState, StepOutcome
from hardware.guard import RobotGuard, StepResult
from hardware.takeover import Takeover, TakeoverDecision


def action_dict(row: torch.Tensor, action_keys: Sequence[str]) -> dict[str, float]:
    """One action row [action_dim] (robot units) -> {"<motor>.pos": value}."""
    values = row.detach().to("cpu", torch.float32).tolist()
    if len(values) != len(action_keys):
        raise ValueError(f"policy action has {len(values)} values, robot expects {len(action_keys)}")
    return dict(zip(action_keys, values, strict=True))


def action_row(action: Mapping[str, float], action_keys: Sequence[str]) -> torch.Tensor:
    """{"<motor>.pos": value} -> [action_dim] tensor (for human actions in the rollout)."""
    return torch.tensor([float(action[k]) for k in action_keys], dtype=torch.float32)


@dataclass
class Step:
    """One control step, for `on_step` listeners (the actor's counters, eval's dataset recorder)."""

    obs: dict[str, Any]  # the observation the step was decided on
    decision: TakeoverDecision
    applied: dict[str, float] | None  # what the guard applied (lockstep) or last applied (realtime)
    outcome: StepOutcome
    next_obs: dict[str, Any]


@dataclass
class ChunkResult:
    """What one executed chunk did."""

    steps: int  # control steps executed (<= exec_horizon)
    reward: float  # summed over those steps
    outcome: StepOutcome | None  # the last step's
    obs: dict[str, Any]  # the observation after the last step
    intervention: bool = False  # a human drove at least one step
    takeover_start: bool = False  # a takeover began in this chunk
    human_action: torch.Tensor | None = None  # [chunk_size, action_dim] executed human actions, else None
    human_steps: tuple[int, ...] = ()  # positions of the steps a human drove
    chunk_size: int = 0

    @property
    def done(self) -> bool:
        """The episode ended on this chunk's last step."""
        return self.outcome is not None and self.outcome.done

    @property
    def terminated(self) -> bool:
        return self.done and self.outcome.terminated

    @property
    def truncated(self) -> bool:
        return self.done and self.outcome.truncated

    @property
    def human_mask(self) -> torch.Tensor:
        """[chunk_size] bool: True exactly on the steps a human drove."""
        mask = torch.zeros(self.chunk_size, dtype=torch.bool)
        mask[list(self.human_steps)] = True
        return mask


class Executor:
    """Runs chunks on one arm. `exec_horizon`: actions executed per chunk (None: all of them);
    `chunk_size`: length of the human-action rows (None: exec_horizon). `on_step(Step)` runs after every
    step. `pacer` defaults to one over this guard."""

    def __init__(
        self,
        guard: RobotGuard,
        episodes: EpisodeManager,
        takeover: Takeover,
        *,
        exec_horizon: int | None = None,
        chunk_size: int | None = None,
        pacer: Pacer | None = None,
        on_step: Callable[[Step], None] | None = None,
    ) -> None:
        if exec_horizon is not None and exec_horizon < 1:
            raise ValueError(f"exec_horizon must be >= 1, got {exec_horizon}")
        self.guard = guard
        self.episodes = episodes
        self.takeover = takeover
        self.exec_horizon = exec_horizon
        self.chunk_size = chunk_size
        self.pacer = pacer or Pacer(guard)
        self.on_step = on_step
        self.keys = list(guard.keys)

    def takeover_chunk(self, rng: random.Random, prob: float) -> int | None:
        """Random takeovers (sim expert): with probability `prob` the human takes over at a random chunk
        in the first half of the episode's time limit (None: no takeover, or nobody to take over)."""
        if prob <= 0 or self.takeover.human is None or rng.random() >= prob:
            return None
        horizon = self.exec_horizon or 1
        return rng.randrange(max(1, self.episodes.max_steps // horizon // 2))

    def begin(self, takeover_at: int | None = None) -> EpisodeRun:
        """The episode just started (`episodes.start()`): pace it from now, read its first observation.
        `takeover_at`: the chunk at which the human takes over (see takeover_chunk)."""
        self.pacer.restart()
        return EpisodeRun(self, self.guard.observation(), takeover_at)

    def run_episode(
        self, plan: Callable[[dict[str, Any]], torch.Tensor], takeover_at: int | None = None
    ) -> EpisodeRun:
        """The started episode to its end: `plan(observation)` gives each chunk [n, action_dim]."""
        run = self.begin(takeover_at)
        while run.active:
            run.run_chunk(plan(run.obs))
        return run


class EpisodeRun:
    """One running episode on one arm, chunk by chunk."""

    def __init__(self, executor: Executor, obs: dict[str, Any], takeover_at: int | None) -> None:
        self.executor = executor
        self.obs = obs  # the present observation: the next chunk is planned from it
        self.takeover_at = takeover_at
        self.chunk = 0  # index of the next chunk
        self.steps = 0  # control steps so far
        self.outcome: StepOutcome | None = None  # the last step's

    @property
    def active(self) -> bool:
        """The episode still runs (not ended by a step, nor stopped between chunks by an operator)."""
        return self.executor.episodes.state is EpisodeState.RUNNING

    @property
    def done(self) -> bool:
        """A step ended the episode (success, failure, time limit, e-stop, ...)."""
        return self.outcome is not None and self.outcome.done

    def run_chunk(self, actions: torch.Tensor) -> ChunkResult:
        """Execute the first exec_horizon rows of `actions` [n, action_dim] (robot units), one control
        step each, until the episode ends or control is handed back to the policy."""
        ex = self.executor
        if self.takeover_at is not None and self.chunk == self.takeover_at:
            ex.takeover.request(True)
        n = int(actions.shape[0]) if ex.exec_horizon is None else min(int(actions.shape[0]), ex.exec_horizon)
        size = ex.chunk_size or ex.exec_horizon or n
        human: torch.Tensor | None = None
        human_steps: list[int] = []
        reward = 0.0
        intervened = started = False
        outcome = None
        obs = self.obs
        steps = 0
        for i in range(n):
            decision = ex.takeover.arbitrate(obs, action_dict(actions[i], ex.keys))
            result = ex.pacer.apply(decision)
            applied = _applied(ex.guard, decision, result) if decision.intervention or ex.on_step else None
            next_obs = ex.guard.observation()
            outcome = ex.episodes.record_step(decision, result, next_obs)
            steps += 1
            if ex.on_step is not None:
                ex.on_step(Step(obs, decision, applied, outcome, next_obs))
            obs = next_obs
            reward += outcome.reward
            if decision.intervention:
                intervened = True
                if applied:  # the human's step carries the command the arm was given
                    if human is None:
                        human = torch.zeros(size, len(ex.keys))
                    human[i] = action_row(applied, ex.keys)
                    human_steps.append(i)
            started = started or decision.started
            if outcome.done or decision.handed_back:
                break
        self.obs, self.outcome = obs, outcome
        self.chunk += 1
        self.steps += steps
        return ChunkResult(
            steps=steps,
            reward=reward,
            outcome=outcome,
            obs=obs,
            intervention=intervened,
            takeover_start=started,
            human_action=human,
            human_steps=tuple(human_steps),
            chunk_size=size,
        )


def _applied(guard: RobotGuard, decision: TakeoverDecision, result: StepResult | None) -> dict | None:
    """The command the arm was given this step: lockstep, the guard's result; realtime, what its control
    thread applied last (the submitted action itself before its first tick)."""
    if result is not None:
        return result.action
    last = guard.last_result
    if last is not None:
        return last.action
    return decision.action or guard.present()


def chunk_record(
    result: ChunkResult,
    obs: Mapping[str, torch.Tensor],
    sample: Any,
    row: int = 0,
    *,
    policy_version: int = 0,
    episode_id: int = 0,
    chunk_index: int = 0,
    group_id: int = -1,
    bootstrap_value: float = 0.0,
) -> ChunkRecord:
    """The learner's row for one executed chunk: row `row` of the batched policy observation `obs` and of
    the ChainSample `sample` that planned it (`app.rl.sampling.sample`), with what the executor saw."""
    return ChunkRecord(
        obs={k: v[row] for k, v in obs.items()},
        reward=result.reward,
        done=result.terminated,
        truncated=result.truncated,
        bootstrap_value=bootstrap_value,
        chain=sample.chain[row],
        sde_step=int(sample.sde_step[row]),
        logprob=float(sample.logprob[row]),
        value=float(sample.value[row]),
        intervention=result.intervention,
        human_action=result.human_action,
        human_mask=result.human_mask if result.intervention else None,
        takeover_start=result.takeover_start,
        policy_version=policy_version,
        episode_id=episode_id,
        chunk_index=chunk_index,
        group_id=group_id,
    )
