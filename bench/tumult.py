"""Tumult Analytics on the forms of bench/utility.py that it answers: the same data, ε, bounds and unit.

Run with a Python that has ``tmlt.analytics`` (its own venv: it pins its own pyspark 3.x, pandas and
numpy, which must not go into the project's .venv), plus ``duckdb`` and ``sqlglot`` for the exact
answers; the demo files must exist (a ``bench/utility.py`` run without ``--quick`` writes them):

    python3.11 -m venv /tmp/tumult-venv
    /tmp/tumult-venv/bin/pip install tmlt.analytics duckdb sqlglot
    /tmp/tumult-venv/bin/python bench/tumult.py [--runs 30] [--json bench/results/tumult.json]
    .venv/bin/python bench/utility.py --compare bench/results/tumult.json      # dpgate / Tumult per form

Each form of `SPECS` is the Tumult query of the bench/utility.py form of the same name (the test at
import checks that its filter and column appear in that form's SQL), evaluated ``--runs`` times with
``PureDPBudget(ε)`` each, in one Session of infinite budget:

* **the same neighbouring relation as dpgate's**: the loans are one row per borrower and the demo's
  ``lending`` unit is ``borrower_id`` with ``max_rows_per_unit = 1``, so adding or removing a unit is
  adding or removing one row: ``AddOneRow()``. The transactions' unit is ``customer_id`` with
  ``max_rows_per_unit = 300``: ``AddRowsWithID("customer_id")`` and every query enforces
  ``MaxRowsPerID(300)`` (Tumult keeps its own 300 rows of a customer with more). ``AddMaxRows(300)``
  would be another relation (any 300 rows), and unsound for customers with more rows than that;
* **the same bounds**: each aggregate's ``low``/``high`` are the column's declared bounds in
  ``gateway.demo_data`` (what dpgate clamps to); group-by keys are the column's public categories
  (``KeySet.from_dict``), as dpgate uses them;
* Tumult's default mechanisms for pure DP (geometric / Laplace; AVG spends ε/2 on the sum and the
  count, VARIANCE and STDDEV ε/3 on each of three; quantiles the exponential mechanism on [low, high]).

The error is scored exactly as bench/utility.py scores dpgate's (its `score` and `summarize`), against
the raw data and against the data clamped to the bounds with no row cap (for the loans that is
dpgate's bounded data; for the transactions, each system keeps its own 300 rows per customer). Tumult
states no interval per answer, so there is no coverage. Top-k, threshold-selected keys and the
per-customer forms are not run (top-k and two-level aggregates have no one-call Tumult form; threshold
selection there is a separate ``get_groups`` query with its own budget). The JSON is written after
each form; Spark's start and each evaluation take seconds, so a full run takes tens of minutes.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import re
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # bench/ on the path would shadow packages by its scripts' names
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
DEFAULT_OUT = ROOT / "bench" / "results" / "tumult.json"


def _import_utility() -> Any:
    name = "dpgate_bench_tumult_utility"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name("utility.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


bu = _import_utility()


@dataclass(frozen=True)
class Spec:
    agg: str  # count | sum | average | variance | stdev | median | quantile | min | max
    column: str | None = None
    where: str | None = None  # a Spark SQL condition, the form's WHERE
    group_by: str | None = None  # a column with public categories
    q: float | None = None


SPECS: dict[str, Spec] = {
    "count": Spec("count"),
    "count_where": Spec("count", where="loan_purpose = 'debt_consolidation' AND application_type = 'individual'"),
    "sum": Spec("sum", "loan_amount"),
    "sum_where": Spec("sum", "loan_amount", where="loan_purpose LIKE '%card%' OR homeownership = 'OWN'"),
    "avg": Spec("average", "annual_income"),
    "avg_where": Spec("average", "loan_amount", where="state IN ('CA', 'NY', 'TX') AND interest_rate BETWEEN 5 AND 20"),
    "var": Spec("variance", "annual_income"),
    "stddev": Spec("stdev", "interest_rate"),
    "median": Spec("median", "annual_income"),
    "p90": Spec("quantile", "loan_amount", q=0.9),
    "min": Spec("min", "interest_rate"),
    "max": Spec("max", "installment"),
    "grade_count": Spec("count", group_by="grade"),
    "grade_sum": Spec("sum", "loan_amount", group_by="grade"),
    "grade_avg": Spec("average", "interest_rate", group_by="grade"),
    "grade_stddev": Spec("stdev", "annual_income", group_by="grade"),
    "grade_median": Spec("median", "loan_amount", group_by="grade"),
    "state_count": Spec("count", group_by="state"),
    "state_avg": Spec("average", "annual_income", group_by="state"),
    "tx_count": Spec("count"),
    "tx_category_sum": Spec("sum", "amount", group_by="merchant_category"),
    "tx_avg_where": Spec("average", "amount", where="channel = 'online'"),
}

_FORMS = {f.name: f for f in bu.FORMS}
for _name, _spec in SPECS.items():  # each spec is its form: same filter, column and key
    _sql = _FORMS[_name].sql
    assert _spec.where is None or _spec.where in _sql, _name
    assert _spec.column is None or _spec.column in _sql, _name
    assert _spec.group_by is None or f"GROUP BY {_spec.group_by}" in _sql, _name
    assert _FORMS[_name].kind in ("scalar", "group") and _FORMS[_name].delta == 0, _name


def _tables() -> dict[str, dict[str, Any]]:
    """The demo's table metadata and units, from gateway.demo_data (numpy, pandas, pyarrow only)."""
    from gateway.demo_data import TRANSACTIONS_MAX_ROWS_PER_UNIT, loans_columns, transactions_columns

    return {
        "loans": {"dataset": "lending", "unit": "borrower_id", "max_rows_per_unit": 1, "columns": loans_columns()},
        "transactions": {"dataset": "cards", "unit": "customer_id", "max_rows_per_unit": TRANSACTIONS_MAX_ROWS_PER_UNIT,
                         "columns": transactions_columns()},
    }


