"""The read side: budgets (``GET /v1/budget``), remaining, entries (``GET /v1/admin/ledger``), admin
views, the audit log, a reconciliation of spent figures with entries, and the history reads of the console
(a dataset's registrations, its spending over time and by analyst, an analyst's requests)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import _schema as s
from ._base import LedgerBase, budget_json, figures
from ._history import UtcDay, definition_changes, released_key
from .errors import InvalidInput
from .records import Remaining, entry_json
from .units import cost_of, rho_of, spent_json
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

    def dataset_history(self, dataset: str) -> list[dict[str, Any]]:
        """`dataset`'s registrations as `record_dataset` audited them, newest first: ``{at, actor, version,
        tables, changes}``, `changes` what each changed from the definition it replaced
        (`_history.definition_changes`)."""
        a = s.admin_audit
        q = sa.select(a.c.at, a.c.actor, a.c.old_value, a.c.new_value).where(a.c.action == "register_dataset")
        with self._db.read() as conn:
            name = self._dataset_name(conn, dataset)
            rows = conn.execute(q.where(a.c.target == name).order_by(a.c.id.desc())).all()
        out = []
        for r in rows:
            new = json.loads(r.new_value) if r.new_value else {}
            old = json.loads(r.old_value) if r.old_value else None
            out.append({"at": r.at.isoformat(), "actor": r.actor, "version": new.get("version"),
                        "tables": sorted(new.get("tables") or {}), "changes": definition_changes(new, old)})  # fmt: skip
        return out

    def spending_over_time(self, dataset: str, *, bucket: str = "day") -> list[dict[str, Any]]:
        """What `dataset` has been charged, oldest first: per UTC day (`bucket` "day", summed in the
        database) or per entry ("entry"): ``{at, entries, epsilon, delta, epsilon_cumulative,
        delta_cumulative}``, `at` the day (``YYYY-MM-DD``) or the entry's time. Summed exactly, then rounded
        up as spent is, so the last cumulative figures are the dataset's spent (of every window)."""
        if bucket not in ("day", "entry"):
            raise InvalidInput('bucket must be "day" or "entry"')
        e = s.ledger_entries
        if bucket == "day":
            day = UtcDay(e.c.at)
            q = sa.select(day, sa.func.count(), sa.func.sum(e.c.epsilon), sa.func.sum(e.c.delta)).group_by(day).order_by(day)
        else:
            q = sa.select(e.c.at, sa.literal(1), e.c.epsilon, e.c.delta).order_by(e.c.id)
        with self._db.read() as conn:
            rows = conn.execute(q.where(e.c.dataset == self._dataset_name(conn, dataset))).all()
        out, total = [], (0, 0)
        for at, n, eps, dlt in rows:
            units = (int(eps), int(dlt))
            total = (total[0] + units[0], total[1] + units[1])
            (de, dd), (ce, cd) = spent_json(units), spent_json(total)
            out.append({"at": str(at)[:10] if bucket == "day" else at.isoformat(), "entries": int(n), "epsilon": de, "delta": dd,
                        "epsilon_cumulative": ce, "delta_cumulative": cd})  # fmt: skip
        return out

    def spending_by_analyst(self, dataset: str) -> list[dict[str, Any]]:
        """What each analyst's charges on `dataset` add up to, summed in the database, most ε first:
        ``{analyst, entries, epsilon, delta}`` (rounded up). A charge to an organisation's shared allocation
        counts for the analyst who made it."""
        e = s.ledger_entries
        q = sa.select(e.c.analyst, sa.func.count(), sa.func.sum(e.c.epsilon), sa.func.sum(e.c.delta)).group_by(e.c.analyst)
        with self._db.read() as conn:
            rows = conn.execute(q.where(e.c.dataset == self._dataset_name(conn, dataset))).all()
        out = []
        for who, n, eps, dlt in sorted(rows, key=lambda r: (-int(r[2]), r[0])):
            epsilon, delta = spent_json((int(eps), int(dlt)))
            out.append({"analyst": who, "entries": int(n), "epsilon": epsilon, "delta": delta})
        return out

    def request_history(self, analyst: str, limit: int = 1000) -> list[dict[str, Any]]:
        """What `analyst` asked, newest first, with what each cost: its completed requests (every charged
        query has one; a free repeat has one when it was sent with a request id) and its charges made
        without a request (training jobs): ``{at, request_id, dataset, kind, sql, job_id, epsilon, delta,
        cached, answer}``. A free repeat (answered from the free-repeat store) has no ledger entry: cost 0,
        `cached` true; its stored answer holds no SQL, so its `sql` is that of the charge whose released
        answer it repeats, found by those values among the dataset's stored answers (None should they match
        charges of different SQL). `answer`: whether a stored answer can be shown again."""
        _check_limit(limit)
        r, e, cache = s.requests, s.ledger_entries, s.result_cache
        answered = sa.func.coalesce(r.c.completed_at, r.c.created_at).label("answered")
        asked = (
            sa.select(r.c.request_id, answered, r.c.dataset, r.c.entry_id, r.c.result, e.c.kind, e.c.detail, e.c.epsilon, e.c.delta)
            .select_from(r.outerjoin(e, e.c.id == r.c.entry_id))
            .where(r.c.analyst == analyst, r.c.status == s.COMPLETED)
            .order_by(answered.desc(), r.c.request_id.desc())
            .limit(limit)
        )
        unrequested = (
            sa.select(e.c.at, e.c.dataset, e.c.kind, e.c.detail, e.c.epsilon, e.c.delta)
            .where(e.c.analyst == analyst, e.c.request_id.is_(None))
            .order_by(e.c.id.desc())
            .limit(limit)
        )
        with self._db.read() as conn:
            requests, charges = conn.execute(asked).all(), conn.execute(unrequested).all()
            repeated = {x.dataset for x in requests if x.entry_id is None and x.dataset is not None}
            sources: dict[str, set[str | None]] = {}  # released values -> the SQL of the charges that released them
            if repeated:
                q = sa.select(cache.c.result, e.c.detail).join(e, e.c.id == cache.c.entry_id).where(cache.c.dataset.in_(repeated))
                for x in conn.execute(q):
                    sources.setdefault(released_key(json.loads(x.result)), set()).add(json.loads(x.detail).get("sql"))
        out: list[tuple[datetime, dict[str, Any]]] = []
        for x in requests:
            result = json.loads(x.result) if x.result else {}
            exact = x.entry_id is None and _exact(result)  # a public table's answer: free and exact, never charged
            cached = x.entry_id is None and not exact
            if exact:
                sql, epsilon, delta = None, 0.0, 0.0
            elif cached:
                found = sources.get(released_key(result), set())
                sql, epsilon, delta = (next(iter(found)) if len(found) == 1 else None), 0.0, 0.0
            else:
                sql = json.loads(x.detail).get("sql")
                epsilon, delta = spent_json((int(x.epsilon), int(x.delta)))
            out.append((x.answered, {"at": x.answered.isoformat(), "request_id": x.request_id, "dataset": x.dataset, "kind": x.kind or ("public query" if exact else "query"),
                        "sql": sql, "job_id": None, "epsilon": epsilon, "delta": delta, "cached": cached, "answer": x.result is not None}))  # fmt: skip
        for x in charges:
            epsilon, delta = spent_json((int(x.epsilon), int(x.delta)))
            detail = json.loads(x.detail)
            out.append((x.at, {"at": x.at.isoformat(), "request_id": None, "dataset": x.dataset, "kind": x.kind, "sql": detail.get("sql"),
                        "job_id": detail.get("job_id"), "epsilon": epsilon, "delta": delta, "cached": False, "answer": False}))  # fmt: skip
        out.sort(key=lambda item: item[0], reverse=True)  # stable: each part keeps its own order among equal times
        return [item for _, item in out[:limit]]


def _sums(conn: Connection, *keys: Any) -> dict[tuple[Any, ...], tuple[int, int]]:
    """Sums of the entries' ε and δ units, grouped by `keys`."""
    e = s.ledger_entries
    q = sa.select(*keys, sa.func.sum(e.c.epsilon), sa.func.sum(e.c.delta)).group_by(*keys)
    return {tuple(row[:-2]): (int(row[-2]), int(row[-1])) for row in conn.execute(q)}


def _exact(result: dict[str, Any]) -> bool:
    """Whether a stored answer is a public table's: exact values (no mechanism), released free."""
    accuracy = result.get("accuracy") or {}
    return bool(accuracy) and all(isinstance(a, dict) and a.get("mechanism") == "none" for a in accuracy.values())


def _check_limit(limit: object) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer in [1, {MAX_LIMIT}]")

