"""Exact concurrency: 200 concurrent queries of ε = 0.027 against an allocation of 1.0 → exactly 37
answered, the other 163 refused with `budget_exhausted`, spent exactly 0.999 — on SQLite and on
PostgreSQL, from threads and from processes, straight into `budget.Ledger`, through `QueryService`, and
through a real server.

0.027 is chosen because it is not a binary fraction: any float accumulation would drift, and the 38th
charge (1.026) must fail however the 200 interleave. (tests/budget covers 64 × 0.125 threads, 4
processes on a blank database; tests/api/test_server 64 HTTP threads. These add the non-binary figure,
the service layer, and processes against one server.)
"""
from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from budget import BudgetExhausted, Ledger
from mechanisms.cost import Cost
from gateway.service import QueryRequest, QueryService

from . import _support as sp
from .conftest import Live, grant, ledger_url_of, start_live


def assert_exactly_full(ledger: Ledger, analyst: str, dataset: str, answered: set[str]) -> None:
    """37 answered, each charged once, and spent exactly 0.999 at the analyst's level."""
    assert len(answered) == sp.EXPECTED
    entries = ledger.entries(dataset=dataset, analyst=analyst, limit=10_000)
    assert {e["request_id"] for e in entries} == answered  # every answer charged, nothing else charged
    assert len(entries) == sp.EXPECTED
    assert sp.exact_units(entries) == sp.SPENT
    assert ledger.remaining_cost(analyst, dataset).analyst.epsilon == 1 - sp.SPENT  # 1/1000, exactly
    (row,) = [b for b in ledger.budgets(analyst) if b["dataset"] == dataset]
    assert row["epsilon_spent"] == 0.999 and row["epsilon_remaining"] == 0.001
    assert ledger.verify() == []


def charge(ledger: Ledger, analyst: str, dataset: str, rid: str) -> None:
    ledger.charge(
        analyst=analyst, dataset=dataset, cost=Cost.of(sp.EPSILON), kind="query", request_id=rid,
        detail={"sql": "SELECT COUNT(*) FROM tx"}, result={"rid": rid},
    )  # fmt: skip


def test_ledger_200_threads(ledger: Ledger) -> None:
    """Straight into the ledger: 200 threads released together by a barrier, one pooled Ledger."""
    grant(ledger, "bank", ["alice"])
    start = threading.Barrier(sp.REQUESTS)

    def one(i: int) -> str | None:
        start.wait(timeout=120)
        try:
            charge(ledger, "alice", "bank", f"r{i}")
            return f"r{i}"
        except BudgetExhausted as e:
            assert e.level == "analyst"
            return None

    with ThreadPoolExecutor(sp.REQUESTS) as pool:
        outcomes = list(pool.map(one, range(sp.REQUESTS)))
    answered = {o for o in outcomes if o is not None}
    assert_exactly_full(ledger, "alice", "bank", answered)
    assert [ledger.stored_result("alice", f"r{i}") is not None for i in range(sp.REQUESTS)] == [
        o is not None for o in outcomes
    ]


def test_service_200_threads(service: QueryService) -> None:
    """Through the whole query path in-process (plan, free-repeat store, pre-check, engine, noise,
    charge): many pass the pre-check together; the charge transaction is what decides."""
    ledger = service.ledger
    ledger.create_analyst("alice")
    ledger.set_allocation("alice", "bank", epsilon=1.0)

    def one(i: int) -> dict | str:
        req = QueryRequest("bank", f"SELECT COUNT(*) AS n FROM tx WHERE amount > {i}", sp.EPSILON, 0, f"s{i}")
        try:
            return service.query("alice", req)
        except BudgetExhausted as e:
            return e.code

    with ThreadPoolExecutor(48) as pool:
        results = list(pool.map(one, range(sp.REQUESTS)))
    answers = [r for r in results if isinstance(r, dict)]
    assert {r for r in results if not isinstance(r, dict)} == {"budget_exhausted"}
    assert all(not a["cached"] and a["cost"]["epsilon"] == 0.027 for a in answers)
    assert_exactly_full(ledger, "alice", "bank", {a["request_id"] for a in answers})
    # every refused request id was released: it can be used again (and is refused again, for budget)
    refused = [f"s{i}" for i, r in enumerate(results) if not isinstance(r, dict)]
    assert all(ledger.stored_result("alice", rid) is None for rid in refused)
    assert not ledger.reserve("alice", refused[0]).completed


