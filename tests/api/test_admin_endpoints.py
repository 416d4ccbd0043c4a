"""Administrators' budget warnings, and the endpoints the CLI's new commands stand on, as the spec says them."""
from __future__ import annotations

from fractions import Fraction
from typing import Any

from budget._limits import EXCEEDS_DATASET_REMAINING, allocation_warnings
from budget.records import Remaining
from mechanisms.cost import Cost, ZERO
from tests.api.conftest import Api


def _put(api: Api, analyst: str, epsilon: float, delta: float = 0.0) -> Any:
    r = api.client.put("/v1/admin/budgets", json={"analyst": analyst, "dataset": "bank", "epsilon": epsilon, "delta": delta}, headers=api.admin)
    assert r.status_code == 200, r.json
    return r.json


def test_an_allocation_beyond_what_the_dataset_has_left_is_set_with_a_warning(api: Api) -> None:
    """The bank's total is ε=10, δ=1e-5. With 5 spent, an allocation of 6 is accepted and warned about."""
    api.analyst("ann", epsilon=5.0)
    ledger = api.app.extensions["dpgate"]["ledger"]
    ledger.charge(analyst="ann", dataset="bank", cost=Cost(5, 0), kind="query")
    api.client.post("/v1/admin/analysts", json={"name": "bob"}, headers=api.admin)
    six = _put(api, "bob", 6)
    assert six["remaining"] == {"analyst": {"epsilon": 6.0, "delta": 0.0}, "dataset": {"epsilon": 5.0, "delta": 1e-5}}
    [warning] = six["warnings"]
    assert warning == {
        "code": "exceeds_dataset_remaining", "parameter": "epsilon", "allocation_remaining": 6.0, "dataset_remaining": 5.0,
        "detail": "the allocation leaves ε=6 to spend but dataset 'bank' has ε=5 left: the dataset's total binds first",
    }  # fmt: skip
    assert ledger.allocations(dataset="bank")[-1]["epsilon_total"] == 6.0  # set all the same
    assert _put(api, "bob", 5)["warnings"] == []  # exactly what is left: fine
    both = _put(api, "bob", 7, 2e-5)["warnings"]
    assert [(w["parameter"], w["allocation_remaining"], w["dataset_remaining"]) for w in both] == [("epsilon", 7.0, 5.0), ("delta", 2e-5, 1e-5)]
    # what the analyst can still spend counts, not the allocation's size: ann spent her 5, so 10 leaves her 5
    assert _put(api, "ann", 10)["warnings"] == []
    assert [w["allocation_remaining"] for w in _put(api, "ann", 10.5)["warnings"]] == [5.5]


def test_warnings_compare_exactly() -> None:
    tiny = Fraction(1, 10**12)
    at = Remaining(analyst=Cost(Fraction(5), Fraction(0)), dataset=Cost(Fraction(5), Fraction(0)))
    assert allocation_warnings(at, dataset="d") == []
    above = Remaining(analyst=Cost(Fraction(5) + tiny, Fraction(0)), dataset=Cost(Fraction(5), Fraction(0)))
    [w] = allocation_warnings(above, dataset="d")
    assert w["code"] == EXCEEDS_DATASET_REMAINING and w["parameter"] == "epsilon" and w["dataset_remaining"] == 5.0
    assert allocation_warnings(Remaining(analyst=ZERO, dataset=ZERO), dataset="d") == []


def test_the_spec_documents_the_new_operations(api: Api) -> None:
    spec = api.client.get("/openapi.json").json
    paths = spec["paths"]
    expected = {
        ("/v1/admin/analysts", "get"): "AnalystsOut",
        ("/v1/admin/analysts/{analyst}/disable", "post"): "AnalystRecordOut",
        ("/v1/admin/analysts/{analyst}/rotate-key", "post"): "KeyRotatedOut",
        ("/v1/training-jobs", "get"): "JobsOut",
        ("/v1/models", "get"): "ModelsOut",
        ("/v1/admin/budgets", "put"): "AllocationOut",
    }
    for (path, method), schema in expected.items():
        op = paths[path][method]
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{schema}"}, (path, ok)
        assert {"401", "403"} <= set(op["responses"]), path
    for path in ("/v1/admin/analysts/{analyst}/disable", "/v1/admin/analysts/{analyst}/rotate-key"):
        assert "404" in paths[path]["post"]["responses"]
    schemas = spec["components"]["schemas"]
    assert "warnings" in schemas["AllocationOut"]["required"]
    code = schemas["BudgetWarningOut"]["properties"]["code"]
    assert code.get("enum", [code.get("const")]) == ["exceeds_dataset_remaining"]
    assert "key" in schemas["KeyRotatedOut"]["required"] and "key" not in schemas["AnalystRecordOut"]["properties"]


def test_list_limits_are_validated(api: Api) -> None:
    headers = api.analyst("ann")
    for path in ("/v1/training-jobs", "/v1/models"):
        r = api.client.get(path, query_string={"limit": 0}, headers=headers)
        assert r.status_code == 400 and r.json["code"] == "invalid_request", r.json
        assert api.client.get(path, query_string={"limit": 5}, headers=headers).json == {path.rsplit("/", 1)[1].replace("training-", ""): []}
