"""The reported metrics: post-processing of noisy score histograms (pure ε, sensitivity k)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.metrics import BIN_EDGES, dp_metrics, exact_metrics, metrics_from_histograms, score_histograms


def scores_and_labels(n: int = 4000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.float32)
    logits = rng.normal(-1.0, 1.2, n) + 2.0 * y
    return 1 / (1 + np.exp(-logits)), y


def test_histogram_metrics_match_the_exact_ones_without_noise():
    s, y = scores_and_labels()
    pos, neg = score_histograms(s, y)
    assert pos.sum() + neg.sum() == len(s) and len(pos) == len(BIN_EDGES) + 1
    m = metrics_from_histograms(pos, neg)
    assert m["accuracy"] == pytest.approx(((s > 0.5) == (y == 1)).mean(), abs=1e-12)  # 0.5 is a bin edge
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=0.01)  # binning only


def test_noisy_metrics_are_close_at_large_epsilon():
    s, y = scores_and_labels()
    exact = exact_metrics(s, y)
    noisy = dp_metrics(s, y, epsilon=Fraction(200), k=1)
    assert noisy["roc_auc"] == pytest.approx(exact["binned"]["roc_auc"], abs=0.005)
    assert noisy["accuracy"] == pytest.approx(exact["accuracy"], abs=0.005)
    assert abs(noisy["held_out_rows"] - len(s)) < 50


def test_noisy_metrics_differ_at_tiny_epsilon():
    s, y = scores_and_labels()
    exact = exact_metrics(s, y)
    # scale k/ε = 5000 per bin against ~4,000 rows: the figures are mostly noise
    noisy = dp_metrics(s, y, epsilon=Fraction(1, 1000), k=5)
    assert noisy["scale"] == pytest.approx(5000, rel=1e-6)
    far = [
        noisy[key] is None or abs(noisy[key] - exact[key]) > 0.01 for key in ("accuracy", "roc_auc")
    ]
    assert any(far)


def test_empty_or_one_class_histograms_give_no_auc():
    assert metrics_from_histograms(np.zeros(34), np.zeros(34)) == {"accuracy": None, "roc_auc": None}
    pos = np.zeros(34)
    neg = np.full(34, 3.0)
    assert metrics_from_histograms(pos, neg)["roc_auc"] is None


def test_held_out_rows_are_capped_per_unit_and_class(tmp_path):
    """A unit moves at most r positive and r negative counts; the choice is per unit (stable)."""
    import pandas as pd

    from training.split import SplitKey, per_unit_and_class

    key = SplitKey(tmp_path / "split.key")
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(30), rng.integers(1, 40, 30))
    frame = pd.DataFrame({"u": units, "v": rng.random(len(units))})
    y = (rng.random(len(units)) < 0.3).astype(np.float32)
    keep = per_unit_and_class(frame, "u", y, 3, key)
    kept = pd.DataFrame({"u": units[keep], "y": y[keep]})
    assert kept.groupby(["u", "y"]).size().max() == 3
    # every unit keeps min(3, its rows of that class) of each class
    expected = pd.DataFrame({"u": units, "y": y}).groupby(["u", "y"]).size().clip(upper=3)
    assert kept.groupby(["u", "y"]).size().equals(expected)
    # another unit arriving changes no other unit's choice
    extra = pd.DataFrame({"u": [99] * 10, "v": rng.random(10)})
    both = pd.concat([frame, extra], ignore_index=True)
    keep2 = per_unit_and_class(both, "u", np.concatenate([y, np.ones(10)]), 3, key)
    np.testing.assert_array_equal(keep2[: len(frame)], keep)
    assert keep2[len(frame):].sum() == 3
