"""The ledger's fixed units: amounts are stored as integers so that both databases add them exactly.

ε is counted in 1e-12 and δ in 1e-18. A charge is rounded *up* to the unit (the ledger never records
less than was spent); a total is rounded *down* (never more than was granted) — for totals written in
decimals with at most 12 (ε) or 18 (δ) places both are exact, so totals read back as given. Four
charges of 0.25 spend exactly 1.0; 37 charges of 0.027 fit in 1.0 and a 38th does not.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from mechanisms.cost import Cost, round_down, round_up, to_fraction

from .errors import InvalidInput

__all__ = [
    "DELTA_UNIT",
    "EPSILON_UNIT",
    "MAX_DELTA",
    "MAX_EPSILON",
    "Units",
    "charge_units",
    "cost_of",
    "remaining_json",
    "rho_of",
    "rho_text",
    "spent_json",
    "total_json",
    "total_units",
]

EPSILON_UNIT = 10**12  # units per 1.0 of ε
DELTA_UNIT = 10**18  # units per 1.0 of δ
# bounds that keep every figure, and any sum of charges that fits a total, inside a signed 64-bit integer
MAX_EPSILON = Fraction(10**6)
MAX_DELTA = Fraction(1)

Units = tuple[int, int]  # (ε units, δ units)


def _checked(value: Fraction, name: str, limit: Fraction) -> Fraction:
    if value < 0:
        raise InvalidInput(f"{name} must be >= 0")
    if value > limit:
        raise InvalidInput(f"{name} must be <= {limit}")
    return value


def charge_units(cost: Cost) -> Units:
    """`cost` in ledger units, rounded up (what a charge records)."""
    epsilon = _checked(cost.epsilon, "epsilon", MAX_EPSILON)
    delta = _checked(cost.delta, "delta", MAX_DELTA)
    return math.ceil(epsilon * EPSILON_UNIT), math.ceil(delta * DELTA_UNIT)


def total_units(
    epsilon: float | str | Fraction | int | Decimal, delta: float | str | Fraction | int | Decimal
) -> Units:
    """A granted total in ledger units, rounded down (exact for ordinary decimals)."""
    try:
        e = to_fraction(epsilon, name="epsilon")
        d = to_fraction(delta, name="delta")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    e = _checked(e, "epsilon", MAX_EPSILON)
    d = _checked(d, "delta", MAX_DELTA)
    return math.floor(e * EPSILON_UNIT), math.floor(d * DELTA_UNIT)


def cost_of(units: Units, rho: Fraction | None = None) -> Cost:
    """The exact cost that `units` stand for (with `rho`, the zCDP record it was converted from)."""
    return Cost(Fraction(units[0], EPSILON_UNIT), Fraction(units[1], DELTA_UNIT), rho)


def rho_text(rho: Fraction | None) -> str | None:
    """A ρ as the ledger stores it: the exact fraction, ``"p/q"`` (None stays None)."""
    return None if rho is None else str(rho)


def rho_of(text: str | None) -> Fraction | None:
    """The ρ a ledger entry recorded (None where it recorded none)."""
    return None if text is None else Fraction(text)


def spent_json(units: Units) -> tuple[float, float]:
    """(ε, δ) spent as floats for JSON, rounded up."""
    c = cost_of(units)
    return round_up(c.epsilon), round_up(c.delta)


def remaining_json(units: Units) -> tuple[float, float]:
    """(ε, δ) remaining as floats for JSON, rounded down."""
    c = cost_of(units)
    return round_down(c.epsilon), round_down(c.delta)


def total_json(units: Units) -> tuple[float, float]:
    """A total as floats, as given (the nearest float to the stored exact decimal)."""
    return float(Fraction(units[0], EPSILON_UNIT)), float(Fraction(units[1], DELTA_UNIT))
