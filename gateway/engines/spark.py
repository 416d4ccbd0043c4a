"""The scale-out engine: Spark (PySpark), with the bounded forms materialised as Parquet.

Registration reads a table's source (a Parquet file or directory, or a catalog table) with its declared
types, and writes the portable loaded and bounded forms of `gateway.engines.bounding` once, as Parquet
under the warehouse (`<warehouse>/<dataset>/<table>/<version>/`); queries read temp views over those
files. A version directory is named by everything its content depends on (the table's metadata, the
source's file listing or content digest, the layout, the bounding key's digest) and is written to a
temporary directory renamed into place when complete, so a crash never leaves a half-written version
that looks complete, and a restarted process (or a second engine over the same warehouse) reuses it.

The dialect (`SPARK`) makes every node of the portable tree (`gateway.sql.semantics.PORTABLE`) mean on
Spark what it means on DuckDB. Spark's own functions differ in many small ways (DAYOFWEEK counts from
1, FLOOR returns BIGINT and saturates, SIGN(NaN) is NaN, ROUND rounds the shortest decimal rather than
the binary value, TRY_CAST truncates doubles and parses text by Java's rules, LIKE escapes with a
backslash, LOWER maps 'ß' to 'SS', doubles print as Java does); where no Spark function matches, the
lowering calls a SQL function (`functions()`, installed in each session by the engine) whose body
computes DuckDB's value. The lowering dispatches on the operand's type: casts, arithmetic and literals carry it;
a column gets it from the engine, which annotates every tree with the schemas of its views before
rendering. The session runs with ANSI mode off and the UTC time zone, and the lowering is total
regardless: no value in the data makes a query fail.

What still differs from DuckDB (values only; bounds and NULL rules hold): the sign of a zero
(-0.0 may come back as 0.0); DuckDB's infinite timestamps, read from 'infinity' or 'inf', are NULL
here, and so are ISO years outside 0001..9999; the text of a double that needs 16 or 17 digits may
differ in its last digit (about 4 in 10,000 such doubles: Java 17's digits are not always the
closest), and the text of a FLOAT in about 1 in 100 (DuckDB's is not always the shortest).
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from py4j.protocol import Py4JNetworkError
from pyspark.logger import PySparkLogger
from pyspark.sql import SparkSession
from sqlglot import exp, transforms
from sqlglot.dialects.spark import Spark
from sqlglot.optimizer.scope import Scope, traverse_scope

from gateway.catalog import IDENTIFIER, ColumnType, DatasetMeta, TableMeta
from gateway.engines import bounding
from gateway.engines.base import EngineError, EngineUnavailable, QueryTimeout, check_read_only, register_engine
from gateway.errors import InvalidMetadata
from gateway.settings import SparkSettings
from gateway.sql import semantics
from gateway.sql.semantics import DUCKDB

LAYOUT = 1  # the shape of the stored forms; a new layout (or lowering) rewrites every version
_T = exp.DataType.Type


class DpgateSpark(Spark):
    """Spark SQL as sqlglot writes it, keeping QUALIFY: Spark 4 evaluates it natively, and sqlglot's
    rewrite into a subquery would add its `_w` column to a `SELECT alias.*`."""

    class Generator(Spark.Generator):
        TRANSFORMS = {
            **Spark.Generator.TRANSFORMS,
            exp.Select: transforms.preprocess(
                [transforms.eliminate_distinct_on, transforms.unnest_to_explode, transforms.any_to_exists]
            ),
        }


# the dialect: operand types -------------------------------------------------------------------------

_KINDS = {
    **dict.fromkeys((_T.TINYINT, _T.SMALLINT, _T.INT, _T.BIGINT, _T.INT128, _T.UTINYINT, _T.USMALLINT, _T.UINT, _T.UBIGINT), "int"),
    _T.DOUBLE: "double", _T.FLOAT: "float", _T.DECIMAL: "decimal", _T.BOOLEAN: "bool", _T.DATE: "date",
    **dict.fromkeys((_T.VARCHAR, _T.TEXT, _T.CHAR, _T.NVARCHAR, _T.NCHAR), "text"),
    **dict.fromkeys((_T.TIMESTAMP, _T.TIMESTAMPNTZ, _T.TIMESTAMPTZ, _T.TIMESTAMPLTZ, _T.DATETIME, _T.TIMESTAMP_S, _T.TIMESTAMP_MS, _T.TIMESTAMP_NS), "timestamp"),
}  # fmt: skip
_NUMBER_FUNCS = {"ABS", "FLOOR", "CEIL", "ROUND"}
_TYPED_FUNCS = {exp.Abs: "ABS", exp.Floor: "FLOOR", exp.Ceil: "CEIL", exp.Sign: "SIGN", exp.Round: "ROUND"}


def _kind(t: exp.DataType | None) -> str | None:
    return None if t is None else _KINDS.get(t.this)


def _build(name: str) -> exp.DataType:
    return exp.DataType.build(name, dialect="duckdb")


def _infer(node: exp.Expression) -> exp.DataType | None:
    """The DuckDB type of a portable node from its shape and its operands' types (None: unknown;
    a column's type is the engine's annotation)."""
    if isinstance(node, exp.DataType):
        return None
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return node.to.copy()
    if isinstance(node, exp.Literal):
        if node.is_string:
            return _build("VARCHAR")
        return _build("BIGINT" if node.this.lstrip("-").isdigit() else "DOUBLE")
    if isinstance(node, (exp.Predicate, exp.Connector, exp.Not, exp.Boolean, exp.Like, exp.ILike)):
        return _build("BOOLEAN")
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)):
        kinds = {_kind(node.this.type), _kind(node.expression.type)}
        return _build("BIGINT") if kinds == {"int"} and not isinstance(node, exp.Div) else _build("DOUBLE")
    if isinstance(node, (exp.Neg, exp.Paren)):
        return node.this.type.copy() if _kind(node.this.type) is not None else None
    name = _TYPED_FUNCS.get(type(node)) or (node.name.upper() if isinstance(node, exp.Anonymous) else None)
    if name in _NUMBER_FUNCS:
        return _build("DOUBLE")
    if name == "SIGN":
        return _build("TINYINT")
    if isinstance(node, exp.Sum):
        return _build("INT128") if _kind(node.this.type) == "int" else (_build("DOUBLE") if _kind(node.this.type) else None)
    if isinstance(node, (exp.Extract, exp.Length, exp.Count, exp.RowNumber)):
        return _build("BIGINT")
    if isinstance(node, (exp.Lower, exp.Upper, exp.DPipe, exp.MD5)):
        return _build("VARCHAR")
    if isinstance(node, (exp.Case, exp.If, exp.Coalesce, exp.Least, exp.Greatest, exp.Nullif)):
        values = node.args.get("ifs") or []
        operands = [i.args.get("true") for i in values] if isinstance(node, exp.Case) else [node.this, *node.expressions]
        operands += [node.args.get(k) for k in ("true", "false", "default")]
        return _common([a.type for a in operands if isinstance(a, exp.Expression)])
    return node.type.copy() if _kind(node.type) is not None else None


def _common(types: list[exp.DataType | None]) -> exp.DataType | None:
    """The type DuckDB gives a CASE, COALESCE, LEAST or GREATEST of operands of these types (numbers
    widen: a CASE of 1 and a DOUBLE is a DOUBLE)."""
    known = [t for t in types if _kind(t) is not None]
    kinds = {_kind(t) for t in known}
    if not known:
        return None
    for wide in ("double", "float", "decimal", "timestamp"):
        if len(kinds) > 1 and wide in kinds:
            return next(t for t in known if _kind(t) == wide).copy()
    return known[0].copy()


# the dialect: lowering rules ------------------------------------------------------------------------

def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _spark_type(to: exp.DataType) -> exp.DataType:
    """A DuckDB type as Spark spells it: TIMESTAMP is naive (TIMESTAMP_NTZ), a bare DECIMAL is (18, 3)."""
    if _kind(to) == "timestamp":
        return exp.DataType(this=_T.TIMESTAMPNTZ)
    if to.this == _T.DECIMAL and not to.expressions:
        return _build("DECIMAL(18, 3)")
    return to.copy()


def _try(x: exp.Expression, to: exp.DataType) -> exp.Expression:
    return exp.TryCast(this=x, to=_spark_type(to), safe=True)


def _null(to: exp.DataType) -> exp.Expression:
    return exp.Cast(this=exp.Null(), to=_spark_type(to))


def _convert(x: exp.Expression, to: exp.DataType) -> exp.Expression:
    """DuckDB's TRY_CAST(x AS to) in Spark, by the kind of x (a strict CAST where the portable tree has
    one means the same where it succeeds, and it never fails there)."""
    src, dst = _kind(x.type), _kind(to)
    if src in ("timestamp", "date") and dst in ("int", "double", "float", "decimal", "bool"):
        return _null(to)  # DuckDB: NULL; Spark refuses the cast at analysis
    if src in ("int", "double", "float", "decimal", "bool") and dst in ("timestamp", "date"):
        return _null(to)
    if dst == "double" and src in ("int", "double", "float", "decimal", "bool"):
        return exp.Cast(this=x, to=_build("DOUBLE"))  # exact or correctly rounded: never fails
    if dst == "int":
        if src in ("double", "float"):  # DuckDB rounds half to even (Spark truncates, and takes 2^63 as 2^63 - 1)
            return _try(_fn("dpgate_int_double", x), to)
        if src == "decimal":
            return _try(_fn("ROUND", x), to)  # DuckDB rounds half away from zero
        if src == "text":
            return _try(_fn("dpgate_int_text", x), to)
    if dst == "float" and src == "double":  # DuckDB: NULL where a finite double overflows FLOAT
        return _fn("dpgate_float", x)
    if dst in ("double", "float", "decimal") and src == "text":
        return _try(_fn("dpgate_num_text", x), to)
    if dst == "text":
        if src in ("double", "float"):
            return _fn(f"dpgate_text_{src}", x)
        return exp.Cast(this=x, to=_build("VARCHAR"))
    if dst == "bool" and src == "text":
        return _fn("dpgate_bool_text", x)
    if dst == "timestamp" and src == "text":
        return _fn("dpgate_timestamp_text", x)
    if dst == "date" and src == "text":
        return _fn("dpgate_date_text", x)
    return _try(x, to)


def _lower_cast(node: exp.Expression) -> exp.Expression:
    x = node.this
    if isinstance(node, exp.Cast) and not isinstance(node, exp.TryCast) and isinstance(x, exp.Literal) and x.is_string:
        return exp.Cast(this=x, to=_spark_type(node.to))  # the planner's ISO date literals: always valid
    return _convert(x, node.to)


_PARTS = {"DAYOFWEEK": "DAYOFWEEK", "DOW": "DAYOFWEEK", "ISODOW": "DAYOFWEEK_ISO", "DAYOFYEAR": "DOY", "DOY": "DOY"}


def _lower_extract(node: exp.Expression) -> exp.Expression | None:
    part = node.this.name.upper()
    x = node.expression
    if _kind(x.type) == "date":
        x = exp.Cast(this=x, to=exp.DataType(this=_T.TIMESTAMPNTZ))
    out = exp.Extract(this=exp.var(_PARTS.get(part, part)), expression=x)
    if part in ("DAYOFWEEK", "DOW"):  # Spark counts Sunday as 1, DuckDB as 0
        return exp.Paren(this=exp.Sub(this=out, expression=exp.Literal.number(1)))
    return out


def _digits(node: exp.Expression) -> int:
    return -int(node.this.this) if isinstance(node, exp.Neg) else int(node.this)


def _lower_function(node: exp.Expression) -> exp.Expression | None:
    """ABS/FLOOR/CEIL/SIGN/ROUND, as the planner writes them (Anonymous) or as sqlglot parses them."""
    if isinstance(node, exp.Anonymous):
        name, args = node.name.upper(), node.expressions
    else:
        name = _TYPED_FUNCS[type(node)]
        args = [a for a in (node.this, node.args.get("decimals")) if a is not None]
    if name in ("FLOOR", "CEIL"):
        return _fn(f"dpgate_{name.lower()}", *args)  # Spark's return BIGINT, saturating at ±2^63 (NaN: 0)
    if name == "SIGN":  # Spark's SIGN(NaN) is NaN, DuckDB's 0
        return exp.Cast(this=_fn("NANVL", _fn("SIGN", *args), exp.Cast(this=exp.Literal.number(0), to=_build("DOUBLE"))),
                        to=_build("TINYINT"))
    if name == "ROUND" and len(args) == 2:
        d = _digits(args[1])
        if d == 0:
            return _fn("ROUND", args[0])
        return _fn("dpgate_round_up" if d > 0 else "dpgate_round_down", args[0], exp.Literal.number(f"1e{abs(d)}"))
    return None


def _pattern(p: exp.Expression) -> exp.Expression:
    """A portable LIKE pattern (no escape character) for Spark, whose escape is the backslash."""
    return exp.Literal.string(p.this.replace("\\", "\\\\")) if isinstance(p, exp.Literal) and p.is_string else p


def _lower_like(node: exp.Expression) -> exp.Expression:
    x, p = node.this, _pattern(node.expression)
    if isinstance(node, exp.ILike):  # DuckDB: both sides lowered by its own (simple) case mapping
        return exp.Like(this=_fn("dpgate_lower", x), expression=_fn("dpgate_lower", p))
    return exp.Like(this=x, expression=p)


def _lower_sum(node: exp.Expression) -> exp.Expression | None:
    """DuckDB sums integers exactly (HUGEINT); Spark's BIGINT sum wraps around on overflow."""
    if _kind(node.this.type) != "int":
        return None
    return exp.Sum(this=exp.Cast(this=node.this, to=_build("DECIMAL(38, 0)")))


