"""Edge cases of the query path (DESIGN.md §1–2), through the whole gateway.

NULLs, empty tables and empty selections, huge and non-finite values, unicode, expressions that fail on
some rows (division by zero, failing casts: they evaluate to NULL, and no query fails because of a value
in the data), the exact cost of a query, the free preview that reads no data, per-query bounding, public
tables, error positions, and row-level datasets. Exact per-cell aggregates are read with
`main_query(plan)` (the SQL the gateway runs before adding noise) so that checks do not depend on noise.
"""
from __future__ import annotations

import copy
import json
import math
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gateway.core import Gateway
from gateway.errors import InvalidRequest, QueryError, UnknownColumn, UnknownTable, UnsupportedSQL
from gateway.sql.release import Answer, Mechanisms, main_query
from tests.conftest import BANK, bank_frames, make_gateway

CATS = ["food", "travel", "tech", "café ☕"]


def ask(gw: Gateway, sql: str, *, epsilon: Any = 1, delta: Any = 0, dataset: str = "bank") -> Answer:
    answer = gw.query(dataset, sql, epsilon=epsilon, delta=delta)
    check_shape(answer)
    return answer


def check_shape(answer: Answer) -> None:
    assert set(answer.accuracy) == set(answer.columns)
    for row in answer.rows:
        assert len(row) == len(answer.columns)
        for v in row:
            assert not isinstance(v, float) or math.isfinite(v), row
    json.dumps(answer.to_json(), allow_nan=False)  # the answer can leave as strict JSON


def exact(gw: Gateway, sql: str, *, dataset: str = "bank", delta: float = 0) -> list[tuple]:
    """The exact per-cell aggregates the engine computes for `sql` (keys first, then the measures)."""
    q = main_query(gw.plan(dataset, sql, epsilon=1, delta=delta))
    return [] if q is None else gw.engine.execute(q)  # None: only quantiles, read by their own query


def scalar(gw: Gateway, sql: str) -> Any:
    return gw.engine._con.execute(sql).fetchone()[0]  # type: ignore[index]


def in_range(v: Any, lo: float, hi: float) -> bool:
    return v is None or lo <= v <= hi


def shape(answer: Answer) -> tuple:
    """What a response reveals besides its noisy values."""
    return (
        answer.columns,
        len(answer.rows),
        {k: (a.mechanism, a.scale) for k, a in answer.accuracy.items()},
        answer.cost,
    )


# --- NULLs ----------------------------------------------------------------------------------


def test_aggregates_over_a_nullable_column(bank: Gateway) -> None:
    a = ask(bank, "SELECT COUNT(qty), SUM(qty), AVG(qty), MEDIAN(qty), VARIANCE(qty), MIN(qty), MAX(qty) FROM tx")
    n, s, avg, med, var, lo, hi = a.rows[0]
    assert isinstance(n, int) and n >= 0
    assert s >= 0  # a sum of values clamped to [0, 10] is released clipped at 0
    assert in_range(avg, 0, 10) and in_range(med, 0, 10) and in_range(lo, 0, 10) and in_range(hi, 0, 10)
    assert in_range(var, 0, 50)  # the sample variance of values in [0, 10] is at most 2 * 5**2
    # the exact COUNT(qty) counts the non-NULL values only
    got = exact(bank, "SELECT COUNT(qty) FROM tx")[0][0]
    assert got == scalar(bank, "SELECT count(qty) FROM bnd__bank__tx")
    assert got < scalar(bank, "SELECT count(*) FROM bnd__bank__tx")


def test_a_nullable_categorys_null_group_is_present(bank: Gateway) -> None:
    a = ask(bank, "SELECT note, COUNT(*) AS n, AVG(qty) AS q FROM tx GROUP BY note")
    assert [r[0] for r in a.rows] == ["x", "y", None]  # 'z' is in the data but not public: never released
    cells = {r[0]: r[1] for r in exact(bank, "SELECT note, COUNT(*) FROM tx GROUP BY note")}
    assert {"x", "y", None} <= set(cells)  # the engine may group other values too; they are never released
    assert cells[None] == scalar(bank, "SELECT count(*) FROM bnd__bank__tx WHERE note IS NULL")
    b = ask(bank, "SELECT qty, COUNT(*) FROM tx GROUP BY qty")
    assert [r[0] for r in b.rows] == [*range(11), None]
    c = ask(bank, "SELECT COUNT(*) FROM tx WHERE note IS NULL AND qty IS NOT NULL")
    assert len(c.rows) == 1


