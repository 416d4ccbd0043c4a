"""Principals: analysts and administrators, their keys (shown once, stored hashed), the bootstrap admin."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import _schema as s
from . import keys
from ._base import LedgerBase, analyst_record, check_name
from .errors import AnalystExists, InvalidInput
from .records import Analyst

ROLES = ("analyst", "admin")


class Principals(LedgerBase):
    """Analysts and administrators, and their keys."""

    def create_analyst(
        self, name: str, *, role: str = "analyst", organisation: str | None = None, actor: str = "system"
    ) -> tuple[Analyst, str]:
        """Create an analyst and its key; the key is returned once and stored only as a hash.

        A disabled analyst of this name is re-created (new key, enabled again) with its allocations and
        spending as they were; an enabled one raises AnalystExists."""
        name = check_name(name, "analyst name")
        organisation = None if organisation is None else check_name(organisation, "organisation")
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {ROLES}")
        key, key_id = keys.new_key()
        digest = keys.key_hash(key)
        now = self._clock()

        def tx(conn: Connection) -> Analyst:
            row = conn.execute(sa.select(s.analysts).where(s.analysts.c.name == name).with_for_update()).first()
            new = {"role": role, "organisation": organisation, "key_id": key_id}
            if row is None:
                conn.execute(
                    s.analysts.insert().values(
                        name=name, key_hash=digest, disabled=False, created_at=now, updated_at=now, **new
                    )
                )
                self._audit(conn, actor, "create_analyst", name, None, new)
            elif row.disabled:
                conn.execute(
                    s.analysts.update()
                    .where(s.analysts.c.name == name)
                    .values(key_hash=digest, disabled=False, updated_at=now, **new)
                )
                old = {
                    "role": row.role,
                    "organisation": row.organisation,
                    "key_id": row.key_id,
                    "disabled": True,
                }
                self._audit(conn, actor, "recreate_analyst", name, old, new)
            else:
                raise AnalystExists(name)
            return self._analyst_in(conn, name)

        return self._db.write(tx), key

    def rotate_key(self, name: str, *, actor: str = "system") -> str:
        """Give the analyst a new key (the old one stops working); returns it, once."""
        key, key_id = keys.new_key()
        self._set_key(name, key, key_id, actor=actor, action="rotate_key")
        return key

    def disable_analyst(self, name: str, *, actor: str = "system") -> Analyst:
        """Disable an analyst: its key stops working; its allocations and spending stay."""
        now = self._clock()

        def tx(conn: Connection) -> Analyst:
            row = self._analyst_row(conn, name, lock=True)
            if not row.disabled:
                conn.execute(s.analysts.update().where(s.analysts.c.name == name).values(disabled=True, updated_at=now))
                self._audit(conn, actor, "disable_analyst", name, {"disabled": False}, {"disabled": True})
            return self._analyst_in(conn, name)

        return self._db.write(tx)

    def ensure_admin_key(self, key: str, *, name: str = "admin", actor: str = "config") -> Analyst:
        """Make `key` (e.g. DPGATE_ADMIN_KEY) an enabled administrator's key. Idempotent: the analyst
        holding this key is kept (made admin and enabled if needed); otherwise analyst `name` gets the
        key (created as an admin if missing)."""
        keys.check_configured_key(key)
        name = check_name(name, "analyst name")
        digest = keys.key_hash(key)
        key_id = keys.key_id_of(key)
        now = self._clock()

        def tx(conn: Connection) -> Analyst:
            row = conn.execute(sa.select(s.analysts).where(s.analysts.c.key_hash == digest).with_for_update()).first()
            if row is not None:
                if row.role != "admin" or row.disabled:
                    conn.execute(
                        s.analysts.update()
                        .where(s.analysts.c.name == row.name)
                        .values(role="admin", disabled=False, updated_at=now)
                    )
                    old = {"role": row.role, "disabled": row.disabled}
                    self._audit(conn, actor, "ensure_admin_key", row.name, old, {"role": "admin", "disabled": False})
                return self._analyst_in(conn, row.name)
            row = conn.execute(sa.select(s.analysts).where(s.analysts.c.name == name).with_for_update()).first()
            new = {"role": "admin", "key_id": key_id, "disabled": False}
            if row is None:
                conn.execute(
                    s.analysts.insert().values(
                        name=name, organisation=None, key_hash=digest, created_at=now, updated_at=now, **new
                    )
                )
                self._audit(conn, actor, "create_analyst", name, None, new)
            else:
                conn.execute(
                    s.analysts.update().where(s.analysts.c.name == name).values(key_hash=digest, updated_at=now, **new)
                )
                old = {"role": row.role, "key_id": row.key_id, "disabled": row.disabled}
                self._audit(conn, actor, "ensure_admin_key", name, old, new)
            return self._analyst_in(conn, name)

        return self._db.write(tx)

    def authenticate(self, key: str) -> Analyst | None:
        """The enabled analyst whose key this is, or None. Looks the key up by its hash and compares the
        digests in constant time; an unknown key costs the same hashing and comparison."""
        if not isinstance(key, str) or not key or len(key) > keys.MAX_KEY_LENGTH:
            return None
        digest = keys.key_hash(key)
        with self._db.read() as conn:
            row = conn.execute(sa.select(s.analysts).where(s.analysts.c.key_hash == digest)).first()
        if not keys.digests_equal(None if row is None else row.key_hash, digest) or row is None or row.disabled:
            return None
        return analyst_record(row)

    def get_analyst(self, name: str) -> Analyst | None:
        with self._db.read() as conn:
            row = conn.execute(sa.select(s.analysts).where(s.analysts.c.name == name)).first()
        return None if row is None else analyst_record(row)

    def list_analysts(self) -> list[Analyst]:
        with self._db.read() as conn:
            return [analyst_record(r) for r in conn.execute(sa.select(s.analysts).order_by(s.analysts.c.name))]

    def _set_key(self, name: str, key: str, key_id: str, *, actor: str, action: str) -> None:
        digest = keys.key_hash(key)
        now = self._clock()

        def tx(conn: Connection) -> None:
            row = self._analyst_row(conn, name, lock=True)
            conn.execute(
                s.analysts.update()
                .where(s.analysts.c.name == name)
                .values(key_hash=digest, key_id=key_id, updated_at=now)
            )
            self._audit(conn, actor, action, name, {"key_id": row.key_id}, {"key_id": key_id})

        self._db.write(tx)
