"""Engine benchmark: private answers against the exact query on DuckDB, PostgreSQL and Spark (issue 11).

The engine is a seam (`gateway.engines.base.Engine`): the same plan runs where the data lives. For each
engine and table size this measures, in one fresh process per (engine, size) so that peak memory and a
time cap are its own:

* **load**: getting the rows into the engine as a source. PostgreSQL: a COPY of the generated Parquet
  into a table (streamed in batches as CSV, then ANALYZE); DuckDB and Spark read the Parquet file in
  place, inside registration, so they have no separate load;
* **bounding**: `Gateway.register`, i.e. the engine's `register` (typing, row identity, each unit's rows
  cut at `max_rows_per_unit`, the bounded form materialised);
* per query, three ways, interleaved after warm-ups (`bench/queries.py`'s method): **DP**
  (`Gateway.query`, the whole path), **exact** (the analyst's SQL on the loaded, unbounded relation,
  run by the same engine through `Engine.execute`: what a user without the gateway runs there) and
  **gateway SQL** (the plan's `main_query`, and `quantile_query` per quantile, run alone: the engine's
  share of the DP time). Medians of `--runs`; ratio = DP / exact, measured in this run;
* peak memory: this process's peak RSS (DuckDB runs inside it), the Spark driver JVM's peak RSS (VmHWM of
  the java child), and for PostgreSQL the server backends serving this process (sampled).

The transactions table is `gateway.demo_data`'s generator; up to 10M rows it is written in one piece
(the same files as `bench/queries.py`), above that in chunks of 5M rows with disjoint customers (each
chunk as the generator makes 5M rows, so rows per customer have the same distribution), appended as
row groups: 100M rows are never in memory at once.

Run: ``.venv/bin/python bench/engines.py [--rows 1M,10M,100M] [--engines duckdb,postgres,spark]
[--runs 3] [--json out.json]``; ``--quick`` for a smoke run (100k rows, one run).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib.util
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _import_queries() -> Any:
    """bench/queries.py, whose data, dataset and timing helpers this benchmark shares (a script, not a package)."""
    name = "dpgate_bench_engines_queries"  # its own name: a test's monkeypatching of queries.py stays there
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name("queries.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve their module through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]


bq = _import_queries()
_progress, _timed, _jsonable, _ms = bq._progress, bq._timed, bq._jsonable, bq._ms
DATASET = bq.DATASET
DEFAULT_OUT = ROOT / "bench" / "results" / "engines.json"
TARGET_RATIO = bq.TARGET_RATIO
MEMORY_LIMIT = 24 * 2**30  # the DuckDB-at-100M check: registered and answered within 24 GiB
ONE_PIECE_MAX = 10_000_000  # up to here the transactions come from write_transactions in one piece
CHUNK_ROWS = 5_000_000


@dataclass(frozen=True)
class Query(bq.Query):
    delta: float = 0.0  # > 0 where the GROUP BY key has no public domain (threshold partition selection)


QUERIES: list[Query] = [
    Query("count", "SELECT COUNT(*) AS n FROM transactions", "scalar"),
    Query("sum", "SELECT SUM(amount) AS total FROM transactions", "scalar"),
    Query("avg", "SELECT AVG(amount) AS mean FROM transactions", "scalar"),
    Query(
        "group_category",
        "SELECT merchant_category, COUNT(*) AS n, SUM(amount) AS spend FROM transactions GROUP BY merchant_category",
        "group",
        keys=1,
    ),
    Query(
        "group_threshold",
        "SELECT FLOOR(distance_km / 100) AS band, COUNT(*) AS n FROM transactions GROUP BY FLOOR(distance_km / 100)",
        "group",
        keys=1,
        delta=1e-6,
    ),
    Query(
        "where_filter",
        "SELECT COUNT(*) AS n, AVG(amount) AS mean FROM transactions WHERE channel = 'online' AND country = 'US'",
        "scalar",
    ),
    Query(
        "group_month",
        "SELECT EXTRACT(MONTH FROM ts) AS month, COUNT(*) AS n FROM transactions GROUP BY EXTRACT(MONTH FROM ts)",
        "group",
        keys=1,
    ),
    Query(
        "fraud_rate",
        "SELECT merchant_category, AVG(CASE WHEN is_fraud THEN 1 ELSE 0 END) AS fraud_rate "
        "FROM transactions GROUP BY merchant_category",
        "group",
        keys=1,
    ),
    Query(
        "join_student",
        "SELECT c.student, COUNT(*) AS n, AVG(t.amount) AS avg_amount FROM transactions t "
        "JOIN card_customers c ON t.customer_id = c.customer_id GROUP BY c.student",
        "group",
        keys=1,
    ),
    Query("median", "SELECT MEDIAN(amount) AS median_amount FROM transactions", "quantile"),
]


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

def _chunked_meta(rows: int, seed: int) -> dict[str, Any]:
    from gateway.demo_data import GENERATOR_VERSION

    return {"table": "transactions", "rows": rows, "seed": seed, "version": GENERATOR_VERSION,
            "chunk_rows": CHUNK_ROWS, "customers": sum(max(1, min(CHUNK_ROWS, rows - s) // 100) for s in range(0, rows, CHUNK_ROWS))}


def _chunked_file_ok(path: Path, rows: int, seed: int) -> bool:
    import pyarrow.parquet as pq

    try:
        meta = json.loads((pq.read_schema(path).metadata or {})[b"dpgate.demo"])
        return pq.read_metadata(path).num_rows == rows and meta == _chunked_meta(rows, seed)
    except (OSError, KeyError, ValueError, TypeError):
        return False


def write_transactions_chunked(path: Path, rows: int, *, seed: int) -> None:
    """`rows` transactions as chunks of `generate_transactions(CHUNK_ROWS)`, each over its own customers
    (ids and transaction ids offset), written as row groups: one chunk in memory at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from gateway.demo_data import generate_transactions

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = None
    customers = 0
    try:
        for k, start in enumerate(range(0, rows, CHUNK_ROWS)):
            n = min(CHUNK_ROWS, rows - start)
            n_cust = max(1, n // 100)
            chunk_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
            t = generate_transactions(n, customers=n_cust, seed=chunk_seed)
            t = t.set_column(0, "transaction_id", pc.add(t["transaction_id"], pa.scalar(start, pa.int64())))
            t = t.set_column(1, "customer_id", pc.add(t["customer_id"], pa.scalar(customers, pa.int64())))
            customers += n_cust
            if writer is None:
                schema = t.schema.with_metadata({b"dpgate.demo": json.dumps(_chunked_meta(rows, seed), sort_keys=True).encode()})
                writer = pq.ParquetWriter(tmp, schema, compression="zstd", compression_level=1)
            writer.write_table(t.replace_schema_metadata(writer.schema.metadata), row_group_size=1_000_000)
            _progress(f"    chunk {k + 1}/{math.ceil(rows / CHUNK_ROWS)} written")
            del t
        assert writer is not None
        writer.close()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)


