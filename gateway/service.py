"""The query service: charge before release, idempotency and free repeats. No HTTP here.

The order of a query, and why:
1. reserve the request id (a retry of a finished request gets its stored answer; a retry while the
   first still runs gets `request_in_progress`);
2. plan: a refusal costs nothing and has touched no data;
3. the free-repeat store: the same dataset version, normalised SQL, ε and δ get the released answer
   again at no cost (re-releasing a released value leaks nothing new);
4. a budget pre-check, so a request the budget cannot cover touches no data;
5. compute the noisy answer (kept in memory, not yet released);
6. charge it: one ledger transaction checks both budget levels, appends the entry and stores the
   answer. Only then does the answer leave. A crash before 6 releases nothing and charges nothing; a
   crash after 6 loses the answer, not the charge, and a retry with the request id gets the answer.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from budget.errors import BudgetExhausted
from budget.ledger import Ledger
from gateway.core import Gateway, privacy_parameters
from gateway.errors import DpgateError
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
    def __init__(self, gateway: Gateway, ledger: Ledger) -> None:
        self.gateway = gateway
        self.ledger = ledger

    def _check_access(self, analyst: str, dataset: str) -> str:
        meta = self.gateway.catalog.get(dataset)  # unknown_dataset
        if meta.name not in self.ledger.allocations_of(analyst):
            raise Forbidden(f"you have no budget allocation on dataset {meta.name!r}")
        return meta.name

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
            held = self.ledger.reserve(analyst, request_id, req.body_hash())
            if held.completed and held.result is not None:
                return {**held.result, "remaining": self.ledger.remaining(analyst, dataset), "cached": True}
        try:
            answer = self._answer(analyst, dataset, req, request_id)
        except BaseException:
            if request_id is not None:
                self.ledger.release_reservation(analyst, request_id)
            raise
        return answer

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
        answer = release(plan, self.gateway.engine, mechanisms)
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
        return {**result, "remaining": charge.remaining.to_json(), "cached": False}

    def _precheck(self, analyst: str, dataset: str, cost: Cost) -> None:
        left = self.ledger.remaining_cost(analyst, dataset)
        for level, remaining in (("analyst", left.analyst), ("dataset", left.dataset)):
            if not cost.fits_within(remaining):
                raise BudgetExhausted(requested=cost, remaining=remaining, level=level, analyst=analyst, dataset=dataset)


__all__ = ["QueryService", "QueryRequest", "Forbidden", "BudgetExhausted"]
