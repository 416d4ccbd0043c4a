"""Faults under the service: a ledger database that goes away and comes back, and a registered dataset
whose data file goes missing or corrupt.

The ledger away (SQLite: its directory moved away, with the pooled connections dropped as when the file
system goes from under them; PostgreSQL: connections refused and every backend of the database
terminated with ``pg_terminate_backend``) → the request gets a 503 problem, code `ledger_unavailable`,
with Retry-After and no internals; nothing is released uncharged; the next request after the database
is back succeeds, without a restart — also a retry of the very request id that failed (bug found: its
reservation could not be dropped while the ledger was away, so the retry was refused as "in progress"
for 15 minutes; and the failure was a 500 `internal_error`).

A data file gone or corrupt → the running gateway keeps answering from the version it loaded at
registration; after a restart it starts anyway (bug found: one unreadable stored dataset stopped the
whole gateway from starting) and answers that dataset with 503 `dataset_unavailable`, charging
nothing, until an administrator registers it again; the other datasets are served as usual.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from budget import Ledger
from tests.api.conftest import PG_URL, Api, make_app

from . import _support as sp

COUNT = "SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat"
INTERNALS = ("sqlite", "psycopg", "postgres", "OperationalError", "Traceback", "ledger.db", "connection")


class Outage:
    """Takes the test's ledger database away and brings it back."""

    def __init__(self, ledger_url: str, ledger: Ledger) -> None:
        self.url = ledger_url
        self.ledger = ledger
        self.away = False

    def __enter__(self) -> Outage:
        self.go()
        return self

    def __exit__(self, *exc: object) -> None:
        self.back()

    def go(self) -> None:
        if self.url.startswith("sqlite"):
            path = Path(self.url.removeprefix("sqlite:///")).parent
            self.ledger._db.engine.dispose()  # the file system went: so did the open files
            path.rename(path.with_name("ledger.away"))
        else:
            name = self.url.rsplit("/", 1)[1]
            with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
        self.away = True

    def back(self) -> None:
        if not self.away:
            return
        if self.url.startswith("sqlite"):
            path = Path(self.url.removeprefix("sqlite:///")).parent
            path.with_name("ledger.away").rename(path)
        else:
            name = self.url.rsplit("/", 1)[1]
            with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        self.away = False


@pytest.fixture
def api(tmp_path: Path, ledger_url: str) -> Iterator[Api]:
    app = make_app(tmp_path, ledger_url)
    yield Api(app)
    app.extensions["dpgate"]["training"].close()  # its job store has a pool of its own on the database
    app.extensions["dpgate"]["ledger"].close()


def _outage(api: Api, ledger_url: str) -> Outage:
    return Outage(ledger_url, api.app.extensions["dpgate"]["ledger"])


def _assert_unavailable(r: Any) -> None:
    assert r.status_code == 503, r.json
    assert r.headers["Content-Type"] == "application/problem+json" and r.headers["Retry-After"].isdigit()
    assert r.json["code"] == "ledger_unavailable" and r.json["status"] == 503 and r.json["instance"]
    assert "rows" not in r.json
    text = r.get_data(as_text=True)
    assert not any(word.lower() in text.lower() for word in INTERNALS), text


def _entries(api: Api) -> list[dict]:
    return api.app.extensions["dpgate"]["ledger"].entries()


def test_ledger_away_is_503_then_recovers_without_restart(api: Api, ledger_url: str) -> None:
    ann = api.analyst("ann", epsilon=2.0)
    assert api.query(ann, COUNT, epsilon=0.25, request_id="a1").status_code == 200
    with _outage(api, ledger_url):
        _assert_unavailable(api.query(ann, "SELECT SUM(amount) AS s FROM tx", epsilon=0.25, request_id="a2"))
        _assert_unavailable(api.client.get("/v1/budget", headers=ann))
    r = api.query(ann, "SELECT SUM(amount) AS s FROM tx", epsilon=0.25, request_id="a2")
    assert r.status_code == 200 and r.json["cached"] is False, r.json
    assert [e["request_id"] for e in _entries(api)] == ["a2", "a1"]
    [b] = api.client.get("/v1/budget", headers=ann).json["budgets"]
    assert b["epsilon_spent"] == 0.5
    assert api.app.extensions["dpgate"]["ledger"].verify() == []


