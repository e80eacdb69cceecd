"""LeRobot's SAC on the demo's sim reach task, in one process: the SAC side of benchmark 1.

What is LeRobot's and what is ours:

- LeRobot's: the policy (`GaussianActorPolicy`, `--policy.type=gaussian_actor`: state encoder, MLP actor,
  tanh-squashed Gaussian head), the algorithm (`SACAlgorithm`: twin critics, target networks, automatic
  temperature, its `update()` with clipping and Polyak averaging, its optimizers) and the replay buffers
  (`lerobot.rl.buffer.ReplayBuffer`). Batches mix the online buffer with an offline buffer of the demos,
  half and half, the way LeRobot's learner does when it has an offline dataset.
- Ours: the environment loop. `SimEnvs` (the same arms, safety guard, reward, episode length and seeded
  resets as the PI-RL runs) stepped in lockstep, one SAC action per control step, and `update()` called
  in the same process (LeRobot's actor/learner would run them in two processes over gRPC; on a 2-core
  machine that only adds contention, and the comparison is about the algorithm, not the transport).

Normalisation is done here with LeRobot's conventions for this policy: state mean/std (floored exactly as
the PI-RL pipeline floors it), action min/max -> [-1, 1] (LeRobot's default `MIN_MAX` for actions). The
action box is the demos' range widened by `action_margin` on each side.

"BC start": with `bc_steps > 0` the actor's mean is first regressed onto the same scripted demos the flow
policy is BC-trained on (MSE in the normalised action space), so both methods start from the same data.
The critics start untrained either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from app.demo.pipeline import DEMO_SEED0, EVAL_SEED0, TRAIN_SEED0, BCConfig
from app.demo.sim_envs import STATE_KEY, SimEnvConfig, SimEnvs, action_dict, state_keys


@dataclass
class SACRunConfig:
    """One SAC run on the sim task; every field documented because the benchmark table depends on it."""

    seed: int = 0  # demo, reset, init and sampling seeds derive from it (same ranges as the PI-RL runs)
    env: SimEnvConfig = field(default_factory=SimEnvConfig)
    parallel_envs: int = 8  # arms stepped in lockstep (one batched actor call per control step)
    # Scripted demos: BC start (if bc_steps > 0) and the offline replay buffer; the flow policy's count.
    demos: int = BCConfig.demos
    bc_steps: int = 600  # gradient steps regressing the actor mean on the demos (0: random init)
    bc_lr: float = 1e-3
    bc_batch_size: int = 128
    wall_budget_s: float = 240.0  # seconds of online SAC (collection + updates); evals excluded
    max_env_steps: int = 0  # also stop after this many transitions (0: only the wall budget)
    utd: float = 1.0  # SAC updates per collected transition (1 = the usual SAC update-to-data ratio)
    warmup_steps: int = 256  # online transitions collected before the first update
    batch_size: int = 256  # per update; half online, half demos
    buffer_capacity: int = 200_000
    action_margin: float = 10.0  # degrees (gripper units) added on each side of the demos' action range
    temperature_init: float = 0.01  # LeRobot's default is 1.0; see docs/benchmarks.md section 1
    discount: float = 0.99
    eval_episodes: int = 50  # deterministic (tanh of the mean action) episodes on the fixed eval scenes
    # Robot time (benchmarks/robot_time.py): control steps charged per episode for the drive home that a
    # real arm (and the PI-RL runtime) spends between episodes; the lockstep sim here teleports home.
    reset_steps_per_episode: int = 0
    # Also stop after this much robot time ((env steps + resets) / fps / 60; 0: no limit) ...
    max_robot_minutes: float = 0.0
    # ... and evaluate (eval_episodes, deterministic) when the robot time passes each of these marks.
    eval_at_robot_minutes: tuple[float, ...] = ()


@dataclass
class SACResult:
    success_before: float
    success_after: float
    episodes: int  # online training episodes finished within the budget
    env_steps: int  # online transitions
    updates: int  # SACAlgorithm.update() calls
    wall_s: float  # whole run: demos, BC, both evals, online phase
    rl_wall_s: float  # online phase only (what the budget limits)
    robot_minutes: float = 0.0  # (env steps + episodes x reset_steps_per_episode) / fps / 60
    curve: list[tuple[float, float]] = field(default_factory=list)  # (robot-minute mark, eval success)


def _demo_transitions(envs: SimEnvs, cfg: SACRunConfig) -> list[tuple]:
    """Scripted-expert transitions (state, action, reward, next_state, done) on the PI-RL demo seeds."""
    from hardware.sim.expert import ExpertConfig, ScriptedExpert

    keys = state_keys()
    out = []
    for i in range(cfg.demos):
        expert = ScriptedExpert(ExpertConfig(task=cfg.env.task, fps=cfg.env.fps))
        obs = envs.reset(0, DEMO_SEED0 + 1000 * cfg.seed + i)
        for steps in range(1, cfg.env.max_steps + 1):
            act = expert.act(obs)
            s = envs.to_tensors([obs])[STATE_KEY][0]
            a = torch.tensor([float(act[k]) for k in keys])
            obs, r, success = envs.step(0, act)
            s2 = envs.to_tensors([obs])[STATE_KEY][0]
            out.append((s, a, r, s2, success, steps >= cfg.env.max_steps and not success))
            if success:
                break
    return out


class _Norm:
    """State mean/std and action min/max, the two normalisations LeRobot applies for this policy."""

    def __init__(self, states: torch.Tensor, actions: torch.Tensor, envs: SimEnvs, margin: float) -> None:
        self.s_mean = states.mean(0)
        self.s_std = torch.maximum(states.std(0), envs.state_std_floor())
        self.a_min = actions.min(0).values - margin
        self.a_max = actions.max(0).values + margin

    def state(self, s: torch.Tensor) -> torch.Tensor:
        return (s - self.s_mean) / self.s_std

    def action_to_unit(self, a: torch.Tensor) -> torch.Tensor:
        return (2 * (a - self.a_min) / (self.a_max - self.a_min) - 1).clamp(-0.999, 0.999)

    def action_from_unit(self, u: torch.Tensor) -> torch.Tensor:
        return (u.clamp(-1, 1) + 1) / 2 * (self.a_max - self.a_min) + self.a_min


def build_sac(state_dim: int, action_dim: int, cfg: SACRunConfig):
    """LeRobot's GaussianActorPolicy + SACAlgorithm for a state-only observation, on CPU."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.gaussian_actor.configuration_gaussian_actor import GaussianActorConfig
    from lerobot.policies.gaussian_actor.modeling_gaussian_actor import GaussianActorPolicy
    from lerobot.rl.algorithms.sac.configuration_sac import SACAlgorithmConfig
    from lerobot.rl.algorithms.sac.sac_algorithm import SACAlgorithm

    torch.manual_seed(cfg.seed)
    pcfg = GaussianActorConfig(
        input_features={STATE_KEY: PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))},
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))},
        device="cpu",
        push_to_hub=False,
    )
    policy = GaussianActorPolicy(pcfg)
    acfg = SACAlgorithmConfig.from_policy_config(pcfg)
    acfg.temperature_init = cfg.temperature_init
    acfg.discount = cfg.discount
    algo = SACAlgorithm(policy, acfg)
    algo.make_optimizers_and_scheduler()
    return policy, algo


