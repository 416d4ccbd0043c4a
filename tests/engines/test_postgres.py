"""The PostgreSQL engine against the real server: its dialect means DuckDB's semantics, its bounding keeps
DuckDB's rows, its queries are read-only, bounded in time and fail only with typed errors.

The dialect is checked construct by construct (`PORTABLE`): the same portable tree runs on DuckDB and,
lowered, on PostgreSQL over a grid of operands chosen where the engines differ (NULL, NaN, ±inf, ±1e308,
-0.0, subnormals, numbers around 2^±511 where the total arithmetic switches forms, text that is almost a
number or a date, backslashes and wildcards for LIKE, timestamps on every weekday); the values must be
the same, bit for bit for floats, and PostgreSQL must never raise. Each test session works in a schema
and a reader role of its own, dropped at the end (xdist runs sessions side by side).
"""
from __future__ import annotations

import copy
import itertools
import math
import random
import struct
import threading
import time
import unicodedata
import uuid
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pytest
from sqlglot import exp, parse_one

from gateway.catalog import DatasetMeta
from gateway.engines import bounding
from gateway.engines.base import ENGINES, EngineError, EngineUnavailable, QueryTimeout
from gateway.engines.duckdb import DuckDBEngine
from gateway.engines.postgres import POSTGRES, PostgresEngine
from gateway.errors import InvalidMetadata
from gateway.settings import PostgresSettings, Settings
from gateway.sql.semantics import DIALECTS, PORTABLE
from tests.conftest import BANK, bank_frames

KEY = "pg-test-key"
URL = PostgresSettings().url
INF, NAN = math.inf, math.nan


@pytest.fixture(scope="module")
def engine() -> Any:
    tag = uuid.uuid4().hex[:10]
    eng = PostgresEngine(PostgresSettings(schema=f"dpgate_test_{tag}", reader_role=f"dpgate_test_{tag}_reader"), seed=KEY)
    yield eng
    eng.drop_schema()
    eng.close()
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(eng.reader)))


@pytest.fixture(scope="module")
def bank(engine: PostgresEngine) -> DatasetMeta:
    meta = copy.deepcopy(BANK)
    for name, frame in bank_frames().items():
        source = engine.load_frame(name, frame)
        for t in meta["tables"].values():
            if t["source"] == name:
                t["source"] = source
    ds = DatasetMeta.model_validate(meta)
    engine.register(ds, list(ds.tables))
    return ds


# -- the dialect: each portable construct means on PostgreSQL what it means on DuckDB ---------------


def _lit(v: Any) -> exp.Expression:
    """A typed literal both engines read back exactly (numbers through their text: -0.0, 5e-324, nan)."""
    if v is None:
        return exp.Null()
    if isinstance(v, bool):
        return exp.Boolean(this=v)
    if isinstance(v, float):
        return exp.Cast(this=exp.Literal.string(repr(v)), to=exp.DataType.build("DOUBLE"))
    if isinstance(v, int):
        return exp.Cast(this=exp.Literal.number(v), to=exp.DataType.build("BIGINT"))
    if isinstance(v, tuple):  # ("TIMESTAMP", "2025-01-01 10:00:00")
        return exp.Cast(this=exp.Literal.string(v[1]), to=exp.DataType.build(v[0]))
    return exp.Literal.string(v)


def _grid(columns: list[str], rows: list[tuple]) -> exp.Expression:
    """The operands as a VALUES relation `v(i, <columns>)`; a typed NULL row first fixes each column's type."""
    typed = [exp.Tuple(expressions=[exp.Literal.number(i), *(_lit(x) for x in row)]) for i, row in enumerate(rows)]
    return exp.Values(expressions=typed, alias=exp.TableAlias(this=exp.to_identifier("v"), columns=[exp.to_identifier(c) for c in ["i", *columns]]))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return type(a) is type(b) and a == b or (a is None and b is None)


def _compare(engine: PostgresEngine, columns: list[str], rows: list[tuple], exprs: dict[str, str]) -> None:
    """Each expression (DuckDB SQL over the columns) evaluated on every row by both engines."""
    select = exp.select(exp.column("i"), *(exp.alias_(parse_one(e, read="duckdb"), name) for name, e in exprs.items())).from_(_grid(columns, rows))
    duck = {r[0]: r[1:] for r in duckdb.connect().execute(select.sql(dialect="duckdb")).fetchall()}
    pg = {r[0]: r[1:] for r in engine.execute(select)}
    assert duck.keys() == pg.keys()
    bad = [(name, rows[i], d[k], pg[i][k]) for i, d in duck.items() for k, name in enumerate(exprs) if not _same(d[k], pg[i][k])]
    assert not bad, f"{len(bad)} differences, e.g. {bad[:6]}"


