"""The attacks' statistics against independent recomputations, and offline LiRA's reference protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from training.audit import AuditData, InvalidAuditInput, lira_offline, logit_confidence, loss_threshold
from training.audit.data import validate_data


def test_logit_confidence() -> None:
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9]])
    assert logit_confidence(proba, np.array([0, 0, 1])) == pytest.approx([math.log(9), math.log(0.25), math.log(9)])
    three = np.array([[0.2, 0.3, 0.5]])
    assert logit_confidence(three, np.array([2])) == pytest.approx([0.0])
    assert logit_confidence(three, np.array([0])) == pytest.approx([math.log(0.2 / 0.8)])
    # exact 0 and 1 are floored, not infinite; the other classes' sum keeps digits 1 - p_y would lose
    assert logit_confidence(np.array([[1.0, 0.0]]), np.array([0])) == pytest.approx([math.log(1e12)])
    near = np.array([[1 - 3e-17, 3e-17 / 2, 3e-17 / 2]])
    assert np.isfinite(logit_confidence(near, np.array([0]))).all()
    tiny = np.array([[1e-9, 1 - 1e-9]])
    assert logit_confidence(tiny, np.array([0])) == pytest.approx([math.log(1e-9 / (1 - 1e-9))])


def test_loss_threshold_is_minus_cross_entropy() -> None:
    pm = np.array([[0.7, 0.3], [0.4, 0.6], [0.99, 0.01]])
    pn = np.array([[0.5, 0.5], [0.0, 1.0]])
    attack = loss_threshold(pm, np.array([0, 1, 0]), pn, np.array([1, 0]))
    assert attack.members == pytest.approx(np.log([0.7, 0.6, 0.99]))
    assert attack.nonmembers[0] == pytest.approx(math.log(0.5))
    assert np.isfinite(attack.nonmembers[1]) and attack.nonmembers[1] < -700  # p_y = 0: the worst loss
    assert attack.members_probability == pytest.approx([0.7, 0.6, 0.99])
    assert attack.nonmembers_probability == pytest.approx([0.5, 0.0])


def _logistic_world(n_m: int = 30, n_n: int = 40, n_pop: int = 100, seed: int = 0) -> AuditData:
    """Rows (id, feature): ids < 1000 members, < 2000 non-members, >= 2000 population."""
    rng = np.random.default_rng(seed)

    def rows(n: int, base: int) -> np.ndarray:
        return np.c_[base + np.arange(n), rng.normal(size=n)]

    xm, xn, xp = rows(n_m, 0), rows(n_n, 1000), rows(n_pop, 2000)
    return validate_data(
        AuditData(xm, rng.integers(2, size=n_m), xn, rng.integers(2, size=n_n), xp, rng.integers(2, size=n_pop)),
        need_population=True,
    )


class _Recorder:
    """A reference recipe whose model depends on its seed only: p(1 | x) = sigmoid(a·x + b)."""

    def __init__(self) -> None:
        self.trained: list[np.ndarray] = []
        self.seeds: list[int] = []

    def __call__(self, x: np.ndarray, y: np.ndarray, seed: int):
        self.trained.append(x[:, 0].copy())
        self.seeds.append(seed)
        a, b = np.random.default_rng(seed).normal(size=2)

        def proba(z: np.ndarray) -> np.ndarray:
            p1 = 1 / (1 + np.exp(-(a * z[:, 1] + b)))
            return np.c_[1 - p1, p1]

        return proba


def _target(z: np.ndarray) -> np.ndarray:
    p1 = 1 / (1 + np.exp(-(0.8 * z[:, 1] + 0.1)))
    return np.c_[1 - p1, p1]


@pytest.mark.parametrize("global_variance", [False, True])
def test_lira_matches_an_independent_computation(global_variance: bool) -> None:
    data = _logistic_world()
    rec = _Recorder()
    pm, pn = _target(data.x_members), _target(data.x_nonmembers)
    attack = lira_offline(
        data, pm, pn, train_reference=rec, n_reference=8, seed=3, global_variance=global_variance
    )
    x_t = np.r_[data.x_members, data.x_nonmembers]
    y_t = np.r_[data.y_members, data.y_nonmembers]
    phis = []
    for seed in rec.seeds:
        a, b = np.random.default_rng(seed).normal(size=2)
        logit1 = a * x_t[:, 1] + b  # log(p1/p0)
        phis.append(np.where(y_t == 1, logit1, -logit1))
    phis = np.array(phis)
    mu, var = phis.mean(0), phis.var(0, ddof=1)
    if global_variance:
        var = np.full_like(var, var.mean())
    logit_t = 0.8 * x_t[:, 1] + 0.1
    z = (np.where(y_t == 1, logit_t, -logit_t) - mu) / np.sqrt(var)
    assert np.r_[attack.members, attack.nonmembers] == pytest.approx(z, rel=1e-8, abs=1e-8)
    assert np.r_[attack.members_probability, attack.nonmembers_probability] == pytest.approx(stats.norm.cdf(z))
    assert attack.info["variance"] == ("global" if global_variance else "per_example")


def test_lira_references_never_see_a_target() -> None:
    data = _logistic_world(n_m=30, n_pop=100)
    rec = _Recorder()
    lira_offline(data, _target(data.x_members), _target(data.x_nonmembers), train_reference=rec, n_reference=5, seed=1)
    assert len(rec.trained) == 5 and len(set(rec.seeds)) == 5
    for ids in rec.trained:
        assert np.all(ids >= 2000)  # population rows only: every target is OUT
        assert len(ids) == 30 and len(np.unique(ids)) == 30  # the target's training-set size, no repeats
    assert len({tuple(ids) for ids in rec.trained}) == 5
    # a small population: half of it
    data = _logistic_world(n_m=30, n_pop=40)
    rec = _Recorder()
    lira_offline(data, _target(data.x_members), _target(data.x_nonmembers), train_reference=rec, n_reference=2)
    assert all(len(ids) == 20 for ids in rec.trained)


def test_lira_is_reproducible_from_its_seed() -> None:
    data = _logistic_world()
    pm, pn = _target(data.x_members), _target(data.x_nonmembers)
    one = lira_offline(data, pm, pn, train_reference=_Recorder(), n_reference=4, seed=7)
    two = lira_offline(data, pm, pn, train_reference=_Recorder(), n_reference=4, seed=7)
    other = lira_offline(data, pm, pn, train_reference=_Recorder(), n_reference=4, seed=8)
    assert np.array_equal(one.members, two.members)
    assert not np.allclose(one.members, other.members)


def test_lira_with_identical_references_scores_zero() -> None:
    data = _logistic_world()
    pm, pn = _target(data.x_members), _target(data.x_nonmembers)
    attack = lira_offline(data, pm, pn, train_reference=lambda x, y, s: _target, n_reference=3)
    # no spread: z is 0 (the mean's float rounding is not signal), never 0/0 nor ±1e-7 noise
    assert np.all(attack.members == 0) and np.all(attack.nonmembers == 0)
    assert np.all(attack.nonmembers_probability == 0.5)


def test_lira_rejects_bad_references() -> None:
    data = _logistic_world()
    pm, pn = _target(data.x_members), _target(data.x_nonmembers)
    with pytest.raises(InvalidAuditInput, match="n_reference"):
        lira_offline(data, pm, pn, train_reference=_Recorder(), n_reference=1)
    three = lambda x, y, s: (lambda z: np.full((len(z), 3), 1 / 3))  # noqa: E731
    with pytest.raises(InvalidAuditInput, match="3 classes"):
        lira_offline(data, pm, pn, train_reference=three, n_reference=2)
