"""Scale: the gateway as several processes on one PostgreSQL ledger, training off the query server, and
where an uncached query's time goes beyond the engine.

    .venv/bin/python bench/scale.py                       # all three parts (~10 min on 2 cores)
    .venv/bin/python bench/scale.py --parts replicas --replicas 1 2 4 --requests 400 --clients 16
    .venv/bin/python bench/scale.py --parts training      # query p99 while a DP-SGD job runs
    .venv/bin/python bench/scale.py --parts overhead --rows 1000000
    .venv/bin/python bench/scale.py --quick               # smoke run (small, seconds)

What it measures, each figure against a baseline measured in the same run:
1. replicas: `dpgate serve --workers N` (N = 1: waitress, one process; N > 1: gunicorn, N pre-forked
   processes) on a fresh PostgreSQL ledger, `--clients` concurrent clients over loopback: requests/s and
   p50/p99 of uncached queries (a SQL text never seen: plan, engine, noise, charge) and cached ones (the
   same texts again: the free-repeat store), ratio of throughput against 1 process;
2. training: the query p99 of `--clients` clients with no job running (baseline), while a DP-SGD job runs
   inside the gateway (no `job_queue`), and while it runs on a `dpgate worker` (job_queue on Redis);
3. overhead: at `--rows` rows, the median time of the exact engine query, of `Gateway.query` (plan,
   engine, noise: no ledger), of the whole app in-process (auth, rate limits, ledger, no socket) and over
   HTTP, with the in-process request's time split by part (cProfile, cumulative per part).

On a 2-core machine N processes share 2 cores with the clients and PostgreSQL: more than 2 replicas
cannot add throughput here; the figures say what the process model costs and keeps (exact budgets),
not what more cores would give. Traffic goes to 127.0.0.1 only; every loop is bounded in count.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gateway.client import Client  # noqa: E402
from tests.api.conftest import drop_pg_database, fresh_pg_database  # noqa: E402

ADMIN_KEY = "dpg_scale_" + "s" * 43
SQL = "SELECT cat, COUNT(*) AS n, AVG(amount) AS a FROM tx WHERE amount > {} GROUP BY cat"


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q)) if xs else float("nan")


def timed(fn: Any, n: int, concurrency: int) -> dict[str, float]:
    lat: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t = time.perf_counter()
        fn(i)
        with lock:
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    wall = time.perf_counter() - start
    return {"n": n, "per_second": n / wall, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}


def write_table(path: Path, rows: int, *, label: bool = False) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"cid": rng.integers(0, max(rows // 10, 1), rows), "amount": rng.exponential(100, rows).round(2),
                          "cat": rng.choice(["a", "b", "c", "d"], rows)})  # fmt: skip
    if label:
        frame["balance"] = rng.uniform(0, 5000, rows).round(2)
        frame["late"] = (frame["balance"] / 5000 + rng.normal(0, 0.3, rows)) > 0.7
    frame.to_parquet(path)
    return path


def dataset(source: Path, *, label: bool = False) -> dict[str, Any]:
    columns: dict[str, Any] = {"cid": {"type": "id"}, "amount": {"type": "float", "lower": 0, "upper": 1000},
                               "cat": {"type": "category", "categories": ["a", "b", "c", "d"]}}  # fmt: skip
    if label:
        columns |= {"balance": {"type": "float", "lower": 0, "upper": 5000}, "late": {"type": "bool"}}
    return {"name": "shop", "privacy_unit": "cid", "budget": {"epsilon": 1e6, "delta": 1e-3},
            "tables": {"tx": {"source": str(source), "max_rows_per_unit": 20, "columns": columns}}}  # fmt: skip


class Gateway:
    """`dpgate serve` (with `workers` processes) or `dpgate worker`, as a subprocess on loopback."""

    def __init__(self, data_dir: Path, ledger_url: str, *, workers: int = 1, env: dict[str, str] | None = None) -> None:
        from tests.api.test_server import _free_port

        self.data_dir, self.ledger_url, self.workers = data_dir, ledger_url, workers
        self.port = _free_port()
        self.env = {**os.environ, "DPGATE_DATA_DIR": str(data_dir), "DPGATE_ADMIN_KEY": ADMIN_KEY, "DPGATE_LEDGER_URL": ledger_url,
                    "DPGATE_DEMO__ENABLED": "false", "DPGATE_THREADS": "16", "DPGATE_RATE_LIMIT_PER_ANALYST": "",
                    "DPGATE_RATE_LIMIT_PER_ORGANISATION": "", **(env or {})}  # fmt: skip
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        with open(self.data_dir / f"{args[0]}-{len(self.procs)}.log", "ab") as log:  # the child keeps its own handle
            proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=self.env, stdout=log, stderr=log,
                                    start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def start(self) -> Gateway:
        proc = self._spawn("serve", "--port", str(self.port), "--workers", str(self.workers))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"dpgate serve exited {proc.returncode}")
            try:
                Client(self.url).request("GET", "/healthz")
                return self
            except OSError:
                time.sleep(0.3)
        raise TimeoutError("dpgate serve did not start")

    def start_worker(self) -> None:
        self._spawn("worker")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _analyst(admin: Client, url: str) -> Client:
    name = f"scale-{uuid.uuid4().hex[:6]}"
    key = admin.create_analyst(name)["key"]
    admin.set_budget(name, "shop", epsilon=1000, delta=1e-4)
    return Client(url, key)


def replicas(counts: list[int], rows: int, n: int, clients: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for count in counts:
        url = fresh_pg_database()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                data = Path(tmp)
                srv = Gateway(data, url, workers=count).start()
                try:
                    admin = Client(srv.url, ADMIN_KEY)
                    admin.register_dataset(dataset(write_table(data / "tx.parquet", rows)))
                    analyst = _analyst(admin, srv.url)
                    for i in range(4 * count):  # every process warm
                        analyst.query("shop", SQL.format(-1 - i), epsilon=0.01)
                    uncached = timed(lambda i: analyst.query("shop", SQL.format(i), epsilon=0.01), n, clients)
                    cached = timed(lambda i: analyst.query("shop", SQL.format(i), epsilon=0.01), n, clients)
                    spent = sum(float(b["epsilon_spent"]) for b in analyst.budget())
                    out[str(count)] = {"uncached": uncached, "cached": cached, "epsilon_spent": spent,
                                       "epsilon_expected": round(0.01 * (n + 4 * count), 9)}  # fmt: skip
                finally:
                    srv.stop()
        finally:
            drop_pg_database(url)
    return out


def _job(analyst: Client, epochs: float) -> str:
    job = analyst.train({"dataset": "shop", "table": "tx", "label": "late", "features": ["amount", "balance", "cat"], "method": "dpsgd",
                         "epsilon": 3, "delta": 1e-5, "params": {"epochs": epochs, "batch_size": 256}})  # fmt: skip
    return str(job["job_id"])


def training(rows: int, n: int, clients: int, epochs: float, redis_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("in-process", "worker"):
        url = fresh_pg_database()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                data = Path(tmp)
                env = {"DPGATE_JOB_QUEUE": redis_url} if mode == "worker" else {}
                srv = Gateway(data, url, env=env).start()
                try:
                    if mode == "worker":
                        srv.start_worker()
                    admin = Client(srv.url, ADMIN_KEY)
                    admin.register_dataset(dataset(write_table(data / "tx.parquet", rows, label=True), label=True))
                    analyst = _analyst(admin, srv.url)
                    analyst.query("shop", SQL.format(-1), epsilon=0.01)
                    if mode == "in-process":
                        out["no job"] = timed(lambda i: analyst.query("shop", SQL.format(10_000 + i), epsilon=0.01), n, clients)
                    job_id = _job(analyst, epochs)
                    deadline = time.monotonic() + 120
                    while analyst.job(job_id)["status"] != "running" and time.monotonic() < deadline:
                        time.sleep(0.1)
                    during = timed(lambda i: analyst.query("shop", SQL.format(20_000 + i), epsilon=0.01), n, clients)
                    state = analyst.job(job_id)
                    during["job_status_after"] = state["status"]
                    out[mode] = during
                    while analyst.job(job_id)["status"] in ("queued", "running") and time.monotonic() < deadline + 600:
                        time.sleep(0.5)
                    out[mode]["job_final"] = analyst.job(job_id)["status"]
                finally:
                    srv.stop()
        finally:
            drop_pg_database(url)
    return out


PARTS = {  # a part of an in-process request -> the functions whose cumulative time is that part
    "auth (key hash + lookup)": ("_principals.py", "authenticate"),
    "rate limits": ("_extension.py", "_check_request_limit"),
    "free-repeat lookup": ("ledger.py", "cached"),
    "budget precheck": ("ledger.py", "check_room"),
    "planning": ("core.py", "plan"),
    "engine + noise (release)": ("release.py", "release"),
    "  of which timing padding (sleep)": ("~", "<built-in method time.sleep>"),
    "ledger charge (one transaction, fsync)": ("ledger.py", "charge"),
}


def overhead(rows: int, n: int) -> dict[str, Any]:
    from gateway.core import Gateway as Core
    from gateway.engines.duckdb import DuckDBEngine
    from tests.api.conftest import Api, make_app

    rng = np.random.default_rng(0)
    engine = DuckDBEngine(None, seed="scale")
    engine.load_frame("raw_tx", pd.DataFrame({"cid": rng.integers(0, max(rows // 10, 1), rows), "amount": rng.exponential(100, rows).round(2),
                                              "cat": rng.choice(["a", "b", "c", "d"], rows)}))  # fmt: skip
    core = Core(engine)
    meta = dataset(Path("raw_tx"))
    meta["tables"]["tx"]["source"] = "raw_tx"
    meta["name"] = "bank"
    core.register(meta)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        api = Api(make_app(Path(tmp), f"sqlite:///{tmp}/ledger.db", gateway=core))
        ann = api.analyst("ann", epsilon=1000)
        for i in range(3):
            api.query(ann, SQL.format(-1 - i), epsilon=0.01)

        def exact(i: int) -> None:
            engine._con.execute("SELECT cat, COUNT(*), AVG(amount) FROM src__bank__tx WHERE amount > ? GROUP BY cat", [i]).fetchall()

        def planned(i: int) -> None:
            core.query("bank", SQL.format(1_000 + i), epsilon=0.01)

        def in_process(i: int) -> None:
            r = api.query(ann, SQL.format(2_000 + i), epsilon=0.01)
            assert r.status_code == 200, r.json

        for name, fn in (("exact engine query", exact), ("Gateway.query (plan, engine, noise)", planned), ("app in-process (no socket)", in_process)):
            times = []
            for i in range(n):
                t = time.perf_counter()
                fn(i)
                times.append(time.perf_counter() - t)
            out[name] = float(np.median(times) * 1000)
        profile = cProfile.Profile()
        profile.enable()
        for i in range(n):
            in_process(5_000 + i)
        profile.disable()
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        split: dict[str, float] = {}
        for part, (file, func) in PARTS.items():
            split[part] = sum(v[3] for (f, _line, fn), v in stats.items() if fn == func and f.endswith(file)) / n * 1000
        out["split_ms"] = split
    with tempfile.TemporaryDirectory() as tmp:  # over HTTP: one process, the SQLite ledger, sequential requests
        data = Path(tmp)
        srv = Gateway(data, f"sqlite:///{data}/ledger.db").start()
        try:
            admin = Client(srv.url, ADMIN_KEY)
            admin.register_dataset(dataset(write_table(data / "tx.parquet", rows)))
            analyst = _analyst(admin, srv.url)
            for i in range(3):
                analyst.query("shop", SQL.format(-1 - i), epsilon=0.01)
            out["HTTP (dpgate serve, one client)"] = timed(lambda i: analyst.query("shop", SQL.format(3_000 + i), epsilon=0.01), n, 1)["p50_ms"]
            out["HTTP GET /healthz"] = timed(lambda i: Client(srv.url).request("GET", "/healthz"), n, 1)["p50_ms"]
        finally:
            srv.stop()
    return out


def report(results: dict[str, Any]) -> None:
    if "replicas" in results:
        r = results["replicas"]
        base = r[min(r, key=int)]
        print("\n## Replicas on one PostgreSQL ledger (ratio: requests/s against the first row)\n")
        print("| processes · kind | req/s | p50 ms | p99 ms | ratio | ε spent = expected |\n|---|---|---|---|---|---|")
        for count, v in r.items():
            for kind in ("uncached", "cached"):
                x = v[kind]
                ok = "yes" if abs(v["epsilon_spent"] - v["epsilon_expected"]) < 1e-6 else f"NO ({v['epsilon_spent']} vs {v['epsilon_expected']})"
                print(f"| {count} · {kind} | {x['per_second']:,.1f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | "
                      f"{x['per_second'] / base[kind]['per_second']:.2f}× | {ok} |")  # fmt: skip
    if "training" in results:
        t = results["training"]
        base = t.get("no job")
        print("\n## Query latency while a DP-SGD job runs (ratio: p99 against no job)\n")
        print("| training | req/s | p50 ms | p99 ms | p99 ratio | job |\n|---|---|---|---|---|---|")
        for mode, x in t.items():
            ratio = f"{x['p99_ms'] / base['p99_ms']:.2f}×" if base else ""
            print(f"| {mode} | {x['per_second']:,.1f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {ratio} | "
                  f"{x.get('job_status_after', '')} → {x.get('job_final', '')} |")  # fmt: skip
    if "overhead" in results:
        o = results["overhead"]
        base = o["exact engine query"]
        print("\n## Where an uncached query's time goes (median ms; ratio against the exact engine query)\n")
        print("| path | ms | ratio |\n|---|---|---|")
        for k, v in o.items():
            if k != "split_ms":
                print(f"| {k} | {v:.1f} | {v / base:.2f}× |")
        print("\n| part of an in-process request (cProfile, mean) | ms |\n|---|---|")
        for k, v in o["split_ms"].items():
            print(f"| {k} | {v:.2f} |")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["replicas", "training", "overhead"], choices=["replicas", "training", "overhead"])
    ap.add_argument("--replicas", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the overhead part's table")
    ap.add_argument("--replica-rows", type=int, default=100_000)
    ap.add_argument("--epochs", type=float, default=40.0, help="the DP-SGD job's epochs (long enough to outlast the queries)")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="the job queue of the worker run")
    ap.add_argument("--quick", action="store_true", help="a smoke run: small tables, few requests")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.clients, args.rows, args.replica_rows, args.epochs = 24, 4, 20_000, 5_000, 5.0
        args.replicas = [r for r in args.replicas if r <= 2] or [1]
    results: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}}
    if "replicas" in args.parts:
        results["replicas"] = replicas(args.replicas, args.replica_rows, args.requests, args.clients)
    if "training" in args.parts:
        results["training"] = training(args.replica_rows, args.requests, args.clients, args.epochs, args.redis)
    if "overhead" in args.parts:
        results["overhead"] = overhead(args.rows, max(10, args.requests // 10))
    report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