def _bits(rng: random.Random, n: int) -> list[float]:
    return [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(n)]


def _numbers() -> list[float]:
    rng = random.Random(3)
    special = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0, -7.5, 7.0, 0.1, 1 / 3, 123456.789, 1e15, 9.3e18, 2.0**53, 2.0**53 + 2,
               1e308, -1e308, 1.7976931348623157e308, -1.7976931348623157e308, 1e200, 1e154, 4e160, 2.0**511, 2.0**512, 2.0**1023,
               5e-324, -5e-324, 1e-308, 2.2250738585072014e-308, 1e-200, -1e-200, 1e-154, 1e-160, 3e-170, 2.0**-511, 2.0**-512,
               2.0**-1022, INF, -INF, NAN]  # fmt: skip
    return special + _bits(rng, 20) + [rng.uniform(-100, 100) for _ in range(8)] + [float(rng.randint(-50, 50)) for _ in range(6)]


def test_the_dialect_is_registered() -> None:
    assert DIALECTS["postgres"] is POSTGRES and POSTGRES.sqlglot == "postgres" and not POSTGRES.refused


def test_arithmetic_is_ieee_and_never_raises(engine: PostgresEngine) -> None:
    """PostgreSQL raises on float overflow and underflow (1e308 * 10, 1e-200 * 1e-200) and has no float
    %; the lowered arithmetic gives DuckDB's ±inf, signed zeros and fmod, in both its inlined form (cheap
    operands) and its plpgsql form (nested operands)."""
    xs = _numbers() + [None]
    rows = list(itertools.product(xs, xs))
    ops = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%"}
    exprs = {f"{n}": f"a {op} b" for n, op in ops.items()}
    exprs |= {f"{n}_nested": f"(a * 1) {op} (b * 1)" for n, op in ops.items()}
    exprs |= {"div_nullif": "a / NULLIF(b, 0)", "mod_nullif": "a % NULLIF(b, 0)", "neg": "-a"}
    _compare(engine, ["a", "b"], rows, exprs)


def test_round_is_half_away_from_zero_as_duckdb(engine: PostgresEngine) -> None:
    """PostgreSQL rounds a double half to even and has no ROUND(double, digits); DuckDB rounds x * 10^d
    half away from zero, a tie decided by the exact product (ROUND(0.35, 1) is 0.3)."""
    rng = random.Random(5)
    xs = [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.35, 1.45, 2.675, 1.005, 0.285, 0.25, 1234.5, 1e308, -1e308, 1.7e308, 5e-324,
          1e-300, INF, -INF, NAN, 0.49999999999999994, -3.8535776437497304, 2.8693216053968325, 4503599627370495.5, None]  # fmt: skip
    xs += [rng.randint(-10**6, 10**6) / 1000 for _ in range(60)] + [rng.uniform(-1e6, 1e6) for _ in range(20)] + _bits(rng, 20)
    exprs = {"r": "ROUND(x)", **{f"r{d}".replace("-", "m"): f"ROUND(x, {d})" for d in (-15, -3, -1, 0, 1, 2, 3, 6, 15)}}
    exprs |= {"abs": "ABS(x)", "floor": "FLOOR(x)", "ceil": "CEIL(x)", "sign": "CAST(SIGN(x) AS DOUBLE)"}
    _compare(engine, ["x"], [(x,) for x in xs], exprs)


