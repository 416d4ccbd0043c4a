"""A PATE labelling plan: noise, number of queries and the (ε, δ) they cost, fixed before any vote.

`plan_gnmax` / `plan_confident_gnmax` fit the plan to the requested ε from public inputs only (ε, δ, the
noise levels or the number of queries, the threshold, the number of classes): no vote enters. Then
`label_queries` charges ``plan.cost`` through the caller's `charge` callback **before** it asks for the
teachers' predictions, refuses more queries than planned, builds the vote histograms (one vote per
teacher per query) and returns only the noisy aggregate. The student gets those labels and the public
rows, nothing else: no private label, no raw vote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from mechanisms.cost import Cost, round_up, to_fraction

from . import accounting as acc
from ._noise import check_sigma
from .aggregate import ConfidentGNMax, GNMax, _n_classes, vote_histogram

__all__ = ["PATEPlan", "plan_gnmax", "plan_confident_gnmax", "label_queries"]


@dataclass(frozen=True)
class PATEPlan:
    """Everything the accountant was asked and answered; all public once charged.

    `queries`: the most student queries the teachers will be asked (all checked by Confident-GNMax);
    `answers`: the most answered (= queries for GNMax; a cap, or = queries, for Confident-GNMax);
    `sigma`: GNMax's σ (σ2 of Confident-GNMax); `sigma1`, `threshold`: Confident-GNMax only;
    `rho`: the plan is (α, rho·α)-RDP for every α (rho-zCDP); `epsilon`: its ε at `delta` by
    `accounting.rdp_to_epsilon`, at the Rényi order `order`; `target_epsilon`: what was asked.
    """

    aggregator: Literal["gnmax", "confident_gnmax"]
    n_classes: int
    queries: int
    answers: int
    sigma: float
    sigma1: float | None
    threshold: float | None
    rho: float
    epsilon: float
    order: float
    delta: float
    target_epsilon: float

    @property
    def cost(self) -> Cost:
        """(ε, δ) to charge: ε rounded up (12 digits, after the float margin), never above the target."""
        padded = round_up(Fraction(self.epsilon) * (1 + Fraction(acc.FIT_SLACK)))
        eps = min(to_fraction(padded), to_fraction(self.target_epsilon))
        return Cost(eps, to_fraction(self.delta))

    def aggregator_object(self) -> GNMax | ConfidentGNMax:
        if self.aggregator == "gnmax":
            return GNMax(sigma=self.sigma, n_classes=self.n_classes)
        assert self.sigma1 is not None and self.threshold is not None
        return ConfidentGNMax(
            threshold=self.threshold, sigma1=self.sigma1, sigma2=self.sigma, n_classes=self.n_classes
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _finish(
    *,
    aggregator: Literal["gnmax", "confident_gnmax"],
    n_classes: int,
    queries: int,
    answers: int,
    sigma: float,
    sigma1: float | None,
    threshold: float | None,
    rho: float,
    delta: float,
    target: float,
) -> PATEPlan:
    if queries < 1:
        raise ValueError("not even one query fits within this (epsilon, delta) at this noise level")
    epsilon, order = acc.rdp_to_epsilon(acc.DEFAULT_ORDERS * rho, acc.DEFAULT_ORDERS, delta)
    if not acc.fits(epsilon, target):
        raise ValueError(f"the plan costs epsilon={epsilon:.6g}, more than the requested {target:.6g}")
    return PATEPlan(
        aggregator=aggregator,
        n_classes=int(n_classes),
        queries=int(queries),
        answers=int(answers),
        sigma=float(sigma),
        sigma1=sigma1,
        threshold=threshold,
        rho=float(rho),
        epsilon=float(epsilon),
        order=float(order),
        delta=float(delta),
        target_epsilon=float(target),
    )


def _target(epsilon: Any, delta: Any) -> tuple[float, float]:
    e, d = to_fraction(epsilon, name="epsilon"), to_fraction(delta, name="delta")
    if e <= 0:
        raise ValueError("epsilon must be > 0")
    if not 0 < d < 1:
        raise ValueError("delta must be in (0, 1)")
    return float(e), float(d)


def plan_gnmax(
    *,
    epsilon: float | str | Fraction,
    delta: float | str | Fraction,
    n_classes: int,
    sigma: float | None = None,
    queries: int | None = None,
) -> PATEPlan:
    """A GNMax plan within (ε, δ): give `sigma` (then the most queries that fit), `queries` (then the
    least σ that fits), or both (checked to fit)."""
    e, d = _target(epsilon, delta)
    _n_classes(n_classes)
    if sigma is None and queries is None:
        raise ValueError("give sigma, queries, or both")
    if sigma is None:
        assert queries is not None
        sigma = acc.sigma_for(epsilon=e, delta=d, queries=queries)
    s = check_sigma(sigma)
    q = acc.max_queries(sigma=s, epsilon=e, delta=d) if queries is None else acc._count(queries, name="queries")
    rho = acc.gnmax_rho(sigma=s, queries=q)
    return _finish(
        aggregator="gnmax", n_classes=n_classes, queries=q, answers=q, sigma=s,
        sigma1=None, threshold=None, rho=rho, delta=d, target=e,
    )  # fmt: skip


def plan_confident_gnmax(
    *,
    epsilon: float | str | Fraction,
    delta: float | str | Fraction,
    n_classes: int,
    threshold: float,
    sigma1: float,
    sigma2: float,
    queries: int | None = None,
    max_answers: int | None = None,
) -> PATEPlan:
    """A Confident-GNMax plan within (ε, δ). `queries` (checked) defaults to the most that fit;
    `max_answers` is an optional cap on answers, enforced by `label_queries` (default: no cap, every
    checked query charged as answered, the data-independent worst case)."""
    e, d = _target(epsilon, delta)
    agg = ConfidentGNMax(threshold=threshold, sigma1=sigma1, sigma2=sigma2, n_classes=n_classes)
    if queries is None:
        q = acc.max_confident_queries(
            sigma1=agg.sigma1, sigma2=agg.sigma2, epsilon=e, delta=d, max_answers=max_answers
        )
    else:
        q = acc._count(queries, name="queries")
    answers = q if max_answers is None else min(q, acc._count(max_answers, name="max_answers"))
    rho = acc.confident_gnmax_rho(sigma1=agg.sigma1, sigma2=agg.sigma2, checked=q, answered=answers)
    return _finish(
        aggregator="confident_gnmax", n_classes=n_classes, queries=q, answers=answers, sigma=agg.sigma2,
        sigma1=agg.sigma1, threshold=agg.threshold, rho=rho, delta=d, target=e,
    )  # fmt: skip


def label_queries(
    plan: PATEPlan,
    teacher_predictions: Callable[[], Any],
    *,
    charge: Callable[[Cost], object],
) -> np.ndarray:
    """Student labels (`aggregate.ABSTAIN` where Confident-GNMax abstains) for the planned queries.

    1. ``charge(plan.cost)``: the whole cost, before any vote exists (if it raises, nothing else runs);
    2. ``teacher_predictions()``: (n_teachers, n_queries) class indices of the teachers on the public
       rows, with n_queries <= plan.queries (more raises, and nothing is released);
    3. the vote histograms, and the plan's aggregator on them (the cap `plan.answers` enforced).
    """
    if not isinstance(plan, PATEPlan):
        raise TypeError("plan must be a PATEPlan")
    charge(plan.cost)
    votes = vote_histogram(teacher_predictions(), plan.n_classes)
    if votes.shape[0] > plan.queries:
        raise ValueError(f"{votes.shape[0]} queries exceed the {plan.queries} the plan paid for")
    agg = plan.aggregator_object()
    if isinstance(agg, ConfidentGNMax):
        cap = None if plan.answers >= plan.queries else plan.answers
        return agg.answer_batch(votes, max_answers=cap)
    return agg.answer_batch(votes)
