"""Model metrics on the held-out units: exact (administrators only) and differentially private.

The DP metrics are post-processing of one release: two histograms of the model's scores on the held-out
rows — one over the positive rows, one over the negative — on fixed public bins, noised together by
`mechanisms.LaplaceCount` (discrete Laplace through OpenDP). The bins are uniform in logit space on
[-LOGIT_RANGE, LOGIT_RANGE] plus two open-ended outer bins, with an edge at logit 0 (score 0.5), so they
resolve both balanced tasks and rare-positive ones (fraud) without looking at the data.

Sensitivity. The model is fixed (trained on the other units: the split is by unit), so adding or removing
one held-out unit adds or removes only its own held-out rows, each moving one count. The job keeps at most
r positive and r negative held-out rows per unit (``metrics_rows_per_unit``, by keyed hash — a stable
choice), so the L1 sensitivity of the pair of histograms is min(k, 2r), k = max_rows_per_unit: 10 rather
than 300 for the demo's transactions, 1 for one row per unit. The metrics then estimate accuracy and AUC
over that per-unit sample of the held-out rows. Accuracy (at score 0.5) and ROC-AUC (with ties inside a bin
counted one half) are then computed from the noisy counts as released (sums of zero-mean noise; the
figures clipped to [0, 1]): post-processing, free.

The cost is the metrics' share of the job's ε, charged with the rest of the job before training starts.

Baseline and intervals (issue 16: a DP accuracy of 0.949 on a table whose majority class is 0.967 says
nothing without them). The same release gives the **majority-class share** (the accuracy of always
answering the commonest class), and every released figure comes with an approximate 95% **interval**
covering both the held-out sampling and the DP noise. Accuracy and the majority share are ratios of sums
of noisy counts, taken as released (zero-mean noise; clipping each count at 0 first would bias them up
by about half a noise scale per empty bin): their interval is the binomial sampling variance plus the
noise's by the delta method, from the sums, the number of cells in each and the discrete Laplace variance
at the release's public scale. AUC's adds Hanley & McNeil's sampling variance to the spread of the
binned AUC under the release's own noise, simulated from the released counts at the public scale with a
fixed seed. Everything reads only released values and public scales: post-processing, free, the same for
the same release. (The simulation's draws model noise for a statistic; the noise that protects the rows
is OpenDP's.) Multi-class jobs release noisy counts of correct and wrong held-out predictions *per true
class* (`multiclass_dp_metrics`, one release of 2·C cells, sensitivity k), so their accuracy and majority
share come from one release too.

One shape, whatever the rows. The release always has the same keys, and always runs: an empty held-out
part, or one holding one class only, releases noisy histograms like any other. Accuracy is null only
where the noisy counts sum to at most 0, and AUC only where the noisy positive or negative counts
do: a rule applied to the noisy release (post-processing), never to the exact counts, so whether a
figure is null costs nothing more and says no more than the release itself. The exact figures
(`exact_metrics`, administrators only) are not releases and follow the rows.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from mechanisms import LaplaceCount

__all__ = ["BIN_EDGES", "INTERVAL_LEVEL", "LOGIT_RANGE", "discrete_laplace_variance", "dp_metrics", "exact_metrics",
           "metrics_from_histograms", "multiclass_dp_metrics", "multiclass_from_counts", "score_histograms", "share_interval"]

LOGIT_RANGE = 8.0
_INNER_BINS = 32  # even, so that logit 0 is an edge. Half-logit bins: finer ones add more noise than they remove bias
#: Interior edges in score space; bins are (-inf, e0], (e0, e1], ..., (e_last, +inf) over the logit.
BIN_EDGES = 1.0 / (1.0 + np.exp(-np.linspace(-LOGIT_RANGE, LOGIT_RANGE, _INNER_BINS + 1)))
_HALF = _INNER_BINS // 2 + 1  # bins with index >= this one have score > 0.5


def score_histograms(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of positive and of negative rows per bin (``len(BIN_EDGES) + 1`` bins each)."""
    bins = np.searchsorted(BIN_EDGES, scores, side="left")
    n_bins = len(BIN_EDGES) + 1
    pos = np.bincount(bins[y == 1], minlength=n_bins)
    neg = np.bincount(bins[y != 1], minlength=n_bins)
    return pos.astype(np.int64), neg.astype(np.int64)


