"""Unit tests: every mechanism costs exactly what was asked, and OpenDP's own map agrees it fits."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest

from mechanisms import (
    Cost,
    ExponentialQuantile,
    Gaussian,
    LaplaceCount,
    LaplaceFloat,
    Mechanism,
    NoisyTopK,
    ThresholdCounts,
    candidate_grid,
)

EPSILONS = [Fraction(1, 10), Fraction(1, 3), Fraction(7, 10), Fraction(1, 1000), Fraction(5), 0.1, "0.3"]


def _fits(loss: float, target: Fraction) -> bool:
    return math.isfinite(loss) and Fraction(loss) <= target


def _as_fraction(epsilon: Any) -> Fraction:
    return Cost.of(epsilon).epsilon


@pytest.mark.parametrize("epsilon", EPSILONS)
@pytest.mark.parametrize("sensitivity", [1, 3, 40])
def test_laplace_count(epsilon: Any, sensitivity: int) -> None:
    m = LaplaceCount(epsilon=epsilon, sensitivity=sensitivity)
    target = _as_fraction(epsilon)
    assert m.cost == Cost(target)
    assert _fits(m.measurement.map(sensitivity), target)
    # calibration only nudges the closed-form scale
    assert m.scale == pytest.approx(sensitivity / float(target), rel=1e-12)
    assert m.scale >= sensitivity / float(target) * (1 - 1e-15)
    assert m.name == "laplace"
    assert m.ci95() == int(m.ci95())


@pytest.mark.parametrize("epsilon", EPSILONS)
@pytest.mark.parametrize("sensitivity", [0.1, 1.0, 2.7, 1e6])
def test_laplace_float(epsilon: Any, sensitivity: float) -> None:
    m = LaplaceFloat(epsilon=epsilon, sensitivity=sensitivity)
    target = _as_fraction(epsilon)
    assert m.cost == Cost(target)
    assert _fits(m.measurement.map(sensitivity), target)
    assert m.scale == pytest.approx(sensitivity / float(target), rel=1e-12)
    assert m.ci95() == pytest.approx(m.scale * math.log(20))


@pytest.mark.parametrize("rho", [Fraction(1, 10), Fraction(1, 3), Fraction(2), 0.05])
@pytest.mark.parametrize("sensitivity", [1.0, 2.5])
@pytest.mark.parametrize("integer", [False, True])
def test_gaussian_rho(rho: Any, sensitivity: float, integer: bool) -> None:
    m = Gaussian(rho=rho, sensitivity=sensitivity, integer=integer)
    target = _as_fraction(rho)
    assert m.rho == target
    assert _fits(m.measurement.map(sensitivity), target)
    assert m.scale == pytest.approx(sensitivity / math.sqrt(2 * float(target)), rel=1e-12)
    assert m.ci95() == pytest.approx(1.959963985 * m.scale)
    assert m.name == "gaussian"
    with pytest.raises(ValueError):
        m.cost  # noqa: B018 - no δ given, no (ε, δ) cost
    at = m.cost_at(Fraction(1, 10**6))
    assert at.delta == Fraction(1, 10**6) and at.epsilon > target


def test_gaussian_with_delta_has_converted_cost() -> None:
    m = Gaussian(rho=Fraction(1, 10), sensitivity=1.0, delta=Fraction(1, 10**6))
    assert m.cost.delta == Fraction(1, 10**6)
    assert m.cost == m.cost_at(Fraction(1, 10**6))


@pytest.mark.parametrize("epsilon", [Fraction(1, 2), Fraction(1)])
@pytest.mark.parametrize("integer", [False, True])
def test_gaussian_for_epsilon_delta(epsilon: Fraction, integer: bool) -> None:
    from mechanisms._opendp import dp

    delta = Fraction(1, 10**6)
    m = Gaussian.for_epsilon_delta(epsilon=epsilon, delta=delta, sensitivity=3.0, integer=integer)
    assert m.cost == Cost(epsilon, delta)
    assert _fits(m.measurement.map(3.0), m.rho)
    profile = dp.c.make_zCDP_to_approxDP(m.measurement).map(3.0)
    assert _fits(profile.epsilon(1e-6), epsilon)


@pytest.mark.parametrize("epsilon", EPSILONS)
@pytest.mark.parametrize("monotonic", [False, True])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("sensitivity", [1, 2.5])
def test_noisy_top_k(epsilon: Any, monotonic: bool, k: int, sensitivity: int | float) -> None:
    m = NoisyTopK(epsilon=epsilon, sensitivity=sensitivity, k=k, monotonic=monotonic)
    target = _as_fraction(epsilon)
    assert m.cost == Cost(target)
    assert _fits(m.measurement.map(sensitivity), target)
    factor = k * (1 if monotonic else 2)
    assert m.scale == pytest.approx(factor * sensitivity / float(target), rel=1e-12)
    assert m.ci95() is None and m.name == "noisy_max"


@pytest.mark.parametrize("epsilon", EPSILONS)
@pytest.mark.parametrize("alpha", [Fraction(1, 2), Fraction(1, 4), Fraction(9, 10), Fraction(0), Fraction(1)])
@pytest.mark.parametrize("max_rows", [1, 7])
def test_exponential_quantile(epsilon: Any, alpha: Fraction, max_rows: int) -> None:
    m = ExponentialQuantile(epsilon=epsilon, alpha=alpha, candidates=[0.0, 1.0, 2.0], max_rows=max_rows)
    target = _as_fraction(epsilon)
    assert m.cost == Cost(target)
    num, den = alpha.numerator, alpha.denominator
    assert m.sensitivity == max_rows * max(num, den - num)
    assert _fits(m.measurement.map(m.sensitivity), target)
    assert m.ci95() is None and m.name == "exponential"


def test_exponential_quantile_matches_opendp_privacy_map() -> None:
    """At max_rows = 1 our ε equals what OpenDP's make_private_quantile reports at our scale."""
    from mechanisms._opendp import dp

    for alpha in (Fraction(1, 2), Fraction(1, 4), Fraction(3, 4)):
        m = ExponentialQuantile(epsilon=Fraction(1, 2), alpha=alpha, candidates=[0.0, 1.0, 2.0], max_rows=1)
        reference = dp.m.make_private_quantile(
            dp.vector_domain(dp.atom_domain(T=float, nan=False)),
            dp.symmetric_distance(),
            dp.max_divergence(),
            candidates=[0.0, 1.0, 2.0],
            alpha=float(alpha),
            scale=m.scale,
        )
        assert reference.map(1) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("epsilon", [Fraction(1, 10), Fraction(1), 0.7])