def test_a_column_that_is_all_null() -> None:
    frames = bank_frames(n_customers=80)
    frames["raw_tx"]["qty"] = pd.array([pd.NA] * len(frames["raw_tx"]), dtype="Int64")
    frames["raw_tx"]["note"] = None
    gw = make_gateway(frames)
    for _ in range(3):
        a = ask(gw, "SELECT COUNT(qty), SUM(qty), AVG(qty), VARIANCE(qty), MEDIAN(qty) FROM tx")
        n, s, avg, var, med = a.rows[0]
        assert n >= 0 and s >= 0 and in_range(avg, 0, 10) and in_range(var, 0, 50) and in_range(med, 0, 10)
    assert exact(gw, "SELECT COUNT(qty), SUM(qty) FROM tx")[0] == (0, None)
    b = ask(gw, "SELECT note, COUNT(*) FROM tx GROUP BY note")
    assert [r[0] for r in b.rows] == ["x", "y", None]


# --- empty tables, empty selections, empty groups -----------------------------------------------


@pytest.fixture(scope="module")
def empty() -> Gateway:
    return make_gateway({name: frame.iloc[:0].copy() for name, frame in bank_frames().items()})


EMPTY_QUERIES = [
    ("SELECT COUNT(*) FROM tx", 0),
    ("SELECT COUNT(*), SUM(amount), AVG(amount), MEDIAN(amount), VARIANCE(amount), STDDEV(amount) FROM tx", 0),
    ("SELECT MIN(amount), MAX(amount), PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY amount) FROM tx", 0),
    ("SELECT cat, COUNT(*), SUM(amount), AVG(amount), MEDIAN(amount) FROM tx GROUP BY cat", 0),
    ("SELECT cat, flag, COUNT(*) FROM tx GROUP BY cat, flag", 0),
    ("SELECT cat FROM tx GROUP BY cat ORDER BY COUNT(*) DESC LIMIT 2", 0),
    ("SELECT city, COUNT(*) FROM tx GROUP BY city", 1e-5),
    ("SELECT COUNT(DISTINCT cid) FROM tx", 0),
    ("SELECT c.segment, AVG(t.amount) FROM tx t JOIN cust c ON t.cid = c.cid GROUP BY c.segment", 0),
    ("SELECT SUM(a.balance), COUNT(*) FROM tx t JOIN acct a ON t.cid = a.cid", 0),
    ("SELECT COUNT(*), AVG(rate) FROM rates", 0),
]


@pytest.mark.parametrize(("sql", "delta"), EMPTY_QUERIES, ids=[q[0][:60] for q in EMPTY_QUERIES])
def test_an_empty_table_still_answers(empty: Gateway, sql: str, delta: float) -> None:
    a = ask(empty, sql, delta=delta)
    if "GROUP BY cat" in sql and "LIMIT" not in sql:
        assert len(a.rows) == (8 if "flag" in sql else 4)
    for row in a.rows:
        for col, v in zip(a.columns, row):
            if col.startswith(("avg", "median", "min", "max", "percentile")):
                assert in_range(v, 0, 1000), (col, v)
    if "rates" in sql:
        assert a.rows == [[0, None]] and a.cost.epsilon == 0


def test_an_empty_table_has_no_exact_content(empty: Gateway) -> None:
    assert exact(empty, "SELECT COUNT(*), SUM(amount) FROM tx") == [(0, None)]
    assert exact(empty, "SELECT cat, COUNT(*) FROM tx GROUP BY cat") == []


def test_a_where_that_matches_nothing(bank: Gateway) -> None:
    sql = "SELECT COUNT(*), SUM(amount), AVG(amount), MEDIAN(amount), VARIANCE(amount) FROM tx WHERE amount < 0"
    assert exact(bank, sql)[0][:2] == (0, None)
    for _ in range(3):
        n, s, avg, med, var = ask(bank, sql).rows[0]
        assert n >= 0 and s >= 0 and in_range(avg, 0, 1000) and in_range(med, 0, 1000) and in_range(var, 0, 2 * 500**2)
    a = ask(bank, "SELECT cat, COUNT(*) AS n, AVG(amount) AS a FROM tx WHERE cat = 'nowhere' GROUP BY cat")
    assert [r[0] for r in a.rows] == CATS
    assert exact(bank, "SELECT cat, COUNT(*) FROM tx WHERE cat = 'nowhere' GROUP BY cat") == []
    b = ask(bank, "SELECT city, COUNT(*) FROM tx WHERE amount < 0 GROUP BY city", delta=1e-5)
    assert b.rows == []  # threshold selection releases no group that has no rows


def test_a_null_average_does_not_claim_to_be_exact(bank: Gateway) -> None:
    for _ in range(60):  # the noisy count of an empty selection is < 1 about half of the time
        a = ask(bank, "SELECT AVG(amount) AS a FROM tx WHERE amount < 0")
        if a.rows[0][0] is None:
            assert a.accuracy["a"].ci95 != 0.0
            return
    pytest.fail("no NULL average in 60 tries")