def metrics_from_histograms(pos: np.ndarray, neg: np.ndarray) -> dict[str, float | None]:
    """Accuracy at 0.5 and binned ROC-AUC from (possibly noisy) histograms, from their counts as released."""
    raw_pos, raw_neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    # accuracy from the sums of the noisy counts as released (zero-mean noise: clipping each count first
    # would add about half a noise scale per empty bin)
    right = raw_pos[_HALF:].sum() + raw_neg[:_HALF].sum()
    raw_total = raw_pos.sum() + raw_neg.sum()
    accuracy = _share(right, raw_total)
    auc = _auc(raw_pos, raw_neg)
    return {"accuracy": accuracy, "roc_auc": None if auc is None else min(max(auc, 0.0), 1.0)}


def _share(part: float, total: float) -> float | None:
    """part / total of two sums of noisy counts, clipped to [0, 1]; None where the noisy total is not positive."""
    return None if total <= 0 else float(min(max(part / total, 0.0), 1.0))


def _auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """Binned AUC from the counts as released, unclipped: Σ pos_i·(neg below i + ½·neg_i) / (n_pos·n_neg)
    is bilinear in two independent noisy histograms, so zero-mean noise leaves it nearly unbiased, where
    clipped counts would pull it toward 0.5. None where a noisy class total is not positive."""
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos <= 0 or n_neg <= 0:
        return None
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])  # negatives in lower bins
    return float(np.sum(pos * (below + 0.5 * neg)) / (n_pos * n_neg))


INTERVAL_LEVEL = 0.95
_Z = 1.959963984540054  # the standard normal's 97.5% point
_AUC_DRAWS = 200


def discrete_laplace_variance(scale: float) -> float:
    """The variance of OpenDP's discrete Laplace at `scale` (P(x) ∝ exp(-|x| / scale))."""
    q = math.exp(-1.0 / scale) if scale > 0 else 0.0
    return 2.0 * q / (1.0 - q) ** 2


def share_interval(part: float, rest: float, cells_part: int, cells_rest: int, variance: float) -> list[float] | None:
    """An approximate 95% interval of part / (part + rest), two sums of noisy counts over `cells_part` and
    `cells_rest` cells, each with independent noise of `variance`: held-out sampling (binomial) plus the
    noise (delta method). None where the noisy total is not positive."""
    total = part + rest
    r = _share(part, total)
    if r is None:
        return None
    a, w = max(part, 0.0), max(rest, 0.0)
    noise = (w * w * cells_part + a * a * cells_rest) * variance / total**4
    sd = math.sqrt(r * (1.0 - r) / total + noise)
    return [max(0.0, r - _Z * sd), min(1.0, r + _Z * sd)]


def _auc_interval(pos: np.ndarray, neg: np.ndarray, scale: float) -> list[float] | None:
    """AUC: Hanley & McNeil's sampling variance at the released counts plus the spread of the AUC under
    the release's own noise (simulated at its public scale from the released counts, fixed seed)."""
    auc = metrics_from_histograms(pos, neg)["roc_auc"]
    if auc is None:
        return None
    n1, n2 = max(float(pos.sum()), 1.0), max(float(neg.sum()), 1.0)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    sampling = (auc * (1 - auc) + (n1 - 1) * (q1 - auc * auc) + (n2 - 1) * (q2 - auc * auc)) / (n1 * n2)
    rng = np.random.default_rng(0)
    p = -math.expm1(-1.0 / scale) if scale > 0 else 1.0
    shape = (_AUC_DRAWS, len(pos))
    # the spread unclipped: near AUC 1 clipping each draw at 1 would hide half of it
    sims = [_auc(pos + a, neg + b) for a, b in zip(
        rng.geometric(p, shape) - rng.geometric(p, shape), rng.geometric(p, shape) - rng.geometric(p, shape), strict=True)]  # fmt: skip
    got = [v for v in sims if v is not None]
    noise = float(np.var(got)) if len(got) > 1 else 0.0
    sd = math.sqrt(max(sampling, 0.0) + noise)
    return [max(0.0, auc - _Z * sd), min(1.0, auc + _Z * sd)]


