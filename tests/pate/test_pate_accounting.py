"""PATE accounting checked against independent computations.

* Google's dp-accounting: GNMax on `queries` student queries is the Gaussian mechanism with L2
  sensitivity sqrt(2) composed `queries` times, i.e. ``GaussianDpEvent(noise_multiplier=σ/sqrt(2))``
  (dp-accounting's events have sensitivity 1) self-composed `queries` times; Confident-GNMax adds
  ``GaussianDpEvent(σ1)`` once per checked query. Same orders, same δ: same ε.
* OpenDP: the privacy map of the very measurement that draws the noise gives ρ = 1/σ² per query, and its
  zCDP → (ε, δ) conversion (CKS20, optimised over all α) is at most ours and close to it.
* The exact privacy profile of the composed Gaussian (a Gaussian of μ = sqrt(2ρ), Balle & Wang 2018):
  our ε is never below the optimal one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mechanisms.accounting import rho_to_epsilon
from training.pate import (
    DEFAULT_ORDERS,
    confident_gnmax_epsilon,
    confident_gnmax_rdp,
    gnmax_epsilon,
    gnmax_rdp,
    gnmax_rho,
    max_confident_queries,
    max_queries,
    rdp_to_epsilon,
    sigma_for,
    threshold_rdp,
)
from training.pate._noise import opendp_rho
from training.pate.accounting import FIT_SLACK, fits

dp_accounting = pytest.importorskip("dp_accounting", reason="dp-accounting (dev extra) checks the accounting")
from dp_accounting import dp_event  # noqa: E402
from dp_accounting.rdp import rdp_privacy_accountant as rdp  # noqa: E402

THEIR_ORDERS = np.asarray(rdp.DEFAULT_RDP_ORDERS, dtype=float)
GRID = [(1.0, 1), (5.0, 10), (20.0, 200), (40.0, 1000), (100.0, 5000), (150.0, 20_000), (300.0, 1)]
DELTAS = [1e-5, 1e-8]


def _their_gnmax(sigma: float, queries: int, delta: float, orders: np.ndarray) -> tuple[float, float]:
    acc = rdp.RdpAccountant(orders=list(orders))
    acc.compose(dp_event.GaussianDpEvent(noise_multiplier=sigma / math.sqrt(2.0)), count=queries)
    eps, order = acc.get_epsilon_and_optimal_order(delta)
    return float(eps), float(order)


def _their_confident(s1: float, s2: float, checked: int, answered: int, delta: float, orders: np.ndarray) -> float:
    acc = rdp.RdpAccountant(orders=list(orders))
    acc.compose(
        dp_event.ComposedDpEvent(
            [
                dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(noise_multiplier=s1), checked),
                dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(noise_multiplier=s2 / math.sqrt(2.0)), answered),
            ]
        )
    )
    return float(acc.get_epsilon(delta))


@pytest.mark.parametrize("delta", DELTAS)
@pytest.mark.parametrize(("sigma", "queries"), GRID)
def test_gnmax_epsilon_equals_dp_accounting(sigma: float, queries: int, delta: float) -> None:
    theirs, their_order = _their_gnmax(sigma, queries, delta, THEIR_ORDERS)
    ours = gnmax_epsilon(sigma=sigma, queries=queries, delta=delta, orders=THEIR_ORDERS)
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert rdp_to_epsilon(gnmax_rdp(THEIR_ORDERS, sigma=sigma, queries=queries), THEIR_ORDERS, delta)[1] == their_order
    # our default grid contains theirs, so it is never looser
    assert gnmax_epsilon(sigma=sigma, queries=queries, delta=delta) <= theirs * (1 + 1e-12)


@pytest.mark.parametrize("delta", DELTAS)
@pytest.mark.parametrize(
    ("s1", "s2", "checked", "answered"),
    [
        (150.0, 40.0, 5000, 5000),
        (150.0, 40.0, 5000, 300),
        (200.0, 100.0, 20_000, 2000),
        (3.0, 2.0, 10, 0),
        (50.0, 5.0, 1, 1),
    ],
)
def test_confident_gnmax_epsilon_equals_dp_accounting(
    s1: float, s2: float, checked: int, answered: int, delta: float
) -> None:
    theirs = _their_confident(s1, s2, checked, answered, delta, THEIR_ORDERS)
    ours = confident_gnmax_epsilon(
        sigma1=s1, sigma2=s2, checked=checked, answered=answered, delta=delta, orders=THEIR_ORDERS
    )
    assert ours == pytest.approx(theirs, rel=1e-9)


def test_confident_default_charges_every_checked_query_as_answered() -> None:
    kw = dict(sigma1=150.0, sigma2=40.0, checked=4000, delta=1e-6)
    assert confident_gnmax_epsilon(**kw) == confident_gnmax_epsilon(**kw, answered=4000)
    assert confident_gnmax_epsilon(**kw, answered=100) < confident_gnmax_epsilon(**kw)
    with pytest.raises(ValueError):
        confident_gnmax_epsilon(**kw, answered=4001)


def test_rdp_curves() -> None:
    a = np.array([1.5, 2.0, 10.0, 100.0])
    assert np.allclose(gnmax_rdp(a, sigma=4.0, queries=3), a * 3 / 16)
    assert np.allclose(threshold_rdp(a, sigma1=4.0, checked=3), a * 3 / 32)
    assert np.allclose(
        confident_gnmax_rdp(a, sigma1=4.0, sigma2=2.0, checked=5, answered=2), a * (5 / 32 + 2 / 4)
    )


@pytest.mark.parametrize("sigma", [0.5, 3.0, 40.0])
def test_opendp_privacy_map_matches_the_per_query_rdp(sigma: float) -> None:
    # one query: histogram at L2 distance sqrt(2); a batch of n queries: sqrt(2n); the max vote: 1
    assert opendp_rho(sigma=sigma, l2_sensitivity=math.sqrt(2)) == pytest.approx(1 / sigma**2, rel=1e-12)
    assert opendp_rho(sigma=sigma, l2_sensitivity=math.sqrt(2 * 700)) == pytest.approx(700 / sigma**2, rel=1e-12)
    assert opendp_rho(sigma=sigma, l2_sensitivity=1.0) == pytest.approx(1 / (2 * sigma**2), rel=1e-12)
    # and OpenDP's figure is never below ours (its map rounds up)
    assert opendp_rho(sigma=sigma, l2_sensitivity=math.sqrt(2)) >= gnmax_rho(sigma=sigma, queries=1) * (1 - 1e-15)


@pytest.mark.parametrize(("sigma", "queries"), GRID)
def test_close_to_opendps_zcdp_conversion_and_above_the_exact_profile(sigma: float, queries: int) -> None:
    delta = 1e-6
    ours = gnmax_epsilon(sigma=sigma, queries=queries, delta=delta)
    rho = gnmax_rho(sigma=sigma, queries=queries)
    theirs = rho_to_epsilon(rho, delta)
    # same bound (CKS20), theirs optimised over every α > 1, ours over a grid
    assert theirs * (1 - 1e-9) <= ours <= theirs * (1 + 1e-4) + 1e-12
    # exact: the composed mechanism is one Gaussian with μ = sqrt(2ρ); δ(ε) of Balle & Wang 2018
    mu = math.sqrt(2 * rho)
    exact_delta = stats.norm.cdf(-ours / mu + mu / 2) - math.exp(ours) * stats.norm.cdf(-ours / mu - mu / 2)
    assert exact_delta <= delta


def test_conversion_is_the_improved_one() -> None:
    # never above the classic rdp + log(1/δ)/(α − 1), and strictly below it here
    orders = DEFAULT_ORDERS
    r = gnmax_rdp(orders, sigma=40.0, queries=1000)
    delta = 1e-5
    classic = float(np.min(r + math.log(1 / delta) / (orders - 1)))
    improved, order = rdp_to_epsilon(r, orders, delta)
    assert improved < classic
    i = int(np.flatnonzero(orders == order)[0])
    assert improved == pytest.approx(r[i] + math.log1p(-1 / order) - (math.log(delta) + math.log(order)) / (order - 1))


def test_conversion_edge_cases() -> None:
    orders = np.array([2.0, 4.0])
    assert rdp_to_epsilon([0.0, 0.0], orders, 1e-5) == (0.0, 2.0)
    # tiny divergence, δ above the Bretagnolle–Huber bound: ε = 0
    assert rdp_to_epsilon([1e-12, 2e-12], orders, 1e-5)[0] == 0.0
    for bad in ([-1.0, 0.0], [np.nan, 0.0], [1.0]):
        with pytest.raises(ValueError):
            rdp_to_epsilon(bad, orders, 1e-5)
    for delta in (0.0, 1.0, -1e-5):
        with pytest.raises(ValueError):
            rdp_to_epsilon([1.0, 2.0], orders, delta)
    with pytest.raises(ValueError):
        rdp_to_epsilon([1.0, 2.0], [1.0, 2.0], 1e-5)


def test_epsilon_is_monotone() -> None:
    eps = [gnmax_epsilon(sigma=40.0, queries=q, delta=1e-5) for q in (1, 10, 100, 1000)]
    assert eps == sorted(eps) and len(set(eps)) == 4
    eps = [gnmax_epsilon(sigma=s, queries=500, delta=1e-5) for s in (10.0, 20.0, 40.0, 80.0)]
    assert eps == sorted(eps, reverse=True)
    assert gnmax_epsilon(sigma=40.0, queries=500, delta=1e-8) > gnmax_epsilon(sigma=40.0, queries=500, delta=1e-5)
    assert gnmax_epsilon(sigma=40.0, queries=0, delta=1e-5) == 0.0


@pytest.mark.parametrize(("epsilon", "delta"), [(0.5, 1e-6), (2.0, 1e-5), (8.0, 1e-8)])
@pytest.mark.parametrize("sigma", [5.0, 40.0, 150.0])
def test_max_queries_is_the_largest_that_fits(sigma: float, epsilon: float, delta: float) -> None:
    q = max_queries(sigma=sigma, epsilon=epsilon, delta=delta)
    assert fits(gnmax_epsilon(sigma=sigma, queries=q, delta=delta), epsilon)
    assert not fits(gnmax_epsilon(sigma=sigma, queries=q + 1, delta=delta), epsilon)
    if q:
        # max_queries and sigma_for are inverse-consistent
        s = sigma_for(epsilon=epsilon, delta=delta, queries=q)
        assert s <= sigma
        assert max_queries(sigma=s, epsilon=epsilon, delta=delta) == q


@pytest.mark.parametrize(("epsilon", "delta"), [(0.5, 1e-6), (2.0, 1e-5), (8.0, 1e-8)])
@pytest.mark.parametrize("queries", [1, 100, 1000, 25_000])
def test_sigma_for_is_the_smallest_that_fits(queries: int, epsilon: float, delta: float) -> None:
    s = sigma_for(epsilon=epsilon, delta=delta, queries=queries)
    assert fits(gnmax_epsilon(sigma=s, queries=queries, delta=delta), epsilon)
    assert not fits(gnmax_epsilon(sigma=s * (1 - 1e-9), queries=queries, delta=delta), epsilon)
    assert max_queries(sigma=s, epsilon=epsilon, delta=delta) == queries
    # the fit is tight: the margin is only the float slack (and the grid of orders)
    assert gnmax_epsilon(sigma=s, queries=queries, delta=delta) >= epsilon * (1 - 10 * FIT_SLACK)


@pytest.mark.parametrize("cap", [None, 0, 50, 300, 10**6])
def test_max_confident_queries(cap: int | None) -> None:
    kw = dict(sigma1=150.0, sigma2=40.0, delta=1e-5)
    n = max_confident_queries(**kw, epsilon=2.0, max_answers=cap)

    def eps(checked: int) -> float:
        answered = checked if cap is None else min(checked, cap)
        return confident_gnmax_epsilon(**kw, checked=checked, answered=answered)

    assert n > 0 and fits(eps(n), 2.0) and not fits(eps(n + 1), 2.0)
    if cap is None:
        assert n == max_confident_queries(**kw, epsilon=2.0, max_answers=n)


def test_nothing_fits() -> None:
    assert max_queries(sigma=0.01, epsilon=0.1, delta=1e-5) == 0
    assert max_confident_queries(sigma1=0.01, sigma2=0.01, epsilon=0.1, delta=1e-5) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sigma=0.0, queries=1, delta=1e-5),
        dict(sigma=-1.0, queries=1, delta=1e-5),
        dict(sigma=float("inf"), queries=1, delta=1e-5),
        dict(sigma=True, queries=1, delta=1e-5),
        dict(sigma=1.0, queries=-1, delta=1e-5),
        dict(sigma=1.0, queries=1.5, delta=1e-5),
        dict(sigma=1.0, queries=1, delta=0.0),
        dict(sigma=1.0, queries=1, delta=1.0),
    ],
)
def test_bad_inputs_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        gnmax_epsilon(**kwargs)


def test_bad_fit_inputs_raise() -> None:
    with pytest.raises(ValueError):
        sigma_for(epsilon=1.0, delta=1e-5, queries=0)
    with pytest.raises(ValueError):
        sigma_for(epsilon=0.0, delta=1e-5, queries=10)
    with pytest.raises(ValueError):
        max_queries(sigma=1.0, epsilon=-1.0, delta=1e-5)
    with pytest.raises(ValueError):
        gnmax_epsilon(sigma=1.0, queries=1, delta=1e-5, orders=[0.5, 2.0])
