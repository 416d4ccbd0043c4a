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

Jobs are recorded in `store.JobStore` in the database at `db_url`. Without a `queue` they run on a thread
pool (`workers`, default 1) in this process; a restart marks jobs it finds queued or running as failed,
and their charges stay. With a `queue` (`training.queue`: the setting ``job_queue``) `start` charges and
records the job exactly as before and enqueues only its id; `dpgate worker` processes run it
(`run_queued`) at most once, and a job whose worker died ends failed (``worker_lost``), charge kept,
never run again. Cancelling sets a flag the training loop checks every step (a worker reads it with its
heartbeat); the charge stays. Models go to `registry`, a directory every process shares.

Ownership: an analyst sees only its own jobs and models; another's reads as `NotFound`, so ids never
leak. Administrators (``is_admin``) see every job and model, and the exact metrics.

Layering: this package imports `mechanisms` and `budget`, never the gateway; the gateway passes the
catalog as plain dicts (`datasets`) and the bounded private rows (`read_table`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from budget import BudgetExhausted, Ledger
from mechanisms import Cost, LaplaceCount

from . import cards, models, runner, synthetic_jobs
from . import store as st
from .errors import Forbidden, InvalidJob, JobFailed, NotFound, NotReady, TrainingError, UnknownDataset
from .features import FeatureSpec, build_spec
from .jobs import JobSpec, float_down, parse_job
from .registry import ModelRegistry
from .split import SplitKey

__all__ = ["TrainingQuota", "TrainingService"]

log = logging.getLogger(__name__)

ReadTable = Callable[[str, str, list[str]], pd.DataFrame]
#: (dataset, table name, rows, declared columns, provenance) -> None: writes and registers a synthetic table
Publish = Callable[[str, str, pd.DataFrame, dict[str, Any], dict[str, Any]], None]
_UNIT_DECIMALS = 10**12  # the ledger's ε unit: charges are multiples of 1e-12



class TrainingQuota(TrainingError, RuntimeError):
    """The caller already has its most jobs queued or running (429); nothing was charged."""

    code = "training_quota"
    status = 429


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
        max_active_jobs: int | None = None,
        queue: Any | None = None,
        heartbeat_s: float = 2.0,
        lost_after_s: float = 60.0,
        publish: Publish | None = None,
    ) -> None:
        """`queue`: a `training.queue.JobQueue` (jobs run on `dpgate worker`s) or None (in-process).
        `heartbeat_s`: how often a worker beats a running job's lease and reads its cancel flag;
        `lost_after_s`: a running job whose lease is older is marked failed (its worker is gone).
        `publish`: registers a synthetic job's table as a public table of its dataset (the gateway's
        `gateway.synthetic_tables`); without it, synthetic jobs are refused before anything is charged."""
        self.data_dir = Path(data_dir)
        self._publish = publish
        self.queue = queue
        self.heartbeat_s = float(heartbeat_s)
        self.lost_after_s = float(lost_after_s)
        if self.queue is not None and not 0 < self.heartbeat_s < self.lost_after_s:
            raise ValueError("heartbeat_s must be positive and below lost_after_s")
        self._last_reap = -math.inf
        self.max_active_jobs = max_active_jobs  # per analyst, queued or running; None: no quota
        self._quota_lock = threading.Lock()
        self._starting: dict[str, int] = {}
        self.ledger = ledger
        self._datasets = datasets
        self._read_table = read_table
        self.store = st.JobStore(db_url)
        self.registry = ModelRegistry(self.data_dir / "models")
        self.key = SplitKey(self.data_dir / "training" / "split.key")
        if self.queue is None:  # this process owns every job: what it finds active, a restart cut off
            interrupted = self.store.interrupt_active()
            if interrupted:
                log.warning("marked %d training job(s) failed: interrupted by a restart", interrupted)
        else:  # shared with other replicas and workers: only jobs whose worker is gone
            self.reap_lost(force=True)
            self.requeue_stale()
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(workers)), thread_name_prefix="dpgate-train")
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}
        self._futures: dict[str, Future[None]] = {}
        self._stopping = False

    # -- the facade -------------------------------------------------------------------------------------

    def start(self, analyst: str, body: dict[str, Any], *, is_admin: bool = False) -> dict[str, Any]:
        """Validate, charge and queue a job: ``{job_id, cost: {epsilon, delta}, status}``.

        Raises TrainingQuota (the caller has `max_active_jobs` queued or running), InvalidJob
        (``invalid_request``), UnknownDataset, Forbidden (``nonprivate`` for a non-administrator), and the
        ledger's NoAllocation / BudgetExhausted — all before anything runs.
        """
        with self._job_slot(analyst):
            return self._start(analyst, body, is_admin=is_admin)

    def _start(self, analyst: str, body: dict[str, Any], *, is_admin: bool = False) -> dict[str, Any]:
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
        image = table.get("image")
        features = job.features
        if image is not None:
            if features is not None:
                raise InvalidJob("an image table trains on the whole image: leave features out", field="features")
            if job.method not in ("dpsgd", "pate", "nonprivate"):
                raise InvalidJob("image tables train the CNN: method dpsgd, pate or nonprivate", field="method")
            if k != 1:
                raise InvalidJob("an image table needs max_rows_per_unit 1 (one image per unit)", field="table")
            features = models.image_columns(image)
        spec = build_spec(table, unit=unit, label=job.label, positive=job.positive, features=features)
        if spec.label.multiclass and image is None:
            raise InvalidJob(
                "a label without `positive` is multi-class: tabular models are binary (give `positive`); "
                "multi-class models train on image tables",
                field="positive",
            )
        if job.method == "dpsgd" and job.public_table is not None and image is None:
            raise InvalidJob("pre-training on a public table is for image tables: leave public_table out", field="public_table")
        if job.method == "pate" and image is None and job.params.get("pretrain_epochs", 0) > 0:
            raise InvalidJob("pre-training is for image tables: leave params.pretrain_epochs out", field="params.pretrain_epochs")
        if job.public_table is not None:
            public = tables.get(job.public_table) or {}
            if not public.get("public"):
                raise InvalidJob("public_table must name a table of this dataset marked public", field="public_table")
            lacking = [c for c in spec.source_columns if c not in (public.get("columns") or {})]
            if lacking:
                raise InvalidJob(f"the public table lacks the feature column {lacking[0]!r}", field="public_table")
            if image is not None and job.params.get("pretrain_epochs", 0) > 0:
                _check_public_label(public, table, job.label)
        if job.method != "nonprivate":
            self._check_room(analyst, job)
        self._ping_queue()
        job_id = uuid.uuid4().hex
        plan, cost = self._plan(job, spec, unit=unit, k=k, image=image)
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
        return {"job_id": job_id, "cost": _cost_json(cost), "status": self._submit(job_id)}

    def status(self, analyst: str, job_id: str, *, is_admin: bool = False) -> dict[str, Any]:
        """``{job_id, status, progress, cost, metrics, model_id, error?}`` of the caller's own job."""
        return cards.status_json(self._own_job(analyst, job_id, is_admin=is_admin, synthetic=False), is_admin=is_admin)

    def jobs(self, analyst: str, *, is_admin: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        """The caller's jobs (an administrator's: every analyst's), newest first, as `status` shows them."""
        self.reap_lost()
        recs = self.store.list_jobs(None if is_admin else analyst, limit=limit, exclude_method=synthetic_jobs.METHOD)
        return [cards.status_json(rec, is_admin=is_admin) for rec in recs]

    def models(self, analyst: str, *, is_admin: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        """The caller's models (an administrator's: every analyst's), newest first: ``{model_id, job_id,
        method, dataset, table, cost, metrics, created_at}`` (the DP metrics; `analyst` for administrators)."""
        out = []
        for rec in self.store.list_models(None if is_admin else analyst, limit=limit):
            cost = None
            if rec["cost_epsilon"] is not None:
                cost = Cost(Fraction(rec["cost_epsilon"]), Fraction(rec["cost_delta"])).to_json()
            item = {"model_id": rec["model_id"], "job_id": rec["job_id"], "method": rec["method"], "dataset": rec["dataset"],
                    "table": rec["table_name"], "cost": cost, "metrics": rec["metrics"],
                    "created_at": rec["created_at"].isoformat() if rec["created_at"] else None}  # fmt: skip
            if is_admin:
                item["analyst"] = rec["analyst"]
            out.append(item)
        return out

    def cancel(self, analyst: str, job_id: str, *, is_admin: bool = False, synthetic: bool = False) -> dict[str, Any]:
        """Ask a job to stop (a queued job never starts; a running one stops at its next step). The charge
        stays. A finished job is left as it is. Returns its status."""
        rec = self._own_job(analyst, job_id, is_admin=is_admin, synthetic=synthetic)
        if rec["status"] in st.ACTIVE:
            self.store.update_job(job_id, cancel_requested=True)
            with self._lock:
                event = self._cancel.get(job_id)
            if event is not None:
                event.set()
            self.store.update_job(
                job_id, only_if_status=(st.QUEUED,), status=st.CANCELLED, finished_at=self.store.now()
            )
        if synthetic:
            return self.synthetic_status(analyst, job_id, is_admin=is_admin)
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
        label = loaded.spec.label
        if label.multiclass:
            return {
                "predictions": [
                    {"label": label.class_name(int(np.argmax(v))), "probability": float(np.max(v)),
                     "probabilities": {c: float(pc) for c, pc in zip(label.classes, v, strict=True)}}
                    for v in p
                ]
            }  # fmt: skip
        return {"predictions": [{"label": label.label_of(bool(v > 0.5)), "probability": float(v)} for v in p]}

    # -- synthetic jobs (training.synthetic_jobs) ----------------------------------------------------------

    def start_synthetic(self, analyst: str, body: dict[str, Any]) -> dict[str, Any]:
        """Validate, charge and queue a synthetic job: ``{job_id, cost, status, table}``. Refusals
        (InvalidJob, UnknownDataset, NoAllocation, BudgetExhausted, TrainingQuota) come before any charge."""
        with self._job_slot(analyst):
            if self._stopping:
                raise JobFailed("the training service is shutting down")
            spec = synthetic_jobs.parse_synthetic(body)
            if self._publish is None:
                raise JobFailed("this gateway cannot register synthetic tables; nothing was charged")
            meta = self._dataset(spec.dataset)
            job_id = uuid.uuid4().hex
            plan, cost, _ = synthetic_jobs.plan_synthetic(spec, meta, job_id=job_id)
            self.ledger.check_room(analyst, spec.dataset, cost)
            self._ping_queue()
            charge = self.ledger.charge(analyst=analyst, dataset=spec.dataset, cost=cost, kind="synthetic",
                                        detail={"job_id": job_id, "method": "mst"})  # fmt: skip
            self.store.create_job(
                job_id=job_id, analyst=analyst, dataset=spec.dataset, table_name=plan["source_table"],
                method=synthetic_jobs.METHOD, status=st.QUEUED, progress=0.0, spec=spec.to_json(),
                cost_epsilon=str(cost.epsilon), cost_delta=str(cost.delta), plan=plan, cancel_requested=False,
                ledger_entry_id=charge.id,
            )  # fmt: skip
            status = self._submit(job_id)
            return {"job_id": job_id, "cost": _cost_json(cost), "status": status, "table": plan["output_table"]}

    def synthetic_status(self, analyst: str, job_id: str, *, is_admin: bool = False) -> dict[str, Any]:
        """``{job_id, status, progress, cost, table, download, rows, ...}`` of the caller's synthetic job."""
        return _synthetic_json(self._own_job(analyst, job_id, is_admin=is_admin, synthetic=True), is_admin=is_admin)

    def synthetic_jobs(self, analyst: str, *, is_admin: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        """The caller's synthetic jobs (an administrator's: every analyst's), newest first."""
        self.reap_lost()
        recs = self.store.list_jobs(None if is_admin else analyst, limit=limit, method=synthetic_jobs.METHOD)
        return [_synthetic_json(rec, is_admin=is_admin) for rec in recs]

    def synthetic_rows(self, analyst: str, job_id: str, *, is_admin: bool = False) -> tuple[str, str]:
        """(dataset, table) of a succeeded synthetic job of the caller's: the gateway serves its rows.
        NotReady while it has not succeeded."""
        rec = self._own_job(analyst, job_id, is_admin=is_admin, synthetic=True)
        if rec["status"] != st.SUCCEEDED:
            raise NotReady(f"the synthetic job is {rec['status']}: its rows exist once it has succeeded", status_now=rec["status"])
        return rec["dataset"], rec["plan"]["output_table"]

    def _execute_synthetic(self, job_id: str, rec: dict[str, Any], progress: runner.Progress, stopped: Callable[[], bool]) -> None:
        """Run a charged synthetic job: read the bounded rows, synthesise (the plan fixed the cost), publish."""
        from .synthetic import synthesize

        assert self._publish is not None, "a synthetic job runs where a publish callback is set"
        spec = synthetic_jobs.SyntheticSpec.from_json(rec["spec"])
        plan = rec["plan"]
        meta = self._dataset(spec.dataset)
        now, cost, columns = synthetic_jobs.plan_synthetic(spec, meta, job_id=job_id)
        if json.loads(json.dumps(now)) != plan or str(cost.epsilon) != rec["cost_epsilon"] or str(cost.delta) != rec["cost_delta"]:
            # public metadata only: the table's declared columns or bound changed after the charge
            raise JobFailed("the table's metadata changed since the job was charged; it was not run (its charge stays)")
        progress.set(0.05)
        unit = plan["unit"]
        wanted = list(columns) + ([unit] if unit is not None else [])
        frame = self._read_table(spec.dataset, plan["source_table"], wanted)
        if stopped():
            raise runner.Stop
        progress.set(0.3)
        rows, info = synthesize(frame, columns, epsilon=spec.epsilon, delta=spec.delta, rows=spec.rows,
                                max_rows_per_unit=plan["k"], unit=unit)  # fmt: skip
        if info["cost"] != cost:  # the plan charged is the one run (exact Fractions)
            raise AssertionError("the synthesis cost differs from the charge")
        if stopped():
            raise runner.Stop
        progress.set(0.8)
        name = plan["output_table"]
        provenance = {"job_id": job_id, "source_table": plan["source_table"], "method": "mst", "epsilon": str(cost.epsilon),
                      "delta": str(cost.delta), "rows": len(rows), "analyst": rec["analyst"],
                      "created_at": self.store.now().isoformat()}  # fmt: skip
        self._publish(spec.dataset, name, rows, columns, provenance)
        metrics = {"table": name, "rows": len(rows), "columns": list(rows.columns),
                   "cliques": [list(e) for e in info.get("cliques", info.get("tree", []))]}  # fmt: skip
        self.store.complete(job_id, status=st.SUCCEEDED, progress=1.0, metrics=metrics, finished_at=self.store.now())

    def _ping_queue(self) -> None:
        if self.queue is None:
            return
        try:
            self.queue.ping()
        except Exception:  # noqa: BLE001 - any broker failure: refuse before the charge
            log.warning("training job queue unreachable", exc_info=True)
            raise JobFailed("the training job queue is unreachable; nothing was charged") from None

    def _submit(self, job_id: str) -> str:
        """Put a charged, recorded job on the queue or this process's pool; its status after that."""
        if self.queue is not None:
            try:
                self.queue.enqueue(job_id)
            except Exception:  # noqa: BLE001 - charged, recorded, not queued: it ends failed, charge kept
                log.exception("training job %s could not be enqueued", job_id)
                self._finish(job_id, status=st.FAILED, error=st.NOT_QUEUED)
                return st.FAILED
            return st.QUEUED
        with self._lock:
            self._cancel[job_id] = threading.Event()
            self._futures[job_id] = self._pool.submit(self._run, job_id)
        return st.QUEUED

    def audit(self, model_id: str, *, n_reference: int = 4, seed: int = 0) -> dict[str, Any]:
        """A membership-inference audit of a model (`training.auditing`; administrators only — the HTTP
        edge checks the role). Reads private data only here; returns aggregate attack figures."""
        from .auditing import audit_model

        if isinstance(n_reference, bool) or not isinstance(n_reference, int) or n_reference not in (0, *range(2, 17)):
            raise InvalidJob("n_reference must be 0 (no calibrated attack) or an integer in [2, 16]", field="n_reference")
        rec = self._own_model("", model_id, is_admin=True)
        job_rec = self.store.get_job(rec["job_id"])
        if job_rec is None:  # pragma: no cover - a model is written after its job
            raise NotFound("no such model")
        job = JobSpec.from_json(job_rec["spec"])
        return audit_model(
            model_id=model_id, job=job, plan=job_rec["plan"], card=self.registry.card(model_id),
            registry=self.registry, read=lambda cols: self._read(job, cols), key=self.key,
            n_reference=n_reference, seed=seed,
        )  # fmt: skip

    def audit_plot(self, model_id: str, name: str) -> Path:
        """The PNG of a model's last audit (``roc`` or ``violin``)."""
        from .auditing import stored_plot

        self._own_model("", model_id, is_admin=True)
        path = stored_plot(self.registry, model_id, name)
        if path is None:
            raise NotFound("no such audit plot: run the audit first")
        return path

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job's run has ended (tests, CLI); returns its status (administrator view).
        With a queue, polls the store until the job is final (TimeoutError after `timeout` seconds)."""
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)
        elif self.queue is not None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while (rec := self.store.get_job(job_id)) is not None and rec["status"] in st.ACTIVE:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"training job {job_id} is still {rec['status']}")
                time.sleep(0.1)
                self.reap_lost()
        rec = self.store.get_job(job_id)
        if rec is None:
            raise NotFound("no such training job")
        return cards.status_json(rec, is_admin=True)

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

    # -- the queue: workers, leases, lost workers -------------------------------------------------------

    def run_queued(self, job_id: str) -> bool:
        """Worker side: run a queued job if this process wins its claim (queued -> running, with a lease
        in the same transaction); otherwise — taken before, cancelled, ended, unknown — do nothing. The
        lease is beaten every `heartbeat_s` seconds; a cancel (or the job judged lost) stops the run at
        its next step. True if this call ran the job."""
        from .queue import Heartbeat, worker_name

        if self.queue is None:
            raise RuntimeError("run_queued is for a service with a job queue")
        self.reap_lost()
        if self._stopping or not isinstance(job_id, str) or len(job_id) > 32:
            return False
        me = worker_name()
        if not self.store.claim(job_id, worker=me):
            log.warning("training job %s not run: already taken, cancelled, ended or unknown", job_id)
            return False
        event = threading.Event()
        with self._lock:
            self._cancel[job_id] = event
        if self._stopping:
            event.set()
        beat = Heartbeat(self.store, job_id, me, event, interval=self.heartbeat_s).start()
        try:
            rec = self.store.get_job(job_id)
            assert rec is not None  # claimed just now; job records are never deleted
            self._run_claimed(job_id, rec, event.is_set)
        finally:
            beat.stop()
            with self._lock:
                self._cancel.pop(job_id, None)
        return True

    def reap_lost(self, *, force: bool = False) -> int:
        """With a queue: mark failed every running job whose worker's lease is stale (`JobStore.fail_lost`;
        charges kept, never re-run). Cheap, and throttled to once a second per process unless `force`."""
        if self.queue is None:
            return 0
        now = time.monotonic()
        if not force and now - self._last_reap < 1.0:
            return 0
        self._last_reap = now
        lost = self.store.fail_lost(timedelta(seconds=self.lost_after_s))
        if lost:
            log.warning("marked %d training job(s) failed: their worker stopped beating (worker_lost)", lost)
        return lost

    def requeue_stale(self) -> int:
        """With a queue, at start: put again on the queue every job queued longer than `lost_after_s`, so
        that one whose gateway died between recording it and enqueueing it is not left queued for ever
        (holding its quota slot). Safe whatever the queue holds: a second delivery of an id finds the job
        claimed and does nothing (`JobStore.claim`). Returns how many were put again."""
        if self.queue is None:
            return 0
        ids = self.store.queued_before(timedelta(seconds=self.lost_after_s))
        for job_id in ids:
            try:
                self.queue.enqueue(job_id)
            except Exception:  # noqa: BLE001 - the queue is away: the next start tries again
                log.warning("could not put queued training jobs on the queue again; the next start retries")
                return 0
        if ids:
            log.warning("put %d training job(s) queued for over %ss on the queue again", len(ids), self.lost_after_s)
        return len(ids)

    def stop_running(self) -> None:
        """A worker's warm shutdown: running jobs stop at their next step and end failed (interrupted)."""
        self._stopping = True
        with self._lock:
            events = list(self._cancel.values())
        for e in events:
            e.set()

    def __enter__(self) -> TrainingService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- start-time helpers ----------------------------------------------------------------------------

    @contextmanager
    def _job_slot(self, analyst: str) -> Iterator[None]:
        """Hold one of the analyst's `max_active_jobs` places while its job starts (concurrent starts
        count too), or refuse before anything is read or charged. Queued and running jobs hold theirs."""
        if self.max_active_jobs is None:
            yield
            return
        jobs = st.jobs
        self.reap_lost()
        with self._quota_lock:
            with self.store.engine.begin() as conn:
                active = conn.execute(
                    sa.select(sa.func.count()).select_from(jobs).where(jobs.c.analyst == analyst, jobs.c.status.in_(st.ACTIVE))
                ).scalar_one()
            if active + self._starting.get(analyst, 0) >= self.max_active_jobs:
                raise TrainingQuota(
                    f"you have {self.max_active_jobs} training job(s) queued or running: wait for one to end or cancel one",
                    limit=self.max_active_jobs,
                )
            self._starting[analyst] = self._starting.get(analyst, 0) + 1
        try:
            yield
        finally:
            with self._quota_lock:
                self._starting[analyst] -= 1
                if not self._starting[analyst]:
                    del self._starting[analyst]

    def _dataset(self, name: str) -> dict[str, Any]:
        try:
            meta = self._datasets(name)
        except LookupError:
            meta = None
        if not meta:
            raise UnknownDataset(name, f"unknown dataset {name!r}")
        return meta

    def _check_room(self, analyst: str, job: JobSpec) -> None:
        """Refuse, before any data is read, a job whose cost the budget may not cover: its requested ε,
        and its δ where the method spends δ (DP-SGD; diffprivlib's models are pure ε-DP)."""
        requested = Cost(job.epsilon, job.delta if job.method in ("dpsgd", "pate") else Fraction(0))
        self.ledger.check_room(analyst, job.dataset, requested)

    def _plan(
        self, job: JobSpec, spec: FeatureSpec, *, unit: str | None, k: int, image: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], Cost | None]:
        """The job's privacy plan (stored with it, shown on its card) and its total cost."""
        p = job.params
        plan: dict[str, Any] = {
            "features": spec.to_json(),
            "unit": unit,
            "k": k,
            "requested": {"epsilon": str(job.epsilon), "delta": str(job.delta)},
            "image": image,
            "n_classes": spec.label.n_classes,
        }
        if job.method == "nonprivate":
            plan["nonprivate"] = True
            return plan, None
        metrics_eps = job.epsilon * _exact(p["metrics_share"])
        r_metrics = p["metrics_rows_per_unit"]
        plan["metrics"] = {
            "epsilon": str(metrics_eps),
            "share": p["metrics_share"],
            "rows_per_unit": r_metrics,
            # binary: at most r positive and r negative rows per unit; multi-class: a unit's k rows
            "sensitivity": k if spec.label.multiclass else min(k, 2 * r_metrics),
        }
        if job.method == "pate":
            pate = self._plan_pate(job, spec, target=job.epsilon - metrics_eps)
            plan["pate"] = pate.to_json()
            plan["model"] = {
                "epsilon_charged": str(pate.cost.epsilon),
                "epsilon": pate.epsilon,
                "delta": pate.delta,
                "accountant": f"PATE {pate.aggregator}: data-independent RDP (zCDP rho {pate.rho:.6g}), "
                "converted to (ε, δ)",
                "queries": pate.queries,
                "sigma": pate.sigma,
            }
            cost = Cost(pate.cost.epsilon + metrics_eps, job.delta)
        elif job.method == "dpsgd":
            from .dpsgd import plan_dpsgd

            size_eps = job.epsilon * _exact(p["size_share"])
            n_train = self._count_training_units(job, unit)
            noisy = LaplaceCount(epsilon=size_eps, sensitivity=1).release([n_train])[0]
            estimate = max(1, int(noisy))
            target = job.epsilon - metrics_eps - size_eps
            dp = plan_dpsgd(
                target_epsilon=float_down(target),
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
                "accountant": "pure ε, group privacy over rows_per_unit rows",
            }
            cost = Cost(model_eps + metrics_eps, Fraction(0))
        assert cost.fits_within(Cost(job.epsilon, job.delta))
        return plan, cost

    def _plan_pate(self, job: JobSpec, spec: FeatureSpec, *, target: Fraction) -> Any:
        """The PATE plan within `target` ε: σ and the queries from public inputs only — the job's
        parameters and the size of the public table (public data, read at no cost)."""
        from .pate import plan_confident_gnmax, plan_gnmax

        p = job.params
        assert job.public_table is not None
        n_public = len(self._read_table(job.dataset, job.public_table, spec.source_columns[:1]))
        if n_public < 1:
            raise InvalidJob("the public table is empty", field="public_table")
        queries = min(p["queries"], n_public)
        eps, n_classes = float_down(target), spec.label.n_classes
        try:
            if p["aggregator"] == "gnmax":
                if p["sigma"] > 0:
                    plan = plan_gnmax(epsilon=eps, delta=job.delta, n_classes=n_classes, sigma=p["sigma"])
                    if plan.queries > queries:
                        plan = plan_gnmax(epsilon=eps, delta=job.delta, n_classes=n_classes, sigma=p["sigma"], queries=queries)
                else:
                    plan = plan_gnmax(epsilon=eps, delta=job.delta, n_classes=n_classes, queries=queries)
            else:
                sigma2 = p["sigma"] or 20.0
                plan = plan_confident_gnmax(
                    epsilon=eps, delta=job.delta, n_classes=n_classes, threshold=p["threshold"] * p["teachers"],
                    sigma1=p["sigma1"] or 1.5 * sigma2, sigma2=sigma2,
                )  # fmt: skip
                if plan.queries > queries:
                    plan = plan_confident_gnmax(
                        epsilon=eps, delta=job.delta, n_classes=n_classes, threshold=p["threshold"] * p["teachers"],
                        sigma1=p["sigma1"] or 1.5 * sigma2, sigma2=sigma2, queries=queries,
                    )  # fmt: skip
        except ValueError as exc:
            raise InvalidJob(f"no PATE plan fits this epsilon: {exc}", field="epsilon") from None
        from .pate.teachers import MIN_LABELLED

        if plan.answers < MIN_LABELLED:
            raise InvalidJob(
                f"at this epsilon only {plan.answers} public rows can be labelled (sigma {plan.sigma:.4g}); the student "
                f"needs at least {MIN_LABELLED}. Raise epsilon or lower sigma",
                field="epsilon",
            )
        if plan.sigma > p["teachers"]:  # the noise would outweigh every teacher voting together
            raise InvalidJob(
                f"at this epsilon the vote noise (sigma {plan.sigma:.4g}) exceeds the number of teachers "
                f"({p['teachers']}): the labels would be noise. Raise epsilon, ask fewer queries or use more teachers",
                field="epsilon",
            )
        return plan

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

    def _own_job(self, analyst: str, job_id: Any, *, is_admin: bool, synthetic: bool | None = None) -> dict[str, Any]:
        """The caller's job (`synthetic`: only a synthetic job, or only a training job; None: either)."""
        self.reap_lost()
        rec = self.store.get_job(job_id) if isinstance(job_id, str) and len(job_id) <= 32 else None
        if rec is not None and synthetic is not None and (rec["method"] == synthetic_jobs.METHOD) != synthetic:
            rec = None
        if rec is None or (not is_admin and rec["analyst"] != analyst):
            raise NotFound("no such synthetic job" if synthetic else "no such training job")
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
        try:
            if not self.store.update_job(
                job_id, only_if_status=(st.QUEUED,), status=st.RUNNING, started_at=self.store.now()
            ):
                return
            self._run_claimed(job_id, rec, event.is_set)
        finally:
            with self._lock:
                self._cancel.pop(job_id, None)
                if not self._stopping:
                    self._futures.pop(job_id, None)  # its record says all; `wait` reads that

    def _run_claimed(self, job_id: str, rec: dict[str, Any], stopped: Callable[[], bool]) -> None:
        """Run a job this process has flipped to running, and end its record (whichever way it ends)."""
        progress = runner.Progress(self.store, job_id)
        try:
            self._execute(job_id, rec, progress, stopped)
        except runner.Stop:
            self._finish_stopped(job_id)
        except (TrainingError, UnknownDataset) as exc:  # its dataset gone meanwhile: say so
            self._finish(job_id, status=st.FAILED, error=exc.message)
        except Exception:  # noqa: BLE001 - the message may quote private data: log it, show a generic one
            log.exception("training job %s failed", job_id)
            self._finish(job_id, status=st.FAILED, error="internal error (the administrator has the details)")

    def _execute(
        self, job_id: str, rec: dict[str, Any], progress: runner.Progress, stopped: Callable[[], bool]
    ) -> None:
        if rec["method"] == synthetic_jobs.METHOD:
            self._execute_synthetic(job_id, rec, progress, stopped)
            return
        job = JobSpec.from_json(rec["spec"])
        plan = rec["plan"]
        charged = None
        if rec["cost_epsilon"] is not None:
            charged = Cost(Fraction(rec["cost_epsilon"]), Fraction(rec["cost_delta"]))
        public = job.public_table
        out = runner.run(
            job, plan, read=lambda cols: self._read(job, cols), key=self.key, progress=progress, stopped=stopped,
            read_public=None if public is None else (lambda cols: self._read_table(job.dataset, public, cols)),
            charged=charged,
        )  # fmt: skip
        model_id = uuid.uuid4().hex
        spec = FeatureSpec.from_json(plan["features"])
        card = cards.model_card(
            model_id, job_id, job, rec, plan, spec, out.training, out.metrics, out.exact, self.store.now().isoformat()
        )
        self.registry.save(model_id, model=out.model, kind=out.kind, spec=spec, card=card)
        metrics = out.metrics if out.metrics is not None else out.exact  # non-private: administrators only
        # the job's end and its model's record in one transaction: a job cancelled or judged lost
        # meanwhile gets no model (and its files go)
        done = self.store.complete(
            job_id,
            model={"model_id": model_id, "job_id": job_id, "analyst": rec["analyst"], "dataset": job.dataset,
                   "method": job.method},
            status=st.SUCCEEDED, progress=1.0, metrics=metrics, exact_metrics=out.exact, model_id=model_id,
            finished_at=self.store.now(),
        )  # fmt: skip
        if not done:
            self.registry.remove(model_id)

    def _finish(self, job_id: str, **values: Any) -> None:
        # only a job still active: a restart elsewhere may have marked it failed meanwhile
        self.store.update_job(job_id, only_if_status=st.ACTIVE, finished_at=self.store.now(), **values)

    def _finish_stopped(self, job_id: str) -> None:
        if self._stopping:
            self._finish(job_id, status=st.FAILED, error=st.INTERRUPTED)
        else:
            self._finish(job_id, status=st.CANCELLED)


def _check_public_label(public: dict[str, Any], table: dict[str, Any], label: str) -> None:
    """Pre-training reads the public table's label: it must be there, declared with the private label's
    classes (metadata only: both are public declarations)."""
    got = (public.get("columns") or {}).get(label)
    if got is None:
        raise InvalidJob(
            f"pre-training needs the label column {label!r} in the public table (or params.pretrain_epochs 0)",
            field="public_table",
        )
    want = ((table.get("columns") or {}).get(label) or {}).get("categories")
    if list(got.get("categories") or []) != list(want or []):
        raise InvalidJob(f"the public table's {label!r} does not declare the same classes as the table's", field="public_table")


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


def _cost_json(cost: Cost | None) -> dict[str, float] | None:
    return None if cost is None else cost.to_json()


def _synthetic_json(rec: dict[str, Any], *, is_admin: bool) -> dict[str, Any]:
    """A synthetic job as the API shows it; `download` once its rows exist."""
    plan = rec["plan"] or {}
    done = rec["status"] == st.SUCCEEDED
    out: dict[str, Any] = {
        "job_id": rec["job_id"],
        "status": rec["status"],
        "progress": float(rec["progress"]),
        "cost": Cost(Fraction(rec["cost_epsilon"]), Fraction(rec["cost_delta"])).to_json(),
        "dataset": rec["dataset"],
        "source_table": rec["table_name"],
        "table": plan.get("output_table"),
        "columns": plan.get("columns"),
        "rows": (rec["metrics"] or {}).get("rows") if done else None,
        "download": f"/v1/synthetic-jobs/{rec['job_id']}/download" if done else None,
        "plan": plan.get("synthesis"),
        "created_at": rec["created_at"].isoformat() if rec["created_at"] else None,
    }
    if plan.get("skipped"):
        out["skipped"] = plan["skipped"]
    if rec["error"]:
        out["error"] = rec["error"]
    if is_admin:
        out["analyst"] = rec["analyst"]
    return out


