"""How well an attack's scores separate members from non-members: ROC, AUC, TPR at low FPR, exact intervals.

Convention: a higher score means "more likely a member"; the attack says "member" when score >= t. The ROC
is the staircase over every distinct score t (plus t = +inf, the point (0, 0)); ties move both rates at
once. `tpr_at_fpr` follows Carlini et al. 2022 ("Membership inference attacks from first principles",
§III): the largest TPR among thresholds whose FPR is at most the target, with no interpolation. Its
resolution is 1/n_nonmembers: below that only FPR = 0 is reachable.

`clopper_pearson` is the exact binomial interval (Clopper & Pearson 1934), the one
`scipy.stats.binomtest(k, n).proportion_ci(method="exact")` gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "QUANTILES",
    "ROC",
    "attack_auc",
    "clopper_pearson",
    "downsample_roc",
    "roc_curve",
    "summarize",
    "tpr_at_fpr",
]

#: Quantiles reported for a score distribution.
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# float slack when comparing fp/n <= alpha (0.01 * 100 must admit fp = 1)
_RATE_SLACK = 1e-9


@dataclass(frozen=True)
class ROC:
    """The empirical ROC staircase: `tp[i]` members and `fp[i]` non-members score >= `thresholds[i]`.

    `thresholds` decrease from +inf (``tp[0] = fp[0] = 0``) to the smallest score (all rows flagged).
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_members: int
    n_nonmembers: int

    @property
    def tpr(self) -> np.ndarray:
        return self.tp / self.n_members

    @property
    def fpr(self) -> np.ndarray:
        return self.fp / self.n_nonmembers

    def index_at_fpr(self, alpha: float) -> int:
        """Index of the lowest threshold whose FPR is at most `alpha` (the largest TPR there)."""
        limit = alpha * self.n_nonmembers * (1 + _RATE_SLACK)
        return int(np.searchsorted(self.fp, limit, side="right") - 1)


def _scores(a: object, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty one-dimensional array of scores")
    if np.isnan(arr).any():
        raise ValueError(f"{name} holds NaN scores")
    return arr


def roc_curve(members: object, nonmembers: object) -> ROC:
    """The ROC of scores `members` (positives) against `nonmembers` (negatives), over all thresholds."""
    m = _scores(members, "members")
    n = _scores(nonmembers, "nonmembers")
    scores = np.concatenate([m, n])
    is_member = np.concatenate([np.ones(m.size, dtype=np.int64), np.zeros(n.size, dtype=np.int64)])
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    tp = np.cumsum(is_member[order])
    fp = np.arange(1, s.size + 1) - tp
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    return ROC(
        thresholds=np.r_[np.inf, s[last_of_tie]],
        tp=np.r_[0, tp[last_of_tie]],
        fp=np.r_[0, fp[last_of_tie]],
        n_members=int(m.size),
        n_nonmembers=int(n.size),
    )


def attack_auc(members: object, nonmembers: object) -> float:
    """Area under the ROC: P(member score > non-member score) + P(tie)/2 (the Mann–Whitney statistic)."""
    m = _scores(members, "members")
    n = _scores(nonmembers, "nonmembers")
    ranks = stats.rankdata(np.concatenate([m, n]), method="average")
    u = ranks[: m.size].sum() - m.size * (m.size + 1) / 2.0
    return float(u / (m.size * n.size))


def tpr_at_fpr(roc: ROC, alpha: float) -> float:
    """The largest TPR among thresholds with FPR <= `alpha` (0 when only the empty threshold qualifies)."""
    return float(roc.tpr[roc.index_at_fpr(alpha)])


def downsample_roc(roc: ROC) -> dict[str, list[float]]:
    """At most 200 points of the staircase, for plotting on linear and on log axes.

    For a grid of FPR values — 97 log-spaced from 1e-4 to 1 (24 a decade, so 0.001 and 0.01 are on it)
    and 99 evenly spaced on [0, 1] — the point kept is the one with the largest TPR at FPR <= the grid
    value; with the two end points. The kept points lie on the curve, never above it.
    """
    fpr, tpr = roc.fpr, roc.tpr
    grid = np.r_[10.0 ** (np.arange(-96, 1) / 24), np.linspace(0, 1, 99)]
    idx = np.searchsorted(roc.fp, grid * roc.n_nonmembers * (1 + _RATE_SLACK), side="right") - 1
    keep = np.unique(np.r_[0, idx, fpr.size - 1])
    return {"fpr": [float(v) for v in fpr[keep]], "tpr": [float(v) for v in tpr[keep]]}


def clopper_pearson(
    k: int | np.ndarray, n: int | np.ndarray, *, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided interval for a binomial proportion after `k` successes in `n` trials.

    lower = Beta(α/2; k, n-k+1) quantile (0 when k = 0), upper = Beta(1-α/2; k+1, n-k) quantile (1 when
    k = n), α = 1 - `confidence`. Each side alone is a one-sided bound at level 1 - α/2. Vectorised.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie in (0, 1)")
    k_arr = np.asarray(k, dtype=np.float64)
    n_arr = np.asarray(n, dtype=np.float64)
    if np.any(n_arr < 1) or np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError("need 0 <= k <= n and n >= 1")
    alpha = 1.0 - confidence
    # the edge cases get valid dummy shape parameters, then their fixed value
    lo = np.where(k_arr > 0, stats.beta.ppf(alpha / 2, np.maximum(k_arr, 1), n_arr - k_arr + 1), 0.0)
    hi = np.where(k_arr < n_arr, stats.beta.ppf(1 - alpha / 2, k_arr + 1, np.maximum(n_arr - k_arr, 1)), 1.0)
    return lo, hi


def summarize(values: object, *, quantiles: Sequence[float] = QUANTILES) -> dict[str, Any]:
    """``{"mean", "median", "quantiles": {"0.05": ..., ...}}`` of a score distribution, JSON-ready."""
    v = _scores(values, "values")
    qs = np.quantile(v, list(quantiles))
    return {
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "quantiles": {f"{q:g}": float(x) for q, x in zip(quantiles, qs, strict=True)},
    }
