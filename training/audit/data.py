"""What an audit reads: the target's members and non-members, a population for reference models, and checks.

A membership-inference audit compares a trained model's behaviour on the rows it was trained on (members)
with rows from the same distribution that it never saw (non-members). Reference ("shadow") models are
trained only on a third, disjoint set: the population. Nothing here looks at a value beyond its shape, its
class index and the probabilities the models return; error messages name fields and counts, never values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidJob

__all__ = [
    "MIN_ROWS",
    "PROBA_ATOL",
    "AuditData",
    "InvalidAuditInput",
    "Proba",
    "TrainFn",
    "check_proba",
    "validate_data",
]

#: Fewest members (and fewest non-members) an audit accepts: below this every rate is noise.
MIN_ROWS = 10
#: How far a row of probabilities may sum from 1 (float32 softmax drifts by ~1e-6; this is generous).
PROBA_ATOL = 1e-3

#: ``predict_proba``: rows of shape (n, ...) to class probabilities of shape (n, C), C >= 2.
Proba = Callable[[np.ndarray], np.ndarray]
#: ``(x, y, seed) -> predict_proba`` of a freshly trained reference model (the target's recipe).
TrainFn = Callable[[np.ndarray, np.ndarray, int], Proba]


class InvalidAuditInput(InvalidJob):
    """Audit inputs the library refuses: mismatched lengths, bad labels or probabilities, too few rows.

    A `ValueError` (through `InvalidJob`), so the HTTP edge maps it to 400 `invalid_request`. `field` names
    the offending input (``"y_members"``, ``"target(x_nonmembers)"``, ``"n_reference"``).
    """


@dataclass(frozen=True)
class AuditData:
    """The three disjoint sets of an audit (features already encoded; any row shape ``(n, ...)``).

    `x_members`/`y_members` trained the target; `x_nonmembers`/`y_nonmembers` come from the same
    distribution and were never seen by it; `x_population`/`y_population` are further held-out rows used
    only to train reference models (they may be empty when no calibrated attack runs). Labels are class
    indices ``0..C-1`` (binary tasks: 0/1).
    """

    x_members: np.ndarray
    y_members: np.ndarray
    x_nonmembers: np.ndarray
    y_nonmembers: np.ndarray
    x_population: np.ndarray
    y_population: np.ndarray


def _labels(y: object, field: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InvalidAuditInput(f"{field} must be one-dimensional (one class index per row)", field=field)
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.int64)
    elif arr.size == 0:
        return arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        out = arr.astype(np.int64)
    else:
        raise InvalidAuditInput(f"{field} must hold integer class indices", field=field)
    if out.size and out.min() < 0:
        raise InvalidAuditInput(f"{field} holds a negative class index", field=field)
    return out


def _rows(x: object, field: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim < 1:
        raise InvalidAuditInput(f"{field} must have one row per example (shape (n, ...))", field=field)
    return arr


def validate_data(data: AuditData, *, need_population: bool) -> AuditData:
    """`data` with arrays made numpy and labels int64, or `InvalidAuditInput`.

    Checks: each x has as many rows as its y; members and non-members have at least `MIN_ROWS` rows each
    and the same row shape; with `need_population` (a calibrated attack will train reference models) the
    population has at least `MIN_ROWS` rows and the same row shape too.
    """
    parts = {}
    for name in ("members", "nonmembers", "population"):
        x = _rows(getattr(data, f"x_{name}"), f"x_{name}")
        y = _labels(getattr(data, f"y_{name}"), f"y_{name}")
        if len(x) != len(y):
            raise InvalidAuditInput(
                f"x_{name} has {len(x)} rows but y_{name} has {len(y)}", field=f"y_{name}"
            )
        parts[name] = (x, y)
    for name in ("members", "nonmembers") + (("population",) if need_population else ()):
        n = len(parts[name][1])
        if n < MIN_ROWS:
            raise InvalidAuditInput(f"an audit needs at least {MIN_ROWS} {name} rows, got {n}", field=f"x_{name}")
    shape = parts["members"][0].shape[1:]
    for name in ("nonmembers",) + (("population",) if need_population else ()):
        if parts[name][0].shape[1:] != shape:
            raise InvalidAuditInput(
                f"x_{name} rows have shape {parts[name][0].shape[1:]}, x_members rows {shape}", field=f"x_{name}"
            )
    return AuditData(
        x_members=parts["members"][0],
        y_members=parts["members"][1],
        x_nonmembers=parts["nonmembers"][0],
        y_nonmembers=parts["nonmembers"][1],
        x_population=parts["population"][0],
        y_population=parts["population"][1],
    )


def check_proba(proba: object, y: np.ndarray, field: str, *, n_classes: int | None = None) -> np.ndarray:
    """`proba` as float64 of shape ``(len(y), C)``, or `InvalidAuditInput`.

    Every entry finite and in [0, 1] (within `PROBA_ATOL`), every row summing to 1 within `PROBA_ATOL`,
    C >= 2, C equal to `n_classes` when given, and every label of `y` below C.
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != len(y):
        raise InvalidAuditInput(
            f"{field} must return probabilities of shape ({len(y)}, C), got shape {p.shape}", field=field
        )
    if p.shape[1] < 2:
        raise InvalidAuditInput(f"{field} must return at least 2 class probabilities per row", field=field)
    if n_classes is not None and p.shape[1] != n_classes:
        raise InvalidAuditInput(f"{field} returns {p.shape[1]} classes, the target {n_classes}", field=field)
    if not np.all(np.isfinite(p)):
        raise InvalidAuditInput(f"{field} returned a non-finite probability", field=field)
    if p.min() < -PROBA_ATOL or p.max() > 1 + PROBA_ATOL:
        raise InvalidAuditInput(f"{field} returned a probability outside [0, 1]", field=field)
    bad = np.flatnonzero(np.abs(p.sum(axis=1) - 1.0) > PROBA_ATOL)
    if bad.size:
        raise InvalidAuditInput(
            f"{field}: {bad.size} rows of probabilities do not sum to 1 (first: row {int(bad[0])})",
            field=field,
            row=int(bad[0]),
        )
    if y.size and y.max() >= p.shape[1]:
        raise InvalidAuditInput(f"a label is not below the model's {p.shape[1]} classes", field=field)
    return np.clip(p, 0.0, 1.0)
