"""The chunk executor (app/episode/) on the lockstep simulated SO-101: which steps a human drove when a
takeover starts or ends inside a chunk, and that the BC loss on human chunks trains on exactly those."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch

from app.episode import Executor, chunk_record
from app.episode.observation import resolve_state_keys, to_policy_observation
from app.rl.batch import RolloutBatch
from app.rl.config import PIRLConfig
from app.rl.lerobot_policy import PIRLFlowConfig, PIRLFlowPolicy
from app.rl.losses import flow_matching_loss
from app.rl.native import NativeFlowConfig
from app.rl.sampling import evaluate_chain, sample
from app.rl.trainer import PIRLTrainer
from hardware.episodes import EpisodeConfig, EpisodeManager
from hardware.guard import RobotGuard
from hardware.safety.config import SafetyConfig
from hardware.sim import SimSO101Follower, SimSO101FollowerConfig
from hardware.takeover import IS_INTERVENTION, Takeover

H, EXEC = 10, 5  # chunk size, executed actions per chunk
START, END = 3, 8  # the human holds the intervention button during control steps [START, END)


class Pedal:
    """A human source with an intervention button held during control steps [press, release); it asks
    for a fixed pose 5 degrees of pan away from home."""

    def __init__(self, pose: dict[str, float], press: int, release: int) -> None:
        self.pose = {**pose, "shoulder_pan.pos": pose["shoulder_pan.pos"] + 5.0}
        self.press, self.release, self.polls = press, release, 0

    def events(self) -> dict:
        held = self.press <= self.polls < self.release
        self.polls += 1
        return {IS_INTERVENTION: held}

    def action(self, observation):
        return dict(self.pose)


@pytest.fixture
def arm(tmp_path: Path):
    robot = SimSO101Follower(SimSO101FollowerConfig(task="reach", id="exec", calibration_dir=tmp_path))
    guard = RobotGuard(robot, SafetyConfig(control_hz=30.0), install_signal_handlers=False).connect()
    yield robot, guard
    guard.close()


def _model(state_dim: int):
    torch.manual_seed(0)
    native = NativeFlowConfig(
        state_dim=state_dim, action_dim=6, chunk_size=H, obs_hidden=32, expert_hidden=32, time_embed_dim=8
    )
    rl = PIRLConfig(num_steps=4, exec_horizon=EXEC)
    rl.intervention.bc_coef = 1.0
    return PIRLFlowPolicy(PIRLFlowConfig(native=native, rl=rl, device="cpu", push_to_hub=False)).model


def _episode(robot, guard, takeover, seconds: float = 1.0):
    episodes = EpisodeManager(
        guard,
        EpisodeConfig(time_limit_s=seconds, seed=7),
        takeover=takeover,
        task_success=lambda: False,  # never ends early: the chunks below are the test's
        env_reset=lambda seed: robot.reset(seed=seed),
    )
    assert episodes.reset()
    episodes.start()
    return episodes


def _rollout(robot, guard, chunks: int = 4):
    """Run `chunks` policy chunks with the pedal held over steps [START, END); the learner's rows."""
    keys = resolve_state_keys(robot, [])
    model = _model(len(keys))
    pedal = Pedal(guard.present(), START, END)
    takeover = Takeover(human=pedal)
    episodes = _episode(robot, guard, takeover)
    executor = Executor(guard, episodes, takeover, exec_horizon=EXEC, chunk_size=H)
    run = executor.begin()
    gen = torch.Generator().manual_seed(0)
    results, records = [], []
    for _ in range(chunks):
        pobs = to_policy_observation(run.obs, keys)
        s = sample(model, pobs, mode="train", generator=gen)
        chunk = run.run_chunk(s.actions[0])
        results.append(chunk)
        records.append(chunk_record(chunk, pobs, s, chunk_index=len(records), episode_id=1))
    return model, results, RolloutBatch.from_records(records, 6)


def test_a_takeover_that_starts_and_ends_inside_chunks_flags_exactly_the_human_steps(arm):
    robot, guard = arm
    _, results, batch = _rollout(robot, guard)
    # chunk 0: steps 0-4, the human from step 3; chunk 1: steps 5-7 human, step 8 hands back and ends it
    assert [r.steps for r in results] == [5, 4, 5, 5]
    assert [r.human_steps for r in results] == [(3, 4), (0, 1, 2), (), ()]
    assert [r.takeover_start for r in results] == [True, False, False, False]
    assert batch.intervention.tolist() == [True, True, False, False]
    expect = torch.zeros(4, H, dtype=torch.bool)
    expect[0, 3:5] = True
    expect[1, 0:3] = True
    assert torch.equal(batch.human_steps(), expect)
    # the human rows carry what the arm was commanded, only where the human drove
    human = batch.human_action
    assert bool(human[expect].abs().sum(dim=-1).gt(0).all()) and float(human[~expect].abs().sum()) == 0.0
    # ...and without the mask (the rows before it existed) every step of those chunks counted as human
    unmasked = RolloutBatch.from_dict({k: v for k, v in batch.to_dict().items() if k != "human_mask"})
    assert int(unmasked.human_steps().sum()) == 2 * H != int(expect.sum())


