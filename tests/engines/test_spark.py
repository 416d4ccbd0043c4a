"""The Spark engine against DuckDB, the engine whose semantics the portable tree has.

* registration writes a table's forms as Parquet once: registering again, from this engine or a new
  one over the same warehouse, rewrites nothing; changed source data is a new version;
* the bounded rows are DuckDB's under the same key (MD5 row identities agree; `hash()` does not);
* every portable construct (`gateway.sql.semantics.PORTABLE`) gives DuckDB's value on a grid of
  operands (NULL, NaN, ±inf, ±1e308, -0.0, ties for rounding, text that does and does not convert,
  LIKE's special characters, Unicode case mappings, timestamps on every weekday and at ISO-week
  edges), and no value makes a query fail;
* a source that cannot be read as declared is refused naming the column, never a value;
* a query past the timeout is stopped and the session answers the next one.

Known differences (the module docstring of `gateway.engines.spark` lists them all), asserted as such:
DuckDB reads 'inf'/'infinity' as its infinite timestamps, which Spark cannot hold (NULL here); zeros
are compared without their sign.
"""
from __future__ import annotations

import datetime as dt
import math
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlglot
from sqlglot import exp

from gateway.catalog import parse_dataset
from gateway.engines.base import ENGINES, EngineError, QueryTimeout
from gateway.engines.duckdb import DuckDBEngine
from gateway.errors import InvalidMetadata
from gateway.sql import semantics
from tests.engines.conftest import SPARK_KEY

#: one worker runs every test that starts Spark (`--dist loadgroup`): one JVM, not one per worker
pytestmark = pytest.mark.xdist_group("spark")

# ---------------------------------------------------------------------------------------------------
# the dialect alone (no session)


def _render(sql: str) -> str:
    from gateway.engines.spark import SPARK

    return SPARK.render(sqlglot.parse_one(sql, read="duckdb"))


def test_the_dialect_and_the_engine_are_registered(tmp_path: Path) -> None:
    from gateway.engines.spark import SPARK, SparkEngine
    from gateway.settings import load_settings

    assert semantics.DIALECTS["spark"] is SPARK
    engine = ENGINES["spark"](load_settings(data_dir=tmp_path))  # the session starts on first use, not here
    assert isinstance(engine, SparkEngine) and engine.warehouse == tmp_path / "spark" and engine.dialect is SPARK


def test_lowering_rewrites_what_spark_spells_differently() -> None:
    assert "(EXTRACT(DAYOFWEEK FROM" in _render("SELECT EXTRACT(DOW FROM CAST(t AS TIMESTAMP)) FROM x")
    assert "DAYOFWEEK_ISO" in _render("SELECT EXTRACT(ISODOW FROM t) FROM x")
    assert "TIMESTAMP_NTZ" in _render("SELECT CAST('2025-01-01 00:00:00' AS TIMESTAMP) FROM x")
    # a backslash is literal in a portable pattern: doubled for Spark's escape, then escaped in the literal
    assert _render("SELECT x LIKE 'a\\b' FROM t").endswith("LIKE 'a\\\\\\\\b' FROM t")
    # QUALIFY stays (Spark 4 evaluates it), so `SELECT t.*` gains no `_w` column
    assert "QUALIFY ROW_NUMBER()" in _render("SELECT t.* FROM x AS t QUALIFY ROW_NUMBER() OVER (PARTITION BY u ORDER BY r) <= 2")
    assert "TRY_CAST(" in _render("SELECT TRY_CAST(x AS BIGINT) FROM t")  # sqlglot writes TryCast as CAST unless safe


# ---------------------------------------------------------------------------------------------------
# registration and bounding

N_UNITS = 120


