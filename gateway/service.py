"""The query service: charge before release, idempotency and free repeats. No HTTP here.

The order of a query, and why:
1. reserve the request id (a retry of a finished request gets its stored answer; a retry while the
   first still runs waits for it and gets its answer, or `request_in_progress` after `duplicate_wait`;
   the same id with another body is a conflict at once);
2. plan: a refusal costs nothing and has touched no data. A request that gives `target` instead of
   `epsilon` first solves for ε by planning alone (`gateway.target`), then runs exactly as one asking
   that ε: the charge is the preview's quote;
3. the free-repeat store: the same dataset version, normalised SQL, ε, δ, alpha and diagnostics get
   the released answer again at no cost (re-releasing a released value leaks nothing new). A repeat is
   shared within the asker's organisation only (an analyst without one is its own), unless the dataset
   says `share_repeats = "all"`: a free `cached: true` would otherwise tell an analyst what another
   organisation asked;
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
from fractions import Fraction
from typing import Any

from budget.errors import BudgetExhausted, NoAllocation, RequestInProgress
from budget.ledger import Ledger
from budget.records import Analyst, Reservation
from gateway.catalog import DatasetMeta
from gateway.core import Gateway, interval_level, privacy_parameters
from gateway.errors import DatasetUnavailable, InvalidRequest
from gateway.faults import NO_FAULTS, Faults
from gateway.sql.release import Mechanisms, release
from gateway.target import Solution, Target, accuracy, solve
from mechanisms.cost import Cost

DEFAULT_ALPHA = 0.05
# members of a stored answer that belong to the request, not to the released values
_REQUEST_MEMBERS = ("epsilon", "target")


@dataclass(frozen=True)
class QueryRequest:
    """A query: exactly one of `epsilon` and `target` (the accuracy to reach on one column, from which
    the smallest ε is solved); `alpha` the miss probability of the stated intervals; `diagnostics` also
    releases (charged) noisy counts of what bounding did."""

    dataset: str
    sql: str
    epsilon: float | str | Fraction | None = None
    delta: float | str = 0
    request_id: str | None = None
    alpha: float = DEFAULT_ALPHA
    diagnostics: bool = False
    target: Target | dict[str, Any] | None = None

    def check(self) -> Target | None:
        """The request's target, or why the request is malformed (costs nothing)."""
        if (self.epsilon is None) == (self.target is None):
            raise InvalidRequest("give exactly one of epsilon or target", field="epsilon")
        interval_level(self.alpha)
        return None if self.target is None else Target.from_json(self.target)

    def body_hash(self) -> str:
        parts: list[Any] = [self.dataset, self.sql, str(self.epsilon), str(self.delta)]
        extra = self._extra()
        if extra:  # requests without the newer members hash as they always did
            parts.append(extra)
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if float(self.alpha) != DEFAULT_ALPHA:
            extra["alpha"] = repr(float(self.alpha))
        if self.diagnostics:
            extra["diagnostics"] = True
        if self.target is not None:
            extra["target"] = Target.from_json(self.target).to_json()
        return extra


def _zero() -> dict[str, float]:
    return {"epsilon": 0.0, "delta": 0.0}


