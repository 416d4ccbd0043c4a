"""Per-customer questions: an inner query grouped by the privacy unit, an outer DP aggregate over it.

The derived relation has one row per unit, so the outer query is planned with max_rows_per_unit = 1
over columns whose bounds follow from the inner aggregates (SUM over <= k rows in [k*min(lo, 0),
k*max(hi, 0)], COUNT in [0, k], AVG/MIN/MAX in [lo, hi]). Checked here:

* answers: the exact (pre-noise) values of each form equal those computed with pandas from the
  bounded rows the engine keeps (`bnd__shop__tx`), clamped to the declared bounds;
* the plan: one row per unit, the derived bounds, the sensitivities that follow;
* enforce, don't infer: the inner aggregates read the bounded relation and clamped values, the outer
  aggregate clamps the derived column in the engine SQL (a planner that stated narrower bounds would
  still be held to them by the engine);
* privacy: one customer's removal moves every exact measure by at most its sensitivity (and the bound
  is reached: it is not loose), the noise has the stated scale (KS / mean |error| tests, false-failure
  rate below 1e-4 each), nothing but aggregates leaves (keys only from public domains, every value
  noisy);
* every other subquery shape is refused with `unsupported_sql`, naming the allowed form;
* PostgreSQL computes the same exact values as DuckDB for the nested forms.
"""
from __future__ import annotations

import math
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sqlglot import exp

from gateway.core import Gateway
from gateway.engines.duckdb import DuckDBEngine
from gateway.errors import QueryError
from gateway.sql.nested import Derived
from gateway.sql.release import _histogram, exact_cells, main_query, quantile_query
from gateway.sql.source import CLAMPED
from gateway.sql.quantiles import quantile_lattice

K = 4
SHOP: dict[str, Any] = {
    "name": "shop",
    "privacy_unit": "cid",
    "budget": {"epsilon": 100, "delta": 1e-3},
    "tables": {
        "tx": {
            "source": "raw_tx",
            "max_rows_per_unit": K,
            "columns": {
                "tid": {"type": "id"},
                "cid": {"type": "id"},
                "amount": {"type": "float", "lower": 0, "upper": 500},
                "bal": {"type": "float", "lower": -100, "upper": 300},
                "qty": {"type": "int", "lower": 0, "upper": 10, "nullable": True},
                "cat": {"type": "category", "categories": ["food", "travel", "tech", "fuel"]},
                "flag": {"type": "bool"},
                "note": {"type": "category", "nullable": True},
            },
        },
        "cust": {
            "source": "raw_cust",
            "max_rows_per_unit": 1,
            "columns": {"cid": {"type": "id"}, "segment": {"type": "category", "categories": ["retail", "private"]}},
        },
        # a public lookup table: 'food' twice (the join must keep one), no 'fuel' (LEFT JOIN: NULL)
        "sectors": {
            "source": "raw_sectors",
            "max_rows_per_unit": 1,
            "public": True,
            "columns": {
                "cat": {"type": "category"},
                "sector": {"type": "category", "categories": ["staples", "leisure", "digital"]},
                "label": {"type": "category"},
                "weight": {"type": "float", "lower": 0, "upper": 1},
                "code": {"type": "int", "lower": 0, "upper": 100},
            },
        },
        "owners": {
            "source": "raw_owners",
            "max_rows_per_unit": 1,
            "public": True,
            "columns": {"cid": {"type": "id"}, "region": {"type": "category", "categories": ["north", "south"]}},
        },
    },
}