def _http_200_threads(live: Live) -> None:
    name, client = live.analyst("ann", epsilon=1.0)
    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(lambda i: sp.ask(client, live.dataset, i), range(sp.REQUESTS)))
    answered = {r["request_id"] for r in results if isinstance(r, dict)}
    assert {r for r in results if not isinstance(r, dict)} == {"budget_exhausted"}, results
    assert not any(r["cached"] for r in results if isinstance(r, dict))  # each one computed and charged
    with live.ledger() as ledger:
        assert_exactly_full(ledger, name, live.dataset, answered)
    [b] = client.budget()
    assert b["epsilon_spent"] == 0.999 and b["epsilon_remaining"] == 0.001


def test_http_200_threads_sqlite(live: Live) -> None:
    """Through a real server (waitress, 16 threads) on SQLite, from 64 client threads."""
    _http_200_threads(live)


@pytest.mark.slow
def test_http_200_threads_postgresql(tmp_path: Path) -> None:
    url, cleanup = ledger_url_of("postgresql", tmp_path)
    running = None
    try:
        running = start_live(tmp_path, url)
        _http_200_threads(running)
    finally:
        if running is not None:
            running.server.stop()
        cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_against_one_server(backend: str, tmp_path: Path) -> None:
    """6 client processes, each firing its share of the 200 from 8 threads, at one real server."""
    url, cleanup = ledger_url_of(backend, tmp_path)
    running = None
    try:
        running = start_live(tmp_path, url)
        name, client = running.analyst("ann", epsilon=1.0)
        ctx = multiprocessing.get_context("spawn")
        n_proc = 6
        start, out = ctx.Barrier(n_proc), ctx.Queue()
        shares = [sp.REQUESTS // n_proc + (1 if p < sp.REQUESTS % n_proc else 0) for p in range(n_proc)]
        firsts = [sum(shares[:p]) for p in range(n_proc)]
        procs = [
            ctx.Process(target=sp.http_worker, args=(running.url, client.key, running.dataset, firsts[p], shares[p], 8, start, out))
            for p in range(n_proc)
        ]
        for p in procs:
            p.start()
        try:
            reports = [out.get(timeout=300) for _ in procs]
        finally:
            for p in procs:
                p.join(timeout=60)
                if p.is_alive():
                    p.kill()
        assert all(r[0] == "done" for r in reports), reports
        answered = {rid for r in reports for rid in r[1]}
        assert {code for r in reports for code in r[2]} == {"budget_exhausted"}
        assert sum(len(r[1]) + len(r[2]) for r in reports) == sp.REQUESTS
        with running.ledger() as ledger:
            assert_exactly_full(ledger, name, running.dataset, answered)
    finally:
        if running is not None:
            running.server.stop()
        cleanup()


@pytest.mark.slow
def test_processes_sharing_one_ledger(ledger_url: str) -> None:
    """8 processes (spawned) sharing the ledger file or database directly, 25 charges each."""
    with Ledger(ledger_url) as ledger:
        ledger.migrate()
        grant(ledger, "bank", ["alice"])
    ctx = multiprocessing.get_context("spawn")
    n_proc = 8
    start, out = ctx.Barrier(n_proc), ctx.Queue()
    ids = [[f"p{p}-{i}" for i in range(sp.REQUESTS // n_proc)] for p in range(n_proc)]
    procs = [ctx.Process(target=sp.ledger_worker, args=(ledger_url, "alice", "bank", ids[p], start, out)) for p in range(n_proc)]
    for p in procs:
        p.start()
    try:
        reports = [out.get(timeout=300) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert all(r[0] == "charged" for r in reports), reports
    assert sum(r[1] for r in reports) == sp.EXPECTED and sum(r[2] for r in reports) == sp.REQUESTS - sp.EXPECTED
    with Ledger(ledger_url) as ledger:
        answered = {e["request_id"] for e in ledger.entries(limit=10_000)}
        assert_exactly_full(ledger, "alice", "bank", answered)