_RULES: dict[type[exp.Expression], Callable[[exp.Expression], exp.Expression | None]] = {
    exp.Cast: _lower_cast,
    exp.TryCast: _lower_cast,
    exp.Extract: _lower_extract,
    exp.Anonymous: _lower_function,
    **dict.fromkeys(_TYPED_FUNCS, _lower_function),
    exp.Like: _lower_like,
    exp.ILike: _lower_like,
    exp.Sum: _lower_sum,
    exp.Lower: lambda n: _fn("dpgate_lower", n.this),
    exp.Upper: lambda n: _fn("dpgate_upper", n.this),
    exp.DataType: lambda n: _spark_type(n) if _kind(n) == "timestamp" else None,
}


def _lower_tree(tree: exp.Expression) -> exp.Expression:
    """Children before parents: type every node, then rewrite it (a rewritten node keeps the portable
    node's type, so its parent's rule sees what the operand means)."""
    nodes = list(tree.dfs())
    for node in reversed(nodes):
        inferred = _infer(node)
        if inferred is not None:
            node.type = inferred
    for node in reversed(nodes):
        rule = _RULES.get(type(node))
        out = rule(node) if rule is not None else None
        if out is None:
            continue
        if _kind(node.type) is not None:
            out.type = node.type.copy()
        if node is tree:
            tree = out
        else:
            node.replace(out)
    return tree


