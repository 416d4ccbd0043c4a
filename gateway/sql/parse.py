"""Pass 1: SQL text to one sqlglot SELECT tree, or a typed error with its position."""
from __future__ import annotations

import difflib
import math
import re

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

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
        raise syntax_error(sql, e.errors[0] if e.errors else {}) from None
    except TokenError:
        raise _token_error(sql) from None
    except (RecursionError, ValueError) as e:
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
        misspelt = _misspelt_start(sql, _tokens(sql), typo_only=True)  # CHECKPOINT is a statement, not a typo
        if misspelt is not None:
            raise misspelt
        raise unsupported("only SELECT queries of aggregates are supported", tree, type(tree).__name__.upper())
    _check_from(sql, tree)
    return tree


# Syntax errors -------------------------------------------------------------------------------------
# The message names the token the parser stopped at, or the one that made it stop (a misspelt keyword
# just before it, a parenthesis that is not closed), with the line and column where that token starts.
# It is made from the query's text alone.

#: the words a misspelt one is matched against: the clauses and operators of the supported subset
KEYWORDS = (
    "SELECT", "FROM", "WHERE", "GROUP", "ORDER", "BY", "HAVING", "LIMIT", "OFFSET", "AND", "OR", "NOT",
    "BETWEEN", "LIKE", "IN", "IS", "NULL", "CASE", "WHEN", "THEN", "ELSE", "END", "AS", "DISTINCT", "JOIN", "ON",
)  # fmt: skip
_WORDS = (TokenType.VAR,)  # a plain word: what a misspelt keyword tokenises as
#: sqlglot's expression class -> the keyword it is written with, and what that keyword needs
_CONSTRUCT_WORDS = {
    "EQ": "=", "NEQ": "<>", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<=", "Add": "+", "Sub": "-", "Mul": "*",
    "Div": "/", "Mod": "%", "Order": "ORDER BY", "Group": "GROUP BY",
}  # fmt: skip
_NEEDS = {
    "AND": "a condition on each side", "OR": "a condition on each side", "NOT": "a condition after it",
    "WHERE": "a condition", "HAVING": "a condition", "BETWEEN": "a lower and an upper bound (x BETWEEN 1 AND 5)",
    "LIMIT": "a number", "OFFSET": "a number", "ORDER BY": "an expression", "GROUP BY": "an expression",
    "IN": "a list of values in parentheses", "LIKE": "a pattern", "CASE": "WHEN ... THEN ... END",
    **{op: "a value on each side" for op in ("=", "<>", ">", ">=", "<", "<=", "+", "-", "*", "/", "%")},
}  # fmt: skip
_OPERAND_END = (TokenType.VAR, TokenType.NUMBER, TokenType.STRING, TokenType.R_PAREN, TokenType.STAR)


def _tokens(sql: str) -> list[Token]:
    try:
        return list(Dialect.get_or_raise(DIALECT).tokenize(sql))
    except Exception:  # noqa: BLE001 - a query that does not tokenise has no token to name
        return []


def _where(sql: str, offset: int) -> tuple[int, int]:
    """The line and column (from 1) of a character of the query."""
    return sql.count("\n", 0, offset) + 1, offset - (sql.rfind("\n", 0, offset) + 1) + 1


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _error(sql: str, token: Token, hint: str) -> InvalidSQL:
    line, col = _where(sql, token.start)
    return InvalidSQL(f"syntax error near {_shown(sql[token.start : token.end + 1])}: {hint}", line=line, col=col)


def _keyword_like(token: Token, choices: tuple[str, ...] = KEYWORDS) -> str | None:
    """The keyword a plain word is a misspelling of (`FORM`: FROM), if one is close."""
    word = token.text.upper()
    if token.token_type not in _WORDS or len(word) < 2 or word in KEYWORDS:
        return None
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.75)
    return close[0] if close else None


def _misspelt_start(sql: str, tokens: list[Token], *, typo_only: bool = False) -> InvalidSQL | None:
    """A query whose first token is a plain word, not SELECT (`SELEC COUNT(*) FROM loans`); with
    `typo_only`, only a word close to SELECT or WITH."""
    if not tokens or tokens[0].token_type not in _WORDS:
        return None
    close = _keyword_like(tokens[0], ("SELECT", "WITH"))
    if close is None and typo_only:
        return None
    return _error(sql, tokens[0], f"did you mean {close}?" if close else "a query starts with SELECT")


_PAIRS = {TokenType.L_PAREN: ")", TokenType.L_BRACKET: "]", TokenType.L_BRACE: "}"}
_CLOSERS = {TokenType.R_PAREN: "(", TokenType.R_BRACKET: "[", TokenType.R_BRACE: "{"}


def _parens(tokens: list[Token], upto: int) -> tuple[int | None, list[int]]:
    """The first closing ')', ']' or '}' that closes nothing (or closes another kind), and the
    openings still open, among tokens[:upto + 1]."""
    open_: list[int] = []
    for i, t in enumerate(tokens[: upto + 1]):
        if t.token_type in _PAIRS:
            open_.append(i)
        elif t.token_type in _CLOSERS:
            if not open_ or tokens[open_[-1]].text != _CLOSERS[t.token_type]:
                return i, open_
            open_.pop()
    return None, open_


