"""Pass 3a: the allow-list of scalar expressions, with their types, bounds and public domains.

Every scalar the engine will evaluate is rebuilt here from validated parts, never copied from the
caller's text. Rewrites make evaluation total, so that no value in the data can make a query fail:
divisions and modulos by zero give NULL, casts are TRY_CASTs, arithmetic runs in DOUBLE (no integer
overflow), literals compared with dates are parsed now, not by the engine.

How each function treats NULL and what range its value has come from the engine dialect's table
(`gateway.sql.semantics`), not from textbook SQL. The intervals found here decide sensitivities; the
plan also clamps every aggregated value to them in the engine query, so a wrong interval costs accuracy,
never privacy.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

from gateway.catalog import ColumnMeta, ColumnType, parse_date
from gateway.errors import InvalidSQL
from gateway.sql.parse import position, unsupported, whole_number
from gateway.sql.semantics import DUCKDB, UNBOUNDED, Dialect, Interval, Semantics

NUM, STR, BOOL, DATE, ID, NULL = "num", "str", "bool", "date", "id", "null"
MAX_LITERAL_CHARS = 1_000
MAX_COMPILED_NODES = 20_000


@dataclass(frozen=True)
class Typed:
    sql: exp.Expression
    type: str
    interval: Interval | None = None  # bounds of a numeric value (after clamping, inside aggregates)
    domain: tuple | None = None  # the public set of values it can take (for GROUP BY)
    integer: bool = False
    column: tuple[str, str] | None = None  # (table alias, column) for a bare column reference
    nullable: bool = True  # may be NULL on some row (declared not nullable: trusted for accuracy only)
    # the bounds the engine itself clamped this value to: a bare numeric column read from its stored
    # clamped copy (made by the engine at registration with the declared bounds), or a bare numeric
    # category, whose SQL is its clamp; None for anything else
    stored_clamp: Interval | None = None

    @property
    def arg(self) -> tuple[Interval | None, bool]:
        """This value as an operand of a semantics table's interval rule."""
        return self.interval, self.nullable


@dataclass(frozen=True)
class ColumnRef:
    alias: str
    name: str
    meta: ColumnMeta
    sql: exp.Expression
    is_unit: bool
    clamped_sql: exp.Expression | None = None  # the column already clamped to its bounds, where the engine keeps it


Resolver = Callable[[exp.Column], ColumnRef]


def lit_num(v: float) -> exp.Expression:
    if math.isfinite(v) and float(v).is_integer() and abs(v) < 2**53:
        return exp.Literal.number(int(v))
    return exp.Literal.number(repr(float(v)))


def as_double(e: exp.Expression) -> exp.Expression:
    return exp.Cast(this=e, to=exp.DataType.build("DOUBLE"))


def unify(t: str, part: Typed) -> exp.Expression:
    """One operand of LEAST, COALESCE or CASE of type `t` in the engine type all operands share:
    numbers as DOUBLE, ids as text (two id columns may be BIGINT and VARCHAR in the engine, which
    it refuses to mix). A NULL operand (a NULL literal, a CASE whose every branch is NULL) is cast to
    that type too: PostgreSQL types such a CASE as text and would refuse to mix it with numbers."""
    if t == NUM and part.type in (NUM, NULL):
        return as_double(part.sql)
    if t in (ID, STR) and part.type in (ID, NULL):
        return exp.Cast(this=part.sql, to=exp.DataType.build("VARCHAR"))
    if part.type == NULL and t in (BOOL, DATE):
        return exp.Cast(this=part.sql, to=exp.DataType.build("BOOLEAN" if t == BOOL else "TIMESTAMP"))
    return part.sql


def clamp_sql(e: exp.Expression, lo: float, hi: float) -> exp.Expression:
    """`e` clamped to [lo, hi]; NULL stays NULL, NaN goes to hi (DuckDB orders NaN above all).

    `e` appears three times: clamp leaves or whole values, never inside another clamp's argument, so
    nesting does not multiply the SQL. (A CASE, not LEAST/GREATEST: it is 3x faster on DuckDB.)"""
    return exp.Case(
        ifs=[
            exp.If(this=exp.LT(this=e, expression=lit_num(lo)), true=lit_num(lo)),
            exp.If(this=exp.GT(this=e.copy(), expression=lit_num(hi)), true=lit_num(hi)),
        ],
        default=e.copy(),
    )


