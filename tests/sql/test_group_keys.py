"""GROUP BY keys are encoded canonically and injectively before threshold selection.

The first wave turned inf, -inf and NaN into null in the map threshold selection reads, so a later group
silently replaced an earlier one: one customer with a negative amount erased a group of 2,000 (`amount /
1e-308` is inf for every positive amount, -inf for a negative one). Property: no two distinct engine
groups ever map to one released key, for adversarial values of every key type, alone and in pairs.
"""
from __future__ import annotations

import datetime as dt
import math

import duckdb
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sql.release import _cell_key, canonical_cell
from tests.conftest import BANK, make_gateway

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -5e-324, 1.0, 2.0**63]),
    st.none(),
)
TEXTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "é", "e\u0301", "\u00c5", "A\u030a", "\u212b", "x" * 5000, "null", "None", "NaN", '["null"]']),
    st.none(),
)
INTS = st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.none())


def _groups(con: duckdb.DuckDBPyConnection, columns: dict[str, tuple[str, list]]) -> list[tuple]:
    frame = pd.DataFrame({name: pd.Series(values, dtype=object) for name, (_, values) in columns.items()})
    casts = ", ".join(f"TRY_CAST({name} AS {sql_type}) AS {name}" for name, (sql_type, _) in columns.items())
    con.register("t", frame)
    names = ", ".join(columns)
    return con.execute(f"SELECT {names}, COUNT(*) FROM (SELECT {casts} FROM t) GROUP BY ALL").fetchall()


def _assert_injective(rows: list[tuple], nkeys: int) -> None:
    keys = [_cell_key(canonical_cell(r[:nkeys])) for r in rows]
    assert len(set(keys)) == len(rows), sorted(zip(keys, rows), key=str)
    cells = {canonical_cell(r[:nkeys]) for r in rows}
    assert len(cells) == len(rows)  # the exact-cells map has one entry per engine group too


@settings(max_examples=60, deadline=None)
@given(st.lists(FLOATS, min_size=1, max_size=30))
def test_float_keys_never_collide(values: list) -> None:
    con = duckdb.connect()
    _assert_injective(_groups(con, {"k": ("DOUBLE", values)}), 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=30))
def test_text_keys_never_collide_whatever_their_unicode_form(values: list) -> None:
    con = duckdb.connect()
    _assert_injective(_groups(con, {"k": ("VARCHAR", values)}), 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(FLOATS, TEXTS, INTS), min_size=1, max_size=30))
def test_pairs_of_keys_never_collide(rows: list) -> None:
    con = duckdb.connect()
    columns = {"a": ("DOUBLE", [r[0] for r in rows]), "b": ("VARCHAR", [r[1] for r in rows]), "c": ("BIGINT", [r[2] for r in rows])}
    _assert_injective(_groups(con, columns), 3)


def test_canonical_cells_merge_what_the_engine_merges_and_nothing_else() -> None:
    assert canonical_cell((-0.0,)) == canonical_cell((0.0,))
    assert _cell_key((-0.0,)) == _cell_key((0.0,)) == _cell_key((0,))
    nan_a, nan_b = float("nan"), float(np.float64("nan"))
    assert canonical_cell((nan_a,)) == canonical_cell((nan_b,))  # one NaN object: dict lookups match
    distinct = [None, math.nan, math.inf, -math.inf, 0.0, "", "null", True, dt.datetime(2025, 1, 1), "2025-01-01T00:00:00"]
    assert len({_cell_key((v,)) for v in distinct}) == len(distinct)


def _payments(extra_negative: bool) -> dict[str, pd.DataFrame]:
    n = 400
    cid = np.repeat(np.arange(1, n + 1), 5)
    amount = np.full(len(cid), 100.0)
    if extra_negative:
        cid = np.append(cid, n + 1)
        amount = np.append(amount, -5.0)
    tx = pd.DataFrame({
        "tid": np.arange(len(cid)), "cid": cid, "amount": amount, "qty": pd.array([1] * len(cid), dtype="Int64"),
        "cat": "food", "city": "city0", "ts": pd.Timestamp("2025-03-01"), "flag": False, "note": "x",
    })
    cust = pd.DataFrame({"cid": np.arange(1, n + 2), "age": 30, "segment": "retail"})
    acct = pd.DataFrame({"cid": np.arange(1, n + 2), "balance": 1.0})
    rates = pd.DataFrame({"cat": ["food"], "rate": [0.1]})
    return {"raw_tx": tx, "raw_cust": cust, "raw_acct": acct, "raw_rates": rates}


def test_one_customer_cannot_erase_a_group_through_infinite_keys() -> None:
    """The review's attack: on D the +inf bucket holds 2,000 rows; D' adds one customer whose -inf
    bucket used to replace it. Both must now be released as separate keys, the big one on both sides."""
    sql = "SELECT amount / 1e-308 AS bucket, COUNT(*) AS n FROM tx GROUP BY amount / 1e-308"
    for extra in (False, True):
        gw = make_gateway(_payments(extra), BANK)
        answer = gw.query("bank", sql, epsilon=1, delta=1e-5)
        rows = {r[0]: r[1] for r in answer.rows}
        assert "Infinity" in rows and rows["Infinity"] > 1500, (extra, answer.rows)
        assert "-Infinity" not in rows  # one customer's own group stays below the threshold
