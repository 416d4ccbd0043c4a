"""`TrainingService`: the facade the HTTP layer calls for training jobs, model cards and predictions.

What a job costs, and when it is charged. `start` validates the body against public metadata (a refusal
costs nothing), checks that the analyst's and the dataset's remaining budgets cover the *requested*
(ε, δ) — a data-independent refusal — then plans the job and charges its full cost to the ledger (kind
``training``, detail ``{job_id, method}``) before it is queued. Nothing leaves the service before that
charge commits; training starts only after it. The cost is the sum (sequential composition) of:

* the **model** part: for DP-SGD the accountant's ε for the planned steps at the chosen noise
  multiplier (at most its target) and the job's δ; for diffprivlib models their pure ε;
* the **metrics** part: ``metrics_share`` (default 10%) of ε, for the noisy score histograms from which
  the reported accuracy and AUC are computed (`metrics`);
* for DP-SGD, the **size** part: ``size_share`` (default 1%) of ε, for a noisy count of the training
  units (Laplace, sensitivity 1) that sets the sampling rate q = batch_size / count. Using the exact
  count would put it in the model card (q) and in σ; the noisy one may be shown. It is drawn inside
  `start`, before the charge, and used only once the charge has committed.

The total never exceeds the requested (ε, δ). The split into training and held-out units is disjoint,
so parallel composition would allow charging max(model, metrics) instead of their sum; we charge the sum.

Jobs run on a thread pool (`workers`, default 1) and are recorded in `store.JobStore` in the database at
`db_url`; a restart marks jobs it finds queued or running as failed, and their charges stay. Cancelling
sets a flag the training loop checks every step; the charge stays. Models go to `registry`.

Ownership: an analyst sees only its own jobs and models; another's reads as `NotFound`, so ids never
leak. Administrators (``is_admin``) see every job and model, and the exact metrics.

Layering: this package imports `mechanisms` and `budget`, never the gateway; the gateway passes the
catalog as plain dicts (`datasets`) and the bounded private rows (`read_table`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from budget import BudgetExhausted, Ledger
from mechanisms import Cost, LaplaceCount

from . import store as st
from .classic import CLASSIC_METHODS, fit_classic, positive_proba
from .errors import Forbidden, InvalidJob, JobFailed, NotFound, TrainingError, UnknownDataset
from .features import FeatureSpec, build_spec
from .jobs import JobSpec, parse_job
from .metrics import dp_metrics, exact_metrics
from .registry import ModelRegistry
from .split import SplitKey, group_units, keep_rows_per_unit

__all__ = ["TrainingService"]

log = logging.getLogger(__name__)

ReadTable = Callable[[str, str, list[str]], pd.DataFrame]
_UNIT_DECIMALS = 10**12  # the ledger's ε unit: charges are multiples of 1e-12

SECURE_MODE_CAVEAT = (
    "Opacus secure_mode is off: DP-SGD noise comes from torch's default generator, which is not a "
    "cryptographically secure RNG, and is Gaussian noise in floating point."
)
DIFFPRIVLIB_CAVEAT = (
    "diffprivlib draws its noise with numpy in floating point: it is not protected against "
    "floating-point attacks (Mironov 2012) the way OpenDP's samplers are."
)


class TrainingService:
    """Start, watch, cancel training jobs; read model cards; predict. See the module docstring."""

    def __init__(
        self,
        *,
        data_dir: Path,
        db_url: str,
        ledger: Ledger,
        datasets: Callable[[str], dict[str, Any]],
        read_table: ReadTable,
        workers: int = 1,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.ledger = ledger
        self._datasets = datasets
        self._read_table = read_table
        self.store = st.JobStore(db_url)
        self.registry = ModelRegistry(self.data_dir / "models")
        self.key = SplitKey(self.data_dir / "training" / "split.key")
        interrupted = self.store.interrupt_active()
        if interrupted:
            log.warning("marked %d training job(s) failed: interrupted by a restart", interrupted)
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(workers)), thread_name_prefix="dpgate-train")
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}
        self._futures: dict[str, Future[None]] = {}
        self._stopping = False

    # -- the facade -------------------------------------------------------------------------------------

    def start(self, analyst: str, body: dict[str, Any], *, is_admin: bool = False) -> dict[str, Any]:
        """Validate, charge and queue a job: ``{job_id, cost: {epsilon, delta}, status}``.

        Raises InvalidJob (``invalid_request``), UnknownDataset, Forbidden (``nonprivate`` for a
        non-administrator), and the ledger's NoAllocation / BudgetExhausted — all before anything runs.
        """
        if self._stopping:
            raise JobFailed("the training service is shutting down")
        job = parse_job(body)
        if job.method == "nonprivate" and not is_admin:
            raise Forbidden("non-private training is for administrators only")
        meta = self._dataset(job.dataset)
        tables = meta.get("tables") or {}
        if job.table not in tables:
            raise InvalidJob(f"dataset {job.dataset!r} has no table {job.table!r}", field="table")
        table = tables[job.table] or {}
        unit, k = _unit_and_k(meta, table)
        spec = build_spec(table, unit=unit, label=job.label, positive=job.positive, features=job.features)
        if job.method != "nonprivate":
            self._check_room(analyst, job)
        job_id = uuid.uuid4().hex
        plan, cost = self._plan(job, spec, unit=unit, k=k)
        entry_id = None
        if cost is not None:
            charge = self.ledger.charge(
                analyst=analyst,
                dataset=job.dataset,
                cost=cost,
                kind="training",
                detail={"job_id": job_id, "method": job.method},
            )
            entry_id = charge.id
        self.store.create_job(
            job_id=job_id,
            analyst=analyst,
            dataset=job.dataset,
            table_name=job.table,
            method=job.method,
            status=st.QUEUED,
            progress=0.0,
            spec=job.to_json(),
            cost_epsilon=None if cost is None else str(cost.epsilon),
            cost_delta=None if cost is None else str(cost.delta),
            plan=plan,
            cancel_requested=False,
            ledger_entry_id=entry_id,
        )
        with self._lock:
            self._cancel[job_id] = threading.Event()
            self._futures[job_id] = self._pool.submit(self._run, job_id)
        return {"job_id": job_id, "cost": _cost_json(cost), "status": st.QUEUED}

    def status(self, analyst: str, job_id: str, *, is_admin: bool = False) -> dict[str, Any]:
        """``{job_id, status, progress, cost, metrics, model_id, error?}`` of the caller's own job."""
        return _status_json(self._own_job(analyst, job_id, is_admin=is_admin), is_admin=is_admin)

    def cancel(self, analyst: str, job_id: str, *, is_admin: bool = False) -> dict[str, Any]:
        """Ask a job to stop (a queued job never starts; a running one stops at its next step). The charge
        stays. A finished job is left as it is. Returns its status."""
        rec = self._own_job(analyst, job_id, is_admin=is_admin)
        if rec["status"] in st.ACTIVE:
            self.store.update_job(job_id, cancel_requested=True)
            with self._lock:
                event = self._cancel.get(job_id)
            if event is not None:
                event.set()
            self.store.update_job(
                job_id, only_if_status=(st.QUEUED,), status=st.CANCELLED, finished_at=self.store.now()
            )
        return self.status(analyst, job_id, is_admin=is_admin)

    def model_card(self, analyst: str, model_id: str, *, is_admin: bool = False) -> dict[str, Any]:
        """The model card; exact metrics only for administrators."""
        self._own_model(analyst, model_id, is_admin=is_admin)
        card = self.registry.card(model_id)
        if not is_admin:
            card.pop("exact_metrics", None)
        return card

    def predict(
        self, analyst: str, model_id: str, rows: list[dict[str, Any]], *, is_admin: bool = False
    ) -> dict[str, Any]:
        """``{"predictions": [{label, probability}]}`` for rows of feature values (by feature name)."""
        self._own_model(analyst, model_id, is_admin=is_admin)
        loaded = self.registry.load(model_id)
        x = loaded.spec.encode_rows(rows)
        p = loaded.proba(x)
        return {
            "predictions": [
                {"label": loaded.spec.label.label_of(bool(v > 0.5)), "probability": float(v)} for v in p
            ]
        }

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job's run has ended (tests, CLI); returns its status (administrator view)."""
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)
        rec = self.store.get_job(job_id)
        if rec is None:
            raise NotFound("no such training job")
        return _status_json(rec, is_admin=True)

    def close(self) -> None:
        """Stop: running jobs stop at their next step and, like queued ones, end failed (interrupted)."""
        self._stopping = True
        with self._lock:
            events = list(self._cancel.values())
        for e in events:
            e.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for job_id in self.store.active_job_ids():
            with self._lock:
                mine = job_id in self._futures
            if mine:
                self.store.update_job(
                    job_id, only_if_status=st.ACTIVE, status=st.FAILED, error=st.INTERRUPTED,
                    finished_at=self.store.now(),
                )  # fmt: skip
        self.store.close()

    def __enter__(self) -> TrainingService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- start-time helpers ----------------------------------------------------------------------------

    def _dataset(self, name: str) -> dict[str, Any]:
        try:
            meta = self._datasets(name)
        except LookupError:
            meta = None
        if not meta:
            raise UnknownDataset(f"unknown dataset {name!r}", dataset=name)
        return meta

    def _check_room(self, analyst: str, job: JobSpec) -> None:
        """Refuse, before any data is read, a job whose cost the budget may not cover: its requested ε,
        and its δ where the method spends δ (DP-SGD; diffprivlib's models are pure ε-DP)."""
        requested = Cost(job.epsilon, job.delta if job.method == "dpsgd" else 0)
        remaining = self.ledger.remaining_cost(analyst, job.dataset)
        for level, left in (("analyst", remaining.analyst), ("dataset", remaining.dataset)):
            if not requested.fits_within(left):
                raise BudgetExhausted(
                    requested=requested, remaining=left, level=level, analyst=analyst, dataset=job.dataset
                )

    def _plan(self, job: JobSpec, spec: FeatureSpec, *, unit: str | None, k: int) -> tuple[dict[str, Any], Cost | None]:
        """The job's privacy plan (stored with it, shown on its card) and its total cost."""
        p = job.params
        plan: dict[str, Any] = {
            "features": spec.to_json(),
            "unit": unit,
            "k": k,
            "requested": {"epsilon": str(job.epsilon), "delta": str(job.delta)},
        }
        if job.method == "nonprivate":
            plan["nonprivate"] = True
            return plan, None
        metrics_eps = job.epsilon * _exact(p["metrics_share"])
        plan["metrics"] = {"epsilon": str(metrics_eps), "share": p["metrics_share"], "sensitivity": k}
        if job.method == "dpsgd":
            from .dpsgd import plan_dpsgd

            size_eps = job.epsilon * _exact(p["size_share"])
            n_train = self._count_training_units(job, unit)
            noisy = LaplaceCount(epsilon=size_eps, sensitivity=1).release([n_train])[0]
            estimate = max(1, int(noisy))
            target = job.epsilon - metrics_eps - size_eps
            dp = plan_dpsgd(
                target_epsilon=_float_down(target),
                delta=float(job.delta),
                units_estimate=estimate,
                batch_size=p["batch_size"],
                epochs=p["epochs"],
                max_grad_norm=p["max_grad_norm"],
            )
            model_eps = min(Fraction(math.ceil(Fraction(dp.epsilon) * _UNIT_DECIMALS), _UNIT_DECIMALS), target)
            plan["size"] = {"epsilon": str(size_eps), "share": p["size_share"], "noisy_units": estimate}
            plan["model"] = {
                **dp.to_json(),
                "epsilon_charged": str(model_eps),
                "target_epsilon_exact": str(target),
            }
            cost = Cost(size_eps + model_eps + metrics_eps, job.delta)
        else:
            model_eps = job.epsilon - metrics_eps
            r = min(p["rows_per_unit"], k) if unit is not None else 1
            plan["model"] = {
                "epsilon_charged": str(model_eps),
                "epsilon": float(model_eps),
                "delta": 0.0,
                "rows_per_unit": r,
                "row_epsilon": str(model_eps / r),
                "accountant": "pure ε (diffprivlib), group privacy over rows_per_unit rows",
            }
            cost = Cost(model_eps + metrics_eps, 0)
        assert cost.fits_within(Cost(job.epsilon, job.delta))
        return plan, cost

    def _count_training_units(self, job: JobSpec, unit: str | None) -> int:
        """The exact number of training units — used only through a noisy release (see `_plan`)."""
        # row-level: a row's identity (for the split) is its whole content
        frame = self._read(job, [unit] if unit is not None else None)
        held = self.key.held_out(frame, unit, fraction=job.params["test_fraction"])
        train = frame.loc[~held]
        return int(train[unit].nunique()) if unit is not None else len(train)

    def _read(self, job: JobSpec, columns: list[str] | None) -> pd.DataFrame:
        if columns is None:
            meta = self._dataset(job.dataset)
            columns = list((meta["tables"][job.table].get("columns") or {}).keys())
        return self._read_table(job.dataset, job.table, columns)

    # -- reads with ownership ----------------------------------------------------------------------------

    def _own_job(self, analyst: str, job_id: Any, *, is_admin: bool) -> dict[str, Any]:
        rec = self.store.get_job(job_id) if isinstance(job_id, str) and len(job_id) <= 32 else None
        if rec is None or (not is_admin and rec["analyst"] != analyst):
            raise NotFound("no such training job")
        return rec

    def _own_model(self, analyst: str, model_id: Any, *, is_admin: bool) -> dict[str, Any]:
        ok = isinstance(model_id, str) and len(model_id) <= 32 and model_id.isalnum()
        rec = self.store.get_model(model_id) if ok else None
        if rec is None or (not is_admin and rec["analyst"] != analyst):
            raise NotFound("no such model")
        return rec

    # -- the background run -----------------------------------------------------------------------------

    def _run(self, job_id: str) -> None:
        rec = self.store.get_job(job_id)
        with self._lock:
            event = self._cancel.get(job_id)
        if rec is None or event is None:
            return
        if event.is_set() or rec["cancel_requested"] or rec["status"] != st.QUEUED:
            self._finish_stopped(job_id)
            return
        if not self.store.update_job(
            job_id, only_if_status=(st.QUEUED,), status=st.RUNNING, started_at=self.store.now()
        ):
            return
        progress = _Progress(self.store, job_id)
        try:
            result = self._execute(job_id, rec, progress, event.is_set)
        except _Stop:
            self._finish_stopped(job_id)
        except TrainingError as exc:
            self._finish(job_id, status=st.FAILED, error=exc.message)
        except Exception:  # noqa: BLE001 - the message may quote private data: log it, show a generic one
            log.exception("training job %s failed", job_id)
            self._finish(job_id, status=st.FAILED, error="internal error (the administrator has the details)")
        else:
            self._finish(job_id, status=st.SUCCEEDED, progress=1.0, **result)
        finally:
            with self._lock:
                self._cancel.pop(job_id, None)
                if not self._stopping:
                    self._futures.pop(job_id, None)  # its record says all; `wait` reads that

    def _finish(self, job_id: str, **values: Any) -> None:
        # only a job still active: a restart elsewhere may have marked it failed meanwhile
        self.store.update_job(job_id, only_if_status=st.ACTIVE, finished_at=self.store.now(), **values)

    def _finish_stopped(self, job_id: str) -> None:
        if self._stopping:
            self._finish(job_id, status=st.FAILED, error=st.INTERRUPTED)
        else:
            self._finish(job_id, status=st.CANCELLED)

    def _execute(
        self, job_id: str, rec: dict[str, Any], progress: _Progress, stopped: Callable[[], bool]
    ) -> dict[str, Any]:
        job = JobSpec.from_json(rec["spec"])
        plan = rec["plan"]
        spec = FeatureSpec.from_json(plan["features"])
        unit, k = plan["unit"], int(plan["k"])
        p = job.params
        columns = list(dict.fromkeys(([unit] if unit else []) + spec.source_columns + [job.label]))
        frame = self._read(job, None if unit is None else columns)
        if unit is not None:
            frame = _bounded(frame, unit, k, self.key)
        y_all, known = spec.label.positives(frame[job.label])
        frame = frame.loc[known].reset_index(drop=True)  # rows without a label: a stable filter
        y_all = y_all[known]
        held = self.key.held_out(frame, unit, fraction=p["test_fraction"])
        x_all = spec.encode(frame)
        progress.set(0.05)
        if stopped():
            raise _Stop()

        train = ~held
        if job.method in ("dpsgd", "nonprivate"):
            model, kind, training = self._train_mlp(job, plan, frame, x_all, y_all, train, unit, k, progress, stopped)
            scores = model.predict_proba(x_all[held])
        else:
            model, kind, training = self._train_classic(job, plan, spec, frame, x_all, y_all, train, unit, k)
            scores = positive_proba(model, x_all[held])
        if stopped():
            raise _Stop()
        progress.set(0.95)
        y_test = y_all[held]
        exact = exact_metrics(scores, y_test)
        metrics = None if job.method == "nonprivate" else dp_metrics(
            scores, y_test, epsilon=Fraction(plan["metrics"]["epsilon"]), k=k
        )
        model_id = uuid.uuid4().hex
        card = _card(
            model_id, job_id, job, rec, plan, spec, training, metrics, exact, self.store.now().isoformat()
        )
        self.registry.save(model_id, model=model, kind=kind, spec=spec, card=card)
        self.store.add_model(
            model_id=model_id, job_id=job_id, analyst=rec["analyst"], dataset=job.dataset, method=job.method
        )
        return {"metrics": metrics if metrics is not None else exact, "exact_metrics": exact, "model_id": model_id}

    def _train_mlp(
        self, job: JobSpec, plan: dict[str, Any], frame: pd.DataFrame, x: np.ndarray, y: np.ndarray,
        train: np.ndarray, unit: str | None, k: int, progress: _Progress, stopped: Callable[[], bool],
    ) -> tuple[Any, str, dict[str, Any]]:  # fmt: skip
        from .dpsgd import Cancelled, DPSGDPlan, train_mlp
        from .nets import MLP, UnitBatches

        p = job.params
        x_tr, y_tr = x[train], y[train]
        units = frame[unit].to_numpy()[train] if unit is not None else np.arange(len(x_tr))
        order, starts, lengths = group_units(units)
        if len(starts) == 0:
            raise InvalidJob("the training part of the table is empty", field="table")
        data = UnitBatches(x_tr[order], y_tr[order], starts, lengths, per_unit=k > 1)
        model = MLP(spec_width(x), p["hidden"])
        if job.method == "dpsgd":
            m = plan["model"]
            dp_plan = DPSGDPlan(**{f: m[f] for f in DPSGDPlan.__dataclass_fields__})
            steps = dp_plan.steps
            mode = _grad_sample_mode(p["grad_sample_mode"], k=k, batch_size=p["batch_size"])
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
            raise _Stop() from None
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
        self, job: JobSpec, plan: dict[str, Any], spec: FeatureSpec, frame: pd.DataFrame, x: np.ndarray,
        y: np.ndarray, train: np.ndarray, unit: str | None, k: int,
    ) -> tuple[Any, str, dict[str, Any]]:  # fmt: skip
        m = plan["model"]
        r = int(m["rows_per_unit"])
        x_tr, y_tr = x[train], y[train]
        if unit is not None and k > r:
            part = frame.loc[train].reset_index(drop=True)
            part["__row"] = np.arange(len(part))
            kept = keep_rows_per_unit(part, unit, r, self.key, [c for c in part.columns if c != "__row"])
            rows = kept["__row"].to_numpy()
            x_tr, y_tr = x_tr[rows], y_tr[rows]
        model = fit_classic(
            job.method, epsilon=float(Fraction(m["row_epsilon"])), spec=spec, params=job.params, x=x_tr, y=y_tr
        )
        training = {
            "estimator": CLASSIC_METHODS[job.method].title,
            "rows_per_unit": r,
            **{name: job.params[name] for name in CLASSIC_METHODS[job.method].params if name != "rows_per_unit"},
        }
        return model, "joblib", training