def literal_value(e: exp.Expression) -> float | None:
    """The number a literal stands for, through the casts to DOUBLE and negations the compiler wraps
    it in (`-5` in a CASE branch is CAST(-CAST(5 AS DOUBLE) AS DOUBLE))."""
    sign = 1.0
    while True:
        if isinstance(e, exp.Cast) and e.to.this == exp.DataType.Type.DOUBLE:
            e = e.this
        elif isinstance(e, exp.Neg):
            sign, e = -sign, e.this
        elif isinstance(e, exp.Paren):
            e = e.this
        else:
            break
    if isinstance(e, exp.Literal) and not e.is_string:
        try:
            return sign * float(e.this)
        except ValueError:
            return None
    return None


def enforce_clamp(e: exp.Expression, lo: float, hi: float) -> exp.Expression:
    """`e` clamped to [lo, hi] in the engine, as `clamp_sql`, with the clamp pushed into the branches of
    a CASE (each branch clamped: the CASE's value is one of them or NULL) and a literal branch clamped
    now, exactly: `CASE WHEN fraud THEN 1 ELSE 0 END` in [0, 1] runs as it is instead of evaluating the
    CASE three times per row."""
    if isinstance(e, exp.Paren):
        return enforce_clamp(e.this, lo, hi)
    if isinstance(e, exp.Null):
        return e.copy()
    v = literal_value(e)
    if v is not None and math.isfinite(v):
        return as_double(lit_num(min(max(v, lo), hi)))
    if isinstance(e, exp.Case) and e.this is None:
        ifs = [exp.If(this=i.this.copy(), true=enforce_clamp(i.args["true"], lo, hi)) for i in e.args["ifs"]]
        default = e.args.get("default")
        return exp.Case(ifs=ifs, default=enforce_clamp(default, lo, hi) if default is not None else exp.Null())
    return clamp_sql(e, lo, hi)


def bounded(iv: Interval | None) -> Interval | None:
    """The interval if it is a usable finite bound, else None."""
    if iv is None or not all(math.isfinite(x) for x in iv) or max(abs(iv[0]), abs(iv[1])) > 1e15:
        return None
    return iv


#: how an error names a value of each type
_WORDS = {
    NUM: "a number", STR: "a text value", BOOL: "a true/false value", DATE: "a date", ID: "an id", NULL: "NULL",
}


def numeric_categories(meta: ColumnMeta) -> tuple[int | float, ...] | None:
    """The public categories of a category column if every one is a number (not true/false), else
    None: such a column is typed as a number (`_numeric_category`)."""
    cats = meta.categories
    if meta.type != ColumnType.CATEGORY or not cats:
        return None
    if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in cats):
        return None
    return tuple(cats)  # type: ignore[arg-type]


PART_FUNCS = {
    exp.Year: "YEAR",
    exp.Quarter: "QUARTER",
    exp.Month: "MONTH",
    exp.Day: "DAY",
    exp.DayOfWeek: "DAYOFWEEK",
    exp.DayOfYear: "DAYOFYEAR",
    exp.Hour: "HOUR",
    exp.Minute: "MINUTE",
    exp.Week: "WEEK",
}
CAST_TARGETS = {
    "DOUBLE": NUM, "FLOAT": NUM, "DECIMAL": NUM, "INT": NUM, "BIGINT": NUM, "INTEGER": NUM,
    "SMALLINT": NUM, "TINYINT": NUM, "VARCHAR": STR, "TEXT": STR, "DATE": DATE, "TIMESTAMP": DATE,
    "BOOLEAN": BOOL,
}
UNARY_NUM = {exp.Abs: "ABS", exp.Floor: "FLOOR", exp.Ceil: "CEIL", exp.Sign: "SIGN"}
STR_FUNCS = {exp.Lower: "LOWER", exp.Upper: "UPPER"}


