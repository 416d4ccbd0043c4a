"""One plan, three engines: every SQL fixture runs on DuckDB, PostgreSQL and Spark with the same result.

The bank dataset of tests/conftest.py is loaded into each engine under the same bounding key. For every
accepted fixture:

* the plan is the same everywhere (the plan does not depend on where it runs): the same measures, the
  same sensitivities, the same noise scale for every column and the same cost;
* the exact, pre-noise aggregates agree on every cell (to float tolerance: engines sum in different
  orders), and so do the quantile histograms the exponential mechanism reads;
* the DP answer has the same columns, and the same rows where the number of rows does not depend on
  noise.

Every refused fixture is refused with the same code on every engine. A construct one engine cannot
evaluate safely (its dialect's `refused`) is refused there with unsupported_sql, and only there.
"""
from __future__ import annotations

import copy
import math
import uuid
from typing import Any

import pytest

from gateway.core import Gateway
from gateway.engines.duckdb import DuckDBEngine
from gateway.errors import QueryError
from gateway.sql.release import Mechanisms, _histogram, exact_cells, expected_accuracy, quantile_query
from tests.conftest import BANK, bank_frames
from tests.sql.test_fixtures import ACCEPTED, REFUSED

#: one worker runs every test that starts Spark (`--dist loadgroup`): one JVM, not one per worker
pytestmark = pytest.mark.xdist_group("spark")

KEY = "same-answers-key"
ENGINES = ["duckdb", "postgres", "spark"]


def _postgres(tmp: Any) -> Any:
    from gateway.engines.postgres import PostgresEngine
    from gateway.settings import PostgresSettings

    return PostgresEngine(PostgresSettings(schema=f"dpgate_same_{uuid.uuid4().hex[:8]}"), seed=KEY)


def _spark(tmp: Any) -> Any:
    from gateway.engines.spark import SparkEngine
    from gateway.settings import SparkSettings

    return SparkEngine(SparkSettings(warehouse=tmp / "warehouse"), data_dir=tmp, seed=KEY)


def _build(name: str, tmp: Any) -> Any:
    if name == "duckdb":
        return DuckDBEngine(None, seed=KEY)
    try:
        return {"postgres": _postgres, "spark": _spark}[name](tmp)
    except ImportError as e:  # pragma: no cover - the engines ship with the package
        pytest.fail(f"the {name} engine does not import: {e}")


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out: dict[str, Gateway] = {}
    engines = []
    for name in ENGINES:
        engine = _build(name, tmp_path_factory.mktemp(name))
        engines.append(engine)
        meta = copy.deepcopy(BANK)
        meta["engine"] = name
        for table, frame in bank_frames().items():
            source = engine.load_frame(f"{table}_{uuid.uuid4().hex[:6]}", frame)
            for t in meta["tables"].values():
                if t["source"] == table:
                    t["source"] = source
        gw = Gateway(engine)
        gw.register(meta)
        out[name] = gw
    yield out
    for engine in engines:
        drop = getattr(engine, "drop_schema", None)
        if drop is not None:
            drop()
        engine.close()


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return (a or 0) == (b or 0)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def _diff(base: dict, other: dict) -> str:
    if set(base) != set(other):
        return f"cells differ: only on duckdb {sorted(map(str, set(base) - set(other)))[:5]}, only here {sorted(map(str, set(other) - set(base)))[:5]}"
    for cell, values in base.items():
        for mid, v in values.items():
            if not _close(v, other[cell].get(mid)):
                return f"cell {cell}, {mid}: duckdb {v!r}, here {other[cell].get(mid)!r}"
    return ""


def _scales(plan: Any) -> tuple:
    cost, acc = expected_accuracy(plan)
    return str(cost.epsilon), str(cost.delta), tuple(sorted((k, v.mechanism, v.scale) for k, v in acc.items()))


def _refusal(gw: Gateway, sql: str, delta: float = 0.0) -> QueryError | None:
    try:
        gw.plan("bank", sql, epsilon=1.0, delta=delta)
    except QueryError as e:
        return e
    return None


