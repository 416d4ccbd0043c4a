"""Enforce, don't infer: the bounds a sensitivity relies on are written into the engine query.

The first wave skipped the outer clamp of an aggregated value built "only from clamped columns" (for
speed), and the bounds of LEAST assumed that both operands count while DuckDB skips NULL ones:
`SUM(LEAST(balance, CASE WHEN customer_id = 'c42' THEN NULL ELSE 0 END))` was planned at sensitivity 0
and released c42's balance exactly, 20 times of 20. Now every value reaching SUM, AVG, VAR or a
quantile is clamped in the engine SQL to the plan's bounds, and a sum over columns is noised even at
sensitivity 0.
"""
from __future__ import annotations

import statistics

import pytest
from sqlglot import exp

from gateway.core import Gateway
from gateway.sql.plan import MIN_ROW_BOUND
from gateway.sql.scalar import clamp_sql, enforce_clamp, lit_num, literal_value
from gateway.sql.source import CLAMPED
from tests.conftest import bank_frames, make_gateway

QUERIES = [
    "SELECT SUM(amount), AVG(amount), VARIANCE(amount) FROM tx",
    "SELECT cat, AVG(CASE WHEN flag THEN 1 ELSE 0 END), SUM(CASE WHEN flag THEN amount * 2 WHEN qty > 3 THEN -5 END) FROM tx GROUP BY cat",
    "SELECT SUM(CASE WHEN flag THEN 5000 ELSE -3 END), AVG(CASE WHEN qty > 3 THEN 2000 END) FROM tx",
    "SELECT SUM(t.amount), MEDIAN(t.qty) FROM tx t",
    "SELECT SUM(LEAST(amount, 999)), AVG(GREATEST(qty, 2)) FROM tx",
    "SELECT cat, SUM(CASE WHEN flag THEN amount ELSE 0 END), MEDIAN(amount) FROM tx GROUP BY cat",
    "SELECT SUM(COALESCE(qty, 3)), AVG(CAST(flag AS INTEGER)) FROM tx",
    "SELECT SUM(LEAST(a.balance, CASE WHEN a.cid = 42 THEN NULL ELSE 0 END)) FROM acct a",
    "SELECT PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY amount / 2), MIN(qty), MAX(qty) FROM tx",
]


def _clamped(value: exp.Expression, lo: float, hi: float, gw: Gateway) -> bool:
    """Whether the engine can only compute `value` inside [lo, hi] (or NULL), by its SQL's shape alone:
    `clamp_sql(inner, a, b)` with [a, b] in [lo, hi], a CASE each of whose branches is so, a literal in
    [lo, hi], NULL, or a column the engine stored clamped to (lo, hi) at registration."""
    if isinstance(value, exp.Null):
        return True
    if isinstance(value, exp.Cast) and value.to.this == exp.DataType.Type.DOUBLE:
        return _clamped(value.this, lo, hi, gw)  # a clamped value as a DOUBLE is as clamped
    v = literal_value(value)
    if v is not None:
        return lo <= v <= hi
    if isinstance(value, exp.Column) and value.name.startswith(CLAMPED):
        name = value.name[len(CLAMPED):]
        bounds = {b for t in gw.catalog.get("bank").tables.values() if name in t.columns for b in [t.columns[name].bounds]}
        return bounds == {(lo, hi)}
    if not isinstance(value, exp.Case):
        return False
    ifs = value.args["ifs"]
    if len(ifs) == 2 and isinstance(ifs[0].this, exp.LT) and isinstance(ifs[1].this, exp.GT):
        a, b = literal_value(ifs[0].args["true"]), literal_value(ifs[1].args["true"])
        if a is not None and b is not None and clamp_sql(value.args["default"], a, b) == value:
            return lo <= a <= b <= hi
    return all(_clamped(i.args["true"], lo, hi, gw) for i in ifs) and _clamped(value.args.get("default") or exp.Null(), lo, hi, gw)


