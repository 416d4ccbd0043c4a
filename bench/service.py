"""Service benchmark: queries per second through HTTP (cached and uncached) and ledger charges per second.

    .venv/bin/python bench/service.py [--requests 400] [--concurrency 8] [--charges 1000] [--pg-url URL]
    dpgate bench service ...

What it measures, in one run on this machine:
- a real `dpgate serve` process (waitress, one process, 16 threads) on loopback, over a 100,000-row table,
  with the ledger on SQLite and then on PostgreSQL: throughput and p50/p99 latency of
  * uncached queries (each a new SQL text: plan + engine + noise + charge), and
  * cached queries (the same SQL again: answered from the free-repeat store),
  * GET /healthz as the HTTP floor (the baseline the others are compared with);
- the ledger alone (`Ledger.charge`, no HTTP), single thread and 8 threads, on both backends.
Traffic goes to 127.0.0.1 only; every loop is bounded in count.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from budget.ledger import Ledger  # noqa: E402
from gateway.client import Client  # noqa: E402
from mechanisms.cost import Cost  # noqa: E402
from tests.api.test_server import Server  # noqa: E402

ADMIN_KEY = "dpg_bench_" + "b" * 43


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q))


def timed(fn, n: int, concurrency: int) -> dict:  # type: ignore[no-untyped-def]
    lat: list[float] = []

    def one(i: int) -> None:
        t = time.perf_counter()
        fn(i)
        lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    wall = time.perf_counter() - start
    return {"n": n, "per_second": n / wall, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}


def http_bench(ledger_url: str, n: int, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        rows = 100_000
        rng = np.random.default_rng(0)
        pd.DataFrame({"cid": rng.integers(0, 10_000, rows), "amount": rng.exponential(100, rows).round(2),
                      "cat": rng.choice(["a", "b", "c", "d"], rows)}).to_parquet(data / "tx.parquet")
        srv = Server(data, ledger_url, admin_key=ADMIN_KEY)
        srv.start()
        try:
            admin = Client(srv.url, ADMIN_KEY)
            admin.register_dataset({
                "name": "shop", "privacy_unit": "cid", "budget": {"epsilon": 1e6, "delta": 1e-5},
                "tables": {"tx": {"source": str(data / "tx.parquet"), "max_rows_per_unit": 20, "columns": {
                    "cid": {"type": "id"}, "amount": {"type": "float", "lower": 0, "upper": 1000},
                    "cat": {"type": "category", "categories": ["a", "b", "c", "d"]}}}},
            })
            return _http_runs(srv, admin, n, concurrency)
        finally:
            srv.stop()


def _http_runs(srv: Server, admin: Client, n: int, concurrency: int) -> dict:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    key = admin.create_analyst(name)["key"]
    admin.set_budget(name, "shop", epsilon=1000)
    analyst = Client(srv.url, key)
    sql = "SELECT cat, COUNT(*), AVG(amount) FROM tx WHERE amount > {} GROUP BY cat"
    analyst.query("shop", sql.format(-1), epsilon=0.01)  # warm
    out = {
        "healthz": timed(lambda i: Client(srv.url).request("GET", "/healthz"), n, concurrency),
        "uncached": timed(lambda i: analyst.query("shop", sql.format(i), epsilon=0.01), n, concurrency),
        "cached": timed(lambda i: analyst.query("shop", sql.format(i), epsilon=0.01), n, concurrency),
    }
    return out


def ledger_bench(url: str, n: int) -> dict:
    led = Ledger(url)
    led.migrate()
    tag = uuid.uuid4().hex[:6]
    ds = f"bench_{tag}"
    led.set_dataset_budget(ds, epsilon=10**6, delta=0)
    led.create_analyst(f"l-{tag}")
    led.set_allocation(f"l-{tag}", ds, epsilon=10**6)
    cost = Cost.of("0.001")

    def charge(i: int) -> None:
        led.charge(analyst=f"l-{tag}", dataset=ds, cost=cost, kind="query", request_id=f"{tag}-{i}-{uuid.uuid4().hex[:4]}", detail={"sql": "x"})

    single = timed(charge, n, 1)
    threaded = timed(charge, n, 8)
    led.close()
    return {"1 thread": single, "8 threads": threaded}


def fmt(name: str, r: dict, base: dict | None = None) -> str:
    ratio = f"{base['per_second'] / r['per_second']:.1f}×" if base else "1.0×"
    return f"| {name} | {r['per_second']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {ratio} |"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--charges", type=int, default=1000)
    ap.add_argument("--pg-url", default=None, help="server for the PostgreSQL runs (default: DPGATE_TEST_PG_URL or the local one)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "service.json")
    args = ap.parse_args(argv)
    if args.pg_url:
        import os

        os.environ["DPGATE_TEST_PG_URL"] = args.pg_url
    results: dict = {"http": {}, "ledger": {}}
    from tests.api.conftest import drop_pg_database, fresh_pg_database

    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", "postgresql"):
            for part, fn in (("ledger", lambda u: ledger_bench(u, args.charges)), ("http", lambda u: http_bench(u, args.requests, args.concurrency))):
                url = fresh_pg_database() if backend == "postgresql" else f"sqlite:///{tmp}/{part}.db"
                try:
                    results[part][backend] = fn(url)
                finally:
                    if backend == "postgresql":
                        drop_pg_database(url)
    print(f"\n## HTTP ({args.requests} requests, {args.concurrency} concurrent clients; ratio = time per request vs /healthz)\n")
    print("| ledger · request | req/s | p50 ms | p99 ms | vs healthz |\n|---|---|---|---|---|")
    for backend, r in results["http"].items():
        for kind in ("healthz", "cached", "uncached"):
            print(fmt(f"{backend} · {kind}", r[kind], None if kind == "healthz" else r["healthz"]))
    print(f"\n## Ledger charges ({args.charges} each; ratio vs SQLite single thread)\n")
    print("| backend · threads | charges/s | p50 ms | p99 ms | vs sqlite 1 thread |\n|---|---|---|---|---|")
    base = results["ledger"]["sqlite"]["1 thread"]
    for backend, r in results["ledger"].items():
        for k, v in r.items():
            print(fmt(f"{backend} · {k}", v, base))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
