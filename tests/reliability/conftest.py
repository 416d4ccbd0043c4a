"""Fixtures of the reliability tests: ledgers on both backends, a real server shared by the tests of a
session (SQLite ledger; each test uses analysts and datasets of its own), and in-process services.

PostgreSQL tests get a database of their own (created and dropped per test, as in tests/api); an
unreachable server skips them, or fails them where CI is set.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from budget import Ledger
from gateway.client import Client
from gateway.service import QueryService
from tests.api.conftest import ADMIN_KEY, drop_pg_database, fresh_pg_database
from tests.api.test_server import Server
from tests.conftest import make_gateway

from ._support import LIMIT, dataset_meta, unique, write_table

# Rate limits are another test's subject: here they would turn budget refusals into 429s.
NO_RATE_LIMITS = {"DPGATE_RATE_LIMIT_PER_ANALYST": "", "DPGATE_RATE_LIMIT_PER_ORGANISATION": ""}


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database for a ledger: a SQLite file (in a directory of its own) or a new PG database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger' / 'ledger.db'}"
        return
    url = fresh_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger(ledger_url) as led:
        led.migrate()
        yield led


def grant(ledger: Ledger, dataset: str, analysts: list[str], *, epsilon: str = LIMIT, organisation: str | None = None) -> None:
    """`dataset` with a large total, and `analysts` (created) with `epsilon` each — or, with
    `organisation`, as its members sharing one allocation of `epsilon`."""
    ledger.set_dataset_budget(dataset, epsilon=1000, delta=1e-5)
    for name in analysts:
        ledger.create_analyst(name, organisation=organisation)
        if organisation is None:
            ledger.set_allocation(name, dataset, epsilon=epsilon)
    if organisation is not None:
        ledger.set_organisation_allocation(organisation, dataset, epsilon=epsilon)


@pytest.fixture
def service(ledger: Ledger) -> QueryService:
    """The query service in-process over the test's ledger and the `bank` dataset of tests/conftest."""
    gateway = make_gateway()
    ledger.set_dataset_budget("bank", epsilon=1000, delta=1e-5)
    return QueryService(gateway, ledger)


class Live:
    """A running `dpgate serve` with a dataset registered, and helpers to add analysts to it."""

    def __init__(self, server: Server, dataset: str, source: Path) -> None:
        self.server = server
        self.dataset = dataset
        self.source = source
        self.admin = Client(server.url, ADMIN_KEY, timeout=120)

    @property
    def url(self) -> str:
        return self.server.url

    def analyst(self, prefix: str = "ann", *, epsilon: float = 1.0, dataset: str | None = None, organisation: str | None = None) -> tuple[str, Client]:
        """A new analyst (with an allocation of `epsilon` on the dataset unless in an organisation)."""
        name = unique(prefix)
        key = self.admin.create_analyst(name, organisation=organisation)["key"]
        if organisation is None:
            self.admin.set_budget(name, dataset or self.dataset, epsilon=epsilon)
        return name, Client(self.url, key, timeout=120)

    def ledger(self) -> Ledger:
        """The server's ledger, opened beside it (as another process would)."""
        return Ledger(self.server.ledger_url)


def start_live(data_dir: Path, ledger_url: str, *, env: dict[str, str] | None = None) -> Live:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**NO_RATE_LIMITS, **(env or {})}.items():
            mp.setenv(k, v)
        server = Server(data_dir, ledger_url).start()
    source = write_table(data_dir / "tx.parquet")
    name = unique("shop")
    live = Live(server, name, source)
    live.admin.register_dataset(dataset_meta(name, source))
    return live


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One real server on a SQLite ledger for the whole session (starting one costs seconds)."""
    data = tmp_path_factory.mktemp("live")
    running = start_live(data, f"sqlite:///{data / 'ledger.db'}")
    try:
        yield running
    finally:
        running.server.stop()


def ledger_url_of(backend: str, tmp_path: Path) -> Any:
    """For tests that start their own servers: (url, cleanup)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}", (lambda: None)
    url = fresh_pg_database()
    return url, (lambda: drop_pg_database(url))

