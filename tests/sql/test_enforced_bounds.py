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
from gateway.sql.scalar import clamp_sql
from tests.conftest import bank_frames, make_gateway

QUERIES = [
    "SELECT SUM(amount), AVG(amount), VARIANCE(amount) FROM tx",
    "SELECT SUM(LEAST(amount, 999)), AVG(GREATEST(qty, 2)) FROM tx",
    "SELECT cat, SUM(CASE WHEN flag THEN amount ELSE 0 END), MEDIAN(amount) FROM tx GROUP BY cat",
    "SELECT SUM(COALESCE(qty, 3)), AVG(CAST(flag AS INTEGER)) FROM tx",
    "SELECT SUM(LEAST(a.balance, CASE WHEN a.cid = 42 THEN NULL ELSE 0 END)) FROM acct a",
    "SELECT PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY amount / 2), MIN(qty), MAX(qty) FROM tx",
]


def _clamp_bounds(value: exp.Expression) -> tuple[float, float] | None:
    """(lo, hi) when `value` is exactly `clamp_sql(inner, lo, hi)`."""
    if not isinstance(value, exp.Case) or len(value.args["ifs"]) != 2:
        return None
    first, second = value.args["ifs"]
    if not (isinstance(first.this, exp.LT) and isinstance(second.this, exp.GT)):
        return None
    lo, hi = float(first.args["true"].sql()), float(second.args["true"].sql())
    inner = value.args["default"]
    return (lo, hi) if clamp_sql(inner, lo, hi) == value else None


@pytest.mark.parametrize("sql", QUERIES)
def test_every_aggregated_value_is_clamped_in_the_engine_query_to_the_plans_bounds(bank: Gateway, sql: str) -> None:
    plan = bank.plan("bank", sql, epsilon=1)
    checked = 0
    for m in plan.measures:
        if m.kind == "quantile":
            assert _clamp_bounds(m.sql) == (m.lower, m.upper), m  # type: ignore[arg-type]
            checked += 1
        elif m.kind == "sum" and m.sql is not None:
            agg = m.sql
            assert isinstance(agg, exp.Sum)
            value = agg.this
            if isinstance(value, exp.Mul):  # a centred square: (v - mid) * (v - mid), v clamped
                value = value.this.this.this
            bounds = _clamp_bounds(value)
            assert bounds is not None, (sql, m.sql.sql("duckdb"))
            lo, hi = bounds
            if not isinstance(agg.this, exp.Mul):
                assert m.sensitivity >= plan.max_rows * max(abs(lo), abs(hi)), m
            checked += 1
    assert checked


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
