"""The schema: versioned migrations (idempotent), its shape, and the CHECKs that back the code.

(Processes racing to migrate: `test_ledger_concurrency`.)"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from budget import InvalidInput, Ledger, SchemaTooNew
from budget._migrations import LATEST
from budget._schema import metadata

from ._support import Spec, grant, query


def test_migrate_twice_is_harmless(blank_spec: Spec) -> None:
    with blank_spec.open() as ledger:
        assert ledger.migrate() == list(range(1, LATEST + 1))
        grant(ledger, "bank", analysts={"alice": 1})
        query(ledger, "alice", "bank", 0.5)
        assert ledger.migrate() == []
        assert ledger.schema_version() == LATEST
    with blank_spec.open() as again:  # a restart
        assert again.migrate() == []
        assert again.budgets("alice")[0]["epsilon_spent"] == 0.5


def test_the_migrated_schema_is_the_one_the_code_queries(blank_spec: Spec) -> None:
    with blank_spec.open() as ledger:
        ledger.migrate()
        with ledger._db.engine.connect() as conn:
            inspector = sa.inspect(conn)
            assert set(inspector.get_table_names()) == set(metadata.tables)
            for table in metadata.sorted_tables:
                columns = {c["name"]: c for c in inspector.get_columns(table.name)}
                assert set(columns) == set(table.columns.keys()), table.name
                for column in table.columns:
                    assert columns[column.name]["nullable"] == column.nullable, (table.name, column.name)
                checks = {c["name"] for c in inspector.get_check_constraints(table.name)}
                expected = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
                assert expected <= checks, table.name


def test_a_newer_schema_is_refused(blank_spec: Spec) -> None:
    with blank_spec.open() as ledger:
        ledger.migrate()
        with ledger._db.engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO schema_version VALUES (:v, 'from the future', CURRENT_TIMESTAMP)"),
                {"v": LATEST + 1},
            )
        with pytest.raises(SchemaTooNew):
            ledger.migrate()


@pytest.mark.parametrize("level", ["allocations", "dataset_budgets"])
def test_the_database_itself_refuses_overspending(ledger: Ledger, level: str) -> None:
    """Were the code ever wrong, the CHECK constraints would still hold spent within total."""
    grant(ledger, "bank", total=1, analysts={"alice": 1})
    query(ledger, "alice", "bank", 1)
    with pytest.raises(sa.exc.IntegrityError), ledger._db.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {level} SET epsilon_spent = epsilon_spent + 1"))
    with pytest.raises(sa.exc.IntegrityError), ledger._db.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {level} SET delta_spent = delta_total + 1"))
    # an administrator's cut below the spending is allowed — and then the spending cannot grow
    ledger.set_allocation("alice", "bank", epsilon=0.5)
    ledger.set_dataset_budget("bank", epsilon=0.5)
    with pytest.raises(sa.exc.IntegrityError), ledger._db.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {level} SET epsilon_spent = epsilon_spent + 1"))


def test_an_in_memory_sqlite_ledger_is_refused() -> None:
    for url in ["sqlite://", "sqlite:///:memory:"]:
        with pytest.raises(InvalidInput):
            Ledger(url)
    with pytest.raises(InvalidInput):
        Ledger("mysql://localhost/x")
