"""The evaluation loop: deterministic chunks through the training path to the motors, N times, then a rate.

It runs the actor's executor (app/episode/) with the learner taken out: the policy plans a chunk with the
plain ODE (`app.rl.sampling.sample(mode="deterministic")`, no exploration noise: what a deployment runs),
its first `exec_horizon` actions go one at a time through Takeover (policy or human) -> RobotGuard (the
safety layer; lockstep in sim, the realtime control thread on a real arm) -> the robot, and the
EpisodeManager decides time limits, success, and the smooth drive home between episodes. So the number
printed is the number the runtime would get, clamps and all.

Reproducibility: in sim, episode i resets with seed `episode.seed + i` and draws its initial noise and its
takeover decision from a stream seeded by (sample_seed, i), so a run is repeatable bit for bit and the
first k episodes of a longer run are those of a k-episode run. On a real arm the operator confirms each
start and gives the verdict when the episode did not end on a teleop success/failure button.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from app.episode.recorder import EpisodeRecorder
from app.eval.config import EvalConfig
from app.eval.policy import EvalError, check_compatible, has_pirl_model, load_policy, policy_io
from app.eval.stats import SuccessRate, scene_rates, wilson_interval
from app.run.config import LEADER_ARMS
from hardware.factory import leader_in_degrees

log = logging.getLogger("pirl.eval")


@dataclass
class EvalResult:
    success: SuccessRate  # over the counted episodes
    episodes: list[dict[str, Any]]  # one record per finished episode (see run_eval)
    intervened: int  # episodes in which a human (or the sim expert) took over at least once
    wall_s: float  # from the first reset to the end of the last episode
    env_steps: int  # control steps run in episodes (resets excluded)
    dataset: str | None  # LeRobotDataset folder, when recording
    stopped: str | None  # why the run ended before `episodes` (operator quit, e-stop, reset failure)
    exploration: Exploration | None = None  # --explore_samples: stochastic successes per scene
    plot: str | None = None  # --plot: the per-scene PNG, when it was written

    @property
    def episodes_per_s(self) -> float:
        return len(self.episodes) / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "success_rate": self.success.rate,
            "successes": self.success.successes,
            "episodes_counted": self.success.episodes,
            "ci_low": self.success.low,
            "ci_high": self.success.high,
            "confidence": self.success.confidence,
            "episodes_run": len(self.episodes),
            "intervened_episodes": self.intervened,
            "wall_s": round(self.wall_s, 3),
            "episodes_per_s": round(self.episodes_per_s, 3),
            "env_steps": self.env_steps,
            "dataset": self.dataset,
            "stopped": self.stopped,
            "exploration": None if self.exploration is None else asdict(self.exploration),
            "plot": self.plot,
            "per_episode": self.episodes,
        }


@dataclass
class Exploration:
    """How each evaluated scene fares under the stochastic training sampler: what a sparse-reward policy
    gradient can learn from. Scenes that succeed "sometimes" give PPO a signal; "never" scenes give none."""

    samples: int  # stochastic rollouts per scene
    successes: list[int]  # per scene (in evaluation order), out of `samples`

    @property
    def never(self) -> int:
        return sum(1 for k in self.successes if k == 0)

    @property
    def always(self) -> int:
        return sum(1 for k in self.successes if k == self.samples)

    @property
    def sometimes(self) -> int:
        return len(self.successes) - self.never - self.always

    @property
    def rate(self) -> float:
        total = self.samples * len(self.successes)
        return sum(self.successes) / total if total else 0.0


class ChunkPlanner:
    """Deterministic action chunks from the PI-RL ODE; other LeRobot policies (no PIRLModel) act through
    their own select_action, with the processors saved beside them, one action per step."""

    def __init__(self, policy: Any, sample_seed: int, pre: Callable | None, post: Callable | None) -> None:
        self.policy = policy
        self.model = policy.model if has_pirl_model(policy) else None
        self.exec_h = self.model.exec_horizon if self.model is not None else 1
        self.sample_seed = sample_seed
        self.pre, self.post = pre, post
        self.gen = torch.Generator()
        # "deterministic": the plain ODE (evaluation); "train": the stochastic chain PI-RL explores with.
        self.mode = "deterministic"

    def reset(self, episode: int, stream: int = 0) -> None:
        """New episode: its own noise stream (so episode i does not depend on how long i-1 ran). `stream`
        k > 0 gives the k-th stochastic replay of the episode its own noise (--explore_samples)."""
        self.gen.manual_seed(episode_seed(self.sample_seed + stream, episode))
        if self.model is None:
            # LeRobot policies sample from the global generator (e.g. SAC's Gaussian actor draws its
            # action): seeding it per episode makes their runs repeatable too.
            torch.manual_seed(episode_seed(self.sample_seed, episode))
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    @torch.no_grad()
    def plan(self, pobs: dict[str, torch.Tensor]) -> torch.Tensor:
        """[n, action_dim] robot-unit actions to execute before planning again."""
        if self.model is not None:
            from app.rl.sampling import sample

            prepare = getattr(self.policy, "prepare_observation", None)  # a VLA's pre-processor (pirl_vla)
            if prepare is not None:
                pobs = prepare(pobs)
            dev = next(self.model.parameters()).device
            pobs = {k: v.to(dev) for k, v in pobs.items()}
            out = sample(self.model, pobs, mode=self.mode, generator=self.gen)
            return out.actions[0, : self.exec_h].cpu()
        batch = self.pre(pobs) if self.pre is not None else pobs
        action = self.policy.select_action(batch)
        if self.post is not None:
            action = self.post(action)
        return action.reshape(1, -1).cpu()


def episode_seed(sample_seed: int, episode: int) -> int:
    return (int(sample_seed) & 0xFFFFFFFF) << 24 | (episode & 0xFFFFFF)


# ------------------------------------------------------------------------------------------ the loop


Ask = Callable[[str], str]


def _verdict(ask: Ask, episode: int) -> str:
    """Operator: 'y' success, 'n' failure, 'r' re-record (discard, run again), 'q' discard and stop."""
    while True:
        a = ask(f"episode {episode}: success? [y]es / [n]o / [r]e-record / [q]uit: ").strip().lower()
        if a[:1] in ("y", "n", "r", "q"):
            return a[:1]


def run_eval(
    cfg: EvalConfig,
    progress: Callable[[str], None] | None = print,
    ask: Ask = input,
    human: Any | None = None,
) -> EvalResult:
    """Run the evaluation (module docstring). `ask` reads the operator's answers on a real arm; `human`
    overrides the takeover source (a HumanSource: tests, or an embedding app with its own teleop)."""
    from app.episode import Executor, Step
    from app.episode.observation import resolve_state_keys, to_policy_observation
    from hardware.episodes import EpisodeManager, EpisodeState
    from hardware.factory import connect_robot, make_robot
    from hardware.guard import RobotGuard
    from hardware.takeover import ExpertSource, Takeover

    show = progress is not None and cfg.progress
    say = progress if show else (lambda _line: None)
    cfg.validate()
    if cfg.robot is None:
        from hardware.sim.so101_follower import SimSO101FollowerConfig

        cfg.robot = SimSO101FollowerConfig(task="reach")
    policy, pre, post = load_policy(cfg.policy)
    planner = ChunkPlanner(policy, cfg.sample_seed, pre, post)
    if cfg.explore_samples and planner.model is None:
        raise EvalError(
            f"--explore_samples samples PI-RL's stochastic chain; a {policy.config.type} policy has none"
        )
    robot = make_robot(cfg.robot)
    cfg.safety.control_hz = float(getattr(cfg.robot, "fps", None) or cfg.safety.control_hz)
    guard = RobotGuard(robot, cfg.safety)
    expert = teleop = None
    if human is None and guard.is_sim and cfg.takeover_prob > 0:
        from hardware.sim.expert import ExpertConfig, ScriptedExpert

        task = getattr(cfg.robot, "task", None)
        if task not in ("reach", "pick_cube"):
            raise EvalError(
                f"--takeover_prob needs a sim task with a scripted expert (reach, pick_cube), not {task}"
            )
        expert = ScriptedExpert(ExpertConfig(task=task, fps=float(cfg.robot.fps)))
        human = ExpertSource(expert.act)

    def env_reset(seed: int | None) -> None:
        robot.reset(seed=seed)
        if expert is not None:
            expert.reset()

    recorder: EpisodeRecorder | None = None
    exploration: Exploration | None = None
    t_eval_end: float | None = None
    per_episode: list[dict[str, Any]] = []
    stopped: str | None = None
    env_steps = 0
    bars = ExitStack()  # the progress bars (a terminal only) and their logging redirect
    t0 = time.monotonic()
    try:
        if not guard.is_sim:
            connect_robot(robot)  # never prompts for calibration; clear port errors
        guard.connect()
        if cfg.teleop is not None and human is None:
            human = _connect_teleop(cfg)
            teleop = human.teleop
            if cfg.teleop.type in LEADER_ARMS:
                say(
                    "eval: leader arm connected: press Enter during an episode to take over, Enter again to hand back"
                )
        takeover = Takeover(human=human)
        robot_keys = list(guard.keys)
        state_keys = resolve_state_keys(robot, cfg.state_keys)
        image_keys = list(cfg.image_keys) or policy_io(policy)[2]
        check_compatible(policy, robot, state_keys, robot_keys, image_keys)
        manager = EpisodeManager(
            guard,
            cfg.episode,
            takeover=takeover,
            task_success=getattr(robot, "task_success", None) if guard.is_sim else None,
            env_reset=env_reset if guard.is_sim else None,
        )
        if cfg.record.root:
            if not cfg.record.task:
                task = getattr(cfg.robot, "task", "")
                cfg.record.task = task if task and task != "none" else "pirl eval"
            shapes = (
                {k: tuple(robot.observation_features[k]) for k in image_keys} if cfg.record.images else {}
            )
            recorder = EpisodeRecorder(
                cfg.record, round(cfg.safety.control_hz), state_keys, robot_keys, shapes, cfg.robot.type
            )

        def plan(obs: dict[str, Any]) -> torch.Tensor:
            return planner.plan(to_policy_observation(obs, state_keys, image_keys))

        def record_frame(step: Step) -> None:  # every control step into the dataset, as it was applied
            o = step.outcome
            recorder.add(
                step.obs, step.applied, step.decision.intervention, o.reward, o.done, bool(o.success)
            )

        executor = Executor(
            guard,
            manager,
            takeover,
            exec_horizon=planner.exec_h,
            on_step=record_frame if recorder is not None else None,
        )

        bar = _progress_bar(bars, cfg.episodes, "episode", show)
        if not bar.disable:  # lines and prompts clear the bar while they print
            say, ask = _above_bars(say), _above_bars(ask)
        t0 = time.monotonic()
        try:
            while len(per_episode) < cfg.episodes:
                i = manager.index
                if not manager.reset():
                    why = (
                        "e-stop latched"
                        if guard.estopped
                        else f"max joint error {manager.last_reset_error:.1f}"
                    )
                    stopped = f"reset to home failed ({why}); check the arm"
                    break
                if not manager.auto_start:
                    a = ask(f"episode {i + 1}/{cfg.episodes}: set the scene, Enter to start (q to stop): ")
                    if a.strip().lower().startswith("q"):
                        stopped = "operator quit"
                        break
                    manager.confirm()
                manager.start()
                planner.reset(i)
                rng = random.Random(episode_seed(cfg.sample_seed, i))
                take_at = executor.takeover_chunk(rng, cfg.takeover_prob if expert is not None else 0.0)
                with EnterToggles(takeover, enabled=teleop is not None and cfg.teleop.type in LEADER_ARMS):
                    env_steps += executor.run_episode(plan, take_at).steps
                if guard.mode != "lockstep" and not guard.estopped:
                    guard.hold("episode_end")  # hold still while the operator answers (not a watchdog hold)
                record = manager.records[-1]
                success = bool(record.success)
                if record.rerecord:
                    verdict = "r"
                elif guard.is_sim or record.termination in ("success", "failure"):
                    verdict = "y" if success else "n"
                else:
                    verdict = _verdict(ask, i + 1)
                if verdict in ("r", "q"):
                    if recorder is not None:
                        recorder.discard_episode()
                    if verdict == "q":
                        stopped = "operator quit"
                        break
                    manager.begin_attempt(record.index, record.attempt + 1)  # the same episode again
                    say(f"eval: episode {i + 1} discarded, running it again")
                    continue
                success = verdict == "y"
                counted = cfg.count_intervened or not record.interventions
                ep = {
                    "episode": record.index,
                    "seed": record.seed,
                    "success": success,
                    "counted": counted,
                    "steps": record.steps,
                    "termination": record.termination,
                    "interventions": record.interventions,
                    "intervention_steps": record.intervention_steps,
                    "return": record.reward,
                    "wall_s": round(record.wall_s, 4),
                }
                per_episode.append(ep)
                if recorder is not None:
                    recorder.end_episode(success, success_reward=cfg.episode.success_reward)
                bar.update()
                say(
                    f"eval: episode {len(per_episode)}/{cfg.episodes} {'success' if success else 'failure'} "
                    f"({record.termination}, {record.steps} steps"
                    + (f", {record.interventions} takeover" if record.interventions else "")
                    + ("" if counted else ", not counted")
                    + ")"
                )
                if guard.estopped:
                    stopped = f"e-stop latched ({guard.estop_reason}); clear it and run again"
                    break
            t_eval_end = time.monotonic()
            bar.close()
            if cfg.explore_samples and stopped is None:
                scenes = [e["episode"] for e in per_episode]
                executor.on_step = None  # replays are not recorded
                bar = _progress_bar(bars, cfg.explore_samples * len(scenes), "rollout", show, "explore")
                exploration, stopped = _explore(
                    cfg, guard, manager, executor, planner, plan, scenes, say, bar.update
                )
        except KeyboardInterrupt:  # Ctrl-C, at a prompt or mid-episode: keep what is finished
            if manager.state is EpisodeState.RUNNING:
                manager.stop("operator")
            if recorder is not None:
                recorder.discard_episode()
            stopped = "interrupted (Ctrl-C); an unfinished episode was discarded"
    finally:
        # The rate line's episodes/s is the evaluation's own; the exploration replays come after it.
        wall = (t_eval_end if t_eval_end is not None else time.monotonic()) - t0
        bars.close()
        if recorder is not None:
            recorder.close()
        if teleop is not None and getattr(teleop, "is_connected", False):
            teleop.disconnect()
        guard.close()
    counted_eps = [e for e in per_episode if e["counted"]]
    rate = wilson_interval(sum(e["success"] for e in counted_eps), len(counted_eps), cfg.confidence)
    result = EvalResult(
        success=rate,
        episodes=per_episode,
        intervened=sum(1 for e in per_episode if e["interventions"]),
        wall_s=wall,
        env_steps=env_steps,
        dataset=str(recorder.root) if recorder is not None else None,
        stopped=stopped,
        exploration=exploration,
    )
    if cfg.plot:
        result.plot = plot_scenes(cfg, result)
        if result.plot and progress is not None:  # a result line, printed whatever --progress says
            progress(f"eval: per-scene plot written to {result.plot}")
    if cfg.output:
        out = Path(cfg.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_json({**result.as_dict(), "config": asdict(cfg)}))
    return result


def plot_scenes(cfg: EvalConfig, result: EvalResult) -> str | None:
    """--plot: the success per scene as a PNG (app/report/plots.py); its path, or None and one warning
    line when it could not be written (the evaluation's result stands either way)."""
    from app.report.plots import SceneBar, per_scene_success, safely

    def draw() -> Path:
        x = result.exploration
        outcomes = [e["success"] for e in result.episodes]
        rates = scene_rates(outcomes, cfg.confidence, x.successes if x else None, x.samples if x else 0)
        bars = [
            SceneBar(str(e["episode"]), r.successes, r.episodes, r.low, r.high, bool(e["counted"]),
                     bool(e["success"]) if x is not None else None)
            for e, r in zip(result.episodes, rates, strict=True)
        ]  # fmt: skip
        s = result.success
        return per_scene_success(
            cfg.plot,
            bars,
            (s.rate, s.low, s.high) if s.episodes else None,
            title=f"pirl eval {'/'.join(Path(cfg.policy).parts[-3:])}: {s}",
            trials_label="stochastic rollout" if x is not None else "deterministic (ODE) episode",
            interval_label=f"{cfg.confidence:.0%} Wilson CI",
        )

    path = safely("per-scene plot", draw, warn=log.warning)
    return None if path is None else str(path)


def _explore(
    cfg, guard, manager, executor, planner, plan, scenes, say, tick=lambda: None
) -> tuple[Exploration | None, str | None]:
    """--explore_samples: replay every evaluated scene with the stochastic training sampler, not recorded.
    Returns the per-scene successes over the finished passes (None if none finished) and why it stopped
    early (None when it finished)."""
    successes = [0] * len(scenes)
    finished: Exploration | None = None
    planner.mode = "train"
    try:
        for k in range(1, cfg.explore_samples + 1):
            for j, index in enumerate(scenes):
                manager.begin_attempt(index)  # the same scene (reset seed) as episode `index`
                if not manager.reset():
                    return finished, "reset to home failed during --explore_samples"
                manager.start()
                planner.reset(index, stream=k)
                executor.run_episode(plan)
                successes[j] += bool(manager.records[-1].success)
                tick()
                if guard.estopped:
                    return finished, f"e-stop latched ({guard.estop_reason}) during --explore_samples"
            finished = Exploration(k, list(successes))
            say(f"eval: exploration pass {k}/{cfg.explore_samples}: {sum(successes)} successes so far")
    finally:
        planner.mode = "deterministic"
    return finished, None


def _progress_bar(bars: ExitStack, total: int, unit: str, show: bool, desc: str = "eval") -> Any:
    """A progress bar with ETA on stderr, only where someone watches it: stderr is a terminal and progress
    is on (logs, pipes and tests get just the progress lines). Log records go above it while it shows."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    # miniters=1: no redraw from tqdm's monitor thread while a prompt waits (only update() draws it)
    bar = tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, disable=None if show else True,
        leave=False, miniters=1, dynamic_ncols=True,
    )  # fmt: skip
    bars.callback(bar.close)
    if not bar.disable:
        bars.enter_context(logging_redirect_tqdm())
    return bar


def _above_bars(write: Callable[[str], Any]) -> Callable[[str], Any]:
    """`write` (a progress line, an operator prompt) with the progress bars cleared while it writes or
    waits, and redrawn after: the text comes out exactly as without a bar."""
    from tqdm import tqdm

    def wrapped(text: str) -> Any:
        with tqdm.external_write_mode():
            return write(text)

    return wrapped


def _connect_teleop(cfg: EvalConfig) -> Any:
    """The takeover source: a leader arm gives joint goals in the follower's units (as in training,
    app/actor/teleop.py); gamepad / keyboard_ee give end-effector deltas mapped through IK."""
    from hardware.factory import connect_teleoperator, make_teleoperator
    from hardware.takeover import EndEffectorDeltaMap, TeleopSource

    teleop = make_teleoperator(cfg.teleop)
    if cfg.teleop.type in LEADER_ARMS:
        if cfg.teleop.type == "koch_leader" and getattr(cfg.robot, "use_degrees", False):
            leader_in_degrees(teleop)  # moved from app/actor/teleop.py (app/eval may not import app.actor)
        return TeleopSource(connect_teleoperator(teleop))
    return TeleopSource(connect_teleoperator(teleop), action_map=EndEffectorDeltaMap())


class EnterToggles:
    """While an episode runs: each Enter on the terminal hands the arm to the leader, or back to the policy
    (a leader arm has no intervention button; the console's `t` in training). Reads stdin only during the
    episode (select, 50 ms), so the operator prompts between episodes are untouched."""

    def __init__(self, takeover: Any, enabled: bool) -> None:
        import sys
        import threading

        self.takeover = takeover
        self.human = False  # per episode: the leader drives from the first Enter to the next
        self.enabled = enabled and sys.stdin is not None and sys.stdin.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="eval-takeover-key", daemon=True)

    def __enter__(self) -> EnterToggles:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)

    def _watch(self) -> None:
        import select
        import sys

        while not self._stop.is_set():
            ready, _, _ = select.select([sys.stdin], [], [], 0.05)
            if ready and not self._stop.is_set():
                sys.stdin.readline()
                self.human = not self.human
                self.takeover.request(self.human)


def _json(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data, indent=2, default=str)
