"""Utility benchmark: how far are private answers from the truth at ε = 1, and do their intervals cover it?

On the demo datasets of ``gateway.demo_data`` (``lending``: 10,000 Lending Club loans, one row per
borrower; ``cards``: the synthetic card transactions, up to 300 rows per customer), each query form of
`FORMS` is answered ``--runs`` times through ``Gateway.query`` and compared with two exact answers
computed in plain DuckDB on the same engine, without noise:

* **bounded**: the same SQL over the rows the gateway reads (the bounded relation: at most
  ``max_rows_per_unit`` rows per unit) with every numeric column inside an aggregate clamped to its
  declared ``[lower, upper]`` (NULL kept NULL): the error against it is the noise alone;
* **raw**: the same SQL over the loaded, unbounded table, nothing clamped: what an analyst without the
  gateway sees, so clamping and row caps count as error too.

The relative error of a released numeric cell is ``|noisy - exact| / max(|exact|, 1)`` (as
``bench/queries.py``); per form, the median over every released cell of every run (pooled: a median
per run over a few cells of integer noise is often exactly 0), with the 90th percentile and the mean.
Coverage: the share of released cells whose stated 95% interval holds the bounded exact value. The
interval of a cell is ``intervals[column][row]`` where the answer carries ``intervals`` (per value), else
``value ± accuracy[column].ci95`` (one half-width per column); a cell without either has no interval
and counts in ``stated`` (the share of cells with one), not in coverage. Top-k forms report how often
the exact top-k set came back; threshold forms how many exact groups were released.

The constant-time padding of noise draws is turned off (`mechanisms._timing`): it changes when an
answer leaves, never its value. A form the code refuses (a form of a later issue) is recorded with its
error code and the run goes on.

Run: ``.venv/bin/python bench/utility.py [--runs 30] [--json bench/results/utility.json]
[--compare before.json] [--compare bench/results/tumult.json]``; ``--quick`` for a smoke test
(20,000 transactions, 3 runs); ``--load FILE`` prints (and compares) a saved run without running.
With ``PYTHONPATH=<another checkout>`` it measures that checkout's gateway (the "before" figures).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # bench/ on the path would shadow packages by its scripts' names (training)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # last: a checkout on PYTHONPATH (the "before" figures) comes first
DEFAULT_DATA_DIR = ROOT / "data" / "bench"
DEFAULT_OUT = ROOT / "bench" / "results" / "utility.json"
ENGINE_SEED = "dpgate-bench-bounding-key"  # a fixed key: the bench needs reproducible bounding, not secrecy
TRANSACTIONS_ROWS = 1_000_000  # the demo's default size
QUICK_TRANSACTIONS_ROWS = 20_000
THRESHOLD_DELTA = 1e-6
TUMULT_TARGET = 0.7  # issue 12: dpgate's error at most 0.7x Tumult's on the forms both answer


def _import_queries() -> Any:
    """bench/queries.py, whose answer-matching helpers this benchmark shares (a script, not a package)."""
    name = "dpgate_bench_utility_queries"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name("queries.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve their module through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]


bq = _import_queries()
_progress, _jsonable, _norm_key, _num, _loadavg = bq._progress, bq._jsonable, bq._norm_key, bq._num, bq._loadavg


@dataclass(frozen=True)
class Form:
    name: str
    dataset: str
    sql: str
    kind: str = "scalar"  # scalar | group | topk
    keys: int = 0  # leading key columns of the answer
    delta: float = 0.0  # > 0: threshold partition selection
    note: str = ""


_L, _C = "lending", "cards"
_PER_CUSTOMER_N = "(SELECT customer_id, COUNT(*) AS n FROM transactions GROUP BY customer_id) AS per_customer"
_PER_CUSTOMER_SPEND = "(SELECT customer_id, SUM(amount) AS spend FROM transactions GROUP BY customer_id) AS per_customer"

FORMS: list[Form] = [
    Form("count", _L, "SELECT COUNT(*) AS n FROM loans"),
    Form("count_where", _L, "SELECT COUNT(*) AS n FROM loans WHERE loan_purpose = 'debt_consolidation' AND application_type = 'individual'"),
    Form("sum", _L, "SELECT SUM(loan_amount) AS total FROM loans"),
    Form("sum_where", _L, "SELECT SUM(loan_amount) AS total FROM loans WHERE loan_purpose LIKE '%card%' OR homeownership = 'OWN'"),
    Form("avg", _L, "SELECT AVG(annual_income) AS mean FROM loans"),
    Form("avg_where", _L, "SELECT AVG(loan_amount) AS mean FROM loans WHERE state IN ('CA', 'NY', 'TX') AND interest_rate BETWEEN 5 AND 20"),
    Form("var", _L, "SELECT VARIANCE(annual_income) AS v FROM loans"),
    Form("stddev", _L, "SELECT STDDEV(interest_rate) AS s FROM loans"),
    Form("median", _L, "SELECT MEDIAN(annual_income) AS m FROM loans"),
    Form("p90", _L, "SELECT PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY loan_amount) AS p90 FROM loans"),
    Form("min", _L, "SELECT MIN(interest_rate) AS lo FROM loans"),
    Form("max", _L, "SELECT MAX(installment) AS hi FROM loans"),
    Form("grade_count", _L, "SELECT grade, COUNT(*) AS n FROM loans GROUP BY grade", "group", 1),
    Form("grade_sum", _L, "SELECT grade, SUM(loan_amount) AS total FROM loans GROUP BY grade", "group", 1),
    Form("grade_avg", _L, "SELECT grade, AVG(interest_rate) AS mean_rate FROM loans GROUP BY grade", "group", 1),
    Form("grade_stddev", _L, "SELECT grade, STDDEV(annual_income) AS s FROM loans GROUP BY grade", "group", 1),
    Form("grade_median", _L, "SELECT grade, MEDIAN(loan_amount) AS m FROM loans GROUP BY grade", "group", 1),
    Form("state_count", _L, "SELECT state, COUNT(*) AS n FROM loans GROUP BY state", "group", 1,
         note="state has a public category list (51 keys)"),
    Form("state_avg", _L, "SELECT state, AVG(annual_income) AS mean FROM loans GROUP BY state", "group", 1),
    Form("income_band_count", _L,
         "SELECT FLOOR(annual_income / 25000) AS band, COUNT(*) AS n FROM loans GROUP BY FLOOR(annual_income / 25000)",
         "group", 1, delta=THRESHOLD_DELTA, note="no public key list: threshold selection"),
    Form("top5_state", _L, "SELECT state FROM loans GROUP BY state ORDER BY COUNT(*) DESC LIMIT 5", "topk"),
    Form("tx_count", _C, "SELECT COUNT(*) AS n FROM transactions"),
    Form("tx_category_sum", _C, "SELECT merchant_category, SUM(amount) AS spend FROM transactions GROUP BY merchant_category",
         "group", 1),
    Form("tx_avg_where", _C, "SELECT AVG(amount) AS mean FROM transactions WHERE channel = 'online'"),
    Form("tx_distance_band_count", _C,
         "SELECT FLOOR(distance_km / 1000) AS band, COUNT(*) AS n FROM transactions GROUP BY FLOOR(distance_km / 1000)",
         "group", 1, delta=THRESHOLD_DELTA, note="threshold selection, 300 rows per unit"),
    Form("per_customer_avg_count", _C, f"SELECT AVG(n) AS mean_tx FROM {_PER_CUSTOMER_N}", note="two-level"),
    Form("per_customer_median_spend", _C, f"SELECT MEDIAN(spend) AS median_spend FROM {_PER_CUSTOMER_SPEND}", note="two-level"),
    Form("per_customer_active", _C, f"SELECT COUNT(*) AS active FROM {_PER_CUSTOMER_N} WHERE n >= 100", note="two-level"),
]


# --------------------------------------------------------------------------------------------
# the exact answers (also used by bench/tumult.py, which has no gateway: sqlglot and duckdb only)
# --------------------------------------------------------------------------------------------

def numeric_bounds(tables: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """``{column: (lower, upper)}`` of the declared numeric columns of a dataset entry's tables."""
    out: dict[str, tuple[float, float]] = {}
    for table in tables.values():
        for name, spec in table["columns"].items():
            if spec.get("type") in ("int", "float") and spec.get("lower") is not None and spec.get("upper") is not None:
                out[name] = (spec["lower"], spec["upper"])
    return out


