"""The console's server-side sessions: a table beside the ledger's, through the ledger's own engine.

The table is the ledger's (`budget/_schema.py`, created by its migration step 3). Why a table and not
process memory: several `dpgate serve` replicas share one ledger (DESIGN.md §2,
scale-out), and a restart should not sign everybody out; the ledger's database is the one store they
all share. The browser holds only a random session id (256 bits); the table holds its SHA-256, so a
copy of the database cannot be replayed as a cookie. The API key is checked once, at sign-in, and never
stored, not even hashed: the session names the analyst and the key id it signed in with, so that a
rotated key or a disabled analyst ends the session at its next request.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from budget._schema import console_sessions  # created by the ledger's migration step 3
from budget.ledger import Ledger
from budget.records import Analyst

SESSION_TTL = timedelta(hours=8)  # absolute: a session is never extended past this
IDLE_TTL = timedelta(hours=1)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite drops the zone


@dataclass(frozen=True)
class Session:
    analyst: Analyst
    csrf: str

    def csrf_ok(self, sent: Any) -> bool:
        return isinstance(sent, str) and hmac.compare_digest(sent.encode(), self.csrf.encode())


class SessionStore:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        # the ledger's engine (SQLite file or PostgreSQL, with its schema's search_path)
        self.engine: sa.Engine = ledger._db.engine  # noqa: SLF001

    def open(self, key: str) -> tuple[str, Session] | None:
        """Exchange an API key for a new session id, or None when the key is not an enabled analyst's."""
        analyst = self.ledger.authenticate(key)
        if analyst is None:
            return None
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(console_sessions.delete().where(console_sessions.c.created_at < now - SESSION_TTL))
            conn.execute(console_sessions.insert().values(
                id_hash=_digest(session_id), analyst=analyst.name, key_id=analyst.key_id, csrf=csrf, created_at=now, seen_at=now,
            ))  # fmt: skip
        return session_id, Session(analyst, csrf)

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id: unexpired, its analyst enabled and still on the same key."""
        if not session_id or len(session_id) > 128:
            return None
        now = datetime.now(UTC)
        t = console_sessions
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id_hash == _digest(session_id))).first()
        if row is None:
            return None
        if _aware(row.created_at) < now - SESSION_TTL or _aware(row.seen_at) < now - IDLE_TTL:
            self.close(session_id)
            return None
        analyst = self.ledger.get_analyst(row.analyst)
        if analyst is None or analyst.disabled or analyst.key_id != row.key_id:
            self.close(session_id)
            return None
        if now - _aware(row.seen_at) > timedelta(minutes=1):  # one write a minute at most
            with self.engine.begin() as conn:
                conn.execute(t.update().where(t.c.id_hash == row.id_hash).values(seen_at=now))
        return Session(analyst, row.csrf)

    def close(self, session_id: str | None) -> None:
        if not session_id:
            return
        with self.engine.begin() as conn:
            conn.execute(console_sessions.delete().where(console_sessions.c.id_hash == _digest(session_id)))
