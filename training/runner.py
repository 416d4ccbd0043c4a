"""Running a charged job: read its rows, bound them, split by unit, encode, train, score, measure.

Nothing here decides what a job costs: the plan fixed at start (and charged) is all it uses. The rows
come from `read_table` (the bounded relation); `bounded` keeps at most k rows per unit again should a
reader not have bounded them. Rows whose label is NULL are dropped (a stable, per-row filter). The split
is by keyed hash of the unit (`split`), so every held-out unit is unseen in training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from mechanisms.cost import Cost

from . import store as st
from .classic import CLASSIC_METHODS, fit_classic, positive_proba
from .features import FeatureSpec
from .jobs import JobSpec, float_down
from .metrics import dp_metrics, exact_metrics, multiclass_dp_metrics
from .split import SplitKey, group_units, keep_rows_per_unit, per_unit_and_class

__all__ = ["Outcome", "Progress", "Stop", "bounded", "grad_sample_mode", "run"]


class Stop(Exception):
    """The job was cancelled, or the service is stopping."""


class Progress:
    """Throttled progress writes (at most every half second; always from 0.95 on)."""

    def __init__(self, store: st.JobStore, job_id: str) -> None:
        self.store, self.job_id = store, job_id
        self._last = 0.0

    def set(self, value: float) -> None:
        now = time.monotonic()
        if now - self._last < 0.5 and value < 0.95:
            return
        self._last = now
        self.store.update_job(self.job_id, only_if_status=(st.RUNNING,), progress=round(min(1.0, value), 4))


@dataclass(frozen=True)
class Outcome:
    model: Any
    kind: str  # "torch" | "joblib"
    training: dict[str, Any]
    metrics: dict[str, Any] | None  # the DP metrics (None for non-private models)
    exact: dict[str, Any]


def run(
    job: JobSpec,
    plan: dict[str, Any],
    *,
    read: Callable[[list[str] | None], pd.DataFrame],
    key: SplitKey,
    progress: Progress,
    stopped: Callable[[], bool],
    read_public: Callable[[list[str]], pd.DataFrame] | None = None,
    charged: Cost | None = None,
) -> Outcome:
    """Train the job's model and measure it on the held-out units; raises Stop when cancelled."""
    spec = FeatureSpec.from_json(plan["features"])
    if spec.label.multiclass or plan.get("image") is not None or job.method == "pate":
        return _run_models(job, plan, spec, read=read, key=key, progress=progress, stopped=stopped,
                           read_public=read_public, charged=charged)  # fmt: skip
    unit, k = plan["unit"], int(plan["k"])
    p = job.params
    columns = list(dict.fromkeys(([unit] if unit else []) + spec.source_columns + [job.label]))
    frame = read(None if unit is None else columns)  # row-level: all columns (a row's identity)
    if unit is not None:
        frame = bounded(frame, unit, k, key)
    y, known = spec.label.positives(frame[job.label])
    frame = frame.loc[known].reset_index(drop=True)
    y = y[known]
    held = key.held_out(frame, unit, fraction=p["test_fraction"])
    x = spec.encode(frame)
    progress.set(0.05)
    if stopped():
        raise Stop()
    if job.method in ("dpsgd", "nonprivate"):
        model, kind, training = _train_mlp(job, plan, frame, x, y, ~held, unit, k, progress, stopped)
        scores = model.predict_proba(x[held])
    else:
        model, kind, training = _train_classic(job, plan, spec, frame, x, y, ~held, unit, k, key)
        scores = positive_proba(model, x[held])
    if stopped():
        raise Stop()
    progress.set(0.95)
    exact = exact_metrics(scores, y[held])
    metrics = None
    if job.method != "nonprivate":
        m = plan["metrics"]
        # at most r positive and r negative held-out rows per unit: sensitivity min(k, 2r), not k
        capped = per_unit_and_class(frame.loc[held].reset_index(drop=True), unit, y[held], m["rows_per_unit"], key)
        metrics = dp_metrics(scores[capped], y[held][capped], epsilon=Fraction(m["epsilon"]), k=m["sensitivity"])
        metrics["rows_per_unit"] = m["rows_per_unit"]
    return Outcome(model, kind, training, metrics, exact)


