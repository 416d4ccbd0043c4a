"""Load: a bounded run of mixed traffic against a real `dpgate serve` on loopback, then an audit of the
ledger for overspending.

    .venv/bin/python bench/load.py                         # 30 s, 16 client threads, 4 analysts, SQLite
    .venv/bin/python bench/load.py --backend postgresql --duration 60 --concurrency 32
    .venv/bin/python bench/load.py --requests 2000         # stop after 2000 requests (or --duration)
    .venv/bin/python bench/load.py --quick                 # smoke run: ~150 requests on a small table

What it does:
1. starts `dpgate serve` (waitress, 16 threads; rate limits off: they are not what is measured) with a
   fresh data directory and ledger — a SQLite file, or a new PostgreSQL database;
2. registers a `--rows`-row table, with a dataset total of `--total` (default: ¾ of what the analysts'
   allocations add up to, so both budget levels run out during a long run), and `--analysts` analysts
   with `--allocation` ε each;
3. `--concurrency` client threads send `POST /v1/queries` (each with its own request id, analysts in
   turn) until `--duration` seconds or `--requests` requests: a share `--cached` of them is one of 8
   "hot" SQL texts (after its first answer, answered from the free-repeat store at no cost), the rest
   a SQL text never seen before (plan, engine, noise, charge);
4. reports throughput and p50/p99 latency, overall and by outcome (cached, uncached, refused), and
   audits the ledger independently, from its tables' integer units: no allocation's nor the dataset's
   spending above its total, every spent figure equal to the sum of its entries (and `Ledger.verify()`
   clean), every answer the clients received charged (none released uncharged), no 5xx.

Traffic goes to 127.0.0.1 only; the run is bounded in time and in count. Exits 1 if an audit fails.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from budget.ledger import Ledger  # noqa: E402
from budget.units import EPSILON_UNIT  # noqa: E402
from gateway.client import ApiError, Client  # noqa: E402
from tests.api.test_server import Server  # noqa: E402

ADMIN_KEY = "dpg_load_" + "l" * 43
HOT = [
    "SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat",
    "SELECT SUM(amount) AS s FROM tx",
    "SELECT AVG(amount) AS a FROM tx",
    "SELECT cat, SUM(amount) AS s FROM tx GROUP BY cat",
    "SELECT COUNT(*) AS n FROM tx WHERE amount > 100",
    "SELECT cat, AVG(amount) AS a FROM tx GROUP BY cat",
    "SELECT COUNT(*) AS n FROM tx WHERE cat = 'a'",
    "SELECT SUM(amount) AS s FROM tx WHERE cat IN ('b', 'c')",
]
COLD = "SELECT cat, COUNT(*) AS n, SUM(amount) AS s FROM tx WHERE amount > {x:.4f} GROUP BY cat"


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of traffic (default 30)")
    ap.add_argument("--requests", type=int, default=None, help="stop after this many requests")
    ap.add_argument("--concurrency", type=int, default=16, help="client threads (default 16)")
    ap.add_argument("--analysts", type=int, default=4)
    ap.add_argument("--epsilon", type=float, default=0.01, help="ε of every query (default 0.01)")
    ap.add_argument("--allocation", type=float, default=2.0, help="ε allocated to each analyst (default 2.0)")
    ap.add_argument("--total", type=float, default=None, help="the dataset's ε total (default ¾ of the allocations)")
    ap.add_argument("--cached", type=float, default=0.5, help="share of requests that are hot SQL texts (default 0.5)")
    ap.add_argument("--rows", type=int, default=100_000, help="rows of the table (default 100,000)")
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--seed", type=int, default=0, help="of the data and of the traffic mix")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    ap.add_argument("--quick", action="store_true", help="smoke run: 150 requests, 8 threads, 20,000 rows, small allocations")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.requests, args.concurrency, args.rows = min(args.duration, 20.0), 150, 8, 20_000
        args.allocation = 0.1  # 10 uncached answers per analyst: refusals come early
    if args.total is None:
        args.total = round(0.75 * args.analysts * args.allocation, 6)
    return args


@contextmanager
def _server_env() -> Iterator[None]:
    """Rate limits off for the server this run starts (and the caller's environment left as it was)."""
    saved = {k: os.environ.get(k) for k in ("DPGATE_RATE_LIMIT_PER_ANALYST", "DPGATE_RATE_LIMIT_PER_ORGANISATION")}
    os.environ.update({k: "" for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _table(path: Path, rows: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    pd.DataFrame(
        {"cid": rng.integers(0, max(rows // 10, 1), rows), "amount": rng.exponential(100, rows).round(2),
         "cat": rng.choice(["a", "b", "c", "d"], rows)}
    ).to_parquet(path)  # fmt: skip
    return path


def _dataset(source: Path, total: float) -> dict[str, Any]:
    return {
        "name": "shop", "privacy_unit": "cid", "budget": {"epsilon": total, "delta": 1e-5},
        "tables": {"tx": {"source": str(source), "max_rows_per_unit": 20, "columns": {
            "cid": {"type": "id"}, "amount": {"type": "float", "lower": 0, "upper": 1000},
            "cat": {"type": "category", "categories": ["a", "b", "c", "d"]}}}},
    }  # fmt: skip


class Traffic:
    """The client side: who sends what, what came back, how long it took."""

    def __init__(self, url: str, keys: list[str], args: argparse.Namespace) -> None:
        self.clients = [Client(url, k, timeout=120) for k in keys]
        self.args = args
        self.rng = np.random.default_rng(args.seed + 1)
        self.lock = threading.Lock()
        self.sent = 0
        self.deadline = time.monotonic() + args.duration
        self.latency: dict[str, list[float]] = {"cached": [], "uncached": [], "refused": [], "error": []}
        self.codes: Counter[str] = Counter()
        self.answered_uncached: set[str] = set()

    def _next(self) -> tuple[int, str] | None:
        with self.lock:
            if time.monotonic() >= self.deadline or (self.args.requests is not None and self.sent >= self.args.requests):
                return None
            i = self.sent
            self.sent += 1
            hot = self.rng.random() < self.args.cached
            sql = HOT[int(self.rng.integers(len(HOT)))] if hot else COLD.format(x=float(self.rng.uniform(0, 500)) + i * 1e-9)
            return i, sql

    def worker(self) -> None:
        while (job := self._next()) is not None:
            i, sql = job
            client = self.clients[i % len(self.clients)]
            rid = f"load-{i}-{uuid.uuid4().hex[:8]}"
            t = time.perf_counter()
            try:
                answer = client.query("shop", sql, epsilon=self.args.epsilon, request_id=rid)
                kind = "cached" if answer["cached"] else "uncached"
                code = "200"
            except ApiError as e:
                kind = "refused" if e.code == "budget_exhausted" else "error"
                code = f"{e.status} {e.code}"
            except OSError as e:
                kind, code = "error", type(e).__name__
            elapsed = time.perf_counter() - t
            with self.lock:
                self.latency[kind].append(elapsed)
                self.codes[code] += 1
                if kind == "uncached":
                    self.answered_uncached.add(rid)


def _ms(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.array(xs) * 1000, q)), 2) if xs else None


def audit(url: str, answered: set[str]) -> dict[str, Any]:
    """The ledger's own integer units, read straight from its tables (not through the ledger's code)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            levels = [
                (f"{r.holder_kind} {r.holder}", int(r.epsilon_total), int(r.epsilon_spent), int(r.delta_total), int(r.delta_spent))
                for r in conn.execute(sa.text("SELECT * FROM allocations"))
            ] + [
                (f"dataset {r.dataset}", int(r.epsilon_total), int(r.epsilon_spent), int(r.delta_total), int(r.delta_spent))
                for r in conn.execute(sa.text("SELECT * FROM dataset_budgets"))
            ]
            by_analyst = {r.analyst: int(r.e) for r in conn.execute(sa.text("SELECT analyst, SUM(epsilon) AS e FROM ledger_entries GROUP BY analyst"))}
            charged = {r.request_id for r in conn.execute(sa.text("SELECT request_id FROM ledger_entries"))}
            n_entries = int(conn.execute(sa.text("SELECT COUNT(*) FROM ledger_entries")).scalar() or 0)
    finally:
        engine.dispose()
    with Ledger(url) as ledger:
        problems = ledger.verify()
    overspent = [name for name, et, es, dt, ds in levels if es > et or ds > dt]
    return {
        "levels": {name: {"epsilon_total": float(Fraction(et, EPSILON_UNIT)), "epsilon_spent": float(Fraction(es, EPSILON_UNIT))} for name, et, es, _, _ in levels},
        "charges_by_analyst": {a: float(Fraction(e, EPSILON_UNIT)) for a, e in sorted(by_analyst.items())},
        "entries": n_entries,
        "overspent": overspent,
        "verify": problems,
        "released_not_charged": len(answered - charged),
        "charged_not_received": len(charged - answered),
    }


def run(args: argparse.Namespace, ledger_url: str, data: Path) -> dict[str, Any]:
    source = _table(data / "tx.parquet", args.rows, args.seed)
    with _server_env():
        srv = Server(data, ledger_url, admin_key=ADMIN_KEY).start()
    try:
        admin = Client(srv.url, ADMIN_KEY, timeout=120)
        admin.register_dataset(_dataset(source, args.total))
        keys = []
        for a in range(args.analysts):
            name = f"load{a}"
            keys.append(admin.create_analyst(name)["key"])
            admin.set_budget(name, "shop", epsilon=args.allocation)
        traffic = Traffic(srv.url, keys, args)
        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            for f in [pool.submit(traffic.worker) for _ in range(args.concurrency)]:
                f.result()
        wall = time.perf_counter() - start
    finally:
        srv.stop()
    every = [x for xs in traffic.latency.values() for x in xs]
    report: dict[str, Any] = {
        "requests": len(every),
        "seconds": round(wall, 2),
        "per_second": round(len(every) / wall, 1) if wall else None,
        "p50_ms": _ms(every, 50),
        "p99_ms": _ms(every, 99),
        "by_outcome": {
            k: {"n": len(v), "p50_ms": _ms(v, 50), "p99_ms": _ms(v, 99), "mean_ms": round(statistics.fmean(v) * 1000, 2) if v else None}
            for k, v in traffic.latency.items()
        },
        "statuses": dict(traffic.codes),
    }
    report["audit"] = audit(ledger_url, traffic.answered_uncached)
    a = report["audit"]
    report["checks"] = {
        "no_overspend": not a["overspent"],
        "ledger_verify_clean": not a["verify"],
        "nothing_released_uncharged": a["released_not_charged"] == 0,
        "no_server_errors": not traffic.latency["error"],
    }
    report["ok"] = all(report["checks"].values())
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="dpgate-load-") as tmp:
        cleanup = None
        if args.backend == "postgresql":
            from tests.api.conftest import drop_pg_database, fresh_pg_database

            url = fresh_pg_database()
            cleanup = lambda: drop_pg_database(url)  # noqa: E731
        else:
            url = f"sqlite:///{tmp}/ledger.db"
        try:
            report = run(args, url, Path(tmp))
        finally:
            if cleanup is not None:
                cleanup()
    report["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    _print(report, args)
    return report


def _print(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n## Load: {args.backend} ledger, {args.concurrency} client threads, {args.analysts} analysts, "
          f"ε = {args.epsilon} per query, {args.cached:.0%} hot SQL\n")  # fmt: skip
    print(f"{r['requests']} requests in {r['seconds']} s: **{r['per_second']} req/s**, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms\n")
    print("| outcome | n | p50 ms | p99 ms |\n|---|---|---|---|")
    for k, v in r["by_outcome"].items():
        print(f"| {k} | {v['n']} | {v['p50_ms']} | {v['p99_ms']} |")
    a = r["audit"]
    print(f"\nstatuses: {r['statuses']}")
    print(f"ledger: {a['entries']} charges; by analyst {a['charges_by_analyst']}; "
          f"overspent levels: {a['overspent'] or 'none'}; verify: {a['verify'] or 'clean'}; "
          f"released not charged: {a['released_not_charged']}; charged not received: {a['charged_not_received']}")  # fmt: skip
    for name, lv in a["levels"].items():
        print(f"  {name}: spent {lv['epsilon_spent']:g} of {lv['epsilon_total']:g}")
    print(f"\nchecks: {r['checks']} → {'OK' if r['ok'] else 'FAILED'}")


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
