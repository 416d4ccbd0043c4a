"""A charge converted from zCDP records its ρ beside the (ε, δ) it is charged (migration 2), on both
backends; budgets stay in (ε, δ). Also: a database migrated before ρ existed takes the new step in place."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest
import sqlalchemy as sa

from budget import BudgetExhausted, Ledger, _migrations
from gateway.schemas import LedgerEntryOut
from mechanisms.allocation import NoiseItem, choose_noise
from mechanisms.cost import Cost

from ._support import Spec, grant, query

DELTA = Fraction(1, 10**6)


def _gaussian_cost() -> Cost:
    plan = choose_noise([NoiseItem(f"m{i}", 1.0) for i in range(30)], Fraction(1, 2), DELTA)
    assert plan.mechanism == "gaussian" and plan.cost.rho is not None
    return plan.cost


def _gaussian_charge(ledger: Ledger, cost: Cost, **kwargs: object) -> object:
    return ledger.charge(
        analyst="alice",
        dataset="bank",
        cost=cost,
        kind="query",
        detail={"sql": "SELECT COUNT(*), SUM(x) FROM t GROUP BY g", "mechanisms": ["gaussian"] * 30},
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_charge_records_its_rho_and_is_charged_its_epsilon_delta(ledger: Ledger) -> None:
    grant(ledger, "bank", total=10, delta_total=1e-4, analysts={"alice": 1}, delta=1e-5)
    cost = _gaussian_cost()
    charge = _gaussian_charge(ledger, cost)
    assert charge.cost.rho == cost.rho  # type: ignore[attr-defined]
    assert charge.cost.fits_within(Cost(cost.epsilon + Fraction(1, 10**12), cost.delta))  # type: ignore[attr-defined]
    query(ledger, "alice", "bank", 0.25)  # a pure-DP charge beside it
    plain, gaussian = ledger.entries()
    assert "rho" not in plain
    assert list(gaussian)[-3:] == ["epsilon", "delta", "rho"]
    assert Fraction(repr(gaussian["rho"])) >= cost.rho  # spending rounds up
    assert gaussian["rho"] == pytest.approx(float(cost.rho), rel=1e-11)
    assert (gaussian["epsilon"], gaussian["delta"]) == (cost.to_json()["epsilon"], 1e-6)
    assert LedgerEntryOut.model_validate(gaussian).rho == gaussian["rho"]
    assert LedgerEntryOut.model_validate(plain).rho is None
    # the budget is spent in (ε, δ) alone: ρ adds to no figure
    (row,) = ledger.budgets("alice")
    assert row["epsilon_spent"] == pytest.approx(float(cost.epsilon) + 0.25, rel=1e-11)
    assert row["delta_spent"] == 1e-6
    assert ledger.verify() == []
    with ledger._db.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT rho FROM ledger_entries WHERE rho IS NOT NULL")).scalar_one()
    assert Fraction(stored) == cost.rho  # exact


def test_a_retry_replays_the_charge_with_its_rho(ledger: Ledger) -> None:
    grant(ledger, "bank", total=10, delta_total=1e-4, analysts={"alice": 1}, delta=1e-5)
    cost = _gaussian_cost()
    first = _gaussian_charge(ledger, cost, request_id="r1", result={"rows": [[1]]})
    again = _gaussian_charge(ledger, cost, request_id="r1", result={"rows": [[2]]})
    assert again.replayed and again.cost == first.cost and again.cost.rho == cost.rho  # type: ignore[attr-defined]
    assert again.entry()["rho"] == ledger.entries()[0]["rho"]  # type: ignore[attr-defined]
    assert len(ledger.entries()) == 1


def test_budgets_refuse_by_epsilon_delta_not_rho(ledger: Ledger) -> None:
    cost = _gaussian_cost()
    grant(ledger, "bank", total=10, delta_total=1e-4, analysts={"alice": 1}, delta=Fraction(15, 10**7))
    _gaussian_charge(ledger, cost)
    with pytest.raises(BudgetExhausted):  # δ: 1e-6 + 1e-6 > 1.5e-6
        _gaussian_charge(ledger, cost)
    # a cost whose ρ alone would be far over any figure is charged its (ε, δ) only
    big = Cost(Fraction(1, 10), Fraction(1, 10**7), Fraction(50))
    charge = _gaussian_charge(ledger, big)
    assert charge.cost == big  # type: ignore[attr-defined]
    assert ledger.verify() == []


def test_a_database_from_before_rho_migrates_in_place(
    blank_spec: Spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_steps = tuple(s for s in _migrations.STEPS if s.version == 1)
    with blank_spec.open() as ledger:
        with monkeypatch.context() as m:  # the ledger as it shipped before ρ
            m.setattr(_migrations, "STEPS", old_steps)
            m.setattr(_migrations, "LATEST", 1)
            assert ledger.migrate() == [1]
        ledger.create_analyst("alice", role="analyst")
        with ledger._db.engine.begin() as conn:  # budgets and a charge as that version wrote them
            now = datetime.now(UTC).replace(tzinfo=None)
            figures = "epsilon_spent, delta_spent, epsilon_spent_when_cut, delta_spent_when_cut, updated_at"
            conn.execute(
                sa.text(f"INSERT INTO dataset_budgets (dataset, epsilon_total, delta_total, {figures}) "
                        "VALUES ('bank', 10000000000000, 100000000000000, 0, 0, 0, 0, :at)"),
                {"at": now},
            )  # fmt: skip
            conn.execute(
                sa.text(f"INSERT INTO allocations (holder_kind, holder, dataset, epsilon_total, delta_total, {figures}) "
                        "VALUES ('analyst', 'alice', 'bank', 1000000000000, 10000000000000, 0, 0, 0, 0, :at)"),
                {"at": now},
            )  # fmt: skip
            conn.execute(
                sa.text(
                    "INSERT INTO ledger_entries (at, analyst, dataset, kind, detail, epsilon, delta) "
                    "VALUES (:at, 'alice', 'bank', 'query', '{\"sql\": \"SELECT 1\"}', 250000000000, 0)"
                ),
                {"at": datetime.now(UTC).replace(tzinfo=None)},
            )
            for table in ("allocations", "dataset_budgets"):
                conn.execute(sa.text(f"UPDATE {table} SET epsilon_spent = epsilon_spent + 250000000000"))
    with blank_spec.open() as ledger:  # restarted on the new code
        assert ledger.migrate() == [2, 3, 4]
        assert ledger.schema_version() == _migrations.LATEST == 4
        (old,) = ledger.entries()
        assert "rho" not in old and old["epsilon"] == 0.25
        cost = _gaussian_cost()
        _gaussian_charge(ledger, cost)
        new, old_again = ledger.entries()
        assert old_again == old and new["rho"] == pytest.approx(float(cost.rho))  # type: ignore[arg-type]
        assert ledger.verify() == []
        assert ledger.migrate() == []