class _Stop(Exception):
    """Internal: the job was cancelled or the service is stopping."""


class _Progress:
    """Throttled progress writes (at most every half second, always for the first and 0.95)."""

    def __init__(self, store: st.JobStore, job_id: str) -> None:
        self.store, self.job_id = store, job_id
        self._last = 0.0

    def set(self, value: float) -> None:
        now = time.monotonic()
        if now - self._last < 0.5 and value < 0.95:
            return
        self._last = now
        self.store.update_job(self.job_id, only_if_status=(st.RUNNING,), progress=round(min(1.0, value), 4))


def spec_width(x: np.ndarray) -> int:
    return int(x.shape[1])


def _grad_sample_mode(requested: str, *, k: int, batch_size: int) -> str:
    """The per-sample-gradient mode: the job's choice, or the fastest measured for this shape.

    Measured on a 2-core CPU at ~890k rows (per epoch, DP over non-private): one row per sample, ghost
    3.4x / 2.6x / 2.1x at batch 256 / 1,024 / 4,096 against hooks 3.3x / 4.8x / 7.8x and functorch
    6.2x-8.7x; units of up to 300 rows, hooks 1.3x-1.5x against ghost 1.9x-2.2x (a unit's gradient
    norm costs about its per-sample gradient, and ghost adds a second backward pass).
    """
    if requested != "auto":
        return requested
    return "ghost" if k == 1 else "hooks"


