"""GNMax and Confident-GNMax: noise on every class's vote, of the stated σ, drawn by OpenDP.

OpenDP samples from a CSPRNG, so nothing here can be seeded. Each statistical assertion is a test at
level 1e-4 (as in tests/mechanisms), so a correct implementation fails one with probability ~2e-3 a run.
"""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
from scipy import integrate, stats

from training.pate import ABSTAIN, ConfidentGNMax, GNMax, vote_histogram
from training.pate import _noise

LEVEL = 1e-4


def _argmax_pmf(votes: np.ndarray, sigma: float) -> np.ndarray:
    """P(argmax_j (votes_j + N(0, σ²)) = j), noise on every class, by numerical integration."""

    def density(x: float, j: int) -> float:
        others = np.delete(votes, j)
        return stats.norm.pdf(x, loc=votes[j], scale=sigma) * float(np.prod(stats.norm.cdf(x, loc=others, scale=sigma)))

    lo, hi = votes.min() - 12 * sigma, votes.max() + 12 * sigma
    return np.array([integrate.quad(density, lo, hi, args=(j,), limit=200)[0] for j in range(len(votes))])


# ---------------------------------------------------------------- the noise itself


def test_noisy_votes_have_gaussian_noise_of_std_sigma_on_every_class() -> None:
    sigma, n_classes, n = 3.0, 5, 4000
    rng = np.random.default_rng(0)  # the votes only; the noise is OpenDP's
    votes = rng.integers(0, 50, size=(n, n_classes))
    noise = GNMax(sigma=sigma, n_classes=n_classes).noisy_votes(votes) - votes
    assert noise.shape == (n, n_classes)
    for j in range(n_classes):
        assert stats.kstest(noise[:, j], stats.norm(scale=sigma).cdf).pvalue > LEVEL, f"class {j}"
    # independent across classes: every pairwise correlation is within noise of 0
    corr = np.corrcoef(noise, rowvar=False)[np.triu_indices(n_classes, 1)]
    assert np.all(np.abs(corr) < 4.5 / math.sqrt(n))


def test_single_histogram_noise_and_threshold_noise() -> None:
    sigma = 2.0
    g = GNMax(sigma=sigma, n_classes=3)
    one = g.noisy_votes([4, 0, 7])
    assert one.shape == (3,) and np.all(one != np.array([4, 0, 7]))
    # the threshold step: max vote + N(0, σ1²)
    c = ConfidentGNMax(threshold=10.0, sigma1=sigma, sigma2=1.0, n_classes=3)
    votes = np.tile([1, 10, 3], (3000, 1))  # max = T: passes with probability 1/2
    passed = c.passes(votes)
    assert stats.binomtest(int(passed.sum()), len(passed), 0.5).pvalue > LEVEL


def test_noise_comes_from_opendp() -> None:
    g = GNMax(sigma=1.0, n_classes=4)
    with mock.patch.object(_noise, "_measurement", wraps=_noise._measurement) as measurement:
        g.answer_batch(np.zeros((10, 4), dtype=int))
    measurement.assert_called_once_with(1.0)  # one OpenDP measurement call per batch


# ---------------------------------------------------------------- GNMax


def test_ties_give_a_uniform_argmax() -> None:
    n_classes, n = 8, 4000
    labels = GNMax(sigma=2.0, n_classes=n_classes).answer_batch(np.full((n, n_classes), 30))
    counts = np.bincount(labels, minlength=n_classes)
    assert stats.chisquare(counts).pvalue > LEVEL


def test_one_large_vote_wins_at_tiny_sigma() -> None:
    n_classes, n = 10, 500
    where = np.arange(n) % n_classes
    votes = np.zeros((n, n_classes), dtype=int)
    votes[np.arange(n), where] = 5
    g = GNMax(sigma=0.05, n_classes=n_classes)  # 5 = 100 σ
    assert np.array_equal(g.answer_batch(votes), where)
    assert g.answer([0] * 9 + [5]) == 9


def test_argmax_distribution_is_that_of_noise_on_every_class() -> None:
    # a study's bug was noise on one class only: that would shift these probabilities
    votes, sigma, n = np.array([10, 8, 5]), 3.0, 6000
    labels = GNMax(sigma=sigma, n_classes=3).answer_batch(np.tile(votes, (n, 1)))
    expected = _argmax_pmf(votes, sigma)
    assert expected.sum() == pytest.approx(1.0, abs=1e-6)
    assert stats.chisquare(np.bincount(labels, minlength=3), n * expected).pvalue > LEVEL


# ---------------------------------------------------------------- Confident-GNMax


