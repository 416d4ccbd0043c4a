"""The command line: the demo answers its examples, charges them, and hands out a working key."""
from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from budget.ledger import Ledger
from gateway.cli import DEMO_QUERIES, app


def test_demo_answers_examples_and_prints_a_key(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DPGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--rows", "20000"])
    assert result.exit_code == 0, result.output
    assert result.output.count("cost: ε=") == len(DEMO_QUERIES)
    key = re.search(r"analyst \S+ key \(shown once\):\s*(dpg_\S+)", result.output)
    assert key, result.output
    assert "curl -s http://127.0.0.1:8000/v1/queries" in result.output
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    analyst = ledger.authenticate(key.group(1))
    assert analyst is not None and analyst.role == "analyst"
    charged = ledger.entries(analyst=analyst.name)
    assert len(charged) == len(DEMO_QUERIES)
    assert sum(e["epsilon"] for e in charged) == sum(q[2] for q in DEMO_QUERIES)
    ledger.close()


def test_query_without_key_is_refused() -> None:
    result = CliRunner().invoke(app, ["query", "SELECT COUNT(*) FROM loans", "--url", "http://127.0.0.1:9"], env={"DPGATE_KEY": ""})
    assert result.exit_code == 2 and "API key" in result.output