TEXTS = [
    "1__0", "_1", "1_", "1_.5", "1._5", "1e1_0", "1_e5", "\t12\n", " 12", "12 ", "1e", "e5", ".", "-.5", "+.5e-3", "1.5e0", "0b101", "0o7",
    "0X1F", "0x1f", "-0x1f", "0x1_f", "0xFFFFFFFFFFFFFFFF", "0x7FFFFFFFFFFFFFFF", "0b1_01", " 0x10 ", "0x", "1e20", "9223372036854775807",
    "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "9223372036854775807.4", "9223372036854775807.5",
    "0.49999999999999999999", "2.5", "3.5", "-0.5", "12.5e-1", "NaN", "nan", "+nan", "-nan", "-inf", "+inf", "INF", "infinity",
    "-Infinity", "infinit", "1d", "1f", "١٢", "", " ", "true", "True", "TRUE", "yes", "y", "t", "1", "0", "false", "no", "n", "f", "off",
    "on", "2", "tr", "  t", "t ", "1e400", "-1e400", "1e-400", "-1e-400", "1.7976931348623157e308", "1.7976931348623159e308", "4.9e-324",
    "2e-324", "3e-324", "2.4703282292062328e-324", "1e-320", "-0", "-0.0", "0e5", "-0e500", "00012", "1.", ".5", "1e0005", "1.e5",
    "1.0005", "1.00049999", "999999999999999.9995", "123.4567", "0." + "0" * 350 + "1", "1" + "0" * 320, "1" + "0" * 400 + "e-100",
    "1e1001", "1e99999", "3.4028235677973366e38", "3.4e39", "1e-46", "7.006492321624087e-46", "2025-01-01", "2025-01-01T10:00:00",
    "2025-1-1", "2025-02-30", "20250101", "2025-01-01 10:00:00+02", " 2025-01-01 ", "2025-01-01 10:00:00.123456789", "2025-01-01 24:00:00",
    "2025-01-01 24:00:01", "2025-01-01 23:59:60", "2025-01-01 10:00", "2025-01-01 10", "2025-01-01T10:00:00Z", "2025-01-01 10:00:00 UTC",
    "-2025-01-01", "0000-01-01", "10000-01-01", "2025-13-01", "2024-02-29", "2023-02-29", "1900-02-29", "2025/01/01", "25-01-01",
    "2025-01-1 1:2:3", "2025-01-01 10:00:00.", "epoch", "now", "today", "allballs", "Jan 1 2025", "2025-01-01 10:00:00 Europe/Paris",
    "2025-01-01T", "2025.01.01", "-infinity", "+infinity", "294247-01-01", "294248-01-01", "abc", "a\\b", "é", "1,5",
]  # fmt: skip
TARGETS = ["DOUBLE", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "BOOLEAN", "TIMESTAMP", "DATE", "DECIMAL", "DECIMAL(10, 2)", "VARCHAR"]


def _try_casts(column: str) -> dict[str, str]:
    out = {t.split("(")[0].lower() + str(i): f"TRY_CAST({column} AS {t})" for i, t in enumerate(TARGETS)}
    out["real"] = f"CAST(TRY_CAST({column} AS FLOAT) AS DOUBLE)"  # a REAL's own value (the client widens its text)
    return out


def test_try_cast_of_text_parses_as_duckdb(engine: PostgresEngine) -> None:
    """PostgreSQL has no TRY_CAST (sqlglot writes CAST, which raises on a bad value) and reads numbers
    and dates with other rules (hex floats, 'today', no underscores); the lowering follows DuckDB's."""
    rng = random.Random(7)
    texts = TEXTS + [repr(x) for x in _bits(rng, 30) + [rng.uniform(-1e6, 1e6) for _ in range(20)]] + [None]
    _compare(engine, ["s"], [(s,) for s in texts], _try_casts("s"))


def test_try_cast_of_typed_values(engine: PostgresEngine) -> None:
    xs = [x for x in _numbers() if x is not None] + [2.5, -2.5, 127.5, -128.5, 32767.5, 2.0**63, -(2.0**63), 1e16, 0.0005, 1.0005, -0.0015]
    _compare(engine, ["x"], [(x,) for x in xs] + [(None,)], _try_casts("x") | {"text": "CAST(x AS VARCHAR)"})
    ints = [0, 1, -1, 127, 128, -129, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 10**15, None]
    _compare(engine, ["n"], [(n,) for n in ints], _try_casts("n") | {"text": "CAST(n AS VARCHAR)", "double": "CAST(n AS DOUBLE)"})
    _compare(engine, ["b"], [(True,), (False,), (None,)], _try_casts("b") | {"text": "CAST(b AS VARCHAR)", "double": "CAST(b AS DOUBLE)"})
    stamps = [("TIMESTAMP", s) for s in ("2025-01-01 10:00:00", "2025-01-01 10:00:00.5", "1999-12-31 23:59:59.123456", "0044-03-15 12:00:00")]
    _compare(engine, ["ts"], [(s,) for s in stamps] + [(None,)], _try_casts("ts") | {"text": "CAST(ts AS VARCHAR)"})


