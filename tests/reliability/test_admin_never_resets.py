"""Nothing an administrator does resets spending: remaining never increases except by an explicit raise
of a limit, and every administrative change is in the audit log with its actor, old and new values.

The admin API has no deletion: an analyst can be disabled (ledger) and created again under its name,
and a dataset registered again (`POST /v1/admin/datasets`, also with other tables or another total).
Spending is keyed by names, so each re-creation finds it where it was.

Bug found here: dataset names are case-insensitive in the catalog but were exact in the ledger, so
registering ``SHOP`` over ``shop`` opened a second budget with nothing spent — a dataset total and an
allocation starting again from zero, and an exhausted analyst answered again. The ledger now keeps
the first spelling and finds it whatever the case. Also missing: a dataset's registration (its tables,
bounds, sources, data version) was not audited unless its total changed; it now is.
"""
from __future__ import annotations

from fractions import Fraction

import pytest

from budget import Ledger
from gateway.client import ApiError, Client

from . import _support as sp
from .conftest import Live


def _remaining(client: Client, dataset: str) -> tuple[Fraction, Fraction]:
    [b] = [b for b in client.budget() if b["dataset"].lower() == dataset.lower()]
    return Fraction(repr(b["epsilon_remaining"])), Fraction(repr(b["dataset_level"]["epsilon_remaining"]))


def _spent(client: Client, dataset: str) -> tuple[float, float]:
    [b] = [b for b in client.budget() if b["dataset"].lower() == dataset.lower()]
    return b["epsilon_spent"], b["dataset_level"]["epsilon_spent"]


