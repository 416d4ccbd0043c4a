"""A statistical privacy auditor: a lower confidence bound on ε from a mechanism's outputs.

The auditor only *observes*: it is handed outputs of a mechanism run many times on two neighbouring
datasets D and D' (drawn by the caller, through the real mechanism) and draws no noise of its own. It is
not on any release path.

Method. (ε, δ)-DP says that for every set S of outputs, in both orders of the neighbours,

    P[M(D) ∈ S] <= e^ε · P[M(D') ∈ S] + δ,   hence   ε >= log((P[M(D) ∈ S] - δ) / P[M(D') ∈ S]).

With Clopper–Pearson bounds p_lo <= P[M(D) ∈ S] and q_hi >= P[M(D') ∈ S], the right-hand side with
(p_lo, q_hi) in place of the probabilities is a lower bound on ε whenever both bounds hold. The art is
in the rejection set S, and in not paying for having looked at the data to pick it:

1. *Choose on one split, test on the other.* Each sample is cut in two halves. On the first half, a
   family of candidate sets is scored: threshold sets ``{s(x) >= t}`` and ``{s(x) <= t}`` for every
   output coordinate s(x) = x_j, and for a naive-Bayes log-likelihood-ratio statistic learned on that
   half (the sum, over the coordinates whose histograms differ there — chi-square p < 0.01 —, of the
   log ratio of their histograms: the Neyman–Pearson test when coordinates are independent, as the
   noise of separate measurements is; on a discrete output it ranks single values by their ratio).
   Thresholds run over the observed values (all of them, or 1024 quantiles). The best few sets of each
   direction, ranked by the bound they would give on the first half, are carried over.
2. *Bonferroni on the evaluation split.* Only the T carried sets are evaluated on the second half, each
   with two one-sided Clopper–Pearson bounds at level α / (2T). Since the sets depend on the first half
   only, the bounds are exact conditionally on them, and by the union bound all 2T hold together with
   probability >= 1 - α. On that event every set's value is <= the true ε, so their maximum is too:

       ε_lb = max(0, max over the T sets of log((p_lo - δ) / q_hi))     is a (1 - α) lower bound on ε.

   A mechanism that satisfies its claim gives ``ε_lb > claimed ε`` with probability at most α
   (in practice far less: Clopper–Pearson and Bonferroni are conservative).
3. Both directions, (D, D') and (D', D), are among the candidates, so a violation either way is found.

`epsilon_lower_bound_for_sets` is the variant without a split, for a few sets fixed before the data are
drawn (e.g. "the new key is released"): all samples are used, with Bonferroni over the sets and both
directions.

Sources: Ding, Wang, Wang, Zhang, Kifer (2018) "Detecting violations of differential privacy" (CCS;
candidate rejection sets chosen on one sample, hypothesis test on a fresh one); Jagielski, Ullman, Oprea
(2020) "Auditing differentially private machine learning: how private is private SGD?" (NeurIPS;
Clopper–Pearson lower bounds ε >= log((p_lo - δ) / q_hi)); Lu, Bakshi, Sudheer, et al. (2022) "A general
framework for auditing differentially private machine learning" (NeurIPS); Tramèr, Terzis, Steinke,
Song, Jagielski, Carlini (2022) "Debugging differential privacy: a case study for privacy auditing"
(the DP-SGD bug with noise divided by the batch size, found this way).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "AuditResult",
    "Sampler",
    "Witness",
    "audit",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "epsilon_lower_bound",
    "epsilon_lower_bound_for_sets",
]

DEFAULT_ALPHA = 0.05
# sets of each direction carried from the selection half to the evaluation half
DEFAULT_CANDIDATES = 5
_MAX_THRESHOLDS = 1024  # thresholds per statistic on the selection half
_DISCRETE_LEVELS = 16  # a coordinate with at most this many values (or bins) is treated as discrete
_MAX_LLR_BINS = 128  # histogram bins of a continuous coordinate in the naive-Bayes statistic
_SELECT_P = 0.01  # a coordinate joins the naive-Bayes statistic when its histograms differ at this level
_PSEUDO = 0.5  # pseudo-count of the naive-Bayes histograms

# Draws `n` outputs of the mechanism on one dataset: shape (n,) or (n, d), finite numbers.
Sampler = Callable[[int], Any]

_FORWARD = "D vs D'"  # bounds P[M(D) ∈ S] <= e^ε P[M(D') ∈ S] + δ
_BACKWARD = "D' vs D"


def clopper_pearson_lower(k: Any, n: int, *, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper–Pearson lower bounds on p from k successes in n trials."""
    k = np.asarray(k, dtype=np.float64)
    _check_alpha(alpha)
    safe = np.maximum(k, 1.0)
    out = stats.beta.ppf(alpha, safe, n - safe + 1.0)
    return np.where(k <= 0, 0.0, out)