@pytest.mark.parametrize("engine", ENGINES[1:])
@pytest.mark.parametrize("case", ACCEPTED, ids=[c["title"] for c in ACCEPTED])
def test_accepted_fixture_agrees_with_duckdb(gateways: dict[str, Gateway], engine: str, case: dict) -> None:
    delta = float(case.get("delta", 0))
    base, here = gateways["duckdb"], gateways[engine]
    refused = _refusal(here, case["sql"], delta)
    if refused is not None:
        # only a construct this engine's dialect lists as unsafe may be refused here, with unsupported_sql
        assert refused.code == "unsupported_sql", refused.message
        assert any(name.lower() in (refused.construct or "").lower() for name in here.engine.dialect.refused), refused.message
        return
    plan_b = base.plan("bank", case["sql"], epsilon=1.0, delta=delta)
    plan_h = here.plan("bank", case["sql"], epsilon=1.0, delta=delta)
    assert plan_h.engine == engine
    # the plan does not depend on where it runs
    assert [(m.id, m.kind, m.sensitivity, m.lower, m.upper) for m in plan_b.measures] == \
        [(m.id, m.kind, m.sensitivity, m.lower, m.upper) for m in plan_h.measures]
    assert _scales(plan_b) == _scales(plan_h)
    # the exact aggregates agree
    exact_b = exact_cells(plan_b, base.engine)
    exact_h = exact_cells(plan_h, here.engine)
    assert not _diff(exact_b, exact_h), _diff(exact_b, exact_h)
    mechs = Mechanisms(plan_b)
    for m in plan_b.measures:
        if m.kind != "quantile":
            continue
        grid = mechs.lattices[m.id]
        hb = sorted(map(tuple, base.engine.execute(quantile_query(plan_b, m, grid))), key=repr)
        hh = sorted(map(tuple, here.engine.execute(quantile_query(plan_h, m, grid))), key=repr)
        nk = len(plan_b.keys)
        per_b: dict[tuple, list] = {}
        per_h: dict[tuple, list] = {}
        for rows, per in ((hb, per_b), (hh, per_h)):
            for r in rows:
                per.setdefault(tuple(r[:nk]), []).append((float(r[nk]), int(r[nk + 1])))
        assert set(per_b) == set(per_h)
        for cell in per_b:
            for a, b in zip(_histogram(per_b[cell], len(grid)), _histogram(per_h[cell], len(grid))):
                assert a.tolist() == b.tolist(), f"quantile histogram of {m.id} differs in cell {cell}"
    # the released answer has the same shape
    answer = here.query("bank", case["sql"], epsilon=1.0, delta=delta)
    assert answer.columns == base.query("bank", case["sql"], epsilon=1.0, delta=delta).columns
    if "rows" in case:
        assert len(answer.rows) == int(case["rows"])


@pytest.mark.parametrize("engine", ENGINES[1:])
@pytest.mark.parametrize("case", REFUSED, ids=[c["title"] for c in REFUSED])
def test_refused_fixture_is_refused_alike(gateways: dict[str, Gateway], engine: str, case: dict) -> None:
    here = _refusal(gateways[engine], case["sql"])
    assert here is not None, "answered on this engine, refused on DuckDB"
    assert here.code == case["code"], here.message


@pytest.mark.parametrize("engine", ENGINES[1:])
def test_same_rows_kept_under_the_same_key(gateways: dict[str, Gateway], engine: str) -> None:
    """Bounding keeps the same rows on every engine: the bounded tx table (k = 5, customers with up to
    11 rows) holds the same row identities, so the count of rows and the sum of amounts agree exactly."""
    sql = "SELECT COUNT(*) AS n, SUM(amount) AS s, COUNT(DISTINCT tid) AS t FROM tx"
    plan_b = gateways["duckdb"].plan("bank", sql, epsilon=1.0)
    plan_h = gateways[engine].plan("bank", sql, epsilon=1.0)
    exact_b = exact_cells(plan_b, gateways["duckdb"].engine)
    exact_h = exact_cells(plan_h, gateways[engine].engine)
    assert not _diff(exact_b, exact_h), _diff(exact_b, exact_h)
    rows = bank_frames()["raw_tx"]
    assert exact_b[()][plan_b.measures[0].id] < len(rows)  # some units were cut: the check has power
