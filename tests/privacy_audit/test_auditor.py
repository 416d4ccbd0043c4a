"""The auditor itself: its bounds are valid (never above the truth, beyond their α) and tight enough.

The outputs here are synthetic (numpy draws from known distributions, seeded): they test the
statistics, not a mechanism. Mechanisms are audited in the other files of this folder.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mechanisms.audit import (
    AuditResult,
    audit,
    clopper_pearson_lower,
    clopper_pearson_upper,
    epsilon_lower_bound,
    epsilon_lower_bound_for_sets,
)

RUNS = 80
# P(a bound above the truth) <= 0.05 per run: more than this many in RUNS runs has probability < 1e-6
MOST_ALARMS = int(stats.binom.isf(1e-6, RUNS, 0.05))


def test_clopper_pearson_matches_scipy_binomtest() -> None:
    for k, n in [(0, 10), (3, 10), (10, 10), (512, 1000), (1, 10**6)]:
        # a one-sided (1 - a) bound is one end of the two-sided (1 - 2a) exact interval
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
        assert float(clopper_pearson_lower(k, n, alpha=0.05)) == pytest.approx(ci.low, abs=1e-12)
        assert float(clopper_pearson_upper(k, n, alpha=0.05)) == pytest.approx(ci.high, abs=1e-12)
    assert float(clopper_pearson_lower(0, 7, alpha=0.01)) == 0.0
    assert float(clopper_pearson_upper(7, 7, alpha=0.01)) == 1.0
    # k = 0: the upper bound solves (1 - p)^n = alpha
    assert float(clopper_pearson_upper(0, 1000, alpha=0.05)) == pytest.approx(1 - 0.05 ** (1 / 1000))


def test_clopper_pearson_covers() -> None:
    rng = np.random.default_rng(1)
    n, p, alpha = 200, 0.3, 0.05
    k = rng.binomial(n, p, size=20_000)
    lower_fails = float(np.mean(clopper_pearson_lower(k, n, alpha=alpha) > p))
    upper_fails = float(np.mean(clopper_pearson_upper(k, n, alpha=alpha) < p))
    assert lower_fails <= alpha and upper_fails <= alpha


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0])
def test_laplace_bound_is_below_and_near_the_truth(epsilon: float) -> None:
    # Laplace(b) shifted by Δ: the privacy loss is exactly Δ / b
    rng = np.random.default_rng(int(10 * epsilon))
    n = 200_000
    x, y = rng.laplace(epsilon, 1.0, n), rng.laplace(0.0, 1.0, n)
    result = epsilon_lower_bound(x, y, alpha=0.05)
    assert result.epsilon_lower_bound <= epsilon
    assert result.epsilon_lower_bound >= 0.9 * epsilon
    assert result.witness is not None and result.witness.epsilon == result.epsilon_lower_bound
    assert result.samples == n and result.evaluation_samples == n // 2 and result.sets_tested == 10


def test_both_directions_are_audited() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.laplace(1.0, 1.0, 100_000), rng.laplace(0.0, 1.0, 100_000)
    forward = epsilon_lower_bound(x, y, alpha=0.05)
    backward = epsilon_lower_bound(y, x, alpha=0.05)
    assert forward.epsilon_lower_bound > 0.8 and backward.epsilon_lower_bound > 0.8
    # a one-sided violation (D' never lands in a set D often does) is found whichever way it is given
    z = np.where(rng.random(100_000) < 0.1, 50.0, rng.laplace(0.0, 1.0, 100_000))
    w = rng.laplace(0.0, 1.0, 100_000)
    assert epsilon_lower_bound(z, w, alpha=0.05).epsilon_lower_bound > 3
    assert epsilon_lower_bound(w, z, alpha=0.05).epsilon_lower_bound > 3


def test_false_alarms_are_rare() -> None:
    """Identical distributions have ε = 0: a positive bound is a false alarm, at most α of the time."""
    rng = np.random.default_rng(3)
    alarms = 0
    for _ in range(RUNS):
        x, y = rng.laplace(0.0, 1.0, 1_000), rng.laplace(0.0, 1.0, 1_000)
        alarms += epsilon_lower_bound(x, y, alpha=0.05).epsilon_lower_bound > 0
    assert alarms <= MOST_ALARMS


def test_exact_privacy_loss_is_not_exceeded_at_small_samples() -> None:
    """The bound holds at its level whatever the sample size: a tight ε = 1 is exceeded rarely."""
    rng = np.random.default_rng(4)
    over = sum(
        epsilon_lower_bound(rng.laplace(1.0, 1.0, 1_000), rng.laplace(0.0, 1.0, 1_000), alpha=0.05).epsilon_lower_bound > 1.0
        for _ in range(RUNS)
    )
    assert over <= MOST_ALARMS


def test_delta_is_subtracted() -> None:
    # D lands in {x > 100} with probability 0.02 and D' never: only ε-DP with δ >= 0.02 can explain it
    rng = np.random.default_rng(5)
    n = 200_000
    x = np.where(rng.random(n) < 0.02, 1000.0, rng.laplace(0.0, 1.0, n))
    y = rng.laplace(0.0, 1.0, n)
    assert epsilon_lower_bound(x, y, delta=0.0, alpha=0.05).epsilon_lower_bound > 5
    assert epsilon_lower_bound(x, y, delta=0.03, alpha=0.05).epsilon_lower_bound == 0.0


def test_vector_outputs_combine_coordinates() -> None:
    """Two independent measurements with ε/2 each: only a set over both coordinates sees ε."""
    rng = np.random.default_rng(6)
    n = 200_000
    x = np.column_stack([rng.laplace(0.5, 1.0, n), rng.laplace(0.5, 1.0, n), rng.laplace(0.0, 1.0, n)])
    y = np.column_stack([rng.laplace(0.0, 1.0, n), rng.laplace(0.0, 1.0, n), rng.laplace(0.0, 1.0, n)])
    result = epsilon_lower_bound(x, y, alpha=0.05)
    assert 0.6 < result.epsilon_lower_bound <= 1.0
    assert result.witness is not None and "naive-Bayes" in result.witness.description


def test_discrete_outputs() -> None:
    # randomized response on {0, 1, 2}: P(truth) = e / (e + 2), ε = 1 exactly
    rng = np.random.default_rng(7)
    n = 100_000
    p_true = math.e / (math.e + 2)

    def rr(truth: int) -> np.ndarray:
        keep = rng.random(n) < p_true
        other = (truth + rng.integers(1, 3, n)) % 3
        return np.where(keep, truth, other)

    result = epsilon_lower_bound(rr(0), rr(1), alpha=0.05)
    assert 0.85 < result.epsilon_lower_bound <= 1.0


def test_fixed_sets() -> None:
    rng = np.random.default_rng(8)
    x, y = rng.laplace(1.0, 1.0, 100_000), rng.laplace(0.0, 1.0, 100_000)
    result = epsilon_lower_bound_for_sets(x, y, {"x >= 1": lambda o: o[:, 0] >= 1.0}, alpha=0.05)
    assert 0.9 < result.epsilon_lower_bound <= 1.0
    assert result.sets_tested == 2 and result.samples == 100_000


def test_audit_draws_in_batches() -> None:
    rng = np.random.default_rng(9)
    seen: list[int] = []

    def sample(n: int) -> np.ndarray:
        seen.append(n)
        return rng.laplace(0.0, 1.0, n)

    result = audit(sample, sample, samples=2_500, batch=1_000, alpha=0.05)
    assert isinstance(result, AuditResult) and seen == [1_000, 1_000, 500] * 2
    assert result.consistent_with(0.0) == (result.epsilon_lower_bound == 0.0)
    assert result.to_json()["samples"] == 2_500


@pytest.mark.parametrize(
    "x, y, kwargs",
    [
        ([np.nan, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], {}),
        ([1.0, 2.0, 3.0, 4.0], [[1.0, 2.0]] * 4, {}),
        ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], {"alpha": 0.0}),
        ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], {"delta": 1.0}),
        ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], {"candidates": 0}),
        ([1.0], [1.0], {}),
    ],
)
def test_rejects_bad_input(x: list, y: list, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        epsilon_lower_bound(x, y, **kwargs)
