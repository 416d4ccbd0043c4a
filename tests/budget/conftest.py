"""Fixtures: every ledger test runs on both backends — a SQLite file in tmp_path, and PostgreSQL at
DPGATE_TEST_PG_URL. An unreachable PostgreSQL skips its half, or fails it where CI is set: in CI a missing
server is a broken build, not a pass.

Migrating costs more than most tests, so `spec` hands each test an emptied database migrated once per
session: a copy of a migrated SQLite file, or a PostgreSQL schema of the session's own (one per xdist
worker), emptied before each test and dropped at the end. `blank_spec` is a database never migrated
(a new file, a new schema), for the tests of migration itself.
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from budget import Ledger
from budget._schema import metadata

from ._support import Spec

PG_URL = os.environ.get("DPGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1/test")
BACKENDS = ["sqlite", "postgresql"]


@functools.cache
def _pg_unreachable() -> str | None:
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any failure to reach it is reported, not raised
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {first_line}"
    finally:
        engine.dispose()
    return None


def _require_pg() -> None:
    reason = _pg_unreachable()
    if reason is not None:
        where = sa.make_url(PG_URL).render_as_string(hide_password=True)
        message = f"PostgreSQL unreachable at {where} (set DPGATE_TEST_PG_URL): {reason}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _pg_execute_all(statements: list[str]) -> None:
    engine = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            for sql in statements:
                conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _pg_execute(sql: str) -> None:
    _pg_execute_all([sql])


def _new_schema() -> str:
    return f"dpg_test_{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger-template") / "ledger.db"
    with Ledger(f"sqlite:///{path}") as ledger:
        ledger.migrate()
    # the last connection closed checkpointed the WAL into the file: the file alone is the database
    return path


@pytest.fixture(scope="session")
def _pg_schema() -> Iterator[str]:
    _require_pg()
    schema = _new_schema()
    with Ledger(PG_URL, schema=schema) as ledger:
        ledger.migrate()
    try:
        yield schema
    finally:
        _pg_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Spec:
    """An empty, migrated ledger database for this test."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return Spec(f"sqlite:///{path}")
    schema: str = request.getfixturevalue("_pg_schema")
    # DELETE, children first: on tables this small it is ten times quicker than TRUNCATE
    _pg_execute_all(
        [f'DELETE FROM "{schema}"."{t.name}"' for t in reversed(metadata.sorted_tables) if t.name != "schema_version"]
    )
    return Spec(PG_URL, schema)


@pytest.fixture(params=BACKENDS)
def blank_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Spec]:
    """A database the ledger has never touched."""
    if request.param == "sqlite":
        yield Spec(f"sqlite:///{tmp_path}/blank/ledger.db")
        return
    _require_pg()
    schema = _new_schema()
    try:
        yield Spec(PG_URL, schema)
    finally:
        _pg_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def open_ledger(spec: Spec) -> Iterator[Callable[..., Ledger]]:
    """Opens more ledgers on the test's database (another process, restarted); closes them afterwards."""
    opened: list[Ledger] = []

    def _open(**kwargs: object) -> Ledger:
        ledger = Ledger(spec.url, schema=spec.schema, **kwargs)  # type: ignore[arg-type]
        opened.append(ledger)
        return ledger

    yield _open
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(open_ledger: Callable[..., Ledger]) -> Ledger:
    ledger = open_ledger()
    ledger.migrate()  # a no-op here, as at every start after the first
    return ledger
