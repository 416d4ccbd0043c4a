"""ROC, AUC, TPR at FPR and Clopper–Pearson on hand-made scores, against hand counts and scipy/sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from training.audit import attack_auc, clopper_pearson, roc_curve, tpr_at_fpr
from training.audit.metrics import downsample_roc, summarize

MEMBERS = np.array([0.9, 0.8, 0.7, 0.6, 0.3])
NONMEMBERS = np.array([0.85, 0.5, 0.4, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01])


def test_auc_of_separated_and_reversed_scores() -> None:
    assert attack_auc([2.0, 3.0, 4.0], [0.0, 1.0]) == 1.0
    assert attack_auc([0.0, 1.0], [2.0, 3.0, 4.0]) == 0.0
    assert attack_auc(np.ones(7), np.ones(5)) == 0.5


def test_auc_hand_counts_and_ties() -> None:
    # member > non-member pairs: 10 + 9 + 9 + 9 + 7 = 44 of 50
    assert attack_auc(MEMBERS, NONMEMBERS) == pytest.approx(44 / 50)
    # ties count one half: (0.5 + 1 + 1) * 2 + (0 + 0.5 + 0.5) = 6 of 9
    assert attack_auc([1, 1, 0], [1, 0, 0]) == pytest.approx(6 / 9)


def test_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    m = np.round(rng.normal(0.3, 1, 300), 1)
    n = np.round(rng.normal(0.0, 1, 400), 1)
    expected = roc_auc_score(np.r_[np.ones(300), np.zeros(400)], np.r_[m, n])
    assert attack_auc(m, n) == pytest.approx(expected, abs=1e-12)


def test_auc_of_identical_distributions_is_one_half() -> None:
    # Under H0 the Mann–Whitney AUC has sd sqrt((n_m + n_n + 1) / (12 n_m n_n)); 4 sd: false failure 6e-5
    rng = np.random.default_rng(2)
    n_m, n_n = 2000, 3000
    auc = attack_auc(rng.normal(size=n_m), rng.normal(size=n_n))
    assert abs(auc - 0.5) < 4 * math.sqrt((n_m + n_n + 1) / (12 * n_m * n_n))


def test_roc_staircase() -> None:
    roc = roc_curve(MEMBERS, NONMEMBERS)
    assert roc.tp[0] == 0 and roc.fp[0] == 0 and roc.thresholds[0] == np.inf
    assert roc.tp[-1] == 5 and roc.fp[-1] == 10
    assert np.all(np.diff(roc.tp) >= 0) and np.all(np.diff(roc.fp) >= 0)
    assert len(roc.thresholds) == 16  # 15 distinct scores and +inf
    tied = roc_curve([1, 1, 0], [1, 0, 0])
    assert tied.tp.tolist() == [0, 2, 3] and tied.fp.tolist() == [0, 1, 3]


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [(0.0, 0.2), (0.05, 0.2), (0.1, 0.8), (0.25, 0.8), (0.3, 1.0), (1.0, 1.0)],
)
def test_tpr_at_fpr_hand_case(alpha: float, expected: float) -> None:
    # thresholds: 0.9 (1 member, 0 non), 0.85 (1, 1), 0.8 (2, 1), 0.7 (3, 1), 0.6 (4, 1), 0.5 (4, 2),
    # 0.4 (4, 3), 0.3 (5, 3): the largest TPR with FPR <= alpha, no interpolation
    assert tpr_at_fpr(roc_curve(MEMBERS, NONMEMBERS), alpha) == pytest.approx(expected)


def test_tpr_at_fpr_with_ties_and_resolution() -> None:
    roc = roc_curve([1, 1, 0], [1, 0, 0])
    assert tpr_at_fpr(roc, 0.0) == 0.0
    assert tpr_at_fpr(roc, 1 / 3) == pytest.approx(2 / 3)
    # FPR 0.01 of 100 non-members admits exactly 1 false positive (threshold 3.0); 0.001 admits none
    roc = roc_curve(np.r_[np.full(10, 5.0), np.full(20, 3.0), np.full(70, -5.0)], np.r_[4.0, 2.0, np.full(98, -1.0)])
    assert tpr_at_fpr(roc, 0.01) == pytest.approx(0.3)
    assert tpr_at_fpr(roc, 0.001) == pytest.approx(0.1)
    # 0.07 * 100 rounds to 7.000000000000001 and 0.29 * 100 to 28.999999999999996: 29 must still count
    roc = roc_curve(np.r_[np.full(50, 1.0)], np.r_[np.full(29, 2.0), np.full(71, 0.0)])
    assert tpr_at_fpr(roc, 0.29) == 1.0


def test_downsample_keeps_points_on_the_curve() -> None:
    rng = np.random.default_rng(3)
    roc = roc_curve(rng.normal(0.5, 1, 5000), rng.normal(0, 1, 5000))
    pts = downsample_roc(roc)
    assert 10 < len(pts["fpr"]) <= 200
    assert pts["fpr"][0] == 0.0 and pts["tpr"][0] == 0.0 and pts["fpr"][-1] == 1.0 and pts["tpr"][-1] == 1.0
    assert np.all(np.diff(pts["fpr"]) >= 0) and np.all(np.diff(pts["tpr"]) >= 0)
    on_curve = set(zip(roc.fp.tolist(), roc.tp.tolist(), strict=True))
    for f, t in zip(pts["fpr"], pts["tpr"], strict=True):
        assert (round(f * 5000), round(t * 5000)) in on_curve
    fpr, tpr = np.array(pts["fpr"]), np.array(pts["tpr"])
    for g in (1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0):  # the kept points reach the curve's best TPR there
        assert tpr[fpr <= g * (1 + 1e-9)].max() == pytest.approx(tpr_at_fpr(roc, g))


@pytest.mark.parametrize("n", [1, 7, 50, 1000])
def test_clopper_pearson_matches_scipy(n: int) -> None:
    ks = sorted({0, 1, n // 3, n // 2, n - 1, n} - {-1})
    lo, hi = clopper_pearson(np.array(ks), n)
    for k, lo_k, hi_k in zip(ks, lo, hi, strict=True):
        for confidence in (0.95,):
            ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
            assert lo_k == pytest.approx(ci.low, abs=1e-12)
            assert hi_k == pytest.approx(ci.high, abs=1e-12)
    ci = stats.binomtest(3, 40).proportion_ci(confidence_level=0.99, method="exact")
    lo99, hi99 = clopper_pearson(3, 40, confidence=0.99)
    assert (float(lo99), float(hi99)) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_clopper_pearson_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        clopper_pearson(5, 4)
    with pytest.raises(ValueError):
        clopper_pearson(0, 0)
    with pytest.raises(ValueError):
        clopper_pearson(1, 4, confidence=1.0)


def test_summary_shape() -> None:
    s = summarize(np.linspace(0, 1, 101))
    assert s["mean"] == pytest.approx(0.5) and s["median"] == pytest.approx(0.5)
    assert s["quantiles"] == pytest.approx({"0.05": 0.05, "0.25": 0.25, "0.5": 0.5, "0.75": 0.75, "0.95": 0.95})


def test_scores_must_be_numbers() -> None:
    with pytest.raises(ValueError, match="NaN"):
        roc_curve([0.1, float("nan")], [0.2])
    with pytest.raises(ValueError, match="non-empty"):
        attack_auc([], [0.2])