class ScalarCompiler:
    """Compiles one scalar expression tree. `clamp=True` inside aggregates: numeric columns are
    clamped to their declared bounds, so the result's interval is a true bound on every row's value."""

    def __init__(self, resolve: Resolver, *, clamp: bool, dialect: Dialect = DUCKDB) -> None:
        self.resolve = resolve
        self.clamp = clamp
        self.dialect = dialect

    def refuse(self, name: str, node: exp.Expression) -> Exception:
        """A construct the engine cannot evaluate safely: refused there, never answered wrongly."""
        why = self.dialect.refused[name]
        return unsupported(f"{name} is not available on the {self.dialect.name} engine: {why}", node, name)

    def apply(self, name: str, args: list[Typed], sql: exp.Expression, *, integer: bool = False) -> Typed:
        """A numeric function's value: its bounds and nullability by the dialect's semantics of `name`."""
        if name in self.dialect.refused:
            raise self.refuse(name, sql)
        sem: Semantics = self.dialect[name]
        ops = [a.arg for a in args]
        return Typed(sql, NUM, sem.bound(ops), integer=integer, nullable=sem.may_be_null(ops))

    def __call__(self, node: exp.Expression) -> Typed:
        typed = self.compile(node)
        size = sum(1 for _ in typed.sql.walk())
        if size > MAX_COMPILED_NODES:
            raise unsupported(f"the expression expands to more than {MAX_COMPILED_NODES} parts", node, "query size")
        return typed

    def compile(self, node: exp.Expression) -> Typed:
        name = _CONSTRUCT.get(type(node))
        if name is not None and name in self.dialect.refused:
            raise self.refuse(name, node)
        handler = _HANDLERS.get(type(node))
        if handler is None:
            if isinstance(node, (exp.Subquery, exp.Select)) or node.find(exp.Select):
                raise unsupported("subqueries are not supported", node, "subquery")
            if isinstance(node, exp.Window):
                raise unsupported("window functions are not supported", node, "window function")
            if isinstance(node, exp.AggFunc):
                raise unsupported("aggregates cannot be nested or used here", node)
            raise unsupported("this construct is not in the supported SQL subset", node)
        return handler(self, node)

    # leaves
    def _column(self, node: exp.Column) -> Typed:
        ref = self.resolve(node)
        meta = ref.meta
        t = meta.type
        if t == ColumnType.ID:
            return Typed(ref.sql, ID, column=(ref.alias, ref.name))
        if t in (ColumnType.INT, ColumnType.FLOAT):
            b = meta.bounds
            sql: exp.Expression = ref.sql
            clamped = self.clamp and b is not None
            if clamped:
                sql = ref.clamped_sql if ref.clamped_sql is not None else clamp_sql(ref.sql, *b)  # type: ignore[misc]
            domain = None
            if t == ColumnType.INT and b is not None and b[1] - b[0] < 1000:
                domain = tuple(range(int(b[0]), int(b[1]) + 1)) + ((None,) if meta.nullable else ())
            return Typed(
                sql, NUM, (b if clamped else UNBOUNDED), domain, integer=t == ColumnType.INT,
                column=(ref.alias, ref.name), nullable=meta.nullable,
                stored_clamp=b if clamped and ref.clamped_sql is not None else None,
            )
        if t == ColumnType.CATEGORY:
            numbers = numeric_categories(meta)
            if numbers is not None:
                return self._numeric_category(ref, numbers)
            cats = meta.public_categories
            domain = None if cats is None else cats + ((None,) if meta.nullable else ())
            return Typed(ref.sql, STR, domain=domain, column=(ref.alias, ref.name), nullable=meta.nullable)
        if t == ColumnType.BOOL:
            return Typed(
                ref.sql, BOOL, domain=(False, True) + ((None,) if meta.nullable else ()), column=(ref.alias, ref.name),
                nullable=meta.nullable,
            )
        if t == ColumnType.DATE:
            return Typed(ref.sql, DATE, column=(ref.alias, ref.name), nullable=meta.nullable)
        raise AssertionError(t)

    def _numeric_category(self, ref: ColumnRef, numbers: tuple[int | float, ...]) -> Typed:
        """A category column whose public categories are all numbers (`term`: 36 or 60 months) is a
        number: it compares with numbers, takes arithmetic, and groups into its categories as numbers.
        The engine stores every category as text (a source's 36 or 36.0 both); it is read back with a
        TRY_CAST (to BIGINT where every category is whole: the engine's groups are then the categories'
        own values), so a row whose text is no number is NULL, never a failing query. Inside an
        aggregate it is clamped to the categories' range, enforced in the engine like a declared bound."""
        meta = ref.meta
        whole = all(isinstance(v, int) for v in numbers)
        sql: exp.Expression = exp.TryCast(this=ref.sql, to=exp.DataType.build("BIGINT" if whole else "DOUBLE"))
        interval: Interval = UNBOUNDED
        if self.clamp:
            interval = (float(min(numbers)), float(max(numbers)))
            sql = clamp_sql(sql, *interval)
        return Typed(
            sql, NUM, interval, numbers + ((None,) if meta.nullable else ()),
            integer=whole, column=(ref.alias, ref.name), nullable=meta.nullable,
            stored_clamp=interval if self.clamp else None,
        )

    def _literal(self, node: exp.Literal) -> Typed:
        if node.is_string:
            if len(node.this) > MAX_LITERAL_CHARS:
                raise unsupported(f"string literals are limited to {MAX_LITERAL_CHARS} characters", node, "literal")
            return Typed(exp.Literal.string(node.this), STR, domain=(node.this,), nullable=False)
        try:
            v = float(node.this)
        except ValueError:
            raise InvalidSQL("malformed number", line=position(node)[0], col=position(node)[1]) from None
        if not math.isfinite(v) or abs(v) > 1e15:
            raise unsupported("numeric literals are limited to magnitude 1e15", node, "literal")
        is_int = float(v).is_integer() and "." not in node.this and "e" not in node.this.lower()
        return Typed(lit_num(v), NUM, (v, v), (int(v) if is_int else v,), integer=is_int, nullable=False)

    def _boolean(self, node: exp.Boolean) -> Typed:
        return Typed(exp.Boolean(this=bool(node.this)), BOOL, domain=(bool(node.this),), nullable=False)

    def _null(self, node: exp.Null) -> Typed:
        return Typed(exp.Null(), NULL, domain=(None,))

    def _paren(self, node: exp.Paren) -> Typed:
        inner = self.compile(node.this)
        return Typed(exp.Paren(this=inner.sql), inner.type, inner.interval, inner.domain, inner.integer, nullable=inner.nullable)

    # arithmetic
    def _num(self, node: exp.Expression, what: str) -> Typed:
        t = self.compile(node)
        if t.type not in (NUM, NULL):
            raise unsupported(f"{what} needs a number, got a {t.type} value", node, what)
        return t

    def _binary(self, node: exp.Binary) -> Typed:
        op = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/", exp.Mod: "%"}[type(node)]
        a, b = self._num(node.this, op), self._num(node.expression, op)
        left, right = as_double(a.sql), as_double(b.sql)
        if op in ("/", "%"):
            right = exp.Nullif(this=right, expression=exp.Literal.number(0))
        sql = exp.Paren(this=type(node)(this=left, expression=right))
        return self.apply(op, [a, b], sql)

    def _neg(self, node: exp.Neg) -> Typed:
        a = self._num(node.this, "-")
        return self.apply("NEG", [a], exp.Neg(this=as_double(a.sql)), integer=a.integer)

    def _unary_func(self, node: exp.Expression) -> Typed:
        name = UNARY_NUM[type(node)]
        if isinstance(node, (exp.Floor, exp.Ceil)) and node.args.get("decimals") is not None:
            raise unsupported(f"{name} takes one argument", node)
        a = self._num(node.this, name)
        return self.apply(name, [a], exp.Anonymous(this=name, expressions=[as_double(a.sql)]))

    def _round(self, node: exp.Round) -> Typed:
        a = self._num(node.this, "ROUND")
        digits = node.args.get("decimals")
        args = [as_double(a.sql)]
        d = 0
        if digits is not None:
            whole = whole_number(digits)
            if whole is None:
                raise unsupported("ROUND's digits must be an integer literal", digits, "ROUND")
            d = whole
            if not -15 <= d <= 15:
                raise unsupported("ROUND's digits must be between -15 and 15", digits, "ROUND")
            args.append(exp.Literal.number(d))
        digits_arg = Typed(exp.Literal.number(d), NUM, (float(d), float(d)), nullable=False)
        return self.apply("ROUND", [a, digits_arg], exp.Anonymous(this="ROUND", expressions=args))

    def _least_greatest(self, node: exp.Expression) -> Typed:
        is_least = isinstance(node, exp.Least)
        parts = [self.compile(node.this)] + [self.compile(e) for e in node.expressions]
        types = {p.type for p in parts} - {NULL}
        if len(types) > 1:
            raise unsupported("LEAST/GREATEST need arguments of one type", node)
        t = types.pop() if types else NULL
        sem = self.dialect["LEAST" if is_least else "GREATEST"]
        present = [p.arg for p in parts if p.type != NULL]  # a NULL literal is never an operand that counts
        iv = sem.bound(present) if t == NUM else None
        args = [unify(t, p) for p in parts]
        cls = exp.Least if is_least else exp.Greatest
        # DuckDB's LEAST/GREATEST skip NULLs; saying so keeps sqlglot from repeating the arguments
        return Typed(
            cls(this=args[0], expressions=args[1:], ignore_nulls=True), t, iv, nullable=sem.may_be_null(present) if present else True,
        )

    def _coalesce(self, node: exp.Coalesce) -> Typed:
        parts = [self.compile(node.this)] + [self.compile(e) for e in node.expressions]
        types = {p.type for p in parts} - {NULL}
        if len(types) > 1:
            raise unsupported("COALESCE needs arguments of one type", node)
        t = types.pop() if types else NULL
        sem = self.dialect["COALESCE"]
        present = [p.arg for p in parts if p.type != NULL]
        iv = sem.bound(present) if t == NUM else None
        args = [unify(t, p) for p in parts]
        return Typed(exp.Coalesce(this=args[0], expressions=args[1:]), t, iv, nullable=sem.may_be_null(present) if present else True)

    # predicates
    def _coerce_pair(self, a: Typed, b: Typed, node: exp.Expression) -> tuple[exp.Expression, exp.Expression]:
        if ID in (a.type, b.type):
            return self._coerce_id(a, b, node)
        if a.type == DATE and b.type == STR and isinstance(b.sql, exp.Literal):
            return a.sql, self._date_literal(b.sql.this, node)
        if b.type == DATE and a.type == STR and isinstance(a.sql, exp.Literal):
            return self._date_literal(a.sql.this, node), b.sql
        if a.type == NUM and b.type == STR and isinstance(b.sql, exp.Literal) and self._is_numeric_category(a):
            return a.sql, self._number_literal(b.sql.this, a, node)
        if b.type == NUM and a.type == STR and isinstance(a.sql, exp.Literal) and self._is_numeric_category(b):
            return self._number_literal(a.sql.this, b, node), b.sql
        if NULL in (a.type, b.type) or a.type == b.type:
            return a.sql, b.sql
        if {a.type, b.type} == {STR, NUM}:
            text, number = (a, b) if a.type == STR else (b, a)
            ref = self._ref_of(text)
            if ref is not None and ref.meta.type == ColumnType.CATEGORY:
                v = literal_value(number.sql)
                example = f", e.g. '{int(v) if v.is_integer() else v}'" if v is not None and math.isfinite(v) else ""
                raise unsupported(
                    f"cannot compare {ref.name}, a column of text categories, with a number: write the value as text{example}",
                    node, "comparison",
                )
        raise unsupported(f"cannot compare {_WORDS[a.type]} with {_WORDS[b.type]}", node, "comparison")

    def _is_numeric_category(self, t: Typed) -> bool:
        ref = self._ref_of(t)
        return ref is not None and numeric_categories(ref.meta) is not None

    def _number_literal(self, text: str, column: Typed, node: exp.Expression) -> exp.Expression:
        """A string literal compared with a column of numeric categories (`term = '36'`): the number it
        spells, as the category's text in the engine would be read."""
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not math.isfinite(v) or abs(v) > 1e15:
            name = column.column[1] if column.column else "the value"
            raise unsupported(
                f"cannot compare {name}, a column of numeric categories, with the text {text[:40]!r}: compare it with a number",
                node, "comparison",
            )
        return lit_num(v)

    def _coerce_id(self, a: Typed, b: Typed, node: exp.Expression) -> tuple[exp.Expression, exp.Expression]:
        """Ids keep their source's type (numbers or text), unknown to the planner: compare them in a
        form that cannot fail on any value — as text with text, as a TRY_CAST number with numbers."""
        def text(t: Typed) -> exp.Expression:
            return exp.Cast(this=t.sql, to=exp.DataType.build("VARCHAR"))

        other = b if a.type == ID else a
        if other.type == ID or other.type == STR:
            pair = (text(a) if a.type == ID else a.sql, text(b) if b.type == ID else b.sql)
        elif other.type == NUM:
            def num(t: Typed) -> exp.Expression:
                return exp.TryCast(this=t.sql, to=exp.DataType.build("DOUBLE")) if t.type == ID else t.sql

            pair = (num(a), num(b))
        elif other.type == NULL:
            pair = (a.sql, b.sql)
        else:
            raise unsupported(f"cannot compare an id with a {other.type} value", node, "comparison")
        return pair

    def _date_literal(self, text: str, node: exp.Expression) -> exp.Expression:
        try:
            d = parse_date(text)
        except ValueError:
            line, col = position(node)
            raise InvalidSQL(f"{text[:40]!r} is not an ISO date or timestamp", line=line, col=col) from None
        return exp.Cast(this=exp.Literal.string(d.isoformat(sep=" ")), to=exp.DataType.build("TIMESTAMP"))

    def _compare(self, node: exp.Binary) -> Typed:
        a, b = self.compile(node.this), self.compile(node.expression)
        left, right = self._coerce_pair(a, b, node)
        return Typed(type(node)(this=left, expression=right), BOOL)

    def _between(self, node: exp.Between) -> Typed:
        a = self.compile(node.this)
        lo, hi = self.compile(node.args["low"]), self.compile(node.args["high"])
        x, l = self._coerce_pair(a, lo, node)
        x2, h = self._coerce_pair(a, hi, node)
        # Both bounds must compare with the value in the same form (an id as text with 'a', as a
        # number with 5): mixed forms make the engine cast one side, which can fail on some values.
        if x.sql(dialect="duckdb") != x2.sql(dialect="duckdb"):
            raise unsupported("BETWEEN needs bounds of one type", node, "BETWEEN")
        if a.type == NULL:  # NULL meets any type: the engine still needs the bounds in one type
            l, h = self._coerce_pair(lo, hi, node)
        return Typed(exp.Between(this=x, low=l, high=h), BOOL)

    def _in(self, node: exp.In) -> Typed:
        if node.args.get("query") is not None or node.args.get("unnest") is not None:
            raise unsupported("subqueries are not supported", node, "subquery")
        if len(node.expressions) > 10_000:
            raise unsupported("IN lists are limited to 10000 values", node, "IN")
        if not node.expressions:  # `x IN` and `x IN ()` parse; an empty list is most likely a typo
            line, col = position(node)
            raise InvalidSQL("IN needs a list of values in parentheses: x IN (1, 2)", line=line, col=col)
        a = self.compile(node.this)
        items = [self.compile(e) for e in node.expressions]
        # NULL meets any type, but the engine still needs the list in one type: a NULL value is
        # compared as its first non-NULL item would be
        subject = a if a.type != NULL else next((i for i in items if i.type != NULL), a)
        pairs = [self._coerce_pair(subject, i, node) for i in items]
        lefts = {p[0].sql(dialect="duckdb") for p in pairs}
        if len(lefts) > 1:
            raise unsupported("IN needs values of one type", node, "IN")
        left = a.sql if a.type == NULL else (pairs[0][0] if pairs else a.sql)
        return Typed(exp.In(this=left, expressions=[p[1] for p in pairs]), BOOL)

    def _like(self, node: exp.Expression) -> Typed:
        a = self.compile(node.this)
        pattern = node.expression
        if a.type not in (STR, NULL):
            raise unsupported("LIKE needs a text value", node, "LIKE")
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise unsupported("LIKE's pattern must be a string literal", node, "LIKE")
        p = self._literal(pattern)
        if node.args.get("escape") is not None:
            raise unsupported("LIKE ... ESCAPE is not supported", node, "LIKE ESCAPE")
        return Typed(type(node)(this=a.sql, expression=p.sql), BOOL)

    def _is(self, node: exp.Is) -> Typed:
        a = self.compile(node.this)
        if not isinstance(node.expression, (exp.Null, exp.Boolean)):
            raise unsupported("IS takes NULL, TRUE or FALSE", node, "IS")
        if isinstance(node.expression, exp.Boolean) and a.type not in (BOOL, NULL):
            # the engine would cast the value to BOOLEAN, which fails on some values ('abc' IS TRUE)
            raise unsupported(f"IS TRUE and IS FALSE need a true/false value, got a {a.type} value", node, "IS")
        rhs = exp.Null() if isinstance(node.expression, exp.Null) else exp.Boolean(this=bool(node.expression.this))
        return Typed(exp.Is(this=a.sql, expression=rhs), BOOL)

    def _bool_op(self, node: exp.Expression) -> Typed:
        parts = [self.compile(node.this)]
        if isinstance(node, (exp.And, exp.Or)):
            parts.append(self.compile(node.expression))
        for p in parts:
            if p.type not in (BOOL, NULL):
                raise unsupported(f"{type(node).__name__.upper()} needs true/false operands", node)
        if isinstance(node, exp.Not):
            return Typed(exp.Not(this=parts[0].sql), BOOL)
        return Typed(type(node)(this=parts[0].sql, expression=parts[1].sql), BOOL)

    # conditionals
    def _case(self, node: exp.Case) -> Typed:
        if node.this is not None:  # CASE x WHEN v THEN ... — rewrite to searched form
            subject = node.this
            ifs = [exp.If(this=exp.EQ(this=subject.copy(), expression=i.this), true=i.args["true"]) for i in node.args["ifs"]]
        else:
            ifs = node.args["ifs"]
        branches = []
        results = []
        for i in ifs:
            cond = self.compile(i.this)
            if cond.type not in (BOOL, NULL):
                raise unsupported("CASE WHEN needs a true/false condition", i.this, "CASE")
            val = self.compile(i.args["true"])
            branches.append((cond.sql, val))
            results.append(val)
        default = node.args.get("default")
        dval = self.compile(default) if default is not None else Typed(exp.Null(), NULL, domain=(None,))
        results.append(dval)
        return self._conditional(node, branches, dval, results)

    def _if(self, node: exp.If) -> Typed:
        cond = self.compile(node.this)
        if cond.type not in (BOOL, NULL):
            raise unsupported("IF needs a true/false condition", node.this, "IF")
        val = self.compile(node.args["true"])
        f = node.args.get("false")
        dval = self.compile(f) if f is not None else Typed(exp.Null(), NULL, domain=(None,))
        return self._conditional(node, [(cond.sql, val)], dval, [val, dval])

    def _conditional(self, node, branches, dval: Typed, results: list[Typed]) -> Typed:
        types = {r.type for r in results} - {NULL}
        if len(types) > 1:
            raise unsupported("CASE branches must have one type", node, "CASE")
        t = types.pop() if types else NULL
        sem = self.dialect["CASE"]
        iv = sem.bound([r.arg for r in results if r.type == NUM]) if t == NUM else None
        domain = None
        if all(r.domain is not None and isinstance(r.sql, (exp.Literal, exp.Null, exp.Boolean)) for r in results):
            seen: dict = {}
            for r in results:
                for v in r.domain:  # type: ignore[union-attr]
                    seen.setdefault(v, None)
            domain = tuple(seen)

        def cast(r: Typed) -> exp.Expression:
            return unify(t, r)

        ifs = [exp.If(this=c, true=cast(v)) for c, v in branches]
        return Typed(exp.Case(ifs=ifs, default=cast(dval)), t, iv, domain, nullable=sem.may_be_null([r.arg for r in results]))

    def _cast(self, node: exp.Cast) -> Typed:
        to = node.args["to"]
        target = to.sql(dialect="duckdb").split("(")[0].upper()
        t = CAST_TARGETS.get(target)
        if t is None:
            raise unsupported(f"casts to {target} are not supported", node, "CAST")
        a = self.compile(node.this)
        # DECIMAL is DuckDB's DECIMAL(18, 3), stated: engines differ in their default precision
        sql = exp.TryCast(this=a.sql, to=exp.DataType.build("DECIMAL(18, 3)" if target == "DECIMAL" else target))
        if t != NUM:
            return Typed(sql, t, nullable=self.dialect["CAST"].may_be_null([a.arg]))
        whole = target in ("INT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT")
        if a.type == BOOL:  # true and false cast to 1 and 0
            a = Typed(a.sql, NUM, (0.0, 1.0), integer=True, nullable=a.nullable)
        return self.apply("CAST_INTEGER" if whole else "CAST_NUMBER", [a], sql, integer=whole)

    # dates
    def _part(self, part: str, arg: exp.Expression, node: exp.Expression) -> Typed:
        part = part.upper()
        parts = self.dialect.date_parts
        if part not in parts:
            raise unsupported(f"date part {part} is not supported", node, "date part")
        if part in self.dialect.refused:
            raise self.refuse(part, node)
        a = self.compile(arg)
        if a.type != DATE:
            raise unsupported(f"{part} needs a date value", node, "date part")
        rng = parts[part]
        # A part's own range (MONTH in 1..12) holds for every value; YEAR's range comes from the
        # column's declared bounds, which the data need not respect: an aggregate's clamp holds it
        # there (a date in 2262 must not move a SUM by more than the bounds say).
        domain = None
        if rng is None and a.column is not None:
            b = self._date_bounds(a)
            if b is not None:
                rng = (b[0].year, b[1].year)
        if rng is not None and rng[1] - rng[0] < 10_000:
            domain = tuple(range(rng[0], rng[1] + 1)) + ((None,) if self._nullable(a) else ())
        iv = (float(rng[0]), float(rng[1])) if rng is not None else None
        sql = exp.Extract(this=exp.var(part), expression=a.sql)
        value = self.apply("DATE_PART", [Typed(a.sql, NUM, iv, nullable=a.nullable)], sql, integer=True)
        return Typed(sql, NUM, iv, domain, integer=True, nullable=value.nullable)

    def _date_bounds(self, a: Typed) -> tuple[dt.datetime, dt.datetime] | None:
        ref = self._ref_of(a)
        return None if ref is None else ref.meta.date_bounds

    def _nullable(self, a: Typed) -> bool:
        ref = self._ref_of(a)
        return True if ref is None else ref.meta.nullable

    def _ref_of(self, a: Typed) -> ColumnRef | None:
        if a.column is None:
            return None
        alias, name = a.column
        return self.resolve(exp.column(name, table=alias))

    def _extract(self, node: exp.Extract) -> Typed:
        return self._part(node.this.name, node.expression, node)

    def _part_func(self, node: exp.Expression) -> Typed:
        return self._part(PART_FUNCS[type(node)], node.this, node)

    def _anonymous(self, node: exp.Anonymous) -> Typed:
        name = str(node.this).upper()
        if name in ("DATE_PART", "DATEPART") and len(node.expressions) == 2:
            p = node.expressions[0]
            if isinstance(p, exp.Literal) and p.is_string:
                return self._part(p.this, node.expressions[1], node)
        if name in self.dialect.date_parts and len(node.expressions) == 1:
            return self._part(name, node.expressions[0], node)
        raise unsupported(f"function {name} is not supported", node, f"function {name}")

    def _str_func(self, node: exp.Expression) -> Typed:
        a = self.compile(node.this)
        if a.type not in (STR, NULL):
            raise unsupported(f"{STR_FUNCS[type(node)]} needs a text value", node)
        return Typed(type(node)(this=a.sql), STR)

    def _length(self, node: exp.Length) -> Typed:
        a = self.compile(node.this)
        if a.type not in (STR, NULL):
            raise unsupported("LENGTH needs a text value", node)
        return self.apply("LENGTH", [a], exp.Length(this=a.sql), integer=True)


