"""The Gaussian mechanism on vectors: ρ-zCDP, converted to (ε, δ) for the ledger.

Guarantee: for two inputs whose vectors differ by at most `sensitivity` in L2 norm, the release is
ρ-zCDP with ρ = sensitivity² / (2·scale²) (BS16, Proposition 1.6), hence (ε, δ)-DP for the ε that
`accounting.rho_to_epsilon` gives at δ.

Source: OpenDP ``make_gaussian`` on ``vector_domain(atom_domain(T))`` with ``l2_distance(T=float)`` and
``zero_concentrated_divergence()``: the discrete Gaussian (CKS20) for integers, and on a fine 2^k grid for
floats. The scale is checked against OpenDP's own privacy map, and (for `for_epsilon_delta`) against
OpenDP's zCDP to (ε, δ) conversion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from ._opendp import at_most, calibrate, dp, float_at_most
from ._timing import padded
from .accounting import epsilon_delta_to_rho, rho_to_epsilon
from .accuracy import gaussian_ci
from .base import Frozen, finite_floats, positive_float, positive_fraction
from .cost import Cost, to_fraction
from .laplace import integer_values

__all__ = ["Gaussian"]


class Gaussian(Frozen):
    """Vector + Gaussian noise of standard deviation `scale`; ρ-zCDP for an L2 `sensitivity`.

    `cost` is in (ε, δ): it needs a δ, given either by `for_epsilon_delta` (cost exactly (ε, δ)) or by
    the `delta` keyword (cost ε from OpenDP's conversion of ρ at δ). Without a δ the mechanism is charged
    by its `rho` (zCDP accounting), and reading `cost` raises ValueError; `cost_at(delta)` converts.
    """

    name = "gaussian"

    def __init__(
        self,
        *,
        rho: Fraction,
        sensitivity: float,
        integer: bool = False,
        delta: Fraction | None = None,
    ) -> None:
        self.rho = positive_fraction(rho, name="rho")
        self.sensitivity = positive_float(sensitivity, name="sensitivity")
        self.integer = bool(integer)
        self.d_in = self.sensitivity
        atom = dp.atom_domain(T="i64") if self.integer else dp.atom_domain(T=float, nan=False)
        space = dp.vector_domain(atom), dp.l2_distance(T=float)
        self.scale, self.measurement = calibrate(
            lambda scale: dp.m.make_gaussian(*space, scale=scale),
            self.sensitivity / math.sqrt(2.0 * float(self.rho)),
            self.d_in,
            at_most(self.rho),
        )
        self._cost = None if delta is None else self.cost_at(delta)
        self._freeze()

    @classmethod
    def for_epsilon_delta(
        cls,
        *,
        epsilon: Fraction,
        delta: Fraction,
        sensitivity: float,
        integer: bool = False,
    ) -> Gaussian:
        """The least noise (largest ρ) whose (ε, δ) conversion fits; `cost` is exactly (ε, δ)."""
        target = Cost(positive_fraction(epsilon, name="epsilon"), positive_fraction(delta, name="delta"))
        rho = epsilon_delta_to_rho(target.epsilon, target.delta)
        mechanism = cls(rho=rho, sensitivity=sensitivity, integer=integer)
        # the conversion is checked once more on the very measurement that will run
        profile = dp.c.make_zCDP_to_approxDP(mechanism.measurement).map(mechanism.d_in)
        if Fraction(profile.epsilon(float_at_most(target.delta))) > target.epsilon:
            raise ValueError("could not fit the Gaussian mechanism within (epsilon, delta)")
        object.__setattr__(mechanism, "_cost", target)
        return mechanism

    @property
    def cost(self) -> Cost:
        if self._cost is None:
            raise ValueError("a zCDP Gaussian built from rho has no (ε, δ) cost: use rho, or cost_at(delta)")
        return self._cost

    def cost_at(self, delta: Fraction | float | str) -> Cost:
        """The (ε, δ) this mechanism's ρ converts to at `delta` (ε from OpenDP, rounded conservatively)."""
        d = to_fraction(delta, name="delta")
        return Cost(Fraction(rho_to_epsilon(self.rho, d)), d)

    def ci95(self) -> float:
        """``1.959963985 * scale`` (for the discrete Gaussian this is the continuous approximation)."""
        return gaussian_ci(self.scale, 0.05)

    def release(self, values: Sequence[Any]) -> list[Any]:
        """One noisy value per input element (ints when `integer`). NaN or ±inf raises."""
        data: list[Any] = integer_values(values) if self.integer else finite_floats(values)
        if not data:
            return []
        kind = "gaussian_int" if self.integer else "gaussian_float"
        return list(padded(lambda: self.measurement(data), values=len(data), kind=kind))

    def __repr__(self) -> str:
        return (
            f"Gaussian(rho={self.rho}, sensitivity={self.sensitivity!r}, integer={self.integer}, "
            f"scale={self.scale!r})"
        )