def _table_of(form: Any) -> str:
    return "loans" if form.dataset == "lending" else "transactions"


def _spark(threads: int) -> Any:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers must import tmlt too
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    warnings.filterwarnings("ignore", category=UserWarning, module="pyspark")  # Tumult's pandas UDF style
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(f"local[{threads}]").appName("dpgate-bench-tumult")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", str(threads)).config("spark.default.parallelism", str(threads))
             .config("spark.driver.memory", "2g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _query(spec: Spec, source: str, table: dict[str, Any]) -> Any:
    from tmlt.analytics import KeySet, MaxRowsPerID, QueryBuilder

    qb = QueryBuilder(source)
    if table["max_rows_per_unit"] > 1:
        qb = qb.enforce(MaxRowsPerID(table["max_rows_per_unit"]))
    if spec.where:
        qb = qb.filter(spec.where)
    if spec.group_by:
        qb = qb.groupby(KeySet.from_dict({spec.group_by: list(table["columns"][spec.group_by]["categories"])}))
    if spec.agg == "count":
        return qb.count(name="value")
    meta = table["columns"][spec.column]
    lo, hi = meta["lower"], meta["upper"]
    if spec.agg == "quantile":
        return qb.quantile(spec.column, spec.q, lo, hi, name="value")
    return getattr(qb, spec.agg)(spec.column, lo, hi, name="value")


def _references(data_dir: Path, tables: dict[str, dict[str, Any]], forms: list[Any]) -> dict[str, tuple[list, list]]:
    """Per form, the exact answer on the raw data and on the data clamped to the bounds (DuckDB)."""
    import duckdb

    con = duckdb.connect()
    for name in tables:
        path = (data_dir / "demo" / f"{name}.parquet").as_posix()
        con.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{path}')")
    bounds = bu.numeric_bounds({k: {"columns": v["columns"]} for k, v in tables.items()})
    rel = {name: name for name in tables}
    out = {}
    for form in forms:
        raw = con.execute(bu.reference_sql(form.sql, rel)).fetchall()
        clamped = con.execute(bu.reference_sql(form.sql, rel, bounds)).fetchall()
        out[form.name] = (raw, clamped)
    con.close()
    return out


def _rows(frame: Any, spec: Spec) -> list[list[Any]]:
    if spec.group_by:
        return [[r[spec.group_by], r["value"]] for r in frame.to_dict("records")]
    return [[frame["value"].iloc[0]]]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tmlt.analytics as ta
    from tmlt.analytics import AddOneRow, AddRowsWithID, PureDPBudget, Session

    data_dir = Path(args.data_dir)
    tables = _tables()
    names = [n for n in SPECS if not args.forms or any(p in n for p in args.forms)]
    forms = [_FORMS[n] for n in names]
    for name in tables:
        if not (data_dir / "demo" / f"{name}.parquet").exists():
            raise SystemExit(f"{data_dir / 'demo' / name}.parquet is missing: run bench/utility.py (not --quick) first")
    refs = _references(data_dir, tables, forms)
    t0 = time.perf_counter()
    spark = _spark(args.threads)
    needed: dict[str, set[str]] = {}  # the columns the forms read (Tumult types every column it is given)
    for n in names:
        s, t = SPECS[n], _table_of(_FORMS[n])
        words = set(re.findall(r"[a-z_]+", s.where or ""))
        needed.setdefault(t, {tables[t]["unit"]}).update(c for c in tables[t]["columns"] if c in words or c in (s.column, s.group_by))
    builder = Session.Builder().with_privacy_budget(PureDPBudget(float("inf")))
    rows_in: dict[str, int] = {}
    for t, cols in needed.items():
        frame = spark.read.parquet((data_dir / "demo" / f"{t}.parquet").as_posix()).select(*sorted(cols)).cache()
        rows_in[t] = frame.count()
        if tables[t]["max_rows_per_unit"] == 1:
            change: Any = AddOneRow()  # one row per unit: adding a unit is adding a row
        else:
            builder = builder.with_id_space("customers")
            change = AddRowsWithID(tables[t]["unit"], "customers")
        builder = builder.with_private_dataframe(t, frame, protected_change=change)
    session = builder.build()
    bu._progress(f"  Spark and the session ready in {time.perf_counter() - t0:.0f} s ({rows_in})")
    report: dict[str, Any] = {
        "benchmark": "utility",
        "system": "tumult",
        "version": getattr(ta, "__version__", None),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "args": {"runs": args.runs, "epsilon": args.epsilon, "transactions_rows": rows_in.get("transactions"),
                 "threads": args.threads},
        "environment": {"python": platform.python_version(), "pyspark": spark.version, "cpus": os.cpu_count()},
        "neighbouring": {t: ("AddOneRow" if tables[t]["max_rows_per_unit"] == 1
                             else f"AddRowsWithID({tables[t]['unit']}) + MaxRowsPerID({tables[t]['max_rows_per_unit']})")
                         for t in needed},
        "forms": [],
    }
    for name in names:
        form, spec = _FORMS[name], SPECS[name]
        raw, clamped = refs[name]
        query = _query(spec, _table_of(form), tables[_table_of(form)])
        columns = ([spec.group_by] if spec.group_by else []) + ["value"]
        vs_bounded, vs_raw = [], []
        t1 = time.perf_counter()
        row: dict[str, Any] = {"name": name, "dataset": form.dataset, "sql": form.sql, "kind": form.kind, "keys": form.keys,
                               "tumult": {"agg": spec.agg, "column": spec.column, "where": spec.where,
                                          "group_by": spec.group_by, "q": spec.q}}
        try:
            for _ in range(args.runs):
                answer = _rows(session.evaluate(query, PureDPBudget(args.epsilon)).toPandas(), spec)
                vs_bounded.append(bu.score(form, columns, answer, None, {}, clamped))
                vs_raw.append(bu.score(form, columns, answer, None, {}, raw))
        except Exception as exc:  # noqa: BLE001 - one form Tumult refuses must not hide the others
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            row["error_code"] = type(exc).__name__
        else:
            row.update(bu.summarize(form, vs_bounded, vs_raw))
            row["runs"] = {"vs_bounded": vs_bounded, "vs_raw": vs_raw}
            row["last_answer"] = [[bu._jsonable(v) for v in r] for r in answer]
        row["seconds"] = time.perf_counter() - t1
        row["exact_raw"] = [[bu._jsonable(v) for v in r] for r in raw]
        row["exact_clamped"] = [[bu._jsonable(v) for v in r] for r in clamped]
        report["forms"].append(row)
        bu._progress(f"  {name}: {bu._err(row)} vs clamped, {bu._err(row, True)} vs raw ({row['seconds']:.0f} s)")
        _write(report, Path(args.json))
    spark.stop()
    report["elapsed_s"] = time.perf_counter() - t0
    return report


def _write(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=bu._jsonable))
    os.replace(tmp, out)


