"""Unit tests: zCDP <-> (ε, δ) conversions."""

from __future__ import annotations

from fractions import Fraction

import pytest

from mechanisms.accounting import epsilon_delta_to_rho, rho_to_epsilon, textbook_rho_to_epsilon


@pytest.mark.parametrize("rho", [Fraction(1, 1000), Fraction(1, 10), Fraction(1, 2), Fraction(4)])
@pytest.mark.parametrize("delta", [Fraction(1, 10**5), Fraction(1, 10**9)])
def test_opendp_conversion_is_at_most_textbook(rho: Fraction, delta: Fraction) -> None:
    eps = rho_to_epsilon(rho, delta)
    assert float(rho) < eps <= textbook_rho_to_epsilon(rho, delta)


def test_rho_to_epsilon_monotone() -> None:
    delta = Fraction(1, 10**6)
    values = [rho_to_epsilon(Fraction(r, 100), delta) for r in (1, 2, 5, 10, 50)]
    assert values == sorted(values)
    assert rho_to_epsilon(Fraction(1, 10), Fraction(1, 10**4)) < rho_to_epsilon(Fraction(1, 10), Fraction(1, 10**8))
    assert rho_to_epsilon(0, delta) == 0.0


@pytest.mark.parametrize("epsilon", [Fraction(1, 10), Fraction(1), Fraction(8)])
def test_epsilon_delta_to_rho_is_largest_that_fits(epsilon: Fraction) -> None:
    delta = Fraction(1, 10**6)
    rho = epsilon_delta_to_rho(epsilon, delta)
    assert isinstance(rho, Fraction)
    assert Fraction(rho_to_epsilon(rho, delta)) <= epsilon
    assert Fraction(rho_to_epsilon(rho * (1 + Fraction(1, 10**8)), delta)) > epsilon
    # tighter than inverting the textbook bound
    assert textbook_rho_to_epsilon(rho, delta) > epsilon


@pytest.mark.parametrize("delta", [0, 1, Fraction(-1, 10), 2])
def test_bad_delta(delta: object) -> None:
    with pytest.raises(ValueError):
        rho_to_epsilon(Fraction(1), delta)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        epsilon_delta_to_rho(Fraction(1), delta)  # type: ignore[arg-type]


def test_bad_epsilon_and_rho() -> None:
    with pytest.raises(ValueError):
        epsilon_delta_to_rho(0, Fraction(1, 10**6))
    with pytest.raises(ValueError):
        rho_to_epsilon(-1, Fraction(1, 10**6))
