"""The Laplace mechanism on vectors, for counts (integers) and sums (floats): pure ε-DP.

Guarantee: for two inputs whose vectors differ by at most `sensitivity` in L1 norm (the whole vector: one
privacy unit's effect on all GROUP BY cells together), the release is ε-DP, ε = sensitivity / scale.
The caller derives the sensitivity from contribution bounds and clamping, never from the data.

Source: OpenDP ``make_laplace`` on ``vector_domain(atom_domain(T))`` with ``l1_distance(T)``. For integers
it samples the discrete Laplace (CKS20); for floats it samples the discrete Laplace on a fine grid 2^k,
which is floating-point safe. The scale is checked against OpenDP's own privacy map.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from ._opendp import at_most, calibrate, dp
from ._timing import padded
from .accuracy import discrete_laplace_ci, laplace_ci
from .base import Frozen, finite_floats, positive_float, positive_fraction, positive_int
from .cost import Cost

__all__ = ["LaplaceCount", "LaplaceFloat", "integer_values"]

_I64 = "i64"
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def integer_values(values: Sequence[Any], *, name: str = "values") -> list[int]:
    """Values as Python ints in the i64 range; anything else is a caller bug (no values in the message)."""
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or isinstance(v, (str, bytes)):
            raise ValueError(f"{name} must be integers")
        try:
            i = int(v)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{name} must be integers") from None
        if i != v:
            raise ValueError(f"{name} must be integers")
        out.append(i)
    if any(not _I64_MIN <= i <= _I64_MAX for i in out):
        raise ValueError(f"{name} must fit in 64 bits")
    return out


class LaplaceCount(Frozen):
    """Integer vector + discrete Laplace noise; ε-DP for an L1 `sensitivity` (an integer)."""

    name = "laplace"

    def __init__(self, *, epsilon: Fraction, sensitivity: int) -> None:
        self.epsilon = positive_fraction(epsilon, name="epsilon")
        self.sensitivity = positive_int(sensitivity, name="sensitivity")
        self.cost = Cost(self.epsilon)
        self.d_in = self.sensitivity
        space = dp.vector_domain(dp.atom_domain(T=_I64)), dp.l1_distance(T=_I64)
        self.scale, self.measurement = calibrate(
            lambda scale: dp.m.make_laplace(*space, scale=scale),
            float(self.sensitivity / self.epsilon),
            self.d_in,
            at_most(self.epsilon),
        )
        self._freeze()

    def ci95(self) -> float:
        """Smallest integer m with P(|noise| <= m) >= 0.95 (exact for the discrete Laplace)."""
        return discrete_laplace_ci(self.scale, 0.05)

    def release(self, values: Sequence[int]) -> list[int]:
        """One noisy integer per input element; the sensitivity covers the whole vector."""
        data = integer_values(values)
        if not data:
            return []
        return list(padded(lambda: self.measurement(data), values=len(data), kind="laplace_int"))

    def __repr__(self) -> str:
        return f"LaplaceCount(epsilon={self.epsilon}, sensitivity={self.sensitivity}, scale={self.scale!r})"


class LaplaceFloat(Frozen):
    """Float vector + Laplace noise; ε-DP for an L1 `sensitivity`."""

    name = "laplace"

    def __init__(self, *, epsilon: Fraction, sensitivity: float) -> None:
        self.epsilon = positive_fraction(epsilon, name="epsilon")
        self.sensitivity = positive_float(sensitivity, name="sensitivity")
        self.cost = Cost(self.epsilon)
        self.d_in = self.sensitivity
        space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
        self.scale, self.measurement = calibrate(
            lambda scale: dp.m.make_laplace(*space, scale=scale),
            float(Fraction(self.sensitivity) / self.epsilon),
            self.d_in,
            at_most(self.epsilon),
        )
        self._freeze()

    def ci95(self) -> float:
        """``scale * ln(20)``: P(|noise| > a) = exp(-a / scale) = 0.05."""
        return laplace_ci(self.scale, 0.05)

    def release(self, values: Sequence[float]) -> list[float]:
        """One noisy float per input element. NaN or ±inf raises: inputs must be clamped first."""
        data = finite_floats(values)
        if not data:
            return []
        return list(padded(lambda: self.measurement(data), values=len(data), kind="laplace_float"))

    def __repr__(self) -> str:
        return f"LaplaceFloat(epsilon={self.epsilon}, sensitivity={self.sensitivity!r}, scale={self.scale!r})"
