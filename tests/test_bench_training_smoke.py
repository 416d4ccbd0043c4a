"""Smoke test of the training benchmark (bench/training.py) on tiny sizes: it runs end to end and writes
finite per-epoch timings and ROC-AUCs in [0, 1]."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import load_bench
from tests.training.conftest import _IGNORED  # third-party warnings on training threads (see there)

pytestmark = [pytest.mark.filterwarnings(spec) for spec in _IGNORED]



def test_bench_training_smoke(tmp_path: Path, capsys) -> None:
    bench = load_bench("training")
    out = tmp_path / "results" / "training.json"
    report = bench.main([
        "--rows", "20000", "--batches", "256", "--epsilons", "3", "--auc-rows", "20000",
        "--datasets", "card_customers", "--repeats", "1", "--step-budget", "0.5",
        "--data-dir", str(tmp_path / "data"), "--out", str(out),
    ])  # fmt: skip
    data = json.loads(out.read_text())
    assert data["timing"]["rows"] == report["timing"]["rows"]

    timing = data["timing"]["rows"]
    assert {r["mode"] for r in timing} == {"nonprivate", data["timing"]["auto_mode"]}
    for r in timing:
        assert r["batch"] == 256
        assert math.isfinite(r["epoch_s"]) and r["epoch_s"] > 0
        assert math.isfinite(r["s_per_step"]) and r["s_per_step"] > 0
        if r["mode"] != "nonprivate":
            assert math.isfinite(r["ratio"]) and r["ratio"] > 0

    auc = data["auc"]["rows"]
    assert [(r["task"], r["method"], r["epsilon"]) for r in auc] == [
        ("card_customers", "nonprivate", None), ("card_customers", "dpsgd", 3.0)
    ]
    for r in auc:
        assert r["status"] == "succeeded", r
        assert 0.0 <= r["exact_auc"] <= 1.0
    assert 0.0 <= auc[1]["dp_auc"] <= 1.0
    assert math.isfinite(auc[1]["gap"])

    printed = capsys.readouterr().out
    assert "| batch | mode |" in printed and "| table | units | label |" in printed