def test_every_public_category_appears_even_without_rows() -> None:
    frames = bank_frames()
    tx = frames["raw_tx"]
    frames["raw_tx"] = tx[tx.cat != "tech"].reset_index(drop=True)
    gw = make_gateway(frames)
    a = ask(gw, "SELECT cat, COUNT(*) AS n, SUM(amount) AS s, AVG(amount) AS a FROM tx GROUP BY cat")
    assert [r[0] for r in a.rows] == CATS
    assert "tech" not in {r[0] for r in exact(gw, "SELECT cat, COUNT(*) FROM tx GROUP BY cat")}
    for _, n, s, avg in a.rows:
        assert n >= 0 and s >= 0 and in_range(avg, 0, 1000)
    b = ask(gw, "SELECT cat, flag, COUNT(*) FROM tx GROUP BY cat, flag")
    assert sorted((r[0], r[1]) for r in b.rows) == sorted((c, f) for c in CATS for f in (False, True))
    c = ask(gw, "SELECT EXTRACT(month FROM ts) AS m, COUNT(*) FROM tx WHERE ts < '2025-02-01' GROUP BY m")
    assert [r[0] for r in c.rows] == list(range(1, 13))


# --- huge and non-finite values --------------------------------------------------------------


@pytest.fixture(scope="module")
def extreme() -> Gateway:
    frames = bank_frames()
    tx = frames["raw_tx"]
    odd = [1e300, np.inf, -np.inf, np.nan, -1e300, 1e-300, 5e15]
    tx.loc[: len(odd) - 1, "amount"] = odd
    tx["big"] = tx["amount"]
    tx.loc[len(odd) : len(odd) + 20, "big"] = np.nan
    meta = copy.deepcopy(BANK)
    meta["tables"]["tx"]["columns"]["big"] = {"type": "float", "nullable": True}  # no declared bounds
    frames["raw_acct"].loc[:3, "balance"] = [np.inf, -np.inf, np.nan, 1e308]
    return make_gateway(frames, meta)


EXTREME_QUERIES = [
    "SELECT COUNT(*), SUM(amount), AVG(amount), VARIANCE(amount), STDDEV(amount) FROM tx",
    "SELECT MEDIAN(amount), MIN(amount), MAX(amount), QUANTILE_CONT(amount, 0.99) FROM tx",
    "SELECT cat, SUM(amount), AVG(amount), MEDIAN(amount) FROM tx GROUP BY cat",
    "SELECT SUM(amount * 2 + 1), AVG(amount - qty), SUM(amount * amount / 1000) FROM tx",
    "SELECT SUM(LEAST(GREATEST(big, 0), 10)), AVG(LEAST(GREATEST(big * 2, -5), 5)), COUNT(big) FROM tx",
    "SELECT AVG(LEAST(GREATEST(big - big, -1), 1)), SUM(LEAST(GREATEST(big / 0, 0), 1)) FROM tx",
    "SELECT COUNT(*) FROM tx WHERE big > 1e15 OR big < -1e15 OR big <> big",
    "SELECT COUNT(*) FROM tx WHERE CAST(big AS INT) > 0 OR ROUND(big, 2) = 0 OR FLOOR(big) > 1",
    "SELECT CASE WHEN big > 100 THEN 'hi' ELSE 'lo' END AS b, COUNT(*) FROM tx GROUP BY b",
    "SELECT SUM(a.balance), AVG(a.balance) FROM tx t JOIN acct a ON t.cid = a.cid",
]


@pytest.mark.parametrize("sql", EXTREME_QUERIES)
def test_huge_and_non_finite_values_give_finite_answers(extreme: Gateway, sql: str) -> None:
    a = ask(extreme, sql)
    assert a.rows
    for row in a.rows:
        for col, v in zip(a.columns, row):
            if col.startswith(("avg(amount)", "median", "min", "max", "quantile")):
                assert in_range(v, 0, 1000), (col, v)
    # the exact aggregates the noise is added to are finite too
    for row in exact(extreme, sql):
        for v in row:
            assert not isinstance(v, float) or math.isfinite(v), row


def test_clamping_bounds_the_exact_aggregates(extreme: Gateway) -> None:
    n = scalar(extreme, "SELECT count(*) FROM bnd__bank__tx")
    count, total = exact(extreme, "SELECT COUNT(*), SUM(amount) FROM tx")[0]
    assert count == n and 0 <= total <= 1000 * n
    assert total == pytest.approx(scalar(extreme, "SELECT sum(LEAST(GREATEST(amount, 0), 1000)) FROM bnd__bank__tx"))
    (s,) = exact(extreme, "SELECT SUM(LEAST(GREATEST(big, 0), 10)) FROM tx")[0]
    assert 0 <= s <= 10 * n
    (z,) = exact(extreme, "SELECT SUM(LEAST(GREATEST(big * 0, 0), 10)) FROM tx")[0]
    assert z == 0  # inf * 0 and NaN are clamped like any other value


