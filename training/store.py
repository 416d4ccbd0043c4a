"""Durable records of training jobs and models, over SQLAlchemy.

The tables (``training_jobs``, ``training_models``) live in the database at the URL the service is given —
normally the ledger's own (a SQLite file or PostgreSQL), so that one backup holds the charges and the jobs
they paid for — and are created if missing. They are not the ledger's tables and the ledger never reads
them: the ledger's entry of a job (kind ``training``, detail ``{job_id, method}``) is the authority on what
was charged; the job record repeats the cost for display.

A job record is written before its job runs and updated as it goes (status, progress, metrics, model id,
error). In-process (no job queue), one service process owns the store: on start it marks every record
still ``queued`` or ``running`` as ``failed`` with the error "interrupted by a restart" (its charge stays).

With a job queue (`training.queue`) the store is shared by every gateway replica and `dpgate worker`, so
it is also what makes a job run at most once: a worker takes a job with `claim`, one compare-and-set
(``UPDATE ... SET status='running' WHERE status='queued' AND NOT cancel_requested``) that writes the
job's lease (``training_leases``: the worker's host:pid and its heartbeat) in the same transaction; a
second claim of the same id — the broker delivering it again, or the id enqueued twice — updates no row
and runs nothing. The worker beats the lease while the job runs (`beat`, which also reads the cancel
flag); `fail_lost` marks ``failed`` (`WORKER_LOST`) every running job whose lease has gone stale, and
nothing ever sets a job back to ``queued``: a job whose worker died is never run again. Staleness is
judged on the clocks of the processes involved (UTC), which must agree to well within the threshold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

__all__ = ["ACTIVE", "FINAL", "JobStore"]

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
FINAL = (SUCCEEDED, FAILED, CANCELLED)
INTERRUPTED = "interrupted by a restart"
WORKER_LOST = "worker_lost: the worker running it stopped (its charge stays; the job is never run again)"
NOT_QUEUED = "the job queue could not take the job (its charge stays; the job never ran)"

metadata = sa.MetaData()

jobs = sa.Table(
    "training_jobs",
    metadata,
    sa.Column("job_id", sa.String(32), primary_key=True),
    sa.Column("analyst", sa.String(200), nullable=False, index=True),
    sa.Column("dataset", sa.String(200), nullable=False),
    sa.Column("table_name", sa.String(200), nullable=False),
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("spec", sa.Text, nullable=False),  # the validated job (JobSpec.to_json)
    sa.Column("cost_epsilon", sa.String(100), nullable=True),  # exact Fraction text; NULL: nothing charged
    sa.Column("cost_delta", sa.String(100), nullable=True),
    sa.Column("plan", sa.Text, nullable=False),  # JSON: the privacy accounting of the job
    sa.Column("metrics", sa.Text, nullable=True),  # JSON: the DP metrics (what analysts see)
    sa.Column("exact_metrics", sa.Text, nullable=True),  # JSON: administrators only
    sa.Column("model_id", sa.String(32), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("ledger_entry_id", sa.Integer, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
)

models = sa.Table(
    "training_models",
    metadata,
    sa.Column("model_id", sa.String(32), primary_key=True),
    sa.Column("job_id", sa.String(32), nullable=False),
    sa.Column("analyst", sa.String(200), nullable=False, index=True),
    sa.Column("dataset", sa.String(200), nullable=False),
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# A queued job's run on a worker: written by `claim` with the status flip, beaten while it runs. One row
# per job that ever ran on a worker (the primary key is a second guard against running it twice).
leases = sa.Table(
    "training_leases",
    metadata,
    sa.Column("job_id", sa.String(32), primary_key=True),
    sa.Column("worker", sa.String(200), nullable=False),  # host:pid
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

_JSON_COLUMNS = ("spec", "plan", "metrics", "exact_metrics")


def _engine(url: str) -> Engine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        memory = (u.database or "") in ("", ":memory:")
        return sa.create_engine(
            u,
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=sa.pool.StaticPool if memory else sa.pool.QueuePool,
        )
    return sa.create_engine(u, pool_pre_ping=True)


class JobStore:
    """Job and model records. Thread-safe (each call is its own transaction)."""

    def __init__(self, url: str, *, clock: Callable[[], datetime] | None = None) -> None:
        self.engine = _engine(url)
        self._clock = clock or (lambda: datetime.now(UTC))
        metadata.create_all(self.engine, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    def now(self) -> datetime:
        return self._clock()

    # -- jobs -----------------------------------------------------------------------------------------

    def create_job(self, **values: Any) -> None:
        row = {**values, "created_at": values.get("created_at") or self.now()}
        with self.engine.begin() as conn:
            conn.execute(jobs.insert().values(**_dump(row)))

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
        return None if row is None else _load(dict(row))

    def update_job(self, job_id: str, *, only_if_status: tuple[str, ...] | None = None, **values: Any) -> bool:
        """Update a job; with `only_if_status`, only while its status is one of those. True if updated."""
        q = jobs.update().where(jobs.c.job_id == job_id)
        if only_if_status is not None:
            q = q.where(jobs.c.status.in_(only_if_status))
        with self.engine.begin() as conn:
            return bool(conn.execute(q.values(**_dump(values))).rowcount)

    def list_jobs(
        self, analyst: str | None = None, *, limit: int = 100, method: str | None = None, exclude_method: str | None = None
    ) -> list[dict[str, Any]]:
        """Job records, newest first: `analyst`'s, or everyone's where None; only `method`'s, or all but
        `exclude_method`'s (synthetic jobs share this table with training jobs)."""
        q = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.job_id).limit(limit)
        if analyst is not None:
            q = q.where(jobs.c.analyst == analyst)
        if method is not None:
            q = q.where(jobs.c.method == method)
        if exclude_method is not None:
            q = q.where(jobs.c.method != exclude_method)
        with self.engine.begin() as conn:
            return [_load(dict(r)) for r in conn.execute(q).mappings()]

    def interrupt_active(self) -> int:
        """Mark every queued or running job failed (a restart cut it off); returns how many."""
        with self.engine.begin() as conn:
            r = conn.execute(
                jobs.update()
                .where(jobs.c.status.in_(ACTIVE))
                .values(status=FAILED, error=INTERRUPTED, finished_at=self.now())
            )
        return int(r.rowcount)

    def complete(self, job_id: str, *, model: dict[str, Any] | None = None, **values: Any) -> bool:
        """End an active job with `values` and, in the same transaction, record its `model`; False (and
        no model recorded) if the job is no longer active (cancelled, or marked failed meanwhile)."""
        q = jobs.update().where(jobs.c.job_id == job_id, jobs.c.status.in_(ACTIVE))
        with self.engine.begin() as conn:
            if not conn.execute(q.values(**_dump(values))).rowcount:
                return False
            if model is not None:
                conn.execute(models.insert().values(**model, created_at=self.now()))
        return True

    # -- leases: queued jobs run by workers ------------------------------------------------------------

    def claim(self, job_id: str, *, worker: str) -> bool:
        """Take a queued job for `worker`: queued -> running and its lease, atomically. True only for the
        one caller that flipped it; a job taken before, cancelled or ended is never taken again."""
        now = self.now()
        flip = jobs.update().where(
            jobs.c.job_id == job_id, jobs.c.status == QUEUED, jobs.c.cancel_requested == sa.false()
        )
        try:
            with self.engine.begin() as conn:
                if conn.execute(flip.values(status=RUNNING, started_at=now)).rowcount != 1:
                    return False
                conn.execute(leases.insert().values(job_id=job_id, worker=worker[:200], started_at=now, heartbeat_at=now))
        except sa.exc.IntegrityError:  # a lease already there: the job ran before; the flip rolled back
            return False
        return True

    def beat(self, job_id: str, *, worker: str) -> tuple[str | None, bool]:
        """Renew `worker`'s lease of a job; returns the job's (status, cancel_requested)."""
        with self.engine.begin() as conn:
            conn.execute(
                leases.update().where(leases.c.job_id == job_id, leases.c.worker == worker[:200]).values(heartbeat_at=self.now())
            )
            row = conn.execute(sa.select(jobs.c.status, jobs.c.cancel_requested).where(jobs.c.job_id == job_id)).first()
        return (None, False) if row is None else (row[0], bool(row[1]))

    def lease(self, job_id: str) -> dict[str, Any] | None:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(leases).where(leases.c.job_id == job_id)).mappings().first()
        return None if row is None else dict(row)

    def fail_lost(self, older_than: timedelta) -> int:
        """Mark failed (`WORKER_LOST`) every running job whose lease was last beaten before `older_than`
        ago, or that has no lease (with a queue, only a worker runs jobs, and its claim writes one).
        Their charges stay; nothing re-queues them. Returns how many."""
        now = self.now()
        stale = sa.select(leases.c.job_id).where(leases.c.heartbeat_at < now - older_than)
        leased = sa.select(leases.c.job_id)
        q = jobs.update().where(
            jobs.c.status == RUNNING, sa.or_(jobs.c.job_id.in_(stale), jobs.c.job_id.not_in(leased))
        )
        with self.engine.begin() as conn:
            r = conn.execute(q.values(status=FAILED, error=WORKER_LOST, finished_at=now))
        return int(r.rowcount)

    def queued_before(self, older_than: timedelta) -> list[str]:
        """Ids of the jobs still queued (not cancelled) that were recorded more than `older_than` ago."""
        q = sa.select(jobs.c.job_id).where(
            jobs.c.status == QUEUED, jobs.c.cancel_requested == sa.false(), jobs.c.created_at < self.now() - older_than
        )
        with self.engine.begin() as conn:
            return [r[0] for r in conn.execute(q.order_by(jobs.c.created_at))]

    def active_job_ids(self) -> list[str]:
        with self.engine.begin() as conn:
            return [r[0] for r in conn.execute(sa.select(jobs.c.job_id).where(jobs.c.status.in_(ACTIVE)))]

    # -- models ---------------------------------------------------------------------------------------

    def add_model(self, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(models.insert().values(**values, created_at=self.now()))

    def get_model(self, model_id: str) -> dict[str, Any] | None:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(models).where(models.c.model_id == model_id)).mappings().first()
        return None if row is None else dict(row)

    def list_models(self, analyst: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """Model records with their job's table, cost and DP metrics, newest first (`analyst`'s, or all)."""
        q = (
            sa.select(models, jobs.c.table_name, jobs.c.cost_epsilon, jobs.c.cost_delta, jobs.c.metrics)
            .join(jobs, jobs.c.job_id == models.c.job_id)
            .order_by(models.c.created_at.desc(), models.c.model_id)
            .limit(limit)
        )
        if analyst is not None:
            q = q.where(models.c.analyst == analyst)
        with self.engine.begin() as conn:
            return [_load(dict(r)) for r in conn.execute(q).mappings()]


def _dump(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (json.dumps(v, sort_keys=True) if k in _JSON_COLUMNS and v is not None else v) for k, v in values.items()
    }


def _load(row: dict[str, Any]) -> dict[str, Any]:
    for k in _JSON_COLUMNS:
        if row.get(k) is not None:
            row[k] = json.loads(row[k])
    return row