def lower(node: exp.Expression) -> exp.Expression | None:
    """`Dialect.lower`: the whole tree is lowered when its root is visited (whatever order the caller
    visits nodes in, the rules see their operands' portable types); other nodes are left to it."""
    return _lower_tree(node) if node.parent is None else None


# Nothing is refused and no semantics entry differs: every portable construct is lowered to DuckDB's
# meaning (the module's tests check each against DuckDB; what differs is listed there).
SPARK = DUCKDB.override("spark", sqlglot="dpgatespark", lower=lower, functions={}, refused={})
semantics.DIALECTS["spark"] = SPARK


# the dialect: the session's SQL functions -----------------------------------------------------------

def _lit(text: str) -> str:
    """A Spark SQL string literal (Spark unescapes backslashes in literals)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_DECIMAL_TEXT = _lit(r"^\s*[+-]?(\d(_?\d)*(\.(\d(_?\d)*)?)?|\.\d(_?\d)*)([eE][+-]?\d(_?\d)*)?\s*$")
_SPECIAL_TEXT = _lit(r"(?i)^\s*[+-]?(inf|infinity|nan)\s*$")
# DuckDB's ISO dates and timestamps (Spark's parser also takes '2025', '2025-01', surrounding spaces for
# a timestamp, an hour 25 in a date): a date, then optionally a valid time and a UTC offset
_TIME = r"([ T](([01]?\d|2[0-3]):[0-5]?\d(:[0-5]?\d(\.\d*)?)?|24:00(:00(\.0*)?)?)( ?(UTC|[+-]\d{1,2}(:?\d\d)?))?)?"
_TIMESTAMP_TEXT = _lit(r"^\d{4}-\d{1,2}-\d{1,2}" + _TIME + r"$")
_DATE_TEXT = _lit(r"^\s*\d{4}-\d{1,2}-\d{1,2}" + _TIME + r"\s*$")
_EPOCH_TEXT = _lit(r"(?i)^\s*epoch\s*$")  # Spark reads 'epoch' in literals only
_MIDNIGHT_TEXT = _lit(r"[ T]24:")  # DuckDB: the next day's midnight; Spark: NULL
_DATE_PART = _lit(r"^\s*(\d{4}-\d{1,2}-\d{1,2})")
_HEX_TEXT = _lit(r"^\s*0[xX][0-9a-fA-F]+\s*$")
_BIN_TEXT = _lit(r"^\s*0[bB][01]+\s*$")
_EDGE_SPACE = _lit(r"^\s|\s$")
_TWO52 = "4503599627370496D"  # 2^52: every double at least this large is a whole number
_SPLIT = "134217729D"  # 2^27 + 1: Veltkamp's split of a double into two 26-bit halves


def _dekker_error(a: str, b: str, p: str) -> str:
    """The rounding error of p = a * b (Dekker's TwoProduct: a * b = p + error exactly), in SQL."""
    ah, bh = f"({_SPLIT} * {a} - ({_SPLIT} * {a} - {a}))", f"({_SPLIT} * {b} - ({_SPLIT} * {b} - {b}))"
    return f"((({ah} * {bh} - {p}) + {ah} * ({b} - {bh})) + ({a} - {ah}) * {bh}) + ({a} - {ah}) * ({b} - {bh})"


def _let(value: str, name: str, body: str) -> str:
    """`body` with `name` bound to `value`, computed once and only where `body` is: a SQL function's
    arguments, by contrast, are computed for every row, whichever branch of a CASE needs them."""
    return f"transform(array({value}), {name} -> {body})[0]"


def _repr(value: str) -> str:
    """DuckDB's text (Python's repr) of a nonzero finite number whose digits `value` gives in Java's %e
    form ('-1.2340e+05'): the digits without trailing zeros, positional for exponents -4..15, else
    d.ddde±XX."""
    digits = f"regexp_replace(regexp_replace(regexp_extract(s_, {_lit('^-?([0-9.]+)e')}, 1), {_lit('[.]')}, ''), '0+$', '')"
    exponent = f"CAST(regexp_extract(s_, {_lit('e([-+][0-9]+)$')}, 1) AS INT)"
    text = ("concat(CASE WHEN s_ LIKE '-%' THEN '-' ELSE '' END, CASE "
            "WHEN e_ < -4 OR e_ >= 16 THEN concat(substr(d_, 1, 1), CASE WHEN length(d_) > 1 THEN concat('.', substr(d_, 2)) ELSE '' END, "
            "'e', CASE WHEN e_ < 0 THEN '-' ELSE '+' END, CASE WHEN abs(e_) < 10 THEN '0' ELSE '' END, CAST(abs(e_) AS STRING)) "
            "WHEN e_ < 0 THEN concat('0.', repeat('0', -e_ - 1), d_) "
            "WHEN length(d_) <= e_ + 1 THEN concat(d_, repeat('0', e_ + 1 - length(d_)), '.0') "
            "ELSE concat(substr(d_, 1, e_ + 1), '.', substr(d_, e_ + 2)) END)")
    return _let(value, "s_", _let(digits, "d_", _let(exponent, "e_", text)))


def _shortest(x: str, kind: str, unique: int, smallest_normal: str) -> str:
    """The text of x in the fewest significant digits that read back as x, tried from `unique`+1
    digits (15 for a double, 6 for a float), of which at most one decimal reads back as x: it is the
    shortest; at `unique`+2 and +3 digits Java's rounding of its own digits may, rarely, pick another
    of the same length. A subnormal number has fewer digits of precision: every length is tried."""
    def reads_back(k: int) -> str:
        return f"CAST(format_string('%.{k}e', CAST({x} AS DOUBLE)) AS {kind}) = {x}"

    subnormal = " ".join(f"WHEN {reads_back(k)} THEN {k}" for k in range(unique + 2))
    normal = " ".join(f"WHEN {reads_back(k)} THEN {k}" for k in (unique, unique + 1))
    k = f"CASE WHEN abs({x}) < {smallest_normal} THEN CASE {subnormal} ELSE {unique + 2} END {normal} ELSE {unique + 2} END"
    return _let(k, "k_", _repr(f"format_string(concat('%.', CAST(k_ AS STRING), 'e'), CAST({x} AS DOUBLE))"))


@functools.cache
def _case_table(which: str) -> tuple[str, str]:
    """DuckDB's case mapping (one code point to one, Unicode's simple mapping) as TRANSLATE's two
    strings, read from the DuckDB that defines the portable semantics."""
    import duckdb

    rows = duckdb.connect().execute(
        f"SELECT chr(c::INT), {which}(chr(c::INT)) FROM range(1, 1114112) t(c) "
        f"WHERE (c < 55296 OR c > 57343) AND {which}(chr(c::INT)) <> chr(c::INT) ORDER BY c"
    ).fetchall()
    return "".join(a for a, _ in rows), "".join(b for _, b in rows)


def functions() -> dict[str, str]:
    """The SQL functions the lowering calls, as `name -> (parameters) RETURNS type RETURN body`, in an
    order in which each uses only those before it. Parameters are evaluated once per call, so a body
    may use them many times without repeating the caller's expression."""
    lower_from, lower_to = _case_table("lower")
    upper_from, upper_to = _case_table("upper")
    inf = "double('Infinity')"
    return {
        # FLOOR/CEIL in DOUBLE (NaN, ±inf and huge values are their own floor; the sign of zero kept)
        "dpgate_floor": f"(x DOUBLE) RETURNS DOUBLE RETURN CASE WHEN abs(x) < {_TWO52} AND x <> 0D THEN CAST(floor(x) AS DOUBLE) ELSE x END",
        "dpgate_ceil": f"(x DOUBLE) RETURNS DOUBLE RETURN CASE WHEN NOT (abs(x) < {_TWO52} AND x <> 0D) THEN x "
                       "WHEN x < 0D AND x > -1D THEN -0.0D ELSE CAST(ceil(x) AS DOUBLE) END",
        "dpgate_int_double": "(x DOUBLE) RETURNS BIGINT RETURN CASE WHEN bround(x) >= -9223372036854775808D "
                             "AND bround(x) < 9223372036854775808D THEN CAST(bround(x) AS BIGINT) END",
        "dpgate_float": f"(x DOUBLE) RETURNS FLOAT RETURN CASE WHEN abs(CAST(x AS FLOAT)) = float('Infinity') AND abs(x) < {inf} "
                        "THEN NULL ELSE CAST(x AS FLOAT) END",
        # ROUND(x, d) as DuckDB: x * 10^d rounded half away from zero by the exact product (p + e),
        # which Spark's ROUND (rounding p's shortest decimal) gets wrong at ties like 2.675 * 100
        "_dpgate_half": "(p DOUBLE, e DOUBLE) RETURNS DOUBLE RETURN CASE "
                        "WHEN p - floor(p) = 0.5D AND p > 0D AND e < 0D THEN p - 0.5D "
                        "WHEN p - floor(p) = 0.5D AND p < 0D AND e > 0D THEN p + 0.5D ELSE round(p) END",
        "_dpgate_round_up": f"(x DOUBLE, m DOUBLE, p DOUBLE) RETURNS DOUBLE RETURN CASE WHEN isnan(p) OR abs(p) = {inf} THEN x "
                            f"WHEN abs(p) >= {_TWO52} THEN p / m ELSE _dpgate_half(p, {_dekker_error('x', 'm', 'p')}) / m END",
        "dpgate_round_up": "(x DOUBLE, m DOUBLE) RETURNS DOUBLE RETURN _dpgate_round_up(x, m, x * m)",
        "_dpgate_round_down": f"(x DOUBLE, m DOUBLE, q DOUBLE, p DOUBLE) RETURNS DOUBLE RETURN CASE "
                              f"WHEN isnan(q) OR abs(q) >= {_TWO52} THEN q * m "
                              f"ELSE _dpgate_half(q, (x - p) - ({_dekker_error('q', 'm', 'p')})) * m END",
        "dpgate_round_down": "(x DOUBLE, m DOUBLE) RETURNS DOUBLE RETURN _dpgate_round_down(x, m, x / m, (x / m) * m)",
        # a double's text as DuckDB writes it (Python's repr): the shortest digits that read back as x
        # (Java 17's Double.toString is not always the shortest), tried at 15, 16 and 17 digits
        "dpgate_text_double": f"(x DOUBLE) RETURNS STRING RETURN CASE WHEN isnan(x) THEN 'nan' WHEN x = {inf} THEN 'inf' "
                              f"WHEN x = -{inf} THEN '-inf' WHEN x = 0D THEN CAST(x AS STRING) ELSE {_shortest('x', 'DOUBLE', 14, '2.2250738585072014E-308D')} END",
        "dpgate_text_float": "(x FLOAT) RETURNS STRING RETURN CASE WHEN isnan(x) THEN 'nan' WHEN x = float('Infinity') THEN 'inf' "
                             f"WHEN x = -float('Infinity') THEN '-inf' WHEN x = 0 THEN CAST(x AS STRING) ELSE {_shortest('x', 'FLOAT', 5, 'CAST(1.17549435E-38 AS FLOAT)')} END",
        # text as DuckDB reads it: numbers with digit-separating underscores, no Java suffixes (1.5d)
        # or hex floats; integers also from 0x/0b and from decimals (rounded half away from zero)
        "dpgate_num_text": f"(s STRING) RETURNS STRING RETURN CASE WHEN s RLIKE {_DECIMAL_TEXT} THEN regexp_replace(s, '_', '') "
                           f"WHEN s RLIKE {_SPECIAL_TEXT} THEN s END",
        "dpgate_int_text": "(s STRING) RETURNS DECIMAL(38, 0) RETURN CASE "
                           f"WHEN s RLIKE {_HEX_TEXT} THEN "
                           f"CAST(conv(regexp_extract(s, {_lit('0[xX]([0-9a-fA-F]+)')}, 1), 16, 10) AS DECIMAL(38, 0)) "
                           f"WHEN s RLIKE {_BIN_TEXT} THEN "
                           f"CAST(conv(regexp_extract(s, {_lit('0[bB]([01]+)')}, 1), 2, 10) AS DECIMAL(38, 0)) "
                           "ELSE round(TRY_CAST(dpgate_num_text(s) AS DECIMAL(38, 19))) END",
        "dpgate_bool_text": f"(s STRING) RETURNS BOOLEAN RETURN CASE WHEN s RLIKE {_EDGE_SPACE} THEN NULL ELSE TRY_CAST(s AS BOOLEAN) END",
        "dpgate_timestamp_text": f"(s STRING) RETURNS TIMESTAMP_NTZ RETURN CASE WHEN s RLIKE {_EPOCH_TEXT} THEN TIMESTAMP_NTZ '1970-01-01 00:00:00' "
                                 f"WHEN NOT s RLIKE {_TIMESTAMP_TEXT} THEN NULL WHEN s RLIKE {_MIDNIGHT_TEXT} THEN "
                                 f"CAST(date_add(TRY_CAST(regexp_extract(s, {_DATE_PART}, 1) AS DATE), 1) AS TIMESTAMP_NTZ) "
                                 "ELSE TRY_CAST(s AS TIMESTAMP_NTZ) END",
        "dpgate_date_text": f"(s STRING) RETURNS DATE RETURN CASE WHEN s RLIKE {_EPOCH_TEXT} THEN DATE '1970-01-01' "
                            f"WHEN s RLIKE {_DATE_TEXT} THEN TRY_CAST(s AS DATE) END",
        "dpgate_lower": f"(s STRING) RETURNS STRING RETURN translate(s, {_lit(lower_from)}, {_lit(lower_to)})",
        "dpgate_upper": f"(s STRING) RETURNS STRING RETURN translate(s, {_lit(upper_from)}, {_lit(upper_to)})",
    }


# the engine -----------------------------------------------------------------------------------------

_CONTEXT_LOCK = threading.Lock()
_CONTEXT: dict[str, SparkSession] = {}  # the process's one Spark application ("root": its first session)


def _root(settings: SparkSettings, warehouse: Path) -> SparkSession:
    """The process's Spark application, started on first use. Settings of the JVM (master, driver
    memory, UI) are those of the first engine that starts it; each engine then works in a session of
    its own (its views, functions and SQL settings)."""
    with _CONTEXT_LOCK:
        root = _CONTEXT.get("root")
        if not _stopped(root):
            return root  # type: ignore[return-value]
        builder = (
            SparkSession.builder.master(settings.master)
            .appName("dpgate")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.memory", settings.driver_memory)
            .config("spark.sql.warehouse.dir", str(warehouse / "_catalog"))
        )
        try:
            root = builder.getOrCreate()
        except Exception as e:  # no Java, or the master cannot be reached
            raise EngineUnavailable(f"the Spark session could not be started ({type(e).__name__})") from None
        if int(root.version.split(".")[0]) < 4:  # QUALIFY, SQL functions, toArrow
            raise EngineUnavailable(f"Spark {root.version} is too old for the Spark engine: it needs Spark 4")
        # Spark's logs, and PySpark's of a failed query, may quote a value: only fatal errors are written
        root.sparkContext.setLogLevel("FATAL")
        for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
            PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)
        _CONTEXT["root"] = root
        return root


