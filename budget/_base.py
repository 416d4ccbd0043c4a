"""What the parts of the `Ledger` share: its database, its clock, row lookups, the audit trail, and the
small conversions between rows and the JSON edge."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from . import _schema as s
from ._db import Database
from .errors import InvalidInput, NoAllocation, UnknownAnalyst
from .records import Analyst, Remaining
from .units import Units, cost_of, remaining_json, spent_json, total_json
from .windows import window_json, window_room

Amount = float | str | Fraction | int | Decimal
MAX_NAME = 200


class LedgerBase:
    """State and lookups shared by the ledger's parts (principals, limits, reads, charging)."""

    _db: Database
    _clock: Callable[[], datetime]

    def _audit(self, conn: Connection, actor: str, action: str, target: str, old: Any, new: Any) -> None:
        conn.execute(
            s.admin_audit.insert().values(
                at=self._clock(),
                actor=check_name(actor, "actor"),
                action=action,
                target=target,
                old_value=None if old is None else json.dumps(old, sort_keys=True),
                new_value=None if new is None else json.dumps(new, sort_keys=True),
            )
        )

    @staticmethod
    def _analyst_row(conn: Connection, name: str, *, lock: bool = False) -> Row[Any]:
        q = sa.select(s.analysts).where(s.analysts.c.name == name)
        row = conn.execute(q.with_for_update() if lock else q).first()
        if row is None:
            raise UnknownAnalyst(name)
        return row

    def _analyst_in(self, conn: Connection, name: str) -> Analyst:
        return analyst_record(self._analyst_row(conn, name))

    @staticmethod
    def _allocation(conn: Connection, analyst: str, org: str | None, dataset: str, *, lock: bool = False) -> Row[Any]:
        """The allocation that pays for `analyst` on `dataset`: its own, else its organisation's."""
        t = s.allocations
        for kind, holder in ((s.ANALYST, analyst), (s.ORGANISATION, org)):
            if holder is None:
                continue
            q = sa.select(t).where(allocation_key(kind, holder, dataset))
            row = conn.execute(q.with_for_update() if lock else q).first()
            if row is not None:
                return row
        raise NoAllocation(analyst=analyst, dataset=dataset)

    @staticmethod
    def _allocations_of(conn: Connection, analyst: str, org: str | None) -> list[Row[Any]]:
        t = s.allocations
        holders = [sa.and_(t.c.holder_kind == s.ANALYST, t.c.holder == analyst)]
        if org is not None:
            holders.append(sa.and_(t.c.holder_kind == s.ORGANISATION, t.c.holder == org))
        chosen: dict[str, Row[Any]] = {}
        for row in conn.execute(sa.select(t).where(sa.or_(*holders))):
            if row.dataset not in chosen or row.holder_kind == s.ANALYST:  # its own allocation wins
                chosen[row.dataset] = row
        return [chosen[d] for d in sorted(chosen)]

    @staticmethod
    def _dataset_name(conn: Connection, dataset: str) -> str:
        """The spelling under which `dataset` has its budget. Dataset names are case-insensitive (as in
        the gateway's catalog) and the ledger keeps the first spelling: were ``Bank`` a budget of its own
        beside ``bank``, re-registering a dataset under another case would start its spending at zero."""
        t = s.dataset_budgets
        if conn.execute(sa.select(t.c.dataset).where(t.c.dataset == dataset)).first() is not None:
            return dataset
        q = sa.select(t.c.dataset).where(sa.func.lower(t.c.dataset) == dataset.lower()).order_by(t.c.dataset)
        found = conn.execute(q.limit(1)).scalar()
        return dataset if found is None else str(found)

    def _remaining_in(self, conn: Connection, analyst: str, dataset: str) -> Remaining:
        dataset = self._dataset_name(conn, dataset)
        org = self._analyst_row(conn, analyst).organisation
        alloc = self._allocation(conn, analyst, org, dataset)
        ds = conn.execute(sa.select(s.dataset_budgets).where(s.dataset_budgets.c.dataset == dataset)).one()
        now = self._clock()
        return Remaining(analyst=cost_of(room(alloc, now)), dataset=cost_of(room(ds, now)))


# -- helpers ----------------------------------------------------------------------------------------------


def check_name(value: object, what: str, *, limit: int = MAX_NAME) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
        raise InvalidInput(f"{what} must be a non-empty printable string of at most {limit} characters")
    return value


def dumps_object(value: object, what: str) -> str:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} is not JSON-serialisable: {type(exc).__name__}") from None


def request_key(analyst: str, request_id: str) -> Any:
    return sa.and_(s.requests.c.analyst == analyst, s.requests.c.request_id == request_id)


def allocation_key(kind: str, holder: str, dataset: str) -> Any:
    t = s.allocations
    return sa.and_(t.c.holder_kind == kind, t.c.holder == holder, t.c.dataset == dataset)


def totals(row: Row[Any]) -> Units:
    return int(row.epsilon_total), int(row.delta_total)


def spent(row: Row[Any]) -> Units:
    return int(row.epsilon_spent), int(row.delta_spent)


def room(row: Row[Any], now: datetime, *, extra: Units = (0, 0)) -> Units:
    """What remains of a budget row at `now` (after spending `extra` more): never below zero. A row that
    renews leaves the lesser of its current window's room and its cap's (`windows`)."""
    total, used = totals(row), spent(row)
    left = max(0, total[0] - used[0] - extra[0]), max(0, total[1] - used[1] - extra[1])
    window = window_room(row, now, extra=extra)
    return left if window is None else (min(left[0], window[0]), min(left[1], window[1]))


def totals_json(total: Units) -> dict[str, float]:
    epsilon, delta = total_json(total)
    return {"epsilon": epsilon, "delta": delta}


def figures(row: Row[Any], now: datetime) -> dict[str, Any]:
    """A row's figures at `now`; a row that renews adds its current `window` (its total is then the cap
    over all windows)."""
    (et, dt), (es, ds), (er, dr) = total_json(totals(row)), spent_json(spent(row)), remaining_json(room(row, now))
    out: dict[str, Any] = {
        "epsilon_total": et,
        "epsilon_spent": es,
        "epsilon_remaining": er,
        "delta_total": dt,
        "delta_spent": ds,
        "delta_remaining": dr,
    }
    window = window_json(row, now)
    if window is not None:
        out["window"] = window
    return out


def budget_json(row: Row[Any], now: datetime) -> dict[str, Any]:
    return {"dataset": row.dataset, **figures(row, now)}


def analyst_record(row: Row[Any]) -> Analyst:
    return Analyst(
        name=row.name,
        role=row.role,
        organisation=row.organisation,
        key_id=row.key_id,
        disabled=bool(row.disabled),
        created_at=row.created_at,
    )
