"""The ledger's tables as the code queries them (the shape `_migrations` builds, step by step).

Amounts are integers of the units in `units` (ε in 1e-12, δ in 1e-18); an entry's ρ, a record beside
its charged (ε, δ), is kept exact as text. Spending is keyed by names
(analyst, organisation, dataset), never by surrogate ids, so re-creating an analyst or re-registering a
dataset finds its spending where it left it.

The CHECK constraints are the last line of defence against overspending: at both levels spent may not
exceed the total, except where an administrator cut the total below what was already spent — then
`*_spent_when_cut` records that figure and spending may stand there but never grow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import SchemaItem

__all__ = [
    "ANALYST",
    "COMPLETED",
    "IN_PROGRESS",
    "ORGANISATION",
    "UTCDateTime",
    "admin_audit",
    "allocations",
    "analysts",
    "dataset_budgets",
    "ledger_entries",
    "metadata",
    "requests",
    "result_cache",
    "schema_version",
]

ANALYST = "analyst"  # allocations.holder_kind
ORGANISATION = "organisation"
IN_PROGRESS = "in_progress"  # requests.status
COMPLETED = "completed"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, stored naive (SQLite keeps no zone)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use an aware UTC one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stored: datetime = value
        return stored.replace(tzinfo=UTC)


Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # an INTEGER PRIMARY KEY is SQLite's rowid
Name = sa.String(200)

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

analysts = sa.Table(
    "analysts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", Name, nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("organisation", Name, nullable=True),
    sa.Column("key_id", sa.String(32), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("role IN ('analyst', 'admin')", name="ck_analysts_role"),
)


def _budget_columns(prefix: str) -> list[SchemaItem]:
    """Totals, spent figures and the CHECKs that hold spent within total, for one budget level."""
    items: list[SchemaItem] = []
    for part in ("epsilon", "delta"):
        items += [
            sa.Column(f"{part}_total", sa.BigInteger, nullable=False),
            sa.Column(f"{part}_spent", sa.BigInteger, nullable=False),
            sa.Column(f"{part}_spent_when_cut", sa.BigInteger, nullable=False),
        ]
    # a renewal schedule (migration 4; `windows`): NULL `renew_every` for a row that never renews
    items += [
        sa.Column("renew_every", sa.String(8), nullable=True),
        sa.Column("epsilon_per_window", sa.BigInteger, nullable=True),
        sa.Column("delta_per_window", sa.BigInteger, nullable=True),
        sa.Column("window_start", UTCDateTime, nullable=True),
        sa.Column("epsilon_window_spent", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("delta_window_spent", sa.BigInteger, nullable=False, server_default="0"),
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


dataset_budgets = sa.Table(
    "dataset_budgets",
    metadata,
    sa.Column("dataset", Name, primary_key=True),
    *_budget_columns("dataset_budgets"),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

allocations = sa.Table(
    "allocations",
    metadata,
    sa.Column("holder_kind", sa.String(16), primary_key=True),
    sa.Column("holder", Name, primary_key=True),
    sa.Column("dataset", Name, sa.ForeignKey("dataset_budgets.dataset"), primary_key=True),
    *_budget_columns("allocations"),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("holder_kind IN ('analyst', 'organisation')", name="ck_allocations_holder_kind"),
)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("analyst", Name, nullable=False),
    # set where the charge went to the organisation's shared allocation rather than the analyst's own
    sa.Column("organisation", Name, nullable=True),
    sa.Column("dataset", Name, sa.ForeignKey("dataset_budgets.dataset"), nullable=False),
    sa.Column("request_id", Name, nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # JSON
    sa.Column("epsilon", sa.BigInteger, nullable=False),
    sa.Column("delta", sa.BigInteger, nullable=False),
    # the ρ (zCDP) that a Gaussian charge's (ε, δ) was converted from, exact ("p/q"); a record only,
    # never summed into a budget; NULL for charges accounted in (ε, δ) alone (migration 2)
    sa.Column("rho", sa.Text, nullable=True),
    sa.CheckConstraint("epsilon >= 0 AND delta >= 0", name="ck_ledger_entries_nonneg"),
    sa.Index("ix_ledger_entries_dataset", "dataset", "id"),
    sa.Index("ix_ledger_entries_analyst", "analyst", "id"),
)

requests = sa.Table(
    "requests",
    metadata,
    sa.Column("analyst", Name, primary_key=True),
    sa.Column("request_id", Name, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("body_hash", sa.String(128), nullable=True),
    sa.Column("dataset", Name, nullable=True),
    sa.Column("entry_id", Id, sa.ForeignKey("ledger_entries.id"), nullable=True),
    sa.Column("result", sa.Text, nullable=True),  # JSON
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("completed_at", UTCDateTime, nullable=True),
    sa.CheckConstraint("status IN ('in_progress', 'completed')", name="ck_requests_status"),
    sa.Index("ix_requests_status", "status", "created_at"),
)

result_cache = sa.Table(
    "result_cache",
    metadata,
    sa.Column("cache_key", sa.String(256), primary_key=True),
    sa.Column("dataset", Name, nullable=False),
    sa.Column("entry_id", Id, sa.ForeignKey("ledger_entries.id"), nullable=True),
    sa.Column("result", sa.Text, nullable=False),  # JSON
    sa.Column("created_at", UTCDateTime, nullable=False),
)

admin_audit = sa.Table(
    "admin_audit",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", Name, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("old_value", sa.Text, nullable=True),  # JSON
    sa.Column("new_value", sa.Text, nullable=True),  # JSON
)


console_sessions = sa.Table(  # the web console's server-side sessions (gateway/console/sessions.py)
    "console_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),  # SHA-256 of the cookie's random id
    sa.Column("analyst", sa.String(256), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("seen_at", UTCDateTime, nullable=False),
    sa.Index("ix_console_sessions_created", "created_at"),
)
