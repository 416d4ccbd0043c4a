"""Request limits through HTTP: SQL size and depth, body size, query run time, training quotas.

Each refusal is a 4xx/5xx problem+json with a stable code, and costs nothing: the budget and the ledger
are read after every one. The query timeout interrupts the engine's query (DuckDB `interrupt()` from a
timer), answers 504 `query_timeout`, and leaves the engine working.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from gateway.engines.duckdb import DuckDBEngine, QueryTimeout
from gateway.sql import release as release_module
from gateway.sql.parse import MAX_DEPTH, MAX_SQL_CHARS
from tests.api.test_rate_limits import limited_api, member, spent
from tests.training.conftest import _IGNORED  # third-party warnings on training threads (see there)

pytestmark = [pytest.mark.filterwarnings(spec) for spec in _IGNORED]

PROBLEM = "application/problem+json"
COUNT = {"dataset": "bank", "sql": "SELECT COUNT(*) FROM tx", "epsilon": 0.25}
LOGREG = {"dataset": "bank", "table": "cust", "label": "segment", "positive": "private", "method": "logreg", "epsilon": 0.5}
# a query DuckDB would take hours over: only an interrupt ends it
ENDLESS = "SELECT count(*) FROM range(100000000000000) t(x) WHERE x % 7 = 3"


def assert_problem(r: Any, statuses: tuple[int, ...], codes: set[str]) -> None:
    assert r.status_code in statuses, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.headers["Content-Type"] == PROBLEM
    assert r.json["code"] in codes and r.json["status"] == r.status_code, r.json


def ledger_entries(api: Any) -> list[dict]:
    return api.client.get("/v1/admin/ledger", headers=api.admin).json["entries"]


# -- SQL size and depth -------------------------------------------------------------------------------


def _deep_sql() -> list[str]:
    n = MAX_DEPTH * 3
    return [
        "SELECT COUNT(*) FROM tx WHERE " + "(" * n + "amount > 1" + ")" * n,
        "SELECT COUNT(*) FROM tx WHERE " + " + ".join(["qty"] * 3000) + " > 0",
        "SELECT COUNT(*) FROM tx WHERE " + "NOT " * n + "flag",
        "SELECT SUM(" + "ABS(" * n + "amount" + ")" * n + ") FROM tx",
        "SELECT COUNT(*) FROM tx WHERE amount IN (" + ", ".join(["1"] * 5001) + ")",
        "SELECT COUNT(*) FROM tx WHERE " + "CASE WHEN flag THEN " * n + "1" + " END" * n + " = 1",
    ]


def test_over_long_and_over_deep_sql_are_refused_and_cost_nothing(tmp_path: Path) -> None:
    api = limited_api(tmp_path)
    ann = member(api, "ann")
    too_long = "SELECT COUNT(*) FROM tx WHERE " + " OR ".join(["amount > 1"] * (MAX_SQL_CHARS // 10))
    assert len(too_long) > MAX_SQL_CHARS
    r = api.client.post("/v1/queries", json={**COUNT, "sql": too_long}, headers=ann)
    assert_problem(r, (400, 413), {"invalid_request", "invalid_sql"})
    for sql in _deep_sql():
        assert len(sql) <= MAX_SQL_CHARS, len(sql)
        for path in ("/v1/queries", "/v1/queries/preview"):
            started = time.perf_counter()
            r = api.client.post(path, json={**COUNT, "sql": sql}, headers=ann)
            assert_problem(r, (400,), {"invalid_sql", "unsupported_sql"})
            assert time.perf_counter() - started < 10, sql[:60]
    assert ledger_entries(api) == [] and spent(api, "ann") == 0
    assert api.client.post("/v1/queries", json=COUNT, headers=ann).status_code == 200  # and it still answers


# -- request body size --------------------------------------------------------------------------------


def test_a_body_over_max_request_bytes_is_413_and_costs_nothing(tmp_path: Path) -> None:
    api = limited_api(tmp_path, max_request_bytes=4096)
    ann = member(api, "ann")
    big = {**COUNT, "sql": "SELECT COUNT(*) FROM tx WHERE " + " OR ".join(["amount > 1"] * 500)}
    raw = json.dumps(big)
    assert len(raw) > 4096
    for path in ("/v1/queries", "/v1/queries/preview", "/v1/training-jobs", "/v1/admin/analysts"):
        headers = api.admin if "admin" in path else ann
        r = api.client.post(path, data=raw, headers={**headers, "Content-Type": "application/json"})
        assert_problem(r, (413,), {"request_too_large"})
    r = api.client.post("/v1/queries", data=raw)  # no key: refused as such first
    assert_problem(r, (401,), {"unauthorized"})
    assert ledger_entries(api) == [] and spent(api, "ann") == 0
    assert api.client.post("/v1/queries", json=COUNT, headers=ann).status_code == 200  # small bodies pass


def test_the_default_cap_is_the_settings(tmp_path: Path) -> None:
    api = limited_api(tmp_path)
    assert api.app.config["MAX_CONTENT_LENGTH"] == api.app.extensions["dpgate"]["settings"].max_request_bytes == 1_000_000
    ann = member(api, "ann")
    r = api.client.post("/v1/models/x/predict", json={"rows": [{"age": 1, "pad": "x" * 100}] * 10_000}, headers=ann)
    assert_problem(r, (413,), {"request_too_large"})


# -- query run time -----------------------------------------------------------------------------------


def test_engine_interrupts_a_query_past_its_timeout_and_keeps_working() -> None:
    engine = DuckDBEngine(None, seed="s")
    engine.query_timeout_s = 0.3
    started = time.perf_counter()
    with pytest.raises(QueryTimeout) as caught:
        engine.execute(sqlglot.parse_one(ENDLESS, read="duckdb"))
    assert 0.25 < time.perf_counter() - started < 10
    assert caught.value.code == "query_timeout" and caught.value.status == 504
    assert engine.execute(sqlglot.parse_one("SELECT 41 + 1")) == [(42,)]
    time.sleep(0.4)  # a timer of a query that ended in time must not hit a later one
    assert engine.execute(sqlglot.parse_one("SELECT count(*) FROM range(1000)")) == [(1000,)]
    engine.query_timeout_s = None
    assert engine.execute(sqlglot.parse_one("SELECT 1")) == [(1,)]
    engine.close()


def test_a_query_past_its_timeout_is_504_charges_nothing_and_the_engine_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = limited_api(tmp_path, query_timeout_s=0.3)
    assert api.app.extensions["dpgate"]["gateway"].engine.query_timeout_s == 0.3
    ann = member(api, "ann")
    real_main_query = release_module.main_query
    # the planner's query made endless (the bank table is too small to be slow): the timeout must stop it
    monkeypatch.setattr(release_module, "main_query", lambda plan: sqlglot.parse_one(ENDLESS, read="duckdb"))
    started = time.perf_counter()
    r = api.client.post("/v1/queries", json={**COUNT, "request_id": "slow-1"}, headers=ann)
    assert time.perf_counter() - started < 10
    assert_problem(r, (503, 504), {"query_timeout"})
    assert "ran longer than 0.3 s" in r.json["detail"]
    assert ledger_entries(api) == [] and spent(api, "ann") == 0
    monkeypatch.setattr(release_module, "main_query", real_main_query)
    again = api.client.post("/v1/queries", json={**COUNT, "request_id": "slow-1"}, headers=ann)  # the id is free again
    assert again.status_code == 200 and again.json["cached"] is False, again.json
    assert spent(api, "ann") == pytest.approx(0.25) and len(ledger_entries(api)) == 1


def test_query_timeout_setting(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from gateway.settings import load_settings

    assert load_settings(data_dir=tmp_path).query_timeout_s == 30.0
    for bad in (0, -1):
        with pytest.raises(ValidationError):
            load_settings(data_dir=tmp_path, query_timeout_s=bad)


# -- training quotas ----------------------------------------------------------------------------------


@pytest.fixture
def held(tmp_path: Path):  # type: ignore[no-untyped-def]
    """An app whose training jobs stay queued or running until the test lets them go."""
    api = limited_api(tmp_path, max_active_jobs_per_analyst=2)
    svc = api.app.extensions["dpgate"]["training"]
    gate = threading.Event()
    run = svc._run

    def held_run(job_id: str) -> None:
        gate.wait(60)
        run(job_id)

    svc._run = held_run
    yield api, svc
    gate.set()
    for job_id in list(svc._futures):
        svc.wait(job_id, timeout=120)


def test_a_job_over_the_quota_is_429_before_anything_is_charged(held) -> None:  # type: ignore[no-untyped-def]
    api, svc = held
    ann, bob = member(api, "ann", epsilon="10"), member(api, "bob", epsilon="10")
    first = api.client.post("/v1/training-jobs", json=LOGREG, headers=ann)
    second = api.client.post("/v1/training-jobs", json=LOGREG, headers=ann)
    assert first.status_code == second.status_code == 202, (first.json, second.json)
    charged = spent(api, "ann")
    r = api.client.post("/v1/training-jobs", json=LOGREG, headers=ann)
    assert_problem(r, (429,), {"training_quota"})
    assert r.json["limit"] == 2
    assert spent(api, "ann") == charged and len(ledger_entries(api)) == 2
    assert api.client.post("/v1/training-jobs", json=LOGREG, headers=bob).status_code == 202  # bob's own quota
    # cancelling a queued job frees its place
    cancelled = api.client.post(f"/v1/training-jobs/{second.json['job_id']}/cancel", headers=ann)
    assert cancelled.json["status"] == "cancelled", cancelled.json
    assert api.client.post("/v1/training-jobs", json=LOGREG, headers=ann).status_code == 202


def test_concurrent_starts_cannot_pass_the_quota(held) -> None:  # type: ignore[no-untyped-def]
    api, svc = held
    ann = member(api, "ann", epsilon="10")
    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(lambda _: api.client.post("/v1/training-jobs", json=LOGREG, headers=ann).status_code, range(6)))
    assert statuses == [202, 202, 429, 429, 429, 429]
    assert len(ledger_entries(api)) == 2
