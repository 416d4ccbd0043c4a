"""Smoke test of the scale benchmark (bench/scale.py): the overhead part in the default run (in-process
and one `dpgate serve`); the replicas (gunicorn workers on PostgreSQL) and training (in-process against a
`dpgate worker` on Redis) parts, which start several processes, are `slow`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_bench


def test_bench_scale_overhead_smoke(tmp_path: Path) -> None:
    bench = load_bench("scale")
    out = tmp_path / "scale.json"
    bench.main(["--quick", "--parts", "overhead", "--out", str(out)])
    o = json.loads(out.read_text())["overhead"]
    for path in ("exact engine query", "Gateway.query (plan, engine, noise)", "app in-process (no socket)", "HTTP (dpgate serve, one client)"):
        assert o[path] > 0, path
    split = o["split_ms"]
    assert split["ledger charge (one transaction, fsync)"] > 0 and split["planning"] > 0 and split["auth (key hash + lookup)"] > 0
    assert split["engine + noise (release)"] >= split["  of which timing padding (sleep)"] >= 0  # the padding is part of release


@pytest.mark.slow
def test_bench_scale_replicas_and_training_smoke(tmp_path: Path) -> None:
    bench = load_bench("scale")
    out = tmp_path / "scale.json"
    bench.main(["--quick", "--parts", "replicas", "training", "--redis", "redis://127.0.0.1:6379/8", "--out", str(out)])
    data = json.loads(out.read_text())
    assert set(data["replicas"]) == {"1", "2"}
    for r in data["replicas"].values():
        assert abs(r["epsilon_spent"] - r["epsilon_expected"]) < 1e-9  # exact over the processes
        assert r["uncached"]["per_second"] > 0 and r["cached"]["p99_ms"] > 0
    assert set(data["training"]) == {"no job", "in-process", "worker"}
    assert data["training"]["worker"]["job_final"] == "succeeded" and data["training"]["in-process"]["job_final"] == "succeeded"
