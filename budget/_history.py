"""Pure helpers of the history reads (`_reads`): what changed between two recorded dataset definitions,
the UTC day of a stored timestamp in SQL on every engine, and what ties a free repeat to the charge
whose released answer it repeated. No I/O here."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles


def definition_changes(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """What a dataset's registration (`new`, as `Limits.record_dataset` audits it) changed from the one it
    replaced (`old`; None for the first): tables added and removed; in the tables both have, columns
    added, removed and changed (type, bounds, categories...) as ``table.column``, and the table's other
    settings that changed (source, max_rows_per_unit...) as ``table.setting``; and the other members of
    the definition that changed (privacy unit, budget, data version)."""
    if old is None:
        return {"first": True}
    new_tables, old_tables = new.get("tables") or {}, old.get("tables") or {}
    changes: dict[str, Any] = {
        "first": False,
        "tables_added": sorted(set(new_tables) - set(old_tables)),
        "tables_removed": sorted(set(old_tables) - set(new_tables)),
        "columns_added": [],
        "columns_removed": [],
        "columns_changed": [],
        "table_settings": [],
        "other": _differing(new, old, skip="tables"),
    }
    for table in sorted(set(new_tables) & set(old_tables)):
        now, was = new_tables[table], old_tables[table]
        columns, before = now.get("columns") or {}, was.get("columns") or {}
        changes["columns_added"] += [f"{table}.{c}" for c in sorted(set(columns) - set(before))]
        changes["columns_removed"] += [f"{table}.{c}" for c in sorted(set(before) - set(columns))]
        changes["columns_changed"] += [f"{table}.{c}" for c in sorted(set(columns) & set(before)) if columns[c] != before[c]]
        changes["table_settings"] += [f"{table}.{k}" for k in _differing(now, was, skip="columns")]
    return changes


def _differing(new: dict[str, Any], old: dict[str, Any], *, skip: str) -> list[str]:
    return sorted(k for k in (set(new) | set(old)) - {skip} if new.get(k) != old.get(k))


def released_key(result: dict[str, Any]) -> str:
    """A released answer's values: what a free repeat copies, unchanged, from the charge that released
    them (its request id and cost are its own)."""
    return json.dumps([result.get("columns"), result.get("rows"), result.get("accuracy")], sort_keys=True)


class UtcDay(sa.sql.expression.FunctionElement[Any]):
    """The UTC calendar day of a stored (naive UTC) timestamp, as ``YYYY-MM-DD`` text on every engine:
    SQLite's ``CAST(.. AS DATE)`` would yield the year alone, so it has its own ``date()``."""

    type = sa.String()
    inherit_cache = True
    name = "utc_day"


@compiles(UtcDay)
def _utc_day(element: UtcDay, compiler: Any, **kw: Any) -> str:
    return f"CAST(CAST({compiler.process(element.clauses, **kw)} AS DATE) AS VARCHAR(10))"


@compiles(UtcDay, "sqlite")
def _utc_day_sqlite(element: UtcDay, compiler: Any, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"
