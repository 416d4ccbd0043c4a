"""Free repeats are scoped to the asker's organisation: a `cached: true` never tells an analyst what
another organisation asked. An analyst without an organisation is its own scope; a dataset with
`share_repeats = "all"` shares its repeats with every analyst."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import Api, make_app
from tests.conftest import BANK, make_gateway

SQL = "SELECT SUM(amount) AS s FROM tx"  # a float: two fresh draws differ


def _member(api: Api, name: str, organisation: str | None) -> dict[str, str]:
    body = {"name": name} if organisation is None else {"name": name, "organisation": organisation}
    r = api.client.post("/v1/admin/analysts", json=body, headers=api.admin)
    assert r.status_code == 201 and r.json["organisation"] == organisation, r.json
    headers = {"Authorization": f"Bearer {r.json['key']}"}
    r = api.client.put("/v1/admin/budgets", json={"analyst": name, "dataset": "bank", "epsilon": 2.0, "delta": 0}, headers=api.admin)
    assert r.status_code == 200, r.json
    return headers


def _spent(api: Api, headers: dict[str, str]) -> float:
    [b] = api.client.get("/v1/budget", headers=headers).json["budgets"]
    return b["epsilon_spent"]


def _entries(api: Api) -> list[dict]:
    return api.client.get("/v1/admin/ledger", headers=api.admin).json["entries"]


def test_another_organisation_is_charged_for_the_same_query(api: Api) -> None:
    ann, bob = _member(api, "ann", "acme"), _member(api, "bob", "globex")
    first = api.query(ann, SQL, epsilon=0.5)
    assert first.status_code == 200 and first.json["cached"] is False, first.json
    second = api.query(bob, SQL, epsilon=0.5)
    assert second.status_code == 200, second.json
    assert second.json["cached"] is False and second.json["cost"] == {"epsilon": 0.5, "delta": 0.0}
    assert second.json["rows"] != first.json["rows"]  # a fresh draw, not ann's answer
    assert _spent(api, bob) == 0.5 and _spent(api, ann) == 0.5
    assert sorted(e["analyst"] for e in _entries(api)) == ["ann", "bob"]
    again = api.query(bob, SQL, epsilon=0.5)  # bob's own repeat is free, and it is bob's answer
    assert again.json["cached"] is True and again.json["rows"] == second.json["rows"] and _spent(api, bob) == 0.5


def test_the_same_organisation_gets_a_free_repeat(api: Api) -> None:
    ann, amy = _member(api, "ann", "acme"), _member(api, "amy", "acme")
    first = api.query(ann, SQL, epsilon=0.5).json
    repeat = api.query(amy, "select  sum(amount) as s from tx", epsilon=0.5)  # normalised to the same SQL
    assert repeat.status_code == 200, repeat.json
    assert repeat.json["cached"] is True and repeat.json["rows"] == first["rows"]
    assert repeat.json["cost"] == {"epsilon": 0.0, "delta": 0.0} and _spent(api, amy) == 0
    assert [e["analyst"] for e in _entries(api)] == ["ann"]


def test_an_analyst_without_an_organisation_is_its_own_scope(api: Api) -> None:
    """Not shared between two analysts without one, nor with an organisation named like the analyst."""
    solo, other = _member(api, "acme", None), _member(api, "other", None)
    member = _member(api, "mia", "acme")
    first = api.query(solo, SQL, epsilon=0.5).json
    for headers in (other, member):
        r = api.query(headers, SQL, epsilon=0.5)
        assert r.status_code == 200 and r.json["cached"] is False and r.json["rows"] != first["rows"], r.json
        assert _spent(api, headers) == 0.5
    assert api.query(solo, SQL, epsilon=0.5).json["cached"] is True
    assert len(_entries(api)) == 3


def test_a_dataset_may_share_repeats_with_every_analyst(tmp_path: Path) -> None:
    api = Api(make_app(tmp_path, gateway=make_gateway(meta={**BANK, "share_repeats": "all"})))
    ann, bob, solo = _member(api, "ann", "acme"), _member(api, "bob", "globex"), _member(api, "solo", None)
    first = api.query(ann, SQL, epsilon=0.5).json
    for headers in (bob, solo):
        r = api.query(headers, SQL, epsilon=0.5)
        assert r.json["cached"] is True and r.json["rows"] == first["rows"] and _spent(api, headers) == 0, r.json
    assert [e["analyst"] for e in _entries(api)] == ["ann"]
    [listed] = api.client.get("/v1/datasets", headers=bob).json["datasets"]
    assert listed["share_repeats"] == "all"  # public: analysts can tell whether their repeats are shared


def test_share_repeats_defaults_to_the_organisation_and_is_validated(api: Api) -> None:
    ann = _member(api, "ann", "acme")
    [listed] = api.client.get("/v1/datasets", headers=ann).json["datasets"]
    assert listed["share_repeats"] == "organisation"
    bad = {**BANK, "name": "bank2", "share_repeats": "everyone"}
    r = api.client.post("/v1/admin/datasets", json=bad, headers=api.admin)
    assert r.status_code == 400 and r.json["code"] == "invalid_request", r.json
    assert "share_repeats" in str(r.json.get("errors")), r.json


@pytest.mark.parametrize("value", ["organisation", "all"])
def test_share_repeats_is_not_part_of_the_data_version(value: str) -> None:
    """Changing who shares repeats does not re-bound the tables (the fingerprint is the data's)."""
    from gateway.catalog import parse_dataset

    assert parse_dataset({**BANK, "share_repeats": value}).fingerprint() == parse_dataset(BANK).fingerprint()
