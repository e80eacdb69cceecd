"""A twin checkpoint is what the real run starts from: a tiny twin run (configs/sim_twin_reach.json, the
real learner and actor in process over loopback gRPC, two updates) writes its final checkpoint; its
`pretrained_model/` then starts `pirl learner` + `pirl actor` (`--policy_path`) on the held-out stand-in arm
and loads into `pirl eval`, as the checkpoint folder and as the pretrained folder alike."""

from __future__ import annotations

import gc
import os
import signal
import threading
from pathlib import Path

import pytest
import torch

from app.actor.loop import Actor
from app.eval import EvalConfig, run_eval
from app.eval.policy import load_policy
from app.rl.lerobot_policy import PIRLFlowPolicy
from app.run.parse import parse_run_config
from hardware.episodes import EpisodeConfig
from hardware.sim import STAND_IN, SimSO101FollowerConfig
from tests.app.actor.conftest import LearnerThread

REPO = Path(__file__).resolve().parents[2]
# What tests/app/conftest.py's tiny_run_config shrinks, on the twin config instead of the nominal one.
SHRINK = (
    "--policy.native.obs_hidden=32", "--policy.native.expert_hidden=32", "--policy.native.time_embed_dim=8",
    "--policy.rl.value_hidden=[32]", "--policy.rl.noise.hidden=[16]",
    "--policy.rl.ppo.epochs=1", "--policy.rl.ppo.minibatch_size=32",
    "--algorithm.chunks_per_update=12", "--episode.time_limit_s=1.0",
    "--transport.port=0", "--transport.backoff_initial_s=0.05", "--transport.backoff_max_s=0.3",
    "--learner.tensorboard=false", "--learner.progress=false",
    "--actor.progress_every=0", "--actor.sample_seed=0",
)  # fmt: skip


def twin_config(out, *extra):
    torch.set_num_threads(1)
    args = ["--config", "configs/sim_twin_reach.json", *SHRINK, f"--learner.output_dir={out}", *extra]
    return parse_run_config(args)


def trainable(policy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.model.get_trainable_state().items()}


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory):
    """Two PI-RL updates in the randomized twin; the learner writes its final checkpoint at max_updates."""
    here = os.getcwd()
    # this module-scoped run is outside tests/conftest.py's per-test signal restore: its actor's guard must
    # not leave the process-wide dispatcher behind for the tests that run next in this process
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    os.chdir(REPO)  # the config's paths are relative to the repository
    try:
        out = tmp_path_factory.mktemp("twin") / "run"
        learner = LearnerThread(twin_config(out, "--learner.max_updates=2", "--learner.save_every=0"))
        actor = Actor(
            twin_config(out, f"--transport.port={learner.port}", "--actor.actor_id=arm0"), progress=None
        )
        assert actor.robot.config.randomize.enable  # training sees a new twin at every reset
        runner = threading.Thread(target=actor.run, daemon=True)
        runner.start()
        learner.thread.join(timeout=120)
        actor.shutdown.set()
        runner.join(timeout=30)
        assert not learner.thread.is_alive(), "the twin learner did not reach max_updates=2 in 120 s"
        run = learner.learner
        initial = trainable(twin_config(out).make_policy())
        del actor, runner  # the guard's signal hooks die with it
        gc.collect()
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        yield {"checkpoint": run._last_checkpoint, "weights": run.algorithm.get_weights(), "initial": initial}
    finally:
        os.chdir(here)
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def test_the_twin_learner_writes_a_checkpoint_with_a_pretrained_folder(twin_run):
    ckpt = twin_run["checkpoint"]
    assert (
        ckpt is not None
        and (ckpt / "state.pt").is_file()
        and (ckpt / "pretrained_model" / "config.json").is_file()
    )
    saved = trainable(PIRLFlowPolicy.from_pretrained(ckpt / "pretrained_model"))
    assert saved.keys() == twin_run["weights"].keys()
    assert all(torch.equal(saved[k], twin_run["weights"][k]) for k in saved)  # the learner's last weights
    assert any(not torch.equal(saved[k], twin_run["initial"][k]) for k in saved)  # and training moved them


def test_the_real_run_starts_from_it_on_the_stand_in(twin_run, tmp_path, monkeypatch):
    """`pirl learner` and `pirl actor --policy_path=<twin>/pretrained_model` on the stand-in arm: the actor
    acts with exactly the twin's weights (pushed as v0 by the learner, checked against its own copy)."""
    monkeypatch.chdir(REPO)
    folder = twin_run["checkpoint"] / "pretrained_model"

    def real(*extra):
        cfg = twin_config(
            tmp_path / "real", "--robot.randomize.enable=false", "--robot.variant=stand_in", *extra
        )
        cfg.policy, cfg.policy_path = None, folder  # what --policy_path gives a config without a policy
        cfg.validate("learner")
        cfg.validate("actor")
        return cfg

    learner = LearnerThread(real())
    try:
        actor = Actor(real(f"--transport.port={learner.port}", "--actor.episodes=1"), progress=None)
        sent = []
        send = actor.client.send_rollout
        actor.client.send_rollout = lambda r: (sent.append(r), send(r))[1]
        assert actor.run() == 0
    finally:
        learner.stop()
    assert actor.robot.sim_params == STAND_IN and len(sent) == 1
    assert sent[0].meta["policy_version"] == 0  # the first (and only) episode ran on the learner's v0
    weights = actor.model.get_trainable_state()
    assert all(torch.equal(weights[k], twin_run["weights"][k]) for k in twin_run["weights"])


def test_pirl_eval_loads_the_checkpoint_and_its_pretrained_folder_alike(twin_run, monkeypatch):
    monkeypatch.chdir(REPO)
    results = []
    for policy in (twin_run["checkpoint"], twin_run["checkpoint"] / "pretrained_model"):
        loaded = trainable(load_policy(str(policy))[0])
        assert all(torch.equal(loaded[k], twin_run["weights"][k]) for k in twin_run["weights"])
        cfg = EvalConfig(
            policy=str(policy),
            episodes=2,
            robot=SimSO101FollowerConfig(task="reach", variant="stand_in"),
            episode=EpisodeConfig(time_limit_s=0.5, seed=1_000_000),
            progress=False,
        )
        results.append(run_eval(cfg, progress=None))
    a, b = results
    assert a.success.episodes == b.success.episodes == 2
    strip = [{k: v for k, v in e.items() if k != "wall_s"} for e in a.episodes]
    assert strip == [{k: v for k, v in e.items() if k != "wall_s"} for e in b.episodes]  # the same policy
