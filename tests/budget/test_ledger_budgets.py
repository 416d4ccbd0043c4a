"""Budgets: exact arithmetic, both levels enforced, refusals write nothing, limits changed safely."""

from __future__ import annotations

from fractions import Fraction

import pytest

from budget import BudgetExhausted, InvalidInput, Ledger, NoAllocation, UnknownAnalyst, UnknownDataset
from mechanisms.cost import Cost

from ._support import grant, query


def _state(ledger: Ledger) -> tuple[object, ...]:
    return (ledger.entries(), ledger.dataset_budgets(), ledger.allocations(), ledger.audit_log())


def test_four_quarters_spend_exactly_one(ledger: Ledger) -> None:
    grant(ledger, "bank", total=1, analysts={"alice": 1})
    for _ in range(4):
        charge = query(ledger, "alice", "bank", 0.25)
    assert charge.remaining.analyst == Cost(Fraction(0)) and charge.remaining.dataset == Cost(Fraction(0))
    (row,) = ledger.budgets("alice")
    assert row["epsilon_spent"] == 1.0 and row["epsilon_remaining"] == 0.0
    assert row["dataset_level"]["epsilon_spent"] == 1.0
    with pytest.raises(BudgetExhausted):
        query(ledger, "alice", "bank", 1e-12)  # not even the smallest unit is left


def test_thirty_seven_charges_of_0_027_fit_the_thirty_eighth_does_not(ledger: Ledger) -> None:
    grant(ledger, "bank", total=1, analysts={"alice": 1})
    for _ in range(37):
        charge = query(ledger, "alice", "bank", 0.027)
    assert charge.remaining.analyst.epsilon == Fraction(1, 1000)  # 1 - 37 * 0.027, exactly
    with pytest.raises(BudgetExhausted) as info:
        query(ledger, "alice", "bank", 0.027)
    assert info.value.level == "analyst"
    assert info.value.remaining.epsilon == Fraction(1, 1000)
    assert info.value.requested == Cost.of("0.027")
    assert len(ledger.entries()) == 37
    assert ledger.remaining("alice", "bank")["analyst"]["epsilon"] == 0.001


def test_charges_round_up_to_the_unit(ledger: Ledger) -> None:
    grant(ledger, "bank", total=1, analysts={"alice": 1}, delta_total=1e-6, delta=1e-6)
    charge = query(ledger, "alice", "bank", Fraction(1, 3), Fraction(1, 3 * 10**7))
    assert charge.cost.epsilon == Fraction(333_333_333_334, 10**12)  # never less than requested
    assert charge.cost.delta == Fraction(33_333_333_334, 10**18)
    assert charge.cost.epsilon >= Fraction(1, 3) and charge.cost.delta >= Fraction(1, 3 * 10**7)


def test_delta_is_enforced_too(ledger: Ledger) -> None:
    grant(ledger, "bank", total=10, delta_total=1e-5, analysts={"alice": 10}, delta=2e-6)
    query(ledger, "alice", "bank", 0.1, 1e-6)
    query(ledger, "alice", "bank", 0.1, 1e-6)
    with pytest.raises(BudgetExhausted) as info:
        query(ledger, "alice", "bank", 0.1, 1e-18)
    assert info.value.level == "analyst" and info.value.remaining.delta == 0
    query(ledger, "alice", "bank", 0.1)  # pure ε still fits


def test_dataset_total_binds_across_analysts(ledger: Ledger) -> None:
    grant(ledger, "bank", total=1, analysts={"alice": 0.75, "bob": 0.75})
    query(ledger, "alice", "bank", 0.5)
    query(ledger, "bob", "bank", 0.25)
    before = _state(ledger)
    with pytest.raises(BudgetExhausted) as info:
        query(ledger, "bob", "bank", 0.5)  # bob has 0.5 left, the dataset only 0.25
    assert info.value.level == "dataset"
    assert info.value.remaining == Cost(Fraction(1, 4))
    assert info.value.to_dict()["code"] == "budget_exhausted"
    assert _state(ledger) == before
    query(ledger, "alice", "bank", 0.25)
    assert ledger.dataset_budgets()[0]["epsilon_remaining"] == 0.0


def test_analyst_allocation_binds_inside_a_larger_total(ledger: Ledger) -> None:
    grant(ledger, "bank", total=10, analysts={"alice": 0.5})
    query(ledger, "alice", "bank", 0.5)
    before = _state(ledger)
    with pytest.raises(BudgetExhausted) as info:
        query(ledger, "alice", "bank", 0.001, request_id="r1", result={"rows": [[1]]}, cache_key="k1")
    assert info.value.level == "analyst"
    assert isinstance(info.value, ValueError)
    # nothing written: no entry, spent unchanged, no stored result, nothing cached
    assert _state(ledger) == before
    assert ledger.stored_result("alice", "r1") is None and ledger.cached("k1") is None


def test_no_allocation_is_forbidden(ledger: Ledger) -> None:
    grant(ledger, "bank", total=1, analysts={"alice": 1})
    grant(ledger, "cards", total=1)
    with pytest.raises(NoAllocation) as info:
        query(ledger, "alice", "cards", 0.1)
    assert info.value.code == "forbidden" and info.value.dataset == "cards"
    with pytest.raises(NoAllocation):
        query(ledger, "alice", "nowhere", 0.1)
    with pytest.raises(NoAllocation):
        ledger.remaining("alice", "cards")
    with pytest.raises(UnknownAnalyst):
        query(ledger, "mallory", "bank", 0.1)
    assert ledger.entries() == []
    assert ledger.allocations_of("alice") == ["bank"]