@pytest.mark.parametrize("delta", [Fraction(1, 10**5), Fraction(1, 10**9), 1e-7])
@pytest.mark.parametrize("max_partitions, max_rows", [(1, 1), (3, 5), (10, 40)])
def test_threshold_counts(epsilon: Any, delta: Any, max_partitions: int, max_rows: int) -> None:
    m = ThresholdCounts(epsilon=epsilon, delta=delta, max_partitions=max_partitions, max_rows=max_rows)
    target = Cost.of(epsilon, delta)
    assert m.cost == target
    eps_out, delta_out = m.measurement.map((max_partitions, max_rows, max_rows))
    assert _fits(eps_out, target.epsilon) and _fits(delta_out, target.delta)
    assert m.scale == pytest.approx(max_rows / float(target.epsilon), rel=1e-12)
    # the threshold is the least that fits
    from mechanisms._opendp import dp

    if m.threshold > max_rows:
        looser = dp.m.make_laplace_threshold(
            m.measurement.input_domain, m.measurement.input_metric, scale=m.scale, threshold=m.threshold - 1
        )
        assert not _fits(looser.map(m.d_in)[1], target.delta)
    assert m.name == "laplace_threshold"
    assert m.ci95() == int(m.ci95())


def test_protocol_shape() -> None:
    mechanisms: list[Mechanism] = [
        LaplaceCount(epsilon=Fraction(1), sensitivity=1),
        LaplaceFloat(epsilon=Fraction(1), sensitivity=1.0),
        Gaussian.for_epsilon_delta(epsilon=Fraction(1), delta=Fraction(1, 10**6), sensitivity=1.0),
        NoisyTopK(epsilon=Fraction(1), sensitivity=1, monotonic=True),
        ExponentialQuantile(epsilon=Fraction(1), alpha=Fraction(1, 2), candidates=[0.0, 1.0], max_rows=1),
        ThresholdCounts(epsilon=Fraction(1), delta=Fraction(1, 10**6), max_partitions=1, max_rows=1),
    ]
    for m in mechanisms:
        assert isinstance(m.name, str) and isinstance(m.cost, Cost) and m.scale > 0
        ci = m.ci95()
        assert ci is None or ci >= 0
        with pytest.raises(AttributeError):
            m.scale = 1.0  # type: ignore[misc]


# --- bad parameters -----------------------------------------------------------------------------

BAD_EPSILONS = [0, -1, Fraction(0), math.nan, math.inf, "nan", None, True]


@pytest.mark.parametrize("epsilon", BAD_EPSILONS)
def test_bad_epsilon(epsilon: Any) -> None:
    builders = [
        lambda: LaplaceCount(epsilon=epsilon, sensitivity=1),
        lambda: LaplaceFloat(epsilon=epsilon, sensitivity=1.0),
        lambda: Gaussian(rho=epsilon, sensitivity=1.0),
        lambda: Gaussian.for_epsilon_delta(epsilon=epsilon, delta=Fraction(1, 10**6), sensitivity=1.0),
        lambda: NoisyTopK(epsilon=epsilon, sensitivity=1, monotonic=False),
        lambda: ExponentialQuantile(epsilon=epsilon, alpha=Fraction(1, 2), candidates=[0.0], max_rows=1),
        lambda: ThresholdCounts(epsilon=epsilon, delta=Fraction(1, 10**6), max_partitions=1, max_rows=1),
    ]
    for build in builders:
        with pytest.raises(ValueError):
            build()


