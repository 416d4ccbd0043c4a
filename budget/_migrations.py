"""Versioned schema: an ordered tuple of steps, applied at start under a lock, recorded in `schema_version`.

`migrate` runs in one transaction that first takes a lock every starting process contends for
(PostgreSQL: a transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE``, the database's write
lock), then reads the version and applies the missing steps. DDL is transactional on both databases, so
a step either lands whole with its version row or not at all, and processes starting together apply
each step exactly once; the others find it done.

A released step never changes: each builds its tables from its own definitions (frozen here, as in an
alembic revision), not from `_schema`, which describes the current shape. A test checks that the
migrated database and `_schema` agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.schema import SchemaItem

from . import _schema
from .errors import SchemaTooNew

__all__ = ["LATEST", "STEPS", "migrate"]

# pg_advisory_xact_lock key: the bytes "dpgledgr" as a signed 64-bit integer
_PG_LOCK_KEY = int.from_bytes(b"dpgledgr", "big", signed=True)


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    md = sa.MetaData()
    ident = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    name = sa.String(200)

    sa.Table(
        "analysts",
        md,
        sa.Column("id", ident, primary_key=True, autoincrement=True),
        sa.Column("name", name, nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("organisation", name, nullable=True),
        sa.Column("key_id", sa.String(32), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.CheckConstraint("role IN ('analyst', 'admin')", name="ck_analysts_role"),
    )

    def budget(prefix: str) -> list[SchemaItem]:
        items: list[SchemaItem] = []
        for part in ("epsilon", "delta"):
            items += [
                sa.Column(f"{part}_total", sa.BigInteger, nullable=False),
                sa.Column(f"{part}_spent", sa.BigInteger, nullable=False),
                sa.Column(f"{part}_spent_when_cut", sa.BigInteger, nullable=False),
            ]
        for part in ("epsilon", "delta"):
            items += [
                sa.CheckConstraint(f"{part}_total >= 0", name=f"ck_{prefix}_{part}_total_nonneg"),
                sa.CheckConstraint(f"{part}_spent >= 0", name=f"ck_{prefix}_{part}_spent_nonneg"),
                sa.CheckConstraint(
                    f"{part}_spent <= {part}_total OR {part}_spent <= {part}_spent_when_cut",
                    name=f"ck_{prefix}_{part}_spent_within_total",
                ),
            ]
        return items

    sa.Table(
        "dataset_budgets",
        md,
        sa.Column("dataset", name, primary_key=True),
        *budget("dataset_budgets"),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "allocations",
        md,
        sa.Column("holder_kind", sa.String(16), primary_key=True),
        sa.Column("holder", name, primary_key=True),
        sa.Column("dataset", name, sa.ForeignKey("dataset_budgets.dataset"), primary_key=True),
        *budget("allocations"),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.CheckConstraint("holder_kind IN ('analyst', 'organisation')", name="ck_allocations_holder_kind"),
    )
    sa.Table(
        "ledger_entries",
        md,
        sa.Column("id", ident, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("analyst", name, nullable=False),
        sa.Column("organisation", name, nullable=True),
        sa.Column("dataset", name, sa.ForeignKey("dataset_budgets.dataset"), nullable=False),
        sa.Column("request_id", name, nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("epsilon", sa.BigInteger, nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
        sa.CheckConstraint("epsilon >= 0 AND delta >= 0", name="ck_ledger_entries_nonneg"),
        sa.Index("ix_ledger_entries_dataset", "dataset", "id"),
        sa.Index("ix_ledger_entries_analyst", "analyst", "id"),
    )
    sa.Table(
        "requests",
        md,
        sa.Column("analyst", name, primary_key=True),
        sa.Column("request_id", name, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("body_hash", sa.String(128), nullable=True),
        sa.Column("dataset", name, nullable=True),
        sa.Column("entry_id", ident, sa.ForeignKey("ledger_entries.id"), nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("completed_at", sa.DateTime, nullable=True),
        sa.CheckConstraint("status IN ('in_progress', 'completed')", name="ck_requests_status"),
        sa.Index("ix_requests_status", "status", "created_at"),
    )
    sa.Table(
        "result_cache",
        md,
        sa.Column("cache_key", sa.String(256), primary_key=True),
        sa.Column("dataset", name, nullable=False),
        sa.Column("entry_id", ident, sa.ForeignKey("ledger_entries.id"), nullable=True),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "admin_audit",
        md,
        sa.Column("id", ident, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", name, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("old_value", sa.Text, nullable=True),
        sa.Column("new_value", sa.Text, nullable=True),
    )
    md.create_all(conn)


def _v2_entry_rho(conn: Connection) -> None:
    # a nullable column: existing entries (all accounted in (ε, δ) alone) read back with no ρ. Both
    # databases add it in place, inside the step's transaction.
    conn.execute(sa.text("ALTER TABLE ledger_entries ADD COLUMN rho TEXT"))


def _v3_console_sessions(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "console_sessions",
        md,
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("analyst", sa.String(256), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("seen_at", sa.DateTime, nullable=False),
        sa.Index("ix_console_sessions_created", "created_at"),
    )
    md.create_all(conn)


def _v4_budget_windows(conn: Connection) -> None:
    # nullable columns and zero defaults: every existing budget reads back as one that never renews.
    # Both databases add them in place, inside the step's transaction.
    stamp = sa.DateTime().compile(dialect=conn.dialect)
    for table in ("dataset_budgets", "allocations"):
        for column in (
            "renew_every VARCHAR(8)",
            "epsilon_per_window BIGINT",
            "delta_per_window BIGINT",
            f"window_start {stamp}",
            "epsilon_window_spent BIGINT NOT NULL DEFAULT 0",
            "delta_window_spent BIGINT NOT NULL DEFAULT 0",
        ):
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column}"))


STEPS: tuple[Step, ...] = (
    Step(1, "initial ledger: principals, budgets, entries, requests, cache, audit", _v1_initial),
    Step(2, "ledger entries record the rho (zCDP) a charge was converted from", _v2_entry_rho),
    Step(3, "the web console's server-side sessions", _v3_console_sessions),
    Step(4, "budgets that renew on a schedule: window allowance, window start and spending", _v4_budget_windows),
)
LATEST = STEPS[-1].version


def migrate(conn: Connection, *, schema: str | None = None) -> list[int]:
    """Bring the schema to `LATEST` inside the caller's (write) transaction; returns the versions applied.

    On PostgreSQL `schema`, if given, is created first (the connection's search_path already names it).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        if schema is not None:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    _schema.schema_version.create(conn, checkfirst=True)
    current = conn.execute(sa.select(sa.func.max(_schema.schema_version.c.version))).scalar() or 0
    if current > LATEST:
        raise SchemaTooNew(found=current, known=LATEST)
    applied = []
    for step in STEPS:
        if step.version <= current:
            continue
        step.apply(conn)
        conn.execute(
            _schema.schema_version.insert().values(version=step.version, name=step.name, applied_at=datetime.now(UTC))
        )
        applied.append(step.version)
    return applied
