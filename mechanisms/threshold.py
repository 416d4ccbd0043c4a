"""Counts per GROUP BY key when the keys are not public: Laplace noise, then a threshold.

Guarantee: (ε, δ)-DP when one privacy unit touches at most `max_partitions` keys and at most `max_rows`
rows in all (so it changes the count map by at most max_partitions keys in L0, max_rows in L1 and in L∞).
A key that only the data reveal is released only when its noisy count reaches `threshold`; δ bounds the
chance that a unit's own keys show up (Rogers23). The noise on released counts is the discrete Laplace.

Source: OpenDP ``make_laplace_threshold`` on ``map_domain(atom_domain(T=str), atom_domain(T=i64))`` with
``l01inf_distance(absolute_distance(T=i64))``. The scale comes from ε (ε = L1 / scale), the threshold is
the smallest integer whose δ fits, and both are checked against OpenDP's own privacy map.

Timing: the whole step — building the count map from the caller's (key, count) pairs, OpenDP's draw,
reading the released map back — is padded (`mechanisms._timing`) to a deadline sized by
`max_candidates`, a public cap (the `threshold_max_groups` setting, default 10,000), never by the number
of keys the data hold. When the data hold more candidate keys than the cap, the release still runs on
all of them: truncating the candidate set (a LIMIT, the top keys by hash) would not be DP (a new unit's
keys could displace keys with large counts), and refusing after the rows are read would itself reveal
that the data hold more keys than the cap. Such a step may overrun its deadline (from about twice the
cap, the per-key budget's headroom); an overrun is counted in `_timing.overruns()`, and its time then
grows with the number of keys: that is the one case where this step's time depends on the data.
The engine's work before the step (grouping, fetching one row per key) is not padded here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from fractions import Fraction
from typing import Any, TypeVar

from ._opendp import at_most, calibrate, dp
from ._timing import padded
from .accuracy import discrete_laplace_ci
from .base import Frozen, positive_fraction, positive_int
from .cost import Cost
from .laplace import integer_values

__all__ = ["MAX_CANDIDATES", "ThresholdCounts", "configure", "default_max_candidates"]

H = TypeVar("H", bound=Hashable)

_I64 = "i64"
_MAX_THRESHOLD = 2**62

#: candidate keys the padding of one release is sized for, unless configured (`threshold_max_groups`)
MAX_CANDIDATES = 10_000
_lock = threading.Lock()
_max_candidates = MAX_CANDIDATES


def configure(*, max_candidates: int) -> None:
    """Set the cap that a `ThresholdCounts` built without `max_candidates` takes (process-wide; the
    gateway sets it from its settings at start)."""
    global _max_candidates
    cap = positive_int(max_candidates, name="max_candidates")
    with _lock:
        _max_candidates = cap


def default_max_candidates() -> int:
    """The cap a `ThresholdCounts` built now without `max_candidates` takes."""
    return _max_candidates


class ThresholdCounts(Frozen):
    """Noisy counts for the keys whose noisy count is at least `threshold`; (ε, δ)-DP."""

    name = "laplace_threshold"

    def __init__(
        self,
        *,
        epsilon: Fraction,
        delta: Fraction,
        max_partitions: int,
        max_rows: int,
        max_candidates: int | None = None,
    ) -> None:
        self.epsilon = positive_fraction(epsilon, name="epsilon")
        self.delta = positive_fraction(delta, name="delta")
        if self.delta >= 1:
            raise ValueError("delta must be < 1")
        self.max_partitions = positive_int(max_partitions, name="max_partitions")
        self.max_rows = positive_int(max_rows, name="max_rows")
        # public: sizes the padding of `release`; not a privacy parameter (the release reads every key)
        self.max_candidates = positive_int(
            default_max_candidates() if max_candidates is None else max_candidates, name="max_candidates"
        )
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

    def release(
        self,
        counts: Mapping[H, int] | Iterable[tuple[H, int]],
        *,
        key: Callable[[H], str] | None = None,
        then: Callable[[dict[H, int]], None] | None = None,
    ) -> dict[H, int]:
        """Noisy counts of the keys that pass the threshold, keyed as the caller keyed them; the other
        keys are dropped.

        `counts` maps each candidate key to its exact count, or is an iterable of ``(key, count)`` pairs
        (read inside the padded step: pass a generator over the engine's rows). `key` turns a key into
        the string OpenDP's map holds (default: the keys must be strings); it must be one-to-one. Should
        two keys share a string, they are one key to OpenDP: their counts add (a unit still touches at
        most `max_partitions` keys and `max_rows` rows) and the first of them names it. The step takes
        ``deadline(max_candidates)`` whatever the number of keys (more keys than that: module docstring).
        `then`, if given, runs on the released map inside the step too (the caller's work whose time
        grows with the number of candidate keys, such as dropping what was not released).
        """
        def step() -> dict[H, int]:
            out = self._release(counts, key)
            if then is not None:
                then(out)
            return out

        return padded(step, values=self.max_candidates, kind="threshold")

    def _release(self, counts: Mapping[H, int] | Iterable[tuple[H, int]], key: Callable[[H], str] | None) -> dict[H, int]:
        pairs = counts.items() if isinstance(counts, Mapping) else counts
        names: dict[str, H] = {}
        keyed: list[str] = []
        raw: list[Any] = []
        for k, v in pairs:
            name = k if key is None else key(k)
            if not isinstance(name, str):
                raise ValueError("keys must be strings (stringify them before release, or pass key=)")
            names.setdefault(name, k)
            keyed.append(name)
            raw.append(v)
        data: dict[str, int] = {}
        for name, v in zip(keyed, integer_values(raw, name="counts")):
            data[name] = data.get(name, 0) + v
        noisy = self.measurement(data)
        return {names[str(n)]: int(v) for n, v in noisy.items()}

    def __repr__(self) -> str:
        return (
            f"ThresholdCounts(epsilon={self.epsilon}, delta={self.delta}, max_partitions={self.max_partitions}, "
            f"max_rows={self.max_rows}, max_candidates={self.max_candidates}, scale={self.scale!r}, "
            f"threshold={self.threshold})"
        )