def reference_sql(sql: str, relations: dict[str, str], bounds: dict[str, tuple[float, float]] | None = None) -> str:
    """`sql` (DuckDB) with each table pointed at the relation ``relations[table]`` (aliases kept) and, with `bounds`, every bounded column read inside an aggregate
    clamped to its bounds (NULL stays NULL: DuckDB's LEAST/GREATEST skip NULL operands)."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, dialect="duckdb")
    for table in tree.find_all(exp.Table):
        if not table.alias:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(table.name)))
        table.set("this", exp.to_identifier(relations[table.name], quoted=True))
    if bounds:
        inside = list(tree.find_all(exp.AggFunc, exp.WithinGroup))  # the values that reach an aggregate
        columns = {id(c): c for node in inside for c in node.find_all(exp.Column) if c.name in bounds}
        for col in columns.values():
            lo, hi = bounds[col.name]
            clamp = exp.func("LEAST", exp.func("GREATEST", col.copy(), exp.Literal.number(lo)), exp.Literal.number(hi))
            col.replace(exp.Case(ifs=[exp.If(this=exp.Is(this=col.copy(), expression=exp.Null()), true=exp.Null())], default=clamp))
    return tree.sql(dialect="duckdb")


# --------------------------------------------------------------------------------------------
# scoring one answer
# --------------------------------------------------------------------------------------------

def _keyed(rows: list[Any], keys: int) -> dict[tuple, list[Any]]:
    return {tuple(_norm_key(v) for v in r[:keys]): list(r[keys:]) for r in rows}


def score(form: Form, columns: list[str], rows: list[list[Any]], intervals: dict[str, list[Any]] | None,
          ci95: dict[str, float | None], exact: list[tuple]) -> dict[str, Any]:
    """One noisy answer against one exact answer: relative errors, coverage of the stated intervals.

    `intervals`: the answer's per-value intervals (None where the code states none); `ci95`: the
    per-column half-widths, used for a column without per-value intervals."""
    if form.kind == "topk":
        want = {_norm_key(r[0]) for r in exact}
        got = {_norm_key(r[0]) for r in rows}
        return {"match": want == got}
    k = form.keys
    want = _keyed(exact, k)
    got_rows = {tuple(_norm_key(v) for v in r[:k]): i for i, r in enumerate(rows)}
    errors: list[float] = []
    cells = covered = stated = missing = 0
    sources: set[str] = set()
    for key, exact_vals in want.items():
        i = got_rows.get(key)
        for j, ev in enumerate(exact_vals):
            e = _num(ev)
            if e is None:
                continue
            col = columns[k + j]
            n = _num(rows[i][k + j]) if i is not None else None
            if n is None:
                missing += 1
                continue
            cells += 1
            errors.append(abs(n - e) / max(abs(e), 1.0))
            iv = None
            if intervals is not None and col in intervals:
                per = intervals[col]
                iv = per[i] if per is not None and i < len(per) else None
                source = "intervals"
            elif ci95.get(col) is not None:
                iv = (n - float(ci95[col]), n + float(ci95[col]))  # type: ignore[arg-type]
                source = "ci95"
            if iv is not None and iv[0] is not None and iv[1] is not None:
                stated += 1
                sources.add(source)
                covered += float(iv[0]) - 1e-9 * max(1.0, abs(e)) <= e <= float(iv[1]) + 1e-9 * max(1.0, abs(e))
    extra = sum(1 for key in got_rows if key not in want)
    return {
        "rel_error": statistics.median(errors) if errors else None,
        "errors": errors,
        "cells": cells,
        "missing": missing,
        "extra": extra,
        "exact_cells": sum(1 for v in want.values() for x in v if _num(x) is not None),
        "stated": stated,
        "covered": covered,
        "interval_source": sorted(sources),
    }


def _answer_parts(answer: Any) -> tuple[dict[str, list[Any]] | None, dict[str, float | None]]:
    """The answer's per-value intervals (None before issue 12) and per-column ci95 half-widths."""
    intervals = getattr(answer, "intervals", None)
    if intervals is None:
        intervals = answer.to_json().get("intervals")
    ci95 = {name: getattr(acc, "ci95", None) for name, acc in answer.accuracy.items()}
    return intervals, ci95