def table(report: dict[str, Any]) -> str:
    a = report["args"]
    lines = [f"Tumult Analytics {report.get('version')}: ε = {a['epsilon']:g}, {a['runs']} runs per form "
             f"({', '.join(f'{t}: {r}' for t, r in report.get('neighbouring', {}).items())})", "",
             "| form | dataset | rel. error vs clamped | rel. error vs raw |", "|---|---|---:|---:|"]
    for r in report["forms"]:
        note = f" ({r['error'][:80]})" if "error" in r else ""
        lines.append(f"| {r['name']} | {r['dataset']} | {bu._err(r)}{note} | {bu._err(r, True)} |")
    errs = [r["rel_error_raw"] for r in report["forms"] if r.get("rel_error_raw") is not None]
    if errs:
        lines += ["", f"Median over forms of the median relative error (vs raw): {100 * statistics.median(errs):.3g}%"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/tumult.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=30, help="noisy answers per form")
    p.add_argument("--epsilon", type=float, default=1.0, help="ε of each query (pure DP)")
    p.add_argument("--json", type=Path, default=DEFAULT_OUT, help="where the JSON goes (rewritten after each form)")
    p.add_argument("--data-dir", type=Path, default=bu.DEFAULT_DATA_DIR, help="bench/utility.py's --data-dir")
    p.add_argument("--forms", nargs="+", default=None, help="only the forms whose name contains one of these")
    p.add_argument("--threads", type=int, default=2, help="Spark local threads")
    p.add_argument("--load", type=Path, default=None, help="print this saved run instead of running")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    report = json.loads(Path(args.load).read_text()) if args.load else run(args)
    print(table(report), flush=True)
    if not args.load:
        _write(report, Path(args.json))
    return report


if __name__ == "__main__":
    main()
