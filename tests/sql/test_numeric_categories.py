"""A category column whose public categories are numbers (the demo loans' `term`: 36 or 60 months) is a
number in queries: it compares with numbers, takes arithmetic and aggregates, and groups into its
categories as numbers; a column of text categories stays text."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gateway.catalog import ColumnMeta
from gateway.core import Gateway
from gateway.demo_data import load_loans, loans_columns
from gateway.engines.duckdb import DuckDBEngine
from gateway.errors import QueryError
from gateway.sql.release import main_query
from gateway.sql.scalar import NUM, STR, numeric_categories
from tests.conftest import make_gateway

COLUMNS = {
    "cid": {"type": "id"},
    "term": {"type": "category", "categories": [36, 60]},
    "tier": {"type": "category", "categories": [1, 2, 3], "nullable": True},
    "grade": {"type": "category", "categories": ["A", "B"]},
    "amount": {"type": "float", "lower": 0, "upper": 100},
}
META = {
    "name": "nc",
    "privacy_unit": "cid",
    "budget": {"epsilon": 1000, "delta": 1e-5},
    "tables": {
        "t": {"source": "raw_t", "max_rows_per_unit": 1, "columns": COLUMNS},
        # the same rows, public: answered exactly, so values can be checked to the unit
        "p": {"source": "raw_t", "max_rows_per_unit": 1, "public": True, "columns": COLUMNS},
    },
}


def frame(n: int = 2000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    term = rng.choice([36, 60], n, p=[0.7, 0.3]).astype(np.int64)
    term[:5] = 99  # a value outside the public categories: clamped in aggregates, never a released key
    tier = pd.array(rng.integers(1, 4, n), dtype="Int64")
    tier[rng.random(n) < 0.1] = pd.NA
    return pd.DataFrame(
        {
            "cid": np.arange(n),
            "term": term,
            "tier": tier,
            "grade": rng.choice(["A", "B"], n),
            "amount": rng.uniform(0, 100, n).round(2),
        }
    )


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return frame()


@pytest.fixture(scope="module")
def gw(data: pd.DataFrame) -> Gateway:
    return make_gateway({"raw_t": data}, META)


def exact(gw: Gateway, sql: str) -> list[list]:
    answer = gw.query("nc", sql, epsilon=1.0)
    assert float(answer.cost.epsilon) == 0  # the public table: exact and free
    return answer.rows


def test_numeric_categories_are_read_from_the_metadata() -> None:
    assert numeric_categories(ColumnMeta(**loans_columns()["term"])) == (36, 60)
    assert numeric_categories(ColumnMeta(type="category", categories=["36", "60"])) is None  # declared as text
    assert numeric_categories(ColumnMeta(type="category", categories=[36, "other"])) is None
    assert numeric_categories(ColumnMeta(type="category", categories=[True, False])) is None
    assert numeric_categories(ColumnMeta(type="category")) is None


@pytest.mark.parametrize(
    ("where", "keep"),
    [
        ("term = 36", lambda d: d.term == 36),
        ("term = '36'", lambda d: d.term == 36),  # a number written as text, as before
        ("36 = term", lambda d: d.term == 36),
        ("term <> 36", lambda d: d.term != 36),
        ("term > 40", lambda d: d.term > 40),
        ("term IN (36, 60)", lambda d: d.term.isin([36, 60])),
        ("term IN ('60', 99)", lambda d: d.term.isin([60, 99])),
        ("term BETWEEN 30 AND 40", lambda d: d.term.between(30, 40)),
        ("term / 12 = 5", lambda d: d.term == 60),
        ("term = 36 AND grade = 'A'", lambda d: (d.term == 36) & (d.grade == "A")),
        ("tier IS NULL", lambda d: d.tier.isna()),
        ("tier >= 2", lambda d: d.tier.fillna(0) >= 2),
    ],
)
def test_where_compares_numeric_categories_with_numbers(gw: Gateway, data: pd.DataFrame, where: str, keep) -> None:  # type: ignore[no-untyped-def]
    assert exact(gw, f"SELECT COUNT(*) FROM p WHERE {where}") == [[int(keep(data).sum())]]
    private = gw.query("nc", f"SELECT COUNT(*) FROM t WHERE {where}", epsilon=1.0)  # answered, charged
    assert float(private.cost.epsilon) == 1.0


def test_the_demo_loans_term_compares_with_a_number() -> None:
    engine = DuckDBEngine(None, seed="test-seed")
    loans = load_loans()
    engine.load_frame("raw_loans", loans)
    gw = Gateway(engine)
    gw.register({
        "name": "lending", "privacy_unit": "borrower_id", "budget": {"epsilon": 100, "delta": 1e-5},
        "tables": {"loans": {"source": "raw_loans", "max_rows_per_unit": 1, "columns": loans_columns()}},
    })  # fmt: skip
    answer = gw.query("lending", "SELECT COUNT(*) AS n FROM loans WHERE term = 36", epsilon=5.0)
    true = int((loans.term == 36).sum())
    assert abs(answer.rows[0][0] - true) < 30  # Laplace of scale 0.2: 30 is 150 scales
    grouped = gw.query("lending", "SELECT term, COUNT(*) AS n FROM loans GROUP BY term ORDER BY term", epsilon=5.0)
    assert [r[0] for r in grouped.rows] == [36, 60]
    assert all(type(r[0]) is int for r in grouped.rows)


def test_group_by_a_numeric_category_has_its_public_domain_as_numbers(gw: Gateway) -> None:
    plan = gw.plan("nc", "SELECT term, tier, COUNT(*) FROM t GROUP BY term, tier", epsilon=1.0)
    assert plan.selection == "public" and float(plan.cost.delta) == 0  # no threshold: the keys are public
    assert [k.type for k in plan.keys] == [NUM, NUM]
    assert [k.domain for k in plan.keys] == [(36, 60), (1, 2, 3, None)]  # a nullable category's NULL too
    answer = gw.query("nc", "SELECT term, COUNT(*) AS n FROM t GROUP BY term", epsilon=1.0)
    assert sorted(r[0] for r in answer.rows) == [36, 60]  # 99 is in the data, not in the public domain
    assert all(type(r[0]) is int for r in answer.rows)
    text = gw.plan("nc", "SELECT grade, COUNT(*) FROM t GROUP BY grade", epsilon=1.0)
    assert text.keys[0].type == STR and text.keys[0].domain == ("A", "B")


def test_public_groups_of_a_numeric_category_are_numbers(gw: Gateway, data: pd.DataFrame) -> None:
    rows = exact(gw, "SELECT term, COUNT(*) AS n FROM p GROUP BY term ORDER BY term")
    assert rows == [[int(v), int(c)] for v, c in sorted(data.term.value_counts().items())]
    assert all(type(r[0]) is int for r in rows)


def test_having_and_order_by_over_a_numeric_key(gw: Gateway) -> None:
    having = gw.query("nc", "SELECT term, COUNT(*) AS n FROM t GROUP BY term HAVING term > 40", epsilon=1.0)
    assert [r[0] for r in having.rows] == [60]
    ordered = gw.query("nc", "SELECT term, COUNT(*) AS n FROM t GROUP BY term ORDER BY term DESC", epsilon=1.0)
    assert [r[0] for r in ordered.rows] == [60, 36]
    derived = gw.query("nc", "SELECT term / 12 AS years, COUNT(*) AS n FROM t GROUP BY term ORDER BY 1", epsilon=1.0)
    assert [r[0] for r in derived.rows] == [3, 5]


def test_aggregates_clamp_to_the_categories_range_in_the_engine(gw: Gateway, data: pd.DataFrame) -> None:
    clipped = data.term.clip(36, 60)
    [[total, mean, years]] = exact(gw, "SELECT SUM(term), AVG(term), SUM(term / 12) FROM p")
    assert total == pytest.approx(float(clipped.sum()))
    assert mean == pytest.approx(float(clipped.mean()))
    assert years == pytest.approx(float((clipped / 12).sum()))
    plan = gw.plan("nc", "SELECT SUM(term), MEDIAN(term) FROM t", epsilon=1.0)
    sql = main_query(plan).sql(dialect="duckdb")  # type: ignore[union-attr]
    assert "< 36 THEN 36" in sql and "> 60 THEN 60" in sql  # enforced, not only inferred
    [measure] = [m for m in plan.measures if m.kind == "sum"]
    assert measure.sensitivity == 60  # k = 1 row per unit, |value| <= 60
    [quantile] = [m for m in plan.measures if m.kind == "quantile"]
    assert (quantile.lower, quantile.upper, quantile.value_integer) == (36, 60, True)
    [[median]] = gw.query("nc", "SELECT MEDIAN(term) FROM t", epsilon=50.0).rows
    assert 36 <= median <= 60


def test_a_text_category_stays_text(gw: Gateway) -> None:
    assert exact(gw, "SELECT COUNT(*) FROM p WHERE grade = 'A'")[0][0] > 0
    for sql in ("SELECT COUNT(*) FROM t WHERE grade = 5", "SELECT COUNT(*) FROM t WHERE grade IN (1, 2)",
                "SELECT COUNT(*) FROM t WHERE 5 < grade"):
        with pytest.raises(QueryError) as info:
            gw.plan("nc", sql, epsilon=1.0)
        assert info.value.code == "unsupported_sql"
        assert "grade, a column of text categories, with a number" in info.value.message
        assert "write the value as text" in info.value.message
    with pytest.raises(QueryError) as info:
        gw.plan("nc", "SELECT SUM(grade) FROM t", epsilon=1.0)
    assert info.value.code == "unsupported_sql"


def test_a_numeric_category_with_text_that_is_no_number_is_refused(gw: Gateway) -> None:
    for sql in ("SELECT COUNT(*) FROM t WHERE term = 'short'", "SELECT COUNT(*) FROM t WHERE term IN (36, 'x')",
                "SELECT COUNT(*) FROM t WHERE term LIKE '3%'", "SELECT COUNT(*) FROM t WHERE term = TRUE"):
        with pytest.raises(QueryError) as info:
            gw.plan("nc", sql, epsilon=1.0)
        assert info.value.code == "unsupported_sql", info.value.message
    with pytest.raises(QueryError) as info:
        gw.plan("nc", "SELECT COUNT(*) FROM t WHERE term = 'short'", epsilon=1.0)
    assert "term, a column of numeric categories, with the text 'short'" in info.value.message


def test_an_empty_in_list_is_refused(gw: Gateway) -> None:
    for sql in ("SELECT COUNT(*) FROM t WHERE term IN", "SELECT COUNT(*) FROM t WHERE term IN ()"):
        with pytest.raises(QueryError) as info:
            gw.plan("nc", sql, epsilon=1.0)
        assert info.value.code == "invalid_sql" and "IN needs a list" in info.value.message