def test_date_parts_use_duckdbs_numbering(engine: PostgresEngine) -> None:
    """DAYOFWEEK and DOW count from Sunday = 0, ISODOW from Monday = 1, WEEK is ISO's; EXTRACT returns
    an integer, and NULL on an infinite timestamp (PostgreSQL's EXTRACT returns a numeric infinity)."""
    days = [("TIMESTAMP", f"2024-12-{d:02d} {d % 24:02d}:{(7 * d) % 60:02d}:00") for d in range(26, 32)]
    days += [("TIMESTAMP", s) for s in ("2025-01-01 00:00:00", "2025-01-05 23:59:59", "2020-12-31 12:00:00", "2021-01-03 00:00:00",
                                         "2024-02-29 06:30:00", "2026-06-15 18:45:00", "1999-01-01 00:00:00", "0001-01-01 00:00:00")]
    parts = ["YEAR", "QUARTER", "MONTH", "DAY", "DAYOFWEEK", "DOW", "ISODOW", "DAYOFYEAR", "DOY", "HOUR", "MINUTE", "WEEK"]
    exprs = {p.lower(): f"EXTRACT({p} FROM ts)" for p in parts}
    exprs |= {f"{p.lower()}_of_date": f"EXTRACT({p} FROM TRY_CAST(CAST(ts AS VARCHAR) AS DATE))" for p in ("YEAR", "DOW", "WEEK")}
    exprs |= {f"{p.lower()}_of_text": f"EXTRACT({p} FROM TRY_CAST(s AS TIMESTAMP))" for p in ("YEAR", "DAY", "ISODOW")}
    rows = [(d, d[1]) for d in days] + [(None, "infinity"), (None, "-infinity"), (None, "-0044-03-15"), (None, None)]
    _compare(engine, ["ts", "s"], rows, exprs)


def test_like_has_no_escape_character(engine: PostgresEngine) -> None:
    """PostgreSQL's LIKE escapes with a backslash by default, DuckDB's has no escape character; ILIKE
    folds case by Unicode in both."""
    strings = ["a\\b", "ab", "a_b", "a%b", "a\\_b", "abc", "ABC", "Éa", "éa", "", "%", "_", "\\", "a\\", None]
    patterns = ["a\\b", "a\\_b", "a\\%", "a%", "a_b", "%\\", "\\", "_", "%", "", "éa", "É%", "A%"]
    exprs = {f"like{i}": f"s LIKE '{p}'" for i, p in enumerate(patterns)}
    exprs |= {f"ilike{i}": f"s ILIKE '{p}'" for i, p in enumerate(patterns)}
    exprs |= {f"not_like{i}": f"NOT s LIKE '{p}'" for i, p in enumerate(patterns[:3])}
    _compare(engine, ["s"], [(s,) for s in strings], exprs)


def test_text_functions_and_comparisons_use_duckdbs_order(engine: PostgresEngine) -> None:
    """Text compares by code point (DuckDB's order; a server's default collation may sort 'a' before
    'B'); LENGTH counts characters; LOWER and UPPER map by Unicode; MD5 is lowercase hex."""
    words = ["a", "B", "b", "é", "z", "É", "Straße", "İstanbul", "e\u0301", "Ω", "abc", "", "a b", None]
    rows = list(itertools.product(words, words[:6] + [None]))
    exprs = {"lt": "s < t", "eq": "s = t", "between": "s BETWEEN t AND 'zz'", "in": "s IN (t, 'B')", "least": "LEAST(s, t)",
             "greatest": "GREATEST(s, t)", "coalesce": "COALESCE(s, t)", "len": "LENGTH(s)", "lower": "LOWER(s)", "lower_lt": "LOWER(s) < t",
             "md5": "MD5(s)", "pipe": "s || '|' || t", "case": "CASE WHEN s < t THEN s ELSE t END"}  # fmt: skip
    _compare(engine, ["s", "t"], rows, exprs)


def test_case_mapping_differs_only_where_unicode_tables_do(engine: PostgresEngine) -> None:
    """LOWER and UPPER map one character to one by the server's Unicode tables (glibc's here) and
    DuckDB's by its own: over every letter below U+3000 they agree but for UPPER('ß'), which DuckDB
    maps to 'ẞ' and glibc leaves. The difference changes which rows a filter keeps, never raises."""
    letters = [chr(c) for c in range(0x20, 0x3000) if unicodedata.category(chr(c)).startswith("L")]
    select = exp.select("i", parse_one("UPPER(s)"), parse_one("LOWER(s)"), parse_one("s ILIKE LOWER(s)")).from_(_grid(["s"], [(c,) for c in letters]))
    duck = {r[0]: r[1:] for r in duckdb.connect().execute(select.sql(dialect="duckdb")).fetchall()}
    pg = {r[0]: r[1:] for r in engine.execute(select)}
    assert {letters[i] for i in duck if duck[i][0] != pg[i][0]} <= {"ß"}
    assert all(duck[i][1:] == pg[i][1:] for i in duck)


