"""Principals: keys shown once and stored only hashed, authentication, the bootstrap admin, the audit log."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from budget import AnalystExists, InvalidInput, Ledger, UnknownAnalyst
from budget.keys import PREFIX

from ._support import grant, query


def _dump_tables(ledger: Ledger) -> str:
    """Every value in every ledger table, as one string."""
    engine = ledger._db.engine
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                out.append(repr(tuple(row)))
    return "\n".join(out)


def test_keys_are_strong_shown_once_and_stored_only_hashed(ledger: Ledger) -> None:
    alice, key = ledger.create_analyst("alice", role="analyst")
    assert key.startswith(PREFIX) and key.startswith(alice.key_id + "_")
    secret = key[len(alice.key_id) + 1 :]
    assert len(secret) >= 43  # token_urlsafe(32): 256 bits
    dump = _dump_tables(ledger)
    assert key not in dump and secret not in dump
    assert hashlib.sha256(key.encode()).hexdigest() in dump
    assert alice.key_id in dump  # the non-secret id is kept, for listings
    _, other = ledger.create_analyst("bob", role="analyst")
    assert other != key


def test_authenticate(ledger: Ledger) -> None:
    alice, key = ledger.create_analyst("alice", role="analyst", organisation="acme")
    _, admin_key = ledger.create_analyst("root", role="admin")
    assert ledger.authenticate(key) == alice
    assert alice.organisation == "acme" and not alice.is_admin
    assert ledger.authenticate(admin_key).is_admin  # type: ignore[union-attr]
    for bad in ["", key[:-1], key + "x", key.upper(), "dpg_" + "0" * 60, "x" * 10_000, None, 42]:
        assert ledger.authenticate(bad) is None  # type: ignore[arg-type]
    ledger.disable_analyst("alice")
    assert ledger.authenticate(key) is None


def test_rotate_key_revokes_the_old_one(ledger: Ledger) -> None:
    _alice, key = ledger.create_analyst("alice", role="analyst")
    new = ledger.rotate_key("alice", actor="root")
    assert ledger.authenticate(key) is None
    assert ledger.authenticate(new).name == "alice"  # type: ignore[union-attr]
    assert ledger.audit_log()[0]["action"] == "rotate_key"


def test_names_are_unique(ledger: Ledger) -> None:
    ledger.create_analyst("alice", role="analyst")
    with pytest.raises(AnalystExists):
        ledger.create_analyst("alice", role="admin")
    with pytest.raises(InvalidInput):
        ledger.create_analyst("eve", role="superuser")
    with pytest.raises(InvalidInput):
        ledger.create_analyst("", role="analyst")
    with pytest.raises(UnknownAnalyst):
        ledger.disable_analyst("nobody")
    assert [a.name for a in ledger.list_analysts()] == ["alice"]
    assert ledger.get_analyst("nobody") is None


def test_ensure_admin_key_is_idempotent(ledger: Ledger) -> None:
    configured = "a-configured-admin-key-of-some-length"
    admin = ledger.ensure_admin_key(configured)
    assert admin.is_admin and admin.name == "admin"
    assert ledger.ensure_admin_key(configured) == admin
    assert ledger.authenticate(configured) == admin
    assert configured not in _dump_tables(ledger)
    assert [a["action"] for a in ledger.audit_log()] == ["create_analyst"]
    # the configured key changed: the admin's key follows it, the old one stops working
    ledger.ensure_admin_key("another-configured-admin-key!")
    assert ledger.authenticate(configured) is None
    assert ledger.authenticate("another-configured-admin-key!").name == "admin"  # type: ignore[union-attr]
    assert len(ledger.list_analysts()) == 1
    with pytest.raises(InvalidInput):
        ledger.ensure_admin_key("short")


def test_ensure_admin_key_re_enables_a_disabled_admin(ledger: Ledger) -> None:
    configured = "a-configured-admin-key-of-some-length"
    ledger.ensure_admin_key(configured)
    ledger.disable_analyst("admin", actor="root")
    assert ledger.authenticate(configured) is None
    ledger.ensure_admin_key(configured)
    assert ledger.authenticate(configured).is_admin  # type: ignore[union-attr]


def test_every_admin_change_is_audited(ledger: Ledger) -> None:
    ledger.create_analyst("alice", role="analyst", actor="root")
    ledger.set_dataset_budget("bank", epsilon=2, delta=1e-6, actor="root")
    ledger.set_allocation("alice", "bank", epsilon=1, actor="ops")
    ledger.set_allocation("alice", "bank", epsilon=0.5, actor="ops")
    ledger.disable_analyst("alice", actor="root")
    log = ledger.audit_log()
    assert [(e["actor"], e["action"], e["target"]) for e in log] == [
        ("root", "disable_analyst", "alice"),
        ("ops", "set_allocation", "alice/bank"),
        ("ops", "set_allocation", "alice/bank"),
        ("root", "set_dataset_budget", "bank"),
        ("root", "create_analyst", "alice"),
    ]
    assert log[1]["old"] == {"epsilon": 1.0, "delta": 0.0} and log[1]["new"] == {"epsilon": 0.5, "delta": 0.0}
    assert log[2]["old"] is None
    assert log[3]["new"] == {"epsilon": 2.0, "delta": 1e-6}
    assert log[0]["old"] == {"disabled": False} and log[0]["new"] == {"disabled": True}
    assert all(e["at"].endswith("+00:00") for e in log)
    ids = [e["id"] for e in log]
    assert ids == sorted(ids, reverse=True)


def test_charges_are_not_admin_changes(ledger: Ledger) -> None:
    grant(ledger, "bank", analysts={"alice": 1})
    n = len(ledger.audit_log())

    query(ledger, "alice", "bank", 0.5)
    assert len(ledger.audit_log()) == n
