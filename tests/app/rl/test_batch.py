"""RolloutBatch: weights-only serialisation, slicing, concatenation, episode ordering, validation."""

from __future__ import annotations

import io

import pytest
import torch

from app.rl.batch import RolloutBatch
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
