"""GAE over chunks: episode boundaries, terminal vs truncated bootstrap, against a naive reference."""

from __future__ import annotations

import pytest
import torch

from app.rl.gae import compute_gae


def _naive(reward, value, done, trunc, boot, ep, gamma, lam):
    """Straight from the definition: A_t = sum_l (gamma*lam)^l delta_{t+l} within an episode."""
    n = len(reward)
    adv = []
    for i in range(n):
        total, coef, j = 0.0, 1.0, i
        while True:
            last = j == n - 1 or ep[j + 1] != ep[j]
            nxt = (0.0 if done[j] else boot[j]) if last else value[j + 1]
            total += coef * (reward[j] + gamma * nxt - value[j])
            if last:
                break
            coef *= gamma * lam
            j += 1
        adv.append(total)
    return torch.tensor(adv)


def test_two_step_terminal_episode_by_hand() -> None:
    r, v = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.25])
    adv, ret = compute_gae(
        r,
        v,
        torch.tensor([False, True]),
        torch.tensor([False, False]),
        torch.zeros(2),
        torch.tensor([0, 0]),
        gamma=0.9,
        lam=0.8,
    )
    d1 = 2.0 - 0.25
    d0 = 1.0 + 0.9 * 0.25 - 0.5
    assert adv.tolist() == pytest.approx([d0 + 0.72 * d1, d1])
    assert ret.tolist() == pytest.approx([d0 + 0.72 * d1 + 0.5, d1 + 0.25])


def test_truncation_bootstraps_and_termination_does_not() -> None:
    r, v = torch.tensor([1.0]), torch.tensor([0.0])
    kw = {"bootstrap_value": torch.tensor([10.0]), "episode_id": torch.tensor([0]), "gamma": 0.5, "lam": 1.0}
    a_trunc, _ = compute_gae(r, v, torch.tensor([False]), torch.tensor([True]), **kw)
    a_done, _ = compute_gae(r, v, torch.tensor([True]), torch.tensor([False]), **kw)
    assert float(a_trunc) == pytest.approx(1.0 + 0.5 * 10.0)
    assert float(a_done) == pytest.approx(1.0)


def test_matches_naive_reference_on_random_episodes() -> None:
    gen = torch.Generator().manual_seed(0)
    ep = torch.tensor([0] * 5 + [1] * 3 + [2] * 4 + [3])
    n = len(ep)
    r, v, boot = (torch.randn(n, generator=gen) for _ in range(3))
    done = torch.zeros(n, dtype=torch.bool)
    trunc = torch.zeros(n, dtype=torch.bool)
    done[4], trunc[7], done[12] = True, True, True  # episode 2 is cut by the batch (bootstrap)
    adv, ret = compute_gae(r, v, done, trunc, boot, ep, gamma=0.97, lam=0.9)
    ref = _naive(r.tolist(), v.tolist(), done.tolist(), trunc.tolist(), boot.tolist(), ep.tolist(), 0.97, 0.9)
    torch.testing.assert_close(adv, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ret, ref + v, rtol=1e-5, atol=1e-5)


def test_row_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="rows"):
        compute_gae(
            torch.zeros(3), torch.zeros(2), torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3)
        )
