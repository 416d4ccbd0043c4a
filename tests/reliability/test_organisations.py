"""Organisation budgets under concurrency: several analyst accounts of one organisation share one
allocation, and together get exactly floor(limit / ε) answers — 37 of ε = 0.027 in 1.0 — however their
200 requests interleave; an account with an allocation of its own spends that instead, and an account
of another organisation gets nothing.

(tests/budget covers the shared allocation sequentially.) The admin API sets allocations per analyst
only, so the shared one is set through `Ledger.set_organisation_allocation`, as an operator would.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from budget import BudgetExhausted, Ledger, NoAllocation
from mechanisms.cost import Cost

from . import _support as sp
from .conftest import Live, grant

MEMBERS = 4


def test_members_share_one_allocation_in_the_ledger(ledger: Ledger) -> None:
    members = [f"acme-{i}" for i in range(MEMBERS)]
    grant(ledger, "bank", members, organisation="acme")
    start = threading.Barrier(sp.REQUESTS)

    def one(i: int) -> str | None:
        start.wait(timeout=120)
        try:
            ledger.charge(analyst=members[i % MEMBERS], dataset="bank", cost=Cost.of(sp.EPSILON), kind="query", request_id=f"o{i}")
            return members[i % MEMBERS]
        except BudgetExhausted as e:
            assert e.level == "analyst" and e.organisation == "acme"
            return None

    with ThreadPoolExecutor(sp.REQUESTS) as pool:
        outcomes = list(pool.map(one, range(sp.REQUESTS)))
    assert sum(o is not None for o in outcomes) == sp.EXPECTED
    entries = ledger.entries(limit=10_000)
    assert len(entries) == sp.EXPECTED and {e["organisation"] for e in entries} == {"acme"}
    assert sp.exact_units(entries) == sp.SPENT
    for m in members:  # every member sees the one shared figure
        [b] = ledger.budgets(m)
        assert (b["organisation"], b["epsilon_spent"], b["epsilon_remaining"]) == ("acme", 0.999, 0.001)
    assert ledger.remaining_cost(members[0], "bank").analyst.epsilon == 1 - sp.SPENT
    assert ledger.verify() == []


def test_members_share_one_allocation_through_the_server(live: Live) -> None:
    org = sp.unique("org")
    members = [live.analyst("mem", organisation=org) for _ in range(MEMBERS)]
    own_name, own = live.analyst("own", organisation=org, epsilon=0.5)  # set below: its own allocation
    live.admin.set_budget(own_name, live.dataset, epsilon=0.5)
    stranger_name, stranger = live.analyst("str", organisation=sp.unique("other"))
    with live.ledger() as ledger:
        ledger.set_organisation_allocation(org, live.dataset, epsilon=1.0, actor="ops")

    # SQL texts of their own (10_000 + i): the server is shared, and a text another test sent with this
    # ε would be answered from the free-repeat store, at no cost
    def one(i: int) -> dict | str:
        if i % 20 == 0:  # the member with its own allocation, mixed in
            return sp.ask(own, live.dataset, 10_000 + i, epsilon="0.125", request_id=f"own{i}")
        return sp.ask(members[i % MEMBERS][1], live.dataset, 10_000 + i)

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(sp.REQUESTS + 10)))
    shared = [r for i, r in enumerate(results) if i % 20 and isinstance(r, dict)]
    mine = [r for i, r in enumerate(results) if not i % 20 and isinstance(r, dict)]
    assert {r for r in results if not isinstance(r, dict)} == {"budget_exhausted"}
    assert not any(r["cached"] for r in shared + mine)
    assert len(shared) == sp.EXPECTED  # the four accounts together: floor(1.0 / 0.027)
    assert len(mine) == 4  # 0.5 / 0.125, from its own allocation, untouched by the shared one
    with live.ledger() as ledger:
        charged = ledger.entries(dataset=live.dataset, limit=10_000)
        org_entries = [e for e in charged if e.get("organisation") == org]
        assert {e["request_id"] for e in org_entries} == {r["request_id"] for r in shared}
        assert sp.exact_units(org_entries) == sp.SPENT
        assert ledger.verify() == []
        with pytest.raises(NoAllocation):  # a member of another organisation has nothing here
            ledger.remaining_cost(stranger_name, live.dataset)
    assert sp.ask(stranger, live.dataset, 999) == "forbidden"
    for _, member in members:
        [b] = member.budget()
        assert (b["organisation"], b["epsilon_spent"]) == (org, 0.999)