def _binary_release(pos: np.ndarray, neg: np.ndarray, scale: float) -> dict[str, Any]:
    """Everything a binary job reports from its noisy score histograms (post-processing)."""
    out: dict[str, Any] = dict(metrics_from_histograms(pos, neg))
    var, bins = discrete_laplace_variance(scale), len(pos)
    right = float(pos[_HALF:].sum() + neg[:_HALF].sum())
    wrong = float(pos[:_HALF].sum() + neg[_HALF:].sum())
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    major, minor = max(n_pos, n_neg), min(n_pos, n_neg)
    total = n_pos + n_neg
    out["majority_share"] = _share(major, total)
    out["intervals"] = {
        "accuracy": share_interval(right, wrong, bins, bins, var),
        "roc_auc": _auc_interval(pos, neg, scale),
        "majority_share": share_interval(major, minor, bins, bins, var),
    }
    out["interval_level"] = INTERVAL_LEVEL
    return out


def exact_metrics(scores: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The exact figures (administrators only): accuracy at 0.5, ROC-AUC, held-out size."""
    from sklearn.metrics import roc_auc_score

    n = len(y)
    out: dict[str, Any] = {"held_out_rows": int(n), "positives": int((y == 1).sum())}
    out["accuracy"] = None if n == 0 else float(((scores > 0.5) == (y == 1)).mean())
    out["roc_auc"] = float(roc_auc_score(y, scores)) if 0 < (y == 1).sum() < n else None
    out["majority_share"] = None if n == 0 else float(max((y == 1).mean(), 1 - (y == 1).mean()))
    pos, neg = score_histograms(scores, y)
    out["binned"] = metrics_from_histograms(pos, neg)
    return out


def dp_metrics(scores: np.ndarray, y: np.ndarray, *, epsilon: Fraction, k: int) -> dict[str, Any]:
    """Noisy histograms of held-out scores (ε-DP, L1 sensitivity `k`) and the metrics they imply."""
    pos, neg = score_histograms(scores, y)
    mech = LaplaceCount(epsilon=epsilon, sensitivity=k)
    noisy = np.asarray(mech.release([int(v) for v in np.concatenate([pos, neg])]), dtype=np.int64)
    out = _binary_release(noisy[: len(pos)].astype(np.float64), noisy[len(pos) :].astype(np.float64), float(mech.scale))
    out["held_out_rows"] = int(max(0, np.clip(noisy, 0, None).sum()))
    out["mechanism"] = "laplace"
    out["scale"] = float(mech.scale)
    out["bins"] = len(pos)
    return out


def multiclass_from_counts(counts: np.ndarray, scale: float = 0.0) -> dict[str, Any]:
    """Accuracy and majority-class share, with their intervals, from (noisy) counts laid out [correct of
    class 0, wrong of class 0, correct of class 1, ...] with noise of `scale` on each (post-processing)."""
    c = np.asarray(counts, dtype=np.float64).reshape(-1, 2)
    total = float(c.sum())
    right = float(c[:, 0].sum())
    per_class = c.sum(axis=1)
    top = float(per_class.max()) if len(per_class) else 0.0
    var, cells = discrete_laplace_variance(scale), c.size
    return {
        "accuracy": _share(right, total),
        "majority_share": _share(top, total),
        "intervals": {"accuracy": share_interval(right, total - right, cells // 2, cells // 2, var),
                      "majority_share": share_interval(top, total - top, 2, cells - 2, var)},
        "interval_level": INTERVAL_LEVEL,
    }  # fmt: skip


def multiclass_dp_metrics(proba: np.ndarray, y: np.ndarray, *, epsilon: Fraction, k: int, n_classes: int | None = None) -> dict[str, Any]:
    """Noisy counts of correct and wrong held-out predictions per true class (one release of 2·C cells;
    a unit's k rows move at most k counts: L1 sensitivity k) and what they imply (post-processing)."""
    classes = int(n_classes if n_classes is not None else (proba.shape[1] if proba.ndim == 2 else 1))
    pred = proba.argmax(axis=1) if len(y) else np.zeros(0, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    cells = np.zeros((classes, 2), dtype=np.int64)
    if len(y):
        np.add.at(cells, (y, (pred != y).astype(np.int64)), 1)
    mech = LaplaceCount(epsilon=epsilon, sensitivity=k)
    noisy = np.asarray(mech.release([int(v) for v in cells.ravel()]), dtype=np.int64)
    out = multiclass_from_counts(noisy, float(mech.scale))
    out["held_out_rows"] = int(np.clip(noisy, 0, None).sum())
    out["mechanism"] = "laplace"
    out["scale"] = float(mech.scale)
    out["cells"] = int(noisy.size)
    return out
