"""The budget split and the Laplace/Gaussian choice (mechanisms/allocation.py).

Unit: exact sums, the equal split, the floor, bad input. Numerical: the split is optimal (no random
perturbation that keeps the total and the floor lowers the objective). Choice: Gaussian wins with many
measurements and a large enough δ, never at δ = 0. Statistical: a Gaussian built from the plan has the
σ it claims (KS and a 6-sigma bound on the sample standard deviation; OpenDP cannot be seeded, so each
assertion is at level ~1e-4 or below), and the plan's cost fits (ε, δ) by OpenDP's own maps.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from scipy import stats

from mechanisms import Gaussian, LaplaceCount, LaplaceFloat
from mechanisms._opendp import dp, float_at_most
from mechanisms.accounting import epsilon_delta_to_rho, rho_to_epsilon
from mechanisms.allocation import (
    DEFAULT_FLOOR,
    NoiseItem,
    choose_noise,
    gain,
    split_epsilon,
    split_rho,
)
from mechanisms.cost import Cost

LEVEL = 1e-4
DELTA = Fraction(1, 10**6)


def _laplace_objective(weights: dict[str, float], shares: dict[str, Fraction]) -> float:
    return math.fsum(w / float(shares[k]) for k, w in weights.items())


def _gaussian_objective(weights: dict[str, float], shares: dict[str, Fraction]) -> float:
    return math.fsum(w / math.sqrt(float(shares[k])) for k, w in weights.items())


# -- the split ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10])
@pytest.mark.parametrize("epsilon", [Fraction(1), Fraction(1, 3), Fraction(7, 10)])
def test_equal_weights_give_exactly_the_equal_split(n: int, epsilon: Fraction) -> None:
    for w in (1.0, 0.37, 0.0):
        weights = {f"m{i}": w for i in range(n)}
        assert split_epsilon(weights, epsilon) == {k: epsilon / n for k in weights}
        assert split_rho(weights, epsilon) == {k: epsilon / n for k in weights}


def test_shares_sum_exactly_to_the_total() -> None:
    rng = random.Random(12)
    for _ in range(200):
        n = rng.randint(1, 12)
        weights = {f"m{i}": rng.choice([0.0, rng.random(), rng.random() * 1e6, 1e-9]) for i in range(n)}
        total = Fraction(rng.randint(1, 1000), rng.randint(1, 1000))
        for split in (split_epsilon, split_rho):
            shares = split(weights, total)
            assert list(shares) == list(weights)
            assert sum(shares.values()) == total  # exactly, never more
            assert all(isinstance(s, Fraction) and s >= total * DEFAULT_FLOOR / n for s in shares.values())


def test_the_sqrt_rule_and_its_closed_form() -> None:
    weights = {"sum": 1.0, "count": 0.5}
    shares = split_epsilon(weights, Fraction(1))
    assert float(shares["sum"] / shares["count"]) == pytest.approx(math.sqrt(2), rel=1e-8)
    best = (1 + math.sqrt(0.5)) ** 2
    assert _laplace_objective(weights, shares) == pytest.approx(best, rel=1e-12)
    rho = split_rho({"a": 8.0, "b": 1.0}, Fraction(1))
    assert float(rho["a"] / rho["b"]) == pytest.approx(4.0, rel=1e-8)  # 8^(2/3)


def test_the_floor_holds_a_negligible_measure_up() -> None:
    shares = split_epsilon({"a": 1.0, "b": 0.0, "c": 1e-12}, Fraction(1))
    assert shares["b"] == shares["c"] == Fraction(1, 30)  # a tenth of the equal share
    assert shares["a"] == Fraction(14, 15)
    half = Fraction(1, 2)
    assert split_epsilon({"a": 1.0, "b": 0.0}, Fraction(1), floor=Fraction(1)) == {"a": half, "b": half}
    loose = split_epsilon({"a": 1.0, "b": 1e-12}, Fraction(1), floor=Fraction(1, 1000))
    assert loose["b"] == Fraction(1, 2000)


@pytest.mark.parametrize("split, objective", [(split_epsilon, _laplace_objective), (split_rho, _gaussian_objective)])
def test_random_perturbations_never_lower_the_objective(split, objective) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    for _ in range(60):
        n = rng.randint(2, 8)
        weights = {f"m{i}": rng.choice([rng.random(), rng.random() ** 4, 0.0]) for i in range(n)}
        weights["m0"] += 1.0
        total = Fraction(1)
        least = total * DEFAULT_FLOOR / n
        shares = split(weights, total)
        best = objective(weights, shares)
        for _ in range(100):
            i, j = rng.sample(list(weights), 2)
            step = Fraction(rng.random()) * (shares[i] - least) * Fraction(rng.choice([1, 10**-3, 10**-6]))
            moved = dict(shares)
            moved[i] -= step
            moved[j] += step
            assert moved[i] >= least
            assert objective(weights, moved) >= best * (1 - 1e-12)


@pytest.mark.parametrize(
    "weights, total, floor",
    [
        ({}, 1, None),
        ({"a": -1.0}, 1, None),
        ({"a": math.nan}, 1, None),
        ({"a": math.inf}, 1, None),
        ({"a": True}, 1, None),
        ({"a": 1.0}, 0, None),
        ({"a": 1.0}, -1, None),
        ({"a": 1.0}, 1, Fraction(0)),
        ({"a": 1.0}, 1, Fraction(3, 2)),
    ],
)
def test_bad_input_is_refused(weights: dict, total: object, floor: Fraction | None) -> None:
    with pytest.raises(ValueError):
        split_epsilon(weights, total, floor=floor)  # type: ignore[arg-type]


def test_bad_items_are_refused() -> None:
    for kwargs in ({"l1_sensitivity": 0}, {"l1_sensitivity": math.inf}, {"l1_sensitivity": 1, "weight": -1},
                   {"l1_sensitivity": 1.5, "integer": True}, {"l1_sensitivity": 1, "l2_sensitivity": 0}):
        with pytest.raises(ValueError):
            NoiseItem("x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        choose_noise([NoiseItem("x", 1.0), NoiseItem("x", 2.0)], Fraction(1))
    with pytest.raises(ValueError):
        choose_noise([], Fraction(1))
    with pytest.raises(ValueError):
        choose_noise([NoiseItem("x", 1.0)], Fraction(1), Fraction(1))


# -- Laplace or Gaussian ------------------------------------------------------------------------------


def _items(n: int, *, weight: float = 1.0, sensitivity: float = 1.0, integer: bool = False) -> list[NoiseItem]:
    return [NoiseItem(f"m{i}", sensitivity, integer=integer, weight=weight) for i in range(n)]


def test_without_delta_it_is_laplace_with_the_split() -> None:
    items = [NoiseItem("count", 4, integer=True, weight=0.5), NoiseItem("sum", 4000.0, weight=1 / 1000)]
    plan = choose_noise(items, Fraction(1))
    assert plan.mechanism == "laplace" and plan.cost == Cost(Fraction(1)) and plan.rho is None
    assert plan.gaussian_objective is None
    expected = split_epsilon({"count": 2.0, "sum": 4.0}, Fraction(1))
    assert {c.item.id: c.epsilon for c in plan.choices} == expected
    assert plan["count"].scale == pytest.approx(4 / float(expected["count"]))
    built = plan["count"].build()
    assert isinstance(built, LaplaceCount) and built.ci95() == plan["count"].ci95
    assert isinstance(plan["sum"].build(), LaplaceFloat)


def test_independent_measures_keep_todays_plan() -> None:
    """Equal weights and δ = 0: exactly the equal split that plans use today."""
    plan = choose_noise(_items(3), Fraction(1))
    assert [c.epsilon for c in plan.choices] == [Fraction(1, 3)] * 3


@pytest.mark.parametrize("n, delta, expected", [
    (1, Fraction(1, 10**6), "laplace"),
    (2, Fraction(1, 10**6), "laplace"),
    (5, Fraction(1, 10**9), "laplace"),
    (10, Fraction(1, 10**5), "gaussian"),
    (30, Fraction(1, 10**6), "gaussian"),
    (100, Fraction(1, 10**9), "gaussian"),
])
def test_the_choice_flips_with_many_measures_and_larger_delta(n: int, delta: Fraction, expected: str) -> None:
    plan = choose_noise(_items(n), Fraction(1), delta)
    assert plan.mechanism == expected
    assert plan.gaussian_objective is not None
    assert plan.objective == min(plan.laplace_objective, plan.gaussian_objective)


def test_the_flip_is_monotone() -> None:
    """More measures, or more δ, can only move the choice from Laplace to Gaussian."""
    for delta in (Fraction(1, 10**8), Fraction(1, 10**6), Fraction(1, 10**4)):
        kinds = [choose_noise(_items(n), Fraction(1), delta).mechanism for n in range(1, 41, 3)]
        assert kinds == sorted(kinds, key=lambda k: k == "gaussian")
    for n in (4, 12):
        kinds = [choose_noise(_items(n), Fraction(1), Fraction(1, 10**k)).mechanism for k in range(12, 3, -1)]
        assert kinds == sorted(kinds, key=lambda k: k == "gaussian")


def test_the_gaussian_plan_costs_what_rho_converts_to() -> None:
    plan = choose_noise(_items(30), Fraction(1), DELTA)
    assert plan.mechanism == "gaussian"
    rho = epsilon_delta_to_rho(Fraction(1), DELTA)
    assert plan.rho == rho
    used = sum(c.rho for c in plan.choices if c.rho is not None)
    assert rho * (1 - Fraction(1, 2**29)) < used < rho  # a hair of headroom for OpenDP's float sums
    assert plan.cost == Cost(Fraction(rho_to_epsilon(rho, DELTA)), DELTA, rho)
    assert plan.cost.fits_within(Cost(Fraction(1), DELTA))
    assert plan.cost.to_json()["rho"] >= float(rho)
    assert all(c.epsilon is None for c in plan.choices)


def test_the_laplace_plan_fits_by_opendps_maps() -> None:
    items = [NoiseItem("n", 3, integer=True, weight=2.0), NoiseItem("s", 250.0, weight=0.01), NoiseItem("q", 7.5)]
    plan = choose_noise(items, Fraction(2, 3))
    built = [c.build() for c in plan.choices]
    assert sum(Fraction(m.measurement.map(m.d_in)) for m in built) <= Fraction(2, 3)


def test_the_gaussian_plan_fits_by_opendps_composition_and_conversion() -> None:
    """Equal sensitivities: OpenDP composes the very measurements and converts the composition."""
    plan = choose_noise(_items(20, sensitivity=2.0), Fraction(1), DELTA)
    assert plan.mechanism == "gaussian"
    measurements = [c.build().measurement for c in plan.choices]  # type: ignore[attr-defined]
    composed = dp.c.make_composition(measurements)
    assert Fraction(composed.map(2.0)) <= plan.rho
    epsilon = dp.c.make_zCDP_to_approxDP(composed).map(2.0).epsilon(float_at_most(DELTA))
    assert Fraction(epsilon) <= plan.cost.epsilon <= Fraction(1)


def test_the_gaussian_plan_fits_with_mixed_sensitivities() -> None:
    items = [NoiseItem(f"m{i}", float(1 + i), integer=i % 2 == 0, weight=1 / (1 + i)) for i in range(25)]
    plan = choose_noise(items, Fraction(1, 2), Fraction(1, 10**5))
    assert plan.mechanism == "gaussian"
    built = [c.build() for c in plan.choices]
    spent = sum(Fraction(m.measurement.map(m.d_in)) for m in built)  # zCDP composes by adding ρ
    assert spent <= plan.rho
    assert Fraction(rho_to_epsilon(spent, Fraction(1, 10**5))) <= plan.cost.epsilon <= Fraction(1, 2)


@pytest.mark.parametrize("integer", [False, True])
def test_a_gaussian_built_from_the_plan_has_the_sigma_it_claims(integer: bool) -> None:
    items = _items(30, sensitivity=3.0, integer=integer)
    plan = choose_noise(items, Fraction(1), DELTA)
    choice = plan["m7"]
    assert choice.mechanism == "gaussian" and choice.rho is not None
    mechanism = choice.build()
    assert isinstance(mechanism, Gaussian)
    assert mechanism.scale == pytest.approx(choice.scale, rel=1e-9)
    sigma = 3.0 / math.sqrt(2 * float(choice.rho))
    assert choice.scale == pytest.approx(sigma, rel=1e-12)
    n = 4000
    noise = [float(x) for x in mechanism.release([0] * n if integer else [0.0] * n)]
    sd = math.sqrt(math.fsum(x * x for x in noise) / n)
    assert abs(sd - sigma) < 6 * sigma / math.sqrt(2 * n)
    assert abs(math.fsum(noise) / n) < 6 * sigma / math.sqrt(n)
    if not integer:
        assert stats.kstest(noise, "norm", args=(0.0, sigma)).pvalue > LEVEL
    covered = sum(abs(x) <= choice.ci95 for x in noise)
    assert stats.binomtest(covered, n, 0.95).pvalue > LEVEL


def test_choose_noise_reads_no_data() -> None:
    """The same public inputs give the same plan."""
    items = _items(12, weight=0.3)
    assert choose_noise(items, Fraction(1), DELTA) == choose_noise(items, Fraction(1), DELTA)


# -- gain ---------------------------------------------------------------------------------------------


def test_gain() -> None:
    assert gain({f"m{i}": 1.0 for i in range(10)}, 1) == 1.0
    avg = gain({"sum": 1.0, "count": 0.5}, 1)
    assert avg == pytest.approx(3 / (1 + math.sqrt(0.5)) ** 2, rel=1e-9)
    assert gain({"sum": 1.0, "count": 0.5}, 1, 1e-6) == avg  # two measures: Laplace still wins
    assert gain({f"m{i}": 1.0 for i in range(30)}, 1, 1e-6) > 1.5
    assert gain(_items(30), Fraction(1), DELTA) == gain({f"m{i}": 1.0 for i in range(30)}, 1, 1e-6)
    rng = random.Random(3)
    for _ in range(30):
        weights = {f"m{i}": rng.random() for i in range(rng.randint(1, 10))}
        assert gain(weights, 1) >= 1 - 1e-12
