"""Classic private models from diffprivlib: logistic regression, Gaussian naive Bayes, random forest.

Guarantee. Each is ε-DP (pure) under add/remove-one-*row* neighbours given public bounds on the data,
which the feature encoding provides: rows lie in [0, 1]^d (`bounds`) with L2 norm at most
`FeatureSpec.max_norm` (`data_norm`). Sources: Chaudhuri et al. 2011 (objective perturbation, logistic
regression), Vaidya et al. 2013 (naive Bayes), Fletcher & Islam 2017 (random forest), as implemented in
diffprivlib 0.6.

User level. These models bound a row, not a unit. A job keeps at most r = ``params.rows_per_unit``
(default 1) rows per unit — chosen by a keyed hash of the row (a stable transformation) — and trains at
ε_model / r: by group privacy a unit's r rows cost r·(ε_model / r) = ε_model. With k = 1 nothing changes.

Caveat (on every card): diffprivlib draws noise with numpy's generator in floating point; it is not
protected against floating-point attacks (Mironov 2012) the way OpenDP's samplers are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidJob
from .features import FeatureSpec

__all__ = ["CLASSIC_METHODS", "ClassicMethod", "fit_classic", "positive_proba"]


@dataclass(frozen=True)
class ClassicMethod:
    name: str
    title: str
    params: Mapping[str, tuple[type, Any, float, float]]  # name -> (type, default, min, max)
    build: Callable[[float, FeatureSpec, dict[str, Any]], Any]


def _logreg(epsilon: float, spec: FeatureSpec, p: dict[str, Any]) -> Any:
    from diffprivlib.accountant import BudgetAccountant
    from diffprivlib.models import LogisticRegression

    return LogisticRegression(
        epsilon=epsilon, data_norm=spec.max_norm, C=p["C"], max_iter=p["max_iter"], accountant=BudgetAccountant()
    )


def _naive_bayes(epsilon: float, spec: FeatureSpec, p: dict[str, Any]) -> Any:
    from diffprivlib.accountant import BudgetAccountant
    from diffprivlib.models import GaussianNB

    d = spec.width
    return GaussianNB(epsilon=epsilon, bounds=(np.zeros(d), np.ones(d)), accountant=BudgetAccountant())


def _random_forest(epsilon: float, spec: FeatureSpec, p: dict[str, Any]) -> Any:
    from diffprivlib.accountant import BudgetAccountant
    from diffprivlib.models import RandomForestClassifier

    d = spec.width
    return RandomForestClassifier(
        n_estimators=p["n_estimators"],
        epsilon=epsilon,
        bounds=(np.zeros(d), np.ones(d)),
        classes=[0, 1],
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
        ClassicMethod("naive_bayes", "Gaussian naive Bayes (diffprivlib)", dict(_ROWS), _naive_bayes),
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
    """Fit the diffprivlib model of `method` at row-level `epsilon` on encoded rows."""
    if len(x) == 0:
        raise InvalidJob("the training part of the table is empty", field="table")
    model = CLASSIC_METHODS[method].build(epsilon, spec, params)
    model.fit(x.astype(np.float64), y.astype(np.int64))
    return model


def positive_proba(model: Any, x: np.ndarray) -> np.ndarray:
    """P(label = 1) per row; 0 where the model never saw a positive (a one-class fit)."""
    proba = model.predict_proba(x.astype(np.float64))
    classes = list(getattr(model, "classes_", [0, 1]))
    if 1 not in classes:
        return np.zeros(len(x))
    return np.asarray(proba[:, classes.index(1)], dtype=np.float64)
