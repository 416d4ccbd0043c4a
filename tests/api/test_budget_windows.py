"""Budgets that renew, through the API: an allocation set with `renew`, what `GET /v1/budget` says of its
window, the refusal that names when the window renews, and a dataset registered with a renewing budget."""
from __future__ import annotations

from pathlib import Path

from tests.api.conftest import Api, make_app

SQL = "SELECT COUNT(*) AS n FROM tx"


def test_an_allocation_that_renews_monthly(api: Api) -> None:
    headers = api.analyst("ann", epsilon=0.1)
    r = api.client.put("/v1/admin/budgets", headers=api.admin, json={
        "analyst": "ann", "dataset": "bank", "epsilon": 3, "renew": {"every": "month", "epsilon": 1}})  # fmt: skip
    assert r.status_code == 200, r.json
    assert r.json["renew"] == {"every": "month", "epsilon": 1.0, "delta": 0.0}
    assert r.json["remaining"]["analyst"] == {"epsilon": 1.0, "delta": 0.0}  # the window's allowance binds first
    assert api.query(headers, SQL, epsilon=0.75).status_code == 200
    refused = api.query(headers, SQL, epsilon=0.5)
    assert refused.status_code == 403 and refused.json["code"] == "budget_exhausted"
    assert refused.json["level"] == "analyst" and refused.json["renews_at"].endswith("-01T00:00:00+00:00")
    assert "renews at" in refused.json["detail"]
    (line,) = api.client.get("/v1/budget", headers=headers).json["budgets"]
    assert line["epsilon_total"] == 3.0 and line["epsilon_spent"] == 0.75
    window = line["window"]
    assert (window["every"], window["epsilon_per_window"], window["epsilon_spent"], window["epsilon_remaining"]) == ("month", 1.0, 0.75, 0.25)
    assert window["start"][8:] == "01T00:00:00+00:00" and window["start"] < window["end"]


def test_a_window_over_the_cap_is_refused_and_costs_nothing(api: Api) -> None:
    api.analyst("ann", epsilon=0.1)
    for body, code in (({"every": "month", "epsilon": 5}, "invalid_request"), ({"every": "fortnight", "epsilon": 1}, "invalid_request")):
        r = api.client.put("/v1/admin/budgets", headers=api.admin, json={"analyst": "ann", "dataset": "bank", "epsilon": 3, "renew": body})
        assert r.status_code == 400 and r.json["code"] == code, r.json
    ledger = api.app.extensions["dpgate"]["ledger"]
    (alloc,) = [a for a in ledger.allocations("bank") if a.get("analyst") == "ann"]
    assert alloc["epsilon_total"] == 0.1 and "window" not in alloc  # unchanged


def test_a_dataset_registered_with_a_renewing_budget(api: Api, tmp_path: Path) -> None:
    ledger = api.app.extensions["dpgate"]["ledger"]
    meta = api.app.extensions["dpgate"]["gateway"].catalog.get("bank").model_dump(mode="json")
    meta["budget"] = {"epsilon": 20, "delta": 1e-5, "renew": {"every": "week", "epsilon": 2, "delta": 1e-6}}
    r = api.client.post("/v1/admin/datasets", json=meta, headers=api.admin)
    assert r.status_code == 201, r.json
    (ds,) = [d for d in ledger.dataset_budgets() if d["dataset"].lower() == "bank"]
    assert ds["epsilon_total"] == 20.0 and ds["window"]["every"] == "week" and ds["window"]["epsilon_per_window"] == 2.0
    app = make_app(tmp_path)  # a restart re-registers it from the store: the same schedule, not audited again
    again = app.extensions["dpgate"]["ledger"]
    (ds,) = [d for d in again.dataset_budgets() if d["dataset"].lower() == "bank"]
    assert ds["window"]["epsilon_per_window"] == 2.0
    assert len([a for a in again.audit_log() if a["action"] == "set_dataset_budget" and a["new"].get("renew")]) == 1