def summarize(form: Form, vs_bounded: list[dict[str, Any]], vs_raw: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if form.kind == "topk":
        out["topk_match"] = sum(1 for s in vs_bounded if s["match"]) / len(vs_bounded)
        out["topk_match_raw"] = sum(1 for s in vs_raw if s["match"]) / len(vs_raw)
        out["rel_error"] = out["rel_error_raw"] = None
        return out
    for label, scores in (("", vs_bounded), ("_raw", vs_raw)):
        errs = [e for s in scores for e in s["errors"]]  # every released cell of every run
        out[f"rel_error{label}"] = statistics.median(errs) if errs else None
        out[f"rel_error{label}_p90"] = _quantile(errs, 0.9) if errs else None
        out[f"rel_error{label}_mean"] = statistics.fmean(errs) if errs else None
    cells = sum(s["cells"] for s in vs_bounded)
    stated = sum(s["stated"] for s in vs_bounded)
    covered = sum(s["covered"] for s in vs_bounded)
    out["cells"] = cells
    out["stated"] = stated / cells if cells else None
    out["coverage"] = covered / stated if stated else None
    out["interval_source"] = sorted({x for s in vs_bounded for x in s["interval_source"]})
    exact_cells = sum(s["exact_cells"] for s in vs_bounded)
    out["released_share"] = cells / exact_cells if exact_cells else None  # threshold selection drops groups
    out["extra_cells"] = max((s["extra"] for s in vs_bounded), default=0)
    return out


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(math.ceil(q * len(s))) - 1)]


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------

