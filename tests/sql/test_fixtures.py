"""The SQL fixture files: every accepted case is answered, every refused case gets its code."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.core import Gateway
from gateway.errors import QueryError

FIXTURES = Path(__file__).parent / "fixtures"


def load_cases(name: str) -> list[dict]:
    text = (FIXTURES / name).read_text()
    cases = []
    for block in re.split(r"\n(?=-- title:)", text):
        if not re.search(r"^-- title:", block, flags=re.M):
            continue
        meta = dict(re.findall(r"^-- (\w+): (.*)$", block, flags=re.M))
        sql = "\n".join(line for line in block.splitlines() if not re.match(r"^-- \w+: ", line)).strip()
        cases.append({**meta, "sql": sql})
    return cases


ACCEPTED = load_cases("accepted.sql")
REFUSED = load_cases("refused.sql")


def test_fixture_files_are_parsed() -> None:
    assert len(ACCEPTED) >= 35 and len(REFUSED) >= 40


@pytest.mark.parametrize("case", ACCEPTED, ids=[c["title"] for c in ACCEPTED])
def test_accepted(bank: Gateway, case: dict) -> None:
    delta = float(case.get("delta", 0))
    answer = bank.query("bank", case["sql"], epsilon=1.0, delta=delta)
    if "columns" in case:
        assert answer.columns == [c.strip() for c in case["columns"].split(",")]
    if "rows" in case:
        assert len(answer.rows) == int(case["rows"])
    assert set(answer.accuracy) == set(answer.columns)
    assert all(len(r) == len(answer.columns) for r in answer.rows)
    public = "rates" in case["sql"]
    assert float(answer.cost.epsilon) == (0.0 if public else 1.0)
    assert float(answer.cost.delta) <= delta


@pytest.mark.parametrize("case", REFUSED, ids=[c["title"] for c in REFUSED])
def test_refused(bank: Gateway, case: dict) -> None:
    with pytest.raises(QueryError) as info:
        bank.plan("bank", case["sql"], epsilon=1.0)
    assert info.value.code == case["code"], info.value.message
    if "construct" in case:
        assert case["construct"].lower() in (info.value.construct or "").lower(), info.value.construct