def _stopped(session: SparkSession | None) -> bool:
    """Whether a session is gone: never started, stopped, or its JVM unreachable."""
    try:
        jsc = session.sparkContext._jsc if session is not None else None
        return jsc is None or jsc.sc().isStopped()
    except Exception:
        return True


_SESSION_CONF = {
    "spark.sql.ansi.enabled": "false",  # casts and overflow give NULL (the lowering does not rely on it)
    "spark.sql.session.timeZone": "UTC",  # timestamps are naive, as in DuckDB
    "spark.sql.parser.escapedStringLiterals": "false",  # sqlglot writes backslashes escaped
    "spark.sql.groupByOrdinal": "true",  # the planner groups by position
    "spark.sql.caseSensitive": "false",  # identifiers match regardless of case, as in DuckDB
    "spark.sql.parquet.inferTimestampNTZ.enabled": "true",  # naive Parquet timestamps stay naive
}


class SparkEngine:
    """Datasets whose tables live in Spark: registration writes their forms as Parquet under the
    warehouse, queries run on temp views over it under the timeout, cancelled past it."""

    name = "spark"
    dialect = SPARK

    def __init__(self, settings: SparkSettings, *, data_dir: Path, seed: str) -> None:
        self.settings = settings
        self.warehouse = Path(settings.warehouse) if settings.warehouse is not None else Path(data_dir) / "spark"
        self._seed = seed
        self.query_timeout_s: float | None = None  # set from the settings by the app
        self._lock = threading.RLock()
        self._session: SparkSession | None = None
        self._views: dict[str, Path] = {}  # view -> the Parquet it reads (recreated in a new session)
        self._schemas: dict[str, dict[str, str]] = {}  # relation -> column -> DuckDB type, for the lowering
        self._versions: dict[str, str] = {}  # a table's src view -> its registered version

    # the session
    @property
    def session(self) -> SparkSession:
        """This engine's Spark session (started on first use; a lost one is replaced, with its views)."""
        session = self._session
        if session is not None and not self._stopped():
            return session
        with self._lock:
            if self._stopped():
                self.warehouse.mkdir(parents=True, exist_ok=True)
                session = _root(self.settings, self.warehouse).newSession()
                for key, value in {**_SESSION_CONF, "spark.sql.shuffle.partitions": str(self.settings.shuffle_partitions)}.items():
                    session.conf.set(key, value)
                for name, definition in functions().items():
                    session.sql(f"CREATE OR REPLACE TEMPORARY FUNCTION {name}{definition}")
                for view, path in self._views.items():
                    session.read.parquet(str(path)).createOrReplaceTempView(view)
                self._session = session
            return self._session

    def close(self) -> None:
        with self._lock:
            if not self._stopped():
                for view in self._views:
                    self._session.catalog.dropTempView(view)
            self._session = None
            self._views.clear()
            self._versions.clear()

    # planner protocol
    @staticmethod
    def relation_name(dataset: str, table: str, *, bounded: bool) -> str:
        return f"{'bnd' if bounded else 'src'}__{dataset.lower()}__{table.lower()}"

    def relation(self, dataset: str, table: str, *, bounded: bool) -> exp.Table:
        return exp.Table(this=bounding.q(self.relation_name(dataset, table, bounded=bounded)))

    # registration
    def register(self, ds: DatasetMeta, tables: list[str] | None = None) -> str:
        """Load and bound the named tables of `ds` (default: all); returns their content version."""
        names = list(ds.tables) if tables is None else tables
        with self._lock:
            versions = [self._register_table(ds, name, ds.tables[name]) for name in names]
            self._check_unit_types(ds, names)
        return hashlib.sha256(json.dumps([ds.fingerprint(), *versions]).encode()).hexdigest()[:16]

    def _register_table(self, ds: DatasetMeta, name: str, table: TableMeta) -> str:
        src_view = self.relation_name(ds.name, name, bounded=False)
        version = self._version(ds, name, table)
        if self._versions.get(src_view) == version:
            return version
        final = self.warehouse / ds.name.lower() / name.lower() / version
        if not (final / _MARKER).exists():
            self._materialise(ds, name, table, final)
        stored = json.loads((final / _MARKER).read_text())
        self._define(src_view, final / "src")
        self._define(self.relation_name(ds.name, name, bounded=True), final / stored["bounded"])
        self._versions[src_view] = version
        return version

    def _version(self, ds: DatasetMeta, name: str, table: TableMeta) -> str:
        """Everything the stored forms depend on: the table's metadata and the privacy unit, the source
        (its files' sizes and times, or a digest of a catalog table's rows), the layout, the key."""
        parts = [LAYOUT, ds.privacy_unit, name.lower(), table.model_dump(mode="json"), self._source_state(table.source),
                 hashlib.sha256(self._seed.encode()).hexdigest()[:8]]
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _source_state(self, source: str) -> Any:
        if _is_path(source) and "://" not in source:
            path = Path(source)
            if not path.exists():
                raise InvalidMetadata(f"the source of a table is missing: {source}")
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
            return [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
        frame = self._source_frame(source)
        digest = f"sum(xxhash64({', '.join(_ident(c) for c in frame.columns)}))"
        return list(self._collect(frame.selectExpr("count(*)", digest))[0])

    def _source_frame(self, source: str) -> Any:
        try:
            return self.session.read.parquet(source) if _is_path(source) else self.session.table(source)
        except Exception as e:
            failure = self._failure(e)
            if isinstance(failure, EngineUnavailable):
                raise failure from None
            raise InvalidMetadata(f"the source of a table cannot be read as Parquet or a catalog table: {source}") from None

    def _materialise(self, ds: DatasetMeta, name: str, table: TableMeta, final: Path) -> None:
        """Write the loaded and bounded forms to a fresh directory and rename it into place."""
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        scratch: list[str] = []
        try:
            reader, present, most = self._typed_source(ds, name, table, scratch)
            self._write(self._render(bounding.load_select(ds, table, reader, present, self._seed)), tmp / "src")
            bounded = "src"  # no unit has more than k rows: the loaded form is the bounded form
            if bounding.needs_cut(ds, table) and most > table.max_rows_per_unit:
                loaded = self._scratch_view(tmp / "src", scratch)
                self._write(self._render(bounding.bound_select(ds, table, loaded, cut=True)), tmp / "bnd")
                bounded = "bnd"
            (tmp / _MARKER).write_text(json.dumps({"bounded": bounded, "columns": bounding.stored_columns(table)}))
            try:
                os.rename(tmp, final)
            except OSError:  # another engine completed the same version meanwhile: its copy is as good
                if not (final / _MARKER).exists():
                    raise
        finally:
            for view in scratch:
                self.session.catalog.dropTempView(view)
                self._schemas.pop(view, None)
            shutil.rmtree(tmp, ignore_errors=True)

    def _typed_source(self, ds: DatasetMeta, name: str, table: TableMeta, scratch: list[str]) -> tuple[exp.Table, dict[str, str], int]:
        """The source with each declared column in its declared type, as DuckDB casts it (the loaded
        form's own casts are then exact), and the most rows one unit has. One pass over the source
        also checks that no value fails to convert and that no unit is NULL (naming the column, never
        a value)."""
        frame = self._source_frame(table.source)
        present = {c.lower(): c for c in frame.columns}
        for col in table.columns:
            if col.lower() not in present:
                raise InvalidMetadata(f"table {name}: column {col} is declared but not in the source")
        source = self._scratch_name("in", scratch)
        frame.createOrReplaceTempView(source)
        self._schemas[source] = {f.name: _duck_type(f.dataType) for f in frame.schema.fields}
        items, checks = [], []
        for col, meta in table.columns.items():
            raw = bounding.col(present[col.lower()])
            value: exp.Expression = raw
            if meta.type != ColumnType.ID:
                value = exp.TryCast(this=raw, to=exp.DataType.build(bounding.SQL_TYPES[meta.type]))
                lost = exp.and_(exp.Not(this=exp.Is(this=raw.copy(), expression=exp.Null())), exp.Is(this=value.copy(), expression=exp.Null()))
                checks.append((f"the source cannot be read with the declared types (column {col} is not {meta.type.value})", lost))
            items.append(exp.alias_(value, present[col.lower()], quoted=True))
        unit = table.column_name(ds.privacy_unit) if bounding.needs_cut(ds, table) else None
        if unit is not None:
            checks.append((f"the privacy-unit column {ds.privacy_unit} has NULLs", exp.Is(this=bounding.col(present[unit.lower()]), expression=exp.Null())))
        counts = [exp.alias_(exp.Count(this=exp.Case(ifs=[exp.If(this=c, true=exp.Literal.number(1))])), f"c{i}") for i, (_, c) in enumerate(checks)]
        if unit is not None:
            per_unit = exp.select(exp.alias_(exp.Count(this=exp.Star()), "n"), *counts).from_(bounding.q(source)).group_by(bounding.col(present[unit.lower()]))
            totals = [exp.Max(this=exp.column("n")), *(exp.Sum(this=exp.column(f"c{i}")) for i in range(len(checks)))]
            query = exp.select(*totals).from_(exp.Subquery(this=per_unit, alias=exp.TableAlias(this=bounding.q("_u"))))
        else:
            query = exp.select(exp.Literal.number(0), *counts).from_(bounding.q(source))
        most, *found = self._collect(self.session.sql(self._render(query)))[0]
        for (why, _), n in zip(checks, found):
            if n:
                raise InvalidMetadata(f"table {name}: {why}")
        typed = self._scratch_name("typed", scratch)
        self.session.sql(self._render(exp.select(*items).from_(bounding.q(source)))).createOrReplaceTempView(typed)
        self._schemas[typed] = {present[c.lower()]: bounding.SQL_TYPES.get(m.type) or self._schemas[source][present[c.lower()]]
                                for c, m in table.columns.items()}
        return exp.Table(this=bounding.q(typed)), {c.lower(): present[c.lower()] for c in table.columns}, int(most or 0)

    @staticmethod
    def _scratch_name(kind: str, scratch: list[str]) -> str:
        """A temp view of one registration, dropped when it ends."""
        scratch.append(f"_dpgate_{kind}_{uuid.uuid4().hex[:8]}")
        return scratch[-1]

    def _write(self, sql: str, path: Path) -> None:
        try:
            self.session.sql(sql).write.parquet(str(path))
        except Exception as e:
            raise self._failure(e) from None

    def _scratch_view(self, path: Path, scratch: list[str]) -> exp.Table:
        view = self._scratch_name("loaded", scratch)
        self._define(view, path, keep=False)
        return exp.Table(this=bounding.q(view))

    def _define(self, view: str, path: Path, *, keep: bool = True) -> None:
        frame = self.session.read.parquet(str(path))
        frame.createOrReplaceTempView(view)
        self._schemas[view] = {f.name: _duck_type(f.dataType) for f in frame.schema.fields}
        if keep:
            self._views[view] = path

    def _check_unit_types(self, ds: DatasetMeta, names: list[str]) -> None:
        bounding.check_unit_types(
            ds, names, lambda name, col: self._schemas[self.relation_name(ds.name, name, bounded=False)].get(col))

    def _render(self, select: exp.Expression) -> str:
        """Spark SQL of a portable tree, each column typed from the schema of the view it reads (the
        lowering of a cast depends on its operand's type)."""
        tree = select.copy()
        for scope in traverse_scope(tree):  # inner scopes first: a derived table's columns are typed
            for column in scope.columns:
                sources = [scope.sources.get(column.table)] if column.table else list(scope.sources.values())
                found = next((t for t in (self._source_type(s, column.name) for s in sources) if t is not None), None)
                if found is not None:
                    column.type = found
        return self.dialect.render(tree)

    def _source_type(self, source: Any, name: str) -> exp.DataType | None:
        """The type of column `name` of a FROM source: a view's schema, or a derived table's projection."""
        if isinstance(source, exp.Table):
            schema = {c.lower(): t for c, t in self._schemas.get(source.name, {}).items()}
            return _build(schema[name.lower()]) if name.lower() in schema else None
        if not isinstance(source, Scope) or not isinstance(source.expression, exp.Select):
            return None
        for item in source.expression.selects:
            if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
                inner = [source.sources.get(item.table)] if item.table else list(source.sources.values())
                found = next((t for t in (self._source_type(s, name) for s in inner) if t is not None), None)
                if found is not None:
                    return found
            elif item.alias_or_name.lower() == name.lower():
                value = item.this if isinstance(item, exp.Alias) else item
                return value.type if _kind(value.type) is not None else None
        return None

    def execute(self, select: exp.Select) -> list[tuple]:
        """Run a SELECT the planner generated, under the timeout: its jobs carry a tag of their own,
        cancelled (interrupting their tasks) once the timeout passes; the session carries on."""
        check_read_only(select)
        sql = self._render(select)
        return _rows(self._arrow(sql, self.query_timeout_s))

    def _arrow(self, sql: str, timeout: float | None) -> pa.Table:
        session = self.session
        sc = session.sparkContext
        tag = f"dpgate-{uuid.uuid4().hex}"
        done, fired = threading.Event(), threading.Event()

        def watch() -> None:
            if done.wait(timeout):
                return
            fired.set()
            while not done.is_set():  # jobs submitted after the deadline are cancelled as they start
                sc.cancelJobsWithTag(tag)
                done.wait(0.1)

        sc.setInterruptOnCancel(True)
        sc.addJobTag(tag)  # thread-local: this thread's jobs only
        watcher = threading.Thread(target=watch, daemon=True) if timeout is not None else None
        if watcher is not None:
            watcher.start()
        try:
            return session.sql(sql).toArrow()
        except Exception as e:
            if fired.is_set():
                raise QueryTimeout(f"the query ran longer than {timeout:g} s and was stopped") from None
            raise self._failure(e) from None
        finally:
            done.set()
            sc.removeJobTag(tag)

    def _collect(self, frame: Any) -> list[tuple]:
        try:
            return [tuple(r) for r in frame.collect()]
        except Exception as e:
            raise self._failure(e) from None

    def _failure(self, e: Exception) -> Exception:
        """A lost session is EngineUnavailable; anything else is EngineError naming the error's class
        and Spark's error condition, never its message (it may quote a value)."""
        if isinstance(e, (Py4JNetworkError, ConnectionError)) or self._stopped():
            self._session = None
            return EngineUnavailable("the Spark session was lost")
        condition = getattr(e, "getCondition", lambda: None)()
        return EngineError(type(e).__name__ + (f" [{condition}]" if condition else ""))

    def _stopped(self) -> bool:
        return _stopped(self._session)

    def read_bounded(self, dataset: str, table: str, columns: list[str]) -> Any:
        """The bounded rows of a table as a DataFrame ordered by row identity, for training inside the
        gateway (these rows never leave it)."""
        rel = self.relation_name(dataset, table, bounded=True)
        select = exp.select(*(bounding.col(c) for c in columns)).from_(bounding.q(rel)).order_by(exp.Ordered(this=bounding.col(bounding.ROW_ID)))
        return _frame(self._arrow(self._render(select), None))

    def load_frame(self, name: str, frame: Any) -> str:
        """Write a DataFrame as Parquet under the warehouse (tests, the demo loader); returns the
        `source` naming it in a dataset's metadata."""
        if not IDENTIFIER.match(name):
            raise ValueError(f"a frame's name is a plain identifier, not {name!r}")
        path = self.warehouse / "_frames" / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp, coerce_timestamps="us", allow_truncated_timestamps=True)
        os.replace(tmp, path)
        return str(path)


