"""What each allowed scalar function does with NULL, what range its value has, where it can fail: per dialect.

The bounds analysis (`gateway.sql.scalar`) reads this table instead of assuming SQL's textbook rules:
an engine's real semantics decide how one row's value can move an aggregate. (The first wave assumed
that LEAST's operands all count; DuckDB skips NULL operands, so `LEAST(balance, CASE WHEN id = 'c42' THEN
NULL ELSE 0 END)` was bounded by [0, 0] while c42's row carried its balance.) Each entry states:

* ``nulls``: how NULL operands combine (`Nulls`); with ``makes_null``, when NULL comes out of non-NULL
  operands;
* ``interval``: the rule that bounds the value from its operands' bounds, given which operands may be
  NULL (``None`` for non-numeric results); the rule must hold for every finite operand in its bounds;
* ``fails`` and ``overflow``: where the engine could raise or overflow, and what the compiler's rewrite
  does about it (a query never fails because of a value in the data).

Every aggregated value is also clamped in the engine query to the interval found here
(`gateway.sql.plan`), so a wrong entry costs accuracy, never privacy; `tests/sql/test_semantics.py`
checks each entry against the engine, and the soundness fuzzer (`tests/soundness`) the analysis as a
whole.

The planner builds one *portable* tree (`PORTABLE`, below: DuckDB's SQL with DuckDB's semantics) and
knows nothing of the engine that runs it. A dialect says how that tree runs on its engine: `lower`
rewrites the few nodes whose engine SQL differs (a total cast where the engine has no TRY_CAST, a date
part whose numbering differs, LIKE's escape character, arithmetic that would raise on overflow), and
`render` transpiles the result with sqlglot. Where a lowering cannot match the portable semantics
exactly, the dialect's `functions` entry says what its engine really does (`Dialect.override`), and
`refused` lists the constructs it cannot evaluate safely: those are refused on that engine with
`unsupported_sql`, never answered wrongly. DuckDB is the embedded default; PostgreSQL's and Spark's
dialects live beside their engines (`gateway.engines.postgres`, `gateway.engines.spark`).
"""
from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlglot import exp

Interval = tuple[float, float]
#: one operand as the interval rules see it: its bounds (None: unbounded) and whether it may be NULL
Arg = tuple["Interval | None", bool]
INF = math.inf
UNBOUNDED: Interval = (-INF, INF)


class Nulls(enum.Enum):
    PROPAGATE = "NULL if any operand is NULL"
    SKIP = "NULL operands are ignored; NULL only if every operand is"
    FIRST = "the first non-NULL operand; NULL only if every operand is"
    BRANCH = "the value of the branch taken; NULL where that branch is NULL (a CASE without ELSE)"
    THREE_VALUED = "three-valued logic: NULL unless a non-NULL operand decides"
    NEVER = "never NULL"


@dataclass(frozen=True)
class Semantics:
    nulls: Nulls
    interval: Callable[[Sequence[Arg]], Interval] | None = None
    makes_null: str = ""  # when non-NULL operands give NULL ("" = never)
    fails: str = "never"
    overflow: str = "never"

    def may_be_null(self, args: Sequence[Arg]) -> bool:
        """Whether the value may be NULL, given which operands may be."""
        if self.makes_null:
            return True
        nullable = [n for _, n in args]
        if self.nulls in (Nulls.PROPAGATE, Nulls.THREE_VALUED):
            return any(nullable)
        if self.nulls in (Nulls.SKIP, Nulls.FIRST):
            return all(nullable)
        if self.nulls == Nulls.BRANCH:
            return any(nullable)
        return False

    def bound(self, args: Sequence[Arg]) -> Interval:
        assert self.interval is not None, "not a numeric function"
        return self.interval([(iv or UNBOUNDED, n) for iv, n in args])