def _card_customers(data_dir: Path) -> Path:
    """card_customers.parquet as bench/queries.py writes it (ISLR `Default`, 10,000 customers)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gateway.demo_data import load_card_customers

    cc = data_dir / "card_customers.parquet"
    try:
        if pq.read_metadata(cc).num_rows == 10_000:
            return cc
    except (OSError, ValueError):
        pass
    bq._write_parquet_atomic(pa.Table.from_pandas(load_card_customers(), preserve_index=False), cc)
    return cc


def prepare_data(data_dir: Path, rows: int, seed: int) -> dict[str, Any]:
    """The Parquet sources of one size (reused when present and right): bench/queries.py's up to 10M rows."""
    data_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if rows <= ONE_PIECE_MAX:
        info = bq.prepare_data(data_dir, rows, seed)
    else:
        tx = data_dir / f"transactions_{rows}_chunked.parquet"
        info = {"transactions": str(tx), "card_customers": str(_card_customers(data_dir))}
        info["generated"] = not _chunked_file_ok(tx, rows, seed)
        if info["generated"]:
            _progress(f"  generating {rows:,} transactions in chunks of {CHUNK_ROWS:,} -> {tx}")
            write_transactions_chunked(tx, rows, seed=seed)
        info["chunk_rows"] = CHUNK_ROWS
    info["generate_s"] = time.perf_counter() - t0
    info["transactions_bytes"] = Path(info["transactions"]).stat().st_size
    return info


# --------------------------------------------------------------------------------------------
# engines: how each is opened, loaded, measured and cleaned up
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EngineKind:
    name: str
    max_rows: Callable[[argparse.Namespace], int | None]
    open: Callable[[argparse.Namespace, int], Any]
    #: (engine, data, rows, args) -> (sources by table, load seconds or None where read in place)
    load: Callable[[Any, dict[str, Any], int, argparse.Namespace], tuple[dict[str, str], float | None]]
    #: memory measured outside this process: started with the engine, read before it closes
    outside_memory: Callable[[Any], Any]
    cleanup: Callable[[Any, int, argparse.Namespace], None]


def _in_place(engine: Any, data: dict[str, Any], rows: int, args: argparse.Namespace) -> tuple[dict[str, str], float | None]:
    return {"transactions": data["transactions"], "card_customers": data["card_customers"]}, None


def _duckdb_path(args: argparse.Namespace, rows: int) -> Path:
    return Path(args.data_dir) / f"engines_duckdb_{rows}.duckdb"


def _open_duckdb(args: argparse.Namespace, rows: int) -> Any:
    from gateway.engines.duckdb import DuckDBEngine

    path = _duckdb_path(args, rows)
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)
    return DuckDBEngine(path, seed=bq.ENGINE_SEED, threads=args.threads)