_MARKER = "_dpgate.json"  # written last into a version directory: its presence means complete


def _is_path(source: str) -> bool:
    return "/" in source or os.sep in source or source.lower().endswith(".parquet")


def _hidden(path: Path, root: Path) -> bool:
    """Files Spark skips when it reads a directory (_SUCCESS, .crc, _metadata)."""
    return any(part.startswith(("_", ".")) for part in path.relative_to(root).parts)


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _duck_type(t: Any) -> str:
    """A Spark type as the DuckDB type the lowering reasons about."""
    name = t.simpleString()
    simple = {"bigint": "BIGINT", "int": "INTEGER", "smallint": "SMALLINT", "tinyint": "TINYINT", "double": "DOUBLE",
              "float": "FLOAT", "string": "VARCHAR", "boolean": "BOOLEAN", "timestamp_ntz": "TIMESTAMP",
              "timestamp": "TIMESTAMPTZ", "date": "DATE"}
    if name in simple:
        return simple[name]
    if name.startswith(("decimal", "varchar", "char")):
        return name.upper()
    return "UNKNOWN"


_EPOCH = dt.datetime(1970, 1, 1)


def _timestamp(us: int | None) -> Any:
    """A naive timestamp as Python's datetime, or, beyond its years 1..9999, as DuckDB writes it."""
    if us is None:
        return None
    try:
        return _EPOCH + dt.timedelta(microseconds=us)
    except OverflowError:
        days, rest = divmod(us, 86_400_000_000)
        seconds, micros = divmod(rest, 1_000_000)
        clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" + (f".{micros:06d}".rstrip("0") if micros else "")
        return f"{_civil(days)} {clock}"


