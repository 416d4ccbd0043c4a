"""Query benchmark: latency of private answers against the exact query, and their error at ε.

For each table size it generates the synthetic card transactions (``gateway.demo_data``), registers the
``cards`` dataset in a fresh DuckDB engine file (load + bounding, timed), and runs a set of typical
analyst queries three ways, interleaved, after one warm-up each:

* **DP**: ``Gateway.query("cards", sql, epsilon=ε)``, the full path (parse, plan, mechanisms, engine,
  noise, post-processing);
* **exact**: the same SQL with its table names pointed at the raw loaded relations
  (``src__cards__<table>``), run on the same DuckDB connection: what a user without the gateway runs;
* **gateway SQL**: the SQL the gateway generates for the engine (``main_query`` / ``quantile_query``),
  run alone through the same connection: the engine's share of the DP time.

Medians over ``--runs`` runs. Ratio = DP / exact. Relative error per DP run: the median over numeric
answer cells of ``|noisy - exact| / max(|exact|, 1)`` (exact = the raw data, so bounding bias is
included); top-k queries report whether the exact top-k set was returned; quantiles the relative
error of the value. Quantile queries are reported but outside the ratio target (DESIGN.md §1:
ratio <= 1.5 at 10M rows).

Run: ``.venv/bin/python bench/queries.py [--rows 1000000 10000000] [--runs 5] [--epsilon 1.0]
[--out bench/results/queries.json]`` or ``dpgate bench queries ...``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT / "data" / "bench"
DEFAULT_OUT = ROOT / "bench" / "results" / "queries.json"
DATASET = "cards"
TARGET_RATIO = 1.5
TARGET_ROWS = 10_000_000
ENGINE_SEED = "dpgate-bench-bounding-key"  # a fixed key: the bench needs reproducible bounding, not secrecy


@dataclass(frozen=True)
class Query:
    name: str
    sql: str
    kind: str  # scalar | group | topk | quantile
    keys: int = 0  # leading key columns of the answer (group queries)

    @property
    def in_target(self) -> bool:
        return self.kind != "quantile"


QUERIES: list[Query] = [
    Query("count_filter", "SELECT COUNT(*) AS n FROM transactions WHERE amount > 100 AND channel <> 'atm'", "scalar"),
    Query(
        "group_count_sum",
        "SELECT merchant_category, COUNT(*) AS n, SUM(amount) AS spend FROM transactions GROUP BY merchant_category",
        "group",
        keys=1,
    ),
    Query("sum_avg", "SELECT SUM(amount) AS total, AVG(amount) AS mean FROM transactions", "scalar"),
    Query(
        "avg_where",
        "SELECT AVG(amount) AS mean FROM transactions WHERE channel = 'online' AND country = 'US'",
        "scalar",
    ),
    Query(
        "group_hour",
        "SELECT EXTRACT(hour FROM ts) AS hour, COUNT(*) AS n FROM transactions GROUP BY EXTRACT(hour FROM ts)",
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
    Query("count_distinct", "SELECT COUNT(DISTINCT customer_id) AS customers FROM transactions", "scalar"),
    Query(
        "join_student",
        "SELECT c.student, COUNT(*) AS n, AVG(t.amount) AS avg_amount FROM transactions t "
        "JOIN card_customers c ON t.customer_id = c.customer_id GROUP BY c.student",
        "group",
        keys=1,
    ),
    Query(
        "top3_category",
        "SELECT merchant_category FROM transactions GROUP BY merchant_category ORDER BY COUNT(*) DESC LIMIT 3",
        "topk",
    ),
    Query("median", "SELECT MEDIAN(amount) AS median_amount FROM transactions", "quantile"),
    Query("p90", "SELECT PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY amount) AS p90 FROM transactions", "quantile"),
]


# --------------------------------------------------------------------------------------------
# data and engine
# --------------------------------------------------------------------------------------------

def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _transactions_file_ok(path: Path, rows: int, seed: int) -> bool:
    """True if `path` is a transactions file written by demo_data for this size, seed and generator."""
    import pyarrow.parquet as pq

    from gateway.demo_data import GENERATOR_VERSION

    try:
        md = pq.read_schema(path).metadata or {}
        meta = json.loads(md[b"dpgate.demo"])
        return (
            pq.read_metadata(path).num_rows == rows
            and meta.get("table") == "transactions"
            and meta.get("rows") == rows
            and meta.get("seed") == seed
            and meta.get("version") == GENERATOR_VERSION
            and meta.get("customers") == max(10_000, rows // 100)
        )
    except (OSError, KeyError, ValueError, TypeError):
        return False


def _write_parquet_atomic(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def prepare_data(data_dir: Path, rows: int, seed: int) -> dict[str, Any]:
    """The Parquet sources for one size (generated once, reused when present and right)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gateway.demo_data import load_card_customers, write_transactions

    data_dir.mkdir(parents=True, exist_ok=True)
    tx = data_dir / f"transactions_{rows}.parquet"
    cc = data_dir / "card_customers.parquet"
    info: dict[str, Any] = {"transactions": str(tx), "card_customers": str(cc)}
    t0 = time.perf_counter()
    if _transactions_file_ok(tx, rows, seed):
        info["generated"] = False
    else:
        _progress(f"  generating {rows:,} transactions -> {tx}")
        write_transactions(tx, rows, seed=seed)
        info["generated"] = True
    info["generate_s"] = time.perf_counter() - t0
    ok = False
    if cc.exists():
        try:
            ok = pq.read_metadata(cc).num_rows == 10_000
        except (OSError, ValueError):
            ok = False
    if not ok:
        df = load_card_customers()
        _write_parquet_atomic(pa.Table.from_pandas(df, preserve_index=False), cc)
    return info


