"""The history reads, on both backends: a dataset's registrations with what each changed, its spending
over time (summed in the database, by UTC day or by charge) and by analyst, and an analyst's requests with
what each cost, free repeats included."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from budget import Ledger
from budget.errors import InvalidInput
from mechanisms.cost import Cost

from ._support import grant, query

V1: dict[str, Any] = {
    "version": "aaa111",
    "name": "bank",
    "privacy_unit": "customer",
    "tables": {"tx": {"source": "tx.csv", "max_rows_per_unit": 5, "columns": {"amount": {"type": "float", "lower": 0, "upper": 100}}}},
}


def _v2() -> dict[str, Any]:
    """V1 with a column added and one rebounded, a table added, a row cap raised and a new data version."""
    tx = {"source": "tx.csv", "max_rows_per_unit": 10,
          "columns": {"amount": {"type": "float", "lower": 0, "upper": 500}, "flag": {"type": "bool"}}}  # fmt: skip
    return {**V1, "version": "bbb222", "tables": {"tx": tx, "cust": {"source": "c.csv", "max_rows_per_unit": 1, "columns": {}}}}


def test_dataset_history_lists_versions_newest_first_with_what_changed(ledger: Ledger) -> None:
    grant(ledger, "bank")
    assert ledger.record_dataset("bank", definition=V1, actor="config")
    assert not ledger.record_dataset("bank", definition=V1, actor="config")  # unchanged: not recorded again
    assert ledger.record_dataset("bank", definition=_v2(), actor="admin")
    v3 = {**_v2(), "tables": {"cust": _v2()["tables"]["cust"]}, "privacy_unit": "household"}
    assert ledger.record_dataset("Bank", definition=v3, actor="admin")  # names ignore case

    history = ledger.dataset_history("BANK")
    assert [(h["actor"], h["version"], h["tables"]) for h in history] == [
        ("admin", "bbb222", ["cust"]), ("admin", "bbb222", ["cust", "tx"]), ("config", "aaa111", ["tx"])]  # fmt: skip
    assert history[2]["changes"] == {"first": True}
    assert history[1]["changes"] == {
        "first": False, "tables_added": ["cust"], "tables_removed": [], "columns_added": ["tx.flag"], "columns_removed": [],
        "columns_changed": ["tx.amount"], "table_settings": ["tx.max_rows_per_unit"], "other": ["version"],
    }  # fmt: skip
    assert history[0]["changes"]["tables_removed"] == ["tx"] and history[0]["changes"]["other"] == ["privacy_unit"]
    assert history[0]["changes"]["columns_changed"] == [] and history[0]["changes"]["tables_added"] == []
    assert ledger.dataset_history("other") == []


def test_spending_over_time_sums_by_utc_day_and_by_charge(open_ledger: Callable[..., Ledger]) -> None:
    now = [datetime(2026, 3, 1, 22, 0, tzinfo=UTC)]
    ledger = open_ledger(clock=lambda: now[0])
    grant(ledger, "bank", total=10, delta_total="1e-5", analysts={"ann": 5, "bob": 5}, delta="1e-5")
    charges = [("ann", "0.25", timedelta(0)), ("bob", "0.5", timedelta(hours=1)), ("ann", "0.125", timedelta(hours=2)),  # 1 March, 23:00, 00:00
               ("ann", "1", timedelta(days=2, hours=2))]  # fmt: skip
    for who, epsilon, after in charges:
        now[0] = datetime(2026, 3, 1, 22, 0, tzinfo=UTC) + after
        query(ledger, who, "bank", epsilon, "1e-7")

    days = ledger.spending_over_time("Bank")
    assert [(d["at"], d["entries"], d["epsilon"]) for d in days] == [("2026-03-01", 2, 0.75), ("2026-03-02", 1, 0.125), ("2026-03-04", 1, 1.0)]
    assert [d["epsilon_cumulative"] for d in days] == [0.75, 0.875, 1.875]
    each = ledger.spending_over_time("bank", bucket="entry")
    assert [e["epsilon"] for e in each] == [0.25, 0.5, 0.125, 1.0] and {e["entries"] for e in each} == {1}
    assert each[1]["at"] == "2026-03-01T23:00:00+00:00"
    running = Fraction(0)
    for point, (_, epsilon, _) in zip(each, charges, strict=True):  # the running sums are the ledger's exact sums, rounded up
        running += Fraction(epsilon)
        assert point["epsilon_cumulative"] == float(running)
    [budget] = ledger.dataset_budgets()
    assert days[-1]["epsilon_cumulative"] == each[-1]["epsilon_cumulative"] == budget["epsilon_spent"]
    assert days[-1]["delta_cumulative"] == budget["delta_spent"] == pytest.approx(4e-7)
    assert ledger.spending_by_analyst("bank") == [
        {"analyst": "ann", "entries": 3, "epsilon": 1.375, "delta": pytest.approx(3e-7)},
        {"analyst": "bob", "entries": 1, "epsilon": 0.5, "delta": pytest.approx(1e-7)},
    ]
    assert ledger.spending_over_time("nothing") == [] and ledger.spending_by_analyst("nothing") == []
    with pytest.raises(InvalidInput):
        ledger.spending_over_time("bank", bucket="week")


def _answer(value: float, request_id: str) -> dict[str, Any]:
    return {"request_id": request_id, "columns": ["n"], "rows": [[value]], "accuracy": {"n": {"mechanism": "laplace", "scale": 2.0}},
            "cost": {"epsilon": 0.5, "delta": 0.0}}  # fmt: skip


def _charge(ledger: Ledger, analyst: str, request_id: str, sql: str, value: float, key: str) -> None:
    ledger.charge(analyst=analyst, dataset="bank", cost=Cost.of("0.5", 0), kind="query", request_id=request_id,
                  detail={"sql": sql}, result=_answer(value, request_id), cache_key=key)  # fmt: skip


def _repeat(ledger: Ledger, analyst: str, request_id: str, value: float) -> None:
    """What `QueryService` stores for a free repeat: the released values again, its own id, cost 0, no entry."""
    answer = {**_answer(value, request_id), "cost": {"epsilon": 0.0, "delta": 0.0}}
    assert ledger.store_result(analyst, request_id, answer, dataset="bank", body_hash="h")


def test_request_history_lists_charges_and_free_repeats(open_ledger: Callable[..., Ledger]) -> None:
    now = [datetime(2026, 3, 1, 9, 0, tzinfo=UTC)]
    ledger = open_ledger(clock=lambda: now[0])
    grant(ledger, "bank", analysts={"ann": 5, "bob": 5})

    def at(minutes: int) -> None:
        now[0] = datetime(2026, 3, 1, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)

    _charge(ledger, "ann", "r1", "SELECT COUNT(*) AS n FROM tx", 101.5, "k1")
    at(1)
    _charge(ledger, "bob", "b1", "SELECT COUNT(*) AS n FROM tx WHERE flag", 7.25, "k2")
    at(2)
    ledger.charge(analyst="ann", dataset="bank", cost=Cost.of("0.25", 0), kind="training", detail={"job_id": "job-1", "method": "logreg"})
    at(3)
    _repeat(ledger, "ann", "r2", 101.5)  # ann's own query again
    at(4)
    _repeat(ledger, "ann", "r3", 7.25)  # bob's query, asked by ann: the SQL she asked is that one
    at(5)
    _charge(ledger, "bob", "b2", "SELECT COUNT(*) AS n FROM cust", 101.5, "k3")  # the same released values as r1: ambiguous
    at(6)
    _repeat(ledger, "ann", "r4", 7.25)

    history = ledger.request_history("ann")
    assert [(h["request_id"], h["kind"], h["cached"], h["epsilon"]) for h in history] == [
        ("r4", "query", True, 0.0), ("r3", "query", True, 0.0), ("r2", "query", True, 0.0), (None, "training", False, 0.25),
        ("r1", "query", False, 0.5)]  # fmt: skip
    sql = {h["request_id"]: h["sql"] for h in history}
    assert sql == {"r4": "SELECT COUNT(*) AS n FROM tx WHERE flag", "r3": "SELECT COUNT(*) AS n FROM tx WHERE flag",
                   "r2": None, None: None, "r1": "SELECT COUNT(*) AS n FROM tx"}  # r2's values match two charges' now  # fmt: skip
    assert history[3]["job_id"] == "job-1" and not history[3]["answer"]
    assert all(h["answer"] for h in history if h["request_id"]) and history[-1]["at"] == "2026-03-01T09:00:00+00:00"
    assert {h["dataset"] for h in history} == {"bank"}
    assert [h["request_id"] for h in ledger.request_history("bob")] == ["b2", "b1"]  # each analyst sees its own
    assert [h["request_id"] for h in ledger.request_history("ann", limit=2)] == ["r4", "r3"]
    ledger.reserve("ann", "running", "h")  # a request still in progress is not history yet
    assert "running" not in {h["request_id"] for h in ledger.request_history("ann")}
    with pytest.raises(InvalidInput):
        ledger.request_history("ann", limit=0)
