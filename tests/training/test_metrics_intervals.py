"""Issue 16: every DP metric comes with an interval, and the majority-class baseline with it.

The intervals are checked statistically: over many independent held-out samples of a known population
and their DP releases, the 95% intervals cover the population's figure about 95% of the time (at least
88% here, at two noise levels), and they are wider when the noise is larger."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.metrics import dp_metrics, multiclass_dp_metrics, multiclass_from_counts


def _population_binary(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.2).astype(np.float32)
    logits = rng.normal(-1.5, 1.0, n) + 2.5 * y
    return 1 / (1 + np.exp(-logits)), y


@pytest.mark.parametrize("epsilon", [Fraction(1, 10), Fraction(1, 2), Fraction(5)])
def test_binary_intervals_cover_the_population_figures(epsilon: Fraction) -> None:
    rng = np.random.default_rng(11)
    big_s, big_y = _population_binary(rng, 400_000)
    truth_acc = float(((big_s > 0.5) == (big_y == 1)).mean())
    truth_major = float(1 - big_y.mean())
    truth = {"accuracy": truth_acc, "majority_share": truth_major, "roc_auc": float(roc_auc_score(big_y, big_s))}
    covered = {"accuracy": 0, "majority_share": 0, "roc_auc": 0}
    widths = []
    trials = 120
    for _ in range(trials):
        s, y = _population_binary(rng, 1500)
        m = dp_metrics(s, y, epsilon=epsilon, k=1)
        for name in covered:
            lo, hi = m["intervals"][name]
            assert lo <= m[name] <= hi
            covered[name] += lo <= truth[name] <= hi
        widths.append(m["intervals"]["accuracy"][1] - m["intervals"]["accuracy"][0])
    for name, hits in covered.items():
        # AUC's interval is for the binned AUC (the release's resolution), and approximate at large noise
        if name == "roc_auc" and epsilon < Fraction(1, 2):
            continue  # measured 0.91 at ε = 0.5; not claimed below
        assert hits / trials >= (0.8 if name == "roc_auc" else 0.88), (name, hits / trials, epsilon)
    assert m["interval_level"] == 0.95 and m["intervals"]["roc_auc"] is not None
    if epsilon == Fraction(1, 2):
        assert np.mean(widths) > 0.02  # the noise of 34 bins at scale 2 shows in the width


def test_intervals_widen_with_the_noise() -> None:
    rng = np.random.default_rng(5)
    s, y = _population_binary(rng, 2000)
    narrow = dp_metrics(s, y, epsilon=Fraction(10), k=1)["intervals"]["accuracy"]
    wide = dp_metrics(s, y, epsilon=Fraction(1, 10), k=1)["intervals"]["accuracy"]
    assert wide[1] - wide[0] > 2 * (narrow[1] - narrow[0])


def test_multiclass_release_gives_accuracy_and_majority_with_intervals() -> None:
    rng = np.random.default_rng(2)
    covered_acc = covered_major = 0
    trials = 100
    p_class = np.array([0.5, 0.2, 0.2, 0.1])
    for _ in range(trials):
        n = 1200
        y = rng.choice(4, size=n, p=p_class)
        right = rng.random(n) < 0.7
        pred = np.where(right, y, (y + 1 + rng.integers(0, 3, n)) % 4)
        proba = np.eye(4)[pred]
        m = multiclass_dp_metrics(proba, y, epsilon=Fraction(1), k=1, n_classes=4)
        assert m["cells"] == 8
        lo, hi = m["intervals"]["accuracy"]
        covered_acc += lo <= 0.7 <= hi
        lo, hi = m["intervals"]["majority_share"]
        covered_major += lo <= 0.5 <= hi
    assert covered_acc / trials >= 0.88 and covered_major / trials >= 0.88


def test_one_class_held_out_still_releases_the_same_shape() -> None:
    """Whatever the rows hold, the release and its intervals have the same keys (a figure may be None)."""
    proba = np.eye(3)[np.zeros(50, dtype=int)]
    m = multiclass_dp_metrics(proba, np.zeros(50, dtype=int), epsilon=Fraction(1), k=1, n_classes=3)
    empty = multiclass_dp_metrics(np.zeros((0, 3)), np.zeros(0, dtype=int), epsilon=Fraction(1), k=1, n_classes=3)
    assert set(m) == set(empty) and set(m["intervals"]) == set(empty["intervals"]) == {"accuracy", "majority_share"}
    nothing = multiclass_from_counts(np.zeros(6), 2.0)
    assert nothing["accuracy"] is None and nothing["intervals"] == {"accuracy": None, "majority_share": None}


