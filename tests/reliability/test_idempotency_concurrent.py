"""Idempotency under concurrent retries: one request id sent N times at once is answered once, charged
once, and every sender gets the same answer; the same id with another body is a 409 problem.

Before this, a retry that arrived while the first request still ran was refused with 409
`request_in_progress` — a client retrying on a timeout got an error instead of its answer. The service
now waits for the running request (up to `duplicate_wait`) and returns its answer; a conflicting body
is refused at once, without waiting. (tests/api covers a sequential retry and a conflict after the
first finished; tests/budget the ledger's reservations.)
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from budget import RequestConflict, RequestInProgress
from gateway.engines.duckdb import EngineError
from gateway.service import QueryRequest, QueryService

from . import _support as sp
from .conftest import Live

N = 16
SAME = ("request_id", "columns", "rows", "accuracy", "cost")


def test_n_concurrent_retries_through_http_one_charge_identical_answers(live: Live) -> None:
    name, client = live.analyst("retry", epsilon=1.0)
    body = {"dataset": live.dataset, "sql": "SELECT cat, SUM(amount) AS s FROM tx GROUP BY cat", "epsilon": 0.25, "request_id": "same-1"}
    start = threading.Barrier(N)

    def send(_: int) -> tuple[int | None, bytes, bool]:
        start.wait(timeout=60)
        return sp.post_raw(live.url, client.key, body)  # type: ignore[arg-type]

    with ThreadPoolExecutor(N) as pool:
        results = list(pool.map(send, range(N)))
    assert [r[0] for r in results] == [200] * N, [r[1][:200] for r in results]
    answers = [json.loads(r[1]) for r in results]
    assert all({k: a[k] for k in SAME} == {k: answers[0][k] for k in SAME} for a in answers)
    assert all(a["remaining"]["analyst"] == {"epsilon": 0.75, "delta": 0.0} for a in answers)
    assert sorted(a["cached"] for a in answers) == [False] + [True] * (N - 1)  # one ran; the others got its answer
    with live.ledger() as ledger:
        entries = ledger.entries(analyst=name)
        assert [e["request_id"] for e in entries] == ["same-1"] and entries[0]["epsilon"] == 0.25

        # the same request id with another body: a conflict, as problem+json with a stable code
        status, raw, _ = sp.post_raw(live.url, client.key, {**body, "sql": "SELECT COUNT(*) FROM tx"})
        problem = json.loads(raw)
        assert status == 409 and problem["code"] == "request_in_progress" and problem["request_id"] == "same-1"
        assert problem["type"].endswith("request_in_progress") and problem["status"] == 409
        assert ledger.entries(analyst=name) == entries  # charged nothing


class Gate:
    """An engine that holds every query until released (to keep a request in progress)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_first = False

    def execute(self, select: Any) -> list[tuple]:
        self.entered.set()
        assert self.release.wait(timeout=60)
        if self.fail_first:
            self.fail_first = False
            raise EngineError("injected")
        return self.engine.execute(select)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


@pytest.fixture
def gated(service: QueryService) -> tuple[QueryService, Gate]:
    service.ledger.create_analyst("alice")
    service.ledger.set_allocation("alice", "bank", epsilon=1.0)
    gate = Gate(service.gateway.engine)
    service.gateway.engine = gate  # type: ignore[assignment]
    return service, gate


@contextmanager
def _opened_at_exit(gate: Gate) -> Iterator[None]:
    """Whatever happens in the test, the held requests finish (the pool waits for them)."""
    try:
        yield
    finally:
        gate.release.set()


def _req(sql: str = "SELECT COUNT(*) AS n FROM tx", rid: str = "r1") -> QueryRequest:
    return QueryRequest("bank", sql, "0.25", 0, rid)


def test_while_in_progress_another_body_conflicts_at_once_and_the_same_waits(gated: tuple[QueryService, Gate]) -> None:
    service, gate = gated
    with ThreadPoolExecutor(4) as pool, _opened_at_exit(gate):
        first = pool.submit(service.query, "alice", _req())
        assert gate.entered.wait(timeout=30)  # the first request holds r1, inside the engine

        t = time.monotonic()
        with pytest.raises(RequestConflict) as conflict:  # another body: refused at once, not after waiting
            service.query("alice", _req("SELECT SUM(amount) AS s FROM tx"))
        assert time.monotonic() - t < 2 and conflict.value.status == 409

        service.duplicate_wait = 0.3
        t = time.monotonic()
        with pytest.raises(RequestInProgress):  # the same body, waited for as long as allowed
            service.query("alice", _req())
        assert 0.3 <= time.monotonic() - t < 5

        service.duplicate_wait = 30
        waiting = [pool.submit(service.query, "alice", _req()) for _ in range(2)]
        time.sleep(0.2)
        gate.release.set()
        answers = [first.result(timeout=60)] + [w.result(timeout=60) for w in waiting]
    assert [a["cached"] for a in answers] == [False, True, True]
    assert all({k: a[k] for k in SAME} == {k: answers[0][k] for k in SAME} for a in answers)
    assert [e["request_id"] for e in service.ledger.entries()] == ["r1"]


def test_when_the_first_fails_a_waiting_retry_runs_it_once(gated: tuple[QueryService, Gate]) -> None:
    service, gate = gated
    gate.fail_first = True
    with ThreadPoolExecutor(2) as pool, _opened_at_exit(gate):
        first = pool.submit(service.query, "alice", _req())
        assert gate.entered.wait(timeout=30)
        retry = pool.submit(service.query, "alice", _req())
        time.sleep(0.2)
        gate.release.set()
        with pytest.raises(EngineError):
            first.result(timeout=60)  # released its hold: charged nothing
        answer = retry.result(timeout=60)  # found the id free and ran the query itself
    assert answer["cached"] is False and answer["request_id"] == "r1"
    assert [e["request_id"] for e in service.ledger.entries()] == ["r1"]
