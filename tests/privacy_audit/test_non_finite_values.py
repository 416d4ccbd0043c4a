"""NaN, ±inf and huge values in the data never reach OpenDP, and never widen a unit's influence.

OpenDP's own domains would reject NaN here (``nan=False``) or, in some transformations, map it to 0
silently; the gateway must clean values before. It does so in the engine: declared numeric columns are
cast with the declared type at registration and stored clamped to their bounds by `clamp_sql`, whose
documented rule is "NULL stays NULL, NaN goes to hi (DuckDB orders NaN above all)": NaN and +inf count
as the upper bound, -inf as the lower one, 1e308 as whatever bound it passes. The tests:

* real NaN/inf values (a text column cast to DOUBLE, as from a CSV file) give every mechanism exactly
  the inputs of the same table with those values replaced as documented, and answers that are
  statistically indistinguishable from it (audited: ε_lb = 0);
* a unit holding such values moves every Laplace input by at most its sensitivity;
* a NULL — what pandas' NaN or an empty CSV field becomes — in a column *declared* not nullable: a real
  bug found here (`NULL_BUG_FIXED`); where 0 is outside a value's bounds it is now counted with
  COUNT(value) (`gateway/sql/plan.py` `_Build._value`).
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gateway.core import Gateway
from mechanisms import LaplaceCount, LaplaceFloat
from mechanisms.audit import epsilon_lower_bound
from tests.conftest import BANK, bank_frames, make_gateway
from tests.privacy_audit.cases import BASE_CUSTOMERS, QUERY_EPSILON, TEST_ALPHA, UNIT, adversarial_rows, answers_sampler, trace

K = BANK["tables"]["tx"]["max_rows_per_unit"]
LOWER, UPPER = 0.0, 1000.0  # tx.amount's declared bounds
ODD = ["nan", "inf", "-inf", "1e308", "-1e308"]
# the documented replacement: NaN and +inf to the upper bound, -inf to the lower, huge values clamped
REPLACED = [UPPER, UPPER, LOWER, UPPER, LOWER]

AGGREGATES = [
    "SELECT COUNT(*), SUM(amount), AVG(amount), VARIANCE(amount) FROM tx",
    "SELECT MEDIAN(amount), QUANTILE_CONT(amount, 0.9), MAX(amount) FROM tx",
    "SELECT cat, SUM(amount), AVG(amount) FROM tx GROUP BY cat",
    "SELECT SUM(amount * 2 + 1), AVG(amount / 3), SUM(LEAST(amount, 500)), STDDEV(amount - 5) FROM tx",
]


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """tx.amount as text, as a CSV file holds it: the engine's CAST turns 'nan' into a real NaN."""
    out = frame.copy()
    out["amount"] = [repr(float(v)) for v in frame["amount"]]
    return out


@functools.lru_cache(maxsize=None)
def gateways() -> dict[str, Gateway]:
    base = bank_frames(BASE_CUSTOMERS, seed=3)
    text = {**base, "raw_tx": _as_text(base["raw_tx"])}

    def with_unit(frames: dict[str, pd.DataFrame], amounts: list) -> Gateway:
        f = copy.deepcopy(frames)
        f["raw_tx"] = adversarial_rows(f["raw_tx"], rows=K, cat="food")
        f["raw_tx"].loc[f["raw_tx"]["cid"] == UNIT, "amount"] = amounts
        return make_gateway(f)

    return {
        "odd": with_unit(text, ODD),
        "replaced": with_unit(text, [repr(v) for v in REPLACED]),
        "without": make_gateway(copy.deepcopy(text)),
        # pandas NaN (DuckDB reads it as NULL) in amount, declared not nullable; and NULL in qty, nullable
        "null": with_unit(base, [np.nan] * K),
        "null_qty": _null_qty(base),
        "null_without": make_gateway(copy.deepcopy(base)),
    }


def _null_qty(base: dict[str, pd.DataFrame]) -> Gateway:
    f = copy.deepcopy(base)
    f["raw_tx"] = adversarial_rows(f["raw_tx"], rows=K, cat="food")
    f["raw_tx"]["qty"] = f["raw_tx"]["qty"].astype("Int64")
    f["raw_tx"].loc[f["raw_tx"]["cid"] == UNIT, "qty"] = pd.NA
    return make_gateway(f)


def _inputs(gw: Gateway, sql: str) -> list[tuple[str, list]]:
    """What each mechanism was handed by one real release: (mechanism type, its input values)."""
    _, calls = trace(gw, sql)
    out: list[tuple[str, list]] = []
    for mech, kind, args in calls:
        if kind == "counts":  # a quantile's rows per lattice slot
            flat = [float(v) for v in (*args[0].on, *args[0].between)]
        else:
            flat = [float(v) for v in args[0]]
        out.append((type(mech).__name__, flat))
    return out