def _run_models(
    job: JobSpec, plan: dict[str, Any], spec: FeatureSpec, *, read: Callable[[list[str] | None], pd.DataFrame],
    key: SplitKey, progress: Progress, stopped: Callable[[], bool],
    read_public: Callable[[list[str]], pd.DataFrame] | None, charged: Cost | None,
) -> Outcome:  # fmt: skip
    """The CNN on image tables, multi-class labels, PATE (`training.models`)."""
    from . import models
    from .dpsgd import Cancelled

    unit, k, p = plan["unit"], int(plan["k"]), job.params
    columns = list(dict.fromkeys(([unit] if unit else []) + spec.source_columns + [job.label]))
    frame = read(None if unit is None else columns)
    if unit is not None:
        frame = bounded(frame, unit, k, key)
    y, known = spec.label.codes(frame[job.label])
    frame = frame.loc[known].reset_index(drop=True)
    y = y[known]
    held = key.held_out(frame, unit, fraction=p["test_fraction"])
    x = spec.encode(frame)
    image = plan.get("image")
    progress.set(0.05)
    if stopped():
        raise Stop()
    # the public table, read once: PATE's student rows and/or the labelled rows pre-training reads
    pretraining = image is not None and job.public_table is not None and p.get("pretrain_epochs", 0) > 0
    public = None
    if job.method == "pate" or pretraining:
        if read_public is None:  # pragma: no cover - the service always passes it with a public table
            raise AssertionError("the job needs its public table")
        public = read_public(list(dict.fromkeys([*spec.source_columns, *([job.label] if pretraining else [])])))
    pretrain = models.public_labelled(public, spec, job.label) if pretraining else None
    try:
        if job.method == "pate":
            if public is None or charged is None:  # pragma: no cover - the service always passes both
                raise AssertionError("PATE needs the public table and the job's charge")
            x_public = models.public_rows(public, spec)
            units = frame[unit].to_numpy() if unit is not None else np.arange(len(frame))
            model, training = models.run_pate(
                job, plan, spec, x, y, units, ~held, x_public, key.value, charged=charged,
                on_progress=lambda f: progress.set(0.05 + 0.85 * f), stopped=stopped, pretrain=pretrain,
            )  # fmt: skip
        else:
            model, training = models.run_cnn(
                job, plan, x, y, ~held, on_step=lambda done, total: progress.set(0.05 + 0.85 * done / total),
                stopped=stopped, pretrain=pretrain,
            )  # fmt: skip
    except Cancelled:
        raise Stop() from None
    if image is not None:
        proba = models.cnn_proba(model, image)(x[held])
    else:  # the tabular PATE student: a binary MLP
        s1 = model.predict_proba(x[held])
        proba = np.stack([1 - s1, s1], axis=1)
    progress.set(0.95)
    m = plan.get("metrics")
    if spec.label.multiclass:
        exact = models.multiclass_exact_metrics(proba, y[held])
        metrics = None
        if job.method != "nonprivate":
            metrics = multiclass_dp_metrics(proba, np.asarray(y[held], dtype=np.int64), epsilon=Fraction(m["epsilon"]),
                                            k=m["sensitivity"], n_classes=spec.label.n_classes)  # fmt: skip
    else:
        scores = proba[:, 1]
        exact = exact_metrics(scores, y[held].astype(np.float32))
        metrics = None
        if job.method != "nonprivate":
            yf = y[held].astype(np.float32)
            capped = per_unit_and_class(frame.loc[held].reset_index(drop=True), unit, yf, m["rows_per_unit"], key)
            metrics = dp_metrics(scores[capped], yf[capped], epsilon=Fraction(m["epsilon"]), k=m["sensitivity"])
            metrics["rows_per_unit"] = m["rows_per_unit"]
    return Outcome(model, "torch", training, metrics, exact)


def grad_sample_mode(requested: str, *, k: int) -> str:
    """The per-sample-gradient mode: the job's choice, or the fastest measured for this shape.

    Measured on a 2-core CPU at ~890k rows (per epoch, DP over non-private): one row per sample, ghost
    3.4x / 2.6x / 2.1x at batch 256 / 1,024 / 4,096 against hooks 3.3x / 4.8x / 7.8x and functorch
    6.2x-8.7x; units of up to 300 rows, hooks 1.2x-1.6x against ghost 1.4x-2.6x (a unit's gradient
    norm costs about its per-sample gradient, and ghost adds a second backward pass).
    """
    if requested != "auto":
        return requested
    return "ghost" if k == 1 else "hooks"


