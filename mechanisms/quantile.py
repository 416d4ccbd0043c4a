"""Private quantiles over every representable value, with a confidence interval that is DP too.

**Neighbouring relation.** Datasets that differ in all rows of one privacy unit, at most `max_rows`
rows (add/remove). Every value is clamped to the public `[lower, upper]` before it is counted.

**What is counted.** A public `Lattice` of candidates ``c_j = start + j·step`` (j < count), decided by
the bounds alone. Each value x goes to its *position* ``(x - start)/step``: on candidate j when the
position is within `SNAP` of the integer j (so a decimal step such as 0.01 still puts 0.07 on its
candidate), otherwise strictly between j and j + 1. `RankCounts` holds ``on[j]`` and ``between[j]``;
every row is in exactly one of them, so one unit moves the counts by at most `max_rows` in total. The
engine computes them with a GROUP BY (`gateway.sql.quantiles`); no row leaves it.

**The score (tie-aware Smith).** A candidate set S of values has the rank interval
``[#(x < S), #(x <= S)]``; with alpha = num/den and n the (private) row count, its score is the distance
from the target rank ``alpha·n + shift/den`` to that interval, times den, with n eliminated:
with b, e, a the rows below, inside and above S (``b + e + a = n``),

    score = max(0, (den - num)·b - num·(e + a) - shift,  num·a - (den - num)·(b + e) + shift)

(no private n is needed). For a single point with no ties at it this is Smith's
``|(den - num)·#(x < c) - num·#(x > c)|`` (OpenDP's ``make_quantile_score_candidates``); a point
that carries a tie covering the target rank scores 0, so a tied value that is the quantile is found
exactly. The public bounds extend the rank line: ranks below 0 belong to the first candidate and
ranks above n to the last (their first resp. second term is dropped). One row moves b, e or a by one,
each term by at most ``w = max(num, den - num)``, so the L∞ sensitivity of the score vector is
``Δ = max_rows · w`` (not monotone). Scores are clipped at 2^62 (a 1-Lipschitz map).

**Forms of the estimate.**
* ``"round"`` (default; (a) of issue 12 with a base measure): the candidates are the lattice points
  ("every representable value": every integer of an integer column when there are at most
  `CANDIDATE_CAP`, else a {1, 2, 5}·10^k step aligned on its multiples, so that round values such as
  60,000 are candidates of their own), each weighted by the public `roundness_weights` (1 + 10 + … +
  10^k for a multiple of step·10^k, k <= 3): the exponential mechanism's base measure (McSherry–Talwar's
  definition has one). Without it, the long empty gap beside a tie that holds the quantile outweighs
  the tie (14,500: 13 loans, then nothing up to 14,650: 149 candidates a few ranks off), and the
  estimate drifts off the tie; with it the tie wins. Selection by report-noisy-min with exponential
  noise, OpenDP ``make_noisy_max(max_divergence(), negate=True)`` = permute-and-flip (MS20), on the
  scores ``F·score + o_c`` with ``o_c = round(F·scale·ln(w_max/w_c))`` public offsets (F = 16 keeps
  the rounding fine): the offsets do not depend on the data, so the L∞ sensitivity is F·Δ and
  ε = 2FΔ/(F·scale) = 2Δ/scale, checked against OpenDP's own map. A candidate c is then drawn with
  P(c) <= (w_c/w_ref)·exp(-(score_c - score_ref)/scale) for any reference: the utility tail bound is
  scale·(ln Σw + ln 1/β) (`rank_radius`), Σw ≈ 4M, where the uniform measure has ln M.
* ``"points"``: the same candidates with the uniform measure (plain permute-and-flip).
* ``"gaps"`` ((b), Smith 2011 / Tumult Analytics): the continuous exponential mechanism. The
  candidates are the count - 1 open intervals between consecutive points of an *even* lattice
  (`even_lattice`), all of one length, scored as sets; one is drawn with probability
  ∝ length·exp(-score/scale) (the length is common, so it cancels) by Gumbel-max, OpenDP
  ``make_noisy_max(zero_concentrated_divergence(), negate=True)``, then a point uniformly inside it
  (16 bits from OpenDP's sampler: an argmax of exponential noise over zeros). *Proof:* the output
  density is ``f_D(x) = exp(-u_D(x)/scale) / Z_D`` with ``u_D(x)`` the score of the interval holding x
  (Smith's utility of the data at the lattice's resolution); a neighbour moves u by at most Δ
  everywhere, so the numerator moves by a factor ≤ e^{Δ/scale} and Z as well: the density ratio is at
  most e^{2Δ/scale} = e^ε (McSherry–Talwar 2007, Smith 2011). The uniform draw depends on nothing
  private. OpenDP's map for this measurement is in zCDP (ρ = ε²/8, Cesar & Rogers 2021): the pure ε
  is ours, checked exactly as ``2Δ/scale <= ε`` with OpenDP's ρ ≤ ε²/8 beside it. Splitting a data gap
  into equal lattice intervals does not change the distribution, so the vector length is the public
  count, not the data's number of distinct values.

**The interval (honest accuracy).** Of ε, `INTERVAL_SHARE` goes to each side (none to a side that
is a public bound: the lower side of alpha = 0, the upper side of alpha = 1, which then give their
share to the estimate). The lower end L is drawn by permute-and-flip at scale s over *bins*
``[c_J, c_{J+1})`` of a coarser sub-lattice (at most `ENDPOINT_CANDIDATES` bins; coarser bins only
make the end more conservative and the draw cheaper), each reported as its left point, with the
target rank moved down by ``r = R/den`` ranks, ``R = den + ceil(s·ln(M/β))`` (M bins, β the side's
miss probability); the upper end symmetrically over bins ``(c_{J-1}, c_J]`` reported as their right
point, target moved up.

*Coverage.* Let ``x_low = min{x : #(X <= x) >= alpha·n - 1}`` and
``x_high = max{x : #(X >= x) >= (1 - alpha)·n - 1}``. Every usual p-quantile of the data
(PERCENTILE_CONT, PERCENTILE_DISC, the median of an even count) lies in ``[x_low, x_high]``:
PERCENTILE_CONT interpolates between order statistics i and i + 1 (0-based) with
``i = floor((n - 1)·alpha)``, and ``i + 1 >= alpha·n - 1``, ``n - i - 1 >= (1 - alpha)·n - 1``.
Claim: ``P(L > x_low) <= β``. If the bin reported as ``c_J > x_low`` is drawn, every row ``<= x_low``
is below it, so its b is ``>= alpha·n - 1`` and its score is at least
``den·b - num·n + R >= R - den``. The bins tile the extended rank line, so one of them holds the
target rank and scores 0 (the *reference*). Permute-and-flip returns a bin J only if its noise
``E_J ~ Exp(s)`` beats the score gap to the reference: ``P(J) <= exp(-(score_J - 0)/s)``; a union bound
over at most M such bins gives ``P(L > x_low) <= M·exp(-(R - den)/s) <= β``. The same for U, and
``β = α_level/2`` per side (α_level when one side is a public bound): ``P(L <= x_low and
U >= x_high) >= 1 - α_level`` for every dataset. The stated interval is ``[min(L, v), max(U, v)]``
around the estimate v (widening only adds coverage). When the shift cannot be represented
(ε tiny) the side is the public bound itself. The argument holds for the values as positioned
(snapped within `SNAP` of a step, and the engine's double arithmetic), i.e. up to ~1e-6 of a step.

Sources: McSherry & Talwar 2007 (the exponential mechanism), Smith 2011 (quantile score, continuous
EM), McKenna & Sheldon 2020 (permute-and-flip), Drechsler et al. 2022 (DP intervals for quantiles by
shifted target ranks); OpenDP ``make_noisy_max``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ._opendp import at_most, calibrate, dp
from ._timing import padded
from .base import Frozen, finite_floats, positive_fraction, positive_int
from .cost import Cost, to_fraction

__all__ = [
    "CANDIDATE_CAP",
    "ENDPOINT_CANDIDATES",
    "FORMS",
    "DEFAULT_FORM",
    "INTERVAL_SHARE",
    "Lattice",
    "PrivateQuantile",
    "QuantileRelease",
    "RankCounts",
    "even_lattice",
    "representable_lattice",
    "lattice_for",
    "rank_scores",
    "roundness_weights",
]

#: public cap on the candidates of one estimate: OpenDP's noisy max takes ~1 µs a candidate here
#: (2^16: ~65 ms; 2^17: ~110 ms, on 2 loaded cores; `bench/quantiles.py --timing`)
CANDIDATE_CAP = 2**16
#: the bins of each interval end (a coarsening of the estimate's lattice)
ENDPOINT_CANDIDATES = 2**12
#: the share of a quantile's ε spent on each end of its interval
INTERVAL_SHARE = Fraction(1, 10)
#: a position within this of an integer is on that candidate (decimal steps are not exact in binary)
SNAP = 2.0**-20
FORMS = ("round", "points", "gaps")
DEFAULT_FORM = "round"

_SCORE_CAP = 2**62  # u64 scores; min(score, cap) keeps the sensitivity
#: the base measure's decades of roundness (multiples of step·10^k, k <= 3): the most a candidate can
#: outweigh another is 1111, i.e. ln 1111 ≈ 7 noise scales (on the loans at ε = 0.1, caps of 2, 3 and 6
#: were within noise of each other; at ε = 1 a cap of 1 or 2 left the 25th percentile ~0.2-0.9% off)
_ROUND_LEVELS = 3
_PRIOR_FACTOR = 16  # scores are scaled by this so that the base measure's log-weights round finely
_UNIFORM_BITS = 8  # bits of each uniform draw (two draws: 16 bits inside a gap)


# -- the public lattice --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lattice:
    """Candidates ``start + j·step`` for j < count, exact (Fractions); released values are clamped to
    [lower, upper]. `start`/`step` as floats are what the engine positions values with."""

    start_exact: Fraction
    step_exact: Fraction
    count: int
    lower: float
    upper: float

    @property
    def start(self) -> float:
        return float(self.start_exact)

    @property
    def step(self) -> float:
        return float(self.step_exact)

    def value(self, position: float | Fraction) -> float:
        """The value at a (possibly fractional) position, clamped to the bounds."""
        v = float(self.start_exact + Fraction(position) * self.step_exact)
        return min(max(v, self.lower), self.upper)

    def values(self) -> list[float]:
        return [self.value(j) for j in range(self.count)]

    def __len__(self) -> int:
        return self.count


def _bounds(lower: float, upper: float) -> tuple[float, float]:
    lo, hi = finite_floats([lower, upper], name="bounds")
    if lo > hi:
        raise ValueError("lower must be <= upper")
    return lo, hi


def _lattice_inputs(lower: float, upper: float, max_candidates: int) -> tuple[float, float, int]:
    """The checked bounds and candidate cap every lattice is built from."""
    lo, hi = _bounds(lower, upper)
    cap = positive_int(max_candidates, name="max_candidates")
    if cap < 2:
        raise ValueError("max_candidates must be >= 2")
    return lo, hi, cap


def representable_lattice(lower: float, upper: float, *, integer: bool, max_candidates: int = CANDIDATE_CAP) -> Lattice:
    """Every representable value, at a public resolution: the smallest step of the form {1, 2, 5}·10^k
    (k >= 0 for integer columns) whose multiples covering [lower, upper] number at most
    `max_candidates`; the lattice is aligned on those multiples (the first and last may lie just
    outside the bounds and are released clamped). Decided by the bounds alone."""
    lo, hi, cap = _lattice_inputs(lower, upper, max_candidates)
    flo, fhi = Fraction(lo), Fraction(hi)
    if flo == fhi:
        return Lattice(flo, Fraction(1), 1, lo, hi)
    span = fhi - flo
    k = math.floor(math.log10(span / (cap - 1))) - 1 if span / (cap - 1) > 0 else 0
    if integer:
        k = max(k, 0)
    while True:
        for m in (1, 2, 5):
            step = m * Fraction(10) ** k
            first, last = math.floor(flo / step), math.ceil(fhi / step)
            if last - first + 1 <= cap:
                return Lattice(first * step, step, last - first + 1, lo, hi)
        k += 1


def even_lattice(lower: float, upper: float, *, integer: bool, max_candidates: int = CANDIDATE_CAP) -> Lattice:
    """Equal gaps that exactly cover the bounds: every integer when `integer` and they fit, else
    `max_candidates` points from lower to upper (the continuous form's lattice)."""
    lo, hi, cap = _lattice_inputs(lower, upper, max_candidates)
    flo, fhi = Fraction(lo), Fraction(hi)
    if flo == fhi:
        return Lattice(flo, Fraction(1), 1, lo, hi)
    if integer:
        first, last = math.ceil(flo), math.floor(fhi)
        if first < last and last - first + 1 <= cap:
            return Lattice(Fraction(first), Fraction(1), last - first + 1, lo, hi)
    return Lattice(flo, (fhi - flo) / (cap - 1), cap, lo, hi)


def lattice_for(form: str, lower: float, upper: float, *, integer: bool, max_candidates: int = CANDIDATE_CAP) -> Lattice:
    if form in ("round", "points"):
        return representable_lattice(lower, upper, integer=integer, max_candidates=max_candidates)
    if form == "gaps":
        return even_lattice(lower, upper, integer=integer, max_candidates=max_candidates)
    raise ValueError(f"form must be one of {FORMS}")


# -- counts per candidate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RankCounts:
    """Rows on candidate j (``on[j]``) and strictly between j and j + 1 (``between[j]``; the last is 0)."""

    on: np.ndarray
    between: np.ndarray

    @property
    def total(self) -> int:
        return int(self.on.sum() + self.between.sum())

    @classmethod
    def from_slots(cls, count: int, slots: Sequence[tuple[Any, Any]]) -> RankCounts:
        """From ``(slot, rows)`` pairs: slot 2j is on candidate j, 2j + 1 between j and j + 1 (the
        engine's `_slot`). Out-of-range slots (rounding at the bounds) go to the nearest candidate."""
        on = np.zeros(count, dtype=np.int64)
        between = np.zeros(count, dtype=np.int64)
        if slots:
            raw = np.array([float(s) for s, _ in slots], dtype=np.float64)
            rows = np.array([int(c) for _, c in slots], dtype=np.int64)
            raw = np.nan_to_num(raw, nan=0.0, posinf=2.0 * count, neginf=-1.0)
            slot = np.clip(raw, -1, 2 * count).astype(np.int64)
            j = slot // 2
            is_on = (slot % 2 == 0) | (j >= count - 1) | (slot < 0)
            j = np.clip(j, 0, count - 1)
            np.add.at(on, j[is_on], rows[is_on])
            np.add.at(between, j[~is_on], rows[~is_on])
        return cls(on, between)

    @classmethod
    def from_values(cls, lattice: Lattice, values: Sequence[float]) -> RankCounts:
        """The same counts from raw values, positioned exactly as the engine query does."""
        x = np.asarray(finite_floats(values), dtype=np.float64)
        x = np.clip(x, lattice.lower, lattice.upper)
        if lattice.count == 1:
            return cls(np.array([len(x)], dtype=np.int64), np.zeros(1, dtype=np.int64))
        pos = (x - lattice.start) / lattice.step
        near = np.floor(pos + 0.5)
        slot = np.where(np.abs(pos - near) <= SNAP, 2 * near, 2 * np.floor(pos) + 1)
        return cls.from_slots(lattice.count, list(zip(slot.tolist(), [1] * len(x))))


def rank_scores(num: int, den: int, below: np.ndarray, inside: np.ndarray, above: np.ndarray, shift: int = 0) -> list[int]:
    """The tie-aware score of each candidate set (module docstring), the first and last extended to
    the ranks beyond the data; Python ints for OpenDP's u64."""
    b, e, a = (np.asarray(v, dtype=np.int64) for v in (below, inside, above))
    n = int(b[0] + e[0] + a[0]) if len(b) else 0
    exact = den * n + abs(shift) >= 2**62  # int64 could overflow: compute with Python integers
    if exact:
        b, e, a = (x.astype(object) for x in (b, e, a))
    t1 = (den - num) * b - num * (e + a) - shift
    t2 = num * a - (den - num) * (b + e) + shift
    if len(t1):
        t1[0] = 0  # ranks below 0 are the first candidate's
        t2[-1] = 0  # ranks above n are the last's
    if exact:
        return [min(max(0, x, y), _SCORE_CAP) for x, y in zip(t1.tolist(), t2.tolist())]
    return np.maximum(np.maximum(t1, t2), 0).tolist()


def roundness_weights(lattice: Lattice) -> np.ndarray:
    """The public base measure of the "round" form: a candidate that is a multiple of step·10^k (and no
    higher power, k <= 3) weighs 1 + 10 + ... + 10^k, so that each decade of roundness carries about
    the same total mass. Financial values tie at round amounts; this lets a tie holding the quantile
    outweigh the long empty gap beside it. Every weight is >= 1 and the total about 4M, so the
    exponential mechanism's tail bound grows by about ln 4 scale units."""
    first = lattice.start_exact / lattice.step_exact
    if first.denominator != 1:
        return np.ones(lattice.count)
    t = np.arange(lattice.count, dtype=np.int64) + int(first)
    level = np.zeros(lattice.count, dtype=np.int64)
    for k in range(1, _ROUND_LEVELS + 1):
        level += (t % 10**k == 0)
    return (10.0 ** (level + 1) - 1) / 9


# -- the mechanism -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantileRelease:
    value: float
    low: float
    high: float


def _space() -> tuple[Any, Any]:
    return dp.vector_domain(dp.atom_domain(T="u64")), dp.linf_distance(T="u64", monotonic=False)


def _permute_and_flip(epsilon: Fraction, sensitivity: int) -> tuple[float, Any]:
    """Report-noisy-min with exponential noise: ε = 2Δ/scale by OpenDP's own map."""
    space = _space()
    return calibrate(
        lambda s: dp.m.make_noisy_max(*space, dp.max_divergence(), scale=s, negate=True),
        float(2 * sensitivity / epsilon),
        sensitivity,
        at_most(epsilon),
    )


def _continuous_em(epsilon: Fraction, sensitivity: int) -> tuple[float, Any]:
    """Report-noisy-min with Gumbel noise = the exponential mechanism, ε = 2Δ/scale (our proof;
    OpenDP states it as ρ = ε²/8, which must hold too)."""
    space = _space()
    scale, meas = calibrate(
        lambda s: dp.m.make_noisy_max(*space, dp.zero_concentrated_divergence(), scale=s, negate=True),
        float(2 * sensitivity / epsilon),
        sensitivity,
        at_most(epsilon * epsilon / 8),
    )
    while Fraction(2 * sensitivity) / Fraction(scale) > epsilon:  # exact, whatever float rounding did
        scale = math.nextafter(scale, math.inf)
        meas = dp.m.make_noisy_max(*space, dp.zero_concentrated_divergence(), scale=scale, negate=True)
    return scale, meas


_UNIFORM = dp.m.make_noisy_max(*_space(), dp.max_divergence(), scale=1.0)


def _uniform_fraction() -> Fraction:
    """A uniform point of (0, 1) at 2^-16 resolution, from OpenDP: the argmax of i.i.d. exponential
    noise over equal (zero) scores is uniform."""
    zeros = [0] * (1 << _UNIFORM_BITS)
    hi, lo = int(_UNIFORM(zeros)), int(_UNIFORM(zeros))
    return Fraction(2 * ((hi << _UNIFORM_BITS) | lo) + 1, 2 ** (2 * _UNIFORM_BITS + 1))


class _Side(Frozen):
    """One end of the interval: permute-and-flip over bins at a shifted target rank."""

    def __init__(self, *, epsilon: Fraction, sensitivity: int, den: int, bins: int, beta: float) -> None:
        self.epsilon = epsilon
        self.scale, self.measurement = _permute_and_flip(epsilon, sensitivity)
        # R - den >= scale·ln(M/β): the +1 absorbs the rounding of the logarithm
        shift = den + math.ceil(self.scale * (math.log(bins) + math.log(1 / beta))) + 1
        self.shift: int | None = shift if shift < 2**52 else None  # None: the side is the public bound
        self._freeze()


class PrivateQuantile(Frozen):
    """The alpha-quantile over a public lattice, with a (1 - level_alpha) interval; from `RankCounts`.

    `scale` is the estimate's noise scale in ranks (as OpenDP's ``make_private_quantile`` states it);
    `score_scale` the scale on the integer scores (ranks times den).
    """

    name = "exponential"

    def __init__(
        self,
        *,
        epsilon: Fraction,
        alpha: Fraction,
        lattice: Lattice,
        max_rows: int,
        level_alpha: float = 0.05,
        form: str = DEFAULT_FORM,
    ) -> None:
        self.epsilon = positive_fraction(epsilon, name="epsilon")
        self.alpha = to_fraction(alpha, name="alpha")
        if not 0 <= self.alpha <= 1:
            raise ValueError("alpha must be in [0, 1]")
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}")
        if not (isinstance(level_alpha, (int, float)) and 0 < level_alpha < 1):
            raise ValueError("level_alpha must be in (0, 1)")
        self.form = form
        self.lattice = lattice
        self.max_rows = positive_int(max_rows, name="max_rows")
        self.level_alpha = float(level_alpha)
        num, den = self.alpha.numerator, self.alpha.denominator
        self._num, self._den = num, den
        self.sensitivity = self.max_rows * max(num, den - num)
        self.d_in = self.sensitivity
        lower_side, upper_side = self.alpha > 0, self.alpha < 1
        sides = int(lower_side) + int(upper_side)
        side_eps = self.epsilon * INTERVAL_SHARE
        self.point_epsilon = self.epsilon - sides * side_eps
        build = _continuous_em if form == "gaps" else _permute_and_flip
        self._factor = _PRIOR_FACTOR if form == "round" else 1
        self.d_in = self._factor * self.sensitivity  # the L∞ distance of the scores the estimate draws on
        scaled_scale, self.measurement = build(self.point_epsilon, self.d_in)
        self.score_scale = scaled_scale / self._factor
        self.scale = self.score_scale / den
        self._offsets: list[int] | None = None
        if self._factor > 1:
            # a base measure w by score offsets: exp(-(F·score + F·s·ln(w_max/w))/(F·s)) = (w/w_max)·exp(-score/s),
            # rounded to integers (public: the prior is then w up to a factor e^{±1/(2F·s)})
            w = roundness_weights(lattice)
            self._offsets = np.rint(scaled_scale * np.log(w.max() / w)).astype(np.int64).tolist()
        # the endpoints' bins: every g-th lattice position, and the last one
        g = -(-lattice.count // ENDPOINT_CANDIDATES)
        self.endpoints = tuple(sorted(set(range(0, lattice.count, g)) | {lattice.count - 1}))
        beta = self.level_alpha / max(sides, 1)
        kw = dict(sensitivity=self.sensitivity, den=den, bins=len(self.endpoints), beta=beta)
        self.lower_side = _Side(epsilon=side_eps, **kw) if lower_side else None  # type: ignore[arg-type]
        self.upper_side = _Side(epsilon=side_eps, **kw) if upper_side else None  # type: ignore[arg-type]
        self.cost = Cost(self.epsilon)
        self.parts = tuple(
            [self.point_epsilon] + [s.epsilon for s in (self.lower_side, self.upper_side) if s is not None]
        )
        if sum(self.parts) != self.epsilon:
            raise AssertionError("the parts of a quantile's ε must add up to it")
        self._freeze()

    def ci95(self) -> float | None:
        """The error of a quantile depends on the data's spread: its interval is per value."""
        return None

    def rank_radius(self, beta: float) -> float:
        """With probability >= 1 - beta the estimate's score is within this many ranks of the best
        candidate's: (scale/den)·(ln W + ln(1/beta)), the EM/permute-and-flip tail bound, W the
        number of candidates (the total base measure for "round", plus its offsets' rounding)."""
        if self.form == "round":
            w = float(roundness_weights(self.lattice).sum())
            return self.scale * (math.log(w) + math.log(1 / beta)) + 1 / (self._factor * self._den)
        m = self.lattice.count if self.form == "points" else max(self.lattice.count - 1, 1)
        return self.scale * (math.log(m) + math.log(1 / beta))

    # -- drawing ---------------------------------------------------------------------------------------

    def _select(self, measurement: Any, scores: list[int]) -> int:
        return int(padded(lambda: measurement(scores), values=len(scores), kind="noisy_max"))

    def release_counts(self, counts: RankCounts) -> QuantileRelease:
        """The estimate and its interval from the counts of one cell (a cell with no rows too)."""
        lat = self.lattice
        if len(counts.on) != lat.count or len(counts.between) != lat.count:
            raise ValueError("one count per candidate")
        on, between = counts.on.astype(np.int64), counts.between.astype(np.int64)
        if (on < 0).any() or (between < 0).any():
            raise ValueError("counts must be >= 0")
        n = int(on.sum() + between.sum())
        num, den = self._num, self._den
        lt = np.concatenate([[0], np.cumsum(on + between)[:-1]])  # rows at positions < j
        le = lt + on  # rows at positions <= j
        if lat.count == 1:  # lower == upper: every value is that one (the cost is charged all the same)
            return QuantileRelease(lat.value(0), lat.lower, lat.upper)
        if self.form != "gaps":
            scores = rank_scores(num, den, lt, on, n - le)
            if self._offsets is not None:
                scores = [min(self._factor * x + o, _SCORE_CAP) for x, o in zip(scores, self._offsets)]
            value = lat.value(self._select(self.measurement, scores))
        else:
            gb, ge = le[:-1], between[:-1]  # the open interval (j, j + 1)
            scores = rank_scores(num, den, gb, ge, n - gb - ge)
            j = self._select(self.measurement, scores)
            value = lat.value(j + _uniform_fraction())
        low, high = lat.lower, lat.upper
        p = np.asarray(self.endpoints)
        if self.lower_side is not None and self.lower_side.shift is not None:
            b = lt[p]
            a = np.concatenate([n - lt[p[1:]], [0]])
            low = lat.value(int(p[self._select(self.lower_side.measurement, rank_scores(num, den, b, n - a - b, a, -self.lower_side.shift))]))
        if self.upper_side is not None and self.upper_side.shift is not None:
            b = np.concatenate([[0], le[p[:-1]]])
            a = n - le[p]
            high = lat.value(int(p[self._select(self.upper_side.measurement, rank_scores(num, den, b, n - a - b, a, self.upper_side.shift))]))
        return QuantileRelease(value, min(low, high, value), max(low, high, value))

    def release(self, values: Sequence[float]) -> QuantileRelease:
        """The same from raw values (tests and benchmarks; the gateway sends counts)."""
        return self.release_counts(RankCounts.from_values(self.lattice, values))

    def __repr__(self) -> str:
        return (
            f"PrivateQuantile(epsilon={self.epsilon}, alpha={self.alpha}, form={self.form!r}, "
            f"candidates=<{self.lattice.count}>, max_rows={self.max_rows}, scale={self.scale!r})"
        )