@dataclass(frozen=True)
class Dialect:
    name: str
    functions: Mapping[str, Semantics]
    #: the range of each date part; None: from the column's declared bounds (YEAR)
    date_parts: Mapping[str, tuple[int, int] | None] = field(default_factory=dict)
    #: the sqlglot dialect the engine SQL is written in
    sqlglot: str = "duckdb"
    #: rewrites one node of the portable tree into this engine's form (None: the node as it is);
    #: applied bottom-up by `render`, so a node's children are already lowered
    lower: Callable[[exp.Expression], exp.Expression | None] | None = None
    #: constructs this engine cannot evaluate safely (a name of `functions`, a date part, or a construct
    #: of `PORTABLE`) -> why; the planner refuses them on this engine with unsupported_sql
    refused: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Semantics:
        return self.functions[name]

    def override(self, name: str, *, functions: Mapping[str, Semantics] | None = None,
                 date_parts: Mapping[str, tuple[int, int] | None] | None = None, sqlglot: str | None = None,
                 lower: Callable[[exp.Expression], exp.Expression | None] | None = None,
                 refused: Mapping[str, str] | None = None) -> Dialect:
        return replace(self, name=name, functions={**self.functions, **(functions or {})},
                       date_parts={**self.date_parts, **(date_parts or {})}, sqlglot=sqlglot or self.sqlglot,
                       lower=lower if lower is not None else self.lower, refused={**self.refused, **(refused or {})})

    def lowered(self, tree: exp.Expression) -> exp.Expression:
        """The portable tree as this engine runs it (a copy; the plan's tree is never changed). Nodes
        are lowered children first (post-order), so a rule sees its operands already lowered."""
        tree = tree.copy()
        if self.lower is None:
            return tree
        for node in reversed(list(tree.walk(bfs=False))):  # pre-order reversed: every child before its parent
            out = self.lower(node)
            if out is None or out is node:
                continue
            if node is tree:
                tree = out
            else:
                node.replace(out)
        return tree

    def render(self, tree: exp.Expression) -> str:
        """The engine SQL of a portable tree: lowered, then transpiled by sqlglot."""
        return self.lowered(tree).sql(dialect=self.sqlglot)


# interval rules ------------------------------------------------------------------------------------

def _mul(x: float, y: float) -> float:
    return 0.0 if x == 0 or y == 0 else x * y  # interval convention: 0 * inf = 0


def _add(args: Sequence[Arg]) -> Interval:
    (a, _), (b, _) = args
    return a[0] + b[0], a[1] + b[1]  # type: ignore[index]


def _sub(args: Sequence[Arg]) -> Interval:
    (a, _), (b, _) = args
    return a[0] - b[1], a[1] - b[0]  # type: ignore[index]


def _times(args: Sequence[Arg]) -> Interval:
    (a, _), (b, _) = args
    ps = [_mul(a[0], b[0]), _mul(a[0], b[1]), _mul(a[1], b[0]), _mul(a[1], b[1])]  # type: ignore[index]
    return min(ps), max(ps)


def _div(args: Sequence[Arg]) -> Interval:
    (a, _), (b, _) = args
    if not (b[0] > 0 or b[1] < 0) or any(math.isinf(x) for x in a):  # type: ignore[index,union-attr]
        return UNBOUNDED  # a divisor near zero is unbounded (exactly zero gives NULL)
    qs = [x / y for x in a for y in b]  # type: ignore[union-attr]
    return min(qs), max(qs)


def _mod(args: Sequence[Arg]) -> Interval:
    (a, _), (b, _) = args
    # fmod: the sign of the dividend, |a % b| < |b| and <= |a|
    m = min(max(abs(b[0]), abs(b[1])), max(abs(a[0]), abs(a[1])))  # type: ignore[index]
    return (-m if a[0] < 0 else 0.0), (m if a[1] > 0 else 0.0)  # type: ignore[index]


def _neg(args: Sequence[Arg]) -> Interval:
    (a, _), = args
    return -a[1], -a[0]  # type: ignore[index]


def _abs(args: Sequence[Arg]) -> Interval:
    ((lo, hi), _), = args  # type: ignore[misc]
    return (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))), max(abs(lo), abs(hi))


def _sign(args: Sequence[Arg]) -> Interval:
    return -1.0, 1.0


def _within_one(args: Sequence[Arg]) -> Interval:
    ((lo, hi), _) = args[0]  # type: ignore[misc]
    return lo - 1, hi + 1  # FLOOR, CEIL and a cast to an integer move a value by less than one


def _round(args: Sequence[Arg]) -> Interval:
    ((lo, hi), _) = args[0]  # type: ignore[misc]
    digits = args[1][0][0] if len(args) > 1 else 0.0  # type: ignore[index]
    step = 10.0 ** (-digits)
    return lo - step, hi + step