def test_allocation_needs_a_known_analyst_and_dataset(ledger: Ledger) -> None:
    grant(ledger, "bank", analysts={"alice": 1})
    with pytest.raises(UnknownDataset):
        ledger.set_allocation("alice", "nowhere", epsilon=1)
    with pytest.raises(UnknownAnalyst):
        ledger.set_allocation("nobody", "bank", epsilon=1)


def test_bad_amounts_are_refused(ledger: Ledger) -> None:
    for epsilon in [-1, float("nan"), float("inf"), "abc", 10**7, True]:
        with pytest.raises(InvalidInput):
            ledger.set_dataset_budget("bank", epsilon=epsilon)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ledger.set_dataset_budget("bank", epsilon=1, delta=2)
    grant(ledger, "bank", analysts={"alice": 1})
    with pytest.raises(InvalidInput):
        query(ledger, "alice", "bank", 2 * 10**6)
    with pytest.raises(InvalidInput):
        ledger.charge(analyst="alice", dataset="bank", cost=0.1, kind="query")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        query(ledger, "alice", "bank", 0.1, result={"x": float("nan")})
    with pytest.raises(InvalidInput):
        query(ledger, "alice", "bank", 0.1, cache_key="k")  # nothing to cache
    assert ledger.entries() == []


def test_lowering_a_total_keeps_the_spending(ledger: Ledger) -> None:
    grant(ledger, "bank", total=2, analysts={"alice": 2})
    query(ledger, "alice", "bank", 1.5)
    ledger.set_allocation("alice", "bank", epsilon=1, actor="root")  # below what alice spent
    ledger.set_dataset_budget("bank", epsilon=0.5, actor="root")  # below what all spent
    (row,) = ledger.budgets("alice")
    assert (row["epsilon_total"], row["epsilon_spent"], row["epsilon_remaining"]) == (1.0, 1.5, 0.0)
    level = row["dataset_level"]
    assert (level["epsilon_total"], level["epsilon_spent"], level["epsilon_remaining"]) == (0.5, 1.5, 0.0)
    with pytest.raises(BudgetExhausted):
        query(ledger, "alice", "bank", 1e-12)
    query(ledger, "alice", "bank", 0)  # a free release still goes through (and is recorded)
    # raising the limits again gives back only the difference
    ledger.set_allocation("alice", "bank", epsilon=2)
    ledger.set_dataset_budget("bank", epsilon=2)
    assert ledger.remaining("alice", "bank") == {
        "analyst": {"epsilon": 0.5, "delta": 0.0},
        "dataset": {"epsilon": 0.5, "delta": 0.0},
    }
    query(ledger, "alice", "bank", 0.5)
    with pytest.raises(BudgetExhausted):
        query(ledger, "alice", "bank", 1e-12)
    assert ledger.verify() == []


def test_recreating_an_analyst_or_a_dataset_keeps_the_spending(ledger: Ledger) -> None:
    grant(ledger, "bank", total=2, analysts={"alice": 1})
    query(ledger, "alice", "bank", 0.75)
    ledger.disable_analyst("alice", actor="root")
    alice, key = ledger.create_analyst("alice", role="analyst", actor="root")  # re-created, new key
    assert not alice.disabled and ledger.authenticate(key) == alice
    ledger.set_dataset_budget("bank", epsilon=2)  # the dataset registered again, as at every start
    ledger.set_allocation("alice", "bank", epsilon=1)
    (row,) = ledger.budgets("alice")
    assert row["epsilon_spent"] == 0.75 and row["dataset_level"]["epsilon_spent"] == 0.75
    with pytest.raises(BudgetExhausted):
        query(ledger, "alice", "bank", 0.5)


def test_unchanged_settings_are_not_audited_again(ledger: Ledger) -> None:
    grant(ledger, "bank", total=2, analysts={"alice": 1})
    n = len(ledger.audit_log())
    ledger.set_dataset_budget("bank", epsilon=2)
    ledger.set_allocation("alice", "bank", epsilon="1.0")
    assert len(ledger.audit_log()) == n


def test_organisation_allocation_is_shared(ledger: Ledger) -> None:
    grant(ledger, "bank", total=10)
    ledger.create_analyst("ann", role="analyst", organisation="acme")
    ledger.create_analyst("abe", role="analyst", organisation="acme")
    ledger.create_analyst("zed", role="analyst", organisation="other")
    ledger.set_organisation_allocation("acme", "bank", epsilon=1, actor="root")
    query(ledger, "ann", "bank", 0.75)
    charge = query(ledger, "abe", "bank", 0.25)
    assert charge.organisation == "acme" and charge.remaining.analyst == Cost(Fraction(0))
    with pytest.raises(BudgetExhausted) as info:
        query(ledger, "abe", "bank", 0.1)
    assert info.value.level == "analyst" and info.value.organisation == "acme"
    with pytest.raises(NoAllocation):
        query(ledger, "zed", "bank", 0.1)
    # an analyst's own allocation takes precedence over its organisation's
    ledger.set_allocation("ann", "bank", epsilon=0.5)
    assert query(ledger, "ann", "bank", 0.5).organisation is None
    (row,) = ledger.budgets("abe")
    assert row["organisation"] == "acme" and row["epsilon_spent"] == 1.0
    assert ledger.budgets("ann")[0]["epsilon_spent"] == 0.5
    assert ledger.entries(analyst="abe")[0]["organisation"] == "acme"
    assert ledger.verify() == []