def test_no_admin_change_gives_spending_back(live: Live) -> None:
    admin = live.admin
    dataset = sp.unique("ledgerds")
    source = sp.write_table(live.source.parent / f"{dataset}.parquet", seed=3)
    admin.register_dataset(sp.dataset_meta(dataset, source, epsilon=2.0))
    name, client = live.analyst("rst", epsilon=1.0, dataset=dataset)
    for i in range(3):
        client.query(dataset, sp.sql(i), epsilon=0.25)
    assert _spent(client, dataset) == (0.75, 0.75)

    history = [_remaining(client, dataset)]

    def changed(*, raised: bool = False) -> None:
        """After each admin step: spending unchanged; remaining grew only if a limit was raised."""
        now = _remaining(client, dataset)
        if not raised:
            assert now[0] <= history[-1][0] and now[1] <= history[-1][1], (history[-1], now)
        history.append(now)
        assert _spent(client, dataset) == (0.75, 0.75)

    admin.set_budget(name, dataset, epsilon=0.5)  # the allocation cut below what was spent
    changed()
    assert history[-1][0] == 0
    with pytest.raises(ApiError) as refused:
        client.query(dataset, sp.sql(10), epsilon=0.01)
    assert refused.value.code == "budget_exhausted"

    admin.register_dataset(sp.dataset_meta(dataset, source, epsilon=0.5))  # the total cut below the spending
    changed()
    assert history[-1] == (0, 0)

    admin.register_dataset(sp.dataset_meta(dataset.upper(), source, epsilon=0.5))  # "re-created" as DATASET
    changed()
    assert [b["dataset"] for b in client.budget()] == [dataset]  # one budget, not a fresh second one
    admin.set_budget(name, dataset.upper(), epsilon=0.5)
    changed()
    with pytest.raises(ApiError) as refused:
        client.query(dataset.upper(), sp.sql(11), epsilon=0.01)
    assert refused.value.code == "budget_exhausted"

    with pytest.raises(ApiError) as exists:  # an analyst cannot be created over a live one
        admin.create_analyst(name)
    assert exists.value.status == 400
    with live.ledger() as ledger:
        ledger.disable_analyst(name, actor="admin")
    with pytest.raises(ApiError) as gone:
        client.budget()
    assert gone.value.status == 401
    again = Client(live.url, admin.create_analyst(name)["key"])  # re-created: a new key, the old spending
    client = again
    changed()
    assert _spent(again, dataset) == (0.75, 0.75)

    admin.register_dataset(sp.dataset_meta(dataset, source, epsilon=2.0))  # explicit raises give back
    admin.set_budget(name, dataset, epsilon=1.0)  # exactly the difference, no more
    changed(raised=True)
    assert history[-1] == (Fraction(1, 4), Fraction(5, 4))
    again.query(dataset, sp.sql(12), epsilon=0.25)
    with pytest.raises(ApiError):
        again.query(dataset, sp.sql(13), epsilon=1e-9)

    with live.ledger() as ledger:
        assert ledger.verify() == []
        log = [e for e in ledger.audit_log(limit=10_000) if dataset in e["target"].lower()]
        by_action = [(e["actor"], e["action"]) for e in reversed(log)]
    assert by_action == [
        ("admin", "set_dataset_budget"),  # registered, 2.0
        ("admin", "register_dataset"),
        ("admin", "set_allocation"),  # 1.0
        ("admin", "set_allocation"),  # cut to 0.5
        ("admin", "set_dataset_budget"),  # cut to 0.5
        ("admin", "register_dataset"),  # the definition changed (its budget)
        ("admin", "register_dataset"),  # and again (its name's case); no new budget
        ("admin", "set_dataset_budget"),  # raised to 2.0
        ("admin", "register_dataset"),
        ("admin", "set_allocation"),  # raised to 1.0
    ]
    cuts = [e for e in reversed(log) if e["action"] in ("set_allocation", "set_dataset_budget")]
    assert [(e["old"], e["new"]) for e in cuts] == [
        (None, {"epsilon": 2.0, "delta": 1e-5}),
        (None, {"epsilon": 1.0, "delta": 0.0}),
        ({"epsilon": 1.0, "delta": 0.0}, {"epsilon": 0.5, "delta": 0.0}),
        ({"epsilon": 2.0, "delta": 1e-5}, {"epsilon": 0.5, "delta": 1e-5}),
        ({"epsilon": 0.5, "delta": 1e-5}, {"epsilon": 2.0, "delta": 1e-5}),
        ({"epsilon": 0.5, "delta": 0.0}, {"epsilon": 1.0, "delta": 0.0}),
    ]
    registrations = [e for e in reversed(log) if e["action"] == "register_dataset"]
    assert registrations[0]["old"] is None
    assert all(r["old"] == prev["new"] for prev, r in zip(registrations, registrations[1:]))
    assert [r["new"]["budget"]["epsilon"] for r in registrations] == [2.0, 0.5, 0.5, 2.0]
    assert registrations[2]["new"]["name"] == dataset.upper() and registrations[2]["target"] == dataset
    assert all(r["new"]["version"] and r["new"]["tables"]["tx"]["max_rows_per_unit"] == 10 for r in registrations)
    people = [e for e in ledger_audit(live) if e["target"] == name]
    assert [(e["actor"], e["action"]) for e in people] == [
        ("admin", "create_analyst"),
        ("admin", "disable_analyst"),
        ("admin", "recreate_analyst"),
    ]
    assert people[2]["old"]["disabled"] is True and people[2]["new"]["key_id"] != people[0]["new"]["key_id"]


def ledger_audit(live: Live) -> list[dict]:
    with live.ledger() as ledger:
        return list(reversed(ledger.audit_log(limit=10_000)))


def test_case_variants_share_one_budget_in_the_ledger(ledger: Ledger) -> None:
    """The ledger alone: `Bank` and `BANK` are one dataset, whose first spelling is kept."""
    ledger.set_dataset_budget("Bank", epsilon=1)
    ledger.create_analyst("alice")
    ledger.set_allocation("alice", "BANK", epsilon=1)
    from mechanisms.cost import Cost

    ledger.charge(analyst="alice", dataset="bank", cost=Cost.of("0.75"), kind="query")
    ledger.set_dataset_budget("BANK", epsilon=1)
    assert [b["dataset"] for b in ledger.dataset_budgets()] == ["Bank"]
    assert ledger.remaining("alice", "bAnK")["analyst"]["epsilon"] == 0.25
    [b] = ledger.budgets("alice")
    assert (b["dataset"], b["epsilon_spent"], b["dataset_level"]["epsilon_spent"]) == ("Bank", 0.75, 0.75)
    assert ledger.verify() == []