def test_lowering_a_lowered_tree_changes_nothing() -> None:
    tree = parse_one(
        "SELECT LOWER(s) ILIKE 'a%', TRY_CAST(s AS DOUBLE) * 2 % 3, ROUND(x, -2), EXTRACT(DOW FROM ts), CAST(x AS VARCHAR) LIKE '%\\_', MD5(s) FROM v",
        read="duckdb",
    )
    once = POSTGRES.lowered(tree)
    assert POSTGRES.lowered(once).sql(dialect="postgres") == once.sql(dialect="postgres")
    assert "DPGATE_MOD_P(DPGATE_MUL(DPGATE_TRY_DOUBLE(s), 2), 3)" in once.sql(dialect="postgres")  # nested: the plpgsql form


def test_numeric_order_nulls_and_conditionals(engine: PostgresEngine) -> None:
    """NaN equals NaN and is above every number, -0.0 equals 0.0, LEAST and GREATEST skip NULLs, in both."""
    xs = [0.0, -0.0, 1.0, -1.0, INF, -INF, NAN, 1e308, 5e-324, None]
    rows = list(itertools.product(xs, xs))
    exprs = {"lt": "a < b", "eq": "a = b", "ne": "a <> b", "ge": "a >= b", "between": "a BETWEEN b AND 2", "in": "a IN (b, 1)",
             "least": "LEAST(a, b, 0.5)", "greatest": "GREATEST(a, b)", "coalesce": "COALESCE(a, b)", "is_null": "a IS NULL",
             "case": "CASE WHEN a > b THEN a WHEN a < b THEN b END", "if": "IF(a = b, 1, 0)", "not": "NOT (a < b)",
             "and": "(a < b) AND (b < 1)", "or": "(a < b) OR (b IS NULL)"}  # fmt: skip
    _compare(engine, ["a", "b"], rows, exprs)


def test_aggregates_agree(engine: PostgresEngine) -> None:
    xs = [0.0, -0.0, 1.0, NAN, NAN, 2.5, None, -3.0, 1.0]
    rows = [(x, "g" + str(i % 2)) for i, x in enumerate(xs)]
    select = parse_one(
        "SELECT k, COUNT(*), COUNT(x), COUNT(DISTINCT x), SUM(CASE WHEN x < 0 THEN 0 WHEN x > 2 THEN 2 ELSE x END) FROM v GROUP BY 1",
        read="duckdb",
    )
    select.set("from_", exp.From(this=_grid(["x", "k"], rows)))
    duck = sorted(duckdb.connect().execute(select.sql(dialect="duckdb")).fetchall())
    assert sorted(map(tuple, engine.execute(select))) == duck


def test_every_portable_construct_is_checked() -> None:
    """A construct added to PORTABLE needs a check here (or a `refused` entry in the dialect)."""
    checked = {"TryCast", "Cast", "Add/Sub/Mul/Div/Mod/Neg", "ABS/FLOOR/CEIL/SIGN/ROUND", "Least/Greatest", "Coalesce/Case/If",
               "EQ/NEQ/LT/LTE/GT/GTE/Between/In/Is/And/Or/Not", "Like/ILike", "Lower/Upper/Length", "Extract", "MD5/DPipe",
               "Count/Sum", "Window", "Group"}  # fmt: skip
    assert set(PORTABLE) <= checked | set(POSTGRES.refused)


def test_qualify_becomes_a_subquery_with_the_same_rows(engine: PostgresEngine) -> None:
    """PostgreSQL has no QUALIFY: the per-query bounding (`SELECT "alias".* ... QUALIFY ROW_NUMBER()`)
    runs as a subquery and keeps the same rows as DuckDB's."""
    rows = [(u, r, float(r) * 1.5) for u in range(6) for r in range(u + 1)]
    inner = parse_one(
        'SELECT "t".* FROM v AS "t" QUALIFY ROW_NUMBER() OVER (PARTITION BY "t"."u" ORDER BY MD5(CAST("t"."r" AS VARCHAR))) <= 2',
        read="duckdb",
    )
    inner.set("from_", exp.From(this=exp.Subquery(this=exp.select("*").from_(_grid(["u", "r", "x"], rows)), alias=exp.TableAlias(this=bounding.q("t")))))
    select = exp.select("t.u", "t.r", "t.x").from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=bounding.q("t"))))
    assert "QUALIFY" not in POSTGRES.render(select).upper()
    duck = sorted(duckdb.connect().execute(select.sql(dialect="duckdb")).fetchall())
    assert sorted(map(tuple, engine.execute(select))) == duck and len(duck) == 11