@pytest.mark.parametrize("sql", QUERIES)
def test_every_aggregated_value_is_clamped_in_the_engine_query_to_the_plans_bounds(bank: Gateway, sql: str) -> None:
    plan = bank.plan("bank", sql, epsilon=1)
    measures = {m.id: m for m in plan.measures}
    checked = 0
    for agg in plan.aggregates:
        if agg.func == "count":
            continue
        lo, hi = agg.lower, agg.upper
        for m in (measures[i] for i in agg.measures):
            if m.kind == "quantile":
                assert (m.lower, m.upper) == (lo, hi) and _clamped(m.sql, lo, hi, bank), m  # type: ignore[arg-type]
                checked += 1
            elif m.kind == "sum" and m.base is not None:  # a centred sum, derived from the sum below
                m = measures[m.base]
            if m.kind != "sum":
                continue
            assert isinstance(m.sql, exp.Sum), m
            value = m.sql.this
            square = isinstance(value, exp.Mul)  # (v - mid) * (v - mid)
            if square:
                value = value.this.this.this
            assert _clamped(value, lo, hi, bank), (sql, m.sql.sql("duckdb"))
            if not square:
                assert m.sensitivity >= plan.max_rows * max(abs(lo), abs(hi)), m
            checked += 1
    assert checked


def test_the_shape_check_has_power(bank: Gateway) -> None:
    """The check above rejects values the engine could compute outside the bounds."""
    assert not _clamped(exp.column("amount", table="tx"), 0, 1000, bank)
    assert not _clamped(clamp_sql(exp.column("amount"), 0, 2000), 0, 1000, bank)
    assert not _clamped(exp.Case(ifs=[exp.If(this=exp.true(), true=exp.column("amount"))], default=lit_num(0)), 0, 1000, bank)
    assert not _clamped(lit_num(1001), 0, 1000, bank)
    assert _clamped(enforce_clamp(exp.column("amount"), 0, 1000), 0, 1000, bank)


def test_the_reviews_null_attack_gets_noise_scaled_to_the_whole_balance(bank: Gateway) -> None:
    sql = "SELECT SUM(LEAST(balance, CASE WHEN cid = 42 THEN NULL ELSE 0 END)) AS s FROM acct"
    plan = bank.plan("bank", sql, epsilon=1)
    (m,) = [m for m in plan.measures if m.kind == "sum"]
    assert m.sensitivity == plan.max_rows * 5000  # balance's bound, not 0: LEAST skips the NULL
    answer = bank.query("bank", sql, epsilon=1)
    assert answer.accuracy["s"].mechanism != "none" and answer.accuracy["s"].scale >= 2 * 5000


def test_a_sum_whose_bounds_make_it_constant_is_still_noised() -> None:
    gw = make_gateway(bank_frames(n_customers=80, seed=5))
    sql = "SELECT SUM(LEAST(amount, 0)) AS s FROM tx"  # amount in [0, 1000]: the clamp makes it 0
    plan = gw.plan("bank", sql, epsilon=1)
    (m,) = [m for m in plan.measures if m.kind == "sum"]
    assert m.sensitivity == plan.max_rows * MIN_ROW_BOUND and not m.constant
    draws = [gw.query("bank", sql, epsilon=1).rows[0][0] for _ in range(30)]
    assert statistics.pstdev(draws) > 0  # noise, with the scale stated
    assert gw.query("bank", sql, epsilon=1).accuracy["s"].scale == pytest.approx(plan.max_rows * MIN_ROW_BOUND)


def test_a_literal_is_the_one_value_released_without_noise(bank: Gateway) -> None:
    plan = bank.plan("bank", "SELECT SUM(0) AS z, COUNT(*) AS n FROM tx", epsilon=1)
    (m,) = [m for m in plan.measures if m.kind == "sum"]
    assert m.constant and m.sensitivity == 0
    answer = bank.query("bank", "SELECT SUM(0) AS z, COUNT(*) AS n FROM tx", epsilon=1)
    assert answer.rows[0][0] == 0 and answer.accuracy["z"].mechanism == "none"
