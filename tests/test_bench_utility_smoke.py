"""Smoke test of the utility benchmark (bench/utility.py): it runs end to end on the demo data, scores
every form against both exact answers, and compares runs; plus its two scoring pieces on their own (the
clamped reference SQL, coverage from per-value intervals or from a per-column ci95)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import pytest

from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    return load_bench("utility")


def test_bench_utility_quick(bench, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "results" / "utility.json"
    report = bench.main(["--quick", "--runs", "2", "--data-dir", str(tmp_path / "data"), "--json", str(out)])

    data = json.loads(out.read_text())
    assert data["system"] == "dpgate" and data["args"]["runs"] == 2 and data["args"]["transactions_rows"] == 20_000
    assert [r["name"] for r in data["forms"]] == [f.name for f in bench.FORMS]
    assert len(data["forms"]) >= 15
    by_name = {r["name"]: r for r in data["forms"]}
    for r in data["forms"]:
        if "error" in r:  # only a typed refusal (a form of a later issue), never a crash
            assert r["error_code"] == "unsupported_sql", r
            continue
        assert r["exact_bounded"] and r["exact_raw"], r["name"]
        assert len(r["runs"]["vs_bounded"]) == 2 and len(r["runs"]["vs_raw"]) == 2
        if r["kind"] == "topk":
            assert 0 <= r["topk_match"] <= 1 and 0 <= r["topk_match_raw"] <= 1
            continue
        assert r["rel_error"] is not None and r["rel_error"] >= 0, r["name"]
        assert r["rel_error_raw"] is not None and r["rel_error_raw"] >= 0, r["name"]
        assert r["coverage"] is None or 0 <= r["coverage"] <= 1
        assert 0 <= r["stated"] <= 1
    # the forms every version answers, with an interval stated for each released count
    for name in ("count", "grade_count", "state_count", "avg", "tx_count", "income_band_count"):
        assert "error" not in by_name[name], by_name[name]
    assert by_name["count"]["stated"] == 1 and by_name["grade_count"]["cells"] == 2 * 7
    assert 0 < by_name["income_band_count"]["released_share"] <= 1  # threshold selection drops groups
    # the bounded reference reads the capped rows (300 per customer), the raw one all of them
    assert by_name["tx_count"]["exact_bounded"][0][0] <= by_name["tx_count"]["exact_raw"][0][0] == 20_000

    printed = capsys.readouterr().out
    assert "| form | dataset | rel. error vs bounded | rel. error vs raw |" in printed
    assert report["forms"][0]["name"] == "count"

    # --load + --compare: against itself every ratio is 1; against a Tumult file the target is judged
    tumult = tmp_path / "tumult.json"
    tumult.write_text(json.dumps({"system": "tumult", "version": "x", "forms": [
        {"name": "count", "kind": "scalar", "dataset": "lending", "rel_error": 1.0, "rel_error_raw": 1.0},
        {"name": "avg", "kind": "scalar", "dataset": "lending", "rel_error": 1e-12, "rel_error_raw": 1e-12}]}))
    again = bench.main(["--load", str(out), "--compare", str(out), "--compare", str(tumult)])
    self_cmp, tumult_cmp = again["comparisons"][str(out)], again["comparisons"][str(tumult)]
    ratios = [v["ratio_vs_raw"] for v in self_cmp["per_form"].values() if v["ratio_vs_raw"] is not None]
    assert ratios and all(x == 1 for x in ratios)
    assert tumult_cmp["forms"] == 2 and tumult_cmp["over_target"] == tumult_cmp["over_target_noise"] == ["avg"]
    assert "Target dpgate ≤ 0.7× Tumult's error" in capsys.readouterr().out


def test_reference_sql_clamps_inside_aggregates_only(bench) -> None:  # type: ignore[no-untyped-def]
    con = duckdb.connect()
    con.execute("CREATE TABLE raw_t AS SELECT * FROM (VALUES (1, -5.0), (2, 50.0), (3, NULL), (30, 7.0)) v(k, x)")
    bounds = {"x": (0.0, 10.0), "k": (0, 20)}
    sql = "SELECT FLOOR(k / 10) AS b, SUM(x) AS s, COUNT(x) AS c FROM t WHERE x > 0 GROUP BY FLOOR(k / 10) ORDER BY b"
    clamped = con.execute(bench.reference_sql(sql, {"t": "raw_t"}, bounds)).fetchall()
    raw = con.execute(bench.reference_sql(sql, {"t": "raw_t"})).fetchall()
    # WHERE and the key read raw values (k = 30 keeps its own group); x = 50 is clamped to 10 in the SUM
    assert raw == [(0.0, 50.0, 1), (3.0, 7.0, 1)]
    assert clamped == [(0.0, 10.0, 1), (3.0, 7.0, 1)]
    # NULL stays NULL (DuckDB's LEAST/GREATEST alone would turn it into a bound)
    assert con.execute(bench.reference_sql("SELECT COUNT(x) AS c, MEDIAN(x) AS m FROM t", {"t": "raw_t"}, bounds)).fetchall() == [(3, 7.0)]
    q = bench.reference_sql("SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY x) AS p FROM t", {"t": "raw_t"}, bounds)
    assert con.execute(q).fetchall() == [(7.0,)]


def test_score_uses_per_value_intervals_else_ci95(bench) -> None:  # type: ignore[no-untyped-def]
    form = bench.Form("g", "lending", "SELECT grade, COUNT(*) AS n FROM loans GROUP BY grade", "group", 1)
    exact = [("A", 100), ("B", 10), ("C", 5)]
    rows = [["A", 104], ["B", 10], ["D", 1]]  # C not released, D not in the data
    per_value = bench.score(form, ["grade", "n"], rows, {"n": [[103, 105], [9, 11], None]}, {"n": 3.0}, exact)
    assert (per_value["cells"], per_value["missing"], per_value["extra"]) == (2, 1, 1)
    assert (per_value["stated"], per_value["covered"], per_value["interval_source"]) == (2, 1, ["intervals"])
    assert math.isclose(per_value["rel_error"], (0.04 + 0.0) / 2)
    by_column = bench.score(form, ["grade", "n"], rows, None, {"n": 5.0}, exact)
    assert (by_column["stated"], by_column["covered"], by_column["interval_source"]) == (2, 2, ["ci95"])
    none = bench.score(form, ["grade", "n"], rows, None, {"n": None}, exact)
    assert none["stated"] == 0 and none["covered"] == 0