# -- registration: materialised inside PostgreSQL, the same rows as DuckDB ---------------------------


def _rows(engine: PostgresEngine, ds: str, table: str, *, bounded: bool = True) -> set[str]:
    return {r[0] for r in engine.execute(exp.select(exp.column("_dpgate_row")).from_(engine.relation(ds, table, bounded=bounded)))}


def test_registration_bounds_inside_postgres(engine: PostgresEngine, bank: DatasetMeta) -> None:
    rel = engine.relation("bank", "tx", bounded=True)
    assert rel.db == engine.schema and rel.name == "bnd__bank__tx"
    (most,) = engine.execute(parse_one(f'SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM "{engine.schema}"."bnd__bank__tx" GROUP BY cid) AS u'))
    assert most[0] == 5  # k of tx; the source has customers with up to 11 rows
    with psycopg.connect(URL) as conn:
        kinds = dict(conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s", [engine.schema]
        ).fetchall())  # fmt: skip
    assert kinds["bnd__bank__tx"] == "r" and kinds["src__bank__tx"] == "r"
    assert kinds["bnd__bank__cust"] == "v"  # one row per customer: no unit exceeds k = 1, a view
    assert kinds["bnd__bank__rates"] == "v"  # public: nothing to cut


def test_the_same_rows_are_kept_as_on_duckdb(engine: PostgresEngine, bank: DatasetMeta) -> None:
    """The same frames under the same key in the embedded engine: the same row identities are loaded
    and the same rows kept (both materialise bounding.py's SELECTs, each through its dialect)."""
    duck = DuckDBEngine(None, seed=KEY)
    meta = copy.deepcopy(BANK)
    for name, frame in bank_frames().items():
        source = duck.load_frame(name, frame)
        for t in meta["tables"].values():
            if t["source"] == name:
                t["source"] = source
    duck.register(DatasetMeta.model_validate(meta))
    for name in bank.tables:
        for bounded in (False, True):
            kept = {r[0] for r in duck.execute(exp.select(exp.column("_dpgate_row")).from_(duck.relation("bank", name, bounded=bounded)))}
            assert _rows(engine, "bank", name, bounded=bounded) == kept, (name, bounded)
    assert len(_rows(engine, "bank", "tx")) < len(bank_frames()["raw_tx"])  # some units were cut: the check has power


def test_reregistration_is_a_no_op_and_a_change_refreshes(engine: PostgresEngine) -> None:
    frame = pd.DataFrame({"cid": [1, 1, 1, 2, 2], "amount": [1.0, 2.0, 3.0, 4.0, 5.0]})
    source = engine.load_frame("versioned", frame)
    meta = {"name": "ver", "privacy_unit": "cid", "budget": {"epsilon": 1, "delta": 0},
            "tables": {"t": {"source": source, "max_rows_per_unit": 2,
                             "columns": {"cid": {"type": "id"}, "amount": {"type": "float", "lower": 0, "upper": 10}}}}}  # fmt: skip
    ds = DatasetMeta.model_validate(meta)
    v1 = engine.register(ds, ["t"])
    before = _rows(engine, "ver", "t")
    assert engine.register(ds, ["t"]) == v1 and _rows(engine, "ver", "t") == before
    engine.load_frame("versioned", frame.assign(amount=frame.amount + 1))
    v2 = engine.register(ds, ["t"])
    assert v2 != v1 and _rows(engine, "ver", "t") != before and len(_rows(engine, "ver", "t")) == 4
    other = PostgresEngine(PostgresSettings(schema=engine.schema, reader_role=engine.reader), seed=KEY + "-other")
    try:
        assert other.register(ds, ["t"]) != v2  # the bounding key is part of the version
    finally:
        other.close()


