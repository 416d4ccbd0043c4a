"""Unit tests: exact (ε, δ) arithmetic and its JSON edge."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from fractions import Fraction

import pytest

from mechanisms.cost import ZERO, Cost, round_down, round_up, to_fraction


def test_quarters_add_to_exactly_one() -> None:
    quarter = Cost.of(0.25)
    assert quarter + quarter + quarter + quarter == Cost.of(1)


def test_tenths_are_exact() -> None:
    tenth = Cost.of(0.1, 1e-6)
    assert tenth.epsilon == Fraction(1, 10)
    assert tenth.delta == Fraction(1, 1_000_000)
    assert sum([tenth] * 10, ZERO) == Cost(Fraction(1), Fraction(1, 100_000))
    assert sum([tenth] * 10) == Cost.of("1", "0.00001")


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.1, Fraction(1, 10)),
        ("0.1", Fraction(1, 10)),
        ("1/3", Fraction(1, 3)),
        (Fraction(2, 7), Fraction(2, 7)),
        (3, Fraction(3)),
        (Decimal("0.05"), Fraction(1, 20)),
        (1e-300, Fraction(1, 10**300)),
    ],
)
def test_to_fraction(value: object, expected: Fraction) -> None:
    assert to_fraction(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-0.1, "-1", Fraction(-1, 2), -1])
def test_negative_rejected(bad: object) -> None:
    with pytest.raises(ValueError):
        Cost.of(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Cost.of(1, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "nan", "inf", "abc", True, None, [1]])
def test_non_numbers_rejected(bad: object) -> None:
    with pytest.raises(ValueError):
        Cost.of(bad)  # type: ignore[arg-type]


def test_direct_construction_is_validated_and_normalised() -> None:
    assert Cost(1, 0).epsilon == Fraction(1)  # type: ignore[arg-type]
    assert isinstance(Cost(1).epsilon, Fraction)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Cost(Fraction(-1))


def test_frozen() -> None:
    c = Cost.of(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epsilon = Fraction(2)  # type: ignore[misc]


def test_fits_within() -> None:
    budget = Cost.of(1, 1e-6)
    assert Cost.of(1, 1e-6).fits_within(budget)
    assert Cost.of(0.5).fits_within(budget)
    assert not Cost.of(1.0000001).fits_within(budget)
    assert not Cost.of(0.1, 2e-6).fits_within(budget)
    assert ZERO.fits_within(ZERO)


def test_split_is_exact() -> None:
    c = Cost.of(1, 1e-5)
    part = c.split(3)
    assert part == Cost(Fraction(1, 3), Fraction(1, 300_000))
    assert part + part + part == c
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            c.split(bad)  # type: ignore[arg-type]


def test_add_other_types() -> None:
    with pytest.raises(TypeError):
        Cost.of(1) + 1  # type: ignore[operator]


def test_to_json_rounds_up() -> None:
    assert Cost.of(0.1, 1e-6).to_json() == {"epsilon": 0.1, "delta": 1e-6}
    third = Cost(Fraction(1, 3), Fraction(2, 3)).to_json()
    assert third == {"epsilon": 0.333333333334, "delta": 0.666666666667}
    assert ZERO.to_json() == {"epsilon": 0.0, "delta": 0.0}
    # never below the exact value, as a decimal
    for f in (Fraction(1, 7), Fraction(22, 7), Fraction(10**15 + 1, 3), Fraction(1, 3 * 10**20)):
        j = Cost(f).to_json()["epsilon"]
        assert Fraction(repr(j)) >= f
        assert Fraction(repr(j)) - f <= f * Fraction(1, 10**11)


def test_round_down() -> None:
    assert round_down(Fraction(2, 3)) == 0.666666666666
    assert round_up(Fraction(2, 3)) == 0.666666666667
    assert round_down(Fraction(1)) == 1.0
    assert round_up(Fraction(-1, 3)) == -0.333333333333