def _bank_frames(seed: int = 3) -> dict[str, pd.DataFrame]:
    """Test data, not noise: units with up to 7 rows (k = 3 cuts some), and an unbounded float column
    holding what canonical text must agree on beyond 1e12 (NaN, ±inf, huge, -0.0, NULL)."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 8, N_UNITS)
    cid = np.repeat(np.arange(1, N_UNITS + 1), per)
    n = len(cid)
    odd = [math.nan, math.inf, -math.inf, 1e300, -0.0, 1e15 + 0.5, 123456789012345.6, None]
    score = [odd[i % len(odd)] if i % 5 == 0 else float(rng.normal(0, 1e3)) for i in range(n)]
    tx = pd.DataFrame({
        "tid": np.arange(n),
        "cid": cid,
        "amount": np.round(rng.exponential(100, n), 2),
        "qty": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 9, n)), dtype="Int64"),
        "cat": rng.choice(["food", "travel", "café ☕"], n),
        "ts": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="us"),
        "flag": rng.random(n) < 0.3,
        "score": score,
    })
    cust = pd.DataFrame({"cid": np.arange(1, N_UNITS + 1), "age": rng.integers(18, 90, N_UNITS)})
    return {"tx": tx, "cust": cust}


def _bank_meta(name: str, sources: dict[str, str]) -> dict[str, Any]:
    """The tables of `sources` (tx, cust or both) as a dataset."""
    return {
        "name": name,
        "privacy_unit": "cid",
        "budget": {"epsilon": 10},
        "tables": {t: meta for t, meta in {
            "tx": {"source": sources.get("tx"), "max_rows_per_unit": 3, "columns": {
                "tid": {"type": "id"}, "cid": {"type": "id"},
                "amount": {"type": "float", "lower": 0, "upper": 500},
                "qty": {"type": "int", "lower": 0, "upper": 10, "nullable": True},
                "cat": {"type": "category", "categories": ["food", "travel", "café ☕"]},
                "ts": {"type": "date"}, "flag": {"type": "bool"}, "score": {"type": "float", "nullable": True},
            }},
            "cust": {"source": sources.get("cust"), "max_rows_per_unit": 1, "columns": {
                "cid": {"type": "id"}, "age": {"type": "int", "lower": 18, "upper": 100},
            }},
        }.items() if t in sources},
    }


def _load(engine: Any, frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    return {t: engine.load_frame(f"{t}_{uuid.uuid4().hex[:8]}", f) for t, f in frames.items()}


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def bank(spark_engine: Any) -> dict[str, Any]:
    """One dataset registered in Spark and, from the same frames, in DuckDB under the same key."""
    frames = _bank_frames()
    meta = parse_dataset(_bank_meta("sbank", _load(spark_engine, frames)))
    version = spark_engine.register(meta)
    duck = DuckDBEngine(None, seed=SPARK_KEY)
    duck.register(parse_dataset(_bank_meta("sbank", _load(duck, frames))))
    return {"meta": meta, "version": version, "duck": duck, "frames": frames}


def test_registration_writes_parquet_once(spark_engine: Any, bank: dict[str, Any]) -> None:
    from gateway.engines.spark import SparkEngine

    root = spark_engine.warehouse / "sbank"
    written = _files(root)
    assert {p.split("/")[0] for p in written} == {"tx", "cust"}
    assert any("/bnd/" in p for p in written if p.startswith("tx/"))  # k = 3 cut some units
    assert not any("/bnd/" in p for p in written if p.startswith("cust/"))  # one row a unit: the loaded form is bounded
    assert spark_engine.register(bank["meta"]) == bank["version"]
    again = SparkEngine(spark_engine.settings, data_dir=spark_engine.warehouse.parent, seed=SPARK_KEY)
    try:
        assert again.register(bank["meta"]) == bank["version"]  # a restart finds the complete version
        count = exp.select(exp.Count(this=exp.Star())).from_(again.relation("sbank", "tx", bounded=True))
        assert again.execute(count) == spark_engine.execute(count)
    finally:
        again.close()
    assert _files(root) == written  # nothing rewritten, no temporary directory left


def test_changed_data_is_a_new_version(spark_engine: Any) -> None:
    frames = {"cust": _bank_frames(seed=5)["cust"]}
    sources = _load(spark_engine, frames)
    first = spark_engine.register(parse_dataset(_bank_meta("schanged", sources)))
    frames["cust"].loc[0, "age"] = 19 if frames["cust"].loc[0, "age"] != 19 else 20
    frames["cust"].to_parquet(sources["cust"])
    second = spark_engine.register(parse_dataset(_bank_meta("schanged", sources)))
    assert second != first
    ages = exp.select(exp.Sum(this=exp.column("age", quoted=True))).from_(spark_engine.relation("schanged", "cust", bounded=True))
    assert spark_engine.execute(ages)[0][0] == int(frames["cust"]["age"].sum())
    assert len(list((spark_engine.warehouse / "schanged" / "cust").iterdir())) == 2  # both versions, each complete


def test_same_rows_as_duckdb_under_the_same_key(spark_engine: Any, bank: dict[str, Any]) -> None:
    columns = ["_dpgate_row", "tid", "cid", "amount", "qty", "score", "ts", "flag", "cat", "_dpgate_c_amount"]
    here = spark_engine.read_bounded("sbank", "tx", columns)
    there = bank["duck"].read_bounded("sbank", "tx", columns)
    assert len(here) < len(bank["frames"]["tx"])  # the cut kept fewer rows: the comparison has power
    assert list(here["_dpgate_row"]) == list(there["_dpgate_row"])  # the same identities, in the same order
    pd.testing.assert_frame_equal(here, there, check_dtype=False)
    assert [str(here[c].dtype) for c in ("tid", "qty", "flag")] == [str(there[c].dtype) for c in ("tid", "qty", "flag")]
    # DuckDB's hash() and Spark's differ (and so would their row orders); MD5 of the same text agrees
    probe = exp.select(exp.Anonymous(this="hash", expressions=[exp.Literal.string("dpgate")]), exp.MD5(this=exp.Literal.string("dpgate")))
    (h_spark, md5_spark), = spark_engine.execute(probe)
    (h_duck, md5_duck), = bank["duck"].execute(probe)
    print(f"hash('dpgate'): DuckDB {h_duck}, Spark {h_spark}; md5: {md5_duck} on both")
    assert h_spark != h_duck and md5_spark == md5_duck


def test_per_query_bounding_keeps_the_same_rows(spark_engine: Any, bank: dict[str, Any]) -> None:
    """The shape `Source.render` builds for per-query bounding: `SELECT t.* ... QUALIFY` in a subquery."""
    def query(engine: Any) -> list[tuple]:
        t = exp.to_identifier("tx", quoted=True)
        inner = exp.select(exp.Column(this=exp.Star(), table=t)).from_(exp.alias_(engine.relation("sbank", "tx", bounded=False), "tx", table=True))
        inner = inner.where(exp.GT(this=exp.column("amount", "tx", quoted=True), expression=exp.Literal.number(20)))
        rank = exp.Window(this=exp.RowNumber(), partition_by=[exp.column("cid", "tx", quoted=True)],
                          order=exp.Order(expressions=[exp.Ordered(this=exp.column("_dpgate_row", "tx", quoted=True), nulls_first=False)]))
        inner = inner.qualify(exp.LTE(this=rank, expression=exp.Literal.number(2)))
        outer = exp.select(exp.Count(this=exp.Star()), exp.Sum(this=exp.column("tid", "tx", quoted=True)), exp.Sum(this=exp.column("qty", "tx", quoted=True)))
        return engine.execute(outer.from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=t))))

    assert query(spark_engine) == query(bank["duck"])


# ---------------------------------------------------------------------------------------------------
# the lowering, construct by construct

DOUBLES = [None, math.nan, math.inf, -math.inf, 1e308, -1e308, -0.0, 0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 2.675, 1.005,
           0.49999999999999994, 4503599627370495.5, 1e16, 1.5e16, 123456789012.5, 1e-5, 1e-4, 5e-324, 9.3e18, 9.223372036854775807e18,
           0.1, 1 / 3, -7.25, 100.0, 12345.6789, 2.0005, 9007199254740993.0, 0.125, 3.5, 1e22, 2.5e-7, 6.02214076e23, 42.0]
TEXTS = [None, "", " ", "abc", "1", " 1 ", "+1", "1.5", "2.5", "-2.5", "1e2", "12e-1", "0x10", " 0xff", "0b101", "1_000", "1__0", "1.5d",
         "0x1p3", "1e39", "9223372036854775807.4", "NaN", "inf", "-Infinity", "true", " true ", "yes", "t", "No", "2025-01-01",
         " 2025-01-01 ", "2025", "2025-01", "2025-1-1", "2025-01-01 12:30", "2025-01-01T12:30:00", "2025-01-01 12:00:00+02",
         "2025-01-01 25:00:00", "2025-01-01 24:00:00", "2025-02-30", "epoch", "a\\b", "a%b", "a_b", "İ", "ß", "ΑΣ", "ﬁ", "e\u0301",
         "👍x", "a\nb"]
_MONDAY = dt.datetime(2024, 12, 23, 13, 45, 30)
TIMES = [None, *(_MONDAY + dt.timedelta(days=k, hours=5 * k) for k in range(14)), dt.datetime(2020, 12, 31, 23, 59, 59),
         dt.datetime(2021, 1, 3), dt.datetime(2016, 2, 29, 0, 0, 0, 500000), dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
         dt.datetime(2026, 12, 31), dt.datetime(2027, 1, 1)]
INTS = [None, 0, 1, -1, 7, 2**53 + 1, -(2**62), 2**62, 127, 128, 32768, 2**31]
TARGETS = ["DOUBLE", "FLOAT", "DECIMAL(18, 3)", "BIGINT", "INT", "SMALLINT", "TINYINT", "VARCHAR", "BOOLEAN", "TIMESTAMP", "DATE"]
PATTERNS = ["a\\b", "a\\%", "%\\%", "a%", "A%", "a_b", "_", "__", "%ß%", "İ%", "i%", "%\n%", "%σ", "e%", "%1%", "2025%", "👍_"]
EXPRESSIONS = [
    *(f"TRY_CAST({c} AS {t})" for c in ("d", "i", "s", "b", "ts") for t in TARGETS),
    "CAST(d AS VARCHAR)", "CAST(i AS VARCHAR)", "CAST(b AS VARCHAR)", "CAST(ts AS VARCHAR)", "CAST(i AS DOUBLE)", "CAST(b AS DOUBLE)",
    *(f"CAST(d AS DOUBLE) {op} CAST(e AS DOUBLE)" for op in "+-*"),
    "CAST(d AS DOUBLE) / NULLIF(CAST(e AS DOUBLE), 0)", "CAST(d AS DOUBLE) % NULLIF(CAST(e AS DOUBLE), 0)", "-CAST(d AS DOUBLE)",
    *(f"{f}(CAST(d AS DOUBLE))" for f in ("ABS", "FLOOR", "CEIL", "SIGN", "ROUND")),
    *(f"ROUND(CAST(d AS DOUBLE), {k})" for k in (-15, -3, -1, 1, 2, 3, 6, 15)),
    "LEAST(d, e)", "GREATEST(d, e)", "COALESCE(d, e)", "CASE WHEN d > e THEN d ELSE e END", "CASE WHEN b THEN d END", "IF(b, d, e)",
    *(f"d {op} e" for op in ("=", "<>", "<", "<=", ">", ">=")),
    "d BETWEEN e AND 1e308", "d IN (e, 1.5, 0.0)", "i IN (1, NULL)", "d IS NULL", "b IS TRUE", "b IS NOT FALSE", "b AND d > 0", "b OR d > 0", "NOT b",
    *(f"s {op} '{p}'" for p in PATTERNS for op in ("LIKE", "ILIKE")),
    "LOWER(s)", "UPPER(s)", "LENGTH(s)", "MD5(s)", "s || 'x'", "LOWER(s) = 'i'",
    *(f"EXTRACT({p} FROM ts)" for p in semantics.DUCKDB.date_parts),
    # compositions: text of computed numbers, casts of casts, the canonical text of a float
    "TRY_CAST(TRY_CAST(d AS FLOAT) AS VARCHAR)", "TRY_CAST(TRY_CAST(s AS DOUBLE) AS BIGINT)", "ROUND(ROUND(CAST(d AS DOUBLE), 2), 1)",
    "FLOOR(CAST(d AS DOUBLE) / NULLIF(CAST(e AS DOUBLE), 0))", "TRY_CAST(CAST(d AS DOUBLE) * 3 AS VARCHAR)", "TRY_CAST(ROUND(CAST(d AS DOUBLE), 1) AS BIGINT)",
    "CASE WHEN ABS(d) < 1e12 THEN CAST(CAST(FLOOR(d * 1000000) AS BIGINT) AS VARCHAR) ELSE CAST(d AS VARCHAR) END",
    "TRY_CAST(TRY_CAST(d AS DECIMAL(18, 3)) AS BIGINT)", "EXTRACT(DOW FROM TRY_CAST(s AS DATE))", "EXTRACT(HOUR FROM TRY_CAST(ts AS DATE))",
]
AGGREGATES = [
    "SELECT SUM(d), COUNT(d), COUNT(DISTINCT s), SUM(i), COUNT(*) FROM {t}",  # SUM(i) exceeds BIGINT: DuckDB's is exact
    "SELECT 5 AS k, COUNT(*) FROM {t} GROUP BY 1",  # a constant key grouped by position
    "SELECT b, s IS NULL, COUNT(*), SUM(CAST(d AS DOUBLE)) FROM {t} WHERE ABS(d) < 1e300 GROUP BY 1, 2",
    "SELECT d, COUNT(*) FROM {t} GROUP BY 1",  # NaN is one group; -0.0 and 0.0 are one group
    # a clamp's CASE mixes integer literals and doubles: a DOUBLE sum; a CASE of integers: an exact one
    "SELECT SUM(CASE WHEN CAST(d AS DOUBLE) < 1 THEN 1 ELSE CAST(d AS DOUBLE) END), SUM(CASE WHEN b THEN 2 ELSE 0 END) FROM {t} WHERE ABS(d) < 1e300",
]


def _known(expression: str, text: Any) -> bool:
    """A documented difference: DuckDB's infinite timestamps ('inf', 'infinity') are NULL on Spark."""
    return ("AS TIMESTAMP" in expression or "AS DATE" in expression) and isinstance(text, str) and "inf" in text.lower()