def test_bad_sources_are_invalid_metadata_naming_the_column_not_a_value(engine: PostgresEngine) -> None:
    source = engine.load_frame("bad_types", pd.DataFrame({"cid": [1, 2, None], "amount": ["1.5", "secret-value", "2"]}))

    def meta(**changes: Any) -> DatasetMeta:
        table = {"source": source, "max_rows_per_unit": 2, "columns": {"cid": {"type": "id"}, "amount": {"type": "float"}}} | changes
        return DatasetMeta.model_validate({"name": "bad", "privacy_unit": "cid", "budget": {"epsilon": 1, "delta": 0}, "tables": {"t": table}})

    with pytest.raises(InvalidMetadata) as info:
        engine.register(meta(), ["t"])
    assert "amount" in info.value.message and "secret" not in info.value.message
    with pytest.raises(InvalidMetadata, match="privacy-unit column cid has NULLs"):
        engine.register(meta(columns={"cid": {"type": "id"}, "amount": {"type": "category"}}), ["t"])
    with pytest.raises(InvalidMetadata, match="not a table or view"):
        engine.register(meta(source=f"{engine.schema}.no_such_table"), ["t"])
    with pytest.raises(InvalidMetadata, match="not a table or view"):
        engine.register(meta(source="not a name;"), ["t"])
    with pytest.raises(InvalidMetadata, match="column qty is declared"):
        engine.register(meta(columns={"cid": {"type": "id"}, "qty": {"type": "int"}}), ["t"])


def test_read_bounded_and_load_frame_types(engine: PostgresEngine, bank: DatasetMeta) -> None:
    frame = engine.read_bounded("bank", "tx", ["cid", "amount", "qty", "cat", "ts", "flag", "note"])
    assert len(frame) == len(_rows(engine, "bank", "tx"))
    assert str(frame["qty"].dtype) == "Int64" and frame["qty"].isna().any()  # nullable ints keep their NULLs
    assert frame["amount"].dtype == np.float64 and frame["flag"].dtype == bool
    assert pd.api.types.is_datetime64_any_dtype(frame["ts"]) and frame["note"].isna().any()
    ordered = [r[0] for r in engine.execute(parse_one(f'SELECT _dpgate_row FROM "{engine.schema}"."bnd__bank__tx" ORDER BY 1'))]
    assert ordered == sorted(ordered)  # the row identity orders by code point


def test_load_frame_round_trips_values(engine: PostgresEngine) -> None:
    frame = pd.DataFrame({
        "i": [1, -(2**63), 2**63 - 1], "f": [1.5, float("inf"), float("nan")], "s": ["a\tb\nc", "", None],
        "q": ['say "hi", \\N', "\\", "x,y"], "b": [True, False, True], "n": pd.array([1, None, 3], dtype="Int64"),
        "t": pd.to_datetime(["2025-01-01 10:00:00.5", None, "1999-12-31"], format="ISO8601"),
    })  # fmt: skip
    source = engine.load_frame("round_trip", frame)
    assert source == f"{engine.schema}.round_trip"
    with psycopg.connect(URL) as conn:
        rows = conn.execute(psycopg.sql.SQL("SELECT * FROM {}.round_trip").format(psycopg.sql.Identifier(engine.schema))).fetchall()
        types = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum",
                             [f'"{engine.schema}".round_trip']).fetchall()  # fmt: skip
    assert [t for (t,) in types] == ["bigint", "double precision", "text", "text", "boolean", "bigint", "timestamp without time zone"]
    assert rows[0][:6] == (1, 1.5, "a\tb\nc", 'say "hi", \\N', True, 1) and rows[0][6].microsecond == 500000
    assert rows[1][:6] == (-(2**63), INF, "", "\\", False, None) and rows[1][6] is None
    assert rows[2][1] is None and rows[2][2] is None  # NaN is NULL, as DuckDB reads a DataFrame
    zoned = pd.DataFrame({"t": pd.to_datetime(["2025-01-01 10:00:00+02:00"]), "c": pd.Categorical(["x"]), "m": [object()]})
    engine.load_frame("zoned", zoned)
    with psycopg.connect(URL) as conn:
        (row,) = conn.execute(psycopg.sql.SQL("SELECT t::text, c FROM {}.zoned").format(psycopg.sql.Identifier(engine.schema))).fetchall()
    assert row == ("2025-01-01 08:00:00", "x")  # UTC wall-clock time; a categorical as its values


# -- queries: read-only, bounded in time, typed failures ---------------------------------------------


