"""Plans fit the requested ε, the cost is charged before any vote is used, and the student only ever
gets noisy aggregates of one-vote-per-teacher histograms (never a private label)."""

from __future__ import annotations

import inspect
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mechanisms.cost import Cost
from training.pate import (
    ABSTAIN,
    PATEPlan,
    confident_gnmax_epsilon,
    gnmax_epsilon,
    label_queries,
    partition_units,
    plan_confident_gnmax,
    plan_gnmax,
    vote_histogram,
)
from training.pate.accounting import fits

LEVEL = 1e-4


class Ledger:
    def __init__(self, budget: Cost | None = None) -> None:
        self.budget = budget
        self.events: list[object] = []

    def charge(self, cost: Cost) -> None:
        if self.budget is not None and not cost.fits_within(self.budget):
            raise RuntimeError("budget exhausted")
        self.events.append(("charge", cost))


def test_gnmax_plan_from_sigma_and_from_queries() -> None:
    p = plan_gnmax(epsilon=2, delta=1e-5, n_classes=3, sigma=40.0)
    assert p.queries > 0 and p.answers == p.queries
    assert p.epsilon == gnmax_epsilon(sigma=40.0, queries=p.queries, delta=1e-5)
    assert not fits(gnmax_epsilon(sigma=40.0, queries=p.queries + 1, delta=1e-5), 2.0)
    assert p.cost.fits_within(Cost.of(2, "1e-5")) and p.cost.delta == Fraction(1, 100_000)
    assert p.cost.epsilon >= Fraction(p.epsilon)
    assert p.rho == pytest.approx(p.queries / 1600)
    q = plan_gnmax(epsilon="0.5", delta="1e-6", n_classes=10, queries=500)
    assert q.queries == 500 and q.epsilon <= 0.5 and q.epsilon == pytest.approx(0.5, rel=1e-6)
    both = plan_gnmax(epsilon=2, delta=1e-5, n_classes=3, sigma=40.0, queries=100)
    assert both.queries == 100 and both.epsilon < 2
    assert p.to_json()["aggregator"] == "gnmax"


def test_plans_that_do_not_fit_raise() -> None:
    with pytest.raises(ValueError):
        plan_gnmax(epsilon=2, delta=1e-5, n_classes=3, sigma=40.0, queries=10_000)
    with pytest.raises(ValueError):
        plan_gnmax(epsilon=0.01, delta=1e-5, n_classes=3, sigma=0.5)
    with pytest.raises(ValueError):
        plan_gnmax(epsilon=1, delta=1e-5, n_classes=3)
    with pytest.raises(ValueError):
        plan_gnmax(epsilon=1, delta=0, n_classes=3, sigma=40.0)
    with pytest.raises(ValueError):
        plan_confident_gnmax(epsilon=1, delta=1e-5, n_classes=3, threshold=100, sigma1=100, sigma2=40, queries=10**6)


def test_confident_plan() -> None:
    kw = dict(epsilon=2, delta=1e-5, n_classes=3, threshold=150.0, sigma1=150.0, sigma2=40.0)
    worst = plan_confident_gnmax(**kw)
    assert worst.answers == worst.queries
    capped = plan_confident_gnmax(**kw, max_answers=100)
    assert capped.answers == 100 and capped.queries > worst.queries
    assert capped.epsilon == confident_gnmax_epsilon(
        sigma1=150.0, sigma2=40.0, checked=capped.queries, answered=100, delta=1e-5
    )
    assert capped.cost.fits_within(Cost.of(2, "1e-5"))


def test_cost_is_charged_before_any_vote_is_used() -> None:
    plan = plan_gnmax(epsilon=1, delta=1e-5, n_classes=3, sigma=20.0)
    ledger = Ledger()

    def predictions() -> np.ndarray:
        ledger.events.append("votes")
        return np.zeros((50, plan.queries), dtype=int)

    labels = label_queries(plan, predictions, charge=ledger.charge)
    assert ledger.events == [("charge", plan.cost), "votes"]
    assert labels.shape == (plan.queries,)
    # a refused charge: the teachers are never asked
    poor = Ledger(budget=Cost.of("0.1", "1e-5"))
    with pytest.raises(RuntimeError):
        label_queries(plan, predictions, charge=poor.charge)
    assert poor.events == [] and ledger.events.count("votes") == 1


