"""The read side: entries (DESIGN §4 ledger shape), budgets (``GET /v1/budget``), remaining, allocations."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from budget import InvalidInput, Ledger
from mechanisms.cost import Cost

from ._support import grant


def _charge(ledger: Ledger, analyst: str, dataset: str, epsilon: float, **detail: object) -> int:
    kind = "training" if "job_id" in detail else "query"
    charge = ledger.charge(
        analyst=analyst,
        dataset=dataset,
        cost=Cost.of(epsilon, 1e-7),
        kind=kind,
        request_id=None,
        detail=detail,
    )
    assert charge.id is not None
    return charge.id


def test_entries_newest_first_with_filters(ledger: Ledger) -> None:
    grant(ledger, "bank", total=10, delta_total=1e-5, analysts={"alice": 5, "bob": 5}, delta=1e-6)
    grant(ledger, "cards", total=10, delta_total=1e-5, analysts={"alice": 5}, delta=1e-6)
    ids = [
        _charge(ledger, "alice", "bank", 0.1, sql="SELECT COUNT(*) FROM tx", mechanisms=["laplace"]),
        _charge(ledger, "bob", "bank", 0.2, sql="SELECT AVG(amount) FROM tx", mechanisms=["laplace", "laplace"]),
        _charge(ledger, "alice", "cards", 0.3, job_id="job-1"),
        _charge(ledger, "alice", "bank", 0.4, sql="SELECT SUM(amount) FROM tx", mechanisms=["gaussian"]),
    ]
    everything = ledger.entries()
    assert [e["id"] for e in everything] == ids[::-1]
    newest = everything[0]
    assert list(newest) == [
        "id",
        "at",
        "analyst",
        "dataset",
        "request_id",
        "kind",
        "sql",
        "mechanisms",
        "epsilon",
        "delta",
    ]
    assert newest["sql"] == "SELECT SUM(amount) FROM tx" and newest["mechanisms"] == ["gaussian"]
    assert (newest["epsilon"], newest["delta"]) == (0.4, 1e-7)
    assert datetime.fromisoformat(newest["at"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    training = everything[1]
    assert training["kind"] == "training" and training["job_id"] == "job-1" and training["mechanisms"] == []
    assert "sql" not in training
    assert [e["id"] for e in ledger.entries(dataset="bank")] == [ids[3], ids[1], ids[0]]
    assert [e["id"] for e in ledger.entries(analyst="alice")] == [ids[3], ids[2], ids[0]]
    assert [e["id"] for e in ledger.entries(dataset="bank", analyst="alice")] == [ids[3], ids[0]]
    assert [e["id"] for e in ledger.entries(limit=2)] == [ids[3], ids[2]]
    assert ledger.entries(dataset="nowhere") == []
    with pytest.raises(InvalidInput):
        ledger.entries(limit=0)


def test_detail_cannot_overwrite_the_entry_fields(ledger: Ledger) -> None:
    grant(ledger, "bank", analysts={"alice": 1})
    detail = {"sql": "SELECT 1", "epsilon": 99, "analyst": "mallory", "id": -1}
    ledger.charge(analyst="alice", dataset="bank", cost=Cost.of(0.5), kind="query", detail=detail)
    (entry,) = ledger.entries()
    assert entry["epsilon"] == 0.5 and entry["analyst"] == "alice" and entry["id"] != -1


def test_budgets_in_the_get_budget_shape(ledger: Ledger) -> None:
    grant(ledger, "bank", total=3, delta_total=1e-5, analysts={"alice": 1, "bob": 2}, delta=1e-6)
    grant(ledger, "cards", total=1, analysts={"alice": 0.5})
    ledger.charge(analyst="alice", dataset="bank", cost=Cost.of("1/3", "1e-7"), kind="query")
    ledger.charge(analyst="bob", dataset="bank", cost=Cost.of(0.5), kind="query")
    budgets = ledger.budgets("alice")
    assert [b["dataset"] for b in budgets] == ["bank", "cards"]
    bank = budgets[0]
    assert bank == {
        "dataset": "bank",
        "epsilon_total": 1.0,
        "epsilon_spent": 0.333333333334,  # 1/3 charged as 0.333333333334 (rounded up to the unit)
        "epsilon_remaining": 0.666666666666,
        "delta_total": 1e-6,
        "delta_spent": 1e-7,
        "delta_remaining": 9e-7,
        "dataset_level": {
            "epsilon_total": 3.0,
            "epsilon_spent": 0.833333333334,
            "epsilon_remaining": 2.16666666666,
            "delta_total": 1e-5,
            "delta_spent": 1e-7,
            "delta_remaining": 9.9e-6,
        },
    }
    assert budgets[1]["epsilon_spent"] == 0.0 and budgets[1]["dataset_level"]["epsilon_total"] == 1.0
    assert ledger.remaining("alice", "bank") == {
        "analyst": {"epsilon": 0.666666666666, "delta": 9e-7},
        "dataset": {"epsilon": 2.16666666666, "delta": 9.9e-6},
    }
    assert ledger.allocations_of("alice") == ["bank", "cards"]
    assert ledger.allocations_of("bob") == ["bank"]


def test_admin_views(ledger: Ledger) -> None:
    grant(ledger, "bank", total=3, analysts={"alice": 1, "bob": 2})
    ledger.charge(analyst="bob", dataset="bank", cost=Cost.of(0.5), kind="query")
    (ds,) = ledger.dataset_budgets()
    assert (ds["dataset"], ds["epsilon_total"], ds["epsilon_spent"], ds["epsilon_remaining"]) == (
        "bank",
        3.0,
        0.5,
        2.5,
    )
    allocations = ledger.allocations("bank")
    assert [(a["analyst"], a["epsilon_spent"]) for a in allocations] == [("alice", 0.0), ("bob", 0.5)]
    assert ledger.allocations("cards") == []
    assert ledger.verify() == []


def test_verify_finds_spending_without_entries(ledger: Ledger) -> None:
    grant(ledger, "bank", total=3, analysts={"alice": 1})
    ledger.charge(analyst="alice", dataset="bank", cost=Cost.of(0.5), kind="query")
    assert ledger.verify() == []
    with ledger._db.engine.begin() as conn:  # spending the ledger has no entry for
        conn.execute(sa.text("UPDATE allocations SET epsilon_spent = epsilon_spent + 1"))
        conn.execute(sa.text("UPDATE dataset_budgets SET epsilon_spent = epsilon_spent + 1"))
    assert len(ledger.verify()) == 2