#: the name a node goes by in a dialect's semantics table and `refused` list (numeric functions are
#: checked where their semantics are applied)
_CONSTRUCT: dict[type, str] = {
    exp.Like: "LIKE", exp.ILike: "ILIKE", exp.Lower: "LOWER", exp.Upper: "UPPER", exp.Coalesce: "COALESCE",
    exp.Case: "CASE", exp.If: "CASE", exp.In: "IN", exp.Between: "BETWEEN", exp.Is: "IS", exp.And: "AND", exp.Or: "OR",
    exp.Not: "NOT", exp.Cast: "CAST", exp.TryCast: "CAST", exp.Least: "LEAST", exp.Greatest: "GREATEST",
    exp.EQ: "COMPARE", exp.NEQ: "COMPARE", exp.GT: "COMPARE", exp.GTE: "COMPARE", exp.LT: "COMPARE", exp.LTE: "COMPARE",
}  # fmt: skip

_HANDLERS: dict[type, Callable[[ScalarCompiler, exp.Expression], Typed]] = {
    exp.Column: ScalarCompiler._column,
    exp.Literal: ScalarCompiler._literal,
    exp.Boolean: ScalarCompiler._boolean,
    exp.Null: ScalarCompiler._null,
    exp.Paren: ScalarCompiler._paren,
    exp.Add: ScalarCompiler._binary,
    exp.Sub: ScalarCompiler._binary,
    exp.Mul: ScalarCompiler._binary,
    exp.Div: ScalarCompiler._binary,
    exp.Mod: ScalarCompiler._binary,
    exp.Neg: ScalarCompiler._neg,
    exp.Round: ScalarCompiler._round,
    exp.Least: ScalarCompiler._least_greatest,
    exp.Greatest: ScalarCompiler._least_greatest,
    exp.Coalesce: ScalarCompiler._coalesce,
    exp.EQ: ScalarCompiler._compare,
    exp.NEQ: ScalarCompiler._compare,
    exp.GT: ScalarCompiler._compare,
    exp.GTE: ScalarCompiler._compare,
    exp.LT: ScalarCompiler._compare,
    exp.LTE: ScalarCompiler._compare,
    exp.Between: ScalarCompiler._between,
    exp.In: ScalarCompiler._in,
    exp.Like: ScalarCompiler._like,
    exp.ILike: ScalarCompiler._like,
    exp.Is: ScalarCompiler._is,
    exp.And: ScalarCompiler._bool_op,
    exp.Or: ScalarCompiler._bool_op,
    exp.Not: ScalarCompiler._bool_op,
    exp.Case: ScalarCompiler._case,
    exp.If: ScalarCompiler._if,
    exp.Cast: ScalarCompiler._cast,
    exp.TryCast: ScalarCompiler._cast,
    exp.Extract: ScalarCompiler._extract,
    exp.Anonymous: ScalarCompiler._anonymous,
    exp.Length: ScalarCompiler._length,
}
for _cls in UNARY_NUM:
    _HANDLERS[_cls] = ScalarCompiler._unary_func
for _cls in PART_FUNCS:
    _HANDLERS[_cls] = ScalarCompiler._part_func
for _cls in STR_FUNCS:
    _HANDLERS[_cls] = ScalarCompiler._str_func
