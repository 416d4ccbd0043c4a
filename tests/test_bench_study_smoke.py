"""Smoke test of the study (bench/study.py) in quick mode: every method trains through the service, is
audited, and lands in the Markdown table under the DP ceiling where it is private."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_bench
from tests.training.conftest import _IGNORED

pytestmark = [pytest.mark.filterwarnings(spec) for spec in _IGNORED]


def test_study_quick_credit(tmp_path: Path) -> None:
    study = load_bench("study")
    report = study.main([
        "--quick", "--tasks", "credit", "--epsilons", "3", "--n-reference", "2",
        "--docs", str(tmp_path / "docs"), "--data-dir", str(tmp_path / "data"),
    ])  # fmt: skip
    rows = report["rows"]
    assert [(r["method"], r["target_epsilon"]) for r in rows] == [("nonprivate", None), ("dpsgd", 3.0), ("pate", 3.0)]
    for r in rows:
        assert r["status"] == "succeeded", r.get("error")
        assert 0.0 <= r["exact"] <= 1.0
        attacks = r["audit"]["attacks"]
        assert set(attacks) == {"loss_threshold", "lira_offline"}
        if r["method"] != "nonprivate":
            assert 0 < r["cost"]["epsilon"] <= 3.0 and r["audit"]["ceiling"]["any_exceeds"] is False
    text = (tmp_path / "docs" / "study.md").read_text()
    assert "| dpsgd |" in text and "| pate |" in text and "| nonprivate |" in text
    pngs = sorted(p.name for p in (tmp_path / "docs" / "study").iterdir())
    assert "credit_dpsgd_3.0_roc.png" in pngs and "credit_pate_3.0_violin.png" in pngs


def test_the_before_after_table_measures_each_gap_against_its_own_runs_non_private_model() -> None:
    study = load_bench("study")
    rows = [{"method": "nonprivate", "target_epsilon": None, "status": "succeeded", "exact": 0.85},
            {"method": "dpsgd", "target_epsilon": 5.4, "status": "succeeded", "exact": 0.81},
            {"method": "dpsgd", "target_epsilon": 12.6, "status": "succeeded", "exact": 0.80},
            {"method": "pate", "target_epsilon": 5.4, "status": "failed", "exact": None}]  # fmt: skip
    table = study.before_after("vision", rows)
    line = {r.split(" | ")[0].strip("| ") + " " + r.split(" | ")[1]: r for r in table if r.startswith("| ") and "---" not in r}
    assert line["dpsgd 5.4"] == "| dpsgd | 5.4 | 0.617 | 0.217 | 0.810 | 0.040 | 0.05 | yes |"
    assert line["dpsgd 12.6"] == "| dpsgd | 12.6 | 0.675 | 0.159 | 0.800 | 0.050 | 0.03 | no |"
    assert line["pate 5.4"] == "| pate | 5.4 | 0.285 | 0.549 | – | – | 0.10 | – |"  # failed: no figure, not met
    assert line["nonprivate –"].startswith("| nonprivate | – | 0.834 | – | 0.850 | – |")