def _planner_shape(node: exp.Expression) -> exp.Expression:
    """Parsed SQL in the shapes the planner emits: numeric functions as Anonymous calls, LEAST and
    GREATEST skipping NULLs."""
    names = {exp.Abs: "ABS", exp.Floor: "FLOOR", exp.Ceil: "CEIL", exp.Sign: "SIGN", exp.Round: "ROUND"}

    def visit(n: exp.Expression) -> exp.Expression:
        if type(n) in names:
            return exp.Anonymous(this=names[type(n)], expressions=[a for a in (n.this, n.args.get("decimals")) if a is not None])
        if isinstance(n, (exp.Least, exp.Greatest)):
            n.set("ignore_nulls", True)
        return n

    return node.transform(visit)


def _same(a: Any, b: Any, *, rel_tol: float = 0.0) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=rel_tol)
    if isinstance(a, (bool, str)) or isinstance(b, (bool, str)):
        return type(a) is type(b) and a == b
    return a == b  # numbers: 1 == 1.0, -0.0 == 0.0


@pytest.fixture(scope="module")
def grid(spark_engine: Any) -> dict[str, Any]:
    n = max(len(DOUBLES), len(TEXTS), len(TIMES))

    def cycle(values: list, shift: int = 0) -> list:
        return [values[(i + shift) % len(values)] for i in range(n)]

    frame = pd.DataFrame({
        "n": np.arange(n), "d": cycle(DOUBLES), "e": cycle(DOUBLES, 7), "s": pd.array(cycle(TEXTS), dtype=object),
        "ts": pd.to_datetime(cycle(TIMES)), "i": pd.array(cycle(INTS), dtype="Int64"), "b": pd.array(cycle([None, True, False]), dtype="boolean"),
    })
    types = {"n": "int", "d": "float", "e": "float", "s": "category", "ts": "date", "i": "int", "b": "bool"}
    engines = {"duckdb": DuckDBEngine(None, seed=SPARK_KEY), "spark": spark_engine}
    for engine in engines.values():
        meta = {"name": "sgrid", "privacy_unit": None, "budget": {"epsilon": 1}, "tables": {"t": {
            "source": engine.load_frame(f"grid_{uuid.uuid4().hex[:8]}", frame), "max_rows_per_unit": 1, "public": True,
            "columns": {c: {"type": t, "nullable": True} for c, t in types.items()}}}}
        engine.register(parse_dataset(meta))
    return {"frame": frame, "engines": engines}


