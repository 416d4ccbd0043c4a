"""Membership-inference audits of registered models, inside the gateway (administrators only).

The audit re-reads the model's private table exactly as its job did (bounded rows, the keyed split by
unit), so the model's members are its training rows and its non-members are held-out rows it never saw.
The held-out units are split again by a keyed hash into two halves: one half are the non-members the
attack is scored on, the other half is the population the reference (shadow) models are trained on.
Reference models follow the target's recipe without noise (the same architecture and optimiser
settings): a calibrated attack against a DP model with non-private references is at least as strong
as the DP-trained references would make it, since the references only set the per-example baseline.

Nothing here leaves the gateway but aggregate attack statistics and plots of score distributions; the
result and the PNGs are stored beside the model (``<models>/<id>/audit/``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .features import FeatureSpec
from .jobs import JobSpec
from .models import fit_cnn, fit_logreg, fit_mlp, two_columns
from .registry import ModelRegistry
from .runner import bounded
from .split import SplitKey

__all__ = ["MAX_ROWS", "audit_model"]

MAX_ROWS = 5_000  # members and non-members scored, each (a seeded sample beyond that)


def _sample(idx: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return idx if len(idx) <= cap else np.sort(rng.choice(idx, size=cap, replace=False))


def audit_model(
    *,
    model_id: str,
    job: JobSpec,
    plan: dict[str, Any],
    card: dict[str, Any],
    registry: ModelRegistry,
    read: Callable[[list[str] | None], pd.DataFrame],
    key: SplitKey,
    n_reference: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the audit of one model; returns the JSON result (also written to its audit directory)."""
    from .audit import AuditData, run_audit

    spec = FeatureSpec.from_json(plan["features"])
    unit, k = plan["unit"], int(plan["k"])
    columns = list(dict.fromkeys(([unit] if unit else []) + spec.source_columns + [job.label]))
    frame = read(None if unit is None else columns)
    if unit is not None:
        frame = bounded(frame, unit, k, key)
    y, known = spec.label.codes(frame[job.label])
    frame = frame.loc[known].reset_index(drop=True)
    y = y[known]
    held = key.held_out(frame, unit, fraction=job.params["test_fraction"])
    x = spec.encode(frame)
    half = (key.unit_hash(frame, unit, salt="audit") % 2).astype(bool)
    rng = np.random.default_rng(seed)
    members = _sample(np.flatnonzero(~held), MAX_ROWS, rng)
    nonmembers = _sample(np.flatnonzero(held & ~half), MAX_ROWS, rng)
    population = np.flatnonzero(held & half)
    loaded = registry.load(model_id)
    data = AuditData(
        x_members=x[members], y_members=y[members], x_nonmembers=x[nonmembers], y_nonmembers=y[nonmembers],
        x_population=x[population], y_population=y[population],
    )  # fmt: skip
    privacy = card.get("privacy") or {}
    where = registry.path(model_id) / "audit"
    where.mkdir(parents=True, exist_ok=True)
    result = run_audit(
        lambda z: two_columns(loaded.proba(z)), data,
        train_reference=_reference_recipe(card, job, spec.label.n_classes) if n_reference > 0 else None,
        epsilon=privacy.get("epsilon"), delta=privacy.get("delta"), n_reference=max(2, n_reference), seed=seed,
        plots_dir=where, title=f"{job.method} {job.dataset}.{job.table}",
    )  # fmt: skip
    result = {"model_id": model_id, "method": job.method, "dataset": job.dataset, "table": job.table, **result}
    (where / "audit.json").write_text(json.dumps(result, indent=2, default=float))
    return result


def _reference_recipe(card: dict[str, Any], job: JobSpec, n_classes: int) -> Callable[..., Callable[[np.ndarray], np.ndarray]]:
    """(x, y, seed) -> predict_proba of a reference model trained like the target, without noise."""
    t = card.get("training") or {}
    p = job.params
    epochs, lr, batch = p.get("epochs", 10.0), p.get("lr", 0.01), p.get("batch_size", 64)

    def fit(xs: np.ndarray, ys: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        common = {"epochs": epochs, "lr": lr, "batch_size": batch, "seed": seed}
        if t.get("architecture") == "gaf_cnn":
            return fit_cnn(xs, ys, image=t["image"], n_classes=n_classes, **common)[1]
        if "hidden" in t:
            return fit_mlp(xs, ys, hidden=t["hidden"], **common)[1]
        return fit_logreg(xs, ys, n_classes=n_classes, seed=seed, balanced=False)

    return fit


def stored_plot(registry: ModelRegistry, model_id: str, name: str) -> Path | None:
    """The path of a stored audit plot (``roc`` or ``violin``), or None."""
    if name not in ("roc", "violin"):
        return None
    path = registry.path(model_id) / "audit" / f"{name}.png"
    return path if path.exists() else None
