"""PATE end to end: teachers on disjoint partitions by privacy unit, noisy labels for public rows, a student.

Guarantee (user level; the neighbouring relation is add/remove/change one privacy unit's rows). The rows
are split among `n_teachers` teachers by `partition.partition_units` (keyed hash of the unit id, fixed
before the data is seen), so one unit's rows all sit in one teacher's partition. Each teacher is a function
of its own partition only, and every teacher casts exactly one vote on every query, so a neighbouring
dataset changes at most one teacher's vote per query: the sensitivity `accounting` assumes. The labels
are released by `plan.label_queries`, which charges ``plan.cost`` through `charge` **before** any teacher
is asked for a prediction. The student sees only public rows and those noisy labels (never a private
label, a raw vote or a teacher), so it is post-processing: its model costs nothing more.

Teachers and the student train non-privately by design (`mlp_fit`, `logreg_fit`, or any `Fit`): the
privacy comes from the aggregation. What a teacher learned must never leave this module except through
the aggregator; `PATEResult` therefore reports only public figures (plan sizes, the counts of noisy
labels and abstentions, which are functions of the released labels) — not the rows per teacher, which
depend on the data.

Edge cases kept inside the sensitivity argument:

* a teacher whose partition is empty votes the fixed class `EMPTY_VOTE` (0) on every query: it still
  casts one vote, so the number of votes never depends on the data, and a unit arriving in that
  partition changes that one teacher only;
* a teacher whose partition holds one class only votes that class on every query (without calling
  `fit_teacher`, which for many learners fails on one class): again a function of its partition alone;
* the student is trained on whatever the aggregator released — possibly one class only, or (every
  Confident-GNMax query abstaining) no row at all — with `fit_student`, which must accept both. So once
  the plan is charged, whether a student comes out never depends on the private rows (a table whose
  rows hold one class gives a student as any other does), and the class set it predicts over is the
  public ``n_classes``.

Query selection: the first ``plan.queries`` rows of a seeded permutation of `x_public` (public data,
no privacy cost). A plan that pays for more queries than there are public rows is refused before
anything runs, rather than charging for queries that cannot be asked.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from mechanisms.cost import Cost

from ..dpsgd import Cancelled
from ..nets import MLP
from .aggregate import ABSTAIN, _n_classes
from .partition import partition_units
from .plan import PATEPlan, label_queries

__all__ = [
    "EMPTY_VOTE",
    "MIN_LABELLED",
    "Fit",
    "PATEResult",
    "Predict",
    "logreg_fit",
    "mlp_fit",
    "train_pate",
]

#: predict_proba of a fitted model: x (n, d) -> (n, n_classes), column j the probability of class j
Predict = Callable[[np.ndarray], np.ndarray]
#: fit(x, y, seed): one model trained (non-privately) on (x, y), y int class indices; returns its Predict
Fit = Callable[[np.ndarray, np.ndarray, int], Predict]

#: the class an empty partition's teacher votes on every query
EMPTY_VOTE = 0
#: the fewest answers a plan must be able to give (checked before the charge, from the plan alone)
MIN_LABELLED = 10

# share of `on_progress` spent training teachers (then labelling, then the student)
_TEACHERS_SHARE = 0.8
_LABELLED_AT = 0.9

# tags of the seed streams derived from `seed` (SeedSequence([seed, tag, ...]))
_TEACHER_STREAM, _STUDENT_STREAM, _QUERY_STREAM = 0, 1, 2


@dataclass(frozen=True)
class PATEResult:
    """What a PATE run produced; every figure is public once the plan's cost is charged.

    `labelled`: queried public rows that got a noisy label (the student's training set);
    `abstained`: Confident-GNMax abstentions (0 for GNMax); `queries`: public rows asked (= plan.queries);
    `teachers`: n_teachers (fixed in advance). Rows per teacher are deliberately absent (they depend on
    the private data). `label_agreement_public` is always None: agreement of the noisy labels with the
    private ones would be a further release, and there are no true labels on the public side.
    """

    student_predict: Predict
    labelled: int
    abstained: int
    queries: int
    teachers: int
    label_agreement_public: None = None


def _seed(seed: int, *tags: int) -> int:
    return int(np.random.SeedSequence([seed, *tags]).generate_state(1)[0])


def _matrix(x: Any, *, name: str, width: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or a.dtype == np.bool_ or a.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a 2-D numeric array (rows, features)")
    if width is not None and a.shape[1] != width:
        raise ValueError(f"{name} must have {width} feature columns, like x_private")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must hold finite numbers")
    return a.astype(np.float32, copy=False)


def _labels(y: Any, n_classes: int, rows: int) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1 or a.shape[0] != rows:
        raise ValueError("y_private must be one class index per row of x_private")
    if a.dtype == np.bool_ or a.dtype.kind not in "iu":
        raise ValueError("y_private must hold integer class indices")
    if a.size and (a.min() < 0 or a.max() >= n_classes):
        raise ValueError("y_private must hold class indices in [0, n_classes)")
    return a.astype(np.int64)


def _proba(p: Any, rows: int, n_classes: int, *, who: str) -> np.ndarray:
    """`p` as (rows, n_classes) float64; fewer columns mean the trailing classes have probability 0."""
    a = np.asarray(p, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != rows or not 1 <= a.shape[1] <= n_classes:
        raise ValueError(f"{who} must return probabilities of shape (rows, n_classes) with n_classes={n_classes}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{who} returned non-finite probabilities")
    if a.shape[1] < n_classes:
        a = np.pad(a, ((0, 0), (0, n_classes - a.shape[1])))
    return a


def _constant(label: int, n_classes: int) -> Predict:
    def predict(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), n_classes), dtype=np.float64)
        out[:, label] = 1.0
        return out

    return predict


def _teacher(fit: Fit, x: np.ndarray, y: np.ndarray, *, seed: int, n_classes: int) -> Predict:
    if len(y) == 0:
        return _constant(EMPTY_VOTE, n_classes)
    present = np.unique(y)
    if present.size == 1:
        return _constant(int(present[0]), n_classes)
    return fit(x, y, seed)


def _votes(predict: Predict, x: np.ndarray, n_classes: int) -> np.ndarray:
    """One class per row: the teacher's argmax (ties to the lowest class)."""
    return np.argmax(_proba(predict(x), len(x), n_classes, who="a teacher's predict"), axis=1).astype(np.int64)


def _stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled()


def train_pate(
    *,
    x_private: np.ndarray,
    y_private: np.ndarray,
    units: np.ndarray,
    x_public: np.ndarray,
    n_classes: int,
    n_teachers: int,
    plan: PATEPlan,
    charge: Callable[[Cost], object],
    fit_teacher: Fit,
    fit_student: Fit,
    key: bytes,
    seed: int = 0,
    on_progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PATEResult:
    """Teachers on `x_private` partitioned by `units`, `plan`'s noisy labels on public rows, a student.

    1. every row goes to teacher ``partition_units(units, n_teachers, key=key)``; one model per
       partition by ``fit_teacher`` (see the module docstring for empty and one-class partitions);
       `should_stop` is checked before each teacher and once after the last (``Cancelled``: nothing
       charged);
    2. the queries: the first ``plan.queries`` rows of a permutation of `x_public` seeded by `seed`;
    3. ``label_queries(plan, ..., charge=charge)``: the cost is charged first (if `charge` raises, no
       teacher predicts and the exception propagates), then the teachers vote, lazily;
    4. ``fit_student`` on the queried rows that got a label (abstentions dropped) and their noisy labels,
       however few rows and classes that leaves (none, one class: `fit_student` must accept them).

    Raises ValueError on inconsistent inputs, all before anything is trained or charged: after the
    charge nothing the private rows hold can stop the run.
    """
    k = _n_classes(n_classes)
    if not isinstance(plan, PATEPlan):
        raise TypeError("plan must be a PATEPlan")
    if plan.n_classes != k:
        raise ValueError(f"the plan is for {plan.n_classes} classes, not {k}")
    if isinstance(n_teachers, bool) or not isinstance(n_teachers, numbers.Integral) or n_teachers < 1:
        raise ValueError("n_teachers must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError("seed must be a non-negative integer")
    n_teachers, seed = int(n_teachers), int(seed)
    xp = _matrix(x_private, name="x_private")
    y = _labels(y_private, k, len(xp))
    xq = _matrix(x_public, name="x_public", width=xp.shape[1])
    if plan.queries > len(xq):
        raise ValueError(
            f"the plan pays for {plan.queries} queries but x_public has {len(xq)} rows: "
            "plan at most that many queries"
        )
    if plan.answers < MIN_LABELLED:
        raise ValueError(f"the plan answers at most {plan.answers} queries; the student needs {MIN_LABELLED}")
    teacher_of = partition_units(units, n_teachers, key=key)
    if len(teacher_of) != len(xp):
        raise ValueError("units must hold one privacy unit id per row of x_private")

    order = np.argsort(teacher_of, kind="stable")
    bounds = np.searchsorted(teacher_of[order], np.arange(n_teachers + 1))
    teachers: list[Predict] = []
    for t in range(n_teachers):
        _stop(should_stop)
        rows = order[bounds[t] : bounds[t + 1]]
        teachers.append(_teacher(fit_teacher, xp[rows], y[rows], seed=_seed(seed, _TEACHER_STREAM, t), n_classes=k))
        if on_progress is not None:
            on_progress(_TEACHERS_SHARE * (t + 1) / n_teachers)
    _stop(should_stop)

    asked = np.random.default_rng(_seed(seed, _QUERY_STREAM)).permutation(len(xq))[: plan.queries]
    queried = xq[asked]

    def teacher_predictions() -> np.ndarray:
        return np.stack([_votes(p, queried, k) for p in teachers])

    labels = label_queries(plan, teacher_predictions, charge=charge)
    teachers.clear()  # nothing of the teachers outlives the labelling
    if on_progress is not None:
        on_progress(_LABELLED_AT)
    keep = labels != ABSTAIN
    labelled = int(keep.sum())  # a function of the released labels only; any number, 0 included, trains
    student = fit_student(queried[keep], labels[keep], _seed(seed, _STUDENT_STREAM))
    width = xp.shape[1]  # the returned closure must not hold on to the private matrix

    def student_predict(x: np.ndarray) -> np.ndarray:
        xs = _matrix(x, name="x", width=width)
        return _proba(student(xs), len(xs), k, who="the student's predict")

    if on_progress is not None:
        on_progress(1.0)
    return PATEResult(
        student_predict=student_predict,
        labelled=labelled,
        abstained=int(len(labels) - labelled),
        queries=int(len(labels)),
        teachers=n_teachers,
    )


# ---------------------------------------------------------------- default fits (tabular, non-private)


def _classes(y: np.ndarray, n_classes: int | None) -> int:
    return max(int(n_classes or 2), int(y.max()) + 1 if y.size else 1)


def _check_class_weight(class_weight: str | None) -> None:
    if class_weight not in (None, "balanced"):
        raise ValueError('class_weight must be None or "balanced"')


def _row_weights(y: np.ndarray, class_weight: str | None) -> np.ndarray:
    """Per-row loss weights: 1, or rows / (classes present · rows of the row's class)."""
    if class_weight is None:
        return np.ones(len(y), dtype=np.float32)
    present, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (len(y) / (len(present) * counts[inverse])).astype(np.float32)


class _SoftmaxMLP(nn.Module):
    """`nets.MLP` with `n_classes` logits (the same layers and input centring) for multi-class tasks."""

    def __init__(self, d_in: int, hidden: Sequence[int], n_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = d_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(2.0 * x - 1.0)


def mlp_fit(
    *,
    hidden: Sequence[int] = (64, 32),
    epochs: float = 40.0,
    lr: float = 3e-3,
    batch_size: int = 64,
    min_steps: int = 200,
    weight_decay: float = 1e-4,
    n_classes: int | None = None,
    class_weight: Literal["balanced"] | None = None,
) -> Fit:
    """A `Fit` training a small ReLU network with Adam, non-privately (for teachers and the student).

    Two classes: `nets.MLP` (one logit, sigmoid; the DP-SGD jobs' model) and ``[1 - p, p]``; more: the
    same layers with one logit per class and softmax. Steps: ``max(min_steps, epochs · rows / batch_size)``
    (small partitions still get enough steps). Features are expected in [0, 1] (the feature pipeline's
    scale), as for `nets.MLP`. `n_classes` (default: the largest label + 1, at least 2) fixes the width
    of the output. `class_weight="balanced"` weights each row's loss by ``rows / (k · rows of its class)``
    (scikit-learn's rule), for rare positives. Seeded by the fit's `seed`; torch's global RNG is left as
    it was. Tiny networks train much faster with ``torch.set_num_threads(1)`` (the caller's choice: the
    setting is process-wide).
    """
    hidden = tuple(int(h) for h in hidden)
    if isinstance(batch_size, bool) or batch_size < 1 or epochs <= 0 or lr <= 0 or min_steps < 0:
        raise ValueError("batch_size, epochs and lr must be positive, min_steps non-negative")
    _check_class_weight(class_weight)

    def fit(x: np.ndarray, y: np.ndarray, seed: int) -> Predict:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        yi = np.asarray(y, dtype=np.int64)
        k = _classes(yi, n_classes)
        present = np.unique(yi)
        if present.size < 2:
            return _constant(int(present[0]) if present.size else EMPTY_VOTE, k)
        n = len(yi)
        steps = max(int(min_steps), math.ceil(float(epochs) * n / batch_size))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model: nn.Module = MLP(xt.shape[1], hidden) if k == 2 else _SoftmaxMLP(xt.shape[1], hidden, k)
        gen = torch.Generator().manual_seed(seed)
        if k == 2:
            target = torch.from_numpy(yi.astype(np.float32))
            loss_fn: Callable[..., torch.Tensor] = nn.functional.binary_cross_entropy_with_logits
        else:
            target = torch.from_numpy(yi)
            loss_fn = nn.functional.cross_entropy
        weights = torch.from_numpy(_row_weights(yi, class_weight))
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        model.train()
        perm, pos, b = torch.randperm(n, generator=gen), 0, min(batch_size, n)
        for _ in range(steps):
            if pos + b > n:
                perm, pos = torch.randperm(n, generator=gen), 0
            idx = perm[pos : pos + b]
            pos += b
            opt.zero_grad(set_to_none=True)
            (loss_fn(model(xt[idx]), target[idx], reduction="none") * weights[idx]).mean().backward()
            opt.step()
        model.eval()

        @torch.no_grad()
        def predict(xs: np.ndarray) -> np.ndarray:
            logits = model(torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32)))
            if k == 2:
                p = torch.sigmoid(logits).double().numpy()
                return np.stack([1.0 - p, p], axis=1)
            return torch.softmax(logits, dim=-1).double().numpy()

        return predict

    return fit


def logreg_fit(
    *,
    C: float = 1.0,
    max_iter: int = 1000,
    n_classes: int | None = None,
    class_weight: Literal["balanced"] | None = None,
) -> Fit:
    """A `Fit` by scikit-learn's (non-private) multinomial LogisticRegression; columns by class index.

    Non-private is right here: teachers' privacy comes from the aggregation, and the student sees only
    public rows and noisy labels. `n_classes` and `class_weight` as for `mlp_fit`. Solver newton-cg
    (lbfgs passes SciPy a deprecated option, a warning on every fit with SciPy >= 1.15).
    """
    if C <= 0 or max_iter < 1:
        raise ValueError("C and max_iter must be positive")
    _check_class_weight(class_weight)

    def fit(x: np.ndarray, y: np.ndarray, seed: int) -> Predict:
        yi = np.asarray(y, dtype=np.int64)
        k = _classes(yi, n_classes)
        present = np.unique(yi)
        if present.size < 2:
            return _constant(int(present[0]) if present.size else EMPTY_VOTE, k)
        model = LogisticRegression(
            C=C, solver="newton-cg", max_iter=max_iter, class_weight=class_weight, random_state=seed
        )
        model.fit(np.asarray(x, dtype=np.float64), yi)
        columns = model.classes_.astype(np.int64)

        def predict(xs: np.ndarray) -> np.ndarray:
            out = np.zeros((len(xs), k), dtype=np.float64)
            out[:, columns] = model.predict_proba(np.asarray(xs, dtype=np.float64))
            return out

        return predict

    return fit