def _buffer(cfg: SACRunConfig, capacity: int):
    from lerobot.rl.buffer import ReplayBuffer

    return ReplayBuffer(capacity, device="cpu", state_keys=[STATE_KEY], use_drq=False, storage_device="cpu")


def _add(buf, s, a, r, s2, done, truncated) -> None:
    buf.add({STATE_KEY: s[None]}, a[None], float(r), {STATE_KEY: s2[None]}, bool(done), bool(truncated))


def _mixed_batches(online, offline, batch_size: int) -> Iterator[dict]:
    """Half online, half demos per batch (LeRobot's learner mixes its two buffers the same way)."""
    from lerobot.rl.buffer import concatenate_batch_transitions

    half = batch_size // 2
    while True:
        yield concatenate_batch_transitions(online.sample(batch_size - half), offline.sample(half))


def _bc_start(policy, states: torch.Tensor, actions_unit: torch.Tensor, cfg: SACRunConfig) -> None:
    """Regress tanh(mean) of the actor onto the demo actions (the encoder is trained with it)."""
    g = torch.Generator().manual_seed(cfg.seed)
    params = list(policy.actor.parameters())
    opt = torch.optim.Adam(params, lr=cfg.bc_lr)
    for _ in range(cfg.bc_steps):
        idx = torch.randint(0, len(states), (min(cfg.bc_batch_size, len(states)),), generator=g)
        obs = {STATE_KEY: states[idx]}
        # The actor detaches a shared encoder; run it undetached here so BC shapes the encoder too.
        enc = policy.actor.encoder(obs, detach=False)
        mean = policy.actor.mean_layer(policy.actor.network(enc))
        loss = torch.nn.functional.mse_loss(torch.tanh(mean), actions_unit[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def evaluate_sac(policy, envs: SimEnvs, norm: _Norm, n: int) -> float:
    """Deterministic success rate (tanh of the Gaussian mean) over the same fixed scenes as PI-RL."""
    pending = [EVAL_SEED0 + i for i in range(n)]
    live: dict[int, int] = {}  # arm -> steps taken
    successes = 0

    def start(i: int) -> None:
        if pending:
            envs.reset(i, pending.pop(0))
            live[i] = 0
        else:
            live.pop(i, None)

    for i in range(min(len(envs), n)):
        start(i)
    while live:
        arms = sorted(live)
        s = norm.state(envs.to_tensors([envs.last_obs[i] for i in arms])[STATE_KEY])
        _, _, mean = policy.actor({STATE_KEY: s})
        acts = norm.action_from_unit(torch.tanh(mean))
        for j, i in enumerate(arms):
            _, _, success = envs.step(i, action_dict(acts[j]))
            live[i] += 1
            if success or live[i] >= envs.cfg.max_steps:
                successes += int(success)
                start(i)
    return successes / max(n, 1)


def run_sac(cfg: SACRunConfig, log: Callable[[str], None] = print) -> SACResult:
    """Demos (-> optional BC start) -> eval -> online SAC for the wall budget -> eval."""
    t0 = time.monotonic()
    envs = SimEnvs(cfg.parallel_envs, cfg.env)
    try:
        demo = _demo_transitions(envs, cfg)
        states = torch.stack([t[0] for t in demo])
        actions = torch.stack([t[1] for t in demo])
        norm = _Norm(states, actions, envs, cfg.action_margin)
        policy, algo = build_sac(envs.state_dim, envs.action_dim, cfg)
        offline = _buffer(cfg, max(len(demo), 1))
        for s, a, r, s2, done, trunc in demo:
            _add(offline, norm.state(s), norm.action_to_unit(a), r, norm.state(s2), done, trunc)
        if cfg.bc_steps > 0:
            _bc_start(policy, norm.state(states), norm.action_to_unit(actions), cfg)
        policy.eval()
        before = evaluate_sac(policy, envs, norm, cfg.eval_episodes)
        log(
            f"sac seed {cfg.seed}: {len(demo)} demo transitions, bc_steps {cfg.bc_steps}, before {before:.0%}"
        )

        online = _buffer(cfg, cfg.buffer_capacity)
        batches = _mixed_batches(online, offline, cfg.batch_size)
        torch.manual_seed(cfg.seed + 1)
        next_seed = TRAIN_SEED0 + 100_000 * cfg.seed
        steps = [0] * len(envs)
        for i in range(len(envs)):
            envs.reset(i, next_seed)
            next_seed += 1
        env_steps = episodes = updates = 0
        owed = 0.0  # updates earned by collected transitions and not yet run
        t_rl = time.monotonic()
        last_log = t_rl
        per_minute = cfg.env.fps * 60.0
        marks = sorted(cfg.eval_at_robot_minutes)
        curve: list[tuple[float, float]] = []
        eval_s = 0.0  # time spent in mark evaluations, not charged to the wall budget

        def robot_minutes() -> float:
            return (env_steps + episodes * cfg.reset_steps_per_episode) / per_minute

        while time.monotonic() - t_rl - eval_s < cfg.wall_budget_s:
            while marks and robot_minutes() >= marks[0]:
                t_eval = time.monotonic()
                curve.append((marks.pop(0), evaluate_sac(policy, envs, norm, cfg.eval_episodes)))
                log(f"sac seed {cfg.seed}: {curve[-1][0]:g} robot min -> {curve[-1][1]:.0%}")
                for i in range(len(envs)):  # the evaluation used the arms: restart the training episodes
                    steps[i] = 0
                    envs.reset(i, next_seed)
                    next_seed += 1
                eval_s += time.monotonic() - t_eval
            if cfg.max_env_steps and env_steps >= cfg.max_env_steps:
                break
            if cfg.max_robot_minutes and robot_minutes() >= cfg.max_robot_minutes:
                break
            s = norm.state(envs.to_tensors(envs.last_obs)[STATE_KEY])
            with torch.no_grad():
                u, _, _ = policy.actor({STATE_KEY: s})
            acts = norm.action_from_unit(u)
            for i in range(len(envs)):
                _, r, success = envs.step(i, action_dict(acts[i]))
                steps[i] += 1
                truncated = not success and steps[i] >= cfg.env.max_steps
                s2 = norm.state(envs.to_tensors([envs.last_obs[i]])[STATE_KEY][0])
                _add(online, s[i], u[i].clamp(-0.999, 0.999), r, s2, success, truncated)
                env_steps += 1
                if success or truncated:
                    episodes += 1
                    steps[i] = 0
                    envs.reset(i, next_seed)
                    next_seed += 1
            if env_steps >= cfg.warmup_steps:
                owed += cfg.utd * len(envs)
                policy.train()
                while owed >= 1:
                    algo.update(batches)
                    updates += 1
                    owed -= 1
                policy.eval()
            if time.monotonic() - last_log > 30:
                last_log = time.monotonic()
                log(
                    f"sac seed {cfg.seed}: {env_steps} steps, {episodes} episodes, {updates} updates "
                    f"[{last_log - t_rl:.0f}s]"
                )
        rl_wall = time.monotonic() - t_rl - eval_s
        after = evaluate_sac(policy, envs, norm, cfg.eval_episodes)
        log(
            f"sac seed {cfg.seed}: after {after:.0%} ({episodes} episodes, {updates} updates, {rl_wall:.0f}s)"
        )
        return SACResult(
            before,
            after,
            episodes,
            env_steps,
            updates,
            time.monotonic() - t0,
            rl_wall,
            robot_minutes(),
            curve,
        )
    finally:
        envs.close()