def open_gateway(data_dir: Path, transactions_rows: int) -> tuple[Any, dict[str, dict[str, Any]]]:
    """An in-memory DuckDB engine with the demo's `lending` and `cards` registered."""
    from gateway.core import Gateway
    from gateway.demo_data import demo_datasets
    from gateway.engines.duckdb import DuckDBEngine

    entries = {d["name"]: d for d in demo_datasets(data_dir, transactions_rows=transactions_rows) if d["name"] in (_L, _C)}
    gw = Gateway(DuckDBEngine(None, seed=ENGINE_SEED))
    for d in entries.values():
        t0 = time.perf_counter()
        gw.register(d)
        _progress(f"  registered {d['name']} in {time.perf_counter() - t0:.1f} s")
    return gw, entries


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "code", None) or type(exc).__name__)


def bench_form(gw: Any, entry: dict[str, Any], form: Form, runs: int, epsilon: float) -> dict[str, Any]:
    engine = gw.engine
    tables = entry["tables"]
    bounded_rel = {t: engine.relation_name(form.dataset, t, bounded=True) for t in tables}
    raw_rel = {t: engine.relation_name(form.dataset, t, bounded=False) for t in tables}
    row: dict[str, Any] = {"name": form.name, "dataset": form.dataset, "sql": form.sql, "kind": form.kind,
                           "keys": form.keys, "delta": form.delta, "note": form.note}
    bounded_sql = reference_sql(form.sql, bounded_rel, numeric_bounds(tables))
    raw_sql = reference_sql(form.sql, raw_rel)
    con = engine._con
    exact_bounded = con.execute(bounded_sql).fetchall()
    exact_raw = con.execute(raw_sql).fetchall()
    row.update(bounded_sql=bounded_sql, raw_sql=raw_sql,
               exact_bounded=[[_jsonable(v) for v in r] for r in exact_bounded],
               exact_raw=[[_jsonable(v) for v in r] for r in exact_raw])
    vs_bounded, vs_raw = [], []
    last = None
    t0 = time.perf_counter()
    for _ in range(runs):
        try:
            answer = gw.query(form.dataset, form.sql, epsilon=epsilon, delta=form.delta)
        except Exception as exc:  # a form this code refuses: recorded, the others go on
            row["error"] = f"{_error_code(exc)}: {exc}"[:300]
            row["error_code"] = _error_code(exc)
            return row
        intervals, ci95 = _answer_parts(answer)
        vs_bounded.append(score(form, answer.columns, answer.rows, intervals, ci95, exact_bounded))
        vs_raw.append(score(form, answer.columns, answer.rows, intervals, ci95, exact_raw))
        last = answer
    row["dp_s"] = time.perf_counter() - t0
    row.update(summarize(form, vs_bounded, vs_raw))
    row["runs"] = {"vs_bounded": vs_bounded, "vs_raw": vs_raw}
    if last is not None:
        intervals, ci95 = _answer_parts(last)
        row["last_answer"] = {"columns": last.columns, "rows": [[_jsonable(v) for v in r] for r in last.rows],
                              "ci95": ci95, "intervals": intervals,
                              "mechanisms": {k: getattr(a, "mechanism", None) for k, a in last.accuracy.items()}}
    return row