def shop_frames(n_customers: int = 120, seed: int = 5) -> dict[str, pd.DataFrame]:
    """Test data (not noise): 1-7 transactions per customer (k = 4 cuts some), amounts beyond the bounds."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 8, n_customers)
    cid = np.repeat(np.arange(1, n_customers + 1), per)
    n = len(cid)
    amount = np.round(rng.exponential(150, n), 2)
    amount[rng.random(n) < 0.05] = -20.0  # below the lower bound: clamped to 0
    qty = pd.array(rng.integers(0, 13, n), dtype="Int64")
    qty[rng.random(n) < 0.15] = pd.NA
    qty[np.isin(cid, [3, 4])] = pd.NA  # two customers without any qty: their AVG(qty) is NULL
    note = rng.choice(["x", "y"], n).astype(object)
    note[rng.random(n) < 0.3] = None
    tx = pd.DataFrame({
        "tid": np.arange(n), "cid": cid, "amount": amount, "bal": np.round(rng.normal(50, 150, n), 2), "qty": qty,
        "cat": rng.choice(["food", "travel", "tech", "fuel", "other"], n), "flag": rng.random(n) < 0.3, "note": note,
    })
    cust = pd.DataFrame({"cid": np.arange(1, n_customers + 1), "segment": rng.choice(["retail", "private"], n_customers)})
    sectors = pd.DataFrame({
        "cat": ["food", "travel", "tech", "food", "garden"],
        "sector": ["staples", "leisure", "digital", "leisure", "leisure"],
        "label": ["A", "B", "C", "D", "E"],
        "weight": [0.5, 2.0, 0.25, 0.75, 0.1],  # travel's 2.0 is beyond the bound: clamped to 1
        "code": [3, 5, 7, 9, 11],
    })
    owners = pd.DataFrame({"cid": np.arange(1, n_customers + 1, 2), "region": rng.choice(["north", "south"], (n_customers + 1) // 2)})
    return {"raw_tx": tx, "raw_cust": cust, "raw_sectors": sectors, "raw_owners": owners}


def make_shop(frames: dict[str, pd.DataFrame] | None = None, engine: Any = None, meta: dict | None = None) -> Gateway:
    import copy

    engine = engine or DuckDBEngine(None, seed="shop-seed")
    meta = copy.deepcopy(meta or SHOP)
    for name, frame in (frames or shop_frames()).items():
        source = engine.load_frame(name, frame)
        for t in meta["tables"].values():
            if t["source"] == name:
                t["source"] = source
    if getattr(engine, "name", "duckdb") != "duckdb":
        meta["engine"] = engine.name
    gw = Gateway(engine)
    gw.register(meta)
    return gw


@pytest.fixture(scope="module")
def shop() -> Gateway:
    return make_shop()


def bounded_tx(gw: Gateway) -> pd.DataFrame:
    """The rows the engine keeps (at most k per customer), values clamped as the gateway clamps them."""
    df = gw.engine._con.execute("SELECT * FROM bnd__shop__tx").df()  # type: ignore[attr-defined]
    df["amount"] = df["amount"].clip(0, 500)
    df["bal"] = df["bal"].clip(-100, 300)
    df["qty"] = df["qty"].clip(0, 10)
    return df


def exact_answer(gw: Gateway, sql: str, *, delta: float = 0) -> dict[str, dict[tuple, float]]:
    """Per output column that is an aggregate, its exact (noise-free) value per cell, as the plan computes it."""
    plan = gw.plan("shop", sql, epsilon=1, delta=delta)
    cells = exact_cells(plan, gw.engine)
    measures = {m.id: m for m in plan.measures}
    aggs = {a.id: a for a in plan.aggregates}
    out: dict[str, dict[tuple, float]] = {}
    for col in plan.columns:
        agg = aggs.get(col.source or "")
        if agg is None:
            continue
        values = {}
        for cell, v in cells.items():
            if agg.func in ("count", "sum"):
                values[cell] = float(v[agg.measures[0]] or 0)
            elif agg.func == "avg":
                count, csum = agg.measures
                values[cell] = float(v[measures[csum].base] or 0) / float(v[count]) if v[count] else math.nan  # type: ignore[index]
        out[col.name] = values
    return out


INNER = "SELECT cid, SUM(amount) AS total FROM tx GROUP BY cid"
BUCKET = "CASE WHEN total < 100 THEN 'low' WHEN total < 1000 THEN 'mid' ELSE 'high' END"


def _per_customer(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby("cid")
    return pd.DataFrame({
        "total": g["amount"].sum(), "n": g.size(), "lo": g["amount"].min(), "hi": g["amount"].max(),
        "av": g["amount"].mean(), "nq": g["qty"].count(), "nc": g["cat"].nunique(), "f": g["flag"].sum(),
        "bal": g["bal"].sum(), "aq": g["qty"].mean(),
    })


def test_avg_of_per_customer_totals(shop: Gateway) -> None:
    per = _per_customer(bounded_tx(shop))
    got = exact_answer(shop, f"SELECT SUM(total) AS s, COUNT(*) AS n, AVG(total) AS a FROM ({INNER}) t")
    assert got["n"][()] == len(per) == 120
    assert got["s"][()] == pytest.approx(per.total.sum(), rel=1e-12)
    assert got["a"][()] == pytest.approx(per.total.mean(), rel=1e-12)
    answer = shop.query("shop", f"SELECT AVG(total) AS a FROM ({INNER}) t", epsilon=100)
    assert answer.columns == ["a"] and abs(answer.rows[0][0] - per.total.mean()) < 5 * answer.accuracy["a"].ci95


def test_count_of_customers_above_a_total(shop: Gateway) -> None:
    per = _per_customer(bounded_tx(shop))
    got = exact_answer(shop, f"SELECT COUNT(*) AS n FROM ({INNER}) t WHERE total > 600")
    assert got["n"][()] == (per.total > 600).sum() > 0


def test_histogram_of_totals_has_a_public_domain(shop: Gateway) -> None:
    per = _per_customer(bounded_tx(shop))
    sql = f"SELECT {BUCKET} AS b, COUNT(*) AS n FROM ({INNER}) t GROUP BY b"
    plan = shop.plan("shop", sql, epsilon=1)
    assert plan.selection == "public" and plan.keys[0].domain == ("low", "mid", "high")
    assert plan.cost.delta == 0
    got = exact_answer(shop, sql)["n"]
    want = pd.cut(per.total, [-1, 99.999999, 999.999999, math.inf], labels=["low", "mid", "high"]).value_counts()
    assert {c[0]: v for c, v in got.items()} == {k: v for k, v in want.items() if v}
    answer = shop.query("shop", sql, epsilon=1)
    assert [r[0] for r in answer.rows] == ["low", "mid", "high"]  # every bucket, also an empty one


def test_histogram_of_rows_per_customer_uses_the_count_bounds(shop: Gateway) -> None:
    """COUNT(*) per customer is a whole number in [0, k]: GROUP BY it has the public domain 0..k."""
    df = bounded_tx(shop)
    sql = "SELECT n, COUNT(*) AS c FROM (SELECT cid, COUNT(*) AS n FROM tx WHERE flag GROUP BY cid) t GROUP BY n"
    plan = shop.plan("shop", sql, epsilon=1)
    assert plan.selection == "public" and plan.keys[0].domain == tuple(range(K + 1))
    want = df[df.flag].groupby("cid").size().value_counts()
    assert {c[0]: v for c, v in exact_answer(shop, sql)["c"].items()} == dict(want)
    assert [r[0] for r in shop.query("shop", sql, epsilon=1).rows] == list(range(K + 1))


def test_min_max_avg_count_and_bool_sums_per_customer(shop: Gateway) -> None:
    per = _per_customer(bounded_tx(shop))
    sql = (
        "SELECT SUM(lo) AS lo, SUM(hi) AS hi, SUM(av) AS av, SUM(nq) AS nq, SUM(nc) AS nc, SUM(f) AS f, SUM(b) AS b "
        "FROM (SELECT cid, MIN(amount) AS lo, MAX(amount) AS hi, AVG(amount) AS av, COUNT(qty) AS nq, "
        "COUNT(DISTINCT cat) AS nc, SUM(flag) AS f, SUM(bal) AS b FROM tx GROUP BY cid) t"
    )
    got = {k: v[()] for k, v in exact_answer(shop, sql).items()}
    assert got["lo"] == pytest.approx(per.lo.sum(), rel=1e-12)
    assert got["hi"] == pytest.approx(per.hi.sum(), rel=1e-12)
    assert got["av"] == pytest.approx(per.av.sum(), rel=1e-12)
    assert got["nq"] == per.nq.sum() and got["nc"] == per.nc.sum() and got["f"] == per.f.sum()
    assert got["b"] == pytest.approx(per.bal.sum(), rel=1e-12)


def test_a_nullable_per_customer_value(shop: Gateway) -> None:
    """AVG(qty) is NULL for a customer without any qty: the outer COUNT(aq) does not count them, AVG skips them."""
    per = _per_customer(bounded_tx(shop))
    assert per.aq.isna().sum() >= 2
    sql = "SELECT COUNT(aq) AS n, AVG(aq) AS a FROM (SELECT cid, AVG(qty) AS aq FROM tx GROUP BY cid) t"
    got = exact_answer(shop, sql)
    assert got["n"][()] == per.aq.notna().sum()
    assert got["a"][()] == pytest.approx(per.aq.mean(), rel=1e-12)


@pytest.mark.parametrize("inner", [
    "SELECT SUM(amount) AS total FROM tx GROUP BY cid",  # the unit not selected
    "SELECT cid, SUM(amount) AS total FROM tx GROUP BY 1",
    "SELECT cid AS who, SUM(amount) AS total FROM tx GROUP BY who",
    "SELECT tx.cid, SUM(tx.amount) AS total FROM tx GROUP BY tx.cid",
])
def test_spellings_of_the_inner_query(shop: Gateway, inner: str) -> None:
    per = _per_customer(bounded_tx(shop))
    assert exact_answer(shop, f"SELECT SUM(total) AS s FROM ({inner}) d")["s"][()] == pytest.approx(per.total.sum(), rel=1e-12)


def test_inner_where_join_on_the_unit_and_outer_clauses(shop: Gateway) -> None:
    df = bounded_tx(shop)
    cust = shop_frames()["raw_cust"]
    private = set(cust[cust.segment == "private"].cid)
    sel = df[df.cid.isin(private) & (df.cat != "fuel")]
    totals = sel.groupby("cid")["amount"].sum()
    sql = ("SELECT COUNT(*) AS n, SUM(total) AS s FROM (SELECT t.cid, SUM(t.amount) AS total FROM tx t JOIN cust c "
           "ON t.cid = c.cid WHERE c.segment = 'private' AND t.cat <> 'fuel' GROUP BY t.cid) d WHERE total BETWEEN 50 AND 1500")
    got = exact_answer(shop, sql)
    keep = totals[(totals >= 50) & (totals <= 1500)]
    assert got["n"][()] == len(keep) and got["s"][()] == pytest.approx(keep.sum(), rel=1e-12)
    answer = shop.query("shop", f"SELECT {BUCKET} AS b, COUNT(*) AS n FROM ({INNER}) t GROUP BY b HAVING COUNT(*) > -1e9 "
                        "ORDER BY n DESC LIMIT 2", epsilon=1)
    assert len(answer.rows) == 2 and answer.rows[0][1] >= answer.rows[1][1]


def test_quantiles_of_per_customer_values(shop: Gateway) -> None:
    per = _per_customer(bounded_tx(shop))
    answer = shop.query("shop", f"SELECT MEDIAN(total) AS m FROM ({INNER}) t", epsilon=100)
    assert abs(answer.rows[0][0] - per.total.median()) < 200  # ε = 100 over 120 customers in [0, 2000]


def test_preview_reads_no_data_and_states_the_cost(shop: Gateway) -> None:
    cost, accuracy = shop.preview("shop", f"SELECT SUM(total) AS s FROM ({INNER}) t", epsilon=2)
    assert cost.epsilon == 2 and accuracy["s"].scale == pytest.approx(K * 500 / 2)


def test_per_query_bounding_filters_before_it_bounds() -> None:
    """A table bounded per query: the inner WHERE runs before each customer's k rows are picked."""
    import copy

    meta = copy.deepcopy(SHOP)
    meta["tables"]["tx"]["bounding"] = "per_query"
    gw = make_shop(meta=meta)
    plan = gw.plan("shop", "SELECT SUM(total) FROM (SELECT cid, SUM(amount) AS total FROM tx WHERE cat = 'food' GROUP BY cid) t", epsilon=1)
    assert plan.source.inner.per_query
    inner = main_query(plan).args["from_"].this.this
    bounded = inner.args["from_"].this.this  # FROM (SELECT tx.* FROM src WHERE ... QUALIFY rank <= k)
    assert bounded.args["where"] is not None and bounded.args["qualify"] is not None
    got = exact_answer(gw, "SELECT COUNT(*) AS n FROM (SELECT cid, COUNT(*) AS c FROM tx WHERE cat = 'food' GROUP BY cid) t")
    raw = shop_frames()["raw_tx"]
    assert got["n"][()] == raw[raw.cat == "food"].cid.nunique()