def test_an_unbounded_column_cannot_be_summed(extreme: Gateway) -> None:
    with pytest.raises(UnsupportedSQL):
        extreme.plan("bank", "SELECT SUM(big) FROM tx", epsilon=1)


# --- unicode ------------------------------------------------------------------------------


def test_unicode_in_categories_literals_and_names() -> None:
    frames = bank_frames()
    tx = frames["raw_tx"]
    tx["city"] = np.where(np.arange(len(tx)) % 3 == 0, "東京", tx["city"])
    gw = make_gateway(frames)
    a = ask(gw, "SELECT cat, COUNT(*) AS \"número\" FROM tx WHERE cat = 'café ☕' OR cat LIKE 'caf%' GROUP BY cat")
    assert a.columns == ["cat", "número"] and [r[0] for r in a.rows] == CATS
    cells = dict(exact(gw, "SELECT cat, COUNT(*) FROM tx WHERE cat = 'café ☕' GROUP BY cat"))
    assert cells == {"café ☕": scalar(gw, "SELECT count(*) FROM bnd__bank__tx WHERE cat = 'café ☕'")} and cells["café ☕"] > 0
    b = ask(gw, "SELECT COUNT(*) FROM tx WHERE city IN ('東京', 'Zürich', '🙂') AND note <> 'ü'")
    assert len(b.rows) == 1
    c = ask(gw, "SELECT city, COUNT(*) FROM tx GROUP BY city", delta=1e-5)
    assert "東京" in {r[0] for r in c.rows}  # a third of the rows: always above the threshold
    assert exact(gw, "SELECT COUNT(*) FROM tx WHERE cat = '☕'")[0][0] == 0


# --- expressions that fail on some rows ------------------------------------------------------

TOTAL_QUERIES = [
    "SELECT COUNT(*) FROM tx WHERE amount / (qty - qty) > 1",
    "SELECT COUNT(*) FROM tx WHERE amount % 0 > 1 OR qty / 0 IS NULL",
    "SELECT SUM(LEAST(GREATEST(amount / (qty - qty), 0), 10)) FROM tx",
    "SELECT AVG(LEAST(GREATEST(amount % (qty - qty), 0), 10)) FROM tx",
    "SELECT cat, SUM(LEAST(GREATEST(1 / (amount - amount), -1), 1)) FROM tx GROUP BY cat",
    "SELECT COUNT(*) FROM tx WHERE CAST(city AS INT) > 3",
    "SELECT COUNT(CAST(city AS DOUBLE)), AVG(LEAST(GREATEST(CAST(city AS DOUBLE), 0), 10)) FROM tx",
    "SELECT COUNT(*) FROM tx WHERE CAST(cat AS DATE) > '2025-01-01'",
    "SELECT COUNT(*) FROM tx WHERE CAST(cat AS TIMESTAMP) < '2025-01-01' OR CAST(note AS BOOLEAN)",
    "SELECT COUNT(*) FROM tx WHERE CAST(amount AS TINYINT) > 3",
    "SELECT COUNT(*) FROM tx WHERE EXTRACT(year FROM CAST(city AS DATE)) > 2000",
    "SELECT COUNT(*) FROM tx WHERE LENGTH(city) / 0 > 1",
    "SELECT CAST(city AS INT) AS c, COUNT(*) FROM tx GROUP BY c",
    "SELECT cat, SUM(amount) / (COUNT(*) - COUNT(*)) AS r FROM tx GROUP BY cat HAVING COUNT(*) > 0",
    "SELECT cat, SUM(amount) / 0 AS r FROM tx GROUP BY cat ORDER BY r",
]


@pytest.mark.parametrize("sql", TOTAL_QUERIES)
def test_division_by_zero_and_failing_casts_never_raise(bank: Gateway, sql: str) -> None:
    delta = 1e-5 if "GROUP BY c" in sql and "cat" not in sql else 0
    a = ask(bank, sql, delta=delta)
    assert a.cost.epsilon == 1


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat HAVING SUM(amount) / COUNT(*) > 100",
        "SELECT cat, ROUND(SUM(amount) / COUNT(*), 1) AS r FROM tx GROUP BY cat",
        "SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat HAVING COUNT(*) % 2 = 0",
    ],
)
def test_a_division_nested_in_an_expression_over_aggregates(bank: Gateway, sql: str) -> None:
    ask(bank, sql)


def test_nested_clamps_render_sql_linear_in_the_query(bank: Gateway) -> None:
    def size(depth: int) -> int:
        expr = "amount"
        for _ in range(depth):
            expr = f"LEAST({expr}, 999)"
        return len(main_query(bank.plan("bank", f"SELECT SUM({expr}) FROM tx", epsilon=1)).sql("duckdb"))  # type: ignore[union-attr]

    # linear: twice the nesting, about twice the SQL (a clamp copying its argument per level: 3^6 times)
    assert size(12) < 2.5 * size(6)


