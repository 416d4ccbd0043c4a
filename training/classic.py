"""Classic private models: logistic regression, Gaussian naive Bayes, random forest.

Guarantee. Each is ε-DP (pure) under add/remove-one-*row* neighbours given public bounds on the data,
which the feature encoding provides: rows lie in [0, 1]^d (`bounds`) with L2 norm at most
`FeatureSpec.max_norm` (`data_norm`) and L1 norm at most `FeatureSpec.max_l1`; each model clips its rows
to those bounds again before it reads them (enforce, don't infer). Sources: Chaudhuri et al. 2011
(objective perturbation, logistic regression, as implemented in diffprivlib 0.6), Vaidya et al. 2013
(naive Bayes from noisy per-class statistics), Fletcher & Islam 2017 (random forest, diffprivlib 0.6).

Public classes. Every model here knows the class set before it sees a row: the binary label's public
classes 0 (not `positive`) and 1 (`positive`), fixed by the job's `positive` and the label column's
declaration (`features.LabelSpec`). Which classes the rows happen to hold never changes what a fit does,
whether it succeeds, or the shape of what it returns: a table with no positive row, an empty training
part, a constant feature all give a model over both classes, drawn by the same mechanism as any other
table (`CLASSES`). The wrappers below exist for that:

* `PublicLogisticRegression`: diffprivlib's objective perturbation for the binary objective with labels
  1[y = 1], whatever labels occur (diffprivlib's own `fit` derives the classes from the data and raises
  on one). The intercept is an extra constant feature, regularised like the others, so that the
  perturbed objective is strongly convex in every coordinate, as the proof requires (scikit-learn's
  loss leaves the intercept unregularised: on one-class data the perturbed objective then has no
  minimum). With no rows it minimises the same objective without data terms.
* `PublicGaussianNB`: noisy per-class counts, feature sums and sums of squares for *every* public class
  (ε/3 each, discrete and float Laplace through OpenDP), then smoothed means, variances and priors
  (post-processing). diffprivlib's GaussianNB only estimates the classes present in the data (an absent
  class gets prior 0: predictions exactly 0) and forces its noisy counts to sum to the exact row count.
* `PublicRandomForest`: diffprivlib's forest (trees grown from the public bounds, leaves labelled by
  permute-and-flip over all public classes); with no rows every leaf is labelled as an empty leaf is.

User level. These models bound a row, not a unit. A job keeps at most r = ``params.rows_per_unit``
(default 1) rows per unit — chosen by a keyed hash of the row (a stable transformation) — and trains at
ε_model / r: by group privacy a unit's r rows cost r·(ε_model / r) = ε_model. With k = 1 nothing changes.

Caveat (on the cards of logistic regression and random forest): diffprivlib draws noise with numpy's
generator in floating point; it is not protected against floating-point attacks (Mironov 2012) the way
OpenDP's samplers are. Naive Bayes draws through `mechanisms` (OpenDP).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from diffprivlib.models import LogisticRegression as _DPLogisticRegression
from diffprivlib.models import RandomForestClassifier as _DPRandomForest
from sklearn.naive_bayes import GaussianNB as _GaussianNB

from .features import FeatureSpec

__all__ = [
    "CLASSES",
    "CLASSIC_METHODS",
    "ClassicMethod",
    "PublicGaussianNB",
    "PublicLogisticRegression",
    "PublicRandomForest",
    "fit_classic",
    "positive_proba",
]

#: The public classes of a binary label: 0 = not the positive value, 1 = the positive value.
CLASSES = (0, 1)


def _rows(x: Any) -> np.ndarray:
    """`x` as a float64 C-contiguous (n, d) array; n = 0 is a valid input (an empty training part)."""
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 2 or not np.all(np.isfinite(a)):
        raise ValueError("rows must be a finite 2-D array")
    return a


def _labels(y: Any, n: int) -> np.ndarray:
    """Class indices of the public binary set; any value other than 1 counts as class 0."""
    a = np.asarray(y).reshape(-1)
    if len(a) != n:
        raise ValueError("one label per row")
    return (a == 1).astype(np.int64)


def _clip_l2(x: np.ndarray, bound: float) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1) if len(x) else np.zeros(0)
    scale = np.minimum(1.0, bound / np.maximum(norms, 1e-300))
    return np.ascontiguousarray(x * scale[:, None])


class PublicLogisticRegression(_DPLogisticRegression):
    """diffprivlib's objective-perturbation logistic regression on the public classes (0, 1).

    The fit minimises, over w = (coef, intercept),

        sum_i log(1 + exp(-s_i w·(x_i, 1))) + |w|² / (2C) + b·w + (Δ/2) |w|²,   s_i = ±1 by 1[y_i = 1],

    with b drawn by diffprivlib's `Vector` mechanism (ε, data norm sqrt(data_norm² + 1), α = 1/C) and Δ
    its extra regulariser where ε is small — diffprivlib's objective multiplied by n, which changes no
    minimiser. Nothing in it depends on which labels occur, and for n = 0 the same objective without data
    terms has a unique minimiser, found the same way: the mechanism is one for every dataset. Unlike
    diffprivlib's `fit`, the intercept is regularised (a constant feature), so the objective is strongly
    convex in every coordinate (Chaudhuri et al. 2011, Theorem 9 assumes it). `classes_` is `CLASSES`.
    """

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> PublicLogisticRegression:
        from diffprivlib.models.logistic_regression import _logistic_regression_path
        from diffprivlib.utils import check_random_state

        if self.data_norm is None:  # a bound from the data would leak it
            raise ValueError("data_norm must be given")
        x = _rows(X)
        yb = _labels(y, len(x))
        n, d = x.shape
        self.classes_ = np.array(CLASSES)
        self.n_features_in_ = d
        x1 = np.hstack([_clip_l2(x, float(self.data_norm)), np.ones((n, 1))])
        norm = math.sqrt(float(self.data_norm) ** 2 + 1.0)
        random_state = check_random_state(self.random_state)
        if n:
            coefs, _, n_iter = _logistic_regression_path(
                x1, yb, epsilon=self.epsilon, data_norm=norm, pos_class=1, Cs=[self.C], fit_intercept=False,
                max_iter=self.max_iter, tol=self.tol, verbose=0, coef=None, random_state=random_state,
                check_input=False,
            )  # fmt: skip
            w, iterations = coefs[0], int(n_iter[0])
        else:
            w, iterations = self._fit_no_rows(d + 1, norm, random_state)
        self.coef_ = np.asarray(w[:-1], dtype=np.float64).reshape(1, d)
        self.intercept_ = np.asarray(w[-1:], dtype=np.float64)
        self.n_iter_ = np.array([iterations], dtype=np.int32)
        return self

    def _fit_no_rows(self, dimension: int, norm: float, random_state: Any) -> tuple[np.ndarray, int]:
        """The minimiser of |w|² / (2C) + b·w + (Δ/2)|w|²: diffprivlib's `Vector` at n = 1 adds exactly
        b·w + (Δ/2)|w|² (its n only divides them, and Δ·n is fixed), to the regulariser alone."""
        from diffprivlib.mechanisms import Vector
        from scipy import optimize

        c = float(self.C)
        vector = Vector(
            epsilon=self.epsilon, dimension=dimension, alpha=1.0 / c, function_sensitivity=0.25,
            data_sensitivity=norm, n=1, random_state=random_state,
        )  # fmt: skip

        def regulariser(w: np.ndarray) -> tuple[float, np.ndarray]:
            return 0.5 * float(w @ w) / c, w / c

        objective = vector.randomise(regulariser)
        w, _, info = optimize.fmin_l_bfgs_b(
            objective, np.zeros(dimension), fprime=None, factr=64, pgtol=self.tol, maxiter=self.max_iter
        )
        return np.asarray(w), int(info["nit"])


class PublicGaussianNB(_GaussianNB):
    """Gaussian naive Bayes from noisy statistics of every public class; ε-DP under add/remove one row.

    For each class c of `classes` (public), three releases of ε/3 each: the row counts n_c (one vector,
    L1 sensitivity 1: a row is in one class), the per-feature sums S_c and the sums of squares Q_c (one
    vector each over all classes and features, L1 sensitivity `l1_bound`: a row moves only its class's
    block, by its entries, each in [0, 1], and x² <= x there). Rows are clipped to [0, 1] and to L1 norm
    `l1_bound` first. Then, as post-processing with one pseudo-row at the centre of [0, 1] per class (a
    public prior: no class is ever left without an estimate, nor given prior 0):

        m_c = max(n_c, 0) + 1,  mean = clip((S_c + 1/2) / m_c, 0, 1),
        var = clip((Q_c + 1/3) / m_c - mean², VAR_FLOOR, 1/4),  prior_c = m_c / sum_c m_c.

    Noise: `mechanisms.LaplaceCount` and `mechanisms.LaplaceFloat` (OpenDP).
    """

    VAR_FLOOR = 1e-3

    def __init__(self, *, epsilon: float = 1.0, l1_bound: float = 1.0, classes: tuple[int, ...] = CLASSES) -> None:
        self.epsilon = epsilon
        self.l1_bound = l1_bound
        self.classes = classes
        self.priors = None
        self.var_smoothing = 0.0

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> PublicGaussianNB:
        from mechanisms import LaplaceCount, LaplaceFloat

        x = np.clip(_rows(X), 0.0, 1.0)
        bound = float(self.l1_bound)
        l1 = x.sum(axis=1) if len(x) else np.zeros(0)
        x = x * np.minimum(1.0, bound / np.maximum(l1, 1e-300))[:, None]
        yb = _labels(y, len(x))
        classes = np.asarray(self.classes, dtype=np.int64)
        k, d = len(classes), x.shape[1]
        member = yb[None, :] == classes[:, None]  # (k, n)
        counts = member.sum(axis=1)
        sums = member.astype(np.float64) @ x
        squares = member.astype(np.float64) @ (x * x)
        third = Fraction(self.epsilon) / 3
        n = np.asarray(LaplaceCount(epsilon=third, sensitivity=1).release([int(c) for c in counts]), np.float64)
        mech = LaplaceFloat(epsilon=third, sensitivity=bound)
        s = np.asarray(mech.release(sums.ravel().tolist()), np.float64).reshape(k, d)
        q = np.asarray(mech.release(squares.ravel().tolist()), np.float64).reshape(k, d)
        m = np.maximum(n, 0.0) + 1.0
        mean = np.clip((s + 0.5) / m[:, None], 0.0, 1.0)
        var = np.clip((q + 1.0 / 3.0) / m[:, None] - mean**2, self.VAR_FLOOR, 0.25)
        self.classes_ = classes
        self.n_features_in_ = d
        self.theta_, self.var_ = mean, var
        self.class_count_ = m
        self.class_prior_ = m / m.sum()
        self.epsilon_ = 0.0
        return self


class PublicRandomForest(_DPRandomForest):
    """diffprivlib's random forest on the public classes; with no rows, every tree is fitted on none.

    diffprivlib splits the rows among the trees and fits each on its part, which may be empty (then every
    leaf gets a uniformly random class, as permute-and-flip over all-zero counts would give it). With no
    rows at all, its input check refuses; here every tree is then fitted on its (empty) part as it would
    be inside diffprivlib's `fit`.
    """

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> PublicRandomForest:
        from diffprivlib.utils import check_random_state

        x = _rows(X)
        yb = _labels(y, len(x))
        self.classes = list(CLASSES)
        if len(x):
            super().fit(x, yb)
            return self
        random_state = check_random_state(self.random_state)
        self._validate_estimator()
        trees = [self._make_estimator(append=False, random_state=random_state) for _ in range(self.n_estimators)]
        for tree in trees:
            tree.fit(x, yb.astype(np.float64), check_input=False)
        self.estimators_ = trees
        self.classes_ = np.array(CLASSES)
        self.n_classes_ = len(CLASSES)
        self.n_outputs_ = 1
        self.n_features_in_ = x.shape[1]
        return self


@dataclass(frozen=True)
class ClassicMethod:
    name: str
    title: str
    params: Mapping[str, tuple[type, Any, float, float]]  # name -> (type, default, min, max)
    build: Callable[[float, FeatureSpec, dict[str, Any]], Any]
    diffprivlib_noise: bool = True  # its noise is numpy's, in floating point (a caveat on its card)


def _logreg(epsilon: float, spec: FeatureSpec, p: dict[str, Any]) -> Any:
    from diffprivlib.accountant import BudgetAccountant

    return PublicLogisticRegression(
        epsilon=epsilon, data_norm=spec.max_norm, C=p["C"], max_iter=p["max_iter"], accountant=BudgetAccountant()
    )


def _naive_bayes(epsilon: float, spec: FeatureSpec, p: dict[str, Any]) -> Any:
    return PublicGaussianNB(epsilon=epsilon, l1_bound=spec.max_l1, classes=CLASSES)


def _random_forest(epsilon: float, spec: FeatureSpec, p: dict[str, Any]) -> Any:
    from diffprivlib.accountant import BudgetAccountant

    d = spec.width
    return PublicRandomForest(
        n_estimators=p["n_estimators"],
        epsilon=epsilon,
        bounds=(np.zeros(d), np.ones(d)),
        classes=list(CLASSES),
        max_depth=p["max_depth"],
        accountant=BudgetAccountant(),
    )


_ROWS = {"rows_per_unit": (int, 1, 1, 10_000)}

CLASSIC_METHODS: dict[str, ClassicMethod] = {
    m.name: m
    for m in (
        ClassicMethod(
            "logreg",
            "logistic regression (diffprivlib, objective perturbation)",
            {**_ROWS, "C": (float, 1.0, 1e-4, 1e4), "max_iter": (int, 100, 1, 10_000)},
            _logreg,
        ),
        ClassicMethod(
            "naive_bayes",
            "Gaussian naive Bayes (noisy per-class counts, sums and squares; OpenDP)",
            dict(_ROWS),
            _naive_bayes,
            diffprivlib_noise=False,
        ),
        ClassicMethod(
            "random_forest",
            "random forest (diffprivlib)",
            {**_ROWS, "n_estimators": (int, 10, 1, 500), "max_depth": (int, 5, 1, 15)},
            _random_forest,
        ),
    )
}


def fit_classic(
    method: str, *, epsilon: float, spec: FeatureSpec, params: dict[str, Any], x: np.ndarray, y: np.ndarray
) -> Any:
    """Fit the model of `method` at row-level `epsilon` on encoded rows, over the public classes.

    Any training part fits, an empty one included: whether the fit runs, and what it returns, never
    depends on the rows (see the module docstring)."""
    model = CLASSIC_METHODS[method].build(epsilon, spec, params)
    model.fit(x.astype(np.float64), y.astype(np.int64))
    return model


def positive_proba(model: Any, x: np.ndarray) -> np.ndarray:
    """P(label = 1) per row (none for no rows).

    Every model fitted here has the public classes (0, 1). A model stored before classes were public may
    lack class 1 (diffprivlib read its classes from the rows): it keeps answering 0, as it always did."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.float64)
    proba = model.predict_proba(x.astype(np.float64))
    classes = list(getattr(model, "classes_", CLASSES))
    if 1 not in classes:  # legacy models only
        return np.zeros(len(x))
    return np.asarray(proba[:, classes.index(1)], dtype=np.float64)