# --- the plan -----------------------------------------------------------------------------------


def test_one_row_per_unit_and_the_derived_bounds(shop: Gateway) -> None:
    sql = ("SELECT COUNT(*), SUM(t), SUM(n), AVG(a), SUM(b), SUM(lo) FROM (SELECT cid, SUM(amount) AS t, COUNT(*) AS n, "
           "AVG(amount) AS a, SUM(bal) AS b, MIN(qty) AS lo, SUM(qty) AS sq FROM tx GROUP BY cid) d")
    plan = shop.plan("shop", sql, epsilon=1)
    assert isinstance(plan.source, Derived) and plan.max_rows == 1 and plan.source.k_inner == K
    cols = plan.source.use.meta.columns
    assert cols["t"].type.value == "float" and cols["t"].bounds == (0, K * 500)
    assert cols["n"].type.value == "int" and cols["n"].bounds == (0, K) and not cols["n"].nullable
    assert cols["a"].bounds == (0, 500)
    assert cols["b"].bounds == (K * -100, K * 300)  # [k * min(lo, 0), k * max(hi, 0)]
    assert cols["lo"].type.value == "int" and cols["lo"].bounds == (0, 10) and cols["lo"].nullable
    assert cols["sq"].type.value == "int" and cols["sq"].bounds == (0, K * 10)
    sens = {m.sql.sql(dialect="duckdb") if m.sql is not None else m.id: m.sensitivity for m in plan.measures}
    assert sens["COUNT(*)"] == 1  # one row per customer
    by_col = {a.id: [next(m for m in plan.measures if m.id == i) for i in a.measures] for a in plan.aggregates}
    assert by_col["_a1"][0].sensitivity == K * 500
    assert by_col["_a2"][0].sensitivity == K
    assert by_col["_a4"][0].sensitivity == K * 300  # max(|-400|, |1200|)
    assert plan.cost.epsilon == 1


