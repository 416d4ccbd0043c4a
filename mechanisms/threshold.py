"""Counts per GROUP BY key when the keys are not public: Laplace noise, then a threshold.

Guarantee: (ε, δ)-DP when one privacy unit touches at most `max_partitions` keys and at most `max_rows`
rows in all (so it changes the count map by at most max_partitions keys in L0, max_rows in L1 and in L∞).
A key that only the data reveal is released only when its noisy count reaches `threshold`; δ bounds the
chance that a unit's own keys show up (Rogers23). The noise on released counts is the discrete Laplace.

Source: OpenDP ``make_laplace_threshold`` on ``map_domain(atom_domain(T=str), atom_domain(T=i64))`` with
``l01inf_distance(absolute_distance(T=i64))``. The scale comes from ε (ε = L1 / scale), the threshold is
the smallest integer whose δ fits, and both are checked against OpenDP's own privacy map.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from ._opendp import at_most, calibrate, dp
from ._timing import padded
from .accuracy import discrete_laplace_ci
from .base import Frozen, positive_fraction, positive_int
from .cost import Cost
from .laplace import integer_values

__all__ = ["ThresholdCounts"]

_I64 = "i64"
_MAX_THRESHOLD = 2**62


class ThresholdCounts(Frozen):
    """Noisy counts for the keys whose noisy count is at least `threshold`; (ε, δ)-DP."""

    name = "laplace_threshold"

    def __init__(self, *, epsilon: Fraction, delta: Fraction, max_partitions: int, max_rows: int) -> None:
        self.epsilon = positive_fraction(epsilon, name="epsilon")
        self.delta = positive_fraction(delta, name="delta")
        if self.delta >= 1:
            raise ValueError("delta must be < 1")
        self.max_partitions = positive_int(max_partitions, name="max_partitions")
        self.max_rows = positive_int(max_rows, name="max_rows")
        self.cost = Cost(self.epsilon, self.delta)
        # (L0, L1, L∞): a unit touches <= max_partitions keys, <= max_rows rows over all of them
        self.d_in = (self.max_partitions, self.max_rows, self.max_rows)
        space = (
            dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=_I64)),
            dp.l01inf_distance(dp.absolute_distance(T=_I64)),
        )

        def build(scale: float, threshold: int) -> Any:
            return dp.m.make_laplace_threshold(*space, scale=scale, threshold=threshold)

        eps_fits = at_most(self.epsilon)
        delta_fits = at_most(self.delta)
        # ε does not depend on the threshold: calibrate the scale at the least threshold OpenDP allows
        self.scale, _ = calibrate(
            lambda scale: build(scale, self.max_rows),
            float(self.max_rows / self.epsilon),
            self.d_in,
            lambda loss: eps_fits(loss[0]),
        )

        def fits(threshold: int) -> bool:
            return bool(delta_fits(build(self.scale, threshold).map(self.d_in)[1]))

        self.threshold = self._least_threshold(fits)
        self.measurement = build(self.scale, self.threshold)
        epsilon_out, delta_out = self.measurement.map(self.d_in)
        if not (eps_fits(epsilon_out) and delta_fits(delta_out)):
            raise ValueError("could not fit threshold selection within (epsilon, delta)")
        self._freeze()

    def _least_threshold(self, fits: Any) -> int:
        lo = self.max_rows  # OpenDP requires threshold >= the L∞ sensitivity
        if fits(lo):
            return lo
        hi = 2 * lo
        while not fits(hi):
            lo, hi = hi, 2 * hi
            if hi > _MAX_THRESHOLD:
                raise ValueError("delta is too small for threshold selection (below float precision)")
        # invariant: not fits(lo), fits(hi); δ decreases as the threshold grows
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                hi = mid
            else:
                lo = mid
        return hi

    def ci95(self) -> float:
        """Discrete Laplace half-width for a released count (noise before the threshold cut)."""
        return discrete_laplace_ci(self.scale, 0.05)

    def release(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Noisy counts of the keys that pass the threshold; the other keys are dropped."""
        keys = list(counts.keys())
        if not all(isinstance(k, str) for k in keys):
            raise ValueError("keys must be strings (stringify them before release)")
        values = integer_values([counts[k] for k in keys], name="counts")
        noisy = padded(lambda: self.measurement(dict(zip(keys, values))), values=len(keys), kind="threshold")
        return {str(k): int(v) for k, v in noisy.items()}

    def __repr__(self) -> str:
        return (
            f"ThresholdCounts(epsilon={self.epsilon}, delta={self.delta}, max_partitions={self.max_partitions}, "
            f"max_rows={self.max_rows}, scale={self.scale!r}, threshold={self.threshold})"
        )
