"""What differential privacy allows an attack, and what an attack proves about ε.

Guarantee. If the training algorithm is (ε, δ)-DP with respect to adding or removing one record, then any
membership test — a threshold on any score — has, in the membership game (each target record in the
training set or not, the attacker seeing the model), TPR <= e^ε·FPR + δ and, applied to the complementary
test, 1 - FPR <= e^ε·(1 - TPR) + δ. Together (Kairouz, Oh & Viswanath 2015, Theorem 2.1, the hypothesis
testing region of (ε, δ)-DP):

    TPR <= min(1, e^ε·FPR + δ, 1 - e^{-ε}·(1 - δ - FPR)).

`dp_ceiling` is that function. Audits measure TPR and FPR on finitely many records, so we compare exact
(Clopper–Pearson) bounds, not point estimates:

* `ceiling_check`: at the threshold that `tpr_at_fpr` picks for a target FPR α, the measured TPR's lower
  95% bound is compared with the ceiling at the measured FPR's *upper* 95% bound (the threshold was picked
  on the non-members, so their true FPR may exceed α: the ceiling at α would raise false alarms when
  non-members are few). An honest (ε, δ)-DP model raises ``exceeds_ceiling`` with probability at most
  2.5% + 2.5% per comparison. The ceiling at α itself is reported too.
* `epsilon_lower_bound`: Jagielski, Ullman & Oprea 2020 ("Auditing differentially private machine
  learning: how private is private SGD?"): at a threshold with rates bounded by TPR_lo and FPR_hi, any
  (ε, δ) the model satisfies has ε >= log((TPR_lo - δ)/FPR_hi) and ε >= log((1 - δ - FPR_hi)/(1 - TPR_lo)).
  The maximum is taken over a small set of thresholds fixed in advance by rank — the ones admitting
  0, 1, 2, 4, 8, ... false positives, and those missing 0, 1, 2, 4, ... members — with a Bonferroni split
  of the 5% error over them, so the bound holds at 95% for the maximum, not only per threshold. (The
  threshold admitting k false positives sits at a non-member order statistic, whose true FPR is
  Beta(k + 1, n - k): exactly the distribution the Clopper–Pearson upper bound inverts.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .metrics import ROC, clopper_pearson

__all__ = ["CONFIDENCE", "FPR_LEVELS", "ceiling_check", "dp_ceiling", "epsilon_lower_bound"]

#: The false-positive rates at which TPR and the ceiling are reported.
FPR_LEVELS = (0.001, 0.01)
#: Confidence of every interval reported (two-sided Clopper–Pearson; each side alone 97.5%).
CONFIDENCE = 0.95


def _check_privacy(epsilon: float, delta: float) -> None:
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError("epsilon must be a finite number >= 0")
    if not 0 <= delta < 1:
        raise ValueError("delta must lie in [0, 1)")


def dp_ceiling(fpr: float | np.ndarray, *, epsilon: float, delta: float = 0.0) -> np.ndarray:
    """The largest TPR any membership test can reach at `fpr` against an (ε, δ)-DP training algorithm.

    ``min(1, e^ε·fpr + δ, 1 - e^{-ε}·(1 - δ - fpr))`` (Kairouz et al. 2015, Theorem 2.1).
    """
    _check_privacy(epsilon, delta)
    f = np.asarray(fpr, dtype=np.float64)
    upper = np.minimum(math.exp(epsilon) * f + delta, 1.0 - math.exp(-epsilon) * (1.0 - delta - f))
    return np.clip(upper, 0.0, 1.0)


def ceiling_check(roc: ROC, alpha: float, *, epsilon: float, delta: float = 0.0) -> dict[str, Any]:
    """The attack at target FPR `alpha` against the (ε, δ) ceiling, with sampling margins (see module doc).

    Returns ``tpr`` and ``fpr`` (measured at the chosen threshold), ``tpr_lower_95``, ``fpr_upper_95``,
    ``ceiling`` (at `alpha`), ``ceiling_at_fpr_upper_95`` and ``exceeds_ceiling``
    (``tpr_lower_95 > ceiling_at_fpr_upper_95``).
    """
    i = roc.index_at_fpr(alpha)
    tpr_lo, _ = clopper_pearson(int(roc.tp[i]), roc.n_members, confidence=CONFIDENCE)
    _, fpr_hi = clopper_pearson(int(roc.fp[i]), roc.n_nonmembers, confidence=CONFIDENCE)
    at_fpr_hi = float(dp_ceiling(fpr_hi, epsilon=epsilon, delta=delta))
    return {
        "tpr": float(roc.tpr[i]),
        "fpr": float(roc.fpr[i]),
        "tpr_lower_95": float(tpr_lo),
        "fpr_upper_95": float(fpr_hi),
        "ceiling": float(dp_ceiling(alpha, epsilon=epsilon, delta=delta)),
        "ceiling_at_fpr_upper_95": at_fpr_hi,
        "exceeds_ceiling": bool(tpr_lo > at_fpr_hi),
    }


def _doubling(n: int) -> np.ndarray:
    """0, 1, 2, 4, ... up to n, and n."""
    ks = [0]
    k = 1
    while k < n:
        ks.append(k)
        k *= 2
    ks.append(n)
    return np.asarray(ks)


def epsilon_lower_bound(roc: ROC, *, delta: float = 0.0, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """An ε that the measured attack proves, at `confidence`, the model does not beat (0 if none).

    Returns ``{"epsilon_lower_bound", "tpr_lower", "fpr_upper", "thresholds_tested", "confidence",
    "delta"}`` (the bounds at the best threshold; see the module doc for the construction).
    """
    _check_privacy(0.0, delta)
    n_m, n_n = roc.n_members, roc.n_nonmembers
    by_fp = np.searchsorted(roc.fp, _doubling(n_n), side="right") - 1
    by_fn = np.searchsorted(roc.tp, n_m - _doubling(n_m), side="left")
    idx = np.unique(np.r_[by_fp, by_fn])
    m = idx.size
    # Bonferroni: 2m one-sided bounds share 1 - confidence
    tpr_lo, _ = clopper_pearson(roc.tp[idx], n_m, confidence=1 - (1 - confidence) / m)
    _, fpr_hi = clopper_pearson(roc.fp[idx], n_n, confidence=1 - (1 - confidence) / m)
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = np.where(tpr_lo > delta, np.log((tpr_lo - delta) / fpr_hi), -np.inf)
        complement = np.where(
            (1 - delta - fpr_hi > 0) & (tpr_lo < 1), np.log((1 - delta - fpr_hi) / (1 - tpr_lo)), -np.inf
        )
    both = np.maximum(direct, complement)
    best = int(np.argmax(both))
    found = bool(both[best] > 0)
    return {
        "epsilon_lower_bound": float(both[best]) if found else 0.0,
        "tpr_lower": float(tpr_lo[best]) if found else None,
        "fpr_upper": float(fpr_hi[best]) if found else None,
        "thresholds_tested": int(m),
        "confidence": confidence,
        "delta": delta,
    }
