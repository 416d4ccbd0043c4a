"""PATE's noisy aggregators: GNMax and Confident-GNMax (Papernot et al. 2018, §4).

A student query is a row of the public (unlabelled) table; each teacher predicts one class for it, and
the *vote histogram* counts the teachers per class (`vote_histogram`: exactly one vote per teacher, which
the sensitivity argument in `accounting` relies on). Only noisy versions of the histogram are ever
looked at:

* GNMax: Gaussian noise N(0, σ²) on EVERY class's count, then argmax;
* Confident-GNMax: answer only if ``max_j n_j + N(0, σ1²) >= T``; then GNMax with σ2. Abstentions are
  returned as `ABSTAIN` (-1) by the batch methods and None by `answer`.

Every draw comes from OpenDP (`_noise.noisy_counts`, one call per batch). Ties between noisy counts
(probability ~0 on the 2**-20 grid) go to the lowest class index. The privacy cost is not computed
here: see `accounting` (and `plan`, which charges it before any vote is used).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ._noise import as_counts, check_sigma, noisy_counts

__all__ = ["ABSTAIN", "GNMax", "ConfidentGNMax", "vote_histogram"]

#: the label of a query Confident-GNMax declined to answer
ABSTAIN = -1


def _n_classes(n_classes: int) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise ValueError("n_classes must be an integer >= 2")
    return int(n_classes)


def vote_histogram(predictions: Any, n_classes: int) -> np.ndarray:
    """Per-query vote counts from teacher predictions.

    `predictions`: shape (n_teachers, n_queries), each entry the class in [0, n_classes) that teacher
    predicts for that query. Returns int64 counts of shape (n_queries, n_classes); every row sums to
    n_teachers (one vote per teacher per query).
    """
    k = _n_classes(n_classes)
    p = np.asarray(predictions)
    if p.ndim != 2:
        raise ValueError("predictions must have shape (n_teachers, n_queries)")
    if p.dtype == np.bool_ or p.dtype.kind not in "iu":
        raise ValueError("predictions must be integer class indices")
    if p.size and (p.min() < 0 or p.max() >= k):
        raise ValueError("predictions must be class indices in [0, n_classes)")
    return np.stack([(p == c).sum(axis=0) for c in range(k)], axis=1).astype(np.int64)


def _votes(votes: Any, n_classes: int) -> tuple[np.ndarray, bool]:
    """(2-D int64 votes, whether the input was a single 1-D histogram)."""
    v = as_counts(votes, name="votes")
    single = v.ndim == 1
    if single:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != n_classes:
        raise ValueError(f"votes must have shape (n_classes,) or (n_queries, n_classes) with n_classes={n_classes}")
    return v, single


class GNMax:
    """argmax_j (votes_j + N(0, σ²)), noise on every class's count (Papernot et al. 2018, §4.1)."""

    def __init__(self, *, sigma: float, n_classes: int) -> None:
        self.sigma = check_sigma(sigma)
        self.n_classes = _n_classes(n_classes)

    def noisy_votes(self, votes: Any) -> np.ndarray:
        """The histogram(s) with N(0, σ²) added to every count: what the argmax is taken over."""
        v, single = _votes(votes, self.n_classes)
        noisy = noisy_counts(v, self.sigma)
        return noisy[0] if single else noisy

    def answer_batch(self, votes: Any) -> np.ndarray:
        """One label per row of `votes` (n_queries, n_classes), from one OpenDP call."""
        v, _ = _votes(votes, self.n_classes)
        if v.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        return np.argmax(noisy_counts(v, self.sigma), axis=1).astype(np.int64)

    def answer(self, votes: Any) -> int:
        """The noisy argmax of one histogram (n_classes,)."""
        v, single = _votes(votes, self.n_classes)
        if not single:
            raise ValueError("answer takes one histogram; use answer_batch for many")
        return int(self.answer_batch(v)[0])

    def __repr__(self) -> str:
        return f"GNMax(sigma={self.sigma!r}, n_classes={self.n_classes})"


class ConfidentGNMax:
    """Answer only when ``max vote + N(0, σ1²) >= threshold``, then by GNMax with σ2 (Algorithm 1, §4.2)."""

    def __init__(self, *, threshold: float, sigma1: float, sigma2: float, n_classes: int) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not np.isfinite(threshold):
            raise ValueError("threshold must be a finite number")
        self.threshold = float(threshold)
        self.sigma1 = check_sigma(sigma1, name="sigma1")
        self.sigma2 = check_sigma(sigma2, name="sigma2")
        self.n_classes = _n_classes(n_classes)
        self._gnmax = GNMax(sigma=self.sigma2, n_classes=self.n_classes)

    def passes(self, votes: Any) -> np.ndarray:
        """The threshold step alone: one bool per row, ``max vote + N(0, σ1²) >= threshold``."""
        v, _ = _votes(votes, self.n_classes)
        if v.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        return noisy_counts(v.max(axis=1), self.sigma1) >= self.threshold

    def answer_batch(self, votes: Any, *, max_answers: int | None = None) -> np.ndarray:
        """One label per row of `votes`, or `ABSTAIN`; two OpenDP calls (threshold, then argmax).

        `max_answers`: a cap fixed in advance. Queries are taken in row order and, once `max_answers`
        have been answered, every later row gets `ABSTAIN`: this is what lets the accountant charge the
        GNMax step `max_answers` times instead of once per checked row
        (``confident_gnmax_epsilon(..., answered=max_answers)``).
        """
        v, _ = _votes(votes, self.n_classes)
        if max_answers is not None and (
            isinstance(max_answers, bool) or not isinstance(max_answers, numbers.Integral) or max_answers < 0
        ):
            raise ValueError("max_answers must be a non-negative integer")
        out = np.full(v.shape[0], ABSTAIN, dtype=np.int64)
        if v.shape[0] == 0:
            return out
        chosen = np.flatnonzero(self.passes(v))
        if max_answers is not None:
            chosen = chosen[: int(max_answers)]
        if chosen.size:
            out[chosen] = self._gnmax.answer_batch(v[chosen])
        return out

    def answer(self, votes: Any) -> int | None:
        """The label of one histogram (n_classes,), or None when the threshold step abstains."""
        v, single = _votes(votes, self.n_classes)
        if not single:
            raise ValueError("answer takes one histogram; use answer_batch for many")
        label = int(self.answer_batch(v)[0])
        return None if label == ABSTAIN else label

    def __repr__(self) -> str:
        return (
            f"ConfidentGNMax(threshold={self.threshold!r}, sigma1={self.sigma1!r}, sigma2={self.sigma2!r}, "
            f"n_classes={self.n_classes})"
        )