def _code_version() -> dict[str, Any]:
    """Which checkout's gateway ran (PYTHONPATH may point at another one)."""
    import gateway

    src = Path(gateway.__file__).resolve().parent.parent
    info: dict[str, Any] = {"path": str(src)}
    try:
        info["commit"] = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout
        info["dirty"] = bool(dirty.strip())
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


def run(args: argparse.Namespace) -> dict[str, Any]:
    import duckdb

    from mechanisms import _timing

    _timing.configure(base_s=0)  # padding changes when an answer leaves, never its value
    rows = QUICK_TRANSACTIONS_ROWS if args.quick else args.transactions_rows
    forms = [f for f in FORMS if not args.forms or any(p in f.name for p in args.forms)]
    report: dict[str, Any] = {
        "benchmark": "utility",
        "system": "dpgate",
        "label": args.label,
        "code": _code_version(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "args": {"runs": args.runs, "epsilon": args.epsilon, "transactions_rows": rows, "quick": args.quick},
        "environment": {"python": platform.python_version(), "duckdb": duckdb.__version__, "cpus": os.cpu_count(),
                        "loadavg_before": _loadavg()},
        "forms": [],
    }
    t0 = time.perf_counter()
    gw, entries = open_gateway(Path(args.data_dir), rows)
    try:
        for form in forms:
            _progress(f"  {form.name}")
            report["forms"].append(bench_form(gw, entries[form.dataset], form, args.runs, args.epsilon))
    finally:
        gw.engine.close()
    report["environment"]["loadavg_after"] = _loadavg()
    report["elapsed_s"] = time.perf_counter() - t0
    return report


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------

def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.3g}%"


def _err(r: dict[str, Any], raw: bool = False) -> str:
    if "error" in r:
        return "refused" if r.get("error_code") in ("unsupported_sql", "UnsupportedSQL") else "failed"
    if r["kind"] == "topk":
        return f"top-k set {_pct(r['topk_match_raw' if raw else 'topk_match'])} of runs"
    return _pct(r["rel_error_raw" if raw else "rel_error"])


def _cov(r: dict[str, Any]) -> str:
    if "error" in r or r["kind"] == "topk":
        return "–"
    if r.get("coverage") is None:
        return "none stated"
    return f"{_pct(r['coverage'])} ({'/'.join(r['interval_source'])})"