def test_more_queries_than_paid_for_are_refused() -> None:
    plan = plan_gnmax(epsilon=1, delta=1e-5, n_classes=3, sigma=40.0, queries=40)
    with pytest.raises(ValueError):
        label_queries(plan, lambda: np.zeros((50, 41), dtype=int), charge=lambda cost: None)
    assert label_queries(plan, lambda: np.zeros((50, 10), dtype=int), charge=lambda cost: None).shape == (10,)


def test_confident_labelling_respects_the_cap() -> None:
    plan = plan_confident_gnmax(
        epsilon=10, delta=1e-5, n_classes=2, threshold=10.0, sigma1=5.0, sigma2=5.0, queries=30, max_answers=7
    )
    labels = label_queries(plan, lambda: np.zeros((50, 30), dtype=int), charge=lambda cost: None)
    # all 50 teachers agree (max vote 50 = T + 8σ1, lead 50 = 7σ2·sqrt 2): the first 7 are answered, as paid for
    assert labels.tolist() == [0] * 7 + [ABSTAIN] * 23


def test_the_student_never_sees_private_labels() -> None:
    # what label_queries can read: the plan, the teachers' predictions, the ledger; no private table
    assert list(inspect.signature(label_queries).parameters) == ["plan", "teacher_predictions", "charge"]
    # unanimous teachers, overwhelming noise: the labels carry (almost) nothing of the votes
    plan = plan_gnmax(epsilon=1, delta=1e-5, n_classes=3, sigma=1e6, queries=3000)
    labels = label_queries(plan, lambda: np.zeros((250, 3000), dtype=int), charge=lambda cost: None)
    assert stats.chisquare(np.bincount(labels, minlength=3)).pvalue > LEVEL


def _teacher_predictions(private: pd.DataFrame, n_teachers: int, n_public: int, n_classes: int) -> np.ndarray:
    """A stand-in for trained teachers: each predicts its partition's majority label on every public row."""
    majority = private.groupby("teacher")["label"].agg(lambda s: int(np.bincount(s, minlength=n_classes).argmax()))
    per_teacher = np.array([majority.get(t, 0) for t in range(n_teachers)])  # an empty partition still votes
    return np.repeat(per_teacher[:, None], n_public, axis=1)


def test_one_unit_changes_one_teachers_vote() -> None:
    # the user-level sensitivity the accounting assumes: one unit's rows change at most one vote a query
    rng = np.random.default_rng(3)
    n_teachers, n_classes, n_public = 60, 3, 5
    units = np.repeat(np.arange(600), rng.integers(1, 6, size=600))
    private = pd.DataFrame({"cid": units, "label": rng.integers(0, n_classes, size=len(units))})
    private["teacher"] = partition_units(private["cid"].to_numpy(), n_teachers, key=b"k")
    base = vote_histogram(_teacher_predictions(private, n_teachers, n_public, n_classes), n_classes)
    for unit in rng.choice(600, size=40, replace=False):
        mine = private["cid"] == unit
        changed = private.copy()
        changed.loc[mine, "label"] = (changed.loc[mine, "label"] + 1) % n_classes  # all its rows
        removed = private[~mine]
        for other in (changed, removed):
            # removing the unit leaves every other unit's teacher unchanged (the partition is by hash)
            h = vote_histogram(_teacher_predictions(other, n_teachers, n_public, n_classes), n_classes)
            diff = h - base
            assert np.all(np.abs(diff).sum(axis=1) <= 2)  # L1 <= 2: L2 <= sqrt(2)
            assert np.all(np.abs(h.max(axis=1) - base.max(axis=1)) <= 1)  # the max vote moves by <= 1
            assert math.sqrt(float(np.max((diff**2).sum(axis=1)))) <= math.sqrt(2)


def test_plan_validation() -> None:
    with pytest.raises(TypeError):
        label_queries("plan", lambda: np.zeros((2, 2), dtype=int), charge=lambda cost: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plan_gnmax(epsilon=1, delta=1e-5, n_classes=1, sigma=10.0)
    with pytest.raises(ValueError):
        plan_gnmax(epsilon=1, delta=1e-5, n_classes=3, sigma=10.0, queries=True)
    assert isinstance(plan_gnmax(epsilon=1, delta=1e-5, n_classes=3, sigma=10.0), PATEPlan)
