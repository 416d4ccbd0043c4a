"""Property: adding one privacy unit's rows changes each exact aggregate by at most its stated sensitivity.

For random new units (any number of rows, values beyond the declared bounds, NULLs, inserted anywhere in
the source), the rewritten exact aggregates of neighbouring datasets are compared over all GROUP BY cells:
their L1 distance per measure must not exceed the plan's sensitivity. This is what the noise is
calibrated to, so it is the heart of the privacy claim.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sql.release import _histogram, exact_cells, quantile_query
from tests.conftest import bank_frames, make_gateway

QUERIES = [
    ("SELECT cat, COUNT(*), SUM(amount), AVG(amount), VARIANCE(amount) FROM tx GROUP BY cat", 0),
    ("SELECT COUNT(qty), SUM(qty * amount), AVG(LEAST(GREATEST(amount / qty, 0), 100)) FROM tx WHERE flag OR amount > 100", 0),
    ("SELECT note, flag, COUNT(DISTINCT cid), COUNT(DISTINCT city) FROM tx GROUP BY note, flag", 0),
    ("SELECT EXTRACT(month FROM ts), SUM(CASE WHEN flag THEN amount ELSE 0 END) FROM tx GROUP BY 1", 0),
    ("SELECT c.segment, COUNT(*), SUM(t.amount) FROM tx t JOIN cust c ON t.cid = c.cid GROUP BY c.segment", 0),
    ("SELECT SUM(a.balance), COUNT(*), AVG(t.amount) FROM tx t JOIN acct a ON t.cid = a.cid", 0),
    ("SELECT city, COUNT(*), SUM(amount) FROM tx GROUP BY city", 1e-5),
    ("SELECT cat, MEDIAN(amount), PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY amount), MIN(qty) FROM tx GROUP BY cat", 0),
]

BASE = bank_frames(n_customers=60, seed=3)

amounts = st.one_of(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), st.sampled_from([0.0, 1000.0, 999.99, -5.0, 1e12]), st.none()
)
tx_rows = st.lists(
    st.tuples(
        amounts,
        st.one_of(st.integers(min_value=-5, max_value=50), st.none()),
        st.sampled_from(["food", "travel", "tech", "café ☕", "other", "ünïcode"]),
        st.sampled_from(["city0", "city1", "brand-new-city", "rare"]),
        st.booleans(),
        st.sampled_from(["x", "y", "z", None]),
        st.integers(min_value=0, max_value=364 * 24),
    ),
    min_size=1,
    max_size=14,
)


def neighbour(rows: list[tuple], acct_rows: int, with_cust: bool, position: float) -> dict[str, pd.DataFrame]:
    frames = {k: v.copy() for k, v in BASE.items()}
    new_cid = 10_000
    tx = frames["raw_tx"]
    add = pd.DataFrame(
        {
            "tid": np.arange(len(rows)) + 10**6,
            "cid": new_cid,
            "amount": [r[0] for r in rows],
            "qty": pd.array([r[1] for r in rows], dtype="Int64"),
            "cat": [r[2] for r in rows],
            "city": [r[3] for r in rows],
            "ts": [pd.Timestamp("2025-01-01") + pd.Timedelta(hours=r[6]) for r in rows],
            "flag": [r[4] for r in rows],
            "note": [r[5] for r in rows],
        }
    )
    at = int(position * len(tx))
    frames["raw_tx"] = pd.concat([tx.iloc[:at], add, tx.iloc[at:]], ignore_index=True)
    if with_cust:
        frames["raw_cust"] = pd.concat(
            [frames["raw_cust"], pd.DataFrame({"cid": [new_cid], "age": [200], "segment": ["private"]})], ignore_index=True
        )
    if acct_rows:
        frames["raw_acct"] = pd.concat(
            [pd.DataFrame({"cid": [new_cid] * acct_rows, "balance": [1e7] * acct_rows}), frames["raw_acct"]], ignore_index=True
        )
    return frames


BASE_GW = make_gateway(BASE)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=tx_rows, acct_rows=st.integers(0, 6), with_cust=st.booleans(), position=st.floats(0, 1))
def test_one_unit_moves_each_aggregate_by_at_most_its_sensitivity(rows, acct_rows, with_cust, position) -> None:
    other = make_gateway(neighbour(rows, acct_rows, with_cust, position))
    for sql, delta in QUERIES:
        plan = BASE_GW.plan("bank", sql, epsilon=1, delta=delta)
        nkeys = len(plan.keys)
        a = exact_cells(plan, BASE_GW.engine)
        b = exact_cells(plan, other.engine)
        for m in plan.measures:
            if m.kind == "quantile":
                continue
            l1 = sum(abs(float((a.get(c) or {}).get(m.id) or 0) - float((b.get(c) or {}).get(m.id) or 0)) for c in set(a) | set(b))
            assert l1 <= m.sensitivity * (1 + 1e-9) + 1e-6, (sql, m.id, l1, m.sensitivity)
        for m in plan.measures:
            if m.kind != "quantile":
                continue
            from gateway.sql.quantiles import quantile_lattice

            grid = quantile_lattice(plan, m)
            qq = quantile_query(plan, m, grid)
            hist_a: dict[tuple, list] = {}
            hist_b: dict[tuple, list] = {}
            for h, eng in ((hist_a, BASE_GW.engine), (hist_b, other.engine)):
                for r in eng.execute(qq):
                    h.setdefault(tuple(r[:nkeys]), []).append(tuple(r[nkeys:]))
            num, den = m.alpha.numerator, m.alpha.denominator
            total = 0
            for c in set(hist_a) | set(hist_b):
                sa = _scores(hist_a.get(c, []), len(grid), num, den)
                sb = _scores(hist_b.get(c, []), len(grid), num, den)
                total += int(np.max(np.abs(sa - sb)))
            assert total <= plan.max_rows * max(num, den - num), (sql, m.id, total)


def _scores(rows: list, n: int, num: int, den: int) -> np.ndarray:
    below, _, above = _histogram(rows, n)
    return np.abs((den - num) * below - num * above)
