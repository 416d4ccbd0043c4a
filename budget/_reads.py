"""The read side: budgets (``GET /v1/budget``), remaining, entries (``GET /v1/admin/ledger``), admin
views, the audit log, and a reconciliation of spent figures with entries."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import _schema as s
from ._base import LedgerBase, budget_json, figures
from .errors import InvalidInput
from .records import Remaining, entry_json
from .units import cost_of, rho_of
from .windows import window_bounds, window_spent

MAX_LIMIT = 100_000


class Reads(LedgerBase):
    """What the ledger says: figures for analysts and administrators, entries, the audit log."""

    def budgets(self, analyst: str) -> list[dict[str, Any]]:
        """One item per dataset the analyst may use (``GET /v1/budget``): its own allocation's figures
        (or its organisation's shared one, then named) and the dataset's in ``dataset_level``. Spent
        rounds up, remaining down, totals as given."""
        with self._db.read() as conn:
            row = self._analyst_row(conn, analyst)
            out, now = [], self._clock()
            for alloc in self._allocations_of(conn, analyst, row.organisation):
                ds = conn.execute(
                    sa.select(s.dataset_budgets).where(s.dataset_budgets.c.dataset == alloc.dataset)
                ).one()
                item = {"dataset": alloc.dataset, **figures(alloc, now)}
                if alloc.holder_kind == s.ORGANISATION:
                    item["organisation"] = alloc.holder
                item["dataset_level"] = figures(ds, now)
                out.append(item)
        return out

    def remaining(self, analyst: str, dataset: str) -> dict[str, dict[str, float]]:
        """``{analyst: {epsilon, delta}, dataset: {epsilon, delta}}``, rounded down."""
        return self.remaining_cost(analyst, dataset).to_json()

    def remaining_cost(self, analyst: str, dataset: str) -> Remaining:
        """What remains at both levels, exact. Raises NoAllocation."""
        with self._db.read() as conn:
            return self._remaining_in(conn, analyst, dataset)

    def allocations_of(self, analyst: str) -> list[str]:
        """The datasets `analyst` may use (an allocation of its own or its organisation's), sorted."""
        with self._db.read() as conn:
            row = self._analyst_row(conn, analyst)
            return [a.dataset for a in self._allocations_of(conn, analyst, row.organisation)]

    def entries(
        self, dataset: str | None = None, analyst: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Ledger entries, newest first, in the shape of ``GET /v1/admin/ledger``."""
        _check_limit(limit)
        t = s.ledger_entries
        q = sa.select(t).order_by(t.c.id.desc()).limit(limit)
        if dataset is not None:
            q = q.where(t.c.dataset == dataset)
        if analyst is not None:
            q = q.where(t.c.analyst == analyst)
        with self._db.read() as conn:
            rows = conn.execute(q).all()
        return [
            entry_json(
                id=r.id,
                at=r.at,
                analyst=r.analyst,
                organisation=r.organisation,
                dataset=r.dataset,
                request_id=r.request_id,
                kind=r.kind,
                detail=json.loads(r.detail),
                cost=cost_of((r.epsilon, r.delta), rho_of(r.rho)),
            )
            for r in rows
        ]

    def dataset_budgets(self) -> list[dict[str, Any]]:
        """Every dataset's total, spent and remaining (admin view)."""
        with self._db.read() as conn:
            rows = conn.execute(sa.select(s.dataset_budgets).order_by(s.dataset_budgets.c.dataset)).all()
        now = self._clock()
        return [budget_json(r, now) for r in rows]

    def allocations(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Every allocation (admin view): ``{analyst | organisation, dataset, totals, spent, remaining}``."""
        t = s.allocations
        q = sa.select(t).order_by(t.c.dataset, t.c.holder_kind, t.c.holder)
        if dataset is not None:
            q = q.where(t.c.dataset == dataset)
        now = self._clock()
        with self._db.read() as conn:
            return [{r.holder_kind: r.holder, **budget_json(r, now)} for r in conn.execute(q)]

    def audit_log(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Administrative changes, newest first: ``{id, at, actor, action, target, old, new}``."""
        _check_limit(limit)
        t = s.admin_audit
        with self._db.read() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(limit)).all()
        return [
            {
                "id": r.id,
                "at": r.at.isoformat(),
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "old": None if r.old_value is None else json.loads(r.old_value),
                "new": None if r.new_value is None else json.loads(r.new_value),
            }
            for r in rows
        ]

    def verify(self) -> list[str]:
        """Reconcile every spent figure with the sum of its entries; returns the discrepancies (empty
        when the ledger is consistent, which the charge transaction guarantees)."""
        e = s.ledger_entries
        kind = sa.case((e.c.organisation.is_(None), s.ANALYST), else_=s.ORGANISATION)
        holder = sa.func.coalesce(e.c.organisation, e.c.analyst)
        problems = []
        with self._db.read() as conn:
            by_dataset = _sums(conn, e.c.dataset)
            by_holder = _sums(conn, kind, holder, e.c.dataset)
            for r in conn.execute(sa.select(s.dataset_budgets)):
                if by_dataset.get((r.dataset,), (0, 0)) != (r.epsilon_spent, r.delta_spent):
                    problems.append(f"dataset {r.dataset!r}: spent differs from the sum of its entries")
            for r in conn.execute(sa.select(s.allocations)):
                if by_holder.get((r.holder_kind, r.holder, r.dataset), (0, 0)) != (r.epsilon_spent, r.delta_spent):
                    problems.append(f"{r.holder_kind} {r.holder!r} on {r.dataset!r}: spent differs from its entries")
            problems += self._verify_windows(conn)
        return problems

    def _verify_windows(self, conn: Connection) -> list[str]:
        """A renewing row's spending in its current window equals its entries since the window began."""
        e, now, problems = s.ledger_entries, self._clock(), []
        total = sa.select(sa.func.coalesce(sa.func.sum(e.c.epsilon), 0), sa.func.coalesce(sa.func.sum(e.c.delta), 0))
        rows = [(f"dataset {r.dataset!r}", r, e.c.dataset == r.dataset)
                for r in conn.execute(sa.select(s.dataset_budgets).where(s.dataset_budgets.c.renew_every.is_not(None)))]
        for r in conn.execute(sa.select(s.allocations).where(s.allocations.c.renew_every.is_not(None))):
            paid = e.c.organisation.is_(None) & (e.c.analyst == r.holder) if r.holder_kind == s.ANALYST else e.c.organisation == r.holder
            rows.append((f"{r.holder_kind} {r.holder!r} on {r.dataset!r}", r, paid & (e.c.dataset == r.dataset)))
        for what, r, paid in rows:
            start = window_bounds(r.renew_every, now)[0]
            used = conn.execute(total.where(paid, e.c.at >= start)).one()
            if (int(used[0]), int(used[1])) != window_spent(r, now):
                problems.append(f"{what}: the current window's spending differs from its entries")
        return problems


def _sums(conn: Connection, *keys: Any) -> dict[tuple[Any, ...], tuple[int, int]]:
    """Sums of the entries' ε and δ units, grouped by `keys`."""
    e = s.ledger_entries
    q = sa.select(*keys, sa.func.sum(e.c.epsilon), sa.func.sum(e.c.delta)).group_by(*keys)
    return {tuple(row[:-2]): (int(row[-2]), int(row[-1])) for row in conn.execute(q)}


def _check_limit(limit: object) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer in [1, {MAX_LIMIT}]")
