"""Engines for the ledger: SQLite (a file; the embedded default) or PostgreSQL, with the locking we rely on.

SQLite: WAL (readers never block the writer), a 30 s busy timeout, foreign keys on, and SQLAlchemy —
not the sqlite3 driver — emits BEGIN: ``BEGIN IMMEDIATE`` for write transactions, so that a charge
holds the database's write lock from its first read to its commit (no two charges ever read the same
spent figure), and a deferred BEGIN for reads, which in WAL see one consistent snapshot. Several
processes sharing the file are serialised by SQLite's own file locks.

PostgreSQL: READ COMMITTED with ``SELECT ... FOR UPDATE`` on the rows a write depends on (the callers
lock in one order: request, allocation, dataset). Optionally a schema of its own (set as the
connection's search_path).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from .errors import InvalidInput, LedgerUnavailable

__all__ = ["Database"]

T = TypeVar("T")

_SQLITE_BUSY_MS = 30_000
_WRITE = "dpgate_write"
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# PostgreSQL's unique violation (a concurrent insert of the same key: run again, it will find the row),
# serialization failure and deadlock. Nothing else is retried: a CHECK violation means a bug, loudly.
# (SQLite needs none: BEGIN IMMEDIATE serialises writers before their first read.)
_RETRY_SQLSTATES = {"23505", "40001", "40P01"}
_ATTEMPTS = 5


class Database:
    """An engine plus the two kinds of transaction the ledger uses: `read()` and `write(fn)`."""

    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = 5, max_overflow: int = 10) -> None:
        u = make_url(url)
        self.backend = u.get_backend_name()
        self.schema = schema
        if self.backend == "sqlite":
            if schema is not None:
                raise InvalidInput("a schema is a PostgreSQL option; SQLite has one per file")
            database = u.database or ""
            if database in ("", ":memory:") or "mode=memory" in str(u):
                raise InvalidInput("the SQLite ledger must be a file (an in-memory database is per connection)")
            parent = os.path.dirname(os.path.abspath(database))
            os.makedirs(parent, exist_ok=True)
            engine = sa.create_engine(
                u,
                connect_args={"timeout": _SQLITE_BUSY_MS / 1000, "check_same_thread": False},
                poolclass=sa.pool.QueuePool,
                pool_size=pool_size,
                max_overflow=max_overflow,
            )
            _sqlite_hooks(engine)
        elif self.backend == "postgresql":
            if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
                raise InvalidInput("a schema name must be a plain identifier")
            engine = sa.create_engine(u, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
            if schema is not None:
                _pg_search_path(engine, schema)
        else:
            raise InvalidInput(f"the ledger runs on SQLite or PostgreSQL, not {self.backend!r}")
        self.engine: Engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (one consistent snapshot on SQLite's WAL; READ COMMITTED on PostgreSQL)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (DBAPIError, sa.exc.TimeoutError) as exc:
            if _unreachable(exc):
                raise LedgerUnavailable() from None
            raise

    def write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in a write transaction and commit; run it again (whole) where PostgreSQL says a
        concurrent writer got in first: a unique key taken meanwhile, a deadlock, a serialization
        failure. `fn` must do nothing but database work (it may run more than once)."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._writer.begin() as conn:
                    return fn(conn)
            except (DBAPIError, sa.exc.TimeoutError) as exc:
                if getattr(getattr(exc, "orig", None), "sqlstate", None) not in _RETRY_SQLSTATES or attempt == _ATTEMPTS:
                    if _unreachable(exc):
                        # Not retried: a commit that failed with its connection may have landed. The
                        # caller's retry (same request id) finds it rather than charging twice.
                        raise LedgerUnavailable() from None
                    raise
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()


def _unreachable(exc: Exception) -> bool:
    """The database cannot be reached or used right now (a lost or refused connection, a file that cannot
    be opened, a lock held past the busy timeout, no pooled connection in time) — as opposed to a
    statement it refused (a CHECK or key violation), which is a bug and stays loud."""
    if isinstance(exc, sa.exc.TimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))


def _sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # the driver must not open transactions on its own: we emit BEGIN (see `_on_begin`)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")  # a committed charge survives a power cut too
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN DEFERRED")


def _pg_search_path(engine: Engine, schema: str) -> None:
    @event.listens_for(engine, "connect", insert=True)
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f'SET SESSION search_path TO "{schema}"')
        finally:
            cursor.close()
        dbapi_connection.autocommit = autocommit