@pytest.mark.parametrize("sensitivity", [0, -1, -0.5, math.nan, math.inf, None, True, "1"])
def test_bad_sensitivity(sensitivity: Any) -> None:
    builders = [
        lambda: LaplaceCount(epsilon=Fraction(1), sensitivity=sensitivity),
        lambda: LaplaceFloat(epsilon=Fraction(1), sensitivity=sensitivity),
        lambda: Gaussian(rho=Fraction(1), sensitivity=sensitivity),
        lambda: NoisyTopK(epsilon=Fraction(1), sensitivity=sensitivity, monotonic=False),
    ]
    for build in builders:
        with pytest.raises(ValueError):
            build()


def test_other_bad_parameters() -> None:
    with pytest.raises(ValueError):
        LaplaceCount(epsilon=Fraction(1), sensitivity=1.5)  # type: ignore[arg-type]
    for delta in (0, 1, -1, math.nan):
        with pytest.raises(ValueError):
            Gaussian.for_epsilon_delta(epsilon=Fraction(1), delta=delta, sensitivity=1.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            ThresholdCounts(epsilon=Fraction(1), delta=delta, max_partitions=1, max_rows=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # below float precision: no threshold can reach it
        ThresholdCounts(epsilon=Fraction(1), delta=Fraction(1, 10**30), max_partitions=1, max_rows=1)
    for kwargs in ({"max_partitions": 0, "max_rows": 1}, {"max_partitions": 1, "max_rows": 0}):
        with pytest.raises(ValueError):
            ThresholdCounts(epsilon=Fraction(1), delta=Fraction(1, 10**6), **kwargs)
    with pytest.raises(ValueError):
        NoisyTopK(epsilon=Fraction(1), sensitivity=1, k=0, monotonic=False)
    for alpha in (Fraction(-1, 2), Fraction(3, 2), math.nan):
        with pytest.raises(ValueError):
            ExponentialQuantile(epsilon=Fraction(1), alpha=alpha, candidates=[0.0], max_rows=1)  # type: ignore[arg-type]
    for candidates in ([], [1.0, 1.0], [2.0, 1.0], [0.0, math.nan], [0.0, math.inf]):
        with pytest.raises(ValueError):
            ExponentialQuantile(epsilon=Fraction(1), alpha=Fraction(1, 2), candidates=candidates, max_rows=1)
    with pytest.raises(ValueError):
        ExponentialQuantile(epsilon=Fraction(1), alpha=Fraction(1, 2), candidates=[0.0], max_rows=0)
    with pytest.raises(ValueError):
        candidate_grid(2.0, 1.0, integer=False)


def test_bad_release_inputs() -> None:
    lap = LaplaceFloat(epsilon=Fraction(1), sensitivity=1.0)
    for values in ([math.nan], [0.0, math.inf], [-math.inf], ["1.0"]):
        with pytest.raises(ValueError):
            lap.release(values)  # type: ignore[arg-type]
    count = LaplaceCount(epsilon=Fraction(1), sensitivity=1)
    for ints in ([1.5], [2**64], ["3"], [None]):
        with pytest.raises(ValueError):
            count.release(ints)  # type: ignore[arg-type]
    gauss = Gaussian(rho=Fraction(1), sensitivity=1.0)
    with pytest.raises(ValueError):
        gauss.release([math.nan])
    top = NoisyTopK(epsilon=Fraction(1), sensitivity=1, k=2, monotonic=False)
    with pytest.raises(ValueError):
        top.release([1])
    with pytest.raises(ValueError):
        top.release([1, 2.5])
    q = ExponentialQuantile(epsilon=Fraction(1), alpha=Fraction(1, 2), candidates=[0.0, 1.0], max_rows=1)
    with pytest.raises(ValueError):
        q.release_from_histogram([0], [0], [0])
    with pytest.raises(ValueError):
        q.release_from_histogram([0, 1], [1, 0], [0, 1])  # inconsistent totals
    with pytest.raises(ValueError):
        q.release_from_histogram([0, -1], [1, 2], [0, 0])
    thr = ThresholdCounts(epsilon=Fraction(1), delta=Fraction(1, 10**6), max_partitions=1, max_rows=1)
    with pytest.raises(ValueError):
        thr.release({1: 5})  # type: ignore[dict-item]


def test_empty_vectors() -> None:
    assert LaplaceCount(epsilon=Fraction(1), sensitivity=1).release([]) == []
    assert LaplaceFloat(epsilon=Fraction(1), sensitivity=1.0).release([]) == []
    thr = ThresholdCounts(epsilon=Fraction(1), delta=Fraction(1, 10**6), max_partitions=1, max_rows=1)
    assert thr.release({}) == {}