def _fragile_frames(failing: bool) -> dict[str, pd.DataFrame]:
    """Bank tables where nothing fails, or where one unit's row makes casts and divisions fail."""
    frames = bank_frames(n_customers=120, seed=5)
    tx = frames["raw_tx"]
    tx["qty"] = tx["qty"].fillna(1).clip(lower=1)
    tx["city"] = (tx.index % 7 + 1).astype(str)
    if failing:
        tx.loc[0, ["qty", "city", "note", "amount"]] = [0, "not a number", "not a bool", 2e6]
    return frames


@pytest.fixture(scope="module")
def fragile() -> tuple[Gateway, Gateway]:
    return make_gateway(_fragile_frames(False)), make_gateway(_fragile_frames(True))


SAME_KIND = [
    ("SELECT cat, COUNT(*), AVG(LEAST(GREATEST(CAST(city AS DOUBLE), 0), 100)) FROM tx WHERE amount / qty > 1 GROUP BY cat", 0),
    ("SELECT SUM(LEAST(GREATEST(amount / qty, 0), 100)), COUNT(CAST(city AS INT)), MEDIAN(qty) FROM tx WHERE amount % qty > 1", 0),
    ("SELECT COUNT(*) FROM tx WHERE CAST(city AS DATE) > '2025-01-01' OR amount % qty > 1 OR CAST(note AS BOOLEAN)", 0),
    ("SELECT flag, VARIANCE(LEAST(GREATEST(100 / qty, 0), 100)) FROM tx WHERE CAST(city AS INT) < 5 GROUP BY flag", 0),
    ("SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat HAVING AVG(LEAST(GREATEST(amount / qty, 0), 9)) > 0 ORDER BY n DESC", 0),
]


@pytest.mark.parametrize(("sql", "delta"), SAME_KIND, ids=[q[0][:60] for q in SAME_KIND])
def test_the_response_kind_does_not_depend_on_a_failing_row(fragile: tuple[Gateway, Gateway], sql: str, delta: float) -> None:
    clean, failing = fragile
    a, b = ask(clean, sql, delta=delta), ask(failing, sql, delta=delta)
    if "HAVING" in sql:  # HAVING filters noisy values: the row count is noisy by design
        assert shape(a)[0] == shape(b)[0] and shape(a)[2:] == shape(b)[2:]
    else:
        assert shape(a) == shape(b)


@pytest.mark.parametrize("case", ["numeric id = text literal", "text id = numeric literal"])
def test_an_id_compared_with_a_literal_of_another_type_never_fails_on_data(case: str) -> None:
    if case == "numeric id = text literal":
        sql = "SELECT COUNT(*) FROM tx WHERE amount > 1000000 AND cid = 'abc'"
        clean, failing = _fragile_frames(False), _fragile_frames(True)  # only `failing` has an amount above 1e6
    else:
        sql = "SELECT COUNT(*) FROM tx WHERE cid = 5"
        clean = bank_frames(n_customers=60)
        for frame in clean.values():
            if "cid" in frame:
                frame["cid"] = frame["cid"].astype(str)
        failing = copy.deepcopy(clean)
        failing["raw_tx"].loc[0, "cid"] = "u1"  # one unit whose id is not a number
    a = ask(make_gateway(clean), sql)
    b = ask(make_gateway(failing), sql)
    assert shape(a) == shape(b)


# --- cost -------------------------------------------------------------------------------------

COST_QUERIES = [
    ("SELECT COUNT(*) FROM tx", 0),
    ("SELECT COUNT(*), SUM(amount), AVG(amount), VARIANCE(amount), MEDIAN(amount) FROM tx", 0),
    ("SELECT cat, COUNT(*), SUM(amount), AVG(qty), STDDEV(amount), MAX(amount) FROM tx GROUP BY cat", 0),
    ("SELECT cat FROM tx GROUP BY cat ORDER BY COUNT(*) DESC LIMIT 2", 0),
    ("SELECT city, COUNT(*), AVG(amount) FROM tx GROUP BY city", 1e-5),
    ("SELECT city, SUM(amount) FROM tx GROUP BY city", 1e-6),
    ("SELECT c.segment, COUNT(*), SUM(a.balance) FROM cust c JOIN acct a ON c.cid = a.cid GROUP BY c.segment", 0),
    ("SELECT COUNT(DISTINCT cid), COUNT(qty), SUM(LEAST(GREATEST(amount * 0, 0), 1)) FROM tx", 0),
]