def _bounded(frame: pd.DataFrame, unit: str, k: int, key: SplitKey) -> pd.DataFrame:
    """At most k rows per unit. `read_table` hands over the bounded relation already, so this is a no-op
    unless it did not; the guarantee then still holds (a keyed, stable choice of k rows per unit)."""
    if frame.empty or int(frame[unit].value_counts().max()) <= k:
        return frame
    return keep_rows_per_unit(frame, unit, k, key, list(frame.columns))


def _unit_and_k(meta: dict[str, Any], table: dict[str, Any]) -> tuple[str | None, int]:
    unit = meta.get("privacy_unit")
    columns = table.get("columns") or {}
    if unit is None:
        return None, 1
    if unit not in columns:
        raise InvalidJob("the table has no privacy-unit column; it cannot be trained on", field="table")
    k = table.get("max_rows_per_unit", 1)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidJob("the table's max_rows_per_unit must be a positive integer", field="table")
    return unit, k


def _exact(share: float) -> Fraction:
    return Fraction(repr(float(share)))


def _float_down(value: Fraction) -> float:
    f = float(value)
    return f if Fraction(f) <= value else math.nextafter(f, -math.inf)


def _cost_json(cost: Cost | None) -> dict[str, float] | None:
    return None if cost is None else cost.to_json()