def _same(args: Sequence[Arg]) -> Interval:
    return args[0][0]  # type: ignore[return-value]


def _hull(args: Sequence[Arg]) -> Interval:
    ivs = [iv for iv, _ in args]
    return (min(i[0] for i in ivs), max(i[1] for i in ivs)) if ivs else UNBOUNDED  # type: ignore[index]


def _extreme_skipping_nulls(pick: Callable[..., float]) -> Callable[[Sequence[Arg]], Interval]:
    """LEAST (pick=min) or GREATEST (max) over the operands that are not NULL on a row.

    The value is pick over some non-empty subset S of the operands that always holds the never-NULL
    ones. Its far bound is pick over all operands' far bounds (every operand is in some S); its near
    bound is pick over the never-NULL operands' near bounds when there are any (S may be exactly
    them), else the hull of all operands (S may be any single one)."""
    least = pick is min

    def rule(args: Sequence[Arg]) -> Interval:
        ivs = [iv for iv, _ in args]
        sure = [iv for iv, nullable in args if not nullable]
        far = pick(iv[0] if least else iv[1] for iv in ivs)  # type: ignore[index]
        pool = sure or ivs
        opposite = max if least else min
        near = pick(iv[1] if least else iv[0] for iv in pool) if sure else opposite(iv[1] if least else iv[0] for iv in pool)  # type: ignore[index]
        return (far, near) if least else (near, far)

    return rule


def _extreme_propagating(pick: Callable[..., float]) -> Callable[[Sequence[Arg]], Interval]:
    """LEAST/GREATEST where a NULL operand makes the value NULL: every operand counts."""

    def rule(args: Sequence[Arg]) -> Interval:
        ivs = [iv for iv, _ in args]
        return pick(i[0] for i in ivs), pick(i[1] for i in ivs)  # type: ignore[index]

    return rule


def _length(args: Sequence[Arg]) -> Interval:
    return 0.0, INF


_ARITH_FAILS = "never: operands are cast to DOUBLE first (no integer overflow)"
_DOUBLE_OVERFLOW = "to ±inf beyond 1.8e308; an aggregate's clamp maps inf to its bound, NaN to its upper bound"
_PREDICATE = Semantics(Nulls.PROPAGATE, fails="never: operands are brought to one type at plan time (ids as text or TRY_CAST)")

DUCKDB = Dialect(
    "duckdb",
    functions={
        "+": Semantics(Nulls.PROPAGATE, _add, fails=_ARITH_FAILS, overflow=_DOUBLE_OVERFLOW),
        "-": Semantics(Nulls.PROPAGATE, _sub, fails=_ARITH_FAILS, overflow=_DOUBLE_OVERFLOW),
        "*": Semantics(Nulls.PROPAGATE, _times, fails=_ARITH_FAILS, overflow=_DOUBLE_OVERFLOW),
        "/": Semantics(Nulls.PROPAGATE, _div, makes_null="a zero divisor (rewritten as NULLIF(divisor, 0))",
                       fails="division by zero raises: never reached, the divisor is NULLIF'd", overflow=_DOUBLE_OVERFLOW),
        "%": Semantics(Nulls.PROPAGATE, _mod, makes_null="a zero divisor (rewritten as NULLIF(divisor, 0))",
                       fails="modulo by zero raises: never reached, the divisor is NULLIF'd"),
        "NEG": Semantics(Nulls.PROPAGATE, _neg),
        "ABS": Semantics(Nulls.PROPAGATE, _abs),
        "SIGN": Semantics(Nulls.PROPAGATE, _sign),
        "FLOOR": Semantics(Nulls.PROPAGATE, _within_one),
        "CEIL": Semantics(Nulls.PROPAGATE, _within_one),
        "ROUND": Semantics(Nulls.PROPAGATE, _round),
        "LEAST": Semantics(Nulls.SKIP, _extreme_skipping_nulls(min)),
        "GREATEST": Semantics(Nulls.SKIP, _extreme_skipping_nulls(max)),
        "COALESCE": Semantics(Nulls.FIRST, _hull),
        "CASE": Semantics(Nulls.BRANCH, _hull),
        "CAST_NUMBER": Semantics(Nulls.PROPAGATE, _same, makes_null="a value that does not convert (TRY_CAST)",
                                 fails="never: casts are TRY_CASTs"),
        "CAST_INTEGER": Semantics(Nulls.PROPAGATE, _within_one, makes_null="a value that does not convert or does not fit (TRY_CAST)",
                                  fails="never: casts are TRY_CASTs"),
        "CAST": Semantics(Nulls.PROPAGATE, makes_null="a value that does not convert (TRY_CAST)", fails="never: casts are TRY_CASTs"),
        "DATE_PART": Semantics(Nulls.PROPAGATE, _same),  # the part's range is an operand: see date_parts
        "LENGTH": Semantics(Nulls.PROPAGATE, _length),
        "LOWER": Semantics(Nulls.PROPAGATE),
        "UPPER": Semantics(Nulls.PROPAGATE),
        "COMPARE": _PREDICATE,
        "BETWEEN": _PREDICATE,
        "IN": Semantics(Nulls.PROPAGATE, makes_null="no item equal and some item NULL", fails=_PREDICATE.fails),
        "LIKE": Semantics(Nulls.PROPAGATE, fails="never: the pattern is a string literal"),
        "IS": Semantics(Nulls.NEVER),
        "AND": Semantics(Nulls.THREE_VALUED),
        "OR": Semantics(Nulls.THREE_VALUED),
        "NOT": Semantics(Nulls.PROPAGATE),
    },
    date_parts={
        "YEAR": None,
        "QUARTER": (1, 4),
        "MONTH": (1, 12),
        "DAY": (1, 31),
        "DAYOFWEEK": (0, 6),
        "DOW": (0, 6),
        "ISODOW": (1, 7),
        "DAYOFYEAR": (1, 366),
        "DOY": (1, 366),
        "HOUR": (0, 23),
        "MINUTE": (0, 59),
        "WEEK": (1, 53),
    },
)

