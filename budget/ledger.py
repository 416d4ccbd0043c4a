"""The ledger: every release is charged here, exactly, before it leaves the gateway.

Guarantee. `charge` checks both budget levels and records the spending in one transaction that holds
the write locks it depends on (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE`` of
the request, allocation and dataset rows, in that order), so concurrent charges — threads or processes
— compose sequentially and never take either level past its total; CHECK constraints in the schema
hold the same line should the code ever be wrong. A refused charge writes nothing. Spending is never
refunded, reset or lowered: the only writes to spent figures add to them. A budget that renews on a
schedule (`windows`) also counts its current window's spending, which starts at 0 in each new window;
its total, the cap over all windows, never renews.

Idempotency. A request id (scoped to its analyst) is reserved while its request runs, then completed
by the charge that pays for it — atomically, with the released answer stored alongside — so a retry
gets the stored answer and is not charged twice. A charge for an already completed request id charges
nothing and returns the earlier charge with its answer (`Charge.replayed`).

Amounts are integers of fixed units (`units`): a charge rounds up to 1e-12 of ε and 1e-18 of δ. A
cost that carries a ρ (Gaussian noise accounted in zCDP) is charged its converted (ε, δ); the entry
records the ρ beside them, exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from mechanisms.cost import ZERO, Cost

from . import _migrations
from . import _schema as s
from ._base import allocation_key, check_name, dumps_object, request_key, room
from ._db import Database
from ._limits import Limits
from ._principals import ROLES, Principals
from ._reads import Reads
from .errors import BudgetExhausted, InvalidInput, RequestConflict, RequestInProgress
from .records import Charge, Remaining, Reservation
from .units import charge_units, cost_of, rho_of, rho_text
from .windows import renews_at, window_update

__all__ = ["ROLES", "Ledger"]


class Ledger(Principals, Limits, Reads):
    """The durable ledger of privacy spending, over SQLAlchemy (SQLite file or PostgreSQL).

    `url` is a SQLAlchemy URL (``sqlite:///data/ledger.db``, ``postgresql+psycopg://...``); `schema`
    puts the tables in a PostgreSQL schema of their own. A reservation older than `stale_after` is
    taken to belong to a request that died and may be taken over by a retry. Thread-safe: share one
    instance per process. Call `migrate()` (and, on start, `recover()`) before use.

    Its parts: principals (`create_analyst`, `authenticate`, `ensure_admin_key`, ...) in `_principals`;
    limits (`set_dataset_budget`, `set_allocation`, ...) in `_limits`; the read side (`budgets`,
    `remaining`, `entries`, `audit_log`, ...) in `_reads`; charging and request ids here.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        stale_after: timedelta = timedelta(minutes=15),
        clock: Callable[[], datetime] | None = None,
        pool_size: int = 5,
        max_overflow: int = 10,
    ) -> None:
        self._db = Database(url, schema=schema, pool_size=pool_size, max_overflow=max_overflow)
        self.stale_after = stale_after
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._db.backend

    def close(self) -> None:
        """Close the pooled connections."""
        self._db.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Bring the schema up to date; returns the versions applied (none when already current).
        Idempotent, and safe when several processes start at once."""
        return self._db.write(lambda conn: _migrations.migrate(conn, schema=self._db.schema))

    def schema_version(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute(sa.select(sa.func.max(s.schema_version.c.version))).scalar() or 0)

    def recover(self, *, older_than: timedelta | None = None) -> int:
        """Drop reservations left in progress by requests that died (they charged nothing: a charge
        completes its reservation in the same transaction). With `older_than` None, all of them — for a
        single process at start; several processes sharing the ledger pass `stale_after` so as not to
        drop each other's live ones (which would cost a repeated computation, never a double charge).
        Returns how many were dropped."""
        cutoff = self._clock() - (older_than or timedelta(0))

        def tx(conn: Connection) -> int:
            r = conn.execute(
                s.requests.delete().where(s.requests.c.status == s.IN_PROGRESS, s.requests.c.created_at <= cutoff)
            )
            return int(r.rowcount)

        return self._db.write(tx)

    # -- charging -------------------------------------------------------------------------------------

    def charge(
        self,
        *,
        analyst: str,
        dataset: str,
        cost: Cost,
        kind: str,
        request_id: str | None = None,
        detail: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        cache_key: str | None = None,
        body_hash: str | None = None,
    ) -> Charge:
        """Charge `cost` to `analyst` on `dataset`, or raise with nothing written.

        In one transaction: check the analyst's allocation (its own, else its organisation's) and the
        dataset's total; add the cost to both spent figures; append the ledger entry; complete the
        request id's reservation with `result`; store `result` under `cache_key` (the first answer
        stored under a key stays). Raises NoAllocation, BudgetExhausted (`level` "analyst" or
        "dataset"), RequestConflict (the request id was completed for another dataset). A request id
        already completed returns its earlier charge and answer and charges nothing."""
        if not isinstance(cost, Cost):
            raise InvalidInput("cost must be a mechanisms.cost.Cost")
        analyst = check_name(analyst, "analyst name")
        dataset = check_name(dataset, "dataset name")
        kind = check_name(kind, "kind", limit=32)
        request_id = None if request_id is None else check_name(request_id, "request_id")
        if cache_key is not None and (
            result is None or not isinstance(cache_key, str) or not 0 < len(cache_key) <= 256
        ):
            raise InvalidInput("cache_key needs a result, and at most 256 characters")
        detail = dict(detail or {})
        detail_text = dumps_object(detail, "detail")
        result_text = None if result is None else dumps_object(result, "result")
        units = charge_units(cost)
        given = dataset

        def tx(conn: Connection) -> Charge:
            dataset = self._dataset_name(conn, given)  # the budget's own spelling (names ignore case)
            now = self._clock()
            req = None
            if request_id is not None:
                req = conn.execute(
                    sa.select(s.requests).where(request_key(analyst, request_id)).with_for_update()
                ).first()
                if req is not None and req.status == s.COMPLETED:
                    if req.dataset is not None and req.dataset.lower() != dataset.lower():
                        raise RequestConflict(analyst=analyst, request_id=request_id)
                    return self._replay(conn, req, analyst, dataset, kind)
            org = self._analyst_row(conn, analyst).organisation
            alloc = self._allocation(conn, analyst, org, dataset, lock=True)
            ds = conn.execute(
                sa.select(s.dataset_budgets).where(s.dataset_budgets.c.dataset == dataset).with_for_update()
            ).one()
            shared = org if alloc.holder_kind == s.ORGANISATION else None
            _refuse_past_room(alloc, ds, units, now, analyst=analyst, dataset=dataset, organisation=shared)
            for t, where, row in (
                (s.allocations, allocation_key(alloc.holder_kind, alloc.holder, dataset), alloc),
                (s.dataset_budgets, s.dataset_budgets.c.dataset == dataset, ds),
            ):
                conn.execute(
                    t.update()
                    .where(where)
                    .values(
                        epsilon_spent=t.c.epsilon_spent + units[0],
                        delta_spent=t.c.delta_spent + units[1],
                        **window_update(row, now, units),
                    )
                )
            inserted = conn.execute(
                s.ledger_entries.insert().values(
                    at=now,
                    analyst=analyst,
                    organisation=shared,
                    dataset=dataset,
                    request_id=request_id,
                    kind=kind,
                    detail=detail_text,
                    epsilon=units[0],
                    delta=units[1],
                    rho=rho_text(cost.rho),
                )
            ).inserted_primary_key
            assert inserted is not None
            entry_id = int(inserted[0])
            if request_id is not None:
                done = {
                    "status": s.COMPLETED,
                    "dataset": dataset,
                    "entry_id": entry_id,
                    "result": result_text,
                    "completed_at": now,
                }
                if req is None:
                    conn.execute(
                        s.requests.insert().values(
                            analyst=analyst,
                            request_id=request_id,
                            body_hash=body_hash,
                            created_at=now,
                            **done,
                        )
                    )
                else:
                    if body_hash is not None:
                        done["body_hash"] = body_hash
                    conn.execute(s.requests.update().where(request_key(analyst, request_id)).values(**done))
            if cache_key is not None and result_text is not None:
                self._cache_put(conn, cache_key, dataset, entry_id, result_text, now)
            return Charge(
                id=entry_id,
                at=now,
                analyst=analyst,
                dataset=dataset,
                request_id=request_id,
                kind=kind,
                cost=cost_of(units, cost.rho),
                remaining=Remaining(analyst=cost_of(room(alloc, now, extra=units)), dataset=cost_of(room(ds, now, extra=units))),
                detail=detail,
                organisation=shared,
                result=result,
            )

        return self._db.write(tx)

    def check_room(self, analyst: str, dataset: str, cost: Cost) -> None:
        """Raise the BudgetExhausted that `charge` would raise for `cost` now (read only, no lock: a
        precheck before any data is read; the charge checks again under its locks)."""
        units = charge_units(cost)
        with self._db.read() as conn:
            name = self._dataset_name(conn, check_name(dataset, "dataset name"))
            org = self._analyst_row(conn, check_name(analyst, "analyst name")).organisation
            alloc = self._allocation(conn, analyst, org, name)
            ds = conn.execute(sa.select(s.dataset_budgets).where(s.dataset_budgets.c.dataset == name)).one()
            shared = org if alloc.holder_kind == s.ORGANISATION else None
            _refuse_past_room(alloc, ds, units, self._clock(), analyst=analyst, dataset=name, organisation=shared)

    def _replay(self, conn: Connection, req: Row[Any], analyst: str, dataset: str, kind: str) -> Charge:
        result = None if req.result is None else json.loads(req.result)
        remaining = self._remaining_in(conn, analyst, dataset)
        if req.entry_id is None:  # answered from the free-repeat store: nothing was charged
            return Charge(
                id=None, at=req.completed_at, analyst=analyst, dataset=dataset, request_id=req.request_id,
                kind=kind, cost=ZERO, remaining=remaining, replayed=True, result=result,
            )  # fmt: skip
        e = conn.execute(sa.select(s.ledger_entries).where(s.ledger_entries.c.id == req.entry_id)).one()
        return Charge(
            id=int(e.id), at=e.at, analyst=e.analyst, dataset=e.dataset, request_id=e.request_id, kind=e.kind,
            cost=cost_of((e.epsilon, e.delta), rho_of(e.rho)), remaining=remaining, detail=json.loads(e.detail),
            organisation=e.organisation, replayed=True, result=result,
        )  # fmt: skip

    @staticmethod
    def _cache_put(
        conn: Connection, cache_key: str, dataset: str, entry_id: int | None, result: str, now: datetime
    ) -> None:
        values = {
            "cache_key": cache_key,
            "dataset": dataset,
            "entry_id": entry_id,
            "result": result,
            "created_at": now,
        }
        if conn.dialect.name == "postgresql":
            conn.execute(postgresql.insert(s.result_cache).values(**values).on_conflict_do_nothing())
        else:
            conn.execute(sqlite.insert(s.result_cache).values(**values).on_conflict_do_nothing())

    # -- request ids and the free-repeat store ---------------------------------------------------------

    def reserve(self, analyst: str, request_id: str, body_hash: str | None = None) -> Reservation:
        """Hold `request_id` for a request about to run. If an earlier request completed it, returns
        that one's stored answer (`completed`); raises RequestConflict if that request (finished or still
        running) had another body, RequestInProgress while another with this body holds it (unless its
        hold is older than `stale_after`, when it is taken over)."""
        analyst = check_name(analyst, "analyst name")
        request_id = check_name(request_id, "request_id")

        def tx(conn: Connection) -> Reservation:
            now = self._clock()
            key = request_key(analyst, request_id)
            row = conn.execute(sa.select(s.requests).where(key).with_for_update()).first()
            if row is None:
                conn.execute(
                    s.requests.insert().values(
                        analyst=analyst,
                        request_id=request_id,
                        status=s.IN_PROGRESS,
                        body_hash=body_hash,
                        created_at=now,
                    )
                )
                return Reservation(analyst, request_id, body_hash, completed=False)
            if row.status == s.COMPLETED:
                if row.body_hash is not None and body_hash is not None and row.body_hash != body_hash:
                    raise RequestConflict(analyst=analyst, request_id=request_id)
                result = None if row.result is None else json.loads(row.result)
                return Reservation(
                    analyst, request_id, row.body_hash, completed=True, result=result, entry_id=row.entry_id
                )
            if now - row.created_at < self.stale_after:
                if row.body_hash is not None and body_hash is not None and row.body_hash != body_hash:
                    raise RequestConflict(analyst=analyst, request_id=request_id)  # not worth waiting for
                raise RequestInProgress(analyst=analyst, request_id=request_id)
            conn.execute(s.requests.update().where(key).values(body_hash=body_hash, created_at=now))
            return Reservation(analyst, request_id, body_hash, completed=False)

        return self._db.write(tx)

    def release_reservation(self, analyst: str, request_id: str) -> bool:
        """Drop the hold of a request that failed before any charge; True if one was dropped."""

        def tx(conn: Connection) -> bool:
            r = conn.execute(
                s.requests.delete().where(request_key(analyst, request_id), s.requests.c.status == s.IN_PROGRESS)
            )
            return bool(r.rowcount)

        return self._db.write(tx)

    def store_result(
        self,
        analyst: str,
        request_id: str,
        result: dict[str, Any],
        *,
        dataset: str | None = None,
        body_hash: str | None = None,
    ) -> bool:
        """Complete a request id without a charge (its answer came from the free-repeat store), so that
        a retry gets the same answer. False (and nothing changed) if it was already completed."""
        analyst = check_name(analyst, "analyst name")
        request_id = check_name(request_id, "request_id")
        text = dumps_object(result, "result")

        def tx(conn: Connection) -> bool:
            now = self._clock()
            key = request_key(analyst, request_id)
            row = conn.execute(sa.select(s.requests).where(key).with_for_update()).first()
            done = {"status": s.COMPLETED, "dataset": dataset, "result": text, "completed_at": now}
            if row is None:
                conn.execute(
                    s.requests.insert().values(
                        analyst=analyst, request_id=request_id, body_hash=body_hash, created_at=now, **done
                    )
                )
                return True
            if row.status == s.COMPLETED:
                return False
            conn.execute(s.requests.update().where(key).values(**done, body_hash=body_hash or row.body_hash))
            return True

        return self._db.write(tx)

    def stored_result(self, analyst: str, request_id: str) -> dict[str, Any] | None:
        """The stored answer of a completed request id, or None."""
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(s.requests.c.result).where(
                    request_key(analyst, request_id), s.requests.c.status == s.COMPLETED
                )
            ).first()
        return None if row is None or row.result is None else json.loads(row.result)

    def cached(self, cache_key: str) -> dict[str, Any] | None:
        """The answer stored under `cache_key` by an earlier charge, or None. Re-releasing it is free."""
        with self._db.read() as conn:
            text = conn.execute(
                sa.select(s.result_cache.c.result).where(s.result_cache.c.cache_key == cache_key)
            ).scalar()
        return None if text is None else json.loads(text)


def _refuse_past_room(
    alloc: Row[Any], ds: Row[Any], units: tuple[int, int], now: datetime, *, analyst: str, dataset: str,
    organisation: str | None,
) -> None:
    """BudgetExhausted where `units` exceed what the allocation or the dataset's total leaves at `now`."""
    for level, row in (("analyst", alloc), ("dataset", ds)):
        left = room(row, now)
        if units[0] > left[0] or units[1] > left[1]:
            raise BudgetExhausted(requested=cost_of(units), remaining=cost_of(left), level=level, analyst=analyst,
                                  dataset=dataset, organisation=organisation, renews_at=renews_at(row, now, units))  # fmt: skip
