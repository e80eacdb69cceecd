"""Hostile rollouts for a PI-RL learner: one good episode built the way an actor builds one, and every kind
of bad one the learner must refuse with INVALID_ARGUMENT (docs/runtime.md, "Hostile input and stops").

Shared by tests/app/learner/test_faults_hostile.py (in-process learner) and benchmarks/faults.py (a real
learner process):

    from benchmarks.hostile import good_batch, hostile_batches, hostile_messages
    batch = good_batch(policy, episode_id=900, version=0)          # {field: tensor}, 6 rows
    for kind, batch in hostile_batches(policy).items(): ...        # 11 bad batches (spec violations)
    for kind, (method, messages) in hostile_messages(policy).items(): ...  # whole calls, incl. envelopes
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lerobot.transport import services_pb2
from lerobot.transport.utils import state_to_bytes

from app.rl.batch import RolloutBatch
from app.rl.sampling import sample
from app.transport.codec import ROLLOUT_FORMAT, Rollout, encode_rollout, to_messages


def good_batch(policy: Any, episode_id: int, chunks: int = 6, version: int = 0, seed: int = 0) -> dict:
    """One episode of `chunks` rows sampled from `policy` (a native pirl_flow policy), as a flat dict."""
    model = policy.model
    obs = {"observation.state": torch.randn(chunks, model.policy.cfg.state_dim)}
    s = sample(model, obs, generator=torch.Generator().manual_seed(seed))
    done = torch.zeros(chunks, dtype=torch.bool)
    done[-1] = True
    batch = RolloutBatch(
        obs=obs, chain=s.chain, sde_step=s.sde_step, logprob=s.logprob, value=s.value,
        reward=torch.rand(chunks), done=done, truncated=torch.zeros(chunks, dtype=torch.bool),
        bootstrap_value=torch.zeros(chunks), intervention=torch.zeros(chunks, dtype=torch.bool),
        human_action=torch.zeros(chunks, model.policy.chunk_size, model.policy.action_dim),
        takeover_start=torch.zeros(chunks, dtype=torch.bool),
        policy_version=torch.full((chunks,), version), episode_id=torch.full((chunks,), episode_id),
        chunk_index=torch.arange(chunks), group_id=torch.full((chunks,), -1),
    )  # fmt: skip
    return batch.to_dict()


def hostile_batches(
    policy: Any, version: int = 0, good: Callable[[int], dict] | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """kind -> a batch that breaks the learner's RolloutSpec in that one way (episode ids 900, 901)."""
    make = good or (lambda ep: good_batch(policy, ep, version=version))

    def edit(fn: Callable[[dict], Any]) -> dict:
        d = make(900)
        fn(d)
        return d

    n, k1, h, a = make(900)["chain"].shape  # rows, num_steps + 1, chunk size, action dim
    return {
        "duplicate ids": edit(lambda d: d["chunk_index"].zero_()),
        "wrong obs shape": edit(lambda d: d.update({"obs.observation.state": torch.zeros(n, 5)})),
        "wrong chain shape": edit(lambda d: d.update({"chain": torch.zeros(n, k1 - 1, h, a)})),
        "NaN values": edit(lambda d: d["reward"].__setitem__(2, float("nan"))),
        "infinite chain": edit(lambda d: d["chain"].view(-1).__setitem__(0, float("inf"))),
        "unknown key": edit(lambda d: d.update({"evil": torch.zeros(n)})),
        "missing field": edit(lambda d: d.pop("logprob")),
        "wrong dtype": edit(lambda d: d.update({"reward": d["reward"].double()})),
        "rows disagree": edit(lambda d: d.update({"value": torch.zeros(n - 1)})),
        "no rows": {key: v[:0] for key, v in make(901).items()},
        "sde_step out of range": edit(lambda d: d["sde_step"].fill_(99)),
    }


def rollout_messages(payload: bytes) -> list:
    return list(to_messages(payload, services_pb2.Transition))


def hostile_messages(
    policy: Any, version: int = 0, good: Callable[[int], dict] | None = None
) -> dict[str, tuple[str, list]]:
    """kind -> (RPC method, its messages): every hostile batch as a rollout, plus bad envelopes and bad
    episode stats. Each must be answered INVALID_ARGUMENT."""
    make = good or (lambda ep: good_batch(policy, ep, version=version))
    out: dict[str, tuple[str, list]] = {
        kind: ("SendTransitions", rollout_messages(encode_rollout(Rollout("evil", 0, batch, {"steps": 30}))))
        for kind, batch in hostile_batches(policy, version, make).items()
    }
    envelope = {"format": ROLLOUT_FORMAT, "actor_id": "evil", "episode": 1, "meta": {}}
    out["missing batch"] = ("SendTransitions", rollout_messages(state_to_bytes(envelope)))
    out["unknown envelope key"] = (
        "SendTransitions",
        rollout_messages(state_to_bytes({**envelope, "batch": make(902), "x": 1})),
    )
    bad_meta = encode_rollout(Rollout("evil", 2, make(903), {"steps": "many"}))
    out["meta steps not an integer"] = ("SendTransitions", rollout_messages(bad_meta))
    out["bad episode stats"] = (
        "SendInteractions",
        list(to_messages(b'{"type": "episode", "return": "high"}', services_pb2.InteractionMessage)),
    )
    return out