def test_every_construct_gives_duckdbs_value(grid: dict[str, Any]) -> None:
    frame = grid["frame"]
    results = {}
    for name, engine in grid["engines"].items():
        items = [_planner_shape(sqlglot.parse_one(e, read="duckdb")) for e in EXPRESSIONS]
        select = exp.select(exp.column("n"), *items).from_(engine.relation("sgrid", "t", bounded=True)).order_by("n")
        results[name] = engine.execute(select)  # never raises: no value in the data makes a query fail
    wrong = []
    for j, expression in enumerate(EXPRESSIONS, start=1):
        for row, (want, got) in enumerate(zip(results["duckdb"], results["spark"])):
            if not _same(want[j], got[j]) and not _known(expression, frame["s"][row]):
                wrong.append(f"{expression} on row {row}: DuckDB {want[j]!r}, Spark {got[j]!r}")
    assert not wrong, "\n".join(wrong[:20])
    known = [r for r in range(len(frame)) if _known("AS DATE", frame["s"][r])]
    assert all(got[EXPRESSIONS.index("TRY_CAST(s AS DATE)") + 1] is None for got in (results["spark"][r] for r in known))


@pytest.mark.parametrize("sql", AGGREGATES)
def test_aggregates_and_group_keys_agree(grid: dict[str, Any], sql: str) -> None:
    out = {}
    for name, engine in grid["engines"].items():
        rows = engine.execute(sqlglot.parse_one(sql.format(t=engine.relation("sgrid", "t", bounded=True).sql("duckdb")), read="duckdb"))
        out[name] = sorted(rows, key=lambda r: tuple((v is None, repr(v + 0.0 if isinstance(v, float) else v)) for v in r))  # -0.0 as 0.0
    assert len(out["duckdb"]) == len(out["spark"])
    # sums of doubles agree to rounding: the engines add in different orders
    assert all(all(_same(a, b, rel_tol=1e-12) for a, b in zip(x, y)) for x, y in zip(out["duckdb"], out["spark"])), out


