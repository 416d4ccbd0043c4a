"""A private table joined with a public lookup table of the same dataset, on any key.

The public side is read with one row per join key (the first by row identity), enforced in the engine
query, so that a private row matches at most one public row: the join adds attributes and never
multiplies rows, and the private table's bounds (k rows per unit, clamped values) hold for the joined
rows, with the same sensitivities as the private table alone. Checked here: exact values against
pandas (the dedup rule replayed from the stored rows), the duplicate key in `sectors` ('food' twice)
never doubles a row, LEFT JOIN keeps unmatched rows with NULL attributes (a NULL group in the public
domain), a public column without categories is a threshold-selected key, the shapes refused, the
sensitivity on neighbouring datasets, and PostgreSQL's answers against DuckDB's.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest
from sqlglot import exp

from gateway.core import Gateway
from gateway.errors import QueryError
from gateway.sql.release import exact_cells, main_query
from tests.sql.test_nested import _adversary, _same_cells, bounded_tx, exact_answer, make_shop, postgres_shop, shop_frames

K = 4


@pytest.fixture(scope="module")
def shop() -> Gateway:
    return make_shop()


def lookup(gw: Gateway, key: str = "cat") -> pd.DataFrame:
    """The public table as the join reads it: per key, the row with the smallest row identity."""
    df = gw.engine._con.execute("SELECT * FROM src__shop__sectors").df()  # type: ignore[attr-defined]
    df["weight"] = df["weight"].clip(0, 1)
    return df.sort_values("_dpgate_row").drop_duplicates(key, keep="first")


def joined(gw: Gateway, how: str = "inner") -> pd.DataFrame:
    return bounded_tx(gw).merge(lookup(gw)[["cat", "sector", "label", "weight", "code"]], on="cat", how=how)


def test_sum_by_a_public_attribute(shop: Gateway) -> None:
    sql = "SELECT s.sector, SUM(t.amount) AS total, COUNT(*) AS n FROM tx t JOIN sectors s ON t.cat = s.cat GROUP BY s.sector"
    plan = shop.plan("shop", sql, epsilon=1)
    assert plan.selection == "public" and plan.keys[0].domain == ("staples", "leisure", "digital")
    assert plan.max_rows == K and plan.cost.epsilon == 1  # private rows: charged, k as for tx alone
    sens = sorted(m.sensitivity for m in plan.measures)
    assert sens == [K, K * 500]
    got = exact_answer(shop, sql)
    want = joined(shop).groupby("sector").agg(total=("amount", "sum"), n=("amount", "size"))
    assert {c[0]: v for c, v in got["n"].items()} == dict(want.n)
    for sector, total in want.total.items():
        assert got["total"][(sector,)] == pytest.approx(total, rel=1e-12)
    answer = shop.query("shop", sql, epsilon=1)
    assert [r[0] for r in answer.rows] == ["staples", "leisure", "digital"]


def test_a_duplicate_key_never_multiplies_a_private_row(shop: Gateway) -> None:
    frames = shop_frames()
    assert (frames["raw_sectors"].cat == "food").sum() == 2
    df = bounded_tx(shop)
    n = exact_answer(shop, "SELECT COUNT(*) AS n FROM tx t JOIN sectors s ON t.cat = s.cat")["n"][()]
    assert n == df.cat.isin(["food", "travel", "tech"]).sum()
    picked = lookup(shop).set_index("cat").sector["food"]
    cells = exact_answer(shop, "SELECT s.sector, COUNT(*) AS n FROM tx t JOIN sectors s ON t.cat = s.cat WHERE t.cat = 'food' GROUP BY 1")["n"]
    assert set(cells) == {(picked,)}  # every food row got the same, first, sector


def test_the_engine_query_deduplicates_the_public_side(shop: Gateway) -> None:
    plan = shop.plan("shop", "SELECT SUM(t.amount) FROM tx t JOIN sectors s ON t.cat = s.cat", epsilon=1)
    q = main_query(plan)
    (join,) = q.args["joins"]
    lookup_q = join.this
    assert isinstance(lookup_q, exp.Subquery)
    rank = lookup_q.this.args["qualify"].this
    assert isinstance(rank, exp.LTE) and rank.expression.name == "1"
    window = rank.this
    assert isinstance(window.this, exp.RowNumber) and [p.sql() for p in window.args["partition_by"]] == ['"s"."cat"']
    assert window.args["order"].expressions[0].this.name == "_dpgate_row"
    assert q.args["from_"].this.name == "bnd__shop__tx"  # the private side is its bounded form


def test_left_join_keeps_unmatched_rows_with_null_attributes(shop: Gateway) -> None:
    sql = "SELECT s.sector, COUNT(*) AS n, SUM(s.weight) AS w FROM tx t LEFT JOIN sectors s ON t.cat = s.cat GROUP BY s.sector"
    plan = shop.plan("shop", sql, epsilon=1)
    assert plan.keys[0].domain == ("staples", "leisure", "digital", None)  # NULL where a row has no match
    got = exact_answer(shop, sql)
    df = joined(shop, how="left")
    assert sum(got["n"].values()) == len(bounded_tx(shop))
    assert got["n"][(None,)] == df.sector.isna().sum() > 0
    assert got["w"][("leisure",)] == pytest.approx(df[df.sector == "leisure"].weight.sum(), rel=1e-12)
    answer = shop.query("shop", sql, epsilon=1)
    assert [r[0] for r in answer.rows] == ["staples", "leisure", "digital", None]
    # AVG of a public attribute over a LEFT JOIN: the unmatched rows' NULLs are not counted as values
    avg = exact_answer(shop, "SELECT AVG(s.weight) AS a FROM tx t LEFT JOIN sectors s ON t.cat = s.cat")["a"][()]
    assert avg == pytest.approx(df.weight.mean(), rel=1e-12)


def test_a_public_key_without_categories_needs_threshold_selection(shop: Gateway) -> None:
    sql = "SELECT s.label, COUNT(*) AS n FROM tx t JOIN sectors s ON t.cat = s.cat GROUP BY s.label"
    with pytest.raises(QueryError) as info:
        shop.plan("shop", sql, epsilon=1)
    assert info.value.code == "unsupported_sql" and "delta" in info.value.message
    plan = shop.plan("shop", sql, epsilon=1, delta=1e-5)
    assert plan.selection == "threshold" and plan.cost.delta > 0
    answer = shop.query("shop", sql, epsilon=5, delta=1e-5)
    assert {r[0] for r in answer.rows} <= set(lookup(shop).label)


@pytest.mark.parametrize("sql", [
    "SELECT cat, COUNT(*) AS n FROM tx JOIN sectors USING (cat) GROUP BY cat",  # USING: cat is the private column
    "SELECT t.cat, COUNT(*) AS n FROM sectors s JOIN tx t ON s.cat = t.cat GROUP BY t.cat",  # INNER, public first
    "SELECT t.cat, COUNT(*) AS n FROM tx t INNER JOIN sectors s ON s.cat = t.cat GROUP BY t.cat",
    "SELECT t.cat, COUNT(*) AS n FROM tx t JOIN sectors s ON ((s.cat = t.cat) AND (t.cat = s.cat)) GROUP BY t.cat",
])
def test_spellings_of_the_join(shop: Gateway, sql: str) -> None:
    got = exact_answer(shop, sql)["n"]
    want = joined(shop).groupby("cat").size()
    assert {c[0]: v for c, v in got.items()} == dict(want)


def test_several_keys_an_id_key_and_where_on_public_columns(shop: Gateway) -> None:
    df = bounded_tx(shop)
    both = exact_answer(shop, "SELECT COUNT(*) AS n FROM tx t JOIN sectors s ON t.cat = s.cat AND t.qty = s.code")["n"][()]
    pub = shop.engine._con.execute("SELECT * FROM src__shop__sectors").df()  # type: ignore[attr-defined]
    raw = shop.engine._con.execute("SELECT cat, qty FROM bnd__shop__tx").df()  # type: ignore[attr-defined]
    pairs = set(zip(pub.cat, pub.code))
    assert both == sum((c, q) in pairs for c, q in zip(raw.cat, raw.qty.astype("float").fillna(-1).astype(int))) > 0
    owners = shop_frames()["raw_owners"]
    sql = "SELECT o.region, SUM(t.amount) AS s FROM tx t JOIN owners o ON t.cid = o.cid WHERE o.region = 'north' GROUP BY o.region"
    got = exact_answer(shop, sql)["s"]
    north = set(owners[owners.region == "north"].cid)
    assert got[("north",)] == pytest.approx(df[df.cid.isin(north)].amount.sum(), rel=1e-12)
    where = exact_answer(shop, "SELECT COUNT(*) AS n FROM tx t JOIN sectors s ON t.cat = s.cat WHERE s.weight > 0.3")["n"][()]
    j = joined(shop)
    assert where == (j.weight > 0.3).sum()


def test_a_lookup_inside_a_per_customer_question(shop: Gateway) -> None:
    sql = ("SELECT AVG(n) AS a, COUNT(*) AS c FROM (SELECT t.cid, COUNT(*) AS n FROM tx t JOIN sectors s ON t.cat = s.cat "
           "WHERE s.sector = 'digital' GROUP BY t.cid) d")
    plan = shop.plan("shop", sql, epsilon=1)
    assert plan.max_rows == 1 and plan.source.k_inner == K
    got = exact_answer(shop, sql)
    per = joined(shop).query("sector == 'digital'").groupby("cid").size()
    assert got["c"][()] == len(per) and got["a"][()] == pytest.approx(per.mean(), rel=1e-12)


REFUSED = [
    ("SELECT COUNT(*) FROM tx t RIGHT JOIN sectors s ON t.cat = s.cat", "RIGHT JOIN"),
    ("SELECT COUNT(*) FROM tx t FULL JOIN sectors s ON t.cat = s.cat", "FULL JOIN"),
    ("SELECT COUNT(*) FROM tx t CROSS JOIN sectors s", "JOIN"),
    ("SELECT COUNT(*) FROM tx t, sectors s", "JOIN"),
    ("SELECT COUNT(*) FROM tx t NATURAL JOIN sectors s", "NATURAL JOIN"),
    ("SELECT COUNT(*) FROM sectors s LEFT JOIN tx t ON t.cat = s.cat", "LEFT JOIN"),
    ("SELECT COUNT(*) FROM tx t JOIN sectors s ON t.amount > s.weight", "JOIN"),
    ("SELECT COUNT(*) FROM tx t JOIN sectors s ON t.amount = s.weight", "JOIN key"),  # floats: = and PARTITION BY may differ
    ("SELECT COUNT(*) FROM tx t JOIN sectors s ON t.cat = s.code", "JOIN key"),
    ("SELECT COUNT(*) FROM tx t JOIN sectors s ON t.cid = s.code", "JOIN key"),
    ("SELECT COUNT(*) FROM tx t JOIN sectors s ON t.cat = t.note", "JOIN"),
    ("SELECT COUNT(*) FROM tx t JOIN sectors s ON LOWER(t.cat) = s.cat", "JOIN"),
    ("SELECT COUNT(*) FROM tx t JOIN sectors s ON t.cat = s.cat OR t.note = s.label", "JOIN"),
    ("SELECT COUNT(*) FROM tx t JOIN sectors s ON t.cat = s.cat JOIN owners o ON t.cid = o.cid", "JOIN"),
    ("SELECT COUNT(*) FROM sectors s JOIN owners o ON s.label = o.region", "JOIN"),  # two public tables: not a lookup
    ("SELECT cat, COUNT(*) FROM tx t JOIN sectors s ON t.cat = s.cat GROUP BY cat", "ambiguous"),
]


@pytest.mark.parametrize("sql, construct", REFUSED)
def test_refused_joins(shop: Gateway, sql: str, construct: str) -> None:
    with pytest.raises(QueryError) as info:
        shop.plan("shop", sql, epsilon=1, delta=1e-5)
    assert info.value.code == "unsupported_sql", info.value.message
    assert construct.lower() in ((info.value.construct or "") + " " + info.value.message).lower(), (info.value.construct, info.value.message)


def test_using_an_unknown_column(shop: Gateway) -> None:
    with pytest.raises(QueryError) as info:
        shop.plan("shop", "SELECT COUNT(*) FROM tx JOIN sectors USING (sector)", epsilon=1)
    assert info.value.code == "unknown_column"


NEIGHBOUR_QUERIES = [
    "SELECT s.sector, COUNT(*), SUM(t.amount), AVG(s.weight) FROM tx t JOIN sectors s ON t.cat = s.cat GROUP BY s.sector",
    "SELECT s.sector, COUNT(*), SUM(t.bal) FROM tx t LEFT JOIN sectors s ON t.cat = s.cat GROUP BY s.sector",
    "SELECT SUM(s.weight * t.amount), COUNT(DISTINCT t.cid) FROM tx t JOIN sectors s ON t.cat = s.cat WHERE s.code > 2",
]


@pytest.mark.parametrize("sql", NEIGHBOUR_QUERIES)
def test_one_customer_moves_each_measure_by_at_most_its_sensitivity(shop: Gateway, sql: str) -> None:
    plan = shop.plan("shop", sql, epsilon=1)
    a = exact_cells(plan, shop.engine)
    for frames in (_adversary(9, 1e12), _adversary(5, -1e12, {"cat": "travel"}), _adversary(2, math.nan, {"cat": "fuel"})):
        b = exact_cells(plan, make_shop(frames).engine)
        for m in plan.measures:
            l1 = sum(abs(float((a.get(c) or {}).get(m.id) or 0) - float((b.get(c) or {}).get(m.id) or 0)) for c in set(a) | set(b))
            assert math.isfinite(l1) and l1 <= m.sensitivity * (1 + 1e-9) + 1e-6, (sql, m.id, l1, m.sensitivity)


@pytest.fixture(scope="module")
def pg_shop() -> Gateway:
    engine = postgres_shop()
    try:
        yield make_shop(engine=engine)
    finally:
        engine.drop_schema()
        engine.close()


@pytest.mark.parametrize("sql", [
    NEIGHBOUR_QUERIES[0],
    NEIGHBOUR_QUERIES[1],
    "SELECT o.region, COUNT(*), SUM(t.amount) FROM tx t JOIN owners o ON t.cid = o.cid GROUP BY o.region",
    "SELECT cat, COUNT(*) FROM tx JOIN sectors USING (cat) GROUP BY cat",
    "SELECT COUNT(*) FROM tx t JOIN sectors s ON t.cat = s.cat AND t.qty = s.code",
])
def test_postgres_computes_the_same_exact_values(shop: Gateway, pg_shop: Gateway, sql: str) -> None:
    plan_d = shop.plan("shop", sql, epsilon=1)
    plan_p = pg_shop.plan("shop", sql, epsilon=1)
    assert plan_p.engine == "postgres"
    _same_cells(exact_cells(plan_d, shop.engine), exact_cells(plan_p, pg_shop.engine))
