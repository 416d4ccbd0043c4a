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
