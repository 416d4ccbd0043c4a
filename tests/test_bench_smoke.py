"""Smoke test of the query benchmark (bench/queries.py) on a tiny table: it runs end to end and
writes one JSON row per query with positive timings and finite ratios."""
from __future__ import annotations

import json
import math
from pathlib import Path

from tests.conftest import load_bench



def test_bench_queries_smoke(tmp_path: Path, capsys) -> None:
    bench = load_bench("queries")
    out = tmp_path / "results" / "queries.json"
    report = bench.main(
        ["--rows", "20000", "--runs", "1", "--data-dir", str(tmp_path / "data"), "--out", str(out)]
    )

    assert out.exists()
    data = json.loads(out.read_text())
    assert data["args"]["rows"] == [20000]
    assert len(data["sizes"]) == 1
    size = data["sizes"][0]
    assert size["rows"] == 20000
    assert size["engine"]["register_s"] > 0
    assert size["engine"]["transactions"]["raw_rows"] == 20000

    names = [q.name for q in bench.QUERIES]
    assert [r["name"] for r in size["queries"]] == names
    assert len(names) >= 10
    for r in size["queries"]:
        assert "error" not in r, r
        assert r["exact_ms"] > 0 and r["dp_ms"] > 0 and r["gateway_sql_ms"] > 0, r["name"]
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r["name"]
        assert len(r["runs_ms"]["dp"]) == 1 and len(r["runs_ms"]["exact"]) == 1
        assert r["gateway_sql"], r["name"]
        if r["kind"] == "topk":
            assert r["topk_matches"] in (0, 1)
        else:
            assert r["rel_error"] is None or r["rel_error"] >= 0
        assert r["in_target"] == (r["kind"] != "quantile")

    summary = size["summary"]
    assert summary["target_applies"] is False and summary["target_met"] is None
    assert math.isfinite(summary["max_ratio"]) and summary["max_ratio"] >= summary["median_ratio"]

    # what main() returns is what it wrote, and the Markdown table was printed
    assert report["sizes"][0]["summary"] == summary
    printed = capsys.readouterr().out
    assert "| query | exact ms | DP ms | ratio | rel. error |" in printed
    assert all(f"| {n}" in printed for n in names)


def test_bench_records_a_failing_query_and_goes_on(tmp_path: Path, monkeypatch) -> None:
    bench = load_bench("queries")
    ok = bench.QUERIES[0]
    bad = bench.Query("row_level", "SELECT amount FROM transactions", "scalar")
    monkeypatch.setattr(bench, "QUERIES", [bad, ok])
    report = bench.main(
        ["--rows", "20000", "--runs", "1", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "q.json")]
    )
    rows = report["sizes"][0]["queries"]
    assert [r["name"] for r in rows] == ["row_level", ok.name]
    assert "error" in rows[0] and "error" not in rows[1]
    assert report["sizes"][0]["summary"]["failed"] == ["row_level"]
    assert "row_level" in report["sizes"][0]["summary"]["over_target"]


def test_bench_exact_sql_points_at_raw_relations() -> None:
    bench = load_bench("queries")
    from gateway.engines.duckdb import DuckDBEngine

    sql = bench.exact_sql(
        "SELECT c.student, COUNT(*) FROM transactions t JOIN card_customers c ON t.customer_id = c.customer_id GROUP BY c.student",
        DuckDBEngine,
    )
    assert '"src__cards__transactions" AS t' in sql
    assert '"src__cards__card_customers" AS c' in sql
    plain = bench.exact_sql("SELECT COUNT(*) FROM transactions WHERE amount > 1", DuckDBEngine, bounded=True)
    assert '"bnd__cards__transactions" AS transactions' in plain
