"""RolloutBatch: weights-only serialisation, slicing, concatenation, episode ordering, validation."""

from __future__ import annotations

import io

import pytest
import torch

from app.rl.batch import ChunkRecord, RolloutBatch
from app.rl.sampling import sample
from tests.app.rl.toy import bandit_batch, tiny_model


def _batch(n: int = 6, seed: int = 0) -> RolloutBatch:
    model = tiny_model(method="flow_sde")
    b, _ = bandit_batch(model, n, torch.Generator().manual_seed(seed), torch.zeros(2))
    return b


def test_round_trip_through_torch_save_weights_only() -> None:
    b = _batch()
    buf = io.BytesIO()
    torch.save(b.to_dict(), buf)
    buf.seek(0)
    back = RolloutBatch.from_dict(torch.load(buf, weights_only=True))
    for k, v in b.to_dict().items():
        assert torch.equal(v, back.to_dict()[k]), k


def test_cat_index_and_sort_by_episode() -> None:
    a, b = _batch(4, 0), _batch(3, 1)
    b.episode_id[:] = torch.tensor([0, 7, 7])
    b.chunk_index[:] = torch.tensor([1, 1, 0])
    a.episode_id[:] = torch.tensor([7, 0, 3, 3])
    a.chunk_index[:] = torch.tensor([2, 0, 1, 0])
    both = RolloutBatch.cat([a, b])
    assert len(both) == 7
    s = both.sorted_by_episode()
    assert s.episode_id.tolist() == [0, 0, 3, 3, 7, 7, 7]
    assert s.chunk_index.tolist() == [0, 1, 0, 1, 0, 1, 2]
    # Rows travel whole: the reward of (episode 7, chunk 2) is a's first row.
    assert float(s.reward[6]) == float(a.reward[0])


def test_ragged_fields_are_rejected_with_a_clear_message() -> None:
    d = _batch().to_dict()
    d["reward"] = d["reward"][:3]
    with pytest.raises(ValueError, match="rows"):
        RolloutBatch.from_dict(d)
    d = _batch().to_dict()
    del d["done"]
    with pytest.raises(KeyError, match="done"):
        RolloutBatch.from_dict(d)


def test_from_records_mixes_policy_and_human_chunks() -> None:
    model = tiny_model(method="flow_sde")
    gen = torch.Generator().manual_seed(0)
    obs = {"observation.state": torch.randn(2, 3, generator=gen)}
    s = sample(model, obs, generator=gen)
    recs = [
        ChunkRecord(
            obs={k: v[i] for k, v in obs.items()},
            reward=0.5,
            chain=s.chain[i],
            sde_step=int(s.sde_step[i]),
            logprob=float(s.logprob[i]),
            value=float(s.value[i]),
            episode_id=3,
            chunk_index=i,
        )
        for i in range(2)
    ]
    recs.append(
        ChunkRecord(
            obs={"observation.state": torch.zeros(3)},
            reward=1.0,
            done=True,
            intervention=True,
            takeover_start=True,
            human_action=torch.ones(4, 2),
            episode_id=3,
            chunk_index=2,
        )
    )
    b = RolloutBatch.from_records(recs, action_dim=2)
    assert len(b) == 3 and b.chain.shape == (3, 5, 4, 2)
    assert torch.equal(b.chain[:2], s.chain) and torch.equal(b.chain[2], torch.zeros(5, 4, 2))
    assert b.intervention.tolist() == [False, False, True] and b.done.tolist() == [False, False, True]
    assert torch.equal(b.human_action[2], torch.ones(4, 2)) and torch.equal(
        b.human_action[0], torch.zeros(4, 2)
    )
    torch.testing.assert_close(b.logprob[:2], s.logprob)
    assert b.human_steps().tolist() == [[False] * 4, [False] * 4, [True] * 4]
    with pytest.raises(ValueError, match="chain"):
        RolloutBatch.from_records(recs[2:], action_dim=2)


def test_human_steps_default_and_explicit_masks_cat_together() -> None:
    a, b = _batch(2, 0), _batch(3, 1)
    a.intervention[1] = True
    assert a.human_mask is None and a.human_steps().tolist() == [[False] * 4, [True] * 4]
    b.human_mask = torch.zeros(3, 4, dtype=torch.bool)
    b.human_mask[0, 2:] = True  # takeover began at step 2 of the chunk
    both = RolloutBatch.cat([a, b])
    assert both.human_mask is not None
    assert both.human_steps()[1].tolist() == [True] * 4 and both.human_steps()[2].tolist() == [
        False,
        False,
        True,
        True,
    ]
    # Optional in the dict form too (old senders omit it).
    d = a.to_dict()
    assert "human_mask" not in d and RolloutBatch.from_dict(d).human_mask is None