def test_ledger_lost_before_the_charge_releases_nothing(api: Api, ledger_url: str) -> None:
    """The database goes between the engine and the charge: the computed answer is dropped (503), and
    the retry of that request id, once the database is back, is answered and charged exactly once."""
    ann = api.analyst("ann", epsilon=2.0)
    outage = _outage(api, ledger_url)
    gateway = api.app.extensions["dpgate"]["gateway"]
    engine = gateway.engine

    class Failing:
        def execute(self, select: Any) -> list[tuple]:
            rows = engine.execute(select)
            if not outage.away and not done:
                done.append(True)
                outage.go()
            return rows

        def __getattr__(self, name: str) -> Any:
            return getattr(engine, name)

    done: list[bool] = []
    gateway.engine = Failing()
    try:
        _assert_unavailable(api.query(ann, COUNT, epsilon=0.25, request_id="b1"))
    finally:
        outage.back()
        gateway.engine = engine
    assert _entries(api) == []
    r = api.query(ann, COUNT, epsilon=0.25, request_id="b1")
    assert r.status_code == 200 and r.json["cached"] is False, r.json  # not 409 "in progress"
    assert [e["request_id"] for e in _entries(api)] == ["b1"]
    assert api.query(ann, COUNT, epsilon=0.25, request_id="b1").json["cached"] is True
    assert len(_entries(api)) == 1
    assert api.app.extensions["dpgate"]["ledger"].verify() == []


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_data_file_gone_or_corrupt(tmp_path: Path, damage: str) -> None:
    source = sp.write_table(tmp_path / "loans.parquet", rows=2_000)
    meta = sp.dataset_meta("loans", source, epsilon=10)
    api = Api(make_app(tmp_path))
    assert api.client.post("/v1/admin/datasets", json=meta, headers=api.admin).status_code == 201
    ann = api.analyst("ann", dataset="loans", epsilon=2.0)
    bob = api.analyst("bob", dataset="bank", epsilon=2.0)

    def ask(headers: dict[str, str], dataset: str, sql: str) -> Any:
        return api.client.post("/v1/queries", json={"dataset": dataset, "sql": sql, "epsilon": 0.25}, headers=headers)

    assert ask(ann, "loans", COUNT).status_code == 200
    if damage == "missing":
        source.unlink()
    else:
        source.write_bytes(b"PAR1 this is not a parquet file PAR1")
    # the running gateway answers from the version it loaded when the dataset was registered
    assert ask(ann, "loans", "SELECT SUM(amount) AS s FROM tx").status_code == 200

    api = Api(make_app(tmp_path))  # a restart: it starts, with the other datasets
    charged = json.dumps(_entries(api))
    for path in ("/v1/queries", "/v1/queries/preview"):
        r = api.client.post(path, json={"dataset": "loans", "sql": "SELECT AVG(amount) AS a FROM tx", "epsilon": 0.25}, headers=ann)
        assert r.status_code == 503 and r.json["code"] == "dataset_unavailable", r.json
        assert r.headers["Content-Type"] == "application/problem+json" and str(source) not in r.get_data(as_text=True)
    assert json.dumps(_entries(api)) == charged  # nothing charged
    [b] = api.client.get("/v1/budget", headers=ann).json["budgets"]
    assert b["dataset"] == "loans" and b["epsilon_spent"] == 0.5  # its spending kept
    assert ask(bob, "bank", COUNT).status_code == 200  # the others are served

    sp.write_table(source, rows=2_000)  # the administrator fixes the file and registers it again
    assert api.client.post("/v1/admin/datasets", json=meta, headers=api.admin).status_code == 201
    assert ask(ann, "loans", "SELECT AVG(amount) AS a FROM tx").status_code == 200
    [b] = api.client.get("/v1/budget", headers=ann).json["budgets"]
    assert b["epsilon_spent"] == 0.75