def _cleanup_duckdb(engine: Any, rows: int, args: argparse.Namespace) -> None:
    if not args.keep:
        path = _duckdb_path(args, rows)
        for p in (path, path.with_name(path.name + ".wal")):
            p.unlink(missing_ok=True)


def _pg_settings(args: argparse.Namespace) -> Any:
    from gateway.settings import load_settings

    base = load_settings().engines.postgres
    return type(base)(**{**base.model_dump(by_alias=True), "schema": args.pg_schema})


def _open_postgres(args: argparse.Namespace, rows: int) -> Any:
    from gateway.engines.postgres import PostgresEngine

    return PostgresEngine(_pg_settings(args), seed=bq.ENGINE_SEED)


_TX_COLUMNS_PG = (
    "transaction_id BIGINT, customer_id BIGINT, ts TIMESTAMP, amount DOUBLE PRECISION, merchant_category TEXT, "
    "channel TEXT, country TEXT, distance_km DOUBLE PRECISION, is_fraud BOOLEAN"
)


def _load_postgres(engine: Any, data: dict[str, Any], rows: int, args: argparse.Namespace) -> tuple[dict[str, str], float | None]:
    """COPY the Parquet into `<schema>_src.transactions_<rows>` (CSV batches, no pandas), then ANALYZE;
    card_customers (10,000 rows) through the engine's own `load_frame`."""
    import io

    import pandas as pd
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    src_schema = f"{args.pg_schema}_src"
    table = f"{src_schema}.transactions_{rows}"
    t0 = time.perf_counter()
    with psycopg.connect(_pg_settings(args).url, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {src_schema}")
        con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute(f"CREATE TABLE {table} ({_TX_COLUMNS_PG})")
        options = pacsv.WriteOptions(include_header=False)
        with con.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
            for batch in pq.ParquetFile(data["transactions"]).iter_batches(batch_size=250_000):
                buf = io.BytesIO()
                pacsv.write_csv(pa.Table.from_batches([batch]), buf, write_options=options)
                copy.write(buf.getbuffer())
        con.execute(f"ANALYZE {table}")
    load_s = time.perf_counter() - t0
    cc = engine.load_frame(f"bench_card_customers_{rows}", pd.read_parquet(data["card_customers"]))
    return {"transactions": table, "card_customers": cc}, load_s


def _cleanup_postgres(engine: Any, rows: int, args: argparse.Namespace) -> None:
    if args.keep:
        return
    import psycopg

    drop = getattr(engine, "drop_schema", None)
    if drop is not None:
        drop()
    with psycopg.connect(_pg_settings(args).url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {args.pg_schema}_src CASCADE")


def _spark_dir(args: argparse.Namespace, rows: int) -> Path:
    return Path(args.data_dir) / f"engines_spark_{rows}"


def _open_spark(args: argparse.Namespace, rows: int) -> Any:
    from gateway.engines.spark import SparkEngine
    from gateway.settings import load_settings

    work = _spark_dir(args, rows)
    shutil.rmtree(work, ignore_errors=True)
    update: dict[str, Any] = {"warehouse": work / "warehouse"}
    if args.spark_driver_memory:
        update["driver_memory"] = args.spark_driver_memory
    base = load_settings().engines.spark
    return SparkEngine(type(base)(**{**base.model_dump(), **update}), data_dir=work, seed=bq.ENGINE_SEED)


def _cleanup_spark(engine: Any, rows: int, args: argparse.Namespace) -> None:
    if not args.keep:
        shutil.rmtree(_spark_dir(args, rows), ignore_errors=True)


def _cleanup_killed_postgres(args: argparse.Namespace) -> None:
    """After a phase process was stopped at the time cap: its schemas, dropped from outside."""
    import psycopg

    with psycopg.connect(_pg_settings(args).url, autocommit=True) as con:
        for schema in (args.pg_schema, f"{args.pg_schema}_src"):
            con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# --------------------------------------------------------------------------------------------
# memory outside this process (Linux /proc; None where it cannot be read)
# --------------------------------------------------------------------------------------------

def _status_bytes(pid: int, key: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmHWM: peak RSS; RssAnon, RssShmem) in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _descendants(root: int) -> list[tuple[int, str]]:
    """(pid, command name) of every process below `root`."""
    parent: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        parent[int(entry.name)] = (int(stat[stat.rindex(")") + 2:].split()[1]), comm)
    out, frontier = [], {root}
    while frontier:
        below = {pid for pid, (ppid, _) in parent.items() if ppid in frontier}
        out += [(pid, parent[pid][1]) for pid in below]
        frontier = below
    return out


class JavaChildren:
    """The Spark driver JVM that the engine started (a child of this process): its peak RSS (VmHWM)."""

    def read(self) -> dict[str, Any]:
        peaks = [_status_bytes(pid, "VmHWM") for pid, comm in _descendants(os.getpid()) if comm == "java"]
        found = [p for p in peaks if p is not None]
        if not found:
            return {"what": "Spark driver JVM", "peak_rss": None, "note": "no java child process found"}
        return {"what": "Spark driver JVM", "peak_rss": sum(found), "processes": len(found)}

    def stop(self) -> None:
        pass


class PgBackends:
    """The PostgreSQL server processes serving this process: the backends whose client port is one of our
    sockets, and their parallel workers, sampled every `interval` s. Their private memory (RssAnon) is
    summed and the most shared memory one of them touched (RssShmem: shared buffers) added once; a parallel
    worker living less than a sample interval is missed."""

    def __init__(self, url: str, interval: float = 0.25) -> None:
        import threading

        import psycopg

        self._con = psycopg.connect(url, autocommit=True)
        self._own = self._con.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.peak = 0
        self.samples = 0
        self.error: str | None = None
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-memory", daemon=True)
        self._thread.start()

    @staticmethod
    def _our_ports() -> set[int]:
        inodes = set()
        for fd in Path("/proc/self/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = set()
        for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if len(f) > 9 and f[9] in inodes:
                    ports.add(int(f[1].rsplit(":", 1)[1], 16))
        return ports

    def _sample(self) -> None:
        ports = self._our_ports()
        rows = self._con.execute("SELECT pid, leader_pid, client_port FROM pg_stat_activity").fetchall()
        ours = {pid for pid, _, port in rows if port in ports and pid != self._own}
        ours |= {pid for pid, leader, _ in rows if leader in ours}
        anon = [_status_bytes(pid, "RssAnon") or 0 for pid in ours]
        shmem = [_status_bytes(pid, "RssShmem") or 0 for pid in ours]
        self.peak = max(self.peak, sum(anon) + max(shmem, default=0))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._sample()
            except Exception as e:  # the measurement must never break the benchmark
                self.error = f"{type(e).__name__}: {e}"
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._con.close()

    def read(self) -> dict[str, Any]:
        self.stop()
        out: dict[str, Any] = {"what": "PostgreSQL backends serving this process", "peak_rss": self.peak or None,
                               "samples": self.samples}
        if self.error or not self.peak:
            out["note"] = self.error or "no backend of this process was seen"
        return out


class NoOutside:
    def read(self) -> dict[str, Any]:
        return {"what": "none (DuckDB runs inside this process)", "peak_rss": None}

    def stop(self) -> None:
        pass


ENGINES: dict[str, EngineKind] = {
    "duckdb": EngineKind("duckdb", lambda a: None, _open_duckdb, _in_place, lambda a: NoOutside(), _cleanup_duckdb),
    "postgres": EngineKind("postgres", lambda a: a.pg_max_rows, _open_postgres, _load_postgres,
                           lambda a: PgBackends(_pg_settings(a).url), _cleanup_postgres),
    "spark": EngineKind("spark", lambda a: None, _open_spark, _in_place, lambda a: JavaChildren(), _cleanup_spark),
}


# --------------------------------------------------------------------------------------------
# one query on one engine: DP, exact and gateway SQL, interleaved
# --------------------------------------------------------------------------------------------

def exact_select(sql: str, engine: Any) -> Any:
    """The analyst's SQL with its tables pointed at the engine's loaded, unbounded relations (aliases kept
    so that columns resolve): the exact query without the gateway, as a tree the engine's dialect renders."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, dialect="duckdb")
    for table in list(tree.find_all(exp.Table)):
        rel = engine.relation(DATASET, table.name, bounded=False)
        rel.set("alias", exp.TableAlias(this=exp.to_identifier(table.alias or table.name)))
        table.replace(rel)
    return tree


def gateway_selects(gw: Any, query: Query, epsilon: float) -> list[Any]:
    """The SELECTs the gateway sends to the engine for `query`: the main query, then one per quantile."""
    from gateway.sql.release import Mechanisms, main_query, quantile_query

    plan = gw.plan(DATASET, query.sql, epsilon=epsilon, delta=query.delta)
    out = []
    main = main_query(plan)
    if main is not None:
        out.append(main)
    mechs = Mechanisms(plan)
    out += [quantile_query(plan, m, mechs.lattices[m.id]) for m in plan.measures if m.kind == "quantile"]
    return out


def bench_query(gw: Any, query: Query, *, runs: int, warmup: int, epsilon: float) -> dict[str, Any]:
    engine = gw.engine
    exact_tree = exact_select(query.sql, engine)
    gw_trees = gateway_selects(gw, query, epsilon)
    fns: dict[str, Callable[[], Any]] = {
        "dp": lambda: gw.query(DATASET, query.sql, epsilon=epsilon, delta=query.delta),
        "exact": lambda: engine.execute(exact_tree),
        "gateway_sql": lambda: [engine.execute(t) for t in gw_trees],
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    results: dict[str, Any] = {}
    gc.collect()
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    order = list(fns)
    for r in range(runs):
        for name in order[r % len(order):] + order[: r % len(order)]:  # interleaved, each first in turn
            ms, results[name] = _timed(fns[name])
            times[name].append(ms)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "name": query.name,
        "kind": query.kind,
        "in_target": query.in_target,
        "sql": query.sql,
        "delta": query.delta,
        "exact_sql": engine.dialect.render(exact_tree),
        "gateway_sql": [engine.dialect.render(t) for t in gw_trees],
        "exact_ms": med["exact"],
        "gateway_sql_ms": med["gateway_sql"],
        "dp_ms": med["dp"],
        "ratio": med["dp"] / med["exact"] if med["exact"] > 0 else math.inf,
        "engine_ratio": med["gateway_sql"] / med["exact"] if med["exact"] > 0 else math.inf,
        "runs_ms": times,
        "exact_answer": [[_jsonable(_plain(v)) for v in row] for row in results["exact"]],
        "last_noisy_answer": [[_jsonable(v) for v in row] for row in results["dp"].rows],
    }


def _plain(v: Any) -> Any:
    """Engine values as Python scalars (PostgreSQL's NUMERIC comes back as Decimal)."""
    import decimal

    return float(v) if isinstance(v, decimal.Decimal) else v


# --------------------------------------------------------------------------------------------
# one engine at one size, in its own process
# --------------------------------------------------------------------------------------------

def _count(engine: Any, table: str, *, bounded: bool) -> int:
    from sqlglot import exp

    return int(engine.execute(exp.select(exp.Count(this=exp.Star())).from_(engine.relation(DATASET, table, bounded=bounded)))[0][0])


def run_phase(name: str, rows: int, data: dict[str, Any], args: argparse.Namespace, out: Path | None = None) -> dict[str, Any]:
    """Open, load, register and query one engine at one size; `out` is rewritten after every step, so that
    a phase stopped at the time cap still reports what it finished."""
    from gateway.core import Gateway

    kind = ENGINES[name]
    result: dict[str, Any] = {"engine": name, "rows": rows, "stage": "open", "queries": [], "loadavg_before": bq._loadavg()}

    def save() -> None:
        if out is not None:
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(json.dumps(result, default=_jsonable))
            os.replace(tmp, out)

    engine = outside = None
    try:
        save()
        t0 = time.perf_counter()
        engine = kind.open(args, rows)
        result["open_s"] = time.perf_counter() - t0
        outside = kind.outside_memory(args)
        result["stage"] = "load"
        save()
        _progress(f"  [{name} {rows:,}] load")
        sources, result["load_s"] = kind.load(engine, data, rows, args)
        result["sources"] = sources
        result["stage"] = "register"
        save()
        _progress(f"  [{name} {rows:,}] register (bounding)")
        gw = Gateway(engine)
        entry = {**bq.dataset_entry(sources["transactions"], sources["card_customers"]), "engine": name}
        t0 = time.perf_counter()
        gw.register(entry)
        result["register_s"] = time.perf_counter() - t0
        result["transactions"] = {"raw_rows": _count(engine, "transactions", bounded=False),
                                  "bounded_rows": _count(engine, "transactions", bounded=True)}
        for q in QUERIES:
            result["stage"] = f"query {q.name}"
            save()
            _progress(f"  [{name} {rows:,}] {q.name}")
            try:
                result["queries"].append(bench_query(gw, q, runs=args.runs, warmup=args.warmup, epsilon=args.epsilon))
            except Exception as e:  # one query failing must not hide the others
                _progress(f"    failed: {type(e).__name__}: {e}")
                result["queries"].append({"name": q.name, "kind": q.kind, "in_target": q.in_target, "sql": q.sql,
                                          "error": f"{type(e).__name__}: {e}"})
        result["stage"] = "done"
    except (Exception, KeyboardInterrupt, SystemExit) as e:
        result["error"] = f"{type(e).__name__}: {e}"
        _progress(f"  [{name} {rows:,}] failed at {result['stage']}: {result['error']}")
    finally:
        result["peak_rss_python"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
        if outside is not None:
            result["outside_memory"] = outside.read()
        if engine is not None:
            for step, fn in (("close", engine.close), ("cleanup", lambda: kind.cleanup(engine, rows, args))):
                try:
                    fn()
                except Exception as e:  # recorded; the figures measured so far are still written
                    result[f"{step}_error"] = f"{type(e).__name__}: {e}"
        result["loadavg_after"] = bq._loadavg()
        save()
    return result


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum} (the phase time cap)")


def _child(args: argparse.Namespace) -> dict[str, Any]:
    spec = json.loads(Path(args.phase).read_text())
    signal.signal(signal.SIGTERM, _terminate)
    phase_args = argparse.Namespace(**spec["args"])
    return run_phase(spec["engine"], spec["rows"], spec["data"], phase_args, Path(args.phase_out))


def run_isolated(name: str, rows: int, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """`run_phase` in a fresh process (its own peak RSS, its own JVM), stopped at `--phase-timeout`."""
    cap = args.phase_timeout or None
    with tempfile.TemporaryDirectory(prefix="dpgate-bench-engines-") as tmp:
        spec, out = Path(tmp) / "phase.json", Path(tmp) / "result.json"
        spec.write_text(json.dumps({"engine": name, "rows": rows, "data": data, "args": _args_json(args)}))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", str(spec), "--phase-out", str(out)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
        stopped = False
        try:
            rc = proc.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            stopped = True
            proc.send_signal(signal.SIGTERM)  # the phase reads the JVM's memory and writes what it has
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it left in its own process group (a JVM)
        except ProcessLookupError:
            pass
        result = json.loads(out.read_text()) if out.exists() else {"engine": name, "rows": rows, "queries": [], "stage": "start"}
    result["wall_s"] = time.perf_counter() - t0
    if stopped:
        result["error"] = f"stopped at the time cap (--phase-timeout {args.phase_timeout:g} s) during {result.get('stage')}"
        if name == "postgres" and not args.keep:
            _cleanup_killed_postgres(args)
        elif not args.keep:
            shutil.rmtree(_spark_dir(args, rows), ignore_errors=True)
            _cleanup_duckdb(None, rows, args)
    elif rc != 0 and "error" not in result:
        result["error"] = f"the phase process exited with status {rc} during {result.get('stage')}"
    return result


def _args_json(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------

def _same_answer(a: list[list[Any]], b: list[list[Any]], keys: int) -> bool:
    """Two exact answers equal up to float rounding (engines sum in different orders), rows matched on keys."""
    def cells(rows: list[list[Any]]) -> dict[tuple, list[Any]]:
        return {tuple(bq._norm_key(v) for v in r[:keys]): list(r[keys:]) for r in rows}

    ca, cb = cells(a), cells(b)
    if ca.keys() != cb.keys():
        return False
    for key, va in ca.items():
        for x, y in zip(va, cb[key], strict=True):
            fx, fy = bq._num(x), bq._num(y)
            if fx is None or fy is None:
                if (fx is None) != (fy is None) or (fx is None and x != y):
                    return False
            elif not math.isclose(fx, fy, rel_tol=1e-6, abs_tol=1e-6):
                return False
    return True


def _ok(queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [q for q in queries if "error" not in q]


def summarize_phase(phase: dict[str, Any], duckdb_phase: dict[str, Any] | None) -> dict[str, Any]:
    ok = _ok(phase.get("queries", []))
    target = [q for q in ok if q["in_target"]]
    out: dict[str, Any] = {
        "answered": len(ok),
        "queries": len(QUERIES),
        "max_ratio": max((q["ratio"] for q in target), default=None),
        "median_ratio": statistics.median([q["ratio"] for q in target]) if target else None,
        "over_target": [q["name"] for q in target if q["ratio"] > TARGET_RATIO],
        "failed": [q["name"] for q in phase.get("queries", []) if "error" in q],
        "complete": phase.get("stage") == "done" and "error" not in phase,
    }
    out["target_met"] = out["complete"] and not out["failed"] and not out["over_target"] and len(ok) == len(QUERIES)
    if duckdb_phase is not None and phase["engine"] != "duckdb":
        base = {q["name"]: q for q in _ok(duckdb_phase.get("queries", []))}
        keys = {q.name: q.keys for q in QUERIES}
        pairs = [(q, base[q["name"]]) for q in ok if q["name"] in base]
        out["exact_agrees_with_duckdb"] = [q["name"] for q, b in pairs if _same_answer(q["exact_answer"], b["exact_answer"], keys[q["name"]])]
        out["exact_differs_from_duckdb"] = [q["name"] for q, b in pairs if q["name"] not in out["exact_agrees_with_duckdb"]]
        out["exact_vs_duckdb"] = statistics.median([q["exact_ms"] / b["exact_ms"] for q, b in pairs]) if pairs else None
        out["dp_vs_duckdb"] = statistics.median([q["dp_ms"] / b["dp_ms"] for q, b in pairs]) if pairs else None
        if phase.get("register_s") and duckdb_phase.get("register_s"):
            out["register_vs_duckdb"] = phase["register_s"] / duckdb_phase["register_s"]
    return out


def _gib(n: int | None) -> str:
    if not n:
        return "n/a"
    if n < 2**20:
        return f"{n / 2**10:.0f} KiB"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _s(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _x(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def markdown_size(size: dict[str, Any], args: argparse.Namespace) -> str:
    data = size["data"]
    lines = [
        f"### {size['rows']:,} rows",
        "",
        f"Data: `{Path(data['transactions']).name}`, {_gib(data['transactions_bytes'])} of Parquet "
        f"({'generated in ' + _s(data['generate_s']) + ' s' if data.get('generated') else 'reused'}). "
        f"Median of {args.runs} run(s) per way after {args.warmup} warm-up(s), interleaved; ε = {args.epsilon:g} "
        f"({', '.join(f'δ = {q.delta:g} for {q.name}' for q in QUERIES if q.delta) or 'δ = 0'}). "
        "Exact = the analyst's SQL on the loaded, unbounded relation; gateway SQL = the plan's queries alone.",
        "",
        "| engine | query | exact ms | gateway SQL ms | DP ms | DP / exact |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for phase in size["engines"]:
        if phase.get("skipped"):
            lines.append(f"| {phase['engine']} | skipped: {phase['skipped']} | – | – | – | – |")
            continue
        for q in phase.get("queries", []):
            name = q["name"] + (" (quantile, outside target)" if not q["in_target"] else "")
            if "error" in q:
                lines.append(f"| {phase['engine']} | {name} | failed: {q['error'][:100].replace('|', '/')} | – | – | – |")
            else:
                lines.append(f"| {phase['engine']} | {name} | {_ms(q['exact_ms'])} | {_ms(q['gateway_sql_ms'])} "
                             f"| {_ms(q['dp_ms'])} | {q['ratio']:.2f} |")
        if "error" in phase:
            lines.append(f"| {phase['engine']} | stopped: {phase['error'][:160].replace('|', '/')} | – | – | – | – |")
    return "\n".join(lines)


def markdown_summary(report: dict[str, Any]) -> str:
    lines = [
        "### Registration and memory",
        "",
        "| engine | rows | load s | bounding s | rows kept | peak RSS, this process | peak RSS, engine side | phase wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    phases = [p for s in report["sizes"] for p in s["engines"] if not p.get("skipped")]
    for p in phases:
        load = "in place" if p.get("stage") not in ("open", "load") and p.get("load_s") is None else _s(p.get("load_s"))
        kept = p.get("transactions", {}).get("bounded_rows")
        side = p.get("outside_memory") or {}
        side_txt = _gib(side.get("peak_rss")) + (f" ({side['what']})" if side.get("peak_rss") else "")
        if not side.get("peak_rss") and p["engine"] != "duckdb":
            side_txt = "not measured" + (f": {side['note']}" if side.get("note") else "")
        elif p["engine"] == "duckdb":
            side_txt = "inside this process"
        lines.append(f"| {p['engine']} | {p['rows']:,} | {load} | {_s(p.get('register_s'))} | {f'{kept:,}' if kept else '–'} "
                     f"| {_gib(p.get('peak_rss_python'))} | {side_txt} | {_s(p.get('wall_s'))} |")
    versus = [
        "",
        "### Against DuckDB at the same size (medians over the queries both answered)",
        "",
        "| engine | rows | bounding × DuckDB | exact × DuckDB | DP × DuckDB | median DP / exact | exact answers = DuckDB's |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for size in report["sizes"]:
        for p in size["engines"]:
            s = p.get("summary", {})
            if p.get("skipped") or "exact_vs_duckdb" not in s:
                continue
            agree = f"{len(s['exact_agrees_with_duckdb'])}/{len(s['exact_agrees_with_duckdb']) + len(s['exact_differs_from_duckdb'])}"
            if s["exact_differs_from_duckdb"]:
                agree += f" (differ: {', '.join(s['exact_differs_from_duckdb'])})"
            versus.append(f"| {p['engine']} | {p['rows']:,} | {_x(s.get('register_vs_duckdb'))} | {_x(s['exact_vs_duckdb'])} "
                          f"| {_x(s['dp_vs_duckdb'])} | {_x(s['median_ratio'])} | {agree} |")
    if len(versus) > 5:
        lines += versus
    lines += ["", "### Verdicts", ""] + [f"- {v}" for v in report["verdicts"]]
    return "\n".join(lines)


def verdicts(report: dict[str, Any]) -> list[str]:
    out = []
    by_engine: dict[str, list[dict[str, Any]]] = {}
    for size in report["sizes"]:
        for p in size["engines"]:
            if not p.get("skipped"):
                by_engine.setdefault(p["engine"], []).append(p)
    for name, phases in by_engine.items():
        parts = []
        for p in phases:
            s = p["summary"]
            ratios = {x["name"]: x["ratio"] for x in _ok(p["queries"])}
            misses = [f"{q} {ratios[q]:.2f}×" for q in s["over_target"]] + [f"{q} failed" for q in s["failed"]]
            if not s["complete"]:
                misses.append(f"incomplete: {p.get('error', p.get('stage'))}")
            parts.append(f"at {p['rows']:,} rows " + ("yes" if not misses else "no (" + ", ".join(misses) + ")")
                         + (f", max {s['max_ratio']:.2f}×" if s["max_ratio"] is not None and not misses else ""))
        line = f"**{name}**: DP / exact <= {TARGET_RATIO} for every non-quantile query: " + "; ".join(parts)
        if name == "duckdb":
            big = [p for p in phases if p["rows"] >= 100_000_000]
            if big:
                p = big[-1]
                peak = p.get("peak_rss_python") or 0
                answered = p["summary"]["answered"]
                fits = p["summary"]["complete"] and answered == len(QUERIES) and 0 < peak <= MEMORY_LIMIT
                line += (f". At {p['rows']:,} rows: registered in {_s(p.get('register_s'))} s, answered {answered}/{len(QUERIES)}, "
                         f"peak RSS {_gib(peak)}: within 24 GiB: {'yes' if fits else 'no'}")
            else:
                line += ". 100M rows not run (--rows 100M)"
        out.append(line)
    return out


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def _rows(text: str) -> list[int]:
    out = []
    for part in text.replace(" ", "").split(","):
        mult = {"k": 1_000, "m": 1_000_000}.get(part[-1:].lower(), 1)
        try:
            n = int(float(part[:-1] if mult > 1 else part) * mult)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a row count: {part!r} (e.g. 20000, 100k, 1M)") from None
        if n < 1:
            raise argparse.ArgumentTypeError("row counts must be positive")
        out.append(n)
    return out


def _engines(text: str) -> list[str]:
    names = [n for n in text.replace(" ", "").split(",") if n]
    bad = [n for n in names if n not in ENGINES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown engine(s) {bad}; choose from {', '.join(ENGINES)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/engines.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=_rows, default=None, help="table sizes, e.g. 1M,10M,100M (default 1M; --quick: 100k)")
    p.add_argument("--engines", type=_engines, default=list(ENGINES), help="comma-separated: duckdb,postgres,spark (default all)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per query and way (default 3; --quick: 1)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per query and way first (default 1)")
    p.add_argument("--epsilon", type=float, default=1.0, help="ε of each DP query")
    p.add_argument("--json", type=Path, default=DEFAULT_OUT, help=f"raw figures (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--data-dir", type=Path, default=bq.DEFAULT_DATA_DIR, help="generated data and engine files (default data/bench/)")
    p.add_argument("--threads", type=int, default=None, help="DuckDB threads (default DuckDB's own, all cores)")
    p.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    p.add_argument("--pg-schema", default="dpgate_bench", help="PostgreSQL schema of the engine (sources in <schema>_src)")
    p.add_argument("--pg-max-rows", type=int, default=10_000_000, help="larger sizes skip PostgreSQL (default 10M)")
    p.add_argument("--spark-driver-memory", default=None, help="Spark driver memory (default the settings', 2g)")
    p.add_argument("--phase-timeout", type=float, default=0, help="stop one engine at one size after this many seconds (0: no cap)")
    p.add_argument("--keep", action="store_true", help="keep engine files, Spark warehouses and PostgreSQL schemas")
    p.add_argument("--quick", action="store_true", help="smoke run: 100k rows, one run")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--phase-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rows is None:
        args.rows = [100_000] if args.quick else [1_000_000]
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be at least 1 and --warmup at least 0")
    return args


def _versions() -> dict[str, Any]:
    import importlib.metadata

    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    for dist in ("duckdb", "pyspark", "psycopg", "sqlglot"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.phase:
        return _child(args)
    report: dict[str, Any] = {
        "benchmark": "engines",
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "args": _args_json(args),
        "environment": _versions(),
        "target": {"ratio": TARGET_RATIO, "excludes": "quantile queries", "duckdb_100m_memory": MEMORY_LIMIT},
        "queries": [{"name": q.name, "sql": q.sql, "kind": q.kind, "delta": q.delta} for q in QUERIES],
        "sizes": [],
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    for rows in args.rows:
        _progress(f"== {rows:,} rows")
        data = prepare_data(Path(args.data_dir), rows, args.seed)
        size: dict[str, Any] = {"rows": rows, "data": data, "engines": []}
        report["sizes"].append(size)
        for name in args.engines:
            cap = ENGINES[name].max_rows(args)
            if cap is not None and rows > cap:
                size["engines"].append({"engine": name, "rows": rows, "skipped": f"{name} runs up to {cap:,} rows (--pg-max-rows)"})
                continue
            size["engines"].append(run_isolated(name, rows, data, args))
            out.write_text(json.dumps(report, indent=2, default=_jsonable))  # a long run killed keeps what it finished
        duck = next((p for p in size["engines"] if p["engine"] == "duckdb" and not p.get("skipped")), None)
        for p in size["engines"]:
            if not p.get("skipped"):
                p["summary"] = summarize_phase(p, duck)
        print(markdown_size(size, args), flush=True)
        print(flush=True)
    report["verdicts"] = verdicts(report)
    report["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    print(markdown_summary(report), flush=True)
    out.write_text(json.dumps(report, indent=2, default=_jsonable))
    _progress(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
