"""The query service: charge before release, idempotency and free repeats. No HTTP here.

The order of a query, and why:
1. reserve the request id (a retry of a finished request gets its stored answer; a retry while the
   first still runs waits for it and gets its answer, or `request_in_progress` after `duplicate_wait`;
   the same id with another body is a conflict at once);
2. plan: a refusal costs nothing and has touched no data;
3. the free-repeat store: the same dataset version, normalised SQL, ε and δ get the released answer
   again at no cost (re-releasing a released value leaks nothing new);
4. a budget pre-check, so a request the budget cannot cover touches no data;
5. compute the noisy answer (kept in memory, not yet released);
6. charge it: one ledger transaction checks both budget levels, appends the entry and stores the
   answer. Only then does the answer leave. A crash before 6 releases nothing and charges nothing; a
   crash after 6 loses the answer, not the charge, and a retry with the request id gets the answer.
   (`gateway.faults` kills the process at these steps; tests/reliability checks what each leaves.)
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from budget.errors import BudgetExhausted, RequestInProgress
from budget.ledger import Ledger
from budget.records import Reservation
from gateway.core import Gateway, privacy_parameters
from gateway.errors import DatasetUnavailable, DpgateError
from gateway.faults import NO_FAULTS, Faults
from gateway.sql.release import Mechanisms, release
from mechanisms.cost import Cost


class Forbidden(DpgateError, PermissionError):
    code = "forbidden"
    status = 403


@dataclass(frozen=True)
class QueryRequest:
    dataset: str
    sql: str
    epsilon: float | str
    delta: float | str = 0
    request_id: str | None = None

    def body_hash(self) -> str:
        body = json.dumps([self.dataset, self.sql, str(self.epsilon), str(self.delta)])
        return hashlib.sha256(body.encode()).hexdigest()


def _zero() -> dict[str, float]:
    return {"epsilon": 0.0, "delta": 0.0}


class QueryService:
    def __init__(
        self,
        gateway: Gateway,
        ledger: Ledger,
        *,
        faults: Faults = NO_FAULTS,
        unavailable: dict[str, str] | None = None,
        duplicate_wait: float = 10.0,
    ) -> None:
        self.gateway = gateway
        self.ledger = ledger
        self.faults = faults  # kill -9 hooks for the reliability tests; no-ops unless armed at start
        # registered datasets whose data could not be loaded at start (lower-cased name -> why)
        self.unavailable = {k.lower(): v for k, v in (unavailable or {}).items()}
        # how long a request waits for another one running under its request id (then 409)
        self.duplicate_wait = duplicate_wait
        # reservations that a failed request could not drop (the ledger was away): dropped later
        self._unreleased: set[tuple[str, str]] = set()
        self._unreleased_lock = threading.Lock()

    def _check_access(self, analyst: str, dataset: str) -> str:
        """The dataset's name as the ledger spells it, or why the analyst may not query it."""
        if dataset.lower() in self.unavailable:
            raise DatasetUnavailable(f"dataset {dataset!r} is registered but its data cannot be loaded", dataset=dataset)
        meta = self.gateway.catalog.get(dataset)  # unknown_dataset
        allowed = {name.lower(): name for name in self.ledger.allocations_of(analyst)}
        if meta.name.lower() not in allowed:
            raise Forbidden(f"you have no budget allocation on dataset {meta.name!r}")
        return allowed[meta.name.lower()]

    def cache_key(self, dataset: str, normalized_sql: str, epsilon: Any, delta: Any) -> str:
        eps, dlt = privacy_parameters(epsilon, delta)
        parts = [dataset, self.gateway.version(dataset), normalized_sql, str(eps), str(dlt)]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def preview(self, analyst: str, req: QueryRequest) -> dict[str, Any]:
        dataset = self._check_access(analyst, req.dataset)
        cost, accuracy = self.gateway.preview(dataset, req.sql, epsilon=req.epsilon, delta=req.delta)
        return {
            "cost": cost.to_json(),
            "accuracy": {k: v.to_json() for k, v in accuracy.items()},
            "remaining": self.ledger.remaining(analyst, dataset),
        }

    def query(self, analyst: str, req: QueryRequest) -> dict[str, Any]:
        dataset = self._check_access(analyst, req.dataset)
        request_id = req.request_id
        if request_id is not None:
            held = self._reserve(analyst, request_id, req.body_hash())
            if held.completed and held.result is not None:
                return {**held.result, "remaining": self.ledger.remaining(analyst, dataset), "cached": True}
        try:
            answer = self._answer(analyst, dataset, req, request_id)
        except BaseException:
            if request_id is not None:
                self._release(analyst, request_id)
            raise
        return answer

    def _reserve(self, analyst: str, request_id: str, body_hash: str) -> Reservation:
        """Hold the request id. While another request with this id and body runs, wait for it (up to
        `duplicate_wait`) and take its answer: concurrent retries get one answer, charged once. If that
        request fails instead, the first waiter to find the id free runs it anew."""
        key = (analyst, request_id)
        with self._unreleased_lock:
            pending = key in self._unreleased
        if pending:
            self.ledger.release_reservation(analyst, request_id)  # raises again while the ledger is away
            with self._unreleased_lock:
                self._unreleased.discard(key)
        deadline = time.monotonic() + self.duplicate_wait
        pause = 0.01
        while True:
            try:
                return self.ledger.reserve(analyst, request_id, body_hash)
            except RequestInProgress:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(pause, left))
                pause = min(2 * pause, 0.2)

    def _release(self, analyst: str, request_id: str) -> None:
        """Drop the hold of a request that failed before its charge. Where the ledger itself is away,
        remember it and drop it when this request id comes back, so that the retry is not refused as
        in progress until the hold goes stale. (A charge whose commit landed is completed, not held:
        never dropped.)"""
        try:
            self.ledger.release_reservation(analyst, request_id)
        except Exception:
            with self._unreleased_lock:
                self._unreleased.add((analyst, request_id))

    def _answer(self, analyst: str, dataset: str, req: QueryRequest, request_id: str | None) -> dict[str, Any]:
        plan = self.gateway.plan(dataset, req.sql, epsilon=req.epsilon, delta=req.delta)
        key = self.cache_key(dataset, plan.normalized_sql, req.epsilon, req.delta)
        hit = self.ledger.cached(key)
        out_id = request_id or str(uuid.uuid4())
        if hit is not None:
            answer = {**hit, "request_id": out_id, "cost": _zero()}
            if request_id is not None:  # a retry of this request id gets this answer again
                self.ledger.store_result(analyst, request_id, answer, dataset=dataset, body_hash=req.body_hash())
            return {**answer, "cached": True, "remaining": self.ledger.remaining(analyst, dataset)}
        cost: Cost = plan.cost
        self._precheck(analyst, dataset, cost)  # a request the budget cannot cover touches no data
        mechanisms = Mechanisms(plan)
        answer = release(plan, self.faults.engine(self.gateway.engine_for(plan)), mechanisms)
        self.faults.point("after_noise")
        result = {
            "request_id": out_id,
            "columns": answer.columns,
            "rows": answer.rows,
            "accuracy": {k: v.to_json() for k, v in answer.accuracy.items()},
            "cost": cost.to_json(),
        }
        if plan.public:
            return {**result, "remaining": self.ledger.remaining(analyst, dataset), "cached": False}
        charge = self.ledger.charge(
            analyst=analyst,
            dataset=dataset,
            cost=cost,
            kind="query",
            request_id=out_id,
            detail={"sql": plan.normalized_sql, "mechanisms": sorted({a.mechanism for a in answer.accuracy.values()} - {"none", "derived"})},
            result=result,
            cache_key=key,
            body_hash=req.body_hash() if request_id is not None else None,
        )
        self.faults.point("after_charge")
        return {**result, "remaining": charge.remaining.to_json(), "cached": False}

    def _precheck(self, analyst: str, dataset: str, cost: Cost) -> None:
        left = self.ledger.remaining_cost(analyst, dataset)
        for level, remaining in (("analyst", left.analyst), ("dataset", left.dataset)):
            if not cost.fits_within(remaining):
                raise BudgetExhausted(requested=cost, remaining=remaining, level=level, analyst=analyst, dataset=dataset)


__all__ = ["QueryService", "QueryRequest", "Forbidden", "BudgetExhausted"]