# ---------------------------------------------------------------------------------------------------
# failures: sources, errors, the timeout


def _small(engine: Any, frame: pd.DataFrame, columns: dict[str, Any], name: str) -> Any:
    meta = {"name": name, "privacy_unit": "cid", "budget": {"epsilon": 1}, "tables": {"t": {
        "source": engine.load_frame(f"{name}_{uuid.uuid4().hex[:8]}", frame), "max_rows_per_unit": 2, "columns": columns}}}
    return parse_dataset(meta)


def test_unreadable_sources_are_refused_naming_the_column(spark_engine: Any, tmp_path: Path) -> None:
    frame = pd.DataFrame({"cid": [1, 2, 3], "n": ["4", "oops-secret", "6"]})
    with pytest.raises(InvalidMetadata, match="column n is not int") as e:
        spark_engine.register(_small(spark_engine, frame, {"cid": {"type": "id"}, "n": {"type": "int"}}, "sbadtype"))
    assert "oops" not in str(e.value)
    nulls = pd.DataFrame({"cid": pd.array([1, None, 3], dtype="Int64"), "n": [1, 2, 3]})
    with pytest.raises(InvalidMetadata, match="privacy-unit column cid has NULLs"):
        spark_engine.register(_small(spark_engine, nulls, {"cid": {"type": "id"}, "n": {"type": "int"}}, "sbadunit"))
    with pytest.raises(InvalidMetadata, match="column m is declared but not in the source"):
        spark_engine.register(_small(spark_engine, frame, {"cid": {"type": "id"}, "m": {"type": "int"}}, "sbadcol"))
    meta = _small(spark_engine, frame, {"cid": {"type": "id"}}, "smissing").model_dump(mode="json")
    meta["tables"]["t"]["source"] = str(tmp_path / "nowhere.parquet")
    with pytest.raises(InvalidMetadata, match="missing"):
        spark_engine.register(parse_dataset(meta))


