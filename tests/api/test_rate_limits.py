"""Rate limits: per analyst, per organisation, per address without a key; 429 problem+json with Retry-After.

A limited request is refused before its view runs: it reads nothing and is charged nothing. The liveness
and spec endpoints are never limited (/metrics takes a key, and is). Redis, where it runs (127.0.0.1:6379), shares the counters
between processes.
"""
from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from budget.ledger import Ledger
from gateway.app import create_app
from gateway.core import Gateway
from gateway.settings import load_settings
from tests.api.conftest import ADMIN_KEY, Api
from tests.conftest import make_gateway

COUNT = {"dataset": "bank", "sql": "SELECT COUNT(*) FROM tx", "epsilon": 0.1}
UNLIMITED = ("/healthz", "/openapi.json", "/docs")


def limited_api(tmp_path: Path, gateway: Gateway | None = None, **overrides: Any) -> Api:
    """The test app (the bank dataset, no demo) with settings of the test's choosing."""
    settings = load_settings(data_dir=tmp_path, admin_key=ADMIN_KEY, **overrides)
    settings.demo.enabled = False
    ledger = Ledger(settings.ledger)
    ledger.migrate()
    app = create_app(settings, gateway=gateway or make_gateway(), ledger=ledger)
    app.config["TESTING"] = True
    return Api(app)


def close(api: Api) -> None:
    """Stop the app's training threads and close its engine (DuckDB objects left at exit are reported)."""
    api.app.extensions["dpgate"]["training"].close()
    api.app.extensions["dpgate"]["gateway"].engine.close()


def member(api: Api, name: str, organisation: str | None = None, epsilon: str = "2") -> dict[str, str]:
    """An analyst made through the ledger, so that setting it up spends no one's rate limit."""
    ledger: Ledger = api.app.extensions["dpgate"]["ledger"]
    _, key = ledger.create_analyst(name, organisation=organisation)
    ledger.set_allocation(name, "bank", epsilon=epsilon, delta="0")
    return {"Authorization": f"Bearer {key}"}


def assert_limited(r: Any) -> int:
    assert r.status_code == 429, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json["code"] == "rate_limited" and r.json["status"] == 429 and r.json["type"].endswith("rate_limited")
    retry = int(r.headers["Retry-After"])
    assert 0 <= retry <= 3600
    return retry


def spent(api: Api, name: str) -> float:
    [b] = api.app.extensions["dpgate"]["ledger"].budgets(name)
    return b["epsilon_spent"]


def test_per_analyst_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    api = limited_api(tmp_path, rate_limit_per_analyst="5/minute", rate_limit_per_organisation="1000/minute")
    ann, bob = member(api, "ann"), member(api, "bob")
    for _ in range(5):
        r = api.client.get("/v1/budget", headers=ann)
        assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "5"
    retry = assert_limited(api.client.get("/v1/budget", headers=ann))
    assert 0 < retry <= 60
    assert "per analyst" in api.client.get("/v1/datasets", headers=ann).json["detail"]  # every endpoint together
    assert api.client.get("/v1/budget", headers=bob).status_code == 200  # bob has his own counter
    for path in UNLIMITED:  # never limited, whoever asks
        for _ in range(8):
            assert api.client.get(path, headers=ann).status_code == 200, path
            assert api.client.get(path).status_code == 200, path
    assert_limited(api.client.get("/metrics", headers=ann))  # it takes a key: it counts like the others


def test_a_limited_request_is_charged_nothing(tmp_path: Path) -> None:
    api = limited_api(tmp_path, rate_limit_per_analyst="2/minute")
    ann = member(api, "ann")
    assert api.client.post("/v1/queries", json=COUNT, headers=ann).status_code == 200
    assert api.client.post("/v1/queries/preview", json=COUNT, headers=ann).status_code == 200
    before = spent(api, "ann")
    assert before == pytest.approx(0.1)
    for sql in ("SELECT SUM(amount) FROM tx", "SELECT COUNT(*) FROM tx WHERE flag"):
        assert_limited(api.client.post("/v1/queries", json={**COUNT, "sql": sql, "request_id": sql[-4:]}, headers=ann))
    assert spent(api, "ann") == before
    assert len(api.client.get("/v1/admin/ledger", headers=api.admin).json["entries"]) == 1
    r = api.client.post("/v1/training-jobs", json={"dataset": "bank", "table": "cust", "label": "segment",
                                                    "positive": "private", "method": "logreg", "epsilon": 1.0}, headers=ann)  # fmt: skip
    assert_limited(r)
    assert spent(api, "ann") == before
    assert api.app.extensions["dpgate"]["training"].store.active_job_ids() == []


