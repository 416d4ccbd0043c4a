"""The soundness fuzzer against PostgreSQL's and Spark's real semantics.

The adversarial table of `tests.soundness.gen` (NULL where declared not nullable, NaN, ±inf, ±1e308,
-0.0, decomposed Unicode, years 1 and 9999) lives in the engine under test, loaded as it is (no value
made NULL on the way), and every check of `tests.soundness.check` runs on that engine's SQL through
its dialect: each measure moves by at most its sensitivity when one unit's rows go, nothing un-noised
moves, quantile histograms move by at most k, and the engine never fails on a value in the data. Here:
the review's LEAST/GREATEST cases and a fixed slice of generated expressions on each engine; a larger
slice is `slow`.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.soundness.check import Soundness, Violation
from tests.soundness.test_fuzz_soundness import FORMS, LEAST_GREATEST, _explain, _slice

#: one worker runs every test that starts Spark (`--dist loadgroup`): one JVM, not one per worker
pytestmark = pytest.mark.xdist_group("spark")

SEED = "soundness-fuzz"
PG_TYPES = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE PRECISION", pa.string(): "TEXT", pa.bool_(): "BOOLEAN",
            pa.timestamp("us"): "TIMESTAMP"}


def _postgres() -> tuple[Callable[[], Any], Callable[[], None]]:
    from psycopg import sql as pgsql

    from gateway.engines.postgres import PostgresEngine
    from gateway.settings import PostgresSettings

    settings = PostgresSettings(schema=f"dpgate_fz_{uuid.uuid4().hex[:8]}")
    made: list[Any] = []

    def make() -> Any:
        engine = PostgresEngine(settings, seed=SEED)
        made.append(engine)

        def load(name: str, table: pa.Table) -> str:
            """The arrow table as it is: NaN stays NaN, year 1 stays year 1 (a DataFrame would not)."""
            target = pgsql.Identifier(settings.schema_, name)
            cols = pgsql.SQL(", ").join(pgsql.SQL("{} {}").format(pgsql.Identifier(f.name), pgsql.SQL(PG_TYPES[f.type])) for f in table.schema)
            marks = pgsql.SQL(", ").join(pgsql.Placeholder() for _ in table.schema)
            rows = [tuple(r[f.name] for f in table.schema) for r in table.to_pylist()]
            with engine._session() as conn, conn.transaction():
                conn.execute(pgsql.SQL("DROP TABLE IF EXISTS {}").format(target))
                conn.execute(pgsql.SQL("CREATE TABLE {} ({})").format(target, cols))
                with conn.cursor() as cur:
                    cur.executemany(pgsql.SQL("INSERT INTO {} VALUES ({})").format(target, marks), rows)
            return f"{settings.schema_}.{name}"

        engine.load_frame = load
        return engine

    def drop() -> None:
        import psycopg

        for engine in made:
            engine.close()
        with psycopg.connect(settings.url, autocommit=True) as conn:
            conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(settings.schema_)))

    return make, drop


def _spark(tmp: Path) -> tuple[Callable[[], Any], Callable[[], None]]:
    from gateway.engines.spark import SparkEngine
    from gateway.settings import SparkSettings

    made: list[Any] = []

    def make() -> Any:
        engine = SparkEngine(SparkSettings(warehouse=tmp / "warehouse"), data_dir=tmp, seed=SEED)
        made.append(engine)

        def load(name: str, table: pa.Table) -> str:
            path = tmp / "frames" / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            return str(path)

        engine.load_frame = load
        return engine

    def drop() -> None:
        for engine in made:
            engine.close()

    return make, drop


@pytest.fixture(scope="module", params=["postgres", "spark"])
def fuzz(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    make, drop = _postgres() if request.param == "postgres" else _spark(tmp_path_factory.mktemp("fz"))
    try:
        yield Soundness(faithful_every=4, make_engine=make)
    finally:
        drop()


def test_the_data_arrived_as_it_is(fuzz: Soundness) -> None:
    """NaN, ±inf and the NULLs of columns declared not nullable are in the engine's rows."""
    gw = fuzz.base
    plan = gw.plan("fuzz", "SELECT COUNT(*) FROM t WHERE balance IS NULL", epsilon=1)
    from gateway.sql.release import exact_cells

    nulls = exact_cells(plan, gw.engine_for(plan))[()][plan.measures[0].id]
    assert nulls > 0
    found = fuzz.run_sql("balance", ["SUM({e})", "AVG({e})"])
    assert not found, _explain(found)


@pytest.mark.parametrize("expr", LEAST_GREATEST)
def test_least_greatest_within_their_sensitivity(fuzz: Soundness, expr: str) -> None:
    found: list[Violation] = []
    variants = [(None, None), ("flag OR customer_id = 'c42'", "cat")]
    if fuzz.base.engine.name == "spark":  # each Spark query costs ~0.3 s: the grouped variant is the slow run's
        variants = variants[1:]
    for where, key in variants:
        found += fuzz.run_sql(expr, FORMS, where, key)
    assert not found, _explain(found)


def test_fixed_slice(fuzz: Soundness) -> None:
    batches = 1 if fuzz.base.engine.name == "spark" else 2  # 8 or 16 expressions, every form, 2 of 4 variants
    found = _slice(fuzz, (101,), batches, variants=2, forms=None)
    st = fuzz.stats
    assert st.accepted_forms > 30 * batches and st.faithful_plans > 0
    assert not found, _explain(found)


@pytest.mark.slow
def test_larger_slice(fuzz: Soundness) -> None:
    found = _slice(fuzz, (102, 103), 8, variants=4, forms=None)  # 128 expressions
    for expr in LEAST_GREATEST:  # every variant of the review's cases
        found += fuzz.run_sql(expr, FORMS, None, None)
    assert not found, _explain(found)