def test_a_catalog_table_is_a_source(spark_engine: Any) -> None:
    frame = pd.DataFrame({"cid": [1, 1, 1, 2], "n": [1, 2, 3, 4]})
    view = f"scat_{uuid.uuid4().hex[:8]}"
    spark_engine.session.createDataFrame(list(frame.itertuples(index=False)), "cid BIGINT, n BIGINT").createGlobalTempView(view)
    meta = _small(spark_engine, frame, {"cid": {"type": "id"}, "n": {"type": "int", "lower": 0, "upper": 10}}, "scatalog").model_dump(mode="json")
    meta["tables"]["t"]["source"] = f"global_temp.{view}"
    version = spark_engine.register(parse_dataset(meta))
    assert spark_engine.register(parse_dataset(meta)) == version  # the same rows: the same content digest
    count = exp.select(exp.Count(this=exp.Star())).from_(spark_engine.relation("scatalog", "t", bounded=True))
    assert spark_engine.execute(count) == [(3,)]  # unit 1 cut to k = 2


def test_engine_errors_name_the_error_class_only(spark_engine: Any) -> None:
    with pytest.raises(EngineError, match="TABLE_OR_VIEW_NOT_FOUND") as e:
        spark_engine.execute(exp.select(exp.column("secret_value")).from_("no_such_relation"))
    assert "secret_value" not in str(e.value)
    with pytest.raises(EngineError, match="SELECTs only"):
        spark_engine.execute(exp.Drop(this=exp.to_table("x"), kind="TABLE"))


