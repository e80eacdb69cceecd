"""The Wilson score interval against published values, the closed form, and its edges."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from app.eval.stats import wilson_interval


def closed_form(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson (1927), written out (pirl's own implementation before it used SciPy): the reference."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


# Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (score interval, no continuity
# correction), 95 %: (successes, n, lower, upper) to the 4 decimals printed there.
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("k", "n", "low", "high"), NEWCOMBE)
def test_matches_newcombes_published_table(k, n, low, high):
    r = wilson_interval(k, n)
    assert (round(r.low, 4), round(r.high, 4)) == (low, high)


def test_matches_the_closed_form_on_a_grid_of_counts_and_levels():
    # Every k for small n, the ends and the middle for larger n, at the levels people report.
    grid = [(k, n) for n in range(1, 13) for k in range(n + 1)]
    grid += [(k, n) for n in (20, 29, 50, 100, 263, 1000) for k in {0, 1, n // 2, round(0.9 * n), n - 1, n}]
    for confidence in (0.5, 0.8, 0.9, 0.95, 0.99, 0.999):
        for k, n in grid:
            r = wilson_interval(k, n, confidence)
            low, high = closed_form(k, n, confidence)
            assert abs(r.low - low) <= 1e-12 and abs(r.high - high) <= 1e-12, (k, n, confidence)
            assert type(r.low) is float and type(r.high) is float


def test_all_failures_and_all_successes_are_pinned_to_the_ends():
    # 0/N: the lower end is exactly 0 and the upper end is z^2 / (n + z^2); N/N mirrors it.
    z2 = 1.959963984540054**2
    for n in (1, 5, 20, 100):
        none, every = wilson_interval(0, n), wilson_interval(n, n)
        assert none.low == 0.0 and none.high == pytest.approx(z2 / (n + z2))
        assert every.high == 1.0 and every.low == pytest.approx(n / (n + z2))
        assert none.rate == 0.0 and every.rate == 1.0


def test_interval_narrows_with_more_episodes_and_widens_with_confidence():
    widths = [
        wilson_interval(round(0.9 * n), n).high - wilson_interval(round(0.9 * n), n).low
        for n in (10, 50, 200)
    ]
    assert widths[0] > widths[1] > widths[2]
    assert wilson_interval(45, 50, 0.99).low < wilson_interval(45, 50, 0.95).low


def test_no_episodes_means_nothing_is_known():
    r = wilson_interval(0, 0)
    assert (r.low, r.high, r.rate) == (0.0, 1.0, None)
    assert str(r) == "no episodes counted"


def test_text_form():
    assert str(wilson_interval(9, 10)) == "90.0% (9/10), 95% CI [59.6%, 98.2%]"


@pytest.mark.parametrize(
    ("k", "n", "conf"), [(-1, 5, 0.95), (6, 5, 0.95), (0, -1, 0.95), (1, 2, 1.0), (1, 2, 0.0)]
)
def test_bad_inputs_are_refused(k, n, conf):
    with pytest.raises(ValueError):
        wilson_interval(k, n, conf)
