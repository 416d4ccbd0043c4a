"""The DP ceiling (Kairouz et al. 2015), the ceiling check with sampling margins, and ε lower bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from training.audit import ceiling_check, dp_ceiling, epsilon_lower_bound, roc_curve

MEMBERS = np.array([0.9, 0.8, 0.7, 0.6, 0.3])
NONMEMBERS = np.array([0.85, 0.5, 0.4, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01])


def test_ceiling_values() -> None:
    e = math.e
    assert float(dp_ceiling(0.01, epsilon=1.0, delta=1e-5)) == pytest.approx(e * 0.01 + 1e-5)
    assert float(dp_ceiling(0.001, epsilon=0.1, delta=0.0)) == pytest.approx(math.exp(0.1) * 0.001)
    # at large FPR the complementary test binds: 1 - e^-ε (1 - δ - FPR)
    assert float(dp_ceiling(0.5, epsilon=1.0, delta=1e-5)) == pytest.approx(1 - (0.5 - 1e-5) / e)
    assert float(dp_ceiling(0.0, epsilon=2.0, delta=1e-3)) == pytest.approx(1e-3)
    # ε = 0, δ = 0: no test beats chance
    grid = np.linspace(0, 1, 11)
    assert dp_ceiling(grid, epsilon=0.0) == pytest.approx(grid)
    ceiling = dp_ceiling(grid, epsilon=0.7, delta=1e-6)
    assert np.all(np.diff(ceiling) >= 0) and np.all(ceiling >= grid) and ceiling[-1] == 1.0


def test_ceiling_rejects_bad_privacy_parameters() -> None:
    with pytest.raises(ValueError):
        dp_ceiling(0.1, epsilon=-1.0)
    with pytest.raises(ValueError):
        dp_ceiling(0.1, epsilon=math.inf)
    with pytest.raises(ValueError):
        dp_ceiling(0.1, epsilon=1.0, delta=1.0)


def test_ceiling_check_hand_case() -> None:
    roc = roc_curve(MEMBERS, NONMEMBERS)
    check = ceiling_check(roc, 0.1, epsilon=0.5, delta=0.01)
    # threshold 0.6: 4 of 5 members, 1 of 10 non-members
    assert check["tpr"] == pytest.approx(0.8) and check["fpr"] == pytest.approx(0.1)
    tpr_ci = stats.binomtest(4, 5).proportion_ci(confidence_level=0.95, method="exact")
    fpr_ci = stats.binomtest(1, 10).proportion_ci(confidence_level=0.95, method="exact")
    assert check["tpr_lower_95"] == pytest.approx(tpr_ci.low)
    assert check["fpr_upper_95"] == pytest.approx(fpr_ci.high)
    assert check["ceiling"] == pytest.approx(math.exp(0.5) * 0.1 + 0.01)
    assert check["ceiling_at_fpr_upper_95"] == pytest.approx(float(dp_ceiling(fpr_ci.high, epsilon=0.5, delta=0.01)))
    assert check["exceeds_ceiling"] is (tpr_ci.low > check["ceiling_at_fpr_upper_95"])


def test_ceiling_check_flags_a_clear_violation_only() -> None:
    # perfectly separated, 1000 each: TPR 1 at FPR 0; FPR_hi = 1 - 0.025^(1/1000) ≈ 0.0037
    roc = roc_curve(np.ones(1000), np.zeros(1000))
    assert ceiling_check(roc, 0.001, epsilon=1.0)["exceeds_ceiling"] is True
    assert ceiling_check(roc, 0.001, epsilon=6.0)["exceeds_ceiling"] is False  # e^6 * 0.0037 > 1


def test_epsilon_lower_bound_of_perfect_separation() -> None:
    n = 100
    roc = roc_curve(np.ones(n), np.zeros(n))
    out = epsilon_lower_bound(roc)
    m = out["thresholds_tested"]
    side = 0.05 / m / 2  # Bonferroni: each one-sided bound at level 0.025 / m
    tpr_lo = side ** (1 / n)
    fpr_hi = 1 - side ** (1 / n)
    assert out["epsilon_lower_bound"] == pytest.approx(math.log(tpr_lo / fpr_hi))
    assert out["tpr_lower"] == pytest.approx(tpr_lo) and out["fpr_upper"] == pytest.approx(fpr_hi)


def test_epsilon_lower_bound_is_zero_without_signal() -> None:
    rng = np.random.default_rng(5)
    roc = roc_curve(rng.normal(size=500), rng.normal(size=500))
    assert epsilon_lower_bound(roc)["epsilon_lower_bound"] == 0.0
    assert epsilon_lower_bound(roc_curve(np.ones(50), np.ones(50)))["epsilon_lower_bound"] == 0.0


def test_epsilon_lower_bound_never_beats_a_true_epsilon() -> None:
    """Randomized response is exactly ε-DP: its bound must stay <= ε, and come close with many trials.

    Members answer 1 with probability e^ε/(1+e^ε), non-members with 1/(1+e^ε): the point rates sit on
    the ceiling, so bounds from point estimates would exceed ε in about half the runs. With the 95%
    Bonferroni bounds a run exceeds with probability < 0.5%: 20 seeded runs, none may exceed.
    """
    epsilon = 1.0
    p = math.exp(epsilon) / (1 + math.exp(epsilon))
    bounds = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        members = (rng.random(2000) < p).astype(float)
        nonmembers = (rng.random(2000) < 1 - p).astype(float)
        bounds.append(epsilon_lower_bound(roc_curve(members, nonmembers))["epsilon_lower_bound"])
    assert max(bounds) <= epsilon
    assert min(bounds) > 0.7  # power: 2000 trials pin ε within 0.3


def test_epsilon_lower_bound_accounts_for_delta() -> None:
    roc = roc_curve(np.r_[np.ones(30), np.zeros(970)], np.zeros(1000))
    assert epsilon_lower_bound(roc, delta=0.0)["epsilon_lower_bound"] > 0
    assert epsilon_lower_bound(roc, delta=0.05)["epsilon_lower_bound"] == 0.0  # 3% TPR is within δ
