"""Synthetic jobs over HTTP (issue 15): charged exactly (ε, δ) before they run, the result a public table
of the dataset (free to query, kept across restarts and registrations), CSV and Parquet downloads for
the owner, refusals that cost nothing, and other analysts' jobs reading as absent."""
from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.api.conftest import ADMIN_KEY, Api, make_app
from tests.conftest import BANK

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _wait(api: Api, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120  # ends a hung test; not a timing assertion
    while True:
        r = api.client.get(f"/v1/synthetic-jobs/{job_id}", headers=headers)
        assert r.status_code == 200, r.json
        if r.json["status"] not in ("queued", "running"):
            return r.json
        assert time.monotonic() < deadline, r.json
        time.sleep(0.05)


def _spent(api: Api, headers: dict[str, str]) -> tuple[float, float]:
    [b] = api.client.get("/v1/budget", headers=headers).json["budgets"]
    return b["epsilon_spent"], b["delta_spent"]


def _synth(api: Api, headers: dict[str, str], **body: Any) -> Any:
    return api.client.post("/v1/synthetic-jobs", json={"dataset": "bank", "table": "tx", "epsilon": 1, **body}, headers=headers)


def test_a_synthetic_job_is_charged_then_registers_a_public_table_free_to_query(api: Api) -> None:
    ann = api.analyst("ann", epsilon=3, delta=1e-5)
    gateway = api.app.extensions["dpgate"]["gateway"]
    version = gateway.version("bank")
    r = _synth(api, ann, epsilon=1.5, delta=2e-6)
    assert r.status_code == 202, r.json
    job_id, table = r.json["job_id"], r.json["table"]
    assert table == f"tx_synth_{job_id[:12]}" and r.json["cost"]["epsilon"] == 1.5 and r.json["cost"]["delta"] == 2e-6
    # one ledger entry, charged the (ε, δ) asked, exactly
    entries = [e for e in api.client.get("/v1/admin/ledger", headers=ADMIN).json["entries"] if e["analyst"] == "ann"]
    assert [(e["kind"], e["job_id"], e["epsilon"], e["delta"]) for e in entries] == [("synthetic", job_id, 1.5, 2e-6)]
    done = _wait(api, ann, job_id)
    assert done["status"] == "succeeded" and done["progress"] == 1.0, done
    assert done["table"] == table and done["download"] == f"/v1/synthetic-jobs/{job_id}/download"
    # the unit (cid) and id (tid) columns are never synthesised; city has no declared categories: skipped, with why
    assert done["columns"] == ["amount", "qty", "cat", "ts", "flag", "note"]
    assert "city" in done["skipped"] and "categories" in done["skipped"]["city"]
    assert done["plan"]["max_rows_per_unit"] == 5  # user-level: the table's bound

    # a public table of the dataset, listed with where it came from
    [bank] = [d for d in api.client.get("/v1/datasets", headers=ann).json["datasets"] if d["name"] == "bank"]
    listed = bank["tables"][table]
    assert listed["public"] is True and listed["synthetic"]["job_id"] == job_id
    assert listed["synthetic"]["source_table"] == "tx" and listed["synthetic"]["rows"] == done["rows"]
    # queried exactly at no cost: the counts add up to the rows released
    q = api.query(ann, f"SELECT cat, COUNT(*) AS n FROM {table} GROUP BY cat", epsilon=0.5)
    assert q.status_code == 200, q.json
    assert q.json["cost"] == {"epsilon": 0.0, "delta": 0.0}
    assert sum(n for _, n in q.json["rows"]) <= done["rows"] and {c for c, _ in q.json["rows"]} <= set(BANK["tables"]["tx"]["columns"]["cat"]["categories"])
    assert _spent(api, ann) == (1.5, 2e-6)
    # adding it changed no private table's version (their free repeats stay free)
    assert gateway.version("bank") == version


def test_downloads_are_csv_and_parquet_of_the_same_rows_within_the_declared_domains(api: Api) -> None:
    ann = api.analyst("ann", epsilon=3, delta=1e-5)
    job_id = _synth(api, ann, rows=500).json["job_id"]
    done = _wait(api, ann, job_id)
    assert done["rows"] == 500
    csv = api.client.get(done["download"], headers=ann)
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert f'filename="{done["table"]}.csv"' in csv.headers["Content-Disposition"]
    pq = api.client.get(done["download"] + "?format=parquet", headers=ann)
    assert pq.status_code == 200 and pq.mimetype == "application/vnd.apache.parquet"
    a = pd.read_csv(io.StringIO(csv.get_data(as_text=True)))
    b = pd.read_parquet(io.BytesIO(pq.data))
    assert list(a.columns) == list(b.columns) == done["columns"] and len(a) == len(b) == 500
    assert a["amount"].between(0, 1000).all() and b["qty"].dropna().between(0, 10).all()
    assert set(b["cat"]) <= {"food", "travel", "tech", "café ☕"} and set(b["note"].dropna()) <= {"x", "y"}
    assert pd.to_datetime(b["ts"]).between("2025-01-01", "2025-12-31").all()
    assert (a["amount"].round(6) == b["amount"].round(6)).all()
    bad = api.client.get(done["download"] + "?format=xlsx", headers=ann)
    assert bad.status_code == 400 and bad.json["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"columns": ["nope"]}, "columns"),
        ({"columns": ["cid"]}, "columns"),  # the privacy unit
        ({"columns": ["tid"]}, "columns"),  # an id
        ({"columns": ["city"]}, "columns"),  # no declared categories
        ({"table": "lookup"}, "table"),  # already public
        ({"table": "nope"}, "table"),
        ({"rows": 0}, None),
        ({"epsilon": 101}, None),
        ({"delta": 0}, None),
        ({"bins": 8}, None),
    ],
)
def test_bad_synthetic_jobs_are_problems_and_cost_nothing(api: Api, body: dict[str, Any], field: str | None) -> None:
    ann = api.analyst("ann", epsilon=3, delta=1e-5)
    r = _synth(api, ann, **body)
    assert r.status_code == 400 and r.json["code"] == "invalid_request", r.json
    if field is not None:
        assert r.json["field"] == field, r.json
    assert _spent(api, ann) == (0.0, 0.0)
    assert api.client.get("/v1/synthetic-jobs", headers=ann).json["jobs"] == []


