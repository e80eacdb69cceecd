"""The Wilson score interval against published values, an independent implementation, and its edges."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from app.eval.stats import wilson_interval

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


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (3, 7), (45, 50), (50, 50), (0, 100), (1, 100)])
def test_matches_scipy_for_many_counts_and_levels(k, n, confidence):
    ref = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    r = wilson_interval(k, n, confidence)
    assert r.low == pytest.approx(ref.low, abs=1e-12)
    assert r.high == pytest.approx(ref.high, abs=1e-12)


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
