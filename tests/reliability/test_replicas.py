"""Replicas: several gateway processes on one PostgreSQL ledger and one data directory.

Independent `dpgate serve` processes on other ports, and `dpgate serve --workers N` (gunicorn), answer
the same datasets and charge one ledger, so that the first wave's exact figures hold across them:
64 parallel queries of ε = 0.125 against an allocation of 4 → exactly 32 answered and charged;
200 of ε = 0.027 against 1.0 → exactly 37; a replica killed by SIGKILL mid-flight → every answer a
client saw is charged. A dataset registered on one replica is answered by the others without a
restart (gateway/replicas.py), its DuckDB files opened read-only by all of them.
"""
from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from budget import Ledger
from gateway.client import ApiError, Client
from tests.api.conftest import ADMIN_KEY
from tests.api.test_server import ROOT, Server

from . import _support as sp
from .conftest import NO_RATE_LIMITS

STEADY = 0.125  # 64 of these against 4.0: exactly 32 (binary fractions: no rounding at all)


class Replica(Server):
    """`dpgate serve` with extra arguments (`--workers N`), on a data directory it may share."""

    def __init__(self, data_dir: Path, ledger_url: str, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, ledger_url)
        self.args = list(args)
        self.env = env or {}

    def start(self) -> Replica:
        env = {
            **os.environ, **NO_RATE_LIMITS,
            "DPGATE_DATA_DIR": str(self.data_dir), "DPGATE_ADMIN_KEY": self.admin_key,
            "DPGATE_LEDGER_URL": self.ledger_url, "DPGATE_DEMO__ENABLED": "false", "DPGATE_THREADS": "16",
            **self.env,
        }  # fmt: skip
        log_path = self.data_dir / f"server-{self.port}.log"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port), *self.args],
                cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(log_path.read_text()[-3000:])
            try:
                Client(self.url).request("GET", "/healthz")
                return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("server did not start")


def start_replicas(data_dir: Path, ledger_url: str, n: int) -> list[Replica]:
    """`n` independent `dpgate serve` processes on one data directory and one ledger, started together."""
    replicas = [Replica(data_dir, ledger_url) for _ in range(n)]
    started: list[Replica] = []
    try:
        with ThreadPoolExecutor(n) as pool:
            for r in pool.map(lambda r: r.start(), replicas):
                started.append(r)
    except BaseException:
        for r in replicas:
            r.stop()
        raise
    return started


def stop_all(replicas: list[Replica]) -> None:
    for r in replicas:
        r.stop()