def test_a_job_the_budget_cannot_cover_is_refused_before_anything_runs(api: Api) -> None:
    ann = api.analyst("ann", epsilon=0.5, delta=1e-5)
    r = _synth(api, ann, epsilon=1)
    assert r.status_code == 403 and r.json["code"] == "budget_exhausted", r.json
    r = _synth(api, ann, epsilon=0.1, delta=2e-5)  # δ beyond the allocation
    assert r.status_code == 403 and r.json["code"] == "budget_exhausted", r.json
    assert _spent(api, ann) == (0.0, 0.0) and api.client.get("/v1/synthetic-jobs", headers=ann).json["jobs"] == []
    r = api.client.post("/v1/synthetic-jobs", json={"dataset": "nope", "table": "tx", "epsilon": 1}, headers=ann)
    assert r.status_code == 404 and r.json["code"] == "unknown_dataset"


def test_another_analysts_job_reads_as_absent_but_its_table_is_public(api: Api) -> None:
    ann = api.analyst("ann", epsilon=3, delta=1e-5)
    bob = api.analyst("bob", epsilon=3, delta=1e-5)
    job_id = _synth(api, ann).json["job_id"]
    done = _wait(api, ann, job_id)
    for path in (f"/v1/synthetic-jobs/{job_id}", done["download"]):
        r = api.client.get(path, headers=bob)
        assert r.status_code == 404 and r.json["code"] == "not_found", r.json
    assert api.client.post(f"/v1/synthetic-jobs/{job_id}/cancel", headers=bob).status_code == 404
    assert api.client.get("/v1/synthetic-jobs", headers=bob).json["jobs"] == []
    # the table is the dataset's: bob queries it, free
    q = api.query(bob, f"SELECT COUNT(*) AS n FROM {done['table']}")
    assert q.status_code == 200 and q.json["rows"] == [[done["rows"]]] and q.json["cost"]["epsilon"] == 0.0
    # administrators see every job, with its analyst
    [seen] = api.client.get("/v1/synthetic-jobs", headers=ADMIN).json["jobs"]
    assert seen["job_id"] == job_id and seen["analyst"] == "ann"
    # a synthetic job is not a training job, and the other way round
    assert api.client.get(f"/v1/training-jobs/{job_id}", headers=ann).status_code == 404
    assert api.client.get("/v1/training-jobs", headers=ann).json["jobs"] == []


def test_rows_are_not_ready_until_the_job_succeeds_and_a_cancel_keeps_the_charge(api: Api) -> None:
    ann = api.analyst("ann", epsilon=3, delta=1e-5)
    svc = api.app.extensions["dpgate"]["training"]
    gate, entered = threading.Event(), threading.Event()
    inner = svc._read_table

    def held(*args: Any) -> Any:
        entered.set()
        assert gate.wait(60)
        return inner(*args)

    svc._read_table = held
    try:
        job_id = _synth(api, ann).json["job_id"]
        assert entered.wait(60)
        r = api.client.get(f"/v1/synthetic-jobs/{job_id}/download", headers=ann)
        assert r.status_code == 409 and r.json["code"] == "not_ready" and r.json["status_now"] == "running", r.json
        assert api.client.get(f"/v1/synthetic-jobs/{job_id}", headers=ann).json["download"] is None
        c = api.client.post(f"/v1/synthetic-jobs/{job_id}/cancel", headers=ann)
        assert c.status_code == 200, c.json
    finally:
        gate.set()
    done = _wait(api, ann, job_id)
    assert done["status"] == "cancelled" and done["download"] is None
    assert api.client.get(f"/v1/synthetic-jobs/{job_id}/download", headers=ann).status_code == 409
    assert _spent(api, ann) == (1.0, 1e-6)  # the charge stays
    gateway = api.app.extensions["dpgate"]["gateway"]
    assert done["table"] not in gateway.catalog.get("bank").tables  # nothing registered


def test_the_table_survives_a_restart_and_a_new_registration_of_its_dataset(tmp_path: Path) -> None:
    api = Api(make_app(tmp_path))
    ann = api.analyst("ann", epsilon=3, delta=1e-5)
    done = _wait(api, ann, _synth(api, ann, rows=300).json["job_id"])
    table = done["table"]
    api.app.extensions["dpgate"]["training"].close()

    again = Api(make_app(tmp_path))  # a fresh engine on the same data directory
    q = again.query(ann, f"SELECT COUNT(*) AS n FROM {table}")
    assert q.status_code == 200 and q.json["rows"] == [[300]], q.json
    # an administrator registers the dataset again (without the synthetic table): it stays
    r = again.client.post("/v1/admin/datasets", json={**BANK, "tables": {"tx": BANK["tables"]["tx"]}}, headers=ADMIN)
    assert r.status_code == 201, r.json
    assert table in r.json["tables"]
    q = again.query(ann, f"SELECT COUNT(*) AS n FROM {table}")
    assert q.status_code == 200 and q.json["rows"] == [[300]], q.json
    stored = (tmp_path / "datasets" / "bank.json").read_text()
    assert table not in stored  # the registered definition is the administrator's; synthetic tables are kept apart
    again.app.extensions["dpgate"]["training"].close()
