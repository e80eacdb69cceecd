"""Success-rate statistics: a rate from N episodes is only worth reporting with its uncertainty.

The Wilson score interval keeps its coverage near the nominal level for small N and for rates near 0 or
1 (where the normal "p +- z*sqrt(p(1-p)/n)" interval collapses to zero width), which is exactly where
robot evaluations live (20-100 episodes, 90 %+ success). Reference: E. B. Wilson (1927), "Probable
inference, the law of succession, and statistical inference", JASA 22:209-212; Newcombe (1998) tabulates
it (Statistics in Medicine 17:857-872, method 3). SciPy computes it (`scipy.stats.binomtest`);
tests/app/eval/test_stats.py checks the result against Newcombe's values and the closed form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SuccessRate:
    """k successes out of n episodes with a two-sided confidence interval on the true rate."""

    successes: int
    episodes: int
    low: float  # lower end of the confidence interval (0..1)
    high: float  # upper end (0..1)
    confidence: float  # nominal coverage of [low, high], e.g. 0.95

    @property
    def rate(self) -> float | None:
        """k / n; None when no episode was counted (a rate of nothing is not 0 %)."""
        return self.successes / self.episodes if self.episodes else None

    def __str__(self) -> str:
        if not self.episodes:
            return "no episodes counted"
        return (
            f"{self.rate:.1%} ({self.successes}/{self.episodes}), "
            f"{self.confidence:.0%} CI [{self.low:.1%}, {self.high:.1%}]"
        )


def wilson_interval(successes: int, episodes: int, confidence: float = 0.95) -> SuccessRate:
    """Wilson score interval for a binomial proportion (no continuity correction), from SciPy's
    `binomtest(k, n).proportion_ci(method="wilson")`.

    With no episodes the interval is the whole [0, 1] (nothing is known). At k = 0 the lower end is
    exactly 0 and at k = n the upper end is exactly 1, as the closed form gives.
    """
    if episodes < 0 or not 0 <= successes <= episodes:
        raise ValueError(f"need 0 <= successes <= episodes, got {successes}/{episodes}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if episodes == 0:
        return SuccessRate(0, 0, 0.0, 1.0, confidence)
    from scipy.stats import binomtest  # ~1 s to import: only when a rate is computed

    ci = binomtest(successes, episodes).proportion_ci(confidence_level=confidence, method="wilson")
    return SuccessRate(successes, episodes, float(ci.low), float(ci.high), confidence)


def scene_rates(
    outcomes: Sequence[bool],
    confidence: float = 0.95,
    stochastic: Sequence[int] | None = None,
    samples: int = 0,
) -> list[SuccessRate]:
    """Each evaluated scene's success with its Wilson interval, in evaluation order: its one deterministic
    episode (k of 1), or with `stochastic` (`--explore_samples`: successes per scene out of `samples`
    stochastic replays) those replays. One scene's interval is wide (one episode: [0, 79 %] or [21, 100 %]
    at 95 %); what the picture shows is which scenes fail, and how reliably."""
    if stochastic is None:
        return [wilson_interval(int(bool(ok)), 1, confidence) for ok in outcomes]
    if len(stochastic) != len(outcomes):
        raise ValueError(f"{len(stochastic)} stochastic counts for {len(outcomes)} scenes")
    return [wilson_interval(int(k), samples, confidence) for k in stochastic]