def wait_answered(client: Client, dataset: str, *, timeout: float = 30) -> None:
    """Until `client`'s replica knows `dataset` (a free preview answers; nothing is charged)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.preview(dataset, "SELECT COUNT(*) AS n FROM tx", epsilon=1)
            return
        except ApiError as e:
            if e.code != "unknown_dataset" or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def ask_at(client: Client, dataset: str, i: int, epsilon: float, prefix: str = "q") -> dict[str, Any] | str:
    try:
        return client.query(dataset, f"SELECT SUM(amount) AS s FROM tx WHERE amount > {i}", epsilon=epsilon, request_id=f"{prefix}{i}")
    except ApiError as e:
        return e.code or f"http_{e.status}"


def setup_dataset(data_dir: Path, admin: Client, name: str = "shop") -> Path:
    source = sp.write_table(data_dir / f"{name}.parquet")
    admin.register_dataset(sp.dataset_meta(name, source))
    return source


def exactly_32(clients: list[Client], dataset: str, ledger_url: str, analyst: str) -> None:
    """64 parallel queries of ε = 0.125 spread over the replicas against 4.0: exactly 32 answered, each
    charged once, nothing else charged."""
    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(lambda i: ask_at(clients[i % len(clients)], dataset, i, STEADY), range(64)))
    answered = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if not isinstance(r, dict)]
    assert len(answered) == 32, refused
    assert set(refused) == {"budget_exhausted"}
    assert not any(a["cached"] for a in answered)
    with Ledger(ledger_url) as ledger:
        entries = ledger.entries(dataset=dataset, analyst=analyst, limit=10_000)
        assert sorted(e["request_id"] for e in entries) == sorted(a["request_id"] for a in answered)
        assert sp.exact_units(entries) == 4
        assert ledger.remaining_cost(analyst, dataset).analyst.epsilon == 0
        assert ledger.verify() == []
    for client in clients:  # every replica reads the same ledger
        [b] = client.budget()
        assert b["epsilon_spent"] == 4.0 and b["epsilon_remaining"] == 0.0


# -- the default run ----------------------------------------------------------------------------


def test_workers_on_the_sqlite_ledger_are_refused(tmp_path: Path) -> None:
    env = {**os.environ, "DPGATE_DATA_DIR": str(tmp_path), "DPGATE_DEMO__ENABLED": "false"}
    env.pop("DPGATE_LEDGER_URL", None)
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--workers", "2", "--port", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--workers 2 needs a PostgreSQL ledger" in done.stderr
    assert "DPGATE_LEDGER_URL" in done.stderr and "ledger_url" in done.stderr
    assert not (tmp_path / "ledger.db").exists()  # refused before anything was opened


def test_the_registration_lock_excludes_other_processes(tmp_path: Path) -> None:
    """While another process registers (holds the lock), a refresh does not wait for it; after, it may."""
    from gateway.replicas import register_lock, try_register_lock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gateway.replicas import register_lock\n"
         f"with register_lock({str(tmp_path)!r}):\n    print('held', flush=True); sys.stdin.readline()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with try_register_lock(tmp_path) as held:
            assert held is False
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(30)
        if holder.stdout is not None:
            holder.stdout.close()
    with register_lock(tmp_path), register_lock(tmp_path):  # re-entrant within a process
        with try_register_lock(tmp_path) as held:
            assert held is True


def test_a_refresh_registers_what_another_process_stored(tmp_path: Path) -> None:
    """In-process: the refresher registers a stored definition it has not seen, again when its file
    changes, not when it is unchanged; one whose data no longer load is made unavailable."""
    import json

    from gateway.core import Gateway
    from gateway.replicas import Refresher
    from gateway.settings import load_settings

    settings = load_settings(data_dir=tmp_path, demo={"enabled": False})
    gw = Gateway.from_settings(settings)
    unavailable: dict[str, str] = {}
    refresher = Refresher(gw, unavailable, tmp_path, every_ms=0)
    assert refresher.refresh() == []  # nothing stored yet
    store = tmp_path / "datasets"
    store.mkdir()
    source = sp.write_table(tmp_path / "tx.parquet")
    meta = sp.dataset_meta("shop", source)
    (store / "shop.json").write_text(json.dumps(meta))
    assert refresher.refresh() == ["shop"] and "shop" in gw.catalog
    assert refresher.refresh() == []  # unchanged: not registered again
    meta["tables"]["tx"]["max_rows_per_unit"] = 4
    (store / ".shop.json.tmp").write_text(json.dumps(meta))  # half-written files are not read
    assert refresher.refresh() == []
    (store / ".shop.json.tmp").replace(store / "shop.json")
    assert refresher.refresh() == ["shop"] and gw.catalog.get("shop").tables["tx"].max_rows_per_unit == 4
    meta["tables"]["tx"]["source"] = str(tmp_path / "gone.parquet")
    (store / "shop.json").write_text(json.dumps(meta))
    assert refresher.refresh() == [] and "missing" in unavailable["shop"]


def test_two_replicas_share_registrations_and_budgets(tmp_path: Path, pg_url: str) -> None:
    """Two `dpgate serve` on one data directory: a registration on one is answered by the other (and a
    new version of it too), its DuckDB version files written once; 64 queries over both → exactly 32."""
    a, b = replicas = start_replicas(tmp_path, pg_url, 2)
    try:
        admin_a, admin_b = Client(a.url, ADMIN_KEY, timeout=120), Client(b.url, ADMIN_KEY, timeout=120)
        source = setup_dataset(tmp_path, admin_a)
        key = admin_a.create_analyst("ann")["key"]
        admin_a.set_budget("ann", "shop", epsilon=4.0)
        ann_a, ann_b = Client(a.url, key, timeout=120), Client(b.url, key, timeout=120)
        wait_answered(ann_b, "shop")  # registered on a, answered by b, no restart
        assert [d["name"] for d in ann_b.datasets()] == ["shop"]
        files = sorted(p.name for p in (tmp_path / "duckdb").glob("*.duckdb"))
        assert len(files) == 1 and files[0].startswith("shop__tx__")  # one version file, shared
        # a new version registered on b (bounds changed: k = 10 -> 5) is answered by a
        scale = ann_a.preview("shop", "SELECT COUNT(*) AS n FROM tx", epsilon=1)["accuracy"]["n"]["scale"]
        meta = sp.dataset_meta("shop", source)
        meta["tables"]["tx"]["max_rows_per_unit"] = 5
        admin_b.register_dataset(meta)
        deadline = time.monotonic() + 30
        while ann_a.preview("shop", "SELECT COUNT(*) AS n FROM tx", epsilon=1)["accuracy"]["n"]["scale"] == scale:
            assert time.monotonic() < deadline, "replica a still answers with the old version"
            time.sleep(0.05)
        assert ann_a.preview("shop", "SELECT COUNT(*) AS n FROM tx", epsilon=1)["accuracy"]["n"]["scale"] == scale / 2
        assert len(list((tmp_path / "duckdb").glob("shop__tx__*.duckdb"))) == 2  # versions are files of their own
        exactly_32([ann_a, ann_b], "shop", pg_url, "ann")
    finally:
        stop_all(replicas)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def test_workers_2_on_postgresql_answer_exactly(tmp_path: Path, pg_url: str) -> None:
    """`dpgate serve --workers 2`: two pre-forked processes behind one port, one ledger: 64 → 32."""
    server = Replica(tmp_path, pg_url, "--workers", "2").start()
    try:
        assert server.proc is not None
        deadline = time.monotonic() + 30
        while len(_children(server.proc.pid)) < 2:
            assert time.monotonic() < deadline, "gunicorn did not start 2 workers"
            time.sleep(0.1)
        admin = Client(server.url, ADMIN_KEY, timeout=120)
        setup_dataset(tmp_path, admin)
        key = admin.create_analyst("ann")["key"]
        admin.set_budget("ann", "shop", epsilon=4.0)
        client = Client(server.url, key, timeout=120)
        for _ in range(20):  # whichever worker takes a request knows the dataset
            wait_answered(client, "shop")
        exactly_32([client], "shop", pg_url, "ann")
        # one scrape adds every worker's counters (prometheus_client's multiprocess mode, set by serve)
        scraped = admin.raw("/metrics").decode()
        queries = sum(float(line.rsplit(" ", 1)[1]) for line in scraped.splitlines()
                      if line.startswith("dpgate_http_requests_total{") and 'endpoint="/v1/queries"' in line)  # fmt: skip
        assert queries == 64, scraped[:2000]
    finally:
        server.stop()


# -- slow: the first wave's other figures across replicas ---------------------------------------


@pytest.mark.slow
def test_three_replicas_200_queries_exactly_37(tmp_path: Path, pg_url: str) -> None:
    replicas = start_replicas(tmp_path, pg_url, 3)
    try:
        admin = Client(replicas[0].url, ADMIN_KEY, timeout=120)
        setup_dataset(tmp_path, admin)
        key = admin.create_analyst("ann")["key"]
        admin.set_budget("ann", "shop", epsilon=float(sp.LIMIT))
        clients = [Client(r.url, key, timeout=120) for r in replicas]
        for c in clients:
            wait_answered(c, "shop")
        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(lambda i: sp.ask(clients[i % 3], "shop", i), range(sp.REQUESTS)))
        answered = {r["request_id"] for r in results if isinstance(r, dict)}
        assert {r for r in results if not isinstance(r, dict)} == {"budget_exhausted"}
        assert len(answered) == sp.EXPECTED
        with Ledger(pg_url) as ledger:
            entries = ledger.entries(dataset="shop", analyst="ann", limit=10_000)
            assert {e["request_id"] for e in entries} == answered and len(entries) == sp.EXPECTED
            assert sp.exact_units(entries) == sp.SPENT
            assert ledger.remaining_cost("ann", "shop").analyst.epsilon == 1 - sp.SPENT
            assert ledger.verify() == []
        for c in clients:
            [b] = c.budget()
            assert b["epsilon_spent"] == 0.999 and b["epsilon_remaining"] == 0.001
    finally:
        stop_all(replicas)


@pytest.mark.slow
def test_three_workers_200_queries_exactly_37(tmp_path: Path, pg_url: str) -> None:
    server = Replica(tmp_path, pg_url, "--workers", "3").start()
    try:
        admin = Client(server.url, ADMIN_KEY, timeout=120)
        setup_dataset(tmp_path, admin)
        key = admin.create_analyst("ann")["key"]
        admin.set_budget("ann", "shop", epsilon=float(sp.LIMIT))
        client = Client(server.url, key, timeout=120)
        for _ in range(30):
            wait_answered(client, "shop")
        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(lambda i: sp.ask(client, "shop", i), range(sp.REQUESTS)))
        answered = {r["request_id"] for r in results if isinstance(r, dict)}
        assert {r for r in results if not isinstance(r, dict)} == {"budget_exhausted"}
        assert len(answered) == sp.EXPECTED
        with Ledger(pg_url) as ledger:
            entries = ledger.entries(dataset="shop", analyst="ann", limit=10_000)
            assert {e["request_id"] for e in entries} == answered
            assert sp.exact_units(entries) == sp.SPENT
            assert ledger.verify() == []
    finally:
        server.stop()


@pytest.mark.slow
def test_kill9_of_a_replica_mid_flight_every_seen_answer_is_charged(tmp_path: Path, pg_url: str) -> None:
    """16 client threads over 3 replicas; replica 0 dies by SIGKILL after 20 answers. Every answer a
    client received (from any replica) is charged, the spent figure is exactly the charges, and the
    two others kept answering."""
    replicas = start_replicas(tmp_path, pg_url, 3)
    try:
        admin = Client(replicas[1].url, ADMIN_KEY, timeout=120)
        setup_dataset(tmp_path, admin)
        key = admin.create_analyst("ann")["key"]
        admin.set_budget("ann", "shop", epsilon=10.0)
        clients = [Client(r.url, key, timeout=30) for r in replicas]
        for c in clients:
            wait_answered(c, "shop")
        received: list[tuple[int, dict[str, Any], bool]] = []
        killed = [False]

        def worker(i: int) -> None:
            at = i % 3
            try:
                r = ask_at(clients[at], "shop", i, 0.01, prefix="k")
            except (OSError, http.client.HTTPException):  # replica 0 died under this request
                return
            if isinstance(r, dict):
                received.append((at, r, killed[0]))

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(worker, i) for i in range(300)]
            while len(received) < 20:
                time.sleep(0.01)
            replicas[0].kill9()
            killed[0] = True
            for f in futures:
                f.result()
        assert len(received) >= 20
        assert any(after and at != 0 for at, _, after in received)  # the others carried on
        with Ledger(pg_url) as ledger:
            entries = ledger.entries(dataset="shop", analyst="ann", limit=10_000)
            assert ledger.verify() == []
        charged = {e["request_id"] for e in entries}
        assert {r["request_id"] for _, r, _ in received} <= charged
        assert sp.exact_units(entries) == Fraction(1, 100) * len(charged)
        [b] = clients[1].budget()
        assert b["epsilon_spent"] == pytest.approx(0.01 * len(charged), abs=1e-9)
    finally:
        stop_all(replicas)