def bounded(frame: pd.DataFrame, unit: str, k: int, key: SplitKey) -> pd.DataFrame:
    """At most k rows per unit. `read_table` hands over the bounded relation already, so this is a no-op
    unless it did not; the guarantee then still holds (a keyed, stable choice of k rows per unit)."""
    if frame.empty or int(frame[unit].value_counts().max()) <= k:
        return frame
    return keep_rows_per_unit(frame, unit, k, key, list(frame.columns))


def _train_mlp(
    job: JobSpec, plan: dict[str, Any], frame: pd.DataFrame, x: np.ndarray, y: np.ndarray,
    train: np.ndarray, unit: str | None, k: int, progress: Progress, stopped: Callable[[], bool],
) -> tuple[Any, str, dict[str, Any]]:  # fmt: skip
    from .dpsgd import Cancelled, DPSGDPlan, train_mlp
    from .nets import MLP, UnitBatches

    p = job.params
    x_tr, y_tr = x[train], y[train]
    units = frame[unit].to_numpy()[train] if unit is not None else np.arange(len(x_tr))
    order, starts, lengths = group_units(units)
    # an empty training part still trains: every DP-SGD step is then noise only, as the plan says (the
    # plan, charged at start, never depends on whether the part is empty)
    data = UnitBatches(x_tr[order], y_tr[order], starts, lengths, per_unit=k > 1)
    model = MLP(int(x.shape[1]), p["hidden"])
    if job.method == "dpsgd":
        m = plan["model"]
        dp_plan: DPSGDPlan | None = DPSGDPlan(**{f: m[f] for f in DPSGDPlan.__dataclass_fields__})
        steps = m["steps"]
        mode: str | None = grad_sample_mode(p["grad_sample_mode"], k=k)
    else:
        dp_plan, mode = None, None
        steps = max(1, math.ceil(p["epochs"] * len(starts) / p["batch_size"]))

    def on_step(done: int) -> None:
        progress.set(0.05 + 0.85 * done / steps)

    try:
        ran = train_mlp(
            model, data, steps=steps, lr=p["lr"], batch_size=p["batch_size"], plan=dp_plan,
            grad_sample_mode=mode or "hooks", on_step=on_step, should_stop=stopped,
        )  # fmt: skip
    except Cancelled:
        raise Stop() from None
    training = {
        "optimizer": "adam",
        "lr": p["lr"],
        "hidden": p["hidden"],
        "batch_size": p["batch_size"],
        "epochs": p["epochs"],
        "steps": ran,
        "grad_sample_mode": mode,
        "samples": "units" if k > 1 else ("rows" if unit is None else "units (one row each)"),
    }
    return model, "torch", training


def _train_classic(
    job: JobSpec, plan: dict[str, Any], spec: FeatureSpec, frame: pd.DataFrame, x: np.ndarray,
    y: np.ndarray, train: np.ndarray, unit: str | None, k: int, key: SplitKey,
) -> tuple[Any, str, dict[str, Any]]:  # fmt: skip
    m = plan["model"]
    r = int(m["rows_per_unit"])
    x_tr, y_tr = x[train], y[train]
    if unit is not None and k > r:
        part = frame.loc[train].reset_index(drop=True)
        part["__row"] = np.arange(len(part))
        kept = keep_rows_per_unit(part, unit, r, key, [c for c in part.columns if c != "__row"])
        rows = kept["__row"].to_numpy()
        x_tr, y_tr = x_tr[rows], y_tr[rows]
    model = fit_classic(
        job.method, epsilon=float_down(Fraction(m["row_epsilon"])), spec=spec, params=job.params, x=x_tr, y=y_tr
    )
    training = {
        "estimator": CLASSIC_METHODS[job.method].title,
        "rows_per_unit": r,
        **{name: job.params[name] for name in CLASSIC_METHODS[job.method].params if name != "rows_per_unit"},
    }
    return model, "joblib", training
