"""Pass 1: SQL text to one sqlglot SELECT tree, or a typed error with its position."""
from __future__ import annotations

import math

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from gateway.errors import InvalidSQL, UnsupportedSQL

MAX_SQL_CHARS = 20_000
MAX_DEPTH = 64
MAX_NODES = 5_000
DIALECT = "duckdb"


def position(node: exp.Expression | None) -> tuple[int | None, int | None]:
    """The line and column of the first token under `node` that sqlglot recorded."""
    if node is None:
        return None, None
    for n in node.walk():
        meta = getattr(n, "meta", None) or {}
        if "line" in meta:
            return meta["line"], meta["col"]
    return None, None


def construct_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return f"function {str(node.this).upper()}"
    if isinstance(node, exp.Func):
        return f"function {node.sql_name()}"
    return type(node).__name__.upper()


def whole_number(node: exp.Expression | None) -> int | None:
    """The value of a numeric literal that is a finite whole number (`3`, `3.0`, `1e2`), else None.

    Positions and digits are read through this, never with a bare int(float(...)): `1e309` is a
    literal too, and must be refused, not overflow."""
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    try:
        value = float(node.this)
    except ValueError:
        return None
    if not math.isfinite(value) or not value.is_integer():
        return None
    return int(value)


def unsupported(message: str, node: exp.Expression | None, construct: str | None = None) -> UnsupportedSQL:
    line, col = position(node)
    if construct is None and node is not None:
        construct = construct_name(node)
    return UnsupportedSQL(message, construct=construct, line=line, col=col)


def parse(sql: str) -> exp.Select:
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidSQL("the query is empty")
    if len(sql) > MAX_SQL_CHARS:
        raise InvalidSQL(f"the query is longer than {MAX_SQL_CHARS} characters")
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as e:
        err = e.errors[0] if e.errors else {}
        desc = str(err.get("description", "syntax error")).split("<Token")[0].strip()
        hl = err.get("highlight")
        near = f" near {hl!r}" if hl else ""
        raise InvalidSQL(f"syntax error: {desc}{near}", line=err.get("line"), col=err.get("col")) from None
    except (TokenError, RecursionError, ValueError) as e:
        raise InvalidSQL(f"the query could not be tokenised: {type(e).__name__}") from None
    if not statements:
        raise InvalidSQL("the query is empty")
    if len(statements) > 1:
        raise UnsupportedSQL("one statement per query", construct="multiple statements")
    tree = statements[0]
    _check_size(tree)
    if isinstance(tree, (exp.Union, exp.Intersect, exp.Except)):
        raise unsupported("set operations are not supported", tree, "set operation")
    if not isinstance(tree, exp.Select):
        raise unsupported("only SELECT queries of aggregates are supported", tree, type(tree).__name__.upper())
    return tree


def _check_size(tree: exp.Expression) -> None:
    count = 0
    stack: list[tuple[exp.Expression, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise UnsupportedSQL(f"the query nests deeper than {MAX_DEPTH} levels", construct="nesting depth")
        if count > MAX_NODES:
            raise UnsupportedSQL(f"the query has more than {MAX_NODES} parts", construct="query size")
        for child in node.iter_expressions():
            stack.append((child, depth + 1))
