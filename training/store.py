"""Durable records of training jobs and models, over SQLAlchemy.

The tables (``training_jobs``, ``training_models``) live in the database at the URL the service is given —
normally the ledger's own (a SQLite file or PostgreSQL), so that one backup holds the charges and the jobs
they paid for — and are created if missing. They are not the ledger's tables and the ledger never reads
them: the ledger's entry of a job (kind ``training``, detail ``{job_id, method}``) is the authority on what
was charged; the job record repeats the cost for display.

A job record is written before its job runs and updated as it goes (status, progress, metrics, model id,
error). On start, the service marks every record still ``queued`` or ``running`` as ``failed`` with the
error "interrupted by a restart" (its charge stays): one service process owns the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

__all__ = ["ACTIVE", "FINAL", "JobStore"]

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
FINAL = (SUCCEEDED, FAILED, CANCELLED)
INTERRUPTED = "interrupted by a restart"

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

    def list_jobs(self, analyst: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """Job records, newest first: `analyst`'s, or everyone's where None."""
        q = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.job_id).limit(limit)
        if analyst is not None:
            q = q.where(jobs.c.analyst == analyst)
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
