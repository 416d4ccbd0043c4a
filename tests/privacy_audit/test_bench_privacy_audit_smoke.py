"""Smoke test of bench/privacy_audit.py with few samples: every case runs, the table and the JSON report
are written, no real mechanism is flagged, and the blatant positive controls are caught."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import load_bench
from tests.privacy_audit.cases import ALL_CASES


def test_bench_privacy_audit_smoke(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bench = load_bench("privacy_audit")
    out = tmp_path / "audit.json"
    report = bench.main(["--samples", "800", "--answer-samples", "150", "--alpha", "1e-4", "--out", str(out)])
    table = capsys.readouterr().out
    assert "| mechanism / query | claimed ε | δ | ε lower bound | samples | verdict |" in table

    data = json.loads(out.read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert list(rows) == [c.name for c in ALL_CASES]
    for case in ALL_CASES:
        r = rows[case.name]
        assert r["samples"] == (150 if case.note == "answers" else 800), r
        assert 0 <= r["epsilon_lower_bound"] < 100 and r["epsilon"] > 0, r
        assert r["name"] in table
        if not case.expect_caught:
            assert r["verdict"] == "pass", r
    for name in ("control: Laplace, sensitivity understated 4×", "control: DP-SGD step q=1, noise σC/B"):
        assert rows[name]["verdict"] == "caught", rows[name]
    assert report["rows"] == data["rows"]


def test_bench_privacy_audit_options(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bench = load_bench("privacy_audit")
    listed = bench.main(["--list", "--only", "LaplaceCount", "--only", "understated 4"])
    assert listed["cases"] == ["LaplaceCount (Δ=5)", "control: Laplace, sensitivity understated 4×"]
    report = bench.main(["--samples", "2000", "--only", "understated 4", "--out", str(tmp_path / "a.json")])
    assert report["ok"] and [r["verdict"] for r in report["rows"]] == ["caught"]
    assert "| control: Laplace, sensitivity understated 4× | 1 | 0 |" in capsys.readouterr().out