def _status_json(rec: dict[str, Any], *, is_admin: bool) -> dict[str, Any]:
    cost = None
    if rec["cost_epsilon"] is not None:
        cost = Cost(Fraction(rec["cost_epsilon"]), Fraction(rec["cost_delta"])).to_json()
    out: dict[str, Any] = {
        "job_id": rec["job_id"],
        "status": rec["status"],
        "progress": float(rec["progress"]),
        "cost": cost,
        "metrics": rec["metrics"],
        "model_id": rec["model_id"],
        "method": rec["method"],
        "dataset": rec["dataset"],
        "table": rec["table_name"],
        "created_at": rec["created_at"].isoformat() if rec["created_at"] else None,
    }
    if rec["error"]:
        out["error"] = rec["error"]
    if is_admin:
        out["analyst"] = rec["analyst"]
        out["exact_metrics"] = rec["exact_metrics"]
    return out


def _card(
    model_id: str, job_id: str, job: JobSpec, rec: dict[str, Any], plan: dict[str, Any], spec: FeatureSpec,
    training: dict[str, Any], metrics: dict[str, Any] | None, exact: dict[str, Any], created_at: str,
) -> dict[str, Any]:  # fmt: skip
    card: dict[str, Any] = {
        "model_id": model_id,
        "job_id": job_id,
        "method": job.method,
        "task": job.task,
        "dataset": job.dataset,
        "table": job.table,
        "label": {"column": job.label, "positive": spec.label.positive, "negative": spec.label.negative},
        "features": spec.to_json(),
        "training": training,
        "created_at": created_at,
    }
    if job.method == "nonprivate":
        card["privacy"] = None
        card["metrics"] = exact
        card["caveats"] = ["NOT differentially private: trained without noise; administrators only."]
    else:
        model = plan["model"]
        cost = Cost(Fraction(rec["cost_epsilon"]), Fraction(rec["cost_delta"]))
        privacy: dict[str, Any] = {
            "level": "user" if plan["unit"] else "row",
            "privacy_unit": plan["unit"],
            "max_rows_per_unit": plan["k"],
            "requested": {"epsilon": float(Fraction(plan["requested"]["epsilon"])),
                          "delta": float(Fraction(plan["requested"]["delta"]))},
            "charged": cost.to_json(),
            "epsilon": cost.to_json()["epsilon"],
            "delta": cost.to_json()["delta"],
            "model": model,
            "metrics": {**plan["metrics"], "mechanism": "laplace (OpenDP discrete Laplace), score histograms"},
        }  # fmt: skip
        if "size" in plan:
            privacy["size"] = {**plan["size"], "mechanism": "laplace (OpenDP), count of training units"}
        card["privacy"] = privacy
        card["metrics"] = metrics
        card["metrics_epsilon_share"] = plan["metrics"]["share"]
        card["exact_metrics"] = exact
        if job.method == "dpsgd":
            card.update(
                accountant=model["accountant"],
                noise_multiplier=model["noise_multiplier"],
                max_grad_norm=model["max_grad_norm"],
                sample_rate=model["sample_rate"],
                epochs=model["epochs"],
                steps=model["steps"],
            )
            card["caveats"] = [SECURE_MODE_CAVEAT]
            if model.get("accountant_note"):
                card["caveats"].append(model["accountant_note"])
        else:
            card["caveats"] = [DIFFPRIVLIB_CAVEAT]
        card["caveats"].append(
            "Metrics are computed from noisy histograms of held-out scores (binned AUC); they are "
            "estimates whose noise grows as the metrics' ε share or the held-out set shrinks."
        )
        if spec.skipped:
            card["caveats"].append(
                "Columns without public bounds or categories were left out: " + ", ".join(spec.skipped)
            )
    return card