def test_load_frame_keeps_column_types(spark_engine: Any) -> None:
    frame = pd.DataFrame({
        "i": np.array([1, 2], dtype="int64"), "f": [0.5, math.nan], "s": ["a", None], "b": [True, False],
        "t": pd.to_datetime(["2025-01-01 00:00:00.123456", "2025-06-01 00:00:00.000000"]), "n": pd.array([1, None], dtype="Int64"),
    })
    schema = spark_engine.session.read.parquet(spark_engine.load_frame("stypes", frame)).schema
    assert [f.dataType.simpleString() for f in schema.fields] == ["bigint", "double", "string", "boolean", "timestamp_ntz", "bigint"]


def test_a_query_past_the_timeout_is_stopped_and_the_session_carries_on(spark_engine: Any, grid: dict[str, Any]) -> None:
    rel = spark_engine.relation("sgrid", "t", bounded=True)
    slow = exp.select(exp.Count(this=exp.Star())).from_(exp.alias_(rel.copy(), "a", table=True))
    for alias in "bcdefg":  # 50^7 rows: minutes of work
        slow = slow.join(exp.alias_(rel.copy(), alias, table=True), join_type="CROSS")
    spark_engine.query_timeout_s = 1.0
    try:
        with pytest.raises(QueryTimeout):
            spark_engine.execute(slow)
        quick = exp.select(exp.Count(this=exp.Star())).from_(rel.copy())
        assert spark_engine.execute(quick) == [(len(grid["frame"]),)]
    finally:
        spark_engine.query_timeout_s = None
