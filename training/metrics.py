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
counted one half) are then computed from the noisy counts, clipped at 0: post-processing, free.

The cost is the metrics' share of the job's ε, charged with the rest of the job before training starts.

One shape, whatever the rows. The release always has the same keys, and always runs: an empty held-out
part, or one holding one class only, releases noisy histograms like any other. Accuracy is null only
where the clipped noisy counts sum to 0, and AUC only where the clipped noisy positive or negative counts
do: a rule applied to the noisy release (post-processing), never to the exact counts, so whether a
figure is null costs nothing more and says no more than the release itself. The exact figures
(`exact_metrics`, administrators only) are not releases and follow the rows.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from mechanisms import LaplaceCount

__all__ = ["BIN_EDGES", "LOGIT_RANGE", "dp_metrics", "exact_metrics", "metrics_from_histograms", "score_histograms"]

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
    """Accuracy at 0.5 and binned ROC-AUC from (possibly noisy) histograms; counts clipped at 0."""
    pos = np.clip(np.asarray(pos, dtype=np.float64), 0, None)
    neg = np.clip(np.asarray(neg, dtype=np.float64), 0, None)
    n_pos, n_neg = pos.sum(), neg.sum()
    total = n_pos + n_neg
    accuracy = None if total <= 0 else float((pos[_HALF:].sum() + neg[:_HALF].sum()) / total)
    if n_pos <= 0 or n_neg <= 0:
        auc = None
    else:
        below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])  # negatives in lower bins
        auc = float(np.sum(pos * (below + 0.5 * neg)) / (n_pos * n_neg))
    return {"accuracy": accuracy, "roc_auc": auc}


def exact_metrics(scores: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The exact figures (administrators only): accuracy at 0.5, ROC-AUC, held-out size."""
    from sklearn.metrics import roc_auc_score

    n = len(y)
    out: dict[str, Any] = {"held_out_rows": int(n), "positives": int((y == 1).sum())}
    out["accuracy"] = None if n == 0 else float(((scores > 0.5) == (y == 1)).mean())
    out["roc_auc"] = float(roc_auc_score(y, scores)) if 0 < (y == 1).sum() < n else None
    pos, neg = score_histograms(scores, y)
    out["binned"] = metrics_from_histograms(pos, neg)
    return out


def dp_metrics(scores: np.ndarray, y: np.ndarray, *, epsilon: Fraction, k: int) -> dict[str, Any]:
    """Noisy histograms of held-out scores (ε-DP, L1 sensitivity `k`) and the metrics they imply."""
    pos, neg = score_histograms(scores, y)
    mech = LaplaceCount(epsilon=epsilon, sensitivity=k)
    noisy = np.asarray(mech.release([int(v) for v in np.concatenate([pos, neg])]), dtype=np.int64)
    npos, nneg = noisy[: len(pos)], noisy[len(pos) :]
    out: dict[str, Any] = dict(metrics_from_histograms(npos, nneg))
    out["held_out_rows"] = int(max(0, np.clip(noisy, 0, None).sum()))
    out["mechanism"] = "laplace"
    out["scale"] = float(mech.scale)
    out["bins"] = len(pos)
    return out
