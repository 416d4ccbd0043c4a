"""Concurrent charges — threads sharing one pooled ledger, and processes sharing the database — compose
sequentially: exactly as many succeed as fit, and spent equals the sum of the entries, to the unit."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

from budget import BudgetExhausted, Ledger
from budget._migrations import LATEST
from mechanisms.cost import Cost

from ._support import Spec, grant, query, start_migrate_and_charge


def _assert_exactly_full(ledger: Ledger, successes: int) -> None:
    assert successes == 32
    (row,) = ledger.budgets("alice")
    assert row["epsilon_spent"] == 4.0 and row["epsilon_remaining"] == 0.0
    assert ledger.remaining_cost("alice", "bank").analyst == Cost(Fraction(0))
    entries = ledger.entries(dataset="bank")
    assert len(entries) == 32
    assert sum(Fraction(e["epsilon"]).limit_denominator(10**12) for e in entries) == 4
    assert len({e["id"] for e in entries}) == 32
    assert ledger.verify() == []


def test_64_threads_charging_an_allocation_of_4_exactly_32_succeed(ledger: Ledger) -> None:
    grant(ledger, "bank", total=10, analysts={"alice": 4})
    start = threading.Barrier(64)

    def one(i: int) -> bool:
        start.wait(timeout=60)
        try:
            query(ledger, "alice", "bank", 0.125, request_id=f"t{i}", result={"i": i})
            return True
        except BudgetExhausted:
            return False

    with ThreadPoolExecutor(max_workers=64) as pool:
        outcomes = list(pool.map(one, range(64)))
    _assert_exactly_full(ledger, sum(outcomes))
    stored = [ledger.stored_result("alice", f"t{i}") for i in range(64)]
    assert [s is not None for s in stored] == outcomes  # a result stored exactly for each charge made


def test_4_processes_start_together_migrate_and_never_overspend(blank_spec: Spec) -> None:
    """4 processes (spawned) start on a blank database together — racing to migrate it — and then make
    16 charges of ε = 0.125 each against one allocation of ε = 4."""
    ctx = multiprocessing.get_context("spawn")
    start, ready, out = ctx.Barrier(4), ctx.Barrier(5), ctx.Queue()
    args = (blank_spec, "alice", "bank", "0.125", 16, start, ready, out)
    workers = [ctx.Process(target=start_migrate_and_charge, args=args) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        migrated = [out.get(timeout=120) for _ in workers]
        assert all(m[0] == "migrated" for m in migrated), migrated
        assert sorted(len(m[1]) for m in migrated) == [0, 0, 0, LATEST]  # the schema was built exactly once
        with blank_spec.open() as ledger:
            grant(ledger, "bank", total=10, analysts={"alice": 4})
            ready.wait(timeout=60)
            charged = [out.get(timeout=120) for _ in workers]
            assert all(c[0] == "charged" for c in charged), charged
            assert sum(c[2] for c in charged) == 32  # refusals
            _assert_exactly_full(ledger, sum(c[1] for c in charged))
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.kill()