def test_derived_sums_over_a_join_rebound_to_max_k() -> None:
    """A join on the unit where both sides have several rows: the inner rows are cut to max(k1, k2), so
    a derived SUM is bounded by that many rows."""
    meta = {**SHOP, "tables": {**SHOP["tables"], "cust": {**SHOP["tables"]["cust"], "max_rows_per_unit": 2}}}
    gw = make_shop(meta=meta)
    plan = gw.plan("shop", "SELECT SUM(s) FROM (SELECT t.cid, SUM(t.amount) AS s FROM tx t JOIN cust c ON t.cid = c.cid GROUP BY t.cid) d", epsilon=1)
    assert plan.source.k_inner == K and plan.source.use.meta.columns["s"].bounds == (0, K * 500)


# --- enforce, don't infer -------------------------------------------------------------------------


def test_the_engine_query_bounds_and_clamps_at_both_levels(shop: Gateway) -> None:
    plan = shop.plan("shop", "SELECT SUM(total), SUM(d2) FROM (SELECT cid, SUM(amount) AS total, SUM(amount * 2) AS d2 FROM tx GROUP BY cid) t", epsilon=1)
    q = main_query(plan)
    derived = q.args["from_"].this
    assert isinstance(derived, exp.Subquery)
    inner = derived.this
    assert inner.args["from_"].this.name == "bnd__shop__tx"  # the bounded form: at most k rows per customer
    items = {i.alias: i.this for i in inner.expressions}
    assert items["total"] == exp.Sum(this=exp.column(CLAMPED + "amount", table="tx", quoted=True))  # stored clamped copy
    d2 = items["d2"].this
    assert isinstance(d2, exp.Case) and "1000" in d2.sql()  # amount * 2 clamped to [0, 1000] in the engine
    outer = [m.sql for m in plan.measures if m.kind == "sum" and m.sql is not None]
    for m, hi in zip(outer, (2000, 4000)):
        value = m.this
        assert isinstance(value, exp.Case) and value.args["ifs"][1].args["true"].sql() == str(hi)  # clamped again


