"""PI-RL with a VLA through the real runtime: an in-process learner and actor over loopback gRPC, the
simulated SO-101 with its state and one small camera, a tiny SmolVLA / pi0 as `--policy.type=pirl_vla`.

The actor must run the VLA's LeRobot pre-processor (task tokens, normalised state) before sampling, ship
those exact tensors in the rollout, and the learner must re-score them, update, and push only the
trainable subset (bf16), which the actor loads at a chunk boundary after the frozen-part digest check.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
import torch

from app.actor.loop import Actor, ActorError
from app.learner.loop import Learner
from app.run.parse import parse_run_config
from app.transport.codec import Parameters, encode_parameters

CONFIG = "configs/vla/sim_tiny_vla.json"  # recipe 4's CPU try-out: a tiny random VLA on the sim


def _args(tmp_path, base_type: str, *extra: str) -> list[str]:
    """The recipe's config, shrunk to test size (1 s episodes, an update every 6 chunks)."""
    return [
        "--config", CONFIG, f"--policy.base_type={base_type}", "--algorithm.chunks_per_update=6",
        "--policy.rl.value_hidden=[16]", "--episode.time_limit_s=1.0",
        "--transport.port=0", "--transport.backoff_initial_s=0.05", "--transport.backoff_max_s=0.3",
        f"--learner.output_dir={tmp_path / 'run'}", "--learner.tensorboard=false", "--learner.progress=false",
        "--actor.progress_every=0", "--actor.sample_seed=0",
        *extra,
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[3])


@pytest.mark.slow
@pytest.mark.parametrize("base_type", ["smolvla", "pi0"])
def test_vla_learner_and_actor_exchange_rollouts_and_weights(base_type: str, tmp_path):
    torch.set_num_threads(1)
    learner = Learner(parse_run_config(_args(tmp_path, base_type)), progress=None)
    port = learner.start_server()
    thread = threading.Thread(target=learner.run, daemon=True)
    thread.start()
    try:
        cfg = parse_run_config(_args(tmp_path, base_type, f"--transport.port={port}", "--actor.episodes=6"))
        actor = Actor(cfg, progress=lambda _line: None)
        sent, loaded = [], []
        send, load = actor.client.send_rollout, actor.weights.load
        actor.client.send_rollout = lambda r: (sent.append(r), send(r))
        # copies: a push's tensors are views of the client's staging buffer, reused after release()
        actor.weights.load = lambda p: (
            loaded.append(replace(p, state={k: v.clone() for k, v in p.state.items()})),
            load(p),
        )
        t_run = time.perf_counter()
        assert actor.run() == 0
        wall = time.perf_counter() - t_run

        assert len(sent) == 6
        b = sent[0].batch
        tokens = b["obs.observation.language.tokens"]
        assert (
            tokens.dtype == torch.int64 and b["obs.observation.language.attention_mask"].dtype == torch.bool
        )
        assert b["obs.observation.images.front"].shape[1:] == (3, 48, 64)
        # The task's tokens, as the VLA's own pre-processor makes them.
        expect = actor.policy.prepare_observation(
            {"observation.state": torch.zeros(1, 9), "observation.images.front": torch.zeros(1, 3, 48, 64)}
        )["observation.language.tokens"]
        assert torch.equal(tokens, expect.expand(tokens.shape[0], -1))

        assert learner.updates >= 1, "the learner never updated on the VLA rollouts"
        assert loaded[0].dtype == "bfloat16"  # push_bf16: only the trainable subset, in bfloat16
        trainable = {n for n, p in actor.model.named_parameters() if p.requires_grad}
        assert set(loaded[0].state) == trainable
        assert len(trainable) < len(dict(actor.model.named_parameters()))
        assert max(p.version for p in loaded) >= 1, "the actor never loaded an updated version"
        assert max(int(r.batch["policy_version"].max()) for r in sent) >= 1
        # The updated weights the actor holds are the learner's (up to the bf16 rounding of the push).
        newest = max(loaded, key=lambda p: p.version)
        for name, value in newest.state.items():
            mine = dict(actor.model.named_parameters())[name]
            assert torch.equal(mine, value.to(mine.dtype)), name
        params = learner.algorithm.get_weights()
        nbytes = len(encode_parameters(Parameters(version=0, state=params), bf16=True))
        print(
            f"\n{base_type}: {len(sent)} episodes in {wall:.1f} s, updates {learner.updates}, "
            f"chunk {actor.runner.infer_ms:.1f} ms, push {nbytes} bytes bf16 ({sum(v.numel() for v in params.values())} "
            f"trainable values)"
        )
    finally:
        learner.shutdown.set()
        thread.join(timeout=30)


def test_an_actor_with_another_tiny_vla_refuses_the_learners_weights(tmp_path):
    torch.set_num_threads(1)
    learner = Learner(parse_run_config(_args(tmp_path, "pi0")), progress=None)
    port = learner.start_server()
    thread = threading.Thread(target=learner.run, daemon=True)
    thread.start()
    try:
        cfg = parse_run_config(
            _args(tmp_path, "pi0", f"--transport.port={port}", "--actor.episodes=1", "--policy.tiny.seed=1")
        )
        actor = Actor(cfg, progress=lambda _line: None)
        with pytest.raises(ActorError, match="frozen"):
            actor.run()
    finally:
        learner.shutdown.set()
        thread.join(timeout=30)


def test_pirl_eval_runs_a_saved_vla_policy_through_its_pre_processor(tmp_path):
    """`pirl eval --policy <pirl_vla folder>` on the sim with a camera: the VLA's pre-processor runs
    before each deterministic chunk (without it the model would have no task tokens)."""
    from app.eval import parse_config
    from app.eval.runner import run_eval
    from app.rl.vla_policy import PIRLVLAPolicy

    torch.set_num_threads(1)
    cfg = parse_run_config(_args(tmp_path, "smolvla"))
    PIRLVLAPolicy(cfg.policy).save_pretrained(tmp_path / "vla")
    camera = '{"front": {"type": "sim_mujoco", "camera": "front", "width": 64, "height": 48}}'
    ecfg = parse_config(
        [f"--policy={tmp_path / 'vla'}", "--episodes=2", "--robot.type=sim_so101", "--robot.task=reach",
         f"--robot.cameras={camera}"]
    )  # fmt: skip
    result = run_eval(ecfg, progress=None)
    assert len(result.episodes) == 2
    assert all(ep["steps"] > 0 for ep in result.episodes)