@pytest.mark.parametrize(("sql", "delta"), COST_QUERIES, ids=[q[0][:60] for q in COST_QUERIES])
def test_the_cost_is_exactly_the_epsilon_asked(bank: Gateway, sql: str, delta: float) -> None:
    for epsilon in (1, 0.3, Fraction(7, 5)):
        want = epsilon if isinstance(epsilon, Fraction) else Fraction(str(epsilon))
        plan = bank.plan("bank", sql, epsilon=epsilon, delta=delta)
        mechs = Mechanisms(plan)
        spent = mechs.cost()
        assert plan.cost.epsilon == want and isinstance(plan.cost.epsilon, Fraction)
        assert plan.cost.delta == (Fraction(str(delta)) if plan.selection == "threshold" else 0)
        # every mechanism gets its share, and together they cost no more than asked
        assert spent.epsilon <= want and spent.delta <= plan.cost.delta
        constant = any(m.kind == "sum" and m.sensitivity == 0 for m in plan.measures)  # no noise needed, share unused
        assert spent == plan.cost or (constant and spent.epsilon < want)
        for mid, mech in mechs.by_measure.items():
            if mech is not None:
                assert mech.cost.epsilon == plan.shares[mid]
        if mechs.selection is not None:
            assert mechs.selection.cost.epsilon == plan.share
        assert bank.preview("bank", sql, epsilon=epsilon, delta=delta)[0] == plan.cost
    # the answer is charged what the preview said, and its accuracy is what the preview said
    cost, acc = bank.preview("bank", sql, epsilon="1/3", delta=delta)
    answer = ask(bank, sql, epsilon="1/3", delta=delta)
    assert answer.cost == cost and answer.cost.epsilon == Fraction(1, 3)
    assert set(acc) == set(answer.accuracy)
    for col, expected in acc.items():
        got = answer.accuracy[col]
        assert (got.mechanism, got.scale) == (expected.mechanism, expected.scale), col
        if expected.ci95 is not None and got.mechanism != "none":
            assert got.ci95 == expected.ci95, col


def test_count_at_epsilon_one_costs_one(bank: Gateway) -> None:
    a = ask(bank, "SELECT COUNT(*) FROM tx", epsilon=1)
    assert a.cost.epsilon == Fraction(1) and a.cost.delta == 0
    five = ask(bank, "SELECT COUNT(*), SUM(amount), AVG(qty), MEDIAN(amount), COUNT(DISTINCT cid) FROM tx", epsilon=0.7)
    assert five.cost.epsilon == Fraction(7, 10) and five.cost.delta == 0
    assert five.plan.share * len(five.plan.released) == Fraction(7, 10)


@pytest.mark.parametrize("epsilon", [0, -1, 101, float("nan"), float("inf"), True, "abc", None])
def test_bad_epsilon_is_refused_before_any_data(bank: Gateway, epsilon: Any) -> None:
    with pytest.raises(InvalidRequest):
        bank.query("bank", "SELECT COUNT(*) FROM tx", epsilon=epsilon)


# --- preview --------------------------------------------------------------------------------

PREVIEW_QUERIES = [q for q, _ in COST_QUERIES[:4]] + [
    "SELECT COUNT(*), AVG(rate) FROM rates",
    "SELECT note, SUM(qty) FROM tx WHERE amount / qty > 1 GROUP BY note",
]