def test_a_wrong_derived_bound_costs_accuracy_not_privacy(shop: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the analysis stated a narrower bound than the inner SUM can reach, the outer clamp in the engine
    query still holds every per-customer value to it: the exact sum cannot exceed (customers) * bound."""
    from gateway.catalog import ColumnMeta, ColumnType

    monkeypatch.setattr(Derived, "_meta", staticmethod(lambda lo, hi, *, integer, nullable: ColumnMeta(type=ColumnType.FLOAT, lower=0, upper=1)))
    got = exact_answer(shop, f"SELECT SUM(total) AS s, COUNT(*) AS n FROM ({INNER}) t")
    assert got["s"][()] <= got["n"][()] * 1.0 and got["s"][()] > 100


# --- privacy --------------------------------------------------------------------------------------

NEIGHBOUR_QUERIES = [
    (f"SELECT COUNT(*), SUM(total), AVG(total) FROM ({INNER}) t", 0),
    (f"SELECT {BUCKET} AS b, COUNT(*), SUM(total) FROM ({INNER}) t GROUP BY b", 0),
    ("SELECT n, COUNT(*) FROM (SELECT cid, COUNT(*) AS n FROM tx GROUP BY cid) t GROUP BY n", 0),
    ("SELECT SUM(b), AVG(lo), VARIANCE(hi), COUNT(aq) FROM (SELECT cid, SUM(bal) AS b, MIN(amount) AS lo, "
     "MAX(amount) AS hi, AVG(qty) AS aq FROM tx WHERE flag OR cid = 999 GROUP BY cid) t", 0),
    (f"SELECT FLOOR(total / 100) AS r, COUNT(*) FROM ({INNER}) t GROUP BY r", 1e-4),  # threshold selection
    (f"SELECT MEDIAN(total), MAX(total) FROM ({INNER}) t", 0),
]


def _adversary(rows: int, amount: float, extra: dict[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    frames = shop_frames()
    add = pd.DataFrame({
        "tid": np.arange(rows) + 10**6, "cid": 999, "amount": amount, "bal": 1e9, "qty": pd.array([10] * rows, dtype="Int64"),
        "cat": "food", "flag": True, "note": "z", **(extra or {}),
    })
    frames["raw_tx"] = pd.concat([frames["raw_tx"].iloc[:50], add, frames["raw_tx"].iloc[50:]], ignore_index=True)
    frames["raw_cust"] = pd.concat([frames["raw_cust"], pd.DataFrame({"cid": [999], "segment": ["private"]})], ignore_index=True)
    return frames


@pytest.fixture(scope="module")
def neighbours() -> list[Gateway]:
    return [make_shop(_adversary(9, 1e12)), make_shop(_adversary(1, -1e12)), make_shop(_adversary(3, math.nan))]


@pytest.mark.parametrize("sql, delta", NEIGHBOUR_QUERIES)
def test_one_customer_moves_each_measure_by_at_most_its_sensitivity(shop: Gateway, neighbours: list[Gateway], sql: str, delta: float) -> None:
    plan = shop.plan("shop", sql, epsilon=1, delta=delta)
    assert plan.max_rows == 1
    a = exact_cells(plan, shop.engine)
    for other in neighbours:
        b = exact_cells(plan, other.engine)
        for m in plan.measures:
            if m.kind == "quantile":
                grid = quantile_lattice(plan, m)
                q = quantile_query(plan, m, grid)
                ha: dict[tuple, list] = {}
                hb: dict[tuple, list] = {}
                for h, gw in ((ha, shop), (hb, other)):
                    for r in gw.engine.execute(q):
                        h.setdefault(tuple(r[: len(plan.keys)]), []).append(tuple(r[len(plan.keys):]))
                moved = sum(int(np.max(np.abs(np.array(_histogram(ha.get(c, []), len(grid))) - np.array(_histogram(hb.get(c, []), len(grid))))))
                            for c in set(ha) | set(hb))
                assert moved <= plan.max_rows, (sql, m.id, moved)
                continue
            cells = set(a) | set(b)
            l1 = sum(abs(float((a.get(c) or {}).get(m.id) or 0) - float((b.get(c) or {}).get(m.id) or 0)) for c in cells)
            assert math.isfinite(l1) and l1 <= m.sensitivity * (1 + 1e-9) + 1e-6, (sql, m.id, l1, m.sensitivity)


def test_the_sum_bound_is_reached_not_loose(shop: Gateway, neighbours: list[Gateway]) -> None:
    """The adversary's k kept rows all clamp to 500: its derived total is k * 500, exactly the SUM's sensitivity."""
    plan = shop.plan("shop", f"SELECT SUM(total) FROM ({INNER}) t", epsilon=1)
    (m,) = plan.measures
    moved = exact_cells(plan, neighbours[0].engine)[()][m.id] - exact_cells(plan, shop.engine)[()][m.id]
    assert moved == pytest.approx(m.sensitivity) == K * 500


P_FAIL = 1e-4


def test_noise_has_the_stated_scale(shop: Gateway) -> None:
    """SUM(total) at ε = 1: Laplace noise of scale k * 500 (KS test); COUNT(*) of customers: discrete
    Laplace of scale 1 (sensitivity 1: one row per customer), its mean |error| within 5 standard errors."""
    n = 200
    exact = exact_answer(shop, f"SELECT SUM(total) AS s, COUNT(*) AS c FROM ({INNER}) t")
    sums, counts = [], []
    for _ in range(n):
        answer = shop.query("shop", f"SELECT SUM(total) AS s, COUNT(*) AS c FROM ({INNER}) t", epsilon=1)
        sums.append(answer.rows[0][0])
        counts.append(answer.rows[0][1])
    acc_s, acc_c = answer.accuracy["s"], answer.accuracy["c"]
    assert acc_s.scale == pytest.approx(K * 500 * 2)  # ε split in two: each measure gets 1/2
    assert acc_c.scale == pytest.approx(2.0)
    errors = np.array(sums) - exact["s"][()]
    assert stats.kstest(errors, stats.laplace(scale=acc_s.scale).cdf).pvalue >= P_FAIL
    q = math.exp(-1 / acc_c.scale)
    mean_abs = 2 * q / ((1 + q) * (1 - q))
    sd_abs = math.sqrt(2 * q / (1 - q) ** 2 - mean_abs**2)
    err_c = np.abs(np.array(counts) - exact["c"][()])
    assert abs(err_c.mean() - mean_abs) < 5 * sd_abs / math.sqrt(n), (err_c.mean(), mean_abs)


def test_only_noisy_aggregates_leave(shop: Gateway) -> None:
    """No per-customer value leaves: every answer value is noisy (fresh noise on a repeat), keys come
    from public domains, and the engine query's outer level holds aggregates and keys only."""
    sql = f"SELECT {BUCKET} AS b, COUNT(*) AS n, SUM(total) AS s, AVG(total) AS a FROM ({INNER}) t GROUP BY b"
    one, two = shop.query("shop", sql, epsilon=1), shop.query("shop", sql, epsilon=1)
    assert [r[0] for r in one.rows] == [r[0] for r in two.rows] == ["low", "mid", "high"]
    for j in (1, 2, 3):  # each column fresh noise on a repeat (a cell clipped at 0 may repeat; not all cells)
        assert any(r1[j] != r2[j] for r1, r2 in zip(one.rows, two.rows)), j
    assert all(one.accuracy[c].scale for c in ("n", "s"))
    plan = shop.plan("shop", sql, epsilon=1)
    q = main_query(plan)
    keys = len(plan.keys)
    assert all(i.this.find(exp.AggFunc) is not None for i in q.expressions[keys:])
    assert q.args.get("group") is not None
    exact = exact_answer(shop, sql)["s"]
    assert all(r[2] != exact[(r[0],)] for r in one.rows if (r[0],) in exact and exact[(r[0],)] > 0)  # never the exact sum


# --- refusals ---------------------------------------------------------------------------------------

REFUSED = [
    ("SELECT COUNT(*) FROM tx WHERE amount > (SELECT MAX(amount) FROM tx)", "subquery"),
    ("SELECT COUNT(*), (SELECT 1) FROM tx", "subquery"),
    ("SELECT COUNT(*) FROM tx WHERE cid IN (SELECT cid FROM cust)", "subquery"),
    ("SELECT COUNT(*) FROM tx WHERE EXISTS (SELECT cid FROM cust)", "subquery"),
    ("SELECT COUNT(*) FROM (SELECT * FROM tx) t", "not grouped by the unit"),
    ("SELECT COUNT(*) FROM (SELECT cid, amount FROM tx) t", "not grouped by the unit"),
    ("SELECT COUNT(*) FROM (SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat) t", "not grouped by the unit"),
    ("SELECT SUM(n) FROM (SELECT cid, cat, COUNT(*) AS n FROM tx GROUP BY cid, cat) t", "GROUP BY in subquery"),
    (f"SELECT AVG(s) FROM (SELECT cid, SUM(total) AS s FROM ({INNER}) a GROUP BY cid) b", "subquery"),
    ("SELECT COUNT(*) FROM (SELECT cid, SUM(amount) AS s FROM tx GROUP BY cid HAVING SUM(amount) > 10) t", "HAVING in subquery"),
    ("SELECT COUNT(*) FROM (SELECT cid, SUM(amount) AS s FROM tx GROUP BY cid ORDER BY s LIMIT 5) t", "in subquery"),
    ("SELECT COUNT(*) FROM (SELECT cid, SUM(amount) AS s FROM tx GROUP BY cid LIMIT 5) t", "LIMIT in subquery"),
    ("SELECT COUNT(*) FROM (SELECT DISTINCT cid, SUM(amount) AS s FROM tx GROUP BY cid) t", "DISTINCT in subquery"),
    ("SELECT SUM(r) FROM (SELECT cid, ROW_NUMBER() OVER () AS r FROM tx GROUP BY cid) t", "window"),
    ("SELECT SUM(n) FROM (SELECT cat, COUNT(*) AS n FROM sectors GROUP BY cat) t", "public"),
    ("SELECT COUNT(*) FROM (SELECT cid, amount AS a FROM tx GROUP BY cid) t", "row-level"),
    ("SELECT COUNT(*) FROM (SELECT cid, SUM(amount) FROM tx GROUP BY cid) t", "column name"),
    ("SELECT AVG(r) FROM (SELECT cid, SUM(amount) / COUNT(*) AS r FROM tx GROUP BY cid) t", "subquery aggregate"),
    ("SELECT AVG(v) FROM (SELECT cid, VARIANCE(amount) AS v FROM tx GROUP BY cid) t", "subquery aggregate"),
    ("SELECT AVG(s) FROM (SELECT cid, SUM(TRY_CAST(note AS DOUBLE)) AS s FROM tx GROUP BY cid) t", "unbounded SUM"),
    ("SELECT AVG(s) FROM (SELECT cid, SUM(tid) AS s FROM tx GROUP BY cid) t", "SUM of id"),
    ("SELECT AVG(s) FROM (SELECT cid, SUM(DISTINCT amount) AS s FROM tx GROUP BY cid) t", "DISTINCT"),
    (f"SELECT COUNT(*) FROM ({INNER}) t JOIN cust c ON t.cid = c.cid", "JOIN"),
    (f"SELECT COUNT(*) FROM tx JOIN ({INNER}) s ON tx.cid = s.cid", "subquery"),
    (f"SELECT cid, COUNT(*) FROM ({INNER}) t GROUP BY cid", "privacy unit"),
    (f"SELECT total FROM ({INNER}) t", "row-level"),
    (f"SELECT COUNT(*) FROM ({INNER}) AS t(a, b)", "subquery"),
    ("SELECT COUNT(*) FROM (SELECT cid, COUNT(*) AS n FROM tx GROUP BY cid UNION SELECT cid, 1 AS n FROM cust) t", "subquery"),
    (f"WITH d AS ({INNER}) SELECT AVG(total) FROM d", "WITH"),
    ("SELECT COUNT(*) FROM (SELECT cid, SUM(amount) AS s, COUNT(*) AS s FROM tx GROUP BY cid) t", "column name"),
    ("SELECT COUNT(*) FROM (SELECT cid, SUM(amount) AS _dpgate_row FROM tx GROUP BY cid) t", "column name"),
    ("SELECT COUNT(*) FROM (SELECT cid, SUM(SUM(amount)) AS s FROM tx GROUP BY cid) t", "nested aggregate"),
    ("SELECT COUNT(*) FROM (SELECT cid, COUNT(*) AS n FROM tx WHERE COUNT(*) > 1 GROUP BY cid) t", "aggregate in WHERE"),
    ("SELECT COUNT(*) FROM (SELECT cid, COUNT(*) AS n FROM tx GROUP BY cid) t TABLESAMPLE (10 PERCENT)", None),
]


@pytest.mark.parametrize("sql, construct", REFUSED)
def test_other_subquery_shapes_are_refused(shop: Gateway, sql: str, construct: str | None) -> None:
    with pytest.raises(QueryError) as info:
        shop.plan("shop", sql, epsilon=1, delta=1e-5)
    assert info.value.code == "unsupported_sql", info.value.message
    if construct is not None:
        assert construct.lower() in (info.value.construct or "").lower(), (info.value.construct, info.value.message)
    if "subquery" in (info.value.construct or "") or "subquery" in info.value.message:
        assert "GROUP BY unit" in info.value.message or "grouped by the privacy unit" in info.value.message, info.value.message


def test_unknown_derived_column_and_qualifier(shop: Gateway) -> None:
    with pytest.raises(QueryError) as info:
        shop.plan("shop", f"SELECT SUM(amount) FROM ({INNER}) t", epsilon=1)
    assert info.value.code == "unknown_column"
    with pytest.raises(QueryError) as info:
        shop.plan("shop", f"SELECT SUM(x.total) FROM ({INNER}) t", epsilon=1)
    assert info.value.code == "unknown_table"


def test_a_row_level_dataset_has_no_unit_to_group_by() -> None:
    meta = {"name": "shop", "privacy_unit": None, "budget": {"epsilon": 10}, "tables": {
        "tx": {"source": "raw_tx", "max_rows_per_unit": 1, "columns": {"cid": {"type": "id"}, "amount": {"type": "float", "lower": 0, "upper": 5}}}}}
    gw = make_shop({"raw_tx": pd.DataFrame({"cid": [1, 2], "amount": [1.0, 2.0]})}, meta=meta)
    with pytest.raises(QueryError) as info:
        gw.plan("shop", "SELECT AVG(s) FROM (SELECT cid, SUM(amount) AS s FROM tx GROUP BY cid) t", epsilon=1)
    assert info.value.code == "unsupported_sql" and "row-level" in info.value.message


# --- PostgreSQL ---------------------------------------------------------------------------------------

PG_QUERIES = [
    f"SELECT COUNT(*), SUM(total), AVG(total) FROM ({INNER}) t WHERE total > 100",
    f"SELECT {BUCKET} AS b, COUNT(*) FROM ({INNER}) t GROUP BY b",
    "SELECT n, COUNT(*), SUM(av), SUM(lo) FROM (SELECT cid, COUNT(*) AS n, AVG(amount) AS av, MIN(qty) AS lo FROM tx "
    "WHERE flag OR cat = 'food' GROUP BY cid) t GROUP BY n",
    "SELECT SUM(s), COUNT(nc) FROM (SELECT t.cid, SUM(t.amount) AS s, COUNT(DISTINCT t.cat) AS nc FROM tx t JOIN cust c "
    "ON t.cid = c.cid WHERE c.segment = 'retail' GROUP BY t.cid) d",
]


def postgres_shop() -> Any:
    try:
        import psycopg

        from gateway.engines.postgres import PostgresEngine
        from gateway.settings import PostgresSettings

        with psycopg.connect(PostgresSettings().url, connect_timeout=3):
            pass
    except Exception as e:  # noqa: BLE001 - no PostgreSQL here: the DuckDB checks still run
        pytest.skip(f"PostgreSQL is not reachable: {type(e).__name__}")
    engine = PostgresEngine(PostgresSettings(schema=f"dpgate_nested_{uuid.uuid4().hex[:8]}"), seed="shop-seed")
    return engine


@pytest.fixture(scope="module")
def pg_shop() -> Any:
    engine = postgres_shop()
    try:
        yield make_shop(engine=engine)
    finally:
        engine.drop_schema()
        engine.close()


def _same_cells(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for cell in a:
        for mid, v in a[cell].items():
            w = b[cell][mid]
            assert (v is None and w is None) or math.isclose(float(v or 0), float(w or 0), rel_tol=1e-9, abs_tol=1e-6), (cell, mid, v, w)


@pytest.mark.parametrize("sql", PG_QUERIES)
def test_postgres_computes_the_same_exact_values(shop: Gateway, pg_shop: Gateway, sql: str) -> None:
    plan_d = shop.plan("shop", sql, epsilon=1)
    plan_p = pg_shop.plan("shop", sql, epsilon=1)
    assert plan_p.engine == "postgres"
    assert [(m.kind, m.sensitivity) for m in plan_d.measures] == [(m.kind, m.sensitivity) for m in plan_p.measures]
    _same_cells(exact_cells(plan_d, shop.engine), exact_cells(plan_p, pg_shop.engine))
    assert pg_shop.query("shop", sql, epsilon=1).columns == shop.query("shop", sql, epsilon=1).columns


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_spark_computes_the_same_exact_values(shop: Gateway, tmp_path: Any) -> None:
    """The nested forms and the lookup joins on Spark (slow: a JVM). Found here: Spark's dialect typed a
    clamp CASE of integer literals over an untyped derived column as an integer and summed it rounded;
    derived float columns are now cast to DOUBLE where they are read."""
    from gateway.engines.spark import SparkEngine
    from gateway.settings import SparkSettings
    from tests.sql.test_public_join import NEIGHBOUR_QUERIES as JOIN_QUERIES

    engine = SparkEngine(SparkSettings(warehouse=tmp_path / "wh", driver_memory="1g", shuffle_partitions=2), data_dir=tmp_path, seed="shop-seed")
    try:
        spark = make_shop(engine=engine)
        for sql in [*PG_QUERIES, *JOIN_QUERIES]:
            _same_cells(exact_cells(shop.plan("shop", sql, epsilon=1), shop.engine), exact_cells(spark.plan("shop", sql, epsilon=1), engine))
    finally:
        engine.close()