#: The portable tree: the only node shapes the planner and `gateway.engines.bounding` emit, with DuckDB's
#: semantics. A dialect's `lower` must make each one mean on its engine what it means on DuckDB (or say
#: in `functions` what it means instead, or refuse it).
PORTABLE = {
    "TryCast": "TRY_CAST(x AS DOUBLE|FLOAT|DECIMAL(18, 3)|BIGINT|INT|INTEGER|SMALLINT|TINYINT|VARCHAR|TEXT|TIMESTAMP|"
               "DATE|BOOLEAN): NULL where x does not convert or does not fit (an integer from DOUBLE rounds half to "
               "even, from text half away from zero; NULL for NaN and inf); DuckDB's text grammar",
    "Cast": "CAST(x AS DOUBLE) of a number or bool; CAST(id AS VARCHAR); CAST('iso text' AS TIMESTAMP) of a "
            "literal; CAST(x AS VARCHAR) of a typed value for row identity; never fails",
    "Add/Sub/Mul/Div/Mod/Neg": "IEEE DOUBLE arithmetic: overflow gives ±inf, never an error; the divisor is "
                               "NULLIF(b, 0); Mod is fmod (the sign of the dividend)",
    "ABS/FLOOR/CEIL/SIGN/ROUND": "Anonymous functions over DOUBLE; ROUND(x[, d]) rounds half away from zero",
    "Least/Greatest": "skip NULL operands (ignore_nulls=True); NaN is above every number",
    "Coalesce/Case/If": "standard",
    "EQ/NEQ/LT/LTE/GT/GTE/Between/In/Is/And/Or/Not": "standard three-valued logic; NaN equals NaN and is above "
                                                       "every number (DuckDB's order)",
    "Like/ILike": "pattern is a string literal; no escape character (a backslash is literal)",
    "Lower/Upper/Length": "Length counts characters",
    "Extract": "EXTRACT(PART FROM ts), PART a key of date_parts, DuckDB's numbering (DAYOFWEEK/DOW: Sunday = 0)",
    "MD5/DPipe": "MD5 of text as lowercase hex; || of non-NULL text (row identity and bounding)",
    "Count/Sum": "COUNT(*), COUNT(x), COUNT(DISTINCT x), SUM(x) of DOUBLE",
    "Window": "ROW_NUMBER() OVER (PARTITION BY unit ORDER BY row identity ...) with QUALIFY (bounding)",
    "Group": "GROUP BY positions 1..n",
}

DIALECTS: dict[str, Dialect] = {"duckdb": DUCKDB}


def dialect(name: str) -> Dialect:
    return DIALECTS[name]