def clopper_pearson_upper(k: Any, n: int, *, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper–Pearson upper bounds on p from k successes in n trials."""
    k = np.asarray(k, dtype=np.float64)
    _check_alpha(alpha)
    safe = np.minimum(k, n - 1.0)
    out = stats.beta.ppf(1.0 - alpha, safe + 1.0, n - safe)
    return np.where(k >= n, 1.0, out)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")


def _epsilon_of(p_lower: np.ndarray, q_upper: np.ndarray, delta: float) -> np.ndarray:
    """log((p_lo - δ) / q_hi), -inf where p_lo <= δ."""
    num = p_lower - delta
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(np.where(num > 0, num, 1.0)) - np.log(q_upper)
    return np.where(num > 0, out, -np.inf)


@dataclass(frozen=True)
class Witness:
    """The rejection set that gave the bound, and its estimates on the evaluation samples."""

    description: str
    direction: str  # "D vs D'": P[M(D) ∈ S] is p; "D' vs D": the roles swapped
    p_hat: float
    q_hat: float
    p_lower: float
    q_upper: float
    epsilon: float  # log((p_lower - δ) / q_upper)


def _point(p: float, q: float, delta: float) -> float:
    if p - delta <= 0:
        return -math.inf
    if q <= 0:
        return math.inf
    return math.log((p - delta) / q)


@dataclass(frozen=True)
class AuditResult:
    """A (1 - alpha) lower confidence bound on the ε of a mechanism at `delta`."""

    epsilon_lower_bound: float
    delta: float
    alpha: float
    samples: int  # outputs drawn on each dataset
    evaluation_samples: int  # of which used to evaluate the chosen sets
    sets_tested: int  # T, the Bonferroni denominator (each set uses two bounds at alpha / (2T))
    witness: Witness | None

    def consistent_with(self, epsilon: float) -> bool:
        """False when the audit proves (at confidence 1 - alpha) that the mechanism is not ε-DP."""
        return self.epsilon_lower_bound <= epsilon

    def to_json(self) -> dict[str, Any]:
        w = self.witness
        return {
            "epsilon_lower_bound": self.epsilon_lower_bound,
            "delta": self.delta,
            "alpha": self.alpha,
            "samples": self.samples,
            "evaluation_samples": self.evaluation_samples,
            "sets_tested": self.sets_tested,
            # the plug-in log((p̂ - δ) / q̂) of the same set: an estimate, not a bound
            "witness": None if w is None else {**w.__dict__, "point_estimate": _point(w.p_hat, w.q_hat, self.delta)},
        }


# -- statistics and sets -----------------------------------------------------------------------------


class _Column:
    def __init__(self, j: int, width: int) -> None:
        self.j = j
        self.name = "x" if width == 1 else f"x[{j}]"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x[:, self.j]


class _Histogram:
    """Bin index of one coordinate: its exact values when it has few, quantile bins otherwise."""

    def __init__(self, pooled: np.ndarray) -> None:
        # finer bins with more samples: about sqrt(n) / 2, from 8 to 128
        bins = int(np.clip(math.sqrt(len(pooled)) / 2.0, 8, _MAX_LLR_BINS))
        values = np.unique(pooled)
        self.discrete = len(values) <= max(_DISCRETE_LEVELS, bins)
        if self.discrete:
            self.values = values
            self.bins = len(values) + 1  # the last bin: a value never seen on the selection half
        else:
            qs = np.quantile(pooled, np.linspace(0.0, 1.0, bins + 1)[1:-1])
            self.edges = np.unique(qs)
            self.bins = len(self.edges) + 1

    def index(self, v: np.ndarray) -> np.ndarray:
        if self.discrete:
            i = np.searchsorted(self.values, v)
            hit = (i < len(self.values)) & (self.values[np.minimum(i, len(self.values) - 1)] == v)
            return np.where(hit, i, len(self.values))
        return np.searchsorted(self.edges, v, side="right")


class _NaiveBayes:
    """Σ_j log(P̂_D(bin of x_j) / P̂_D'(bin of x_j)), histograms fitted on the selection half.

    Only coordinates whose histograms differ on the selection half (chi-square p < 0.01) take part:
    coordinates the neighbours do not move would add only noise to the statistic.
    """

    name = "naive-Bayes LLR"

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.parts: list[tuple[int, _Histogram, np.ndarray]] = []
        for j in range(x.shape[1]):
            h = _Histogram(np.concatenate([x[:, j], y[:, j]]))
            a = np.bincount(h.index(x[:, j]), minlength=h.bins).astype(np.float64)
            c = np.bincount(h.index(y[:, j]), minlength=h.bins).astype(np.float64)
            seen = (a + c) > 0
            if seen.sum() < 2 or stats.chi2_contingency(np.vstack([a[seen], c[seen]]))[1] >= _SELECT_P:
                continue
            llr = np.log((a + _PSEUDO) / (len(x) + _PSEUDO * h.bins)) - np.log((c + _PSEUDO) / (len(y) + _PSEUDO * h.bins))
            if h.discrete:
                llr[-1] = 0.0  # a value never seen carries no evidence
            self.parts.append((j, h, llr))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros(len(x))
        for j, h, llr in self.parts:
            out += llr[h.index(x[:, j])]
        return out


Statistic = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Set:
    statistic: Any
    upper: bool  # {s >= t} when True, {s <= t} when False
    threshold: float
    direction: str

    def contains(self, x: np.ndarray) -> np.ndarray:
        s = self.statistic(x)
        return s >= self.threshold if self.upper else s <= self.threshold

    def describe(self) -> str:
        return f"{self.statistic.name} {'>=' if self.upper else '<='} {self.threshold:.6g}"


def _thresholds(pooled: np.ndarray) -> np.ndarray:
    values = np.unique(pooled)
    if len(values) <= _MAX_THRESHOLDS:
        return values
    return np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, _MAX_THRESHOLDS)))


def _tail_counts(s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """#(s >= t) and #(s <= t) for each threshold t."""
    ordered = np.sort(s)
    ge = len(s) - np.searchsorted(ordered, t, side="left")
    le = np.searchsorted(ordered, t, side="right")
    return ge, le


def _candidates(
    statistics: list[Any], x: np.ndarray, y: np.ndarray, *, delta: float, level: float, keep: int
) -> list[_Set]:
    """The `keep` best sets of each direction on the selection half, by the bound each gives there."""
    nx, ny = len(x), len(y)
    scored: dict[str, list[tuple[float, float, _Set]]] = {_FORWARD: [], _BACKWARD: []}
    for stat in statistics:
        sx, sy = stat(x), stat(y)
        t = _thresholds(np.concatenate([sx, sy]))
        gx, lx = _tail_counts(sx, t)
        gy, ly = _tail_counts(sy, t)
        for upper, kx, ky in ((True, gx, gy), (False, lx, ly)):
            for direction, kp, np_, kq, nq in ((_FORWARD, kx, nx, ky, ny), (_BACKWARD, ky, ny, kx, nx)):
                eps = _epsilon_of(
                    clopper_pearson_lower(kp, np_, alpha=level), clopper_pearson_upper(kq, nq, alpha=level), delta
                )
                # ties (e.g. -inf everywhere) go to the larger plug-in gap
                gap = kp / np_ - kq / nq
                best = np.lexsort((-gap, -eps))[:keep]
                scored[direction] += [(float(eps[i]), float(gap[i]), _Set(stat, upper, float(t[i]), direction)) for i in best]
    chosen: list[_Set] = []
    for direction in (_FORWARD, _BACKWARD):
        ranked = sorted(scored[direction], key=lambda e: (-e[0], -e[1]))
        chosen += [s for _, _, s in ranked[:keep]]
    return chosen


def _matrix(outputs: Any, what: str) -> np.ndarray:
    a = np.asarray(outputs, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or len(a) == 0:
        raise ValueError(f"{what} must be a non-empty array of shape (n,) or (n, d)")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} must be finite (encode missing outputs as a sentinel number)")
    return a


def _check_delta(delta: float) -> float:
    d = float(delta)
    if not 0 <= d < 1:
        raise ValueError("delta must be in [0, 1)")
    return d


def _evaluate(
    sets: list[tuple[str, str, np.ndarray, np.ndarray]], nx: int, ny: int, *, delta: float, alpha: float, samples: int
) -> AuditResult:
    """Bounds for sets given as (description, direction, membership in D's outputs, in D''s)."""
    tests = len(sets)
    level = alpha / (2 * tests)
    best: Witness | None = None
    for description, direction, in_x, in_y in sets:
        kx, ky = int(in_x.sum()), int(in_y.sum())
        kp, np_, kq, nq = (kx, nx, ky, ny) if direction == _FORWARD else (ky, ny, kx, nx)
        p_lo = float(clopper_pearson_lower(kp, np_, alpha=level))
        q_hi = float(clopper_pearson_upper(kq, nq, alpha=level))
        eps = float(_epsilon_of(np.array(p_lo), np.array(q_hi), delta))
        w = Witness(description, direction, kp / np_, kq / nq, p_lo, q_hi, eps)
        if best is None or w.epsilon > best.epsilon:
            best = w
    assert best is not None
    bound = max(0.0, best.epsilon)
    return AuditResult(bound, delta, alpha, samples, min(nx, ny), tests, best if best.epsilon > -math.inf else None)


# -- the two audits ------------------------------------------------------------------------------------


def epsilon_lower_bound(
    outputs: Any,
    neighbour_outputs: Any,
    *,
    delta: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    candidates: int = DEFAULT_CANDIDATES,
    selection_fraction: float = 0.5,
) -> AuditResult:
    """A (1 - alpha) lower bound on ε at `delta` from outputs of M(D) and M(D'), both directions.

    `outputs` and `neighbour_outputs` are i.i.d. draws, shape (n,) or (n, d), finite numbers (encode a
    missing value or a selected index as a number). The first `selection_fraction` of each picks the
    rejection sets (`candidates` per direction); the rest evaluates them (see the module docstring).
    """
    d = _check_delta(delta)
    _check_alpha(alpha)
    if candidates < 1:
        raise ValueError("candidates must be >= 1")
    if not 0 < selection_fraction < 1:
        raise ValueError("selection_fraction must be in (0, 1)")
    x, y = _matrix(outputs, "outputs"), _matrix(neighbour_outputs, "neighbour_outputs")
    if x.shape[1] != y.shape[1]:
        raise ValueError("both samples need the same number of coordinates")
    cx, cy = int(len(x) * selection_fraction), int(len(y) * selection_fraction)
    if min(cx, len(x) - cx, cy, len(y) - cy) < 1:
        raise ValueError("too few samples to split")
    x1, x2, y1, y2 = x[:cx], x[cx:], y[:cy], y[cy:]
    statistics: list[Any] = [_Column(j, x.shape[1]) for j in range(x.shape[1])]
    llr = _NaiveBayes(x1, y1)
    if llr.parts:
        statistics.append(llr)
    tests = 2 * candidates
    chosen = _candidates(statistics, x1, y1, delta=d, level=alpha / (2 * tests), keep=candidates)
    sets = [(s.describe(), s.direction, s.contains(x2), s.contains(y2)) for s in chosen]
    return _evaluate(sets, len(x2), len(y2), delta=d, alpha=alpha, samples=min(len(x), len(y)))


def epsilon_lower_bound_for_sets(
    outputs: Any,
    neighbour_outputs: Any,
    sets: Mapping[str, Callable[[np.ndarray], Any]],
    *,
    delta: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
) -> AuditResult:
    """The bound over rejection sets fixed in advance (no split): each set is a predicate on the
    (n, d) matrix of outputs returning a boolean vector; both directions; Bonferroni over 2·len(sets)."""
    d = _check_delta(delta)
    _check_alpha(alpha)
    if not sets:
        raise ValueError("give at least one set")
    x, y = _matrix(outputs, "outputs"), _matrix(neighbour_outputs, "neighbour_outputs")
    planned = []
    for name, contains in sets.items():
        in_x = np.asarray(contains(x), dtype=bool)
        in_y = np.asarray(contains(y), dtype=bool)
        if in_x.shape != (len(x),) or in_y.shape != (len(y),):
            raise ValueError(f"set {name!r} must return one boolean per output")
        planned += [(name, _FORWARD, in_x, in_y), (name, _BACKWARD, in_x, in_y)]
    return _evaluate(planned, len(x), len(y), delta=d, alpha=alpha, samples=min(len(x), len(y)))


def audit(
    sample: Sampler,
    neighbour_sample: Sampler,
    *,
    samples: int,
    delta: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    candidates: int = DEFAULT_CANDIDATES,
    batch: int | None = None,
) -> AuditResult:
    """Draw `samples` outputs on each dataset (in batches of `batch`) and bound ε from them."""
    if samples < 4:
        raise ValueError("samples must be >= 4")
    x = _draw(sample, samples, batch)
    y = _draw(neighbour_sample, samples, batch)
    return epsilon_lower_bound(x, y, delta=delta, alpha=alpha, candidates=candidates)


def _draw(sample: Sampler, n: int, batch: int | None) -> np.ndarray:
    step = n if batch is None else max(1, int(batch))
    parts = []
    done = 0
    while done < n:
        m = min(step, n - done)
        part = np.asarray(sample(m), dtype=np.float64)
        if len(part) != m:
            raise ValueError("a sampler returned the wrong number of outputs")
        parts.append(part)
        done += m
    return np.concatenate(parts)
