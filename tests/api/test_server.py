"""Against a real `dpgate serve` process: concurrency on both ledgers, restarts and kill -9."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from gateway.client import ApiError, Client
from tests.api.conftest import ADMIN_KEY

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, ledger_url: str, *, admin_key: str = ADMIN_KEY) -> None:
        self.admin_key = admin_key
        self.data_dir = data_dir
        self.ledger_url = ledger_url
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = {
            **os.environ,
            "DPGATE_DATA_DIR": str(self.data_dir),
            "DPGATE_ADMIN_KEY": self.admin_key,
            "DPGATE_LEDGER_URL": self.ledger_url,
            "DPGATE_DEMO__ENABLED": "false",
            "DPGATE_THREADS": "16",
        }
        with open(self.data_dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port)],
                cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.data_dir / "server.log").read_text()[-3000:])
            try:
                Client(self.url).request("GET", "/healthz")
                return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("server did not start")

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


def _dataset(tmp_path: Path) -> dict:
    path = tmp_path / "tx.parquet"
    n = 20_000
    pd.DataFrame({"cid": [i % 2000 for i in range(n)], "amount": [float(i % 997) for i in range(n)]}).to_parquet(path)
    return {
        "name": "shop", "privacy_unit": "cid", "budget": {"epsilon": 100, "delta": 1e-5},
        "tables": {"tx": {"source": str(path), "max_rows_per_unit": 10, "columns": {"cid": {"type": "id"}, "amount": {"type": "float", "lower": 0, "upper": 1000}}}},
    }


@pytest.fixture
def server(tmp_path: Path, ledger_url: str):  # type: ignore[no-untyped-def]
    srv = Server(tmp_path, ledger_url).start()
    admin = Client(srv.url, ADMIN_KEY)
    admin.register_dataset(_dataset(tmp_path))
    key = admin.create_analyst("ann")["key"]
    admin.set_budget("ann", "shop", epsilon=4.0)
    srv.key = key  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def _ask(client: Client, i: int, eps: float = 0.125) -> dict | str:
    try:
        return client.query("shop", f"SELECT SUM(amount) FROM tx WHERE amount > {i}", epsilon=eps, request_id=f"q{i}")
    except ApiError as e:
        return e.code or "error"


def test_64_parallel_queries_exactly_32_answered(server: Server) -> None:
    client = Client(server.url, server.key)  # type: ignore[attr-defined]
    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(lambda i: _ask(client, i), range(64)))
    answered = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if not isinstance(r, dict)]
    assert len(answered) == 32, refused
    assert set(refused) == {"budget_exhausted"}
    [b] = client.budget()
    assert b["epsilon_spent"] == 4.0
    ledger = Client(server.url, ADMIN_KEY).ledger(dataset="shop")
    assert len(ledger) == 32 and {e["request_id"] for e in ledger} == {r["request_id"] for r in answered}


def test_restart_keeps_keys_budgets_and_ledger(server: Server) -> None:
    client = Client(server.url, server.key)  # type: ignore[attr-defined]
    first = client.query("shop", "SELECT COUNT(*) FROM tx", epsilon=0.5, request_id="before")
    server.stop()
    server.start()
    [b] = client.budget()
    assert b["epsilon_spent"] == 0.5 and b["epsilon_total"] == 4.0
    again = client.query("shop", "SELECT COUNT(*) FROM tx", epsilon=0.5, request_id="before")
    assert again["rows"] == first["rows"] and again["cached"] is True
    assert len(Client(server.url, ADMIN_KEY).ledger()) == 1


def test_kill9_in_flight_every_received_answer_is_charged(server: Server) -> None:
    client = Client(server.url, server.key, timeout=30)  # type: ignore[attr-defined]
    received: list[dict] = []

    def worker(i: int) -> None:
        try:
            r = _ask(client, i, eps=0.01)
        except (OSError, http.client.HTTPException):  # the server died under this request
            return
        if isinstance(r, dict):
            received.append(r)

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(worker, i) for i in range(300)]
        while len(received) < 20:
            time.sleep(0.01)
        server.kill9()
        for f in futures:
            f.result()
    assert len(received) >= 20
    server.start()
    charged = {e["request_id"] for e in Client(server.url, ADMIN_KEY).ledger(dataset="shop", limit=10_000)}
    assert {r["request_id"] for r in received} <= charged
    [b] = client.budget()
    assert b["epsilon_spent"] == pytest.approx(0.01 * len(charged), abs=1e-9)
