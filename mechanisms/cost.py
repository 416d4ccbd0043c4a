"""Exact privacy costs under approximate DP: (ε, δ) as fractions.

Costs add under sequential composition (basic composition theorem: running an (ε₁, δ₁)-DP and an
(ε₂, δ₂)-DP mechanism on the same data is (ε₁ + ε₂, δ₁ + δ₂)-DP). They are kept as `Fraction`s so that
budgets never drift: four costs of 0.25 add to exactly 1. Floats appear only at the JSON edge, rounded up.

A cost may also record `rho`: the ρ of the zCDP-accounted measurements whose conversion at δ is part of
this (ε, δ) (Gaussian noise composed in zCDP, BS16). It is a record, not a budget: what is charged and
compared is always (ε, δ). A cost without ρ behaves exactly as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from numbers import Rational

__all__ = ["Cost", "ZERO", "to_fraction", "round_up", "round_down"]

# significant decimal digits kept by `Cost.to_json`
_JSON_DIGITS = 12


def to_fraction(value: float | str | Fraction | int | Decimal, *, name: str = "value") -> Fraction:
    """Convert `value` to a finite Fraction exactly as written.

    A float goes through its shortest decimal repr (``0.1 -> 1/10``), as the caller most likely typed it.
    Raises ValueError for NaN, infinities, booleans and anything that is not a number.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, not a bool")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite")
        return Fraction(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{name} must be finite")
        return Fraction(value)
    if isinstance(value, Rational):
        return Fraction(value.numerator, value.denominator)
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{name} must be a finite decimal or fraction, got {value!r}") from None
    raise ValueError(f"{name} must be a number, got {type(value).__name__}")


def round_up(value: Fraction, digits: int = _JSON_DIGITS) -> float:
    """`value` rounded up (towards +inf) to `digits` significant decimal digits, as a float.

    For what has been spent: the reported figure is never below the exact one.
    """
    return _round(value, digits, up=True)


def round_down(value: Fraction, digits: int = _JSON_DIGITS) -> float:
    """`value` rounded down (towards -inf) to `digits` significant decimal digits: for what remains."""
    return _round(value, digits, up=False)


def _round(value: Fraction, digits: int, *, up: bool) -> float:
    if value == 0:
        return 0.0
    if value < 0:
        return -_round(-value, digits, up=not up)
    # exponent e with 10**e <= value < 10**(e+1), found exactly
    e = math.floor(math.log10(value.numerator) - math.log10(value.denominator))
    while Fraction(10) ** e > value:
        e -= 1
    while Fraction(10) ** (e + 1) <= value:
        e += 1
    shift = e - digits + 1
    steps = value / Fraction(10) ** shift
    q = math.ceil(steps) if up else math.floor(steps)
    return float(Decimal(q).scaleb(shift))


@dataclass(frozen=True, order=False)
class Cost:
    """An (ε, δ)-DP cost, exact. Compose with ``+``; compare with `fits_within`.

    `rho`, when set, is the ρ-zCDP part this (ε, δ) was converted from (see the module docstring); it
    takes part in equality (two costs with different records differ) but never in `fits_within`. A ρ > 0
    needs a δ > 0: zCDP implies no pure ε-DP.
    """

    epsilon: Fraction
    delta: Fraction = Fraction(0)
    rho: Fraction | None = None

    def __post_init__(self) -> None:
        for name in ("epsilon", "delta"):
            raw = getattr(self, name)
            value = to_fraction(raw, name=name)
            if value < 0:
                raise ValueError(f"{name} must be >= 0")
            object.__setattr__(self, name, value)
        if self.rho is not None:
            rho = to_fraction(self.rho, name="rho")
            if rho < 0:
                raise ValueError("rho must be >= 0")
            if rho > 0 and self.delta == 0:
                raise ValueError("a cost with rho > 0 needs delta > 0 (zCDP gives no pure ε-DP)")
            object.__setattr__(self, "rho", rho)

    @staticmethod
    def of(
        epsilon: float | str | Fraction | int,
        delta: float | str | Fraction | int = 0,
        *,
        rho: float | str | Fraction | int | None = None,
    ) -> Cost:
        """Build a cost from user input, exactly: ``Cost.of(0.1).epsilon == Fraction(1, 10)``."""
        return Cost(
            to_fraction(epsilon, name="epsilon"),
            to_fraction(delta, name="delta"),
            None if rho is None else to_fraction(rho, name="rho"),
        )

    def __add__(self, other: object) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        # the zCDP parts compose by adding their ρ; a cost without one contributes none
        if self.rho is None and other.rho is None:
            rho = None
        else:
            rho = (self.rho or Fraction(0)) + (other.rho or Fraction(0))
        return Cost(self.epsilon + other.epsilon, self.delta + other.delta, rho)

    def __radd__(self, other: object) -> Cost:
        # lets sum(costs) start from the int 0
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def fits_within(self, other: Cost) -> bool:
        """True when both components are <= those of `other` (this cost can be paid from `other`)."""
        return self.epsilon <= other.epsilon and self.delta <= other.delta

    def split(self, n: int) -> Cost:
        """One of `n` equal parts, exactly: ``c.split(n)`` added n times is ``c``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError("n must be a positive integer")
        return Cost(self.epsilon / n, self.delta / n, None if self.rho is None else self.rho / n)

    def to_json(self) -> dict[str, float]:
        """``{"epsilon", "delta"}`` (and ``"rho"`` when set) as floats rounded up to 12 significant
        digits (spent-style)."""
        out = {"epsilon": round_up(self.epsilon), "delta": round_up(self.delta)}
        if self.rho is not None:
            out["rho"] = round_up(self.rho)
        return out

    def __str__(self) -> str:
        j = self.to_json()
        if "rho" in j:
            return f"(ε={j['epsilon']:g}, δ={j['delta']:g}, ρ={j['rho']:g})"
        return f"(ε={j['epsilon']:g}, δ={j['delta']:g})"


ZERO = Cost(Fraction(0))