def syntax_error(sql: str, err: dict) -> InvalidSQL:
    """The error for a query sqlglot could not parse; `err` is one of its ParseError's errors."""
    tokens = _tokens(sql)
    if not tokens:
        return InvalidSQL("syntax error")
    misspelt = _misspelt_start(sql, tokens)
    if misspelt is not None:
        return misspelt
    # the token the parser stopped at: its line and (last) column are the error's
    at = next((i for i, t in enumerate(tokens) if (t.line, t.col) == (err.get("line"), err.get("col"))), len(tokens) - 1)
    last = at == len(tokens) - 1
    token, before = tokens[at], tokens[at - 1] if at > 0 else None
    desc = re.sub(r"\s*<[^>]*>", "", str(err.get("description") or "")).strip()
    unmatched, still_open = _parens(tokens, at)
    if unmatched is not None:
        closer = tokens[unmatched].text
        if still_open:  # it meets an opening of another kind
            line, col = _where(sql, tokens[still_open[-1]].start)
            return _error(sql, tokens[unmatched], f"this '{closer}' does not close the '{tokens[still_open[-1]].text}' at line {line}, column {col}")
        return _error(sql, tokens[unmatched], f"this '{closer}' closes no '{_CLOSERS[tokens[unmatched].token_type]}'")
    if still_open and (desc.startswith("Expecting )") or last):
        opening = tokens[still_open[-1]]
        line, col = _where(sql, opening.start)
        paren = f"the '{opening.text}' at line {line}, column {col}"
        closer = _PAIRS[opening.token_type]
        return _error(sql, token, f"the query ends with {paren} not closed" if last else f"expected '{closer}' to close {paren}")
    cases = [i for i, t in enumerate(tokens) if t.token_type in (TokenType.CASE, TokenType.END)]
    depth: list[int] = []
    for i in cases:
        if tokens[i].token_type == TokenType.CASE:
            depth.append(i)
        elif depth:
            depth.pop()
    if depth and depth[-1] < at:
        return _error(sql, tokens[depth[-1]], "this CASE has no END")
    for t in (token, before):
        if t is None or t.token_type not in _WORDS:
            continue
        word = t.text.upper()
        close = f"{word} BY" if word in ("GROUP", "ORDER") else _keyword_like(t)
        if close is not None:
            return _error(sql, t, f"did you mean {close}?")
    if token.token_type == TokenType.L_PAREN and before is not None and at >= 2 and tokens[at - 2].token_type in _OPERAND_END:
        # `SELECT cat COUNT(*)`: the function's name was read as the alias of what came before
        return _error(sql, before, "is a comma missing before it?")
    if desc.startswith("Expecting "):
        return _error(sql, token, f"expected {desc[len('Expecting '):]}")
    required = re.search(r"missing for <class '[\w.]*?(\w+)'>", str(err.get("description") or ""))
    if required is not None and last:
        # sqlglot stops at the end; the construct left incomplete is named by its keyword
        word = _CONSTRUCT_WORDS.get(required.group(1), required.group(1).upper())
        j = next((i for i in range(at, -1, -1) if tokens[i].text.upper() == word), None)
        if j is not None:
            return _error(sql, tokens[j], f"{word} needs {_NEEDS.get(word, 'more after it')}")
    if required is not None or desc.startswith("Expected "):
        return _error(sql, token, "the query ends too early" if last else "expected a value or expression here")
    if desc.startswith("Invalid expression") or not desc:
        return _error(sql, token, "unexpected token")
    return _error(sql, token, desc[:100])


def _token_error(sql: str) -> InvalidSQL:
    """A query that does not tokenise: most often a string, quoted name or comment left open."""
    i, n = 0, len(sql)
    while i < n:
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                return _open_at(sql, i, "the comment that starts here is not closed")
            i = j + 2
        elif sql[i] in "'\"":
            quote, j = sql[i], i + 1
            while True:
                k = sql.find(quote, j)
                if k < 0:
                    what = "string" if quote == "'" else "quoted name"
                    return _open_at(sql, i, f"the {what} that starts here is not closed")
                if not sql.startswith(quote * 2, k):
                    break
                j = k + 2  # a doubled quote stands for itself
            i = k + 1
        else:
            i += 1
    return InvalidSQL("the query could not be tokenised")


def _open_at(sql: str, offset: int, hint: str) -> InvalidSQL:
    line, col = _where(sql, offset)
    return InvalidSQL(f"syntax error near {_shown(sql[offset : offset + 20])}: {hint}", line=line, col=col)


def _check_from(sql: str, tree: exp.Select) -> None:
    """A SELECT without FROM whose last item has an alias written without AS (`SELECT COUNT(*) loans
    WHERE ...`): the table was read as the column's name, FROM forgotten before it."""
    if tree.args.get("from_") or tree.args.get("from") or not tree.expressions:
        return
    item = tree.expressions[-1]
    alias = item.args.get("alias") if isinstance(item, exp.Alias) else None
    start = (alias.meta or {}).get("start") if alias is not None else None
    if start is None:
        return
    tokens = _tokens(sql)
    at = next((i for i, t in enumerate(tokens) if t.start == start), None)
    if at is None or at == 0 or tokens[at - 1].token_type == TokenType.ALIAS:
        return
    raise UnsupportedSQL(
        f"the query has no FROM: is {_shown(tokens[at].text)} the table? FROM is missing before it",
        construct="SELECT without FROM", line=_where(sql, start)[0], col=_where(sql, start)[1],
    )


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