def test_the_values_reach_the_engine_non_finite() -> None:
    gw = gateways()["odd"]
    rows = gw.engine._con.execute("SELECT amount FROM src__bank__tx WHERE cid = ? ORDER BY tid", [UNIT]).fetchall()
    got = [r[0] for r in rows]
    assert math.isnan(got[0]) and got[1:3] == [math.inf, -math.inf] and got[3:] == [1e308, -1e308]


@pytest.mark.parametrize("sql", AGGREGATES)
def test_mechanisms_see_the_documented_replacement(sql: str) -> None:
    odd, replaced = _inputs(gateways()["odd"], sql), _inputs(gateways()["replaced"], sql)
    assert [t for t, _ in odd] == [t for t, _ in replaced]
    for (kind, a), (_, b) in zip(odd, replaced):
        assert all(math.isfinite(v) for v in a), (sql, kind, a)
        assert a == pytest.approx(b, rel=1e-12, abs=1e-9), (sql, kind)


@pytest.mark.parametrize("sql", AGGREGATES)
def test_a_unit_of_non_finite_values_moves_each_input_by_at_most_the_sensitivity(sql: str) -> None:
    _within_sensitivity(gateways()["odd"], gateways()["without"], sql)


@pytest.mark.parametrize(
    "sql", ["SELECT SUM(amount), AVG(amount) FROM tx", "SELECT cat, AVG(amount) FROM tx GROUP BY cat"]
)
def test_answers_match_the_replacement_statistically(sql: str) -> None:
    """Through the whole release path: the table with NaN/inf rows and the one with their documented
    replacements give answers of one distribution (the audit finds no ε between them; KS agrees)."""
    odd = answers_sampler(gateways()["odd"], sql, [("food",)] if "GROUP" in sql else [()], 1 if "GROUP" in sql else 0)
    rep = answers_sampler(gateways()["replaced"], sql, [("food",)] if "GROUP" in sql else [()], 1 if "GROUP" in sql else 0)
    x, y = odd(1_500), rep(1_500)
    assert epsilon_lower_bound(x, y, alpha=TEST_ALPHA).epsilon_lower_bound == 0.0
    for j in range(x.shape[1]):
        assert stats.ks_2samp(x[:, j], y[:, j]).pvalue > TEST_ALPHA


def _within_sensitivity(d: Gateway, d_prime: Gateway, sql: str) -> None:
    a, b = _inputs(d, sql), _inputs(d_prime, sql)
    _, calls = trace(d, sql)
    for (mech, _, _), (kind, x), (_, y) in zip(calls, a, b):
        if isinstance(mech, (LaplaceCount, LaplaceFloat)):
            moved = float(np.abs(np.asarray(x) - np.asarray(y)).sum())
            assert moved <= mech.sensitivity * (1 + 1e-12), (sql, kind, moved, mech.sensitivity)


@pytest.mark.parametrize("sql", ["SELECT AVG(amount), VARIANCE(amount) FROM tx", "SELECT SUM(amount + 5000) FROM tx"])
def test_null_in_a_non_nullable_column_within_sensitivity_when_bounds_hold_zero(sql: str) -> None:
    """With 0 inside the value's bounds a NULL counted as a row is harmless (it acts as the value 0)."""
    _within_sensitivity(gateways()["null"], gateways()["null_without"], sql)


def test_null_in_a_nullable_column_within_sensitivity() -> None:
    """A column declared nullable is counted with COUNT(value): its NULLs are skipped by both halves of AVG."""
    _within_sensitivity(gateways()["null_qty"], gateways()["null_without"], "SELECT AVG(qty + 100), VARIANCE(qty + 100) FROM tx")


NULL_BUG_FIXED = (
    "gateway/sql/plan.py _Build._value/_build_aggregate: AVG over a column declared not nullable divides by "
    "COUNT(*) and derives its centred sum as SUM(x) - mid*COUNT(*), but the engine never enforces "
    "`nullable: false` (DuckDB reads pandas NaN and empty CSV fields as NULL; engines/duckdb.py checks only the "
    "unit column), so a NULL row adds -mid to the centred sum whose sensitivity assumes |x - mid| <= half: "
    "|mid|/half times too much when 0 is outside the value's bounds (11x for AVG(amount + 5000))"
)


def test_null_in_a_non_nullable_column_stays_within_sensitivity() -> None:
    _within_sensitivity(gateways()["null"], gateways()["null_without"], "SELECT AVG(amount + 5000) FROM tx")


def test_null_in_a_non_nullable_column_audit() -> None:
    """The same bug seen by the auditor on the released answers: ε_lb far above the ε charged."""
    sql = "SELECT AVG(amount + 5000) FROM tx"
    x = answers_sampler(gateways()["null"], sql, [()], 0)(1_500)
    y = answers_sampler(gateways()["null_without"], sql, [()], 0)(1_500)
    result = epsilon_lower_bound(x, y, alpha=TEST_ALPHA)
    assert result.consistent_with(QUERY_EPSILON), result.to_json()
