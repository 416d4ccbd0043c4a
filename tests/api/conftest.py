from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from budget.ledger import Ledger
from gateway.app import create_app
from gateway.settings import load_settings
from tests.conftest import make_gateway

ADMIN_KEY = "dpg_admin_" + "k" * 43
PG_URL = os.environ.get("DPGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1/test")


def fresh_pg_database() -> str:
    """A new, empty PostgreSQL database for one test; a missing server fails in CI, skips elsewhere."""
    import psycopg

    base = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        conn = psycopg.connect(base, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL unreachable ({e.__class__.__name__}); CI requires it")
    name = f"dpgate_t_{uuid.uuid4().hex[:10]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    base = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    url = fresh_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def make_app(tmp_path: Path, ledger_url: str | None = None, gateway=None):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path, admin_key=ADMIN_KEY, ledger_url=ledger_url)
    settings.demo.enabled = False
    ledger = Ledger(settings.ledger)
    ledger.migrate()
    app = create_app(settings, gateway=gateway or make_gateway(), ledger=ledger)
    app.config["TESTING"] = True
    return app


class Api:
    """A test client that knows the keys."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.client = app.test_client()
        self.admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def analyst(self, name: str, *, epsilon: float = 2.0, delta: float = 1e-6, dataset: str = "bank") -> dict[str, str]:
        r = self.client.post("/v1/admin/analysts", json={"name": name}, headers=self.admin)
        assert r.status_code == 201, r.json
        headers = {"Authorization": f"Bearer {r.json['key']}"}
        r = self.client.put("/v1/admin/budgets", json={"analyst": name, "dataset": dataset, "epsilon": epsilon, "delta": delta}, headers=self.admin)
        assert r.status_code == 200, r.json
        return headers

    def query(self, headers: dict[str, str], sql: str, epsilon: float = 0.5, **extra):  # type: ignore[no-untyped-def]
        return self.client.post("/v1/queries", json={"dataset": "bank", "sql": sql, "epsilon": epsilon, **extra}, headers=headers)


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(make_app(tmp_path))
