"""kill -9 at each step of a query, on a real server: never "released and not charged".

For each step `gateway.faults` knows, a server starts with that fault armed (``DPGATE_FAULT``), gets one
query with a request id, and dies by SIGKILL at that point — no handler, no ``finally`` runs. Then it
restarts without the fault (the restart's `Ledger.recover()` drops the request id's reservation left by
the dead request) and the client retries with the same request id. What each step proves:

- ``after_engine`` — the exact aggregates were computed, no noise drawn: nothing reached the client and
  nothing is charged; the retry runs the query anew and is charged exactly once.
- ``after_noise`` — the noisy answer existed only in the dead process's memory: nothing reached the
  client and nothing is charged (a noisy answer that was never released costs nothing); the retry is
  charged exactly once.
- ``after_charge`` — the charge was committed (with the answer stored under the request id) but the
  answer never left: the charge stays (a crash loses the answer, not the charge), and the retry gets the
  stored answer (``cached``) with no second charge.
- ``during_response`` — the status line and half the answer's body were on the wire when the process
  died: what the client got is charged, and the retry gets the full stored answer, which begins with
  the bytes received; still one charge.

And for every step: whatever the client received is in the ledger, the spent figures agree with the
entries (`verify()`), and no request is left holding its id (the retry is not a 409).
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from budget import Ledger
from gateway.client import Client
from gateway.faults import STEPS
from tests.api.conftest import ADMIN_KEY
from tests.api.test_server import Server

from . import _support as sp
from .conftest import NO_RATE_LIMITS, ledger_url_of

CHARGED_BEFORE_DEATH = {"after_charge", "during_response"}
EPSILON = 0.25


def _run(step: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, cleanup = ledger_url_of(backend, tmp_path)
    for k, v in NO_RATE_LIMITS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DPGATE_FAULT", step)
    server = Server(tmp_path, url)
    try:
        server.start()
        admin = Client(server.url, ADMIN_KEY)
        source = sp.write_table(tmp_path / "tx.parquet")
        admin.register_dataset(sp.dataset_meta("shop", source))
        key = admin.create_analyst("ann")["key"]
        admin.set_budget("ann", "shop", epsilon=1.0)
        body = {"dataset": "shop", "sql": "SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat", "epsilon": EPSILON, "request_id": "k1"}

        status, received, complete = sp.post_raw(server.url, key, body)

        assert server.proc is not None
        assert server.proc.wait(timeout=60) == -signal.SIGKILL  # it died, by the fault, at that step
        assert not complete  # no whole answer left a process that died before (or while) sending it
        if step == "during_response":
            assert status == 200 and 0 < len(received)  # it died mid-body
        else:
            assert status is None and received == b""

        monkeypatch.delenv("DPGATE_FAULT")
        server.start()
        entries = admin.ledger(dataset="shop")
        if step in CHARGED_BEFORE_DEATH:
            assert [e["request_id"] for e in entries] == ["k1"]  # charged before it died: the charge stays
        else:
            assert entries == []  # died before the charge: nothing charged, nothing released

        status, raw, complete = sp.post_raw(server.url, key, body)
        assert status == 200 and complete, raw  # not a 409: the dead request's hold was dropped
        retry = json.loads(raw)
        assert retry["request_id"] == "k1"
        assert retry["cached"] is (step in CHARGED_BEFORE_DEATH)  # the stored answer, or a fresh run
        after = admin.ledger(dataset="shop")
        assert len(after) == 1 and after[0]["request_id"] == "k1" and after[0]["epsilon"] == EPSILON
        if step in CHARGED_BEFORE_DEATH:
            assert after == entries  # the retry charged nothing more
        if received:
            # the bytes that left before the death are the beginning of the stored answer (which then
            # differs only in `cached`, at its end)
            n = min(len(received), raw.index(b'"cached"'))
            assert n > 0 and received[:n] == raw[:n]
        [b] = Client(server.url, key).budget()
        assert b["epsilon_spent"] == EPSILON and b["dataset_level"]["epsilon_spent"] == EPSILON
        with Ledger(url) as ledger:
            assert ledger.verify() == []
    finally:
        server.stop()
        cleanup()


DEFAULT = ["after_noise", "after_charge", "during_response"]  # one uncharged step, both charged ones


@pytest.mark.parametrize("step", DEFAULT)
def test_kill9_sqlite(step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(step, "sqlite", tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("step", [s for s in STEPS if s not in DEFAULT])
def test_kill9_sqlite_other_steps(step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(step, "sqlite", tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_kill9_postgresql(step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(step, "postgresql", tmp_path, monkeypatch)