def _asked(epsilon: Fraction, solution: Solution | None) -> dict[str, Any]:
    """What an answer states of a target's request: the ε solved and the target (with its `rows`)."""
    if solution is None:
        return {}
    return {"epsilon": float(epsilon), "target": solution.to_json()}


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

    def _allowed(self, analyst: str) -> dict[str, str]:
        """The datasets the analyst may query (an allocation of its own or its organisation's): the
        lower-cased name -> the name as the ledger spells it. The one place that says who may use what."""
        return {name.lower(): name for name in self.ledger.allocations_of(analyst)}

    def datasets_for(self, analyst: Analyst) -> list[DatasetMeta]:
        """The datasets `analyst` may see, by name: those it may query; an administrator sees them all."""
        allowed = self._allowed(analyst.name)
        return sorted((m for m in self.gateway.catalog if analyst.is_admin or m.name.lower() in allowed), key=lambda m: m.name)

    def _check_access(self, analyst: str, dataset: str) -> str:
        """The dataset's name as the ledger spells it, or why the analyst may not query it. Checked
        before anything is planned: an error naming a table or a column of a dataset tells its schema."""
        if dataset.lower() in self.unavailable:
            raise DatasetUnavailable(f"dataset {dataset!r} is registered but its data cannot be loaded", dataset=dataset)
        meta = self.gateway.catalog.get(dataset)  # unknown_dataset
        allowed = self._allowed(analyst)
        if meta.name.lower() not in allowed:
            raise NoAllocation(analyst=analyst, dataset=meta.name)  # the ledger's refusal, as its charge would be
        return allowed[meta.name.lower()]

    def repeat_scope(self, analyst: str, dataset: str) -> list[str] | None:
        """Who shares `analyst`'s free repeats on `dataset`: its organisation (``["organisation", name]``),
        itself where it has none (``["analyst", name]``), or everyone (None) where the dataset says
        `share_repeats = "all"`. Tagged, so that an analyst and an organisation of one name stay apart."""
        if self.gateway.catalog.get(dataset).share_repeats == "all":
            return None
        record = self.ledger.get_analyst(analyst)
        organisation = None if record is None else record.organisation
        return ["organisation", organisation] if organisation else ["analyst", analyst]

    def cache_key(
        self,
        dataset: str,
        normalized_sql: str,
        epsilon: Any,
        delta: Any,
        *,
        alpha: float = DEFAULT_ALPHA,
        diagnostics: bool = False,
        scope: list[str] | None = None,
    ) -> str:
        """The free-repeat key: an answer is reused only for the same released values (same ε, δ,
        alpha and diagnostics), and only within `scope` (`repeat_scope`; None: every analyst). A
        target's request is keyed by the ε it solves to."""
        eps, dlt = privacy_parameters(epsilon, delta)
        parts: list[Any] = [dataset, self.gateway.version(dataset), normalized_sql, str(eps), str(dlt)]
        if float(alpha) != DEFAULT_ALPHA or diagnostics:  # keys of plain requests stay as they were
            parts.append({"alpha": repr(float(alpha)), "diagnostics": bool(diagnostics)})
        if scope is not None:
            parts.append({"scope": scope})
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def _epsilon(self, dataset: str, req: QueryRequest) -> tuple[Any, Solution | None]:
        """The ε the request runs with: as given, or solved from its target by planning alone."""
        target = req.check()
        if target is None:
            return req.epsilon, None

        def plan_at(epsilon: Fraction) -> Any:
            return self.gateway.plan(dataset, req.sql, epsilon=epsilon, delta=req.delta, alpha=req.alpha, diagnostics=req.diagnostics)

        solution = solve(plan_at, target)
        return solution.epsilon, solution

    def preview(self, analyst: str, req: QueryRequest) -> dict[str, Any]:
        dataset = self._check_access(analyst, req.dataset)
        epsilon, solution = self._epsilon(dataset, req)
        plan = self.gateway.plan(dataset, req.sql, epsilon=epsilon, delta=req.delta, alpha=req.alpha, diagnostics=req.diagnostics)
        cost, expected = accuracy(plan, solution.target.rows if solution is not None else None)
        out: dict[str, Any] = {
            "cost": cost.to_json(),
            "accuracy": {k: v.to_json() for k, v in expected.items()},
            "remaining": self.ledger.remaining(analyst, dataset),
            "epsilon": float(plan.epsilon),
        }
        if solution is not None:
            out["target"] = solution.to_json()
        return out

    def query(self, analyst: str, req: QueryRequest) -> dict[str, Any]:
        dataset = self._check_access(analyst, req.dataset)
        req.check()  # a malformed request holds no request id
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
        epsilon, solution = self._epsilon(dataset, req)  # free: plans only, reads no data
        plan = self.gateway.plan(dataset, req.sql, epsilon=epsilon, delta=req.delta, alpha=req.alpha, diagnostics=req.diagnostics)
        scope = self.repeat_scope(analyst, dataset)
        key = self.cache_key(dataset, plan.normalized_sql, epsilon, req.delta, alpha=req.alpha, diagnostics=req.diagnostics, scope=scope)
        hit = self.ledger.cached(key)
        out_id = request_id or str(uuid.uuid4())
        asked = _asked(plan.epsilon, solution)
        if hit is not None:
            released = {k: v for k, v in hit.items() if k not in _REQUEST_MEMBERS}  # stored by another request of the scope
            answer = {**released, **asked, "request_id": out_id, "cost": _zero()}
            if request_id is not None:  # a retry of this request id gets this answer again
                self.ledger.store_result(analyst, request_id, answer, dataset=dataset, body_hash=req.body_hash())
            return {**answer, "cached": True, "remaining": self.ledger.remaining(analyst, dataset)}
        cost: Cost = plan.cost
        self._precheck(analyst, dataset, cost)  # a request the budget cannot cover touches no data
        mechanisms = Mechanisms(plan)
        answer = release(plan, self.faults.engine(self.gateway.engine_for(plan)), mechanisms)
        self.faults.point("after_noise")
        # every member of the answer (intervals, bounding, diagnostics, ...) reaches the response
        result = {"request_id": out_id, **answer.to_json(), "cost": cost.to_json(), **asked}
        if plan.public:  # free: nothing to charge, but a request id is completed so that its retry gets this answer
            if request_id is not None:
                self.ledger.store_result(analyst, request_id, result, dataset=dataset, body_hash=req.body_hash())
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
        self.ledger.check_room(analyst, dataset, cost)


__all__ = ["QueryService", "QueryRequest", "NoAllocation", "BudgetExhausted"]