def test_confident_answers_confident_queries_and_abstains_on_the_rest() -> None:
    c = ConfidentGNMax(threshold=150.0, sigma1=0.05, sigma2=0.05, n_classes=4)
    assert c.answer([0, 200, 50, 0]) == 1
    assert c.answer([60, 40, 50, 100]) is None
    votes = np.array([[0, 200, 50, 0], [60, 40, 50, 100], [0, 0, 0, 250], [100, 100, 25, 25]])
    assert c.answer_batch(votes).tolist() == [1, ABSTAIN, 3, ABSTAIN]


@pytest.mark.parametrize("gap", [0.0, -1.0, 1.0])
def test_threshold_pass_rate(gap: float) -> None:
    # P(max + N(0, σ1²) >= T) = Φ((max − T)/σ1)
    sigma1, n = 4.0, 3000
    c = ConfidentGNMax(threshold=100.0, sigma1=sigma1, sigma2=1.0, n_classes=3)
    votes = np.tile([0, int(100 + gap * sigma1), 20], (n, 1))
    answered = int(np.sum(c.answer_batch(votes) != ABSTAIN))
    assert stats.binomtest(answered, n, stats.norm.cdf(gap)).pvalue > LEVEL


def test_answered_queries_get_the_noisy_argmax() -> None:
    c = ConfidentGNMax(threshold=10.0, sigma1=0.05, sigma2=2.0, n_classes=3)
    labels = c.answer_batch(np.tile([50, 50, 0], (3000, 1)))
    assert np.all(labels != ABSTAIN)
    counts = np.bincount(labels, minlength=3)
    assert counts[2] == 0 and stats.chisquare(counts[:2]).pvalue > LEVEL


def test_max_answers_caps_in_row_order() -> None:
    c = ConfidentGNMax(threshold=100.0, sigma1=0.05, sigma2=0.05, n_classes=2)
    votes = np.array([[200, 0], [0, 0], [0, 200], [200, 0], [0, 200]])
    assert c.answer_batch(votes, max_answers=2).tolist() == [0, ABSTAIN, 1, ABSTAIN, ABSTAIN]
    assert c.answer_batch(votes, max_answers=0).tolist() == [ABSTAIN] * 5
    assert c.answer_batch(votes).tolist() == [0, ABSTAIN, 1, 0, 1]
    with pytest.raises(ValueError):
        c.answer_batch(votes, max_answers=-1)


# ---------------------------------------------------------------- histograms and validation


def test_vote_histogram_one_vote_per_teacher() -> None:
    rng = np.random.default_rng(1)
    predictions = rng.integers(0, 4, size=(250, 30))
    h = vote_histogram(predictions, 4)
    assert h.shape == (30, 4) and np.all(h.sum(axis=1) == 250)
    assert h[7, 2] == np.sum(predictions[:, 7] == 2)
    for bad in (predictions[0], predictions + 1, predictions - 1, predictions.astype(float), predictions == 1):
        with pytest.raises(ValueError):
            vote_histogram(bad, 4)


def test_empty_batches() -> None:
    assert GNMax(sigma=1.0, n_classes=2).answer_batch(np.zeros((0, 2), dtype=int)).shape == (0,)
    confident = ConfidentGNMax(threshold=1.0, sigma1=1.0, sigma2=1.0, n_classes=2)
    assert confident.answer_batch(np.zeros((0, 2), dtype=int)).shape == (0,)


@pytest.mark.parametrize(
    "votes", [[1, 2], [[1, 2, 3, 4]], [-1, 0, 1], [0.5, 1, 2], [True, False, True], [np.nan, 1, 2], [[[1, 2, 3]]]]
)
def test_bad_votes_raise(votes: object) -> None:
    g = GNMax(sigma=1.0, n_classes=3)
    with pytest.raises(ValueError):
        g.answer_batch(votes)


def test_answer_takes_one_histogram() -> None:
    with pytest.raises(ValueError):
        GNMax(sigma=1.0, n_classes=2).answer([[1, 2], [3, 4]])
    with pytest.raises(ValueError):
        ConfidentGNMax(threshold=1.0, sigma1=1.0, sigma2=1.0, n_classes=2).answer([[1, 2], [3, 4]])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sigma=0.0, n_classes=3),
        dict(sigma=-1.0, n_classes=3),
        dict(sigma=1.0, n_classes=1),
        dict(sigma=1.0, n_classes=2.0),
        dict(sigma=2.0**31, n_classes=3),
    ],
)
def test_bad_gnmax_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        GNMax(**kwargs)


def test_bad_confident_raises() -> None:
    with pytest.raises(ValueError):
        ConfidentGNMax(threshold=float("nan"), sigma1=1.0, sigma2=1.0, n_classes=3)
    with pytest.raises(ValueError):
        ConfidentGNMax(threshold=1.0, sigma1=0.0, sigma2=1.0, n_classes=3)
