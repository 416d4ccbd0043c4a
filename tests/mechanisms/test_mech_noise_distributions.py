"""Statistical tests: the noise has its claimed distribution, and the stated intervals cover.

OpenDP samples from a CSPRNG, so nothing here can be seeded. Each assertion is a test at level 1e-4
(p-value of a KS, chi-square or exact binomial test), so a correct implementation fails one of these
~20 assertions with probability about 2e-3 per run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction

import pytest
from scipy import stats

from mechanisms import Gaussian, LaplaceCount, LaplaceFloat, NoisyTopK, ThresholdCounts
from mechanisms.accuracy import discrete_laplace_tail

LEVEL = 1e-4


def _chisquare_vs_pmf(draws: Sequence[int], pmf: Callable[[int], float]) -> float:
    """Chi-square p-value of integer draws against `pmf`, pooling the tails so every bin expects >= 5."""
    n = len(draws)
    counts = Counter(draws)
    # central bins where n * pmf >= 5, then one bin for each tail
    half = 0
    while n * pmf(half + 1) >= 5 and n * pmf(-(half + 1)) >= 5:
        half += 1
    observed = [counts.get(x, 0) for x in range(-half, half + 1)]
    expected = [n * pmf(x) for x in range(-half, half + 1)]
    inside = sum(expected) / n
    observed += [sum(c for x, c in counts.items() if x < -half), sum(c for x, c in counts.items() if x > half)]
    expected += [n * (1 - inside) / 2, n * (1 - inside) / 2]
    return float(stats.chisquare(observed, expected).pvalue)


def _discrete_laplace_pmf(t: float) -> Callable[[int], float]:
    norm = (1 - math.exp(-1 / t)) / (1 + math.exp(-1 / t))
    return lambda x: norm * math.exp(-abs(x) / t)


def _binom_p(successes: int, n: int, p: float) -> float:
    return float(stats.binomtest(successes, n, p).pvalue)


def test_laplace_float_is_laplace() -> None:
    m = LaplaceFloat(epsilon=Fraction(1, 2), sensitivity=1.0)
    n = 10_000
    # half the inputs at 0, half at 100: the noise must not depend on the value
    out = m.release([0.0] * (n // 2) + [100.0] * (n // 2))
    noise = out[: n // 2] + [x - 100.0 for x in out[n // 2 :]]
    assert stats.kstest(noise, "laplace", args=(0.0, m.scale)).pvalue > LEVEL
    covered = sum(abs(x) <= m.ci95() for x in noise)
    assert _binom_p(covered, n, 0.95) > LEVEL


@pytest.mark.parametrize("epsilon, sensitivity", [(Fraction(1, 2), 1), (Fraction(1, 3), 2)])
def test_laplace_count_is_discrete_laplace(epsilon: Fraction, sensitivity: int) -> None:
    m = LaplaceCount(epsilon=epsilon, sensitivity=sensitivity)
    n = 20_000
    noise = [x - 7 for x in m.release([7] * n)]
    assert _chisquare_vs_pmf(noise, _discrete_laplace_pmf(m.scale)) > LEVEL
    # the integer interval over-covers by design; its exact coverage is known
    half_width = int(m.ci95())
    exact = 1 - discrete_laplace_tail(half_width + 1, m.scale)
    assert exact >= 0.95
    covered = sum(abs(x) <= half_width for x in noise)
    assert _binom_p(covered, n, exact) > LEVEL


def test_gaussian_is_normal() -> None:
    m = Gaussian(rho=Fraction(1, 8), sensitivity=1.0)
    assert m.scale == pytest.approx(2.0)
    n = 10_000
    noise = m.release([0.0] * n)
    assert stats.kstest(noise, "norm", args=(0.0, m.scale)).pvalue > LEVEL
    covered = sum(abs(x) <= m.ci95() for x in noise)
    assert _binom_p(covered, n, 0.95) > LEVEL


def test_integer_gaussian_is_discrete_gaussian() -> None:
    m = Gaussian(rho=Fraction(1, 8), sensitivity=1.0, integer=True)
    n = 20_000
    noise = m.release([0] * n)
    assert all(isinstance(x, int) for x in noise)
    weights = {x: math.exp(-(x * x) / (2 * m.scale**2)) for x in range(-200, 201)}
    total = sum(weights.values())
    assert _chisquare_vs_pmf(noise, lambda x: weights.get(x, 0.0) / total) > LEVEL


def test_threshold_drops_low_keeps_high_and_cuts_at_threshold() -> None:
    # δ = 1e-9 puts the threshold near 21: a zero count passes with probability ~e^-21 per run
    m = ThresholdCounts(epsilon=Fraction(1), delta=Fraction(1, 10**9), max_partitions=1, max_rows=1)
    assert m.scale == 1.0 and m.threshold >= 20
    runs = 1_000
    kept_edge = 0
    high_noise = []
    for _ in range(runs):
        out = m.release({"low": 0, "edge": m.threshold, "high": m.threshold + 60})
        assert "low" not in out
        assert "high" in out
        kept_edge += "edge" in out
        high_noise.append(out["high"] - (m.threshold + 60))
    # a key at exactly the threshold is kept when its noise is >= 0: P = (1 + P(X = 0)) / 2
    p_zero = _discrete_laplace_pmf(m.scale)(0)
    assert _binom_p(kept_edge, runs, (1 + p_zero) / 2) > LEVEL
    assert _chisquare_vs_pmf(high_noise, _discrete_laplace_pmf(m.scale)) > LEVEL


def test_noisy_max_picks_clear_max_at_high_epsilon() -> None:
    m = NoisyTopK(epsilon=Fraction(50), sensitivity=1, monotonic=False)
    # a gap of 100 at scale 0.04: the chance of another index is e^-2500
    assert all(m.release([0, 3, 100, 2]) == [2] for _ in range(100))
    top = NoisyTopK(epsilon=Fraction(50), sensitivity=1, k=3, monotonic=True)
    assert all(top.release([1, 300, 3, 200, 100]) == [1, 3, 4] for _ in range(50))


def test_noisy_max_near_uniform_at_tiny_epsilon() -> None:
    m = NoisyTopK(epsilon=Fraction(1, 10**6), sensitivity=1, monotonic=False)
    n = 3_000
    counts = Counter(m.release([0, 1, 2, 3])[0] for _ in range(n))
    assert stats.chisquare([counts[i] for i in range(4)]).pvalue > LEVEL


def test_noisy_max_two_candidates_exact_probability() -> None:
    """With exponential noise (permute-and-flip), P(the lower of two scores, gap g) = exp(-g/scale) / 2."""
    m = NoisyTopK(epsilon=Fraction(1, 2), sensitivity=1.0, monotonic=True)
    assert m.scale == 2.0
    n = 3_000
    lower = sum(m.release([0.0, 2.0]) == [0] for _ in range(n))
    assert _binom_p(lower, n, math.exp(-1.0) / 2) > LEVEL
