"""Found while auditing the quantile path: the per-candidate counts the exponential mechanism scores.

Privacy is not at stake (every row lands in exactly one bin, so a unit still moves each score by at
most max_rows · max(num, den - num)), but accuracy is: a value on a candidate must count as equal to it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gateway.core import Gateway
from gateway.engines.duckdb import DuckDBEngine
from gateway.sql.release import Mechanisms, _histogram, quantile_query

def _counts(upper: int, value: int, rows: int = 100) -> tuple[list[float], np.ndarray, np.ndarray, np.ndarray]:
    meta = {
        "name": "d",
        "privacy_unit": "u",
        "budget": {"epsilon": 10},
        "tables": {"t": {"source": "raw", "max_rows_per_unit": 1,
                         "columns": {"u": {"type": "id"}, "v": {"type": "int", "lower": 0, "upper": upper}}}},
    }  # fmt: skip
    engine = DuckDBEngine(None, seed="s")
    engine.load_frame("raw", pd.DataFrame({"u": np.arange(rows), "v": [value] * rows}))
    gw = Gateway(engine)
    gw.register(meta)
    plan = gw.plan("d", "SELECT MEDIAN(v) FROM t", epsilon=1)
    measure = plan.measures[0]
    grid = Mechanisms(plan).lattices[measure.id]
    below, equal, above = _histogram(engine.execute(quantile_query(plan, measure, grid)), len(grid))
    return grid, below, equal, above


def test_values_on_an_evenly_spaced_grid_are_counted_equal() -> None:
    grid, below, equal, above = _counts(upper=100, value=5)  # 101 integers: every one a candidate
    i = grid.values().index(5.0)
    assert (below[i], equal[i], above[i]) == (0, 100, 0)


def test_values_on_a_rounded_integer_grid_are_counted_equal() -> None:
    """Was a bug: for more than 1,024 integers in the bounds the grid was an even grid rounded to integers
    (0, 5, 10, ... for [0, 5000]) while rows were binned by the unrounded position, so 100 rows at 5 were
    all counted 'above 5'. The grid is now an exact integer lattice."""
    grid, below, equal, above = _counts(upper=5000, value=5)
    i = grid.values().index(5.0)
    assert (below[i], equal[i], above[i]) == (0, 100, 0)
