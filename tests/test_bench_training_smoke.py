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
        "--datasets", "card_customers", "--repeats", "1", "--auc-repeats", "2", "--step-budget", "0.5",
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
        ("card_customers", "nonprivate", None), ("card_customers", "nonprivate_dp_params", None),
        ("card_customers", "dpsgd", 3.0),
    ]  # fmt: skip
    for r in auc:
        assert r["failed"] == 0 and len(r["runs"]) == 2, r
        assert all(x["status"] == "succeeded" and 0.0 <= x["exact_auc"] <= 1.0 for x in r["runs"])
        assert r["exact_auc"] == pytest.approx(sum(x["exact_auc"] for x in r["runs"]) / 2)
    np_, np_same, dp = auc
    assert np_["dp_auc"] is None and np_same["dp_auc"] is None and 0.0 <= dp["dp_auc"] <= 1.0
    # the gap of a repeat is against the better non-private model of that repeat (same split)
    gaps = [max(a["exact_auc"], b["exact_auc"]) - c["exact_auc"]
            for a, b, c in zip(np_["runs"], np_same["runs"], dp["runs"], strict=True)]  # fmt: skip
    assert dp["gap"] == pytest.approx(sum(gaps) / 2) and math.isfinite(dp["gap_se"])
    assert np_same["params"]["hidden"] == [] and np_same["params"]["batch_size"] == 1024

    printed = capsys.readouterr().out
    assert "| batch | mode |" in printed and "| table | units | label |" in printed