def table(report: dict[str, Any]) -> str:
    a = report["args"]
    code = report.get("code") or {}
    head = (f"dpgate {code.get('commit') or '?'}{' (dirty)' if code.get('dirty') else ''}"
            f"{' [' + report['label'] + ']' if report.get('label') else ''}: "
            f"ε = {a['epsilon']:g}, {a['runs']} runs per form, {a['transactions_rows']:,} transactions")
    lines = [head, "",
             "| form | dataset | rel. error vs bounded | rel. error vs raw | coverage of stated intervals | stated | released | note |",
             "|---|---|---:|---:|---|---:|---:|---|"]
    for r in report["forms"]:
        if "error" in r:
            note = r["error"].split("\n")[0][:90].replace("|", "/")
            lines.append(f"| {r['name']} | {r['dataset']} | {_err(r)} | {_err(r, True)} | – | – | – | {note} |")
            continue
        stated = _pct(r.get("stated")) if r["kind"] != "topk" else "–"
        released = _pct(r.get("released_share")) if r["kind"] != "topk" else "–"
        lines.append(f"| {r['name']} | {r['dataset']} | {_err(r)} | {_err(r, True)} | {_cov(r)} | {stated} | {released} | {r.get('note', '')} |")
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    if b == 0:
        return None if a == 0 else math.inf
    return a / b


def _fmt_ratio(x: float | None) -> str:
    return "–" if x is None else ("inf" if math.isinf(x) else f"{x:.2f}")


