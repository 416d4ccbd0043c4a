"""Smoke test of the load benchmark (bench/load.py --quick): a real server under mixed traffic from 8
threads — cached, uncached, refused — and the benchmark's own audit of the ledger: no level spent past
its total, spent equal to the entries, every answer received charged, no 5xx."""
from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import load_bench


def test_bench_load_quick(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bench = load_bench("load")
    out = tmp_path / "load.json"
    report = bench.main(["--quick", "--out", str(out)])

    assert report["ok"], report["checks"]
    assert json.loads(out.read_text())["checks"] == report["checks"]
    assert report["requests"] == 150 and report["per_second"] > 0 and report["p99_ms"] >= report["p50_ms"] > 0
    outcomes = report["by_outcome"]
    assert outcomes["error"]["n"] == 0
    assert outcomes["uncached"]["n"] > 0 and outcomes["cached"]["n"] > 0 and outcomes["refused"]["n"] > 0
    audit = report["audit"]
    assert audit["entries"] == outcomes["uncached"]["n"]  # each charge is one uncached answer received
    assert audit["released_not_charged"] == 0 and audit["overspent"] == [] and audit["verify"] == []
    for level in audit["levels"].values():
        assert level["epsilon_spent"] <= level["epsilon_total"]
    assert "req/s" in capsys.readouterr().out
