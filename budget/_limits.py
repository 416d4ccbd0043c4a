"""Limits: a dataset's total and the allocations inside it, set by administrators, audited.

Setting a limit never touches what was spent: a total cut below the spending leaves nothing remaining
(and records the spending at the cut, which the schema's CHECK then holds as the ceiling). Setting a
limit to what it already is changes nothing and is not audited again (datasets are registered anew at
every start). Dataset names ignore case: a dataset re-registered as ``BANK`` finds the budget (and the
spending) of ``bank``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from mechanisms.cost import round_down

from . import _schema as s
from ._base import Amount, LedgerBase, allocation_key, budget_json, check_name, dumps_object, totals, totals_json
from .errors import UnknownDataset
from .records import Remaining
from .units import Units, total_units
from .windows import Renewal, window_bounds

#: the warning `set_allocation`'s callers report where an allocation promises more than the dataset has left
EXCEEDS_DATASET_REMAINING = "exceeds_dataset_remaining"


class Limits(LedgerBase):
    """The administrators' side of budgets: totals and allocations."""

    def set_dataset_budget(
        self,
        dataset: str,
        *,
        epsilon: Amount,
        delta: Amount = 0,
        renew: Renewal | None = None,
        actor: str = "system",
    ) -> dict[str, Any]:
        """Set the total (ε, δ) that all analysts of `dataset` together may spend. Creates the dataset's
        budget or changes its total; what was spent stays (a total below it leaves nothing remaining).
        With `renew`, the total is the cap over all windows and each window may spend `renew`'s
        allowance (`windows`); without, the budget does not renew."""
        dataset = check_name(dataset, "dataset name")
        total = total_units(epsilon, delta)
        t = s.dataset_budgets

        def tx(conn: Connection) -> dict[str, Any]:
            name = self._dataset_name(conn, dataset)  # `Bank` re-registered as `BANK` keeps its spending
            e = s.ledger_entries
            row = self._set_limit(conn, t, t.c.dataset == name, {"dataset": name}, total, renew, actor,
                                  "set_dataset_budget", name, e.c.dataset == name)  # fmt: skip
            return budget_json(row, self._clock())

        return self._db.write(tx)

    def record_dataset(self, dataset: str, *, definition: dict[str, Any], actor: str = "system") -> bool:
        """Audit the registration of `dataset`: its `definition` (metadata and version, a JSON object) is
        recorded with the one it replaces when it differs from the last recorded (datasets are registered
        anew at every start; an unchanged one is not audited again). Returns whether it was recorded."""
        dataset = check_name(dataset, "dataset name")
        new = json.loads(dumps_object(definition, "definition"))
        a = s.admin_audit

        def tx(conn: Connection) -> bool:
            name = self._dataset_name(conn, dataset)
            q = sa.select(a.c.new_value).where(a.c.action == "register_dataset", a.c.target == name)
            last = conn.execute(q.order_by(a.c.id.desc()).limit(1)).scalar()
            old = None if last is None else json.loads(last)
            if old == new:
                return False
            self._audit(conn, actor, "register_dataset", name, old, new)
            return True

        return self._db.write(tx)

    def set_allocation(
        self,
        analyst: str,
        dataset: str,
        *,
        epsilon: Amount,
        delta: Amount = 0,
        renew: Renewal | None = None,
        actor: str = "system",
    ) -> dict[str, Any]:
        """Set `analyst`'s allocation on `dataset` (inside the dataset's total; allocations may add up to
        more than it — the dataset total still binds). What was spent stays. `renew` as for
        `set_dataset_budget`."""
        analyst = check_name(analyst, "analyst name")
        with self._db.read() as conn:
            self._analyst_row(conn, analyst)  # raises UnknownAnalyst: no allocations for typos
        return self._set_allocation(s.ANALYST, analyst, dataset, epsilon, delta, renew, actor)

    def allocation_warnings(self, analyst: str, dataset: str) -> list[dict[str, Any]]:
        """What an administrator should know of `analyst`'s allocation on `dataset` as it now stands: one
        warning per parameter (ε, δ) where what the allocation leaves to spend exceeds what the dataset's
        total has left — accepted (the dataset total binds every charge, and may be raised later), but the
        analyst cannot spend it all. Compared exactly; figures rounded down. Raises NoAllocation."""
        with self._db.read() as conn:
            return allocation_warnings(self._remaining_in(conn, check_name(analyst, "analyst name"), dataset),
                                       dataset=self._dataset_name(conn, dataset))  # fmt: skip

    def set_organisation_allocation(
        self,
        organisation: str,
        dataset: str,
        *,
        epsilon: Amount,
        delta: Amount = 0,
        renew: Renewal | None = None,
        actor: str = "system",
    ) -> dict[str, Any]:
        """An allocation shared by every analyst of `organisation` that has none of its own on `dataset`."""
        organisation = check_name(organisation, "organisation")
        return self._set_allocation(s.ORGANISATION, organisation, dataset, epsilon, delta, renew, actor)

    def _set_allocation(
        self, kind: str, holder: str, dataset: str, epsilon: Amount, delta: Amount, renew: Renewal | None, actor: str
    ) -> dict[str, Any]:
        dataset = check_name(dataset, "dataset name")
        total = total_units(epsilon, delta)

        def tx(conn: Connection) -> dict[str, Any]:
            name = self._dataset_name(conn, dataset)
            known = sa.select(s.dataset_budgets.c.dataset).where(s.dataset_budgets.c.dataset == name)
            if conn.execute(known).first() is None:
                raise UnknownDataset(dataset)
            target = f"{holder}/{name}" if kind == s.ANALYST else f"organisation:{holder}/{name}"
            key = {"holder_kind": kind, "holder": holder, "dataset": name}
            where = allocation_key(kind, holder, name)
            e = s.ledger_entries
            paid_by = e.c.organisation.is_(None) & (e.c.analyst == holder) if kind == s.ANALYST else e.c.organisation == holder
            row = self._set_limit(conn, s.allocations, where, key, total, renew, actor, "set_allocation", target,
                                  paid_by & (e.c.dataset == name))  # fmt: skip
            return {kind: holder, **budget_json(row, self._clock())}

        return self._db.write(tx)

    def _set_limit(
        self,
        conn: Connection,
        t: sa.Table,
        where: Any,
        key: dict[str, str],
        total: Units,
        renew: Renewal | None,
        actor: str,
        action: str,
        target: str,
        entries_of: Any,
    ) -> Row[Any]:
        """Create or change the budget row `where` of `t` (locked first); audit a change; return the row.
        `entries_of` selects the ledger entries the row has paid for (a renewing row's current window
        counts their spending)."""
        if renew is not None:
            renew.check_within(total)
        now = self._clock()
        row = conn.execute(sa.select(t).where(where).with_for_update()).first()
        schedule = _schedule(conn, renew, now, entries_of)
        if row is None:
            conn.execute(
                t.insert().values(
                    **key,
                    epsilon_total=total[0],
                    delta_total=total[1],
                    epsilon_spent=0,
                    delta_spent=0,
                    epsilon_spent_when_cut=0,
                    delta_spent_when_cut=0,
                    **schedule,
                    updated_at=now,
                )
            )
            self._audit(conn, actor, action, target, None, limit_json(total, renew))
        elif totals(row) != total or _renewal_of(row) != renew:
            conn.execute(
                t.update()
                .where(where)
                .values(
                    epsilon_total=total[0],
                    delta_total=total[1],
                    # cut below the spending: the spending stands (the CHECK allows it), nothing remains
                    epsilon_spent_when_cut=row.epsilon_spent if row.epsilon_spent > total[0] else 0,
                    delta_spent_when_cut=row.delta_spent if row.delta_spent > total[1] else 0,
                    **schedule,
                    updated_at=now,
                )
            )
            self._audit(conn, actor, action, target, limit_json(totals(row), _renewal_of(row)), limit_json(total, renew))
        return conn.execute(sa.select(t).where(where)).one()


