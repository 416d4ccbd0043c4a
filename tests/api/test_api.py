"""The HTTP API through Flask's test client: auth, roles, queries, budgets, the ledger, errors."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.api.conftest import ADMIN_KEY, Api, make_app

COUNT = "SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat"


def entries(api: Api, **params: str) -> list[dict]:
    r = api.client.get("/v1/admin/ledger", query_string=params, headers=api.admin)
    assert r.status_code == 200
    return r.json["entries"]


def test_health_and_spec_are_public(api: Api) -> None:
    assert api.client.get("/healthz").json == {"status": "ok"}
    spec = api.client.get("/openapi.json").json
    for path in ("/v1/queries", "/v1/queries/preview", "/v1/budget", "/v1/datasets", "/v1/admin/ledger", "/v1/admin/budgets", "/v1/admin/analysts", "/v1/admin/datasets"):
        assert path in spec["paths"], path
    assert "BearerAuth" in spec["components"]["securitySchemes"]
    assert api.client.get("/docs").status_code == 200
    assert api.client.get("/metrics").status_code == 401  # the metrics are for administrators
    assert b"dpgate_http_requests_total" in api.client.get("/metrics", headers=api.admin).data


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}, {"Authorization": f"Bearer {ADMIN_KEY}x"}])
def test_no_or_bad_key_is_401_problem(api: Api, headers: dict) -> None:
    for method, path in (("get", "/v1/datasets"), ("post", "/v1/queries"), ("get", "/v1/budget"), ("get", "/v1/admin/ledger"), ("post", "/v1/admin/analysts")):
        r = getattr(api.client, method)(path, headers=headers, json={})
        assert r.status_code == 401, (path, r.json)
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json["code"] == "unauthorized" and r.json["status"] == 401


def test_analyst_cannot_use_admin_endpoints(api: Api) -> None:
    ann = api.analyst("ann")
    for method, path, body in (
        ("post", "/v1/admin/analysts", {"name": "eve"}),
        ("put", "/v1/admin/budgets", {"analyst": "ann", "dataset": "bank", "epsilon": 100}),
        ("get", "/v1/admin/ledger", None),
        ("post", "/v1/admin/datasets", {"name": "x", "privacy_unit": None, "budget": {"epsilon": 1}, "tables": {}}),
    ):
        r = getattr(api.client, method)(path, headers=ann, json=body)
        assert r.status_code == 403 and r.json["code"] == "forbidden", path
    # and the attempted self-grant changed nothing
    assert api.client.get("/v1/budget", headers=ann).json["budgets"][0]["epsilon_total"] == 2.0


def test_keys_are_stored_only_hashed(api: Api, tmp_path: Path) -> None:
    r = api.client.post("/v1/admin/analysts", json={"name": "ann"}, headers=api.admin)
    key = r.json["key"]
    assert len(key) >= 43 and key.startswith("dpg_")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("ledger.db*"))  # with the WAL
    assert len(raw) > 0
    assert key.encode() not in raw and ADMIN_KEY.encode() not in raw
    assert api.client.get("/v1/budget", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_query_answer_shape_and_charge(api: Api) -> None:
    ann = api.analyst("ann", epsilon=2.0)
    r = api.query(ann, COUNT, epsilon=0.5)
    assert r.status_code == 200, r.json
    body = r.json
    assert body["columns"] == ["cat", "n"]
    assert [row[0] for row in body["rows"]] == ["food", "travel", "tech", "café ☕"]
    assert all(isinstance(row[1], int) and row[1] >= 0 for row in body["rows"])
    assert body["accuracy"]["n"]["mechanism"] == "laplace"
    assert body["accuracy"]["n"]["scale"] == pytest.approx(5 / 0.5)  # max_rows_per_unit 5 / ε
    assert body["accuracy"]["n"]["ci95"] > 0
    assert body["cost"] == {"epsilon": 0.5, "delta": 0.0}
    assert body["remaining"]["analyst"]["epsilon"] == 1.5
    assert body["remaining"]["dataset"]["epsilon"] == 9.5
    assert body["cached"] is False
    [entry] = entries(api)
    assert entry["analyst"] == "ann" and entry["dataset"] == "bank" and entry["kind"] == "query"
    assert entry["epsilon"] == 0.5 and entry["request_id"] == body["request_id"]
    assert "COUNT(*)" in entry["sql"] and entry["mechanisms"] == ["laplace"]


def test_budget_shape(api: Api) -> None:
    ann = api.analyst("ann", epsilon=2.0, delta=1e-6)
    api.query(ann, COUNT, epsilon=0.25)
    api.query(ann, "SELECT SUM(amount) FROM tx", epsilon=0.25)
    [b] = api.client.get("/v1/budget", headers=ann).json["budgets"]
    assert b["dataset"] == "bank"
    assert (b["epsilon_total"], b["epsilon_spent"], b["delta_total"], b["delta_spent"]) == (2.0, 0.5, 1e-6, 0.0)
    assert b["dataset_level"]["epsilon_total"] == 10.0 and b["dataset_level"]["epsilon_spent"] == 0.5


def test_exact_costs_four_quarters(api: Api) -> None:
    ann = api.analyst("ann", epsilon=1.0)
    for i in range(4):
        assert api.query(ann, f"SELECT COUNT(*) FROM tx WHERE amount > {i}", epsilon=0.25).status_code == 200
    [b] = api.client.get("/v1/budget", headers=ann).json["budgets"]
    assert b["epsilon_spent"] == 1.0
    r = api.query(ann, "SELECT COUNT(*) FROM tx WHERE amount > 99", epsilon=1e-9)
    assert r.status_code == 403 and r.json["code"] == "budget_exhausted"


def test_budget_exhausted_charges_nothing(api: Api) -> None:
    ann = api.analyst("ann", epsilon=1.0)
    r = api.query(ann, COUNT, epsilon=1.5)
    assert r.status_code == 403 and r.json["code"] == "budget_exhausted" and r.json["level"] == "analyst"
    assert entries(api) == []
    bob = api.analyst("bob", epsilon=50.0)  # the dataset's total (10) binds across analysts
    r = api.query(bob, COUNT, epsilon=20)
    assert r.status_code == 403 and r.json["level"] == "dataset"


def test_refusals_cost_nothing_and_are_problems(api: Api) -> None:
    ann = api.analyst("ann")
    cases = [
        ("SELECT amount FROM tx", "unsupported_sql"),
        ("SELEC COUNT(*) FROM tx", "invalid_sql"),
        ("SELECT COUNT(*) FROM ghost", "unknown_table"),
        ("SELECT SUM(ghost) FROM tx", "unknown_column"),
    ]
    for sql, code in cases:
        r = api.query(ann, sql)
        assert r.status_code == 400 and r.json["code"] == code, r.json
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json["type"].endswith(code) and r.json["instance"]
    r = api.client.post("/v1/queries", json={"dataset": "bank", "sql": COUNT, "epsilon": "lots"}, headers=ann)
    assert r.status_code == 400 and r.json["code"] == "invalid_request" and "epsilon" in json.dumps(r.json["errors"])
    r = api.client.post("/v1/queries", data="{not json", headers={**ann, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json["code"] == "invalid_request"
    r = api.client.post("/v1/queries", json={"dataset": "nope", "sql": COUNT, "epsilon": 1}, headers=ann)
    assert r.status_code == 404 and r.json["code"] == "unknown_dataset"
    assert entries(api) == []
    [b] = api.client.get("/v1/budget", headers=ann).json["budgets"]
    assert b["epsilon_spent"] == 0.0


def test_no_allocation_is_forbidden(api: Api) -> None:
    r = api.client.post("/v1/admin/analysts", json={"name": "nobudget"}, headers=api.admin)
    headers = {"Authorization": f"Bearer {r.json['key']}"}
    assert api.client.get("/v1/datasets", headers=headers).json == {"datasets": []}
    r = api.query(headers, COUNT)
    assert r.status_code == 403 and r.json["code"] == "forbidden"


def test_datasets_lists_public_metadata_only(api: Api) -> None:
    ann = api.analyst("ann")
    [ds] = api.client.get("/v1/datasets", headers=ann).json["datasets"]
    assert ds["name"] == "bank" and ds["privacy_unit"] == "cid"
    assert ds["tables"]["tx"]["max_rows_per_unit"] == 5
    assert ds["tables"]["tx"]["columns"]["amount"] == {"type": "float", "lower": 0, "upper": 1000, "categories": None, "nullable": False}
    assert all("source" not in t for t in ds["tables"].values())


def test_request_id_retry_returns_same_answer_once_charged(api: Api) -> None:
    ann = api.analyst("ann", epsilon=2.0)
    first = api.query(ann, "SELECT SUM(amount) AS s FROM tx", epsilon=0.5, request_id="r-1").json
    again = api.query(ann, "SELECT SUM(amount) AS s FROM tx", epsilon=0.5, request_id="r-1").json
    assert again["rows"] == first["rows"] and again["request_id"] == "r-1" and again["cached"] is True
    assert len(entries(api)) == 1
    r = api.query(ann, "SELECT SUM(amount) AS s FROM tx WHERE flag", epsilon=0.5, request_id="r-1")
    assert r.status_code == 409 and r.json["code"] == "request_in_progress"
    bob = api.analyst("bob", epsilon=2.0)  # request ids are scoped to their analyst
    other = api.query(bob, "SELECT SUM(amount) AS s FROM tx WHERE flag", epsilon=0.5, request_id="r-1")
    assert other.status_code == 200 and other.json["cached"] is False


def test_identical_query_is_a_free_repeat(api: Api) -> None:
    ann = api.analyst("ann", epsilon=2.0)
    first = api.query(ann, COUNT, epsilon=0.5).json
    repeat = api.query(ann, "select cat,  count(*) as n from tx group by cat", epsilon=0.5).json
    assert repeat["cached"] is True and repeat["rows"] == first["rows"] and repeat["cost"] == {"epsilon": 0.0, "delta": 0.0}
    other_eps = api.query(ann, COUNT, epsilon=0.25).json
    assert other_eps["cached"] is False
    assert [e["epsilon"] for e in entries(api)] == [0.25, 0.5]


def test_preview_is_free_and_matches_the_query(api: Api) -> None:
    ann = api.analyst("ann", epsilon=2.0)
    p = api.client.post("/v1/queries/preview", json={"dataset": "bank", "sql": COUNT, "epsilon": 0.5}, headers=ann).json
    assert p["cost"] == {"epsilon": 0.5, "delta": 0.0}
    assert p["accuracy"]["n"]["scale"] == pytest.approx(10.0)
    assert entries(api) == [] and p["remaining"]["analyst"]["epsilon"] == 2.0
    q = api.query(ann, COUNT, epsilon=0.5).json
    assert q["accuracy"]["n"] == p["accuracy"]["n"]


def test_unexpected_error_is_500_without_internals(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    ann = api.analyst("ann")
    gw = api.app.extensions["dpgate"]["gateway"]

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret row value 123-45-6789")

    monkeypatch.setattr(gw.engine, "execute", boom)
    r = api.query(ann, COUNT)
    assert r.status_code == 500 and r.json["code"] == "internal_error"
    assert "123-45-6789" not in r.get_data(as_text=True) and r.json["instance"]
    assert entries(api) == []  # nothing released, nothing charged


def test_admin_registers_dataset_that_survives_restart(tmp_path: Path) -> None:
    csv = tmp_path / "loans.csv"
    pd.DataFrame({"uid": [1, 2, 3, 3], "amt": [10.0, 20.0, 30.0, 40.0], "ok": ["Yes", "No", "Yes", "true"]}).to_csv(csv, index=False)
    meta = {
        "name": "mini", "privacy_unit": "uid", "budget": {"epsilon": 3, "delta": 0},
        "tables": {"l": {"source": str(csv), "max_rows_per_unit": 2, "columns": {
            "uid": {"type": "id"}, "amt": {"type": "float", "lower": 0, "upper": 100}, "ok": {"type": "category", "categories": ["Yes", "No", "true"]}}}},
    }
    api = Api(make_app(tmp_path))
    r = api.client.post("/v1/admin/datasets", json=meta, headers=api.admin)
    assert r.status_code == 201, r.json
    bad = api.client.post("/v1/admin/datasets", json={**meta, "privacy_unit": "nope"}, headers=api.admin)
    assert bad.status_code == 400 and bad.json["code"] == "invalid_request"
    ann = api.analyst("ann", dataset="mini", epsilon=1.0)
    r = api.client.post("/v1/queries", json={"dataset": "mini", "sql": "SELECT ok, COUNT(*) FROM l GROUP BY ok", "epsilon": 0.5}, headers=ann)
    assert r.status_code == 200 and [row[0] for row in r.json["rows"]] == ["Yes", "No", "true"]
    # a new app over the same data directory and ledger: dataset, key, budget and spending survive
    api2 = Api(make_app(tmp_path))
    [b] = api2.client.get("/v1/budget", headers=ann).json["budgets"]
    assert b["dataset"] == "mini" and b["epsilon_spent"] == 0.5 and b["dataset_level"]["epsilon_total"] == 3.0
    assert len(entries(api2)) == 1


def test_a_public_table_query_with_a_request_id_completes_and_its_retry_gets_the_answer(api: Api) -> None:
    ann = api.analyst("ann")
    first = api.query(ann, "SELECT COUNT(*) AS n FROM rates", request_id="p-1")
    assert first.status_code == 200, first.json
    assert first.json["cost"]["epsilon"] == 0 and first.json["cached"] is False
    again = api.query(ann, "SELECT COUNT(*) AS n FROM rates", request_id="p-1")  # was 409 request_in_progress
    assert again.status_code == 200, again.json
    assert again.json["rows"] == first.json["rows"] and again.json["cached"] is True
    other = api.query(ann, "SELECT COUNT(*) AS n FROM tx", request_id="p-1")  # the id now belongs to the first body
    assert other.status_code == 409 and "already used for a different request" in other.json["detail"]
    assert api.client.get("/v1/budget", headers=ann).json["budgets"][0]["epsilon_spent"] == 0
    history = api.app.extensions["dpgate"]["ledger"].request_history("ann")
    assert [(h["request_id"], h["kind"], h["cached"], h["epsilon"], h["answer"]) for h in history] == [("p-1", "public query", False, 0.0, True)]
