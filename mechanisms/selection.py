"""Private selection: report-noisy-max / top-k over scores, and quantiles by the exponential mechanism.

`NoisyTopK` guarantee: for two score vectors that differ by at most `sensitivity` in every coordinate
(L∞; with `monotonic`, all coordinates move in the same direction), the k released indices are ε-DP.
Source: OpenDP ``make_noisy_max`` (k = 1) / ``make_noisy_top_k`` with ``max_divergence()``; with
exponential noise these are permute-and-flip (MS20) and its top-k extension, the exponential mechanism's
peeling equivalent.

`ExponentialQuantile` guarantee: adding or removing one privacy unit (at most `max_rows` rows) releases
an ε-DP candidate. It uses the score of OpenDP's ``make_quantile_score_candidates`` (Smith11): with
alpha = num/den, ``score_i = |(den - num)·#(x < c_i) - num·#(x > c_i)|`` (lower is better), whose L∞
sensitivity per row is max(num, den - num), non-monotonic. The scores need only per-candidate counts, so
the engine can compute them with a GROUP BY and the rows never leave it; the selection is OpenDP's
``make_noisy_max(negate=True)``, exactly as in ``make_private_quantile``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from ._opendp import at_most, calibrate, dp
from ._timing import padded
from .base import Frozen, finite_floats, positive_float, positive_fraction, positive_int
from .cost import Cost, to_fraction
from .laplace import integer_values

__all__ = ["NoisyTopK", "ExponentialQuantile", "candidate_grid"]

_U64_MAX = 2**64 - 1


class NoisyTopK(Frozen):
    """The indices of the k largest noisy scores, best first; ε-DP for an L∞ score `sensitivity`.

    An integer `sensitivity` means integer scores (i64); a float one, float scores.
    """

    name = "noisy_max"

    def __init__(
        self,
        *,
        epsilon: Fraction,
        sensitivity: int | float,
        k: int = 1,
        monotonic: bool,
    ) -> None:
        self.epsilon = positive_fraction(epsilon, name="epsilon")
        self.integer = isinstance(sensitivity, int) and not isinstance(sensitivity, bool)
        self.sensitivity: int | float = (
            positive_int(sensitivity, name="sensitivity")
            if self.integer
            else positive_float(sensitivity, name="sensitivity")
        )
        self.k = positive_int(k, name="k")
        self.monotonic = bool(monotonic)
        self.cost = Cost(self.epsilon)
        self.d_in = self.sensitivity
        T: Any = "i64" if self.integer else float
        atom = dp.atom_domain(T=T) if self.integer else dp.atom_domain(T=float, nan=False)
        space = dp.vector_domain(atom), dp.linf_distance(T=T, monotonic=self.monotonic)

        def build(scale: float) -> Any:
            if self.k == 1:
                return dp.m.make_noisy_max(*space, dp.max_divergence(), scale=scale)
            return dp.m.make_noisy_top_k(*space, dp.max_divergence(), k=self.k, scale=scale)

        # ε = k · (1 if monotonic else 2) · Δ / scale
        factor = self.k * (1 if self.monotonic else 2)
        self.scale, self.measurement = calibrate(
            build,
            float(factor * Fraction(self.sensitivity) / self.epsilon),
            self.d_in,
            at_most(self.epsilon),
        )
        self._freeze()

    def ci95(self) -> float | None:
        """A selection has no additive error to state."""
        return None

    def release(self, scores: Sequence[int | float]) -> list[int]:
        """Indices of the selected scores, best first (k of them)."""
        if len(scores) < self.k:
            raise ValueError("fewer scores than k")
        data: list[Any] = integer_values(scores, name="scores") if self.integer else finite_floats(scores, name="scores")
        out = padded(lambda: self.measurement(data), values=len(data), kind="noisy_max")
        return [int(out)] if self.k == 1 else [int(i) for i in out]

    def __repr__(self) -> str:
        return (
            f"NoisyTopK(epsilon={self.epsilon}, sensitivity={self.sensitivity!r}, k={self.k}, "
            f"monotonic={self.monotonic}, scale={self.scale!r})"
        )


class ExponentialQuantile(Frozen):
    """The alpha-quantile among `candidates` by the exponential mechanism, from per-candidate counts.

    `scale` is in ranks (OpenDP's ``make_private_quantile`` scale); `score_scale` is the noise scale on the
    integer scores, which are ranks times den.
    """

    name = "exponential"

    def __init__(
        self,
        *,
        epsilon: Fraction,
        alpha: Fraction,
        candidates: Sequence[float],
        max_rows: int,
    ) -> None:
        self.epsilon = positive_fraction(epsilon, name="epsilon")
        self.alpha = to_fraction(alpha, name="alpha")
        if not 0 <= self.alpha <= 1:
            raise ValueError("alpha must be in [0, 1]")
        self.candidates = tuple(finite_floats(candidates, name="candidates"))
        if not self.candidates:
            raise ValueError("candidates must not be empty")
        if any(a >= b for a, b in zip(self.candidates, self.candidates[1:])):
            raise ValueError("candidates must be strictly increasing")
        self.max_rows = positive_int(max_rows, name="max_rows")
        self.cost = Cost(self.epsilon)
        num, den = self.alpha.numerator, self.alpha.denominator
        self._num, self._den = num, den
        self.sensitivity = self.max_rows * max(num, den - num)
        self.d_in = self.sensitivity
        space = dp.vector_domain(dp.atom_domain(T="u64")), dp.linf_distance(T="u64", monotonic=False)
        self.score_scale, self.measurement = calibrate(
            lambda scale: dp.m.make_noisy_max(*space, dp.max_divergence(), scale=scale, negate=True),
            float(2 * self.sensitivity / self.epsilon),
            self.d_in,
            at_most(self.epsilon),
        )
        self.scale = self.score_scale / den
        self._freeze()

    def ci95(self) -> float | None:
        """The error of a quantile depends on the data's spread: no closed form."""
        return None

    def scores(self, below: Sequence[int], above: Sequence[int]) -> list[int]:
        """``|(den - num)·below_i - num·above_i|`` per candidate (lower is better)."""
        num, den = self._num, self._den
        return [abs((den - num) * lt - num * gt) for lt, gt in zip(below, above)]

    def release_from_histogram(
        self,
        below: Sequence[int],
        equal: Sequence[int],
        above: Sequence[int],
    ) -> float:
        """The selected candidate, given #(x < c_i), #(x = c_i), #(x > c_i) for each candidate."""
        n = len(self.candidates)
        if not len(below) == len(equal) == len(above) == n:
            raise ValueError("below, equal and above need one count per candidate")
        lt = integer_values(below, name="below")
        eq = integer_values(equal, name="equal")
        gt = integer_values(above, name="above")
        if any(v < 0 for v in (*lt, *eq, *gt)):
            raise ValueError("counts must be >= 0")
        if len({a + b + c for a, b, c in zip(lt, eq, gt)}) != 1:
            raise ValueError("below + equal + above must be the same total for every candidate")
        scores = self.scores(lt, gt)
        if max(scores) > _U64_MAX:
            raise ValueError("counts too large to score")
        return self.candidates[int(padded(lambda: self.measurement(scores), values=len(scores), kind="noisy_max"))]

    def release(self, values: Sequence[float]) -> float:
        """The selected candidate for raw values (convenience; the gateway sends counts)."""
        data = sorted(finite_floats(values))
        n = len(data)
        below, equal, above = [], [], []
        for c in self.candidates:
            lt = bisect.bisect_left(data, c)
            le = bisect.bisect_right(data, c)
            below.append(lt)
            equal.append(le - lt)
            above.append(n - le)
        return self.release_from_histogram(below, equal, above)

    def __repr__(self) -> str:
        return (
            f"ExponentialQuantile(epsilon={self.epsilon}, alpha={self.alpha}, "
            f"candidates=<{len(self.candidates)}>, max_rows={self.max_rows}, scale={self.scale!r})"
        )


def candidate_grid(lower: float, upper: float, *, integer: bool, max_candidates: int = 1024) -> list[float]:
    """Public candidates over [lower, upper]: every integer when `integer` and there are at most
    `max_candidates` of them; for more integers, every `step`-th integer from the first (an exact integer
    lattice, so a value on a candidate is binned *on* it; the last candidate is within one step of the
    upper bound); otherwise an even grid of `max_candidates` points including both ends."""
    lo, hi = finite_floats([lower, upper], name="bounds")
    if lo > hi:
        raise ValueError("lower must be <= upper")
    max_candidates = positive_int(max_candidates, name="max_candidates")
    if max_candidates < 2:
        raise ValueError("max_candidates must be >= 2")
    if integer:
        first, last = math.ceil(lo), math.floor(hi)
        if first > last:
            raise ValueError("no integer within [lower, upper]")
        if last - first + 1 <= max_candidates:
            return [float(i) for i in range(first, last + 1)]
        step = -(-(last - first) // (max_candidates - 1))  # ceil: at most max_candidates points
        return [float(first + i * step) for i in range((last - first) // step + 1)]
    if lo == hi:
        return [lo]
    steps = max_candidates - 1
    # convex combinations: no overflow even for bounds near the float limits
    grid = [lo * (1 - i / steps) + hi * (i / steps) for i in range(steps)] + [hi]
    out: list[float] = []
    for g in grid:
        if not out or g > out[-1]:
            out.append(g)
    return out
