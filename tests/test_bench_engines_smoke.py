"""Smoke test of the engine benchmark (bench/engines.py) on a tiny table, one engine per test: every
query comes back with positive timings and a finite DP / exact ratio, and the tables are printed.
PostgreSQL and Spark run where their engine modules import (and their server or JVM is there).

DuckDB (~8 s) and PostgreSQL run in the default suite; Spark is `slow` (-m slow): starting its JVM
and registering even 20k rows takes 45-120 s on 2 cores, most of it fixed cost of the engine."""
from __future__ import annotations

import importlib
import math
import shutil
import uuid
from pathlib import Path

import pytest

from tests.conftest import load_bench


def _unavailable(engine: str) -> str | None:
    """Why `engine` cannot run here, or None."""
    if engine == "duckdb":
        return None
    try:
        importlib.import_module(f"gateway.engines.{engine}")
    except ImportError as e:
        return f"gateway.engines.{engine} does not import ({e})"
    if engine == "spark" and shutil.which("java") is None:
        return "no java on PATH for Spark"
    if engine == "postgres":
        import psycopg

        from gateway.settings import load_settings

        try:
            psycopg.connect(load_settings().engines.postgres.url, connect_timeout=3).close()
        except psycopg.OperationalError as e:
            return f"PostgreSQL is not reachable ({type(e).__name__})"
    return None


@pytest.mark.parametrize("engine", ["duckdb", "postgres", pytest.param("spark", marks=pytest.mark.slow)])
def test_bench_engines_smoke(engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    why = _unavailable(engine)
    if why:
        pytest.skip(why)
    bench = load_bench("engines")
    out = tmp_path / "engines.json"
    report = bench.main([
        "--rows", "20k", "--runs", "1", "--warmup", "0", "--engines", engine,
        "--data-dir", str(tmp_path / "data"), "--json", str(out), "--pg-schema", f"dpgate_bench_{uuid.uuid4().hex[:8]}",
    ])

    assert out.exists()
    (size,) = report["sizes"]
    assert size["rows"] == 20_000
    (phase,) = size["engines"]
    assert phase["engine"] == engine
    assert "error" not in phase and phase["stage"] == "done", phase.get("error")
    assert phase["register_s"] > 0 and phase["transactions"]["raw_rows"] == 20_000
    assert phase["peak_rss_python"] > 0
    if engine == "postgres":
        assert phase["load_s"] > 0  # the COPY, timed apart from the bounding
    names = [q.name for q in bench.QUERIES]
    assert len(names) >= 10 and [q["name"] for q in phase["queries"]] == names
    for q in phase["queries"]:
        assert "error" not in q, q
        assert q["exact_ms"] > 0 and q["dp_ms"] > 0 and q["gateway_sql_ms"] > 0, q["name"]
        assert math.isfinite(q["ratio"]) and q["ratio"] > 0, q["name"]
        assert len(q["runs_ms"]["dp"]) == 1 and q["exact_answer"], q["name"]
    assert any(q.delta > 0 for q in bench.QUERIES) and any(not q.in_target for q in bench.QUERIES)
    assert phase["summary"]["answered"] == len(names)

    printed = capsys.readouterr().out
    assert "| engine | query | exact ms | gateway SQL ms | DP ms | DP / exact |" in printed
    assert all(f"| {engine} | {n}" in printed for n in names)
    assert "### Registration and memory" in printed and f"**{engine}**" in printed
    # nothing left behind: the engine file (DuckDB), the warehouse (Spark)
    assert not list((tmp_path / "data").glob("engines_*"))