def test_preview_reads_no_data(monkeypatch: pytest.MonkeyPatch) -> None:
    gw = make_gateway(bank_frames(n_customers=50))
    expected = {}
    for sql in PREVIEW_QUERIES:
        expected[sql] = gw.preview("bank", sql, epsilon=1)

    class NoData:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the preview touched the engine ({name})")

    def no_execute(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the preview ran a query")

    monkeypatch.setattr(gw.engine, "execute", no_execute)
    monkeypatch.setattr(gw.engine, "_con", NoData())
    for sql in PREVIEW_QUERIES:
        cost, acc = gw.preview("bank", sql, epsilon=1)
        assert (cost, acc) == expected[sql]
    with pytest.raises(AssertionError):
        gw.query("bank", PREVIEW_QUERIES[0], epsilon=1)  # the patch bites: a real query does read


def test_preview_works_after_the_relations_are_dropped() -> None:
    gw = make_gateway(bank_frames(n_customers=50))
    con = gw.engine._con
    for rel, kind in con.execute("SELECT table_name, table_type FROM information_schema.tables WHERE table_name LIKE 'bnd__%' OR table_name LIKE 'src__%' OR table_name LIKE 'raw_%'").fetchall():
        if kind == "VIEW":
            con.execute(f'DROP VIEW "{rel}"')
    for rel, kind in con.execute("SELECT table_name, table_type FROM information_schema.tables WHERE table_name LIKE 'bnd__%' OR table_name LIKE 'src__%' OR table_name LIKE 'raw_%'").fetchall():
        con.execute(f'DROP TABLE "{rel}"')
    cost, acc = gw.preview("bank", "SELECT cat, COUNT(*) AS n, SUM(amount) AS s FROM tx GROUP BY cat", epsilon=2)
    assert cost.epsilon == 2 and acc["n"].scale == pytest.approx(5.0) and acc["n"].ci95 > 0


def test_preview_scale_of_variance_matches_the_answer(bank: Gateway) -> None:
    sql = "SELECT VARIANCE(amount) AS v, STDDEV(amount) AS sd FROM tx"
    _, acc = bank.preview("bank", sql, epsilon=1)
    answer = ask(bank, sql)
    for col in ("v", "sd"):
        assert acc[col].scale == answer.accuracy[col].scale


# --- per-query bounding -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def per_query() -> Gateway:
    meta = copy.deepcopy(BANK)
    meta["tables"]["tx"]["bounding"] = "per_query"
    return make_gateway(None, meta)


PER_QUERY_SQL = [
    "SELECT COUNT(*) FROM tx",
    "SELECT COUNT(*), SUM(amount), AVG(amount), MEDIAN(amount), VARIANCE(amount) FROM tx WHERE amount > 100",
    "SELECT cat, COUNT(*), SUM(qty) FROM tx WHERE flag OR qty > 5 GROUP BY cat ORDER BY 2 DESC LIMIT 3",
]


@pytest.mark.parametrize("sql", PER_QUERY_SQL)
def test_per_query_bounding_answers_with_the_same_sensitivity(bank: Gateway, per_query: Gateway, sql: str) -> None:
    a, b = bank.plan("bank", sql, epsilon=1), per_query.plan("bank", sql, epsilon=1)
    assert a.source.per_query is False and b.source.per_query is True
    assert b.max_rows == a.max_rows == 5
    assert [(m.kind, m.sensitivity) for m in a.measures] == [(m.kind, m.sensitivity) for m in b.measures]
    assert a.share == b.share and a.cost == b.cost
    x, y = ask(bank, sql), ask(per_query, sql)
    assert x.columns == y.columns and len(x.rows) == len(y.rows)
    assert {k: (v.mechanism, v.scale) for k, v in x.accuracy.items()} == {k: (v.mechanism, v.scale) for k, v in y.accuracy.items()}


def test_per_query_bounding_bounds_after_the_where(per_query: Gateway) -> None:
    con = per_query.engine._con
    # no WHERE: min(rows, k) per unit, as the bounded form at registration
    assert exact(per_query, "SELECT COUNT(*) FROM tx")[0][0] == con.execute(
        "SELECT sum(least(n, 5)) FROM (SELECT count(*) AS n FROM src__bank__tx GROUP BY cid)"
    ).fetchone()[0]
    # with a WHERE, each unit keeps up to k of its matching rows (better for selective filters)
    where = "amount > 300 AND cat IN ('food', 'travel', 'tech', 'café ☕')"
    got = exact(per_query, f"SELECT COUNT(*) FROM tx WHERE {where}")[0][0]
    want = con.execute(f"SELECT sum(least(n, 5)) FROM (SELECT count(*) AS n FROM src__bank__tx WHERE {where} GROUP BY cid)").fetchone()[0]
    assert got == want
    registration = con.execute(f"SELECT count(*) FROM bnd__bank__tx WHERE {where}").fetchone()[0]
    assert got >= registration


# --- public tables --------------------------------------------------------------------------


def test_a_public_table_is_exact_and_free(bank: Gateway) -> None:
    for epsilon in (0.01, 1, 50):
        a = ask(bank, "SELECT COUNT(*) AS n, SUM(rate) AS s, AVG(rate) AS a FROM rates", epsilon=epsilon)
        n, s, avg = a.rows[0]
        assert n == 3 and s == pytest.approx(0.6) and avg == pytest.approx(0.2)
        assert a.cost.epsilon == 0 and a.cost.delta == 0
        assert all((acc.mechanism, acc.scale, acc.ci95) == ("none", 0.0, 0.0) for acc in a.accuracy.values())
    b = ask(bank, "SELECT COUNT(*), MAX(rate) FROM rates WHERE cat = 'food' OR rate > 0.25", delta=1e-5)
    assert b.rows[0][0] == 2 and b.rows[0][1] == pytest.approx(0.3, abs=1e-3)
    assert b.cost.epsilon == 0 and b.cost.delta == 0
    assert bank.preview("bank", "SELECT SUM(rate) FROM rates", epsilon=1)[0].epsilon == 0


def test_a_public_table_groups_by_a_key_without_declared_categories(bank: Gateway) -> None:
    a = ask(bank, "SELECT cat, COUNT(*) AS n, AVG(rate) AS r FROM rates GROUP BY cat")
    got = sorted(a.rows)
    assert [r[:2] for r in got] == [["food", 1], ["tech", 1], ["travel", 1]]  # the groups found in the data
    assert [r[2] for r in got] == pytest.approx([0.1, 0.3, 0.2])
    assert a.cost.epsilon == 0 and a.cost.delta == 0
    assert all((acc.mechanism, acc.scale) == ("none", 0.0) for acc in a.accuracy.values())


# --- error positions ------------------------------------------------------------------------

ERRORS = [  # (sql, error, construct, the text the reported position must fall in)
    ("SELECT COUNT(*) FROM tx WHERE amountt > 3", UnknownColumn, "amountt", "amountt"),
    ("SELECT COUNT(*)\nFROM tx\nWHERE\n    amountt > 3", UnknownColumn, "amountt", "amountt"),
    ("SELECT SUM(amount),\n       AVG(bogus)\nFROM tx", UnknownColumn, "bogus", "bogus"),
    ("SELECT COUNT(*) FROM tx t WHERE t.nope > 1", UnknownColumn, "nope", "t.nope"),
    ("SELECT cat, COUNT(*)\nFROM tx\nGROUP BY colour", UnknownColumn, "colour", "colour"),
    ("SELECT COUNT(*)\nFROM txx", UnknownTable, "txx", "txx"),
    ("SELECT COUNT(*) FROM tx\nWHERE q.amount > 1", UnknownTable, "q", "q.amount"),
    ("SELECT COUNT(*) FROM tx WHERE cat = 'café ☕' AND ünknown > 1", UnknownColumn, "ünknown", "ünknown"),
]


@pytest.mark.parametrize(("sql", "error", "construct", "span"), ERRORS, ids=[e[2] for e in ERRORS])
def test_errors_name_the_construct_and_its_position(bank: Gateway, sql: str, error: type, construct: str, span: str) -> None:
    with pytest.raises(error) as info:
        bank.query("bank", sql, epsilon=1)
    err: QueryError = info.value
    assert err.construct == construct and construct in err.message
    line, start = next((i + 1, text.index(span) + 1) for i, text in enumerate(sql.split("\n")) if span in text)
    assert err.line == line, (err.line, err.col)
    # sqlglot records a token's last character; anywhere inside the offending text is accepted
    assert start <= (err.col or 0) <= start + len(span) - 1, (err.col, start)
    assert f"line {line}, column {err.col}" in err.message
    assert err.to_dict()["line"] == line and err.to_dict()["col"] == err.col


def test_query_errors_cost_nothing_and_happen_before_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    gw = make_gateway(bank_frames(n_customers=30))
    monkeypatch.setattr(gw.engine, "execute", lambda *a, **k: pytest.fail("the engine was asked"))
    for sql, error, *_ in ERRORS:
        with pytest.raises(error):
            gw.query("bank", sql, epsilon=1)


# --- row-level datasets ---------------------------------------------------------------------

ROW_LEVEL = {
    "name": "loans",
    "privacy_unit": None,
    "budget": {"epsilon": 2},
    "tables": {
        "loan": {
            "source": "raw_tx",
            "max_rows_per_unit": 1,
            "columns": {
                "cid": {"type": "id"},
                "amount": {"type": "float", "lower": 0, "upper": 1000},
                "cat": {"type": "category", "categories": CATS},
                "flag": {"type": "bool"},
            },
        },
        "extra": {"source": "raw_cust", "max_rows_per_unit": 1, "columns": {"cid": {"type": "id"}, "age": {"type": "int", "lower": 18, "upper": 100}}},
    },
}


def test_a_row_level_dataset() -> None:
    frames = bank_frames(n_customers=100)
    gw = make_gateway(frames, ROW_LEVEL)
    assert gw.catalog.get("loans").row_level
    n_rows = len(frames["raw_tx"])
    # every row is kept: the bounded form is the table itself
    assert scalar(gw, "SELECT table_type FROM information_schema.tables WHERE table_name = 'bnd__loans__loan'") == "VIEW"
    assert exact(gw, "SELECT COUNT(*) FROM loan", dataset="loans")[0][0] == n_rows
    a = ask(gw, "SELECT COUNT(*) AS n FROM loan", dataset="loans")
    assert a.accuracy["n"].scale == pytest.approx(1.0) and a.cost.epsilon == 1
    b = ask(gw, "SELECT cat, COUNT(*) AS n, SUM(amount) AS s, AVG(amount) AS a FROM loan GROUP BY cat", dataset="loans", epsilon=3)
    assert [r[0] for r in b.rows] == CATS
    plan = b.plan
    assert plan.max_rows == 1
    assert sorted(m.sensitivity for m in plan.measures) == [1, 500, 1000]  # count, centred sum, sum
    c = ask(gw, "SELECT COUNT(DISTINCT cid), MEDIAN(amount) FROM loan WHERE flag", dataset="loans")
    assert len(c.rows) == 1
    with pytest.raises(UnsupportedSQL):
        gw.plan("loans", "SELECT COUNT(*) FROM loan l JOIN extra e ON l.cid = e.cid", epsilon=1)
    with pytest.raises(UnsupportedSQL):
        gw.plan("loans", "SELECT cid, COUNT(*) FROM loan GROUP BY cid", epsilon=1)
