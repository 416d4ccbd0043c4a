"""Smoke test of the proof suite's one command (bench/security.py): a quick part runs and its table lands."""
from __future__ import annotations

from pathlib import Path

from tests.conftest import load_bench


def test_security_quick_timing_part(tmp_path: Path) -> None:
    bench = load_bench("security")
    out = tmp_path / "security.md"
    assert bench.main(["--quick", "--only", "timing", "--out", str(out)]) == 0
    text = out.read_text()
    assert "## timing:" in text and "Spearman" in text and "All parts passed." in text
    assert "## load" not in text  # --only