def test_the_reader_cannot_write_or_read_outside_the_schema(engine: PostgresEngine, bank: DatasetMeta) -> None:
    other = f"{engine.schema}_other"  # a schema of the server the gateway does not own
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}; CREATE TABLE {}.private (x int)").format(*[psycopg.sql.Identifier(other)] * 2))
    reader = psycopg.sql.Identifier(engine.reader)
    for statement in [
        f'SELECT * FROM "{other}".private',
        f'SELECT * FROM "{engine.schema}"._dpgate_tables',
        f'SELECT * FROM "{engine.schema}".raw_tx',  # a source: only the gateway's relations are readable
        f'INSERT INTO "{engine.schema}"."bnd__bank__tx" (cid) VALUES (1)',
        f'CREATE TABLE "{engine.schema}".x (y int)',
    ]:
        with psycopg.connect(URL) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(psycopg.sql.SQL("SET ROLE {}").format(reader))
            conn.execute(statement)
    with pytest.raises(EngineError, match="^the engine runs SELECTs only$"):
        engine.execute(parse_one("INSERT INTO t VALUES (1)"))  # type: ignore[arg-type]
    # a query runs READ ONLY: even what the role may do that writes (a sequence's nextval) fails
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SEQUENCE {}.seq; GRANT ALL ON {}.seq TO {}").format(
            psycopg.sql.Identifier(engine.schema), psycopg.sql.Identifier(engine.schema), reader))
    with pytest.raises(EngineError, match="^ReadOnlySqlTransaction$"):
        engine.execute(parse_one(f"SELECT nextval('\"{engine.schema}\".seq')"))
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(other)))


def _slow(engine: PostgresEngine) -> exp.Select:
    """A portable SELECT that runs for hours: the bounded tx table joined with itself four times."""
    tx = [engine.relation("bank", "tx", bounded=True).as_(a) for a in ("a", "b", "c", "d")]
    select = exp.select(exp.Count(this=exp.Star())).from_(tx[0])
    for t in tx[1:]:
        select = select.join(t, join_type="cross")
    return select


def test_a_slow_query_times_out(engine: PostgresEngine, bank: DatasetMeta) -> None:
    engine.query_timeout_s = 0.2
    try:
        with pytest.raises(QueryTimeout):
            engine.execute(_slow(engine))
        assert engine.execute(exp.select(exp.Count(this=exp.Star())).from_(engine.relation("bank", "tx", bounded=True)))
    finally:
        engine.query_timeout_s = None


def test_a_lost_connection_is_unavailable_and_the_pool_recovers(engine: PostgresEngine, bank: DatasetMeta) -> None:
    caught: list[BaseException] = []

    def run() -> None:
        try:
            engine.execute(_slow(engine))
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            caught.append(e)

    engine.query_timeout_s = 60  # a backstop: the query must not outlive a failing test
    worker = threading.Thread(target=run, daemon=True)
    try:
        worker.start()
        killed: list[tuple] = []
        with psycopg.connect(URL, autocommit=True) as conn:
            for _ in range(500):
                killed = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
                    "AND query LIKE %s AND query LIKE '%%CROSS JOIN%%'",
                    [f"%{engine.schema}%"],
                ).fetchall()
                if killed:
                    break
                time.sleep(0.02)
        worker.join(timeout=60)
    finally:
        engine.query_timeout_s = None
    assert killed and len(caught) == 1 and isinstance(caught[0], EngineUnavailable), caught
    assert engine.execute(exp.select(exp.Count(this=exp.Star())).from_(engine.relation("bank", "tx", bounded=True)))


def test_concurrent_queries_share_the_pool(engine: PostgresEngine, bank: DatasetMeta) -> None:
    select = parse_one(f'SELECT cat, COUNT(*), SUM(amount) FROM "{engine.schema}"."bnd__bank__tx" GROUP BY 1 ORDER BY 1', read="duckdb")
    expected = engine.execute(select)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(engine.execute(select))) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 12


def test_an_unreachable_server_is_unavailable() -> None:
    settings = PostgresSettings(url="postgresql://postgres@127.0.0.1:1/test", schema="dpgate_unreachable", connect_timeout_s=1)
    with pytest.raises(EngineUnavailable) as info:
        PostgresEngine(settings, seed=KEY)
    assert info.value.code == "dataset_unavailable" and info.value.status == 503


def test_the_registry_builds_the_engine_from_the_settings(tmp_path: Any) -> None:
    tag = uuid.uuid4().hex[:10]
    settings = Settings(data_dir=tmp_path, engines={"postgres": {"schema": f"dpgate_test_{tag}", "reader_role": f"dpgate_test_{tag}_reader"}})
    eng = ENGINES["postgres"](settings)
    try:
        assert isinstance(eng, PostgresEngine) and eng.schema == f"dpgate_test_{tag}" and eng._seed == settings.secret_seed()
    finally:
        eng.drop_schema()
        eng.close()
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(eng.reader)))