def test_per_organisation_limit_is_shared_by_its_analysts(tmp_path: Path) -> None:
    api = limited_api(tmp_path, rate_limit_per_analyst="100/minute", rate_limit_per_organisation="4/minute")
    ann, carl = member(api, "ann", "acme"), member(api, "carl", "acme")
    dora = member(api, "dora", "globex")
    bob, eve = member(api, "bob"), member(api, "eve")  # no organisation: each is its own
    for headers in (ann, carl, ann, carl):
        assert api.client.get("/v1/budget", headers=headers).status_code == 200
    for headers in (ann, carl):
        r = api.client.get("/v1/budget", headers=headers)
        assert_limited(r)
        assert "per organisation" in r.json["detail"]
    assert api.client.get("/v1/budget", headers=dora).status_code == 200
    for _ in range(4):
        assert api.client.get("/v1/budget", headers=bob).status_code == 200
    assert_limited(api.client.get("/v1/budget", headers=bob))
    assert api.client.get("/v1/budget", headers=eve).status_code == 200


def test_requests_without_a_valid_key_are_limited_by_address(tmp_path: Path) -> None:
    api = limited_api(tmp_path, rate_limit_per_analyst="3/minute")
    ann = member(api, "ann")
    here, there = {"REMOTE_ADDR": "10.0.0.1"}, {"REMOTE_ADDR": "10.0.0.2"}
    for headers in ({}, {"Authorization": "Bearer dpg_guess_1"}, {"Authorization": "Bearer dpg_guess_2"}):
        assert api.client.get("/v1/budget", headers=headers, environ_base=here).status_code == 401
    r = api.client.get("/v1/budget", headers={"Authorization": "Bearer dpg_guess_3"}, environ_base=here)
    assert_limited(r)  # guessing keys is slowed down
    assert "per client address" in r.json["detail"]
    assert api.client.get("/v1/budget", environ_base=there).status_code == 401
    assert api.client.get("/v1/budget", headers=ann, environ_base=here).status_code == 200  # ann counts as ann


def test_an_empty_limit_means_no_limit(tmp_path: Path) -> None:
    api = limited_api(tmp_path, rate_limit_per_analyst="", rate_limit_per_organisation="")
    ann = member(api, "ann")
    for _ in range(30):
        assert api.client.get("/v1/budget", headers=ann).status_code == 200


def test_limits_are_settings_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="rate limit"):
        load_settings(data_dir=tmp_path, rate_limit_per_analyst="sixty a minute")
    with pytest.raises(ValidationError, match="extra"):
        load_settings(data_dir=tmp_path, rate_limit_per_user="60/minute")
    s = load_settings(data_dir=tmp_path)
    assert (s.rate_limit_per_analyst, s.rate_limit_per_organisation, s.rate_limit_storage) == ("600/minute", "3000/minute", "memory://")


def _redis_up() -> bool:
    try:
        import redis  # noqa: F401  (the limits package's Redis storage needs it)
    except ImportError:
        return False
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="needs Redis on 127.0.0.1:6379 and the redis package")
def test_redis_storage_shares_counters_between_processes(tmp_path: Path) -> None:
    """Two apps (as two server processes would) over one Redis: the limit holds across both."""
    overrides = {"rate_limit_per_analyst": "5/minute", "rate_limit_storage": "redis://127.0.0.1:6379"}
    one = limited_api(tmp_path / "a", **overrides)
    name = f"ann-{uuid.uuid4().hex[:12]}"  # a counter of its own in a Redis other runs share
    ann = member(one, name)
    two = limited_api(tmp_path / "b", ledger_url=f"sqlite:///{tmp_path / 'a' / 'ledger.db'}", **overrides)
    for api in (one, two, one, two, one):
        assert api.client.get("/v1/budget", headers=ann).status_code == 200
    assert_limited(two.client.get("/v1/budget", headers=ann))
    assert_limited(one.client.get("/v1/budget", headers=ann))


@pytest.mark.skipif(not _redis_up(), reason="needs the redis package")
def test_unreachable_redis_falls_back_to_memory(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = limited_api(tmp_path, rate_limit_per_analyst="3/minute", rate_limit_storage=f"redis://127.0.0.1:{port}")
    ann = member(api, "ann")
    for _ in range(3):
        assert api.client.get("/v1/budget", headers=ann).status_code == 200
    assert_limited(api.client.get("/v1/budget", headers=ann))