def _date(days: int | None) -> Any:
    if days is None:
        return None
    try:
        return _EPOCH.date() + dt.timedelta(days=days)
    except OverflowError:
        return _civil(days)


def _civil(days: int) -> str:
    """A day number as a proleptic Gregorian date, DuckDB's way ('0002-01-01 (BC)', '10000-01-01')."""
    z = days + 719468  # H. Hinnant's civil_from_days
    era, doe = divmod(z, 146097)
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day, month = doy - (153 * mp + 2) // 5 + 1, mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return f"{year:04d}-{month:02d}-{day:02d}" if year > 0 else f"{1 - year:04d}-{month:02d}-{day:02d} (BC)"


def _column(values: pa.ChunkedArray) -> list[Any]:
    if pa.types.is_timestamp(values.type):
        return [_timestamp(v) for v in values.cast(pa.int64()).to_pylist()]
    if pa.types.is_date32(values.type):
        return [_date(v) for v in values.cast(pa.int32()).to_pylist()]
    if pa.types.is_decimal(values.type) and values.type.scale == 0:  # an exact integer sum (DuckDB: HUGEINT)
        return [None if v is None else int(v) for v in values.to_pylist()]
    return values.to_pylist()


def _rows(table: pa.Table) -> list[tuple]:
    """Plain tuples of Python values (a timestamp Python cannot hold comes back as text, never fails)."""
    return list(zip(*(_column(c) for c in table.columns)))


def _frame(table: pa.Table) -> Any:
    """A pandas DataFrame as DuckDB gives one: integer and boolean columns with NULLs are nullable
    (Int64, boolean) rather than floats."""
    import pandas as pd

    def series(values: pa.ChunkedArray) -> Any:
        if values.null_count and pa.types.is_integer(values.type):
            return values.to_pandas(types_mapper=lambda _: pd.Int64Dtype())
        if values.null_count and pa.types.is_boolean(values.type):
            return values.to_pandas(types_mapper=lambda _: pd.BooleanDtype())
        return values.to_pandas()

    return pd.DataFrame({name: series(values) for name, values in zip(table.column_names, table.columns)}, columns=table.column_names)


@register_engine("spark")
def _from_settings(settings: Any) -> SparkEngine:
    return SparkEngine(settings.engines.spark, data_dir=settings.data_dir, seed=settings.secret_seed())