def dataset_entry(tx: str, cc: str) -> dict[str, Any]:
    from gateway.demo_data import (
        TRANSACTIONS_MAX_ROWS_PER_UNIT,
        card_customers_columns,
        transactions_columns,
    )

    return {
        "name": DATASET,
        "privacy_unit": "customer_id",
        "budget": {"epsilon": 10.0, "delta": 1e-5},
        "tables": {
            "card_customers": {
                "source": cc,
                "max_rows_per_unit": 1,
                "public": False,
                "columns": card_customers_columns(),
            },
            "transactions": {
                "source": tx,
                "max_rows_per_unit": TRANSACTIONS_MAX_ROWS_PER_UNIT,
                "public": False,
                "columns": transactions_columns(),
            },
        },
    }


def open_gateway(data_dir: Path, rows: int, data: dict[str, Any], threads: int | None) -> tuple[Any, dict[str, Any]]:
    """A fresh engine file for this size with `cards` registered; registration (load + bounding) timed."""
    from gateway.core import Gateway
    from gateway.engines.duckdb import DuckDBEngine

    path = data_dir / f"engine_{rows}.duckdb"
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)
    engine = DuckDBEngine(path, seed=ENGINE_SEED, threads=threads)
    gw = Gateway(engine)
    _progress(f"  registering {DATASET} (load + bounding) in {path}")
    t0 = time.perf_counter()
    gw.register(dataset_entry(data["transactions"], data["card_customers"]))
    register_s = time.perf_counter() - t0
    con = engine._con
    info: dict[str, Any] = {"engine": str(path), "register_s": register_s}
    info["threads"] = con.execute("SELECT current_setting('threads')").fetchone()[0]
    for table in ("transactions", "card_customers"):
        src = engine.relation_name(DATASET, table, bounded=False)
        bnd = engine.relation_name(DATASET, table, bounded=True)
        kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?", [bnd]).fetchone()
        info[table] = {
            "raw_rows": con.execute(f'SELECT count(*) FROM "{src}"').fetchone()[0],
            "bounded_rows": con.execute(f'SELECT count(*) FROM "{bnd}"').fetchone()[0],
            "bounded_form": "view" if kind and "VIEW" in str(kind[0]).upper() else "table",
        }
    return gw, info


