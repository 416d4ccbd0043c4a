"""The database itself refuses overspending, on SQLite and PostgreSQL: were the ledger's code ever wrong
(or someone to write SQL by hand), the CHECK constraints hold spent within its total.

tests/budget/test_ledger_schema covers `UPDATE ... SET epsilon_spent = epsilon_spent + 1` after a full
spend. This adds: the constraint as the database reports it (its DDL, not our metadata), the other
ways to the same overspend — lowering the total under the spending by hand, inserting a row already
overspent, a negative spend or charge — and what no CHECK can see: a spent figure set back by hand,
which `Ledger.verify()` names.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from budget import Ledger
from mechanisms.cost import Cost

from .conftest import grant

WITHIN = "epsilon_spent <= epsilon_total OR epsilon_spent <= epsilon_spent_when_cut"
LEVELS = ["allocations", "dataset_budgets"]


def _ddl(ledger: Ledger, table: str) -> str:
    """The table's constraints as the database itself states them."""
    with ledger._db.engine.connect() as conn:
        if ledger.backend == "sqlite":
            return str(conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}).scalar())
        rows = conn.execute(
            sa.text(
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
                "WHERE t.relname = :t AND c.contype = 'c'"
            ),
            {"t": table},
        ).scalars()
        return "\n".join(rows)


def _normalised(text: str) -> str:
    return " ".join(text.replace("(", " ").replace(")", " ").split())


@pytest.mark.parametrize("table", LEVELS)
def test_the_database_states_the_checks(ledger: Ledger, table: str) -> None:
    ddl = _normalised(_ddl(ledger, table))
    for part in ("epsilon", "delta"):
        assert _normalised(WITHIN.replace("epsilon", part)) in ddl, ddl
        assert f"{part}_spent >= 0" in ddl and f"{part}_total >= 0" in ddl


def _refused(ledger: Ledger, sql: str, **params: object) -> None:
    with pytest.raises(sa.exc.IntegrityError), ledger._db.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def _state(ledger: Ledger) -> tuple[object, ...]:
    return (ledger.entries(), ledger.dataset_budgets(), ledger.allocations())


def test_direct_sql_cannot_overspend(ledger: Ledger) -> None:
    grant(ledger, "bank", ["alice"], epsilon="1.0")
    ledger.charge(analyst="alice", dataset="bank", cost=Cost.of("0.5"), kind="query")
    before = _state(ledger)
    for table in LEVELS:
        _refused(ledger, f"UPDATE {table} SET epsilon_spent = epsilon_total + 1")  # past the total
        _refused(ledger, f"UPDATE {table} SET epsilon_total = epsilon_spent - 1")  # total cut under it, unrecorded
        _refused(ledger, f"UPDATE {table} SET delta_spent = delta_total + 1")
        _refused(ledger, f"UPDATE {table} SET epsilon_spent = -1")
        _refused(ledger, f"UPDATE {table} SET epsilon_total = -1")
    _refused(
        ledger,
        "INSERT INTO dataset_budgets (dataset, epsilon_total, delta_total, epsilon_spent, delta_spent, "
        "epsilon_spent_when_cut, delta_spent_when_cut, updated_at) VALUES ('forged', 1, 0, 2, 0, 0, 0, CURRENT_TIMESTAMP)",
    )
    _refused(
        ledger,
        "INSERT INTO ledger_entries (at, analyst, dataset, kind, detail, epsilon, delta) "
        "VALUES (CURRENT_TIMESTAMP, 'alice', 'bank', 'query', '{}', -500000000000, 0)",  # a refund
    )
    assert _state(ledger) == before  # nothing of it landed
    assert ledger.verify() == []


def test_a_recorded_cut_holds_the_spending_where_it_stands(ledger: Ledger) -> None:
    """An administrator's cut below the spending is allowed (and recorded); from there it cannot grow."""
    grant(ledger, "bank", ["alice"], epsilon="1.0")
    ledger.charge(analyst="alice", dataset="bank", cost=Cost.of("0.75"), kind="query")
    ledger.set_allocation("alice", "bank", epsilon=0.5, actor="root")
    with ledger._db.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT epsilon_spent, epsilon_total, epsilon_spent_when_cut FROM allocations")).one()
    assert tuple(row) == (750_000_000_000, 500_000_000_000, 750_000_000_000)
    _refused(ledger, "UPDATE allocations SET epsilon_spent = epsilon_spent + 1")
    assert ledger.verify() == []


def test_a_spent_figure_set_back_by_hand_is_named_by_verify(ledger: Ledger) -> None:
    """No row CHECK can see history: a hand-written reset passes the constraints — and `verify()`, which
    reconciles every spent figure with the sum of its entries, names it."""
    grant(ledger, "bank", ["alice"], epsilon="1.0")
    ledger.charge(analyst="alice", dataset="bank", cost=Cost.of("0.5"), kind="query")
    with ledger._db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE allocations SET epsilon_spent = 0"))
    problems = ledger.verify()
    assert problems == ["analyst 'alice' on 'bank': spent differs from its entries"]