def bc_positions(model, batch: RolloutBatch) -> torch.Tensor:
    """[N, H] bool: the chunk positions whose velocity error the BC loss on human chunks trains on, as
    the trainer calls it (app/rl/trainer.py): where its gradient reaches the predicted velocity."""
    ev = evaluate_chain(model, batch.obs, batch.chain, batch.sde_step)
    seen = {}
    velocity = model.policy.velocity

    def spy(*args, **kwargs):
        v, rest = velocity(*args, **kwargs)
        v.retain_grad()
        seen["v"] = v
        return v, rest

    model.policy.velocity = spy
    try:
        loss = flow_matching_loss(
            model.policy,
            ev.ctx,
            batch.human_action.float(),
            horizon=model.exec_horizon,
            mask=batch.intervention,
            step_mask=batch.human_steps(),
        )
    finally:
        del model.policy.velocity
    loss.backward()
    return seen["v"].grad.abs().sum(dim=-1) > 0


def test_the_bc_loss_sees_only_the_human_steps(arm):
    robot, guard = arm
    model, _, batch = _rollout(robot, guard)
    assert torch.equal(bc_positions(model, batch), batch.human_steps())
    unmasked = RolloutBatch.from_dict({k: v for k, v in batch.to_dict().items() if k != "human_mask"})
    old = bc_positions(model, unmasked)  # every executed step of an intervention row
    assert int(old.sum()) == 2 * EXEC and bool(old[0, :3].all())


def test_the_trainer_hands_the_bc_loss_exactly_the_human_steps(arm, monkeypatch):
    """A PI-RL update with BC on (intervention.bc_coef > 0): every BC call scores exactly the rows and
    steps a human drove, the ones whose human_action holds a command."""
    import app.rl.trainer as trainer

    robot, guard = arm
    model, _, batch = _rollout(robot, guard)
    calls = []
    real = trainer.flow_matching_loss

    def spy(policy, ctx, actions, horizon=None, mask=None, generator=None, step_mask=None):
        calls.append((actions.detach().clone(), mask.clone(), step_mask.clone(), horizon))
        return real(policy, ctx, actions, horizon, mask, generator, step_mask)

    monkeypatch.setattr(trainer, "flow_matching_loss", spy)
    torch.manual_seed(0)
    metrics = PIRLTrainer(copy.deepcopy(model), seed=0).update(batch)
    assert calls and metrics["losses/bc_loss"] > 0
    for actions, mask, step_mask, horizon in calls:
        scored = step_mask & mask[:, None]
        assert torch.equal(scored, actions.abs().sum(dim=-1) > 0)  # the human steps, nothing else
        assert horizon == EXEC
        assert int(scored.sum()) == 5  # one minibatch of the 4 chunks: steps 3-4 and 5-7 of the episode


def test_exec_horizon_and_episode_end_cut_the_chunk(arm):
    robot, guard = arm
    takeover = Takeover()
    episodes = _episode(robot, guard, takeover, seconds=7 / 30)  # 7 control steps
    executor = Executor(guard, episodes, takeover, exec_horizon=EXEC, chunk_size=H)
    home = torch.tensor([guard.present()[k] for k in guard.keys])
    run = executor.run_episode(lambda obs: home.expand(H, -1))
    assert run.steps == 7 and run.chunk == 2 and not run.active
    assert run.done and run.outcome.truncated and run.outcome.reason == "time_limit"
    assert executor.pacer.step_dt is not None and executor.pacer.dropped == 0


def test_random_takeover_chunk_rule():
    class _Eps:
        max_steps = 100

    ex = Executor.__new__(Executor)  # the rule needs no arm
    ex.takeover, ex.episodes, ex.exec_horizon = Takeover(), _Eps(), 5
    assert ex.takeover_chunk(random.Random(0), 1.0) is None  # nobody to take over with
    ex.takeover = Takeover(human=Pedal({"shoulder_pan.pos": 0.0}, 0, 0))
    assert ex.takeover_chunk(random.Random(0), 0.0) is None
    picks = {ex.takeover_chunk(random.Random(i), 1.0) for i in range(200)}
    assert picks == set(range(10))  # a chunk in the first half of the time limit: 100 // 5 // 2
