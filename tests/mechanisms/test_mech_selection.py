"""Quantiles by the exponential mechanism from counts, checked against OpenDP's make_private_quantile."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest
from scipy import stats

from mechanisms import ExponentialQuantile, candidate_grid
from mechanisms._opendp import dp

LEVEL = 1e-4  # p-value threshold of the statistical test below (false-failure rate per run)


def _reference_scores(values: list[float], candidates: list[float], alpha: float) -> list[int]:
    t = dp.t.make_quantile_score_candidates(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance(), candidates, alpha
    )
    return list(t(values))


@pytest.mark.parametrize("alpha", [Fraction(1, 2), Fraction(1, 4), Fraction(9, 10), Fraction(0), Fraction(1)])
def test_scores_match_opendp(alpha: Fraction) -> None:
    values = [0.0, 1.0, 1.0, 2.0, 3.5, 7.0, 7.0, 7.0, 9.0, 12.0]
    candidates = [-1.0, 0.0, 1.0, 2.5, 7.0, 8.0, 20.0]
    q = ExponentialQuantile(epsilon=Fraction(1), alpha=alpha, candidates=candidates, max_rows=1)
    below = [sum(v < c for v in values) for c in candidates]
    above = [sum(v > c for v in values) for c in candidates]
    ours = q.scores(below, above)
    reference = _reference_scores(values, candidates, float(alpha))
    # OpenDP keeps alpha exactly when the float is a short dyadic (1/2, 1/4, 0, 1); 0.9 it rounds to
    # 9000/10000, which scales every score (and the sensitivity) by the same factor
    factor = 1 if alpha.denominator in (1, 2, 4) else 10_000 // alpha.denominator
    assert [factor * s for s in ours] == reference


@pytest.mark.parametrize("alpha, expected", [(Fraction(1, 2), 50.0), (Fraction(1, 4), 25.0), (Fraction(9, 10), 90.0)])
def test_quantile_concentrates_at_high_epsilon(alpha: Fraction, expected: float) -> None:
    candidates = candidate_grid(0, 100, integer=True)
    q = ExponentialQuantile(epsilon=Fraction(20), alpha=alpha, candidates=candidates, max_rows=1)
    values = [float(i) for i in range(101)]
    draws = [q.release(values) for _ in range(50)]
    assert all(abs(d - expected) <= 1 for d in draws)


def test_release_from_histogram_equals_release() -> None:
    candidates = [0.0, 10.0, 20.0]
    q = ExponentialQuantile(epsilon=Fraction(50), alpha=Fraction(1, 2), candidates=candidates, max_rows=1)
    assert q.release_from_histogram([0, 40, 100], [0, 0, 0], [100, 60, 0]) == 10.0
    assert q.release([10.0] * 30) == 10.0


def test_matches_make_private_quantile_in_distribution() -> None:
    """Same candidates, alpha and scale: the selected-index frequencies agree (two-sample chi-square)."""
    candidates = [float(c) for c in range(0, 11)]
    values = [float(v % 13) for v in range(40)]
    alpha = Fraction(1, 4)
    q = ExponentialQuantile(epsilon=Fraction(1, 4), alpha=alpha, candidates=candidates, max_rows=1)
    reference = dp.m.make_private_quantile(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.symmetric_distance(),
        dp.max_divergence(),
        candidates=candidates,
        alpha=float(alpha),
        scale=q.scale,
    )
    assert reference.map(1) == pytest.approx(0.25, rel=1e-12)
    n = 2_000
    below = [sum(v < c for v in values) for c in candidates]
    equal = [sum(v == c for v in values) for c in candidates]
    above = [sum(v > c for v in values) for c in candidates]
    ours = Counter(q.release_from_histogram(below, equal, above) for _ in range(n))
    theirs = Counter(reference(values) for _ in range(n))
    # pool rarely chosen candidates so that every cell expects >= 5
    cells: list[list[int]] = []
    pending = [0, 0]
    for c in candidates:
        pending = [pending[0] + ours[c], pending[1] + theirs[c]]
        if sum(pending) >= 20:
            cells.append(pending)
            pending = [0, 0]
    if sum(pending):
        if cells:
            cells[-1] = [cells[-1][0] + pending[0], cells[-1][1] + pending[1]]
        else:
            cells.append(pending)
    assert len(cells) >= 3  # the test has power: the choice is spread
    table = [[a for a, _ in cells], [b for _, b in cells]]
    assert stats.chi2_contingency(table).pvalue > LEVEL


def test_candidate_grid() -> None:
    assert candidate_grid(0, 5, integer=True) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert candidate_grid(0.5, 3.5, integer=True) == [1.0, 2.0, 3.0]
    assert candidate_grid(0, 1, integer=False, max_candidates=5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    big = candidate_grid(0, 10**6, integer=True, max_candidates=1024)
    step = big[1] - big[0]
    assert len(big) <= 1024 and big[0] == 0.0 and 10**6 - step < big[-1] <= 10**6
    assert all(float(g).is_integer() for g in big)
    assert all(b - a == step for a, b in zip(big, big[1:]))  # an exact lattice: values bin on candidates
    assert candidate_grid(3.0, 3.0, integer=False) == [3.0]
    wide = candidate_grid(-1e308, 1e308, integer=False, max_candidates=3)
    assert wide == [-1e308, 0.0, 1e308]
    with pytest.raises(ValueError):
        candidate_grid(0.2, 0.8, integer=True)
    with pytest.raises(ValueError):
        candidate_grid(0, 1, integer=False, max_candidates=1)