def compare(report: dict[str, Any], other: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """This run against a saved one: after/before for another dpgate run, dpgate/Tumult for a Tumult run."""
    theirs = {r["name"]: r for r in other.get("forms", [])}
    tumult = other.get("system") == "tumult"
    who = "Tumult Analytics " + str(other.get("version", "")) if tumult else f"dpgate {(other.get('code') or {}).get('commit') or other.get('label') or '?'}"
    lines = [f"Against {who} ({'dpgate / Tumult' if tumult else 'this run / that run'}):", "",
             "| form | rel. error vs bounded: this / that | ratio | rel. error vs raw: this / that | ratio | ratio of means vs raw "
             "| coverage: this / that |",
             "|---|---|---:|---|---:|---:|---|"]
    ratios: list[float] = []
    ratios_bounded: list[float] = []
    per_form: dict[str, Any] = {}
    for r in report["forms"]:
        o = theirs.get(r["name"])
        if o is None:
            continue
        if "error" in r or "error" in o or r["kind"] == "topk":
            lines.append(f"| {r['name']} | {_err(r)} / {_err(o)} | – | {_err(r, True)} / {_err(o, True)} | – | – | – |")
            continue
        rb, rr = _ratio(r.get("rel_error"), o.get("rel_error")), _ratio(r.get("rel_error_raw"), o.get("rel_error_raw"))
        rm = _ratio(r.get("rel_error_raw_mean"), o.get("rel_error_raw_mean"))  # steadier for integer noise
        per_form[r["name"]] = {"ratio_vs_bounded": rb, "ratio_vs_raw": rr, "ratio_of_means_vs_raw": rm}
        if rr is not None and math.isfinite(rr):
            ratios.append(rr)
        if rb is not None and math.isfinite(rb):
            ratios_bounded.append(rb)
        lines.append(f"| {r['name']} | {_err(r)} / {_err(o)} | {_fmt_ratio(rb)} | {_err(r, True)} / {_err(o, True)} | {_fmt_ratio(rr)} "
                     f"| {_fmt_ratio(rm)} | {_cov(r)} / {_cov(o)} |")
    means = [v["ratio_of_means_vs_raw"] for v in per_form.values()
             if v["ratio_of_means_vs_raw"] is not None and math.isfinite(v["ratio_of_means_vs_raw"])]
    summary: dict[str, Any] = {
        "forms": len(per_form),
        "median_ratio_of_means_vs_raw": statistics.median(means) if means else None,
        "median_ratio_vs_raw": statistics.median(ratios) if ratios else None,
        "median_ratio_vs_bounded": statistics.median(ratios_bounded) if ratios_bounded else None,
        "per_form": per_form,
    }
    lines += ["", f"{len(per_form)} forms in both; median ratio {_fmt_ratio(summary['median_ratio_vs_raw'])} (vs raw), "
                  f"{_fmt_ratio(summary['median_ratio_vs_bounded'])} (vs bounded); median ratio of mean errors "
                  f"{_fmt_ratio(summary['median_ratio_of_means_vs_raw'])} (vs raw)."]
    if tumult:
        # Noise alone: vs bounded where both systems read the same bounded data (the loans: one row per
        # borrower, so bounded = clamped); the analyst's view: vs raw on every shared form.
        dataset = {r["name"]: r["dataset"] for r in report["forms"]}
        noise = {n: v["ratio_vs_bounded"] for n, v in per_form.items() if dataset[n] == _L}
        over_noise = [n for n, x in noise.items() if x is None or x > TUMULT_TARGET]
        over = [n for n, v in per_form.items() if v["ratio_vs_raw"] is None or v["ratio_vs_raw"] > TUMULT_TARGET]
        summary.update(target=TUMULT_TARGET, over_target=over, over_target_noise=over_noise,
                       median_ratio_noise=statistics.median([x for x in noise.values() if x is not None and math.isfinite(x)])
                       if any(x is not None and math.isfinite(x) for x in noise.values()) else None)
        lines.append(f"Target dpgate ≤ {TUMULT_TARGET}× Tumult's error on every shared form. Noise alone (vs bounded, the "
                     f"{len(noise)} loans forms, median ratio {_fmt_ratio(summary['median_ratio_noise'])}): "
                     + ("met." if noise and not over_noise else f"missed on {', '.join(over_noise) or 'all (no shared form)'}."))
        lines.append(f"Vs raw (all {len(per_form)} shared forms): "
                     + ("met." if per_form and not over else f"missed on {', '.join(over) or 'all (no shared form)'}."))
        lines.append("(Tumult's 'bounded' reference is its data clamped with no row cap: the same as dpgate's for the "
                     "loans, one row per borrower; not for transactions, where each keeps its own 300 rows per customer. "
                     "Vs raw, clamping and the row cap weigh the same on both.)")
    return "\n".join(lines), summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/utility.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=None, help="noisy answers per form (default 30; --quick 3)")
    p.add_argument("--epsilon", type=float, default=1.0, help="ε of each query")
    p.add_argument("--json", type=Path, default=DEFAULT_OUT, help="where the JSON goes (parents created)")
    p.add_argument("--compare", type=Path, action="append", default=[],
                   help="a saved bench/utility.py or bench/tumult.py JSON to compare with (repeatable)")
    p.add_argument("--load", type=Path, default=None, help="print (and compare) this saved run instead of running")
    p.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK_TRANSACTIONS_ROWS:,} transactions, 3 runs")
    p.add_argument("--forms", nargs="+", default=None, help="only the forms whose name contains one of these")
    p.add_argument("--transactions-rows", type=int, default=TRANSACTIONS_ROWS, help="size of the demo transactions table")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="the demo data go under <data-dir>/demo/ (default data/bench/; --quick data/bench/quick/)")
    p.add_argument("--label", default="", help="a name for this run in the tables (e.g. before, after)")
    args = p.parse_args(argv)
    if args.runs is None:
        args.runs = 3 if args.quick else 30
    if args.data_dir is None:  # the quick size keeps its own files: bench/tumult.py reads the full-size ones
        args.data_dir = DEFAULT_DATA_DIR / "quick" if args.quick else DEFAULT_DATA_DIR
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.load is not None:
        report = json.loads(Path(args.load).read_text())
    else:
        report = run(args)
    print(table(report), flush=True)
    report.setdefault("comparisons", {})
    for path in args.compare:
        text, summary = compare(report, json.loads(Path(path).read_text()))
        report["comparisons"][str(path)] = summary
        print(f"\n{text}", flush=True)
    if args.load is None:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=_jsonable))
        _progress(f"wrote {out} ({report['elapsed_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