def _schedule(conn: Connection, renew: Renewal | None, now: datetime, entries_of: Any) -> dict[str, Any]:
    """The schedule columns a limit sets: none, or the window holding `now` with what the row's entries
    have already spent in it (so a schedule set mid-window grants no fresh room)."""
    if renew is None:
        return {"renew_every": None, "epsilon_per_window": None, "delta_per_window": None, "window_start": None,
                "epsilon_window_spent": 0, "delta_window_spent": 0}  # fmt: skip
    start, _ = window_bounds(renew.every, now)
    e = s.ledger_entries
    q = sa.select(sa.func.coalesce(sa.func.sum(e.c.epsilon), 0), sa.func.coalesce(sa.func.sum(e.c.delta), 0))
    used = conn.execute(q.where(entries_of, e.c.at >= start)).one()
    return {"renew_every": renew.every, "epsilon_per_window": renew.per_window[0], "delta_per_window": renew.per_window[1],
            "window_start": start, "epsilon_window_spent": int(used[0]), "delta_window_spent": int(used[1])}  # fmt: skip


def _renewal_of(row: Row[Any]) -> Renewal | None:
    if row.renew_every is None:
        return None
    return Renewal(row.renew_every, (int(row.epsilon_per_window), int(row.delta_per_window)))


def limit_json(total: Units, renew: Renewal | None) -> dict[str, Any]:
    """A limit as the audit log records it: its totals, and its schedule where it renews."""
    out: dict[str, Any] = dict(totals_json(total))
    if renew is not None:
        out["renew"] = {"every": renew.every, **totals_json(renew.per_window)}
    return out


def allocation_warnings(remaining: Remaining, *, dataset: str) -> list[dict[str, Any]]:
    """`Limits.allocation_warnings` from a `Remaining` (pure): ``{code, parameter, allocation_remaining,
    dataset_remaining, detail}`` for ε and for δ where the allocation's room exceeds the dataset's."""
    out = []
    for parameter, symbol in (("epsilon", "ε"), ("delta", "δ")):
        mine, left = getattr(remaining.analyst, parameter), getattr(remaining.dataset, parameter)
        if mine > left:
            a, d = round_down(mine), round_down(left)
            out.append({
                "code": EXCEEDS_DATASET_REMAINING, "parameter": parameter, "allocation_remaining": a,
                "dataset_remaining": d,
                "detail": f"the allocation leaves {symbol}={a:g} to spend but dataset {dataset!r} has {symbol}={d:g} "
                          f"left: the dataset's total binds first",
            })  # fmt: skip
    return out
