"""The PostgreSQL engine: datasets whose rows live in a PostgreSQL server, bounded inside that server.

A table's `source` is a table or view of the server (`"schema.table"`). Registration materialises the
loaded and bounded forms (`gateway.engines.bounding`, rendered by the `POSTGRES` dialect) as tables of
the gateway's own schema, in one transaction, and records their content version there; only
aggregates (a row count and hashes of the rows) and versions cross to the gateway. Queries run in READ
ONLY transactions as a NOLOGIN role that may read the gateway's relations and nothing else, under a
server-side statement timeout with a client-side cancel behind it.

The dialect makes the portable tree (DuckDB's semantics, `gateway.sql.semantics.PORTABLE`) mean the same
here. PostgreSQL raises where DuckDB does not, and an error that depends on one row's value would leak
it (a query fails or not), so every such node is rewritten into a total form: float arithmetic, which
raises on overflow and underflow here, runs through `dpgate_*` functions that give IEEE results (±inf,
signed zeros); TRY_CAST, which PostgreSQL lacks, through functions that follow DuckDB's syntax and give
NULL where DuckDB does; ROUND rounds half away from zero; LIKE has no escape character; date parts use
DuckDB's numbering; text compares by code point (COLLATE "C") and changes case by Unicode. The
functions are created in the gateway's schema at engine start (`_LIBRARY`) and found through the
connection's search_path, so the rendered SQL is the same for every schema.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.types.datetime
from psycopg import sql as pgsql
from sqlglot import exp

from gateway.catalog import ColumnType, DatasetMeta, TableMeta
from gateway.engines import bounding
from gateway.engines.base import EngineError, EngineUnavailable, QueryTimeout, check_read_only, register_engine
from gateway.errors import InvalidMetadata
from gateway.sql.parse import whole_number
from gateway.sql.semantics import DIALECTS, DUCKDB, Nulls, Semantics
from gateway.sql.source import ROW_ID

if TYPE_CHECKING:
    import pandas as pd

    from gateway.settings import PostgresSettings, Settings

LAYOUT = 1  # the shape of the engine's relations and functions; a new layout reloads every table


# -- the dialect ------------------------------------------------------------------------------------


def _f(x: float) -> str:
    """A float8 constant, written so that PostgreSQL reads back exactly `x`."""
    return f"float8 '{x!r}'"


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _collate(e: exp.Expression, collation: str) -> exp.Expression:
    """`e COLLATE collation`, parenthesised (COLLATE binds tighter than || and arithmetic)."""
    if not isinstance(e, (exp.Column, exp.Literal, exp.Anonymous, exp.Paren)):
        e = exp.Paren(this=e)
    return exp.Collate(this=e, expression=exp.to_identifier(collation, quoted=collation == "C"))


#: the DuckDB target type of a TRY_CAST -> the function giving DuckDB's value or NULL
_TRY_CASTS = {
    exp.DataType.Type.DOUBLE: "dpgate_try_double",
    exp.DataType.Type.FLOAT: "dpgate_try_real",
    exp.DataType.Type.BIGINT: "dpgate_try_bigint",
    exp.DataType.Type.TIMESTAMP: "dpgate_try_timestamp",
    exp.DataType.Type.TIMESTAMPNTZ: "dpgate_try_timestamp",  # DuckDB's TIMESTAMP as sqlglot reads it
    exp.DataType.Type.DATETIME: "dpgate_try_timestamp",
    exp.DataType.Type.DATE: "dpgate_try_date",
    exp.DataType.Type.BOOLEAN: "dpgate_try_boolean",
}
#: integer targets narrower than BIGINT: the BIGINT value if it is in range (TINYINT is SMALLINT here)
_NARROW = {
    exp.DataType.Type.INT: ("INT", -(2**31), 2**31 - 1),
    exp.DataType.Type.SMALLINT: ("SMALLINT", -(2**15), 2**15 - 1),
    exp.DataType.Type.TINYINT: ("SMALLINT", -128, 127),
}
_TEXT = (exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT)
#: CASTs whose PostgreSQL form differs (a boolean has no cast to a number here, a double no DuckDB text)
_CASTS = {
    exp.DataType.Type.DOUBLE: "dpgate_double",
    exp.DataType.Type.BIGINT: "dpgate_bigint",
    exp.DataType.Type.BOOLEAN: "dpgate_boolean",
}
_ARITH = {exp.Add: "dpgate_add", exp.Sub: "dpgate_sub", exp.Mul: "dpgate_mul", exp.Div: "dpgate_div", exp.Mod: "dpgate_mod"}
#: DuckDB's date part -> PostgreSQL's field of the same numbering
_PARTS = {
    "YEAR": "year", "QUARTER": "quarter", "MONTH": "month", "DAY": "day", "DAYOFWEEK": "dow", "DOW": "dow",
    "ISODOW": "isodow", "DAYOFYEAR": "doy", "DOY": "doy", "HOUR": "hour", "MINUTE": "minute", "WEEK": "week",
}  # fmt: skip
#: functions that PostgreSQL inlines into the query when their arguments are cheap to repeat
_INLINED_CASTS = {"dpgate_double", "dpgate_try_double", "dpgate_bigint"}


def _cheap(e: exp.Expression) -> bool:
    """Whether PostgreSQL will inline an arithmetic function over `e` (an argument used several times
    must cost little: a column, a literal, a cast of one); else the plpgsql form is called, which is
    faster than a SQL function PostgreSQL does not inline."""
    if isinstance(e, (exp.Column, exp.Literal, exp.Null, exp.Boolean)):
        return True
    if isinstance(e, (exp.Paren, exp.Neg, exp.Collate)):
        return _cheap(e.this)
    if isinstance(e, exp.Nullif):
        return _cheap(e.this) and isinstance(e.expression, exp.Literal)
    if isinstance(e, exp.Anonymous) and str(e.this).lower() in _INLINED_CASTS:
        return all(_cheap(a) for a in e.expressions)
    return False


def _target(node: exp.Cast) -> exp.DataType:
    to = node.args["to"]
    assert isinstance(to, exp.DataType)
    return to


def _try_cast(node: exp.TryCast) -> exp.Expression:
    to = _target(node)
    kind = to.this
    x = node.this
    if kind in _TRY_CASTS:
        return _call(_TRY_CASTS[kind], x)
    if kind in _NARROW:
        pg, lo, hi = _NARROW[kind]
        ranged = _call("dpgate_in_range", _call("dpgate_try_bigint", x), exp.Literal.number(lo), exp.Literal.number(hi))
        return exp.Cast(this=ranged, to=exp.DataType.build(pg))
    if kind in _TEXT:
        return _collate(_call("dpgate_text", x), "C")
    if kind == exp.DataType.Type.DECIMAL:
        params = [p.this.this for p in to.expressions] if to.expressions else ["18", "3"]  # DuckDB's DECIMAL
        return _call("dpgate_try_decimal", x, *(exp.Literal.number(int(p)) for p in params))
    raise EngineError(f"no PostgreSQL form for TRY_CAST to {to.sql(dialect='duckdb')}")


def _cast(node: exp.Cast) -> exp.Expression | None:
    kind = _target(node).this
    if kind in _CASTS:
        return _call(_CASTS[kind], node.this)
    if kind in _TEXT:
        return _collate(_call("dpgate_text", node.this), "C")
    return None  # TIMESTAMP, DATE: PostgreSQL's own cast means DuckDB's


def _arith(node: exp.Binary) -> exp.Expression:
    a, b = node.this, node.expression
    name = _ARITH[type(node)] + ("" if _cheap(a) and _cheap(b) else "_p")
    return _call(name, a, b)


def _round(node: exp.Expression) -> exp.Expression:
    args = [node.this, node.args.get("decimals")] if isinstance(node, exp.Round) else list(node.expressions)
    args = [a for a in args if a is not None]
    if len(args) == 1:
        return _call("dpgate_round", args[0])
    digits = args[1]
    sign = -1 if isinstance(digits, exp.Neg) else 1
    d = whole_number(digits.this if sign < 0 else digits)
    if d is None or not -15 <= sign * d <= 15:  # the planner's range: 10^|d| is exact, its products small
        raise EngineError("ROUND's digits must be an integer literal in [-15, 15]")
    return _call("dpgate_round", args[0], exp.Literal.number(sign * d))


def _extract(node: exp.Extract) -> exp.Expression:
    part = _PARTS.get(node.this.name.upper())
    if part is None:
        raise EngineError(f"no PostgreSQL form for date part {node.this.name}")
    return _call("dpgate_extract", exp.Literal.string(part), node.expression)


def _like(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.ILike):  # case folded by Unicode on both sides (one collation: no mismatch)
        node = exp.ILike(this=_collate(node.this, "dpgate_unicode"), expression=_collate(node.expression, "dpgate_unicode"))
    return exp.Escape(this=node, expression=exp.Literal.string(""))


def _case(node: exp.Expression) -> exp.Expression:
    name = "lower" if isinstance(node, exp.Lower) else "upper"
    return _collate(_call(name, _collate(node.this, "dpgate_unicode")), "C")


#: node type -> its PostgreSQL form (None: PostgreSQL's own SQL for the node means DuckDB's)
_RULES: dict[type, Callable[[Any], exp.Expression | None]] = {
    exp.TryCast: _try_cast,
    exp.Cast: _cast,
    **{cls: _arith for cls in _ARITH},
    exp.Round: _round,
    exp.Anonymous: _round,  # the planner's ROUND(x[, d]); other names are not rules (`_applies`)
    exp.Extract: _extract,
    exp.Like: _like,
    exp.ILike: _like,
    exp.Lower: _case,
    exp.Upper: _case,
    # the row identity orders rows: compare it by code point, as DuckDB does
    exp.MD5: lambda node: _collate(_call("md5", node.this), "C"),
}


def _applies(node: exp.Expression) -> bool:
    if isinstance(node, exp.Anonymous):
        return str(node.this).upper() == "ROUND"
    if isinstance(node, (exp.Like, exp.ILike)):
        return not isinstance(node.parent, exp.Escape)  # else already given its (empty) escape
    return True


def _lower(node: exp.Expression) -> exp.Expression | None:
    """The PostgreSQL form of one portable node, its operands lowered too: the result does not depend
    on the order in which a caller visits the tree (sqlglot's `transform` visits a node before its
    children and skips the children of a node it replaced), and lowering a lowered tree changes nothing."""
    rule = _RULES.get(type(node))
    if rule is None or not _applies(node):
        return None
    node = node.copy()
    for child in list(node.iter_expressions()):
        child.replace(child.transform(lambda n: _lower(n) or n, copy=False))
    return rule(node)


_TOTAL = "never: PostgreSQL raises on float overflow and underflow; the dialect's dpgate_* function gives IEEE's ±inf and ±0"

POSTGRES = DUCKDB.override(
    "postgres",
    sqlglot="postgres",
    lower=_lower,
    functions={
        name: Semantics(DUCKDB[name].nulls, DUCKDB[name].interval, makes_null=DUCKDB[name].makes_null,
                        fails=_TOTAL, overflow=DUCKDB[name].overflow)
        for name in ("+", "-", "*", "/", "%")
    } | {
        "ROUND": Semantics(Nulls.PROPAGATE, DUCKDB["ROUND"].interval, fails="never: dpgate_round, half away from zero as DuckDB"),
        "CAST": Semantics(Nulls.PROPAGATE, makes_null=DUCKDB["CAST"].makes_null,
                          fails="never: dpgate_try_* functions parse DuckDB's syntax and give NULL where DuckDB does"),
    },
)
DIALECTS["postgres"] = POSTGRES


# -- the functions the dialect calls --------------------------------------------------------------

_WS = r"E' \t\n\r\f\013'"  # the white space DuckDB trims around a number
#: a plain decimal (no underscores, no exponent, at most 15 + 15 digits): PostgreSQL reads it as DuckDB does
_PLAIN = "E'^[ \\t\\n\\r\\f\\013]*[+-]?[0-9]{1,15}([.][0-9]{0,15})?[ \\t\\n\\r\\f\\013]*$'"
#: what a number of DuckDB's syntax (or inf, nan) can start with
_NUMBERISH = "E'^[ \\t\\n\\r\\f\\013]*[+-]?[0-9.iInN]'"
_NUM_RE = r"'^[+-]?([0-9]+(_[0-9]+)*(\.([0-9]+(_[0-9]+)*)?)?|\.[0-9]+(_[0-9]+)*)([eE][+-]?[0-9]+(_[0-9]+)*)?$'"
_OVERFLOW = 2**1024 - 2**970  # the least real number a double rounds to infinity
_P511, _M511, _P600, _M600 = 2.0**511, 2.0**-511, 2.0**600, 2.0**-600
_TS = ("timestamp", "date")  # the time types, whose text follows DateStyle


def _overloads(name: str, returns: str, bodies: dict[str, str]) -> list[str]:
    """SQL functions `name(v <type>)`, one per argument type: PostgreSQL picks the one for the operand's
    type, so the lowering need not know it (anyelement: any other type, through its text). Those that
    may read a value's text are STABLE (a date's text follows DateStyle): declared IMMUTABLE, PostgreSQL
    would not inline them into the query."""
    out = []
    for arg, body in bodies.items():
        quoted = arg == "anyelement"  # a polymorphic SQL function cannot have a standard body
        volatility = "STABLE" if arg in ("anyelement", *_TS) else "IMMUTABLE"
        out.append(
            f"CREATE OR REPLACE FUNCTION {{s}}.{name}(v {arg}) RETURNS {returns} LANGUAGE sql {volatility} PARALLEL SAFE "
            + (f"AS $$ SELECT {body} $$" if quoted else f"RETURN {body}")
        )
    return out


def _binary(name: str, expr: str, wide: str) -> list[str]:
    """A total float operation as an inlinable SQL function and as plpgsql: the fast case in a CASE the
    planner folds into the query, the rare one (huge, tiny or special operands) in `wide`."""
    body = f"CASE WHEN {expr} ELSE {{s}}.{wide}(a, b) END"
    return [
        f"CREATE OR REPLACE FUNCTION {{s}}.{name}(a float8, b float8) RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN {body}",
        f"CREATE OR REPLACE FUNCTION {{s}}.{name}_p(a float8, b float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE "
        f"AS $$ BEGIN RETURN {body}; END $$",
    ]


_SAFE_MUL = f"abs(a) BETWEEN {_f(_M511)} AND {_f(_P511)} AND abs(b) BETWEEN {_f(_M511)} AND {_f(_P511)}"

# a * b or a / b computed as p = x op y over operands scaled into [2^-511, 2^511] (no error can occur),
# the true value being p * 2^(600 n): rescaled exactly where it is a normal number, or ±inf beyond the
# largest; below the normal range PostgreSQL's own operation is exact and raises only where the value
# rounds to zero, which is given as the signed zero (a * 0) op b instead, erring towards zero for a
# value within 2^-53 relative of 2^-1075 (the least subnormal is 2^-1074: DuckDB may give it there)
_RESCALE = f"""
  IF n > 0 THEN
    IF abs(p) >= 2::float8 ^ (1024 - 600 * n) THEN RETURN sign(p) * float8 'Infinity'; END IF;
    FOR i IN 1..n LOOP p := p * {_f(_P600)}; END LOOP;
  ELSIF n < 0 THEN
    IF abs(p) < 2::float8 ^ (-1022 - 600 * n) THEN
      IF abs(p) > 2::float8 ^ (-1075 - 600 * n) THEN RETURN a {{op}} b; END IF;
      RETURN (a * 0) {{op}} b;
    END IF;
    FOR i IN 1..-n LOOP p := p * {_f(_M600)}; END LOOP;
  END IF;
  RETURN p;"""


def _scale(var: str, arg: str, step: str) -> str:
    return (f"IF abs({arg}) > {_f(_P511)} THEN {var} := {arg} * {_f(_M600)}; n := n {step[0]} 1; "
            f"ELSIF abs({arg}) < {_f(_M511)} THEN {var} := {arg} * {_f(_P600)}; n := n {step[1]} 1; END IF;")


_LIBRARY: list[str] = [
    # a + b (and a - b) with IEEE overflow: both halves are exact where |a|, |b| >= 1
    "CREATE OR REPLACE FUNCTION {s}.dpgate_add_wide(a float8, b float8) RETURNS float8 LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE "
    "RETURN CASE WHEN abs(a) < 1 OR abs(b) < 1 OR abs(a) >= 'Infinity' OR abs(b) >= 'Infinity' THEN a + b "
    f"WHEN abs(a * 0.5 + b * 0.5) >= {_f(2.0**1023)} THEN sign(a) * float8 'Infinity' ELSE (a * 0.5 + b * 0.5) * 2 END",
    *_binary("dpgate_add", f"abs(a) < {_f(2.0**1022)} AND abs(b) < {_f(2.0**1022)} THEN a + b", "dpgate_add_wide"),
    "CREATE OR REPLACE FUNCTION {s}.dpgate_sub(a float8, b float8) RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN {s}.dpgate_add(a, -b)",
    "CREATE OR REPLACE FUNCTION {s}.dpgate_sub_p(a float8, b float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE "
    "AS $$ BEGIN RETURN {s}.dpgate_add(a, -b); END $$",
    "CREATE OR REPLACE FUNCTION {s}.dpgate_mul_wide(a float8, b float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    "DECLARE x float8 := a; y float8 := b; n int := 0; p float8;\nBEGIN\n"
    "  IF a = 0 OR b = 0 OR abs(a) >= 'Infinity' OR abs(b) >= 'Infinity' THEN RETURN a * b; END IF;\n"
    f"  {_scale('x', 'a', '+-')}\n  {_scale('y', 'b', '+-')}\n  p := x * y;"
    + _RESCALE.replace("{op}", "*") + "\nEND $$",
    *_binary("dpgate_mul", f"{_SAFE_MUL} THEN a * b WHEN a = 0 OR b = 0 THEN a * b", "dpgate_mul_wide"),
    "CREATE OR REPLACE FUNCTION {s}.dpgate_div_wide(a float8, b float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    "DECLARE x float8 := a; y float8 := b; n int := 0; p float8;\nBEGIN\n"
    "  IF b = 0 THEN\n"  # IEEE: x / ±0 is ±inf, 0 / 0 and NaN / 0 are NaN
    "    IF a = 0 OR a = 'NaN' THEN RETURN 'NaN'; END IF;\n"
    "    RETURN CASE WHEN (a > 0) = (b::text NOT LIKE '-%') THEN float8 'Infinity' ELSE float8 '-Infinity' END;\n"
    "  END IF;\n"
    "  IF a = 0 OR abs(a) >= 'Infinity' OR abs(b) >= 'Infinity' THEN RETURN a / b; END IF;\n"
    f"  {_scale('x', 'a', '+-')}\n  {_scale('y', 'b', '-+')}\n  p := x / y;"
    + _RESCALE.replace("{op}", "/") + "\nEND $$",
    *_binary("dpgate_div", f"{_SAFE_MUL} THEN a / b WHEN a = 0 AND b <> 0 THEN a / b", "dpgate_div_wide"),
    # fmod (the sign of the dividend), exactly: integers below 2^53 directly, the rest by long division
    # in powers of two of |b| (each subtraction exact)
    "CREATE OR REPLACE FUNCTION {s}.dpgate_mod_wide(a float8, b float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    "DECLARE r float8 := abs(a); d float8 := abs(b); t float8;\nBEGIN\n"
    "  IF b = 0 OR abs(a) >= 'Infinity' OR b = 'NaN' THEN RETURN 'NaN'; END IF;\n"
    "  IF r < d OR d = 'Infinity' THEN RETURN a; END IF;\n"
    "  t := d;\n  WHILE t <= r - t LOOP t := t * 2; END LOOP;\n"
    "  LOOP\n    IF r >= t THEN r := r - t; END IF;\n    EXIT WHEN t = d;\n    t := t * 0.5;\n  END LOOP;\n"
    "  IF r = 0 THEN RETURN a * 0; END IF;\n  RETURN sign(a) * r;\nEND $$",
    *_binary(
        "dpgate_mod",
        f"a = trunc(a) AND b = trunc(b) AND abs(a) < {_f(2.0**53)} AND abs(b) < {_f(2.0**53)} AND b <> 0 THEN "
        "CASE WHEN a - trunc(a / b) * b = 0 THEN a * 0 ELSE a - trunc(a / b) * b END",
        "dpgate_mod_wide",
    ),
    # ROUND(x): half away from zero (PostgreSQL rounds half to even)
    "CREATE OR REPLACE FUNCTION {s}.dpgate_round(x float8) RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE "
    "RETURN CASE WHEN abs(x - trunc(x)) >= 0.5 THEN trunc(x) + sign(x) ELSE trunc(x) END",
    # whether the exact x * m (x / m) lies nearer zero than the tie p = fl(x * m) (fl(x / m)): Dekker's
    # exact product, m = 10^|d| <= 1e15 and |p| < 2^53, so nothing overflows
    "CREATE OR REPLACE FUNCTION {s}.dpgate_below_tie(x float8, m float8, p float8, times boolean) RETURNS boolean "
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    "DECLARE a float8; b float8; c float8; ah float8; al float8; bh float8; bl float8; h float8; e float8;\nBEGIN\n"
    "  IF times THEN a := x; ELSE a := p; END IF;\n  b := m;\n"
    "  c := 134217729 * a; ah := c - (c - a); al := a - ah;\n"
    "  c := 134217729 * b; bh := c - (c - b); bl := b - bh;\n"
    "  h := a * b;\n  e := ((ah * bh - h) + ah * bl + al * bh) + al * bl;\n"
    "  IF times THEN RETURN e * sign(p) < 0; END IF;\n"
    "  RETURN CASE WHEN p > 0 THEN x - h < e ELSE x - h > e END;\nEND $$",
    # ROUND(x, d) as DuckDB: the nearest of x * 10^d (half away, a tie decided by the exact product),
    # divided back (for d < 0: of x / 10^-d, multiplied back); the input where that is not finite
    "CREATE OR REPLACE FUNCTION {s}.dpgate_round_wide(x float8, d int) RETURNS float8 LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    "DECLARE m float8 := 10::float8 ^ abs(d); p float8; r float8;\nBEGIN\n"
    "  IF abs(x) >= 'Infinity' THEN RETURN x; END IF;\n"
    "  p := CASE WHEN d >= 0 THEN {s}.dpgate_mul(x, m) ELSE {s}.dpgate_div(x, m) END;\n"
    "  IF abs(p) >= 'Infinity' THEN RETURN x; END IF;\n"
    "  IF abs(p - trunc(p)) = 0.5 AND {s}.dpgate_below_tie(x, m, p, d >= 0) THEN r := trunc(p); ELSE r := {s}.dpgate_round(p); END IF;\n"
    "  r := CASE WHEN d >= 0 THEN {s}.dpgate_div(r, m) ELSE {s}.dpgate_mul(r, m) END;\n"
    "  IF abs(r) >= 'Infinity' THEN RETURN x; END IF;\n  RETURN r;\nEND $$",
    # the common case inline: |x| < 1e6 and 0 <= d <= 9 keep x * 10^d below 2^52, where PostgreSQL's
    # operations cannot fail; a tie of x * 10^d goes to dpgate_round_wide, which decides it exactly
    "CREATE OR REPLACE FUNCTION {s}.dpgate_round(x float8, d int) RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE "
    "RETURN CASE WHEN abs(x) < 1e6 AND d BETWEEN 0 AND 9 THEN CASE WHEN abs(x * 10::float8 ^ d - trunc(x * 10::float8 ^ d)) <> 0.5 "
    "THEN {s}.dpgate_round(x * 10::float8 ^ d) / 10::float8 ^ d ELSE {s}.dpgate_round_wide(x, d) END ELSE {s}.dpgate_round_wide(x, d) END",
    # a number of PostgreSQL's numeric type as a double, ±inf beyond the largest, 0 below the least
    "CREATE OR REPLACE FUNCTION {s}.dpgate_numeric_double(n numeric) RETURNS float8 LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE "
    f"RETURN CASE WHEN abs(n) >= {_OVERFLOW} THEN sign(n)::float8 * float8 'Infinity' "
    f"WHEN abs(n) * {2**1075} <= 1 THEN float8 '0' ELSE n::float8 END",
    # DuckDB's number syntax: digits with single underscores between them, a fraction, an exponent
    "CREATE OR REPLACE FUNCTION {s}.dpgate_parse_double(t text) RETURNS float8 LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    "DECLARE mant text; e numeric; ip text; e10 numeric; r float8;\nBEGIN\n"
    "  IF t ~* '^[+-]?(inf|infinity)$' THEN RETURN CASE WHEN t LIKE '-%' THEN float8 '-Infinity' ELSE float8 'Infinity' END; END IF;\n"
    "  IF t ~* '^[+-]?nan$' THEN RETURN 'NaN'; END IF;\n"
    f"  IF t !~ {_NUM_RE} THEN RETURN NULL; END IF;\n"
    "  t := replace(t, '_', '');\n"
    "  IF length(t) <= 300 AND t !~* 'e' THEN RETURN t::float8; END IF;\n"  # within 1e-300..1e300: in range
    "  mant := regexp_replace(ltrim(t, '+-'), '[eE].*$', '');\n"
    "  IF mant ~ '[1-9]' THEN\n"
    "    e := coalesce(substring(t FROM '[eE]([+-]?[0-9]+)$')::numeric, 0);\n"
    "    ip := ltrim(split_part(mant, '.', 1), '0');\n"  # the decimal exponent of the leading digit:
    "    e10 := e + CASE WHEN ip <> '' THEN length(ip) - 1 ELSE -length(substring(split_part(mant, '.', 2) FROM '^0*')) - 1 END;\n"
    "    IF e10 > 400 THEN r := 'Infinity';\n"
    "    ELSIF e10 < -400 THEN r := 0;\n"
    "    ELSIF abs(e) > 1000 OR length(t) > 16000 THEN RETURN NULL;\n"  # beyond what numeric reads
    "    ELSE r := {s}.dpgate_numeric_double(abs(t::numeric)); END IF;\n"
    "  ELSE r := 0; END IF;\n"
    "  IF t LIKE '-%' THEN RETURN -r; END IF;\n  RETURN r;\nEND $$",
    # DuckDB's integer syntax: its number syntax rounded half away from zero, or 0x / 0b digits
    "CREATE OR REPLACE FUNCTION {s}.dpgate_parse_bigint(v text) RETURNS bigint LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    f"DECLARE t text := btrim(v, {_WS}); n numeric; d text;\nBEGIN\n"
    "  IF v ~ '^0[xX][0-9a-fA-F]+(_[0-9a-fA-F]+)*$' OR v ~ '^0[bB][01]+(_[01]+)*$' THEN\n"
    "    d := ltrim(replace(substr(v, 3), '_', ''), '0');\n"
    "    IF lower(substr(v, 2, 1)) = 'x' THEN\n"
    "      IF length(d) > 16 OR (length(d) = 16 AND d !~ '^[0-7]') THEN RETURN NULL; END IF;\n"
    "      RETURN ('x' || lpad(d, 16, '0'))::bit(64)::bigint;\n"
    "    END IF;\n"
    "    IF length(d) > 63 THEN RETURN NULL; END IF;\n"
    "    RETURN lpad(d, 64, '0')::bit(64)::bigint;\n"
    "  END IF;\n"
    f"  IF t !~ {_NUM_RE} THEN RETURN NULL; END IF;\n"
    "  t := replace(t, '_', '');\n"
    "  IF length(t) > 1000 OR abs(coalesce(substring(t FROM '[eE]([+-]?[0-9]+)$')::numeric, 0)) > 1000 THEN RETURN NULL; END IF;\n"
    "  n := round(t::numeric);\n"
    "  IF n < -9223372036854775808 OR n > 9223372036854775807 THEN RETURN NULL; END IF;\n"
    "  RETURN n::bigint;\nEND $$",
    "CREATE OR REPLACE FUNCTION {s}.dpgate_in_range(v bigint, lo bigint, hi bigint) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE "
    "RETURN CASE WHEN v BETWEEN lo AND hi THEN v END",
    # DuckDB's timestamp syntax: y-m-d (or y/m/d), a time after T or spaces, an offset or zone (ignored);
    # the parts {year (PostgreSQL's: 1 BC is -1), month, day, hour, minute, second, microsecond}, valid
    "CREATE OR REPLACE FUNCTION {s}.dpgate_datetime_parts(v text) RETURNS int[] LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    "DECLARE m text[]; y int; mo int; d int; h int := 0; mi int := 0; sec int := 0; us int := 0;\nBEGIN\n"
    "  m := regexp_match(v, '^(-?[0-9]{1,9})([-/])([0-9]{1,2})\\2([0-9]{1,2})(?:(?:T| +)([0-9]{1,9}):([0-9]{1,2})(?::([0-9]{1,2})(?:[.]([0-9]*))?)?"
    "(?: *(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?|[A-Za-z][A-Za-z0-9_/+-]*))?)?$');\n"
    "  IF m IS NULL THEN RETURN NULL; END IF;\n"
    "  y := m[1]::int; mo := m[3]::int; d := m[4]::int;\n"
    "  IF y <= 0 THEN y := y - 1; END IF;\n"  # DuckDB's year 0 is 1 BC
    "  IF m[5] IS NOT NULL THEN h := m[5]::int; mi := m[6]::int; sec := coalesce(m[7]::int, 0);\n"
    "    us := coalesce(rpad(left(nullif(m[8], ''), 6), 6, '0')::int, 0); END IF;\n"
    "  IF y < -4713 OR y > 5874897 OR mo NOT BETWEEN 1 AND 12 OR mi > 59 OR sec > 59 OR h > 24\n"
    "     OR (h = 24 AND (mi > 0 OR sec > 0 OR us > 0)) THEN RETURN NULL; END IF;\n"
    "  IF d < 1 OR d > extract(day FROM make_date(y, mo, 1) + interval '1 month - 1 day') THEN RETURN NULL; END IF;\n"
    "  IF y = -4713 AND (mo < 11 OR (mo = 11 AND d < 24)) THEN RETURN NULL; END IF;\n"  # before PostgreSQL's first day
    "  RETURN ARRAY[y, mo, d, h, mi, sec, us];\nEND $$",
    "CREATE OR REPLACE FUNCTION {s}.dpgate_parse_timestamp(v text) RETURNS timestamp LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    "DECLARE p int[];\nBEGIN\n"
    "  IF v ~* '^(infinity|inf)$' THEN RETURN 'infinity'; END IF;\n"
    "  IF v ~* '^-(infinity|inf)$' THEN RETURN '-infinity'; END IF;\n"
    "  IF v ~* '^epoch$' THEN RETURN '1970-01-01'; END IF;\n"
    "  p := {s}.dpgate_datetime_parts(v);\n"
    "  IF p IS NULL OR p[1] > 294247 THEN RETURN NULL; END IF;\n"  # DuckDB's last timestamp year
    "  RETURN make_timestamp(p[1], p[2], p[3], 0, 0, 0) + make_interval(hours => p[4], mins => p[5], secs => p[6] + p[7] / 1000000.0);\n"
    "END $$",
    # a date: DuckDB trims white space around it and ignores its (valid) time
    "CREATE OR REPLACE FUNCTION {s}.dpgate_parse_date(v text) RETURNS date LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    f"DECLARE t text := btrim(v, {_WS}); p int[];\nBEGIN\n"
    "  IF t ~* '^(infinity|inf)$' THEN RETURN 'infinity'; END IF;\n"
    "  IF t ~* '^-(infinity|inf)$' THEN RETURN '-infinity'; END IF;\n"
    "  IF t ~* '^epoch$' THEN RETURN '1970-01-01'; END IF;\n"
    "  p := {s}.dpgate_datetime_parts(t);\n"
    "  IF p IS NULL THEN RETURN NULL; END IF;\n"
    "  RETURN make_date(p[1], p[2], p[3]);\nEND $$",
    # a REAL from text, rounded once (through a double it could round twice): ±inf beyond the largest
    "CREATE OR REPLACE FUNCTION {s}.dpgate_parse_real(v text) RETURNS real LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    f"DECLARE t text := btrim(v, {_WS}); n numeric; d float8;\nBEGIN\n"
    "  d := {s}.dpgate_parse_double(t);\n"
    "  IF d IS NULL OR abs(d) >= 'Infinity' OR t ~* 'nan|inf' THEN RETURN d::real; END IF;\n"  # specials, and ±inf from beyond any real
    "  t := replace(t, '_', '');\n"
    "  IF length(t) <= 30 AND t !~* 'e' THEN RETURN t::real; END IF;\n"  # within 1e-29..1e30: in range
    "  IF d = 0 THEN RETURN d::real; END IF;\n"
    "  n := abs(t::numeric);\n"
    f"  IF n >= {2**128 - 2**103} THEN RETURN sign(d)::real * real 'Infinity'; END IF;\n"
    f"  IF n * {2**150} <= 1 THEN RETURN (d * 0)::real; END IF;\n"
    "  RETURN (sign(d)::numeric * n)::real;\nEND $$",
    # a float as DuckDB writes it: fixed notation for exponents -4..15 with at least one decimal (PostgreSQL
    # writes the same shortest digits, in exponent notation from 1e15 for a double and 1e6 for a real)
    "CREATE OR REPLACE FUNCTION {s}.dpgate_float_text(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    "DECLARE m text[]; digits text; e int;\nBEGIN\n"
    "  IF t = 'NaN' THEN RETURN 'nan'; END IF;\n"
    "  IF t = 'Infinity' THEN RETURN 'inf'; END IF;\n"
    "  IF t = '-Infinity' THEN RETURN '-inf'; END IF;\n"
    "  m := regexp_match(t, '^(-?)([0-9])(?:[.]([0-9]+))?e[+]([0-9]+)$');\n"
    "  IF m IS NOT NULL AND m[4]::int <= 15 THEN\n"
    "    e := m[4]::int;\n    digits := rpad(m[2] || coalesce(m[3], ''), e + 1, '0');\n"
    "    RETURN m[1] || left(digits, e + 1) || '.' || coalesce(nullif(substr(digits, e + 2), ''), '0');\n"
    "  END IF;\n"
    "  IF t ~ '^-?[0-9]+$' THEN RETURN t || '.0'; END IF;\n"
    "  RETURN t;\nEND $$",
    "CREATE OR REPLACE FUNCTION {s}.dpgate_extract(part text, ts timestamp) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE "
    "RETURN CASE WHEN isfinite(ts) THEN (CASE WHEN part = 'year' AND date_part('year', ts) < 0 "  # no year 0 here: 1 BC is DuckDB's 0
    "THEN date_part('year', ts) + 1 ELSE date_part(part, ts) END)::bigint END",
    "CREATE OR REPLACE FUNCTION {s}.dpgate_extract(part text, d date) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE "
    "RETURN {s}.dpgate_extract(part, d::timestamp)",
    *_overloads("dpgate_real", "real", {
        "float8": f"CASE WHEN abs(v) >= {_f(2.0**128 - 2.0**103)} AND abs(v) < 'Infinity' THEN NULL "
                  f"WHEN abs(v) <= {_f(2.0**-150)} THEN (v * 0)::real ELSE v::real END",
    }),
    *_overloads("dpgate_try_double", "float8", {
        "float8": "v", "bigint": "v::float8", "numeric": "{s}.dpgate_numeric_double(v)", "boolean": "v::int::float8",
        "text": f"CASE WHEN v ~ {_PLAIN} THEN v::float8 WHEN v ~ {_NUMBERISH} THEN {{s}}.dpgate_parse_double(btrim(v, {_WS})) END",
        **{t: "NULL::float8" for t in _TS},
        "anyelement": "{s}.dpgate_try_double(v::text)",
    }),
    *_overloads("dpgate_try_real", "real", {
        "float8": "{s}.dpgate_real(v)", "bigint": "v::real", "numeric": "{s}.dpgate_real({s}.dpgate_numeric_double(v))",
        "boolean": "v::int::real",
        "text": "{s}.dpgate_parse_real(v)",
        **{t: "NULL::real" for t in _TS}, "anyelement": "{s}.dpgate_try_real(v::text)",
    }),
    *_overloads("dpgate_try_bigint", "bigint", {
        # DuckDB rounds a double half to even, as PostgreSQL's cast does; beyond int64 it is NULL
        "float8": f"CASE WHEN v >= {_f(-(2.0**63))} AND v < {_f(2.0**63)} THEN v::bigint END", "bigint": "v",
        "numeric": "CASE WHEN round(v) BETWEEN -9223372036854775808 AND 9223372036854775807 THEN round(v)::bigint END",
        "boolean": "v::int::bigint", "text": "{s}.dpgate_parse_bigint(v)", **{t: "NULL::bigint" for t in _TS},
        "anyelement": "{s}.dpgate_try_bigint(v::text)",
    }),
    "CREATE OR REPLACE FUNCTION {s}.dpgate_decimal(n numeric, p int, s int) RETURNS numeric LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE "
    "RETURN CASE WHEN abs(round(n, s)) < 10::numeric ^ (p - s) THEN round(n, s) END",
    "CREATE OR REPLACE FUNCTION {s}.dpgate_parse_decimal(t text, p int, s int) RETURNS numeric LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$\n"
    f"BEGIN\n  IF t !~ {_NUM_RE} THEN RETURN NULL; END IF;\n  t := replace(t, '_', '');\n"
    "  IF length(t) > 1000 OR abs(coalesce(substring(t FROM '[eE]([+-]?[0-9]+)$')::numeric, 0)) > 1000 THEN RETURN NULL; END IF;\n"
    "  RETURN {s}.dpgate_decimal(t::numeric, p, s);\nEND $$",
    *[
        f"CREATE OR REPLACE FUNCTION {{s}}.dpgate_try_decimal(v {arg}, p int, s int) RETURNS numeric LANGUAGE sql "
        f"{'STABLE' if arg in ('anyelement', *_TS) else 'IMMUTABLE'} PARALLEL SAFE "
        + (f"AS $$ SELECT {body} $$" if arg == "anyelement" else f"RETURN {body}")
        for arg, body in {
            # DuckDB rounds a double's shortest decimal text, which is what PostgreSQL prints
            "float8": "CASE WHEN abs(v) < 'Infinity' THEN {s}.dpgate_decimal(v::text::numeric, p, s) END",
            "bigint": "{s}.dpgate_decimal(v::numeric, p, s)",
            "numeric": "CASE WHEN abs(v) < 'Infinity' THEN {s}.dpgate_decimal(v, p, s) END",
            "boolean": "{s}.dpgate_decimal(v::int::numeric, p, s)",
            "text": f"{{s}}.dpgate_parse_decimal(btrim(v, {_WS}), p, s)",
            **{t: "NULL::numeric" for t in _TS},
            "anyelement": "{s}.dpgate_try_decimal(v::text, p, s)",
        }.items()
    ],
    *_overloads("dpgate_try_timestamp", "timestamp", {
        "text": "{s}.dpgate_parse_timestamp(v)", "timestamp": "v", "date": "v::timestamp",
        **{t: "NULL::timestamp" for t in ("float8", "bigint", "numeric", "boolean")},  # a number is never a timestamp in DuckDB
        "anyelement": "{s}.dpgate_parse_timestamp(v::text)",
    }),
    *_overloads("dpgate_try_date", "date", {
        "text": "{s}.dpgate_parse_date(v)", "timestamp": "v::date", "date": "v",
        **{t: "NULL::date" for t in ("float8", "bigint", "numeric", "boolean")},  # a number is never a date in DuckDB
        "anyelement": "{s}.dpgate_parse_date(v::text)",
    }),
    *_overloads("dpgate_try_boolean", "boolean", {
        "boolean": "v", "float8": "v <> 0", "bigint": "v <> 0", "numeric": "v <> 0",
        "text": "CASE WHEN lower(v COLLATE \"C\") IN ('true', 't', 'yes', 'y', '1') THEN true "
                "WHEN lower(v COLLATE \"C\") IN ('false', 'f', 'no', 'n', '0') THEN false END",
        **{t: "NULL::boolean" for t in _TS}, "anyelement": "{s}.dpgate_try_boolean(v::text)",
    }),
    # CAST (not TRY_CAST): a source column read with its declared type; the query path casts only
    # numbers and booleans to DOUBLE and typed values to text, which never fail
    *_overloads("dpgate_double", "float8", {
        "float8": "v", "bigint": "v::float8", "numeric": "v::float8", "boolean": "v::int::float8", "text": "v::float8",
    }),
    *_overloads("dpgate_bigint", "bigint", {
        "float8": "v::bigint", "bigint": "v", "numeric": "v::bigint", "boolean": "v::int::bigint", "text": "v::bigint",
    }),
    *_overloads("dpgate_boolean", "boolean", {
        "boolean": "v", "float8": "v <> 0", "bigint": "v <> 0", "numeric": "v <> 0", "text": "v::boolean",
    }),
    *_overloads("dpgate_text", "text", {
        # every number type named: PostgreSQL would read an integer as the float8 one otherwise
        "text": "v", "float8": "{s}.dpgate_float_text(v::text)", "real": "{s}.dpgate_float_text(v::text)",
        **{t: "v::text" for t in ("bigint", "integer", "smallint", "numeric", "boolean")},
        "timestamp": "CASE WHEN v < '0001-01-01' AND isfinite(v) THEN regexp_replace(v::text, '^(\\S+) (\\S+) BC$', '\\1 (BC) \\2') ELSE v::text END",
        "date": "CASE WHEN v < '0001-01-01' AND isfinite(v) THEN regexp_replace(v::text, ' BC$', ' (BC)') ELSE v::text END",
        "anyelement": "v::text",
    }),
]


# -- the engine -------------------------------------------------------------------------------------

#: PostgreSQL type -> the pandas dtype of a column read for training (without NULLs, with NULLs)
_FRAME_TYPES = {
    "int2": ("int64", "Int64"), "int4": ("int64", "Int64"), "int8": ("int64", "Int64"),
    "float4": ("float64", "float64"), "float8": ("float64", "float64"), "bool": ("bool", "boolean"),
}  # fmt: skip


#: a source value that does not convert to its declared type, or a source type without a conversion
_UNREADABLE = (psycopg.DataError, psycopg.errors.CannotCoerce, psycopg.errors.UndefinedFunction, psycopg.errors.DatatypeMismatch)


def _q(name: str) -> pgsql.Identifier:
    return pgsql.Identifier(name)


class _Timestamp(psycopg.types.datetime.TimestampLoader):
    """A timestamp Python cannot hold reads as DuckDB's client gives it: ±infinity as the largest and
    least datetime, any other (beyond year 9999, before year 1) as DuckDB's text of it. Reading a row
    never fails because of its value."""

    def load(self, data: Any) -> Any:
        text = bytes(data).decode()
        if text in ("infinity", "-infinity"):
            return dt.datetime.max if text == "infinity" else dt.datetime.min
        try:
            return super().load(data)
        except psycopg.DataError:
            day, _, time = text.removesuffix(" BC").partition(" ")
            return f"{day} (BC) {time}" if text.endswith(" BC") else text


class _Date(psycopg.types.datetime.DateLoader):
    def load(self, data: Any) -> Any:
        text = bytes(data).decode()
        if text in ("infinity", "-infinity"):
            return dt.date.max if text == "infinity" else dt.date.min
        try:
            return super().load(data)
        except psycopg.DataError:
            return f"{text.removesuffix(' BC')} (BC)" if text.endswith(" BC") else text


class _Pool:
    """At most `size` connections, each used by one thread at a time; a broken one is dropped."""

    def __init__(self, connect: Callable[[], psycopg.Connection], size: int) -> None:
        self._connect = connect
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self._slots:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self._connect()
            try:
                yield conn
            finally:
                if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.close()
                else:
                    with self._lock:
                        self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PostgresEngine:
    """Datasets that live in a PostgreSQL server, bounded and queried inside it (see the module's
    docstring). Thread-safe: each call takes a connection of a small pool."""

    name = "postgres"
    dialect = POSTGRES

    def __init__(self, settings: PostgresSettings, *, seed: str) -> None:
        self.settings = settings
        self.schema = settings.schema_
        self.reader = settings.reader_role
        self.query_timeout_s: float | None = None  # set from the settings by the app
        self._seed = seed
        self._pool = _Pool(self._connect, settings.pool_size)
        with self._session() as conn:
            self._install(conn)

    def close(self) -> None:
        self._pool.close()

    def drop_schema(self) -> None:
        """Remove the gateway's schema and everything in it (tests; an administrator's clean-up)."""
        with self._session() as conn, conn.transaction():
            conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(_q(self.schema)))

    # connections
    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.settings.url, autocommit=True, connect_timeout=max(1, math.ceil(self.settings.connect_timeout_s)))
        except psycopg.Error:
            raise EngineUnavailable("the PostgreSQL engine cannot be reached") from None
        # the text forms the dialect relies on: ISO dates in UTC, shortest exact floats, literal backslashes
        conn.execute(
            pgsql.SQL(
                "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; "
                "SET standard_conforming_strings = on; SET search_path = pg_catalog, {}"
            ).format(_q(self.schema))
        )
        conn.adapters.register_loader("timestamp", _Timestamp)
        conn.adapters.register_loader("date", _Date)
        return conn

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; a lost connection is EngineUnavailable, any other engine failure an
        EngineError naming the error's type only (a message may quote a value)."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.errors.QueryCanceled:
            raise QueryTimeout(f"the query ran longer than {self.query_timeout_s or 0:g} s and was stopped") from None
        except psycopg.OperationalError:
            raise EngineUnavailable("the PostgreSQL engine cannot be reached") from None
        except psycopg.Error as e:
            raise EngineError(type(e).__name__) from None

    def _install(self, conn: psycopg.Connection) -> None:
        """The gateway's schema, its version table, the dialect's functions and the reader role, created
        or brought up to date (under a lock: several gateway processes may start at once)."""
        s = pgsql.Identifier(self.schema)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"dpgate:{self.schema}"])
            conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
            conn.execute(pgsql.SQL("CREATE TABLE IF NOT EXISTS {}._dpgate_tables (name text PRIMARY KEY, version text NOT NULL, bounded boolean NOT NULL)").format(s))
            self._install_collation(conn)
            quoted = s.as_string(conn)
            for statement in _LIBRARY:
                conn.execute(statement.replace("{s}", quoted).encode())
            self._install_reader(conn)

    def _install_collation(self, conn: psycopg.Connection) -> None:
        """`dpgate_unicode`: Unicode case mapping for LOWER, UPPER and ILIKE (the C collation, which
        orders text by code point as DuckDB does, maps ASCII letters only)."""
        name = pgsql.SQL("{}.dpgate_unicode").format(_q(self.schema))
        for spec in ("(provider = libc, locale = 'C.UTF-8')", "(provider = icu, locale = 'und')", "FROM \"default\""):
            try:
                with conn.transaction():
                    conn.execute(pgsql.SQL("CREATE COLLATION IF NOT EXISTS {} ").format(name) + pgsql.SQL(spec))
                return
            except psycopg.Error:  # no such locale on this server: the next choice
                continue

    def _install_reader(self, conn: psycopg.Connection) -> None:
        """The role queries run as: no login, USAGE on the gateway's schema and SELECT on its loaded and
        bounded relations only (granted at registration); READ ONLY transactions besides."""
        role = _q(self.reader)
        try:
            with conn.transaction():
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [self.reader]).fetchone() is None:
                    conn.execute(pgsql.SQL("CREATE ROLE {} NOLOGIN").format(role))
        except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):  # created meanwhile elsewhere
            pass
        conn.execute(pgsql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(_q(self.schema), role))
        if not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
            conn.execute(pgsql.SQL("GRANT {} TO current_user").format(role))  # to SET ROLE to it

    # names
    @staticmethod
    def relation_name(dataset: str, table: str, *, bounded: bool) -> str:
        return f"{'bnd' if bounded else 'src'}__{dataset.lower()}__{table.lower()}"

    def relation(self, dataset: str, table: str, *, bounded: bool) -> exp.Table:
        return exp.Table(this=bounding.q(self.relation_name(dataset, table, bounded=bounded)), db=bounding.q(self.schema))

    def _table(self, name: str) -> pgsql.Composed:
        return pgsql.SQL("{}.{}").format(_q(self.schema), _q(name))

    # registration
    def register(self, ds: DatasetMeta, tables: list[str]) -> str:
        """Load and bound the named tables of `ds` inside the server; their content version."""
        versions = [self._register_table(ds, name, ds.tables[name]) for name in tables]
        self._check_unit_types(ds, tables)
        return hashlib.sha256(json.dumps([ds.fingerprint(), *versions]).encode()).hexdigest()[:16]

    def _register_table(self, ds: DatasetMeta, name: str, table: TableMeta) -> str:
        src_rel = self.relation_name(ds.name, name, bounded=False)
        bnd_rel = self.relation_name(ds.name, name, bounded=True)
        with self._session() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"dpgate:{self.schema}.{src_rel}"])
            reader, columns = self._source(conn, name, table)
            try:
                with conn.transaction():
                    version = self._source_version(conn, ds, table, reader, columns)
            except psycopg.errors.InsufficientPrivilege:
                raise InvalidMetadata(f"table {name}: the gateway's PostgreSQL user may not read the source {table.source!r}") from None
            row = conn.execute(pgsql.SQL("SELECT version FROM {} WHERE name = %s").format(self._table("_dpgate_tables")), [src_rel]).fetchone()
            if row is not None and row[0] == version and self._kind(conn, bnd_rel) is not None:
                return version
            present = {c.lower(): c for c, _ in columns}
            for col in table.columns:
                if col.lower() not in present:
                    raise InvalidMetadata(f"table {name}: column {col} is declared but not in the source")
            self._drop(conn, bnd_rel)
            self._drop(conn, src_rel)
            load = bounding.load_select(ds, table, reader, present, self._seed)
            try:
                with conn.transaction():
                    conn.execute(pgsql.SQL("CREATE TABLE {} AS ").format(self._table(src_rel)) + pgsql.SQL(self.dialect.render(load)))
            except _UNREADABLE:
                # which column failed is found without quoting any value: the admin sees the column, not the row
                bad = self._failing_column(conn, table, reader, present)
                raise InvalidMetadata(
                    f"table {name}: the source cannot be read with the declared types"
                    + (f" (column {bad} is not {table.columns[bad].type.value})" if bad else "")
                ) from None
            self._check_not_null(conn, ds, name, table, src_rel)
            self._bound(conn, ds, table, src_rel, bnd_rel)
            for rel in (src_rel, bnd_rel):
                conn.execute(pgsql.SQL("GRANT SELECT ON {} TO {}").format(self._table(rel), _q(self.reader)))
            conn.execute(
                pgsql.SQL("INSERT INTO {} VALUES (%s, %s, true) ON CONFLICT (name) DO UPDATE SET version = excluded.version").format(
                    self._table("_dpgate_tables")
                ),
                [src_rel, version],
            )
        return version

    def _source(self, conn: psycopg.Connection, name: str, table: TableMeta) -> tuple[exp.Table, list[tuple[str, str]]]:
        """The source relation (PostgreSQL's rules for names: `schema.table`, unquoted parts folded)
        and its columns with their types."""
        try:
            with conn.transaction():
                row = conn.execute(
                    "SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'v', 'm', 'f', 'p')",
                    [table.source],
                ).fetchone()
        except psycopg.Error:  # not a name at all
            row = None
        if row is None:
            raise InvalidMetadata(f"table {name}: the source {table.source!r} is not a table or view of the PostgreSQL server")
        columns = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [row[2]],
        ).fetchall()
        return exp.Table(this=bounding.q(row[1]), db=bounding.q(row[0])), columns

    def _source_version(self, conn: psycopg.Connection, ds: DatasetMeta, table: TableMeta, reader: exp.Table, columns: list[tuple[str, str]]) -> str:
        """The metadata, the source's columns and content (its row count and two hashes of its rows'
        text, computed in the server), the layout and the bounding key's digest."""
        source = pgsql.SQL(reader.sql(dialect="postgres"))
        n, total, mixed = conn.execute(
            pgsql.SQL("SELECT count(*), coalesce(sum(h), 0)::text, coalesce(bit_xor(h), 0) FROM (SELECT hashtextextended(t::text, 0) AS h FROM {} AS t) AS s").format(source)
        ).fetchone()
        parts = [LAYOUT, ds.fingerprint(), table.source, columns, n, total, mixed, hashlib.sha256(self._seed.encode()).hexdigest()[:8]]
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]

    def _failing_column(self, conn: psycopg.Connection, table: TableMeta, reader: exp.Table, present: dict[str, str]) -> str | None:
        for col, meta in table.columns.items():
            if meta.type == ColumnType.ID:
                continue
            probe = exp.select(exp.Count(this=bounding.typed_column(present[col.lower()], meta.type))).from_(reader.copy())
            try:
                with conn.transaction():
                    conn.execute(self.dialect.render(probe))
            except _UNREADABLE:
                return col
        return None

    def _check_not_null(self, conn: psycopg.Connection, ds: DatasetMeta, name: str, table: TableMeta, src_rel: str) -> None:
        if bounding.needs_cut(ds, table):
            unit = table.column_name(ds.privacy_unit) or ds.privacy_unit  # type: ignore[arg-type]
            found = conn.execute(pgsql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {} IS NULL)").format(self._table(src_rel), _q(unit))).fetchone()
            if found[0]:
                raise InvalidMetadata(f"table {name}: the privacy-unit column {ds.privacy_unit} has NULLs")

    def _bound(self, conn: psycopg.Connection, ds: DatasetMeta, table: TableMeta, src_rel: str, bnd_rel: str) -> None:
        """The bounded form: a view of the loaded rows where no unit has more than k, else the first k
        rows of each unit by row identity, as a table."""
        loaded = exp.Table(this=bounding.q(src_rel), db=bounding.q(self.schema))
        cut = bounding.needs_cut(ds, table)
        if cut:
            most = conn.execute(self.dialect.render(bounding.most_rows_select(ds, table, loaded))).fetchone()[0]
            cut = most > table.max_rows_per_unit
        select = pgsql.SQL(self.dialect.render(bounding.bound_select(ds, table, loaded, cut=cut)))
        kind = "TABLE" if cut else "VIEW"
        conn.execute(pgsql.SQL(f"CREATE {kind} {{}} AS ").format(self._table(bnd_rel)) + select)
        conn.execute(pgsql.SQL("ANALYZE {}").format(self._table(bnd_rel if cut else src_rel)))

    def _check_unit_types(self, ds: DatasetMeta, tables: list[str]) -> None:
        with self._session() as conn:
            def type_of(name: str, col: str) -> str | None:
                row = conn.execute(
                    "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attname = %s",
                    [self._table(self.relation_name(ds.name, name, bounded=False)).as_string(conn), col],
                ).fetchone()
                return row[0] if row else None

            bounding.check_unit_types(ds, tables, type_of)

    def _kind(self, conn: psycopg.Connection, rel: str) -> str | None:
        row = conn.execute(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            [self.schema, rel],
        ).fetchone()
        return row[0] if row else None

    def _drop(self, conn: psycopg.Connection, rel: str) -> None:
        kind = self._kind(conn, rel)
        if kind is not None:
            conn.execute(pgsql.SQL(f"DROP {'VIEW' if kind == 'v' else 'TABLE'} {{}} CASCADE").format(self._table(rel)))

    # queries
    def execute(self, select: exp.Select) -> list[tuple]:
        """Run a SELECT the planner generated, lowered to PostgreSQL, as the reader role in a READ ONLY
        transaction under the timeout (the server's statement_timeout; a client-side cancel behind it)."""
        check_read_only(select)
        text = self.dialect.render(select)
        return self._read(lambda cur: cur.execute(text).fetchall())

    def read_bounded(self, dataset: str, table: str, columns: list[str]) -> pd.DataFrame:
        """The bounded rows of a table ordered by row identity, for training inside the gateway."""
        import pandas as pd

        query = pgsql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            pgsql.SQL(", ").join(_q(c) for c in columns), self._table(self.relation_name(dataset, table, bounded=True)), _q(ROW_ID)
        )

        def frame(cur: psycopg.Cursor) -> pd.DataFrame:
            rows = cur.execute(query).fetchall()
            out = pd.DataFrame.from_records(rows, columns=columns, coerce_float=True)
            for col, d in zip(columns, cur.description or []):
                info = cur.adapters.types.get(d.type_code)
                dtypes = _FRAME_TYPES.get(info.name if info else "")
                if dtypes is not None:
                    out[col] = out[col].astype(dtypes[bool(out[col].isna().any())])
            return out

        return self._read(frame)

    def _read(self, run: Callable[[psycopg.Cursor], Any]) -> Any:
        timeout = self.query_timeout_s
        with self._session() as conn:
            timer = None
            if timeout is not None:
                # the server stops the statement at the timeout; the cancel catches a server that does not
                timer = threading.Timer(timeout + 1.0, conn.cancel_safe)
                timer.daemon = True
                timer.start()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute("SET TRANSACTION READ ONLY")
                    cur.execute(pgsql.SQL("SET LOCAL ROLE {}").format(_q(self.reader)))
                    if timeout is not None:
                        cur.execute(pgsql.SQL("SET LOCAL statement_timeout = {}").format(pgsql.Literal(max(1, int(timeout * 1000)))))
                    return run(cur)
            finally:
                if timer is not None:
                    timer.cancel()

    # loading
    def load_frame(self, name: str, frame: pd.DataFrame) -> str:
        """Write a DataFrame as a table of the gateway's schema (tests and demo loaders), through Arrow's
        CSV writer and COPY; returns its `source`. NaN in a float column is NULL, as DuckDB reads a
        DataFrame; a timestamp with a time zone is stored as its UTC wall-clock time."""
        import pyarrow.csv

        table = _arrow(frame)
        target = self._table(name)
        columns = [pgsql.SQL("{} {}").format(_q(f.name), pgsql.SQL(_column_type(f.type))) for f in table.schema]
        with self._session() as conn, conn.transaction():
            conn.execute(pgsql.SQL("DROP TABLE IF EXISTS {}").format(target))
            conn.execute(pgsql.SQL("CREATE TABLE {} ({})").format(target, pgsql.SQL(", ").join(columns)))
            # Arrow writes NULL as an empty field and quotes every text, the empty one included
            with conn.cursor() as cur, cur.copy(pgsql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(target)) as out:
                for batch in table.to_batches(max_chunksize=200_000):
                    buf = io.BytesIO()
                    pyarrow.csv.write_csv(batch, buf, pyarrow.csv.WriteOptions(include_header=False))
                    out.write(buf.getvalue())
            conn.execute(pgsql.SQL("ANALYZE {}").format(target))
        return f"{self.schema}.{name}"


def _arrow(frame: pd.DataFrame) -> Any:
    """The frame as an Arrow table; a column Arrow cannot type (mixed objects) as text."""
    import pandas as pd
    import pyarrow as pa

    arrays = []
    for c in frame.columns:
        column = frame[c]
        if isinstance(column.dtype, pd.DatetimeTZDtype):  # the column is TIMESTAMP: UTC wall-clock time
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        try:
            arrays.append(pa.array(column, from_pandas=True))
            if pa.types.is_dictionary(arrays[-1].type):  # a pandas Categorical: its values
                arrays[-1] = arrays[-1].cast(arrays[-1].type.value_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(pa.array([None if pd.isna(v) else str(v) for v in column], type=pa.string()))
    return pa.table(arrays, names=[str(c) for c in frame.columns])


def _column_type(t: Any) -> str:
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE PRECISION"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_decimal(t):
        return "NUMERIC"
    return "TEXT"


@register_engine("postgres")
def _factory(settings: Settings) -> PostgresEngine:
    return PostgresEngine(settings.engines.postgres, seed=settings.secret_seed())