# --------------------------------------------------------------------------------------------
# the three ways of running a query
# --------------------------------------------------------------------------------------------

def exact_sql(sql: str, engine: Any, *, bounded: bool = False) -> str:
    """`sql` with its tables pointed at the raw loaded relations (aliases kept so columns resolve).

    With `bounded`, at the bounded relations instead (the rows the gateway reads, before clamping and
    noise): comparing the DP answer with that answer separates the noise from the bias of bounding."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, dialect="duckdb")
    for table in tree.find_all(exp.Table):
        name = table.name
        if not table.alias:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(name)))
        table.set("this", exp.to_identifier(engine.relation_name(DATASET, name, bounded=bounded), quoted=True))
    return tree.sql(dialect="duckdb")


def gateway_sql(gw: Any, sql: str, epsilon: float) -> list[str]:
    """The SQL statements the gateway sends to the engine for `sql` (main query, then one per quantile)."""
    from gateway.sql.release import Mechanisms, main_query, quantile_query

    plan = gw.plan(DATASET, sql, epsilon=epsilon)
    out = []
    q = main_query(plan)
    if q is not None:
        out.append(gw.engine.dialect.render(q))
    mechs = Mechanisms(plan)
    for m in plan.measures:
        if m.kind == "quantile":
            out.append(gw.engine.dialect.render(quantile_query(plan, m, mechs.lattices[m.id])))
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1000.0, result


# --------------------------------------------------------------------------------------------
# error of an answer
# --------------------------------------------------------------------------------------------

def _norm_key(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        f = float(v)
        return int(f) if math.isfinite(f) and f.is_integer() else f
    return str(v)


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def answer_error(query: Query, noisy_rows: list[list[Any]], exact_rows: list[tuple]) -> dict[str, Any]:
    """How far one noisy answer is from the exact one (see the module docstring)."""
    if query.kind == "topk":
        want = {_norm_key(r[0]) for r in exact_rows}
        got = {_norm_key(r[0]) for r in noisy_rows}
        return {"match": want == got, "rel_error": None, "cells": len(want), "missing": 0}
    k = query.keys
    exact = {tuple(_norm_key(v) for v in r[:k]): r[k:] for r in exact_rows}
    noisy = {tuple(_norm_key(v) for v in r[:k]): r[k:] for r in noisy_rows}
    errors = []
    missing = 0
    for key, exact_vals in exact.items():
        got = noisy.get(key)
        for i, ev in enumerate(exact_vals):
            e = _num(ev)
            if e is None:
                continue
            n = _num(got[i]) if got is not None and i < len(got) else None
            if n is None:
                missing += 1
                continue
            errors.append(abs(n - e) / max(abs(e), 1.0))
    return {
        "rel_error": statistics.median(errors) if errors else None,
        "max_rel_error": max(errors) if errors else None,
        "cells": len(errors),
        "missing": missing,
    }


# --------------------------------------------------------------------------------------------
# one query, one size
# --------------------------------------------------------------------------------------------

def bench_query(gw: Any, query: Query, runs: int, epsilon: float) -> dict[str, Any]:
    con = gw.engine._con
    ex_sql = exact_sql(query.sql, gw.engine)
    gw_sqls = gateway_sql(gw, query.sql, epsilon)

    def dp() -> Any:
        return gw.query(DATASET, query.sql, epsilon=epsilon)

    def exact() -> Any:
        return con.execute(ex_sql).fetchall()

    def engine_only() -> Any:
        return [con.execute(s).fetchall() for s in gw_sqls]

    def plan() -> Any:
        return gw.plan(DATASET, query.sql, epsilon=epsilon)

    fns: dict[str, Callable[[], Any]] = {"dp": dp, "exact": exact, "gateway_sql": engine_only, "plan": plan}
    times: dict[str, list[float]] = {k: [] for k in fns}
    answers = []
    exact_rows: list[tuple] = []
    gc.collect()
    for name, fn in fns.items():  # warm-up, not counted
        fn()
    order = list(fns)
    for r in range(runs):
        rot = order[r % len(order):] + order[: r % len(order)]  # interleaved, each first in turn
        for name in rot:
            ms, result = _timed(fns[name])
            times[name].append(ms)
            if name == "dp":
                answers.append(result)
            elif name == "exact":
                exact_rows = result
    med = {k: statistics.median(v) for k, v in times.items()}
    errs = [answer_error(query, a.rows, exact_rows) for a in answers]
    bnd_sql = exact_sql(query.sql, gw.engine, bounded=True)
    bounded_rows = con.execute(bnd_sql).fetchall()  # untimed
    errs_bounded = [answer_error(query, a.rows, bounded_rows) for a in answers]
    row: dict[str, Any] = {
        "name": query.name,
        "kind": query.kind,
        "in_target": query.in_target,
        "sql": query.sql,
        "exact_sql": ex_sql,
        "gateway_sql": gw_sqls,
        "exact_ms": med["exact"],
        "dp_ms": med["dp"],
        "gateway_sql_ms": med["gateway_sql"],
        "plan_ms": med["plan"],
        "ratio": med["dp"] / med["exact"] if med["exact"] > 0 else math.inf,
        "engine_ratio": med["gateway_sql"] / med["exact"] if med["exact"] > 0 else math.inf,
        "runs_ms": times,
        "exact_answer": [[_jsonable(v) for v in r] for r in exact_rows],
        "last_noisy_answer": [[_jsonable(v) for v in r] for r in answers[-1].rows] if answers else [],
        "errors": errs,
        "bounded_sql": bnd_sql,
        "bounded_answer": [[_jsonable(v) for v in r] for r in bounded_rows],
        "errors_vs_bounded": errs_bounded,
    }
    if query.kind == "topk":
        row["topk_matches"] = sum(1 for e in errs if e["match"])
        row["topk_matches_vs_bounded"] = sum(1 for e in errs_bounded if e["match"])
        row["rel_error"] = row["rel_error_vs_bounded"] = None
    else:
        vals = [e["rel_error"] for e in errs if e["rel_error"] is not None]
        row["rel_error"] = statistics.median(vals) if vals else None
        vals = [e["rel_error"] for e in errs_bounded if e["rel_error"] is not None]
        row["rel_error_vs_bounded"] = statistics.median(vals) if vals else None
        row["missing_cells"] = max((e["missing"] for e in errs), default=0)
    return row


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def summarize(rows: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in results if r["in_target"] and "error" not in r]
    ratios = [r["ratio"] for r in ok]
    failed = [r["name"] for r in results if "error" in r]
    out: dict[str, Any] = {
        "max_ratio": max(ratios) if ratios else None,
        "median_ratio": statistics.median(ratios) if ratios else None,
        "target_ratio": TARGET_RATIO,
        "over_target": [r["name"] for r in ok if r["ratio"] > TARGET_RATIO]
        + [r["name"] for r in results if r["in_target"] and "error" in r],
        "failed": failed,
    }
    out["target_applies"] = rows >= TARGET_ROWS
    out["target_met"] = (bool(ratios) and not out["over_target"]) if out["target_applies"] else None
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def run_size(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(args.data_dir)
    _progress(f"== {rows:,} rows")
    load_before = _loadavg()
    data = prepare_data(data_dir, rows, args.seed)
    gw, engine_info = open_gateway(data_dir, rows, data, args.threads)
    results = []
    try:
        for q in QUERIES:
            _progress(f"  {q.name}")
            try:
                results.append(bench_query(gw, q, args.runs, args.epsilon))
            except Exception as e:  # one query the gateway refuses or fails on must not hide the others
                _progress(f"    failed: {type(e).__name__}: {e}")
                results.append({"name": q.name, "kind": q.kind, "in_target": q.in_target, "sql": q.sql,
                                "error": f"{type(e).__name__}: {e}"})
    finally:
        gw.engine.close()
    return {
        "rows": rows,
        # other work on the machine distorts timings: the 1-minute load average before and after
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
        "data": data,
        "engine": engine_info,
        "queries": results,
        "summary": summarize(rows, results),
    }


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------

def _ms(v: float) -> str:
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _err_cell(r: dict[str, Any], *, bounded: bool = False) -> str:
    if r["kind"] == "topk":
        n = r["topk_matches_vs_bounded" if bounded else "topk_matches"]
        return f"top-3 set {n}/{len(r['errors'])} runs"
    e = r["rel_error_vs_bounded" if bounded else "rel_error"]
    s = "n/a" if e is None else f"{100 * e:.3g}%"
    if not bounded and r.get("missing_cells"):
        s += f" ({r['missing_cells']} cells missing)"
    return s


def _fmt_load(v: list[float] | None) -> str:
    return "n/a" if not v else f"{v[0]:.2f}"


def markdown(size: dict[str, Any], runs: int, epsilon: float) -> str:
    rows = size["rows"]
    eng = size["engine"]
    tx = eng["transactions"]
    lines = [
        f"### {rows:,} rows (median of {runs} runs, ε={epsilon:g}, DuckDB threads={eng['threads']})",
        "",
        f"Registration (load + bounding): {eng['register_s']:.2f} s; transactions {tx['raw_rows']:,} raw rows, "
        f"{tx['bounded_rows']:,} kept by bounding ({tx['bounded_form']}). "
        f"Load average before/after: {_fmt_load(size.get('loadavg_before'))} / {_fmt_load(size.get('loadavg_after'))} "
        f"on {os.cpu_count()} CPUs.",
        "",
        "| query | exact ms | DP ms | ratio | rel. error | rel. error vs bounded data | gateway SQL ms | plan ms |",
        "|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in size["queries"]:
        name = r["name"] + (" (quantile, outside target)" if not r["in_target"] else "")
        if "error" in r:
            lines.append(f"| {name} | – | – | – | failed: {r['error'][:120].replace('|', '/')} | – | – | – |")
            continue
        lines.append(
            f"| {name} | {_ms(r['exact_ms'])} | {_ms(r['dp_ms'])} | {r['ratio']:.2f} | {_err_cell(r)} | {_err_cell(r, bounded=True)} "
            f"| {_ms(r['gateway_sql_ms'])} | {_ms(r['plan_ms'])} |"
        )
    s = size["summary"]
    verdict = (
        ("target met" if s["target_met"] else f"target MISSED by {', '.join(s['over_target'])}")
        if s["target_applies"]
        else f"target applies at {TARGET_ROWS:,} rows"
    )
    if s["max_ratio"] is None:
        return "\n".join([*lines, "", f"No non-quantile query succeeded ({verdict})."])
    lines += [
        "",
        f"Non-quantile queries: max ratio {s['max_ratio']:.2f}, median ratio {s['median_ratio']:.2f} "
        f"(target ratio <= {TARGET_RATIO} at {TARGET_ROWS:,} rows: {verdict}).",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/queries.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000], help="table sizes (rows of transactions)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per query and way (after one warm-up)")
    p.add_argument("--epsilon", type=float, default=1.0, help="ε of each DP query")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file with all figures")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where the generated data and engine files go")
    p.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: DuckDB's own, all cores)")
    p.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if any(n < 1 for n in args.rows):
        p.error("--rows must be positive")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import duckdb

    args = parse_args(argv)
    report: dict[str, Any] = {
        "benchmark": "queries",
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "args": {"rows": args.rows, "runs": args.runs, "epsilon": args.epsilon, "threads": args.threads, "seed": args.seed},
        "environment": {
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "target": {"ratio": TARGET_RATIO, "rows": TARGET_ROWS, "excludes": "quantile queries"},
        "sizes": [],
    }
    for rows in args.rows:
        size = run_size(rows, args)
        report["sizes"].append(size)
        print(markdown(size, args.runs, args.epsilon), flush=True)
        print(flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=_jsonable))
    _progress(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
