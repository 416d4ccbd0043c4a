"""The dialect's semantics table (`gateway.sql.semantics`) checked against the engine itself.

Two checks per entry: its NULL rule, by evaluating the function on NULL and non-NULL operands in
DuckDB; and, for numeric functions, its interval rule, by compiling expressions with the bounds
analysis and evaluating them in DuckDB over random and extreme operands inside their bounds, where
each value must lie in the interval found and be non-NULL wherever the analysis says so. Every
entry of the table must have a check here: a function added without one fails the coverage test.
"""
from __future__ import annotations

import itertools
import math
import random

import duckdb
import pytest
from sqlglot import exp, parse_one

from gateway.catalog import ColumnMeta, ColumnType
from gateway.sql.scalar import ColumnRef, ScalarCompiler
from gateway.sql.semantics import DUCKDB, Nulls

CON = duckdb.connect()

# The SQL form each entry stands for in the engine, with its operands as {0}, {1}, ... (the forms
# the compiler emits: divisors are NULLIF'd, casts are TRY_CASTs). Operands: n = number, b = bool, s = text.
FORMS: dict[str, tuple[str, str]] = {
    "+": ("{0} + {1}", "nn"),
    "-": ("{0} - {1}", "nn"),
    "*": ("{0} * {1}", "nn"),
    "/": ("{0} / NULLIF({1}, 0)", "nn"),
    "%": ("{0} % NULLIF({1}, 0)", "nn"),
    "NEG": ("-({0})", "n"),
    "ABS": ("ABS({0})", "n"),
    "SIGN": ("SIGN({0})", "n"),
    "FLOOR": ("FLOOR({0})", "n"),
    "CEIL": ("CEIL({0})", "n"),
    "ROUND": ("ROUND({0}, 1)", "n"),
    "LEAST": ("LEAST({0}, {1})", "nn"),
    "GREATEST": ("GREATEST({0}, {1})", "nn"),
    "COALESCE": ("COALESCE({0}, {1})", "nn"),
    "CASE": ("CASE WHEN TRUE THEN {0} ELSE {1} END", "nn"),
    "CAST_NUMBER": ("TRY_CAST({0} AS DOUBLE)", "n"),
    "CAST_INTEGER": ("TRY_CAST({0} AS BIGINT)", "n"),
    "CAST": ("TRY_CAST({0} AS VARCHAR)", "n"),
    "DATE_PART": ("EXTRACT(month FROM TIMESTAMP '2025-01-01' + TO_DAYS(CAST({0} AS INTEGER)))", "n"),
    "LENGTH": ("LENGTH({0})", "s"),
    "LOWER": ("LOWER({0})", "s"),
    "UPPER": ("UPPER({0})", "s"),
    "COMPARE": ("{0} < {1}", "nn"),
    "BETWEEN": ("{0} BETWEEN {1} AND 10", "nn"),
    "IN": ("{0} IN ({1}, 5)", "nn"),
    "LIKE": ("{0} LIKE 'a%'", "s"),
    "IS": ("{0} IS NULL", "n"),
    "AND": ("{0} AND {1}", "bb"),
    "OR": ("{0} OR {1}", "bb"),
    "NOT": ("NOT {0}", "b"),
}
VALUES = {"n": ["1.5", "-2.0", "0.0", "7.0"], "b": ["TRUE", "FALSE"], "s": ["'abc'", "''", "'A'"]}
NULLS = {"n": "CAST(NULL AS DOUBLE)", "b": "CAST(NULL AS BOOLEAN)", "s": "CAST(NULL AS VARCHAR)"}


def _eval(sql: str) -> object:
    return CON.execute(f"SELECT {sql}").fetchone()[0]  # type: ignore[index]


def test_every_entry_of_the_table_is_checked_against_the_engine() -> None:
    assert set(FORMS) == set(DUCKDB.functions)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_null_rule_holds_in_the_engine(name: str) -> None:
    form, kinds = FORMS[name]
    sem = DUCKDB[name]
    for pattern in itertools.product([False, True], repeat=len(kinds)):  # True: that operand is NULL
        for values in itertools.product(*(VALUES[k] for k in kinds)):
            ops = [NULLS[k] if null else v for k, null, v in zip(kinds, pattern, values)]
            out = _eval(form.format(*ops))
            if sem.nulls == Nulls.PROPAGATE and any(pattern):
                assert out is None, (name, ops, out)
            elif sem.nulls in (Nulls.SKIP, Nulls.FIRST):
                assert (out is None) == all(pattern) or (sem.makes_null and not all(pattern)), (name, ops, out)
            elif sem.nulls == Nulls.NEVER:
                assert out is not None, (name, ops)
            elif sem.nulls == Nulls.THREE_VALUED and any(pattern):
                decided = [v for null, v in zip(pattern, values) if not null]
                decisive = ("FALSE" if name == "AND" else "TRUE") in decided
                assert (out is None) != decisive, (name, ops, out)
            if not any(pattern) and not sem.makes_null:
                assert out is not None, (name, ops)  # non-NULL operands give NULL only where the table says


def test_functions_that_make_null_from_values_do_so_where_the_table_says() -> None:
    assert _eval(FORMS["/"][0].format("1.0", "0.0")) is None
    assert _eval(FORMS["%"][0].format("1.0", "0.0")) is None
    assert _eval("TRY_CAST('x' AS DOUBLE)") is None
    assert _eval("TRY_CAST(1e300 AS BIGINT)") is None
    assert _eval("2 IN (1, NULL)") is None
    for name, sem in DUCKDB.functions.items():
        if name not in ("/", "%", "CAST_NUMBER", "CAST_INTEGER", "CAST", "IN"):
            assert not sem.makes_null, name


# intervals ------------------------------------------------------------------------------------------

BOUNDS = [(0.0, 1000.0), (-1000.0, 5000.0), (-3.5, -0.25), (0.0, 0.0), (1e-3, 2e-3), (-1e12, 1e12)]


def _resolver(columns: dict[str, tuple[float, float, bool]]):  # type: ignore[no-untyped-def]
    def resolve(node: exp.Column) -> ColumnRef:
        lo, hi, nullable = columns[node.name]
        meta = ColumnMeta(type=ColumnType.FLOAT, lower=lo, upper=hi, nullable=nullable) if lo < hi else ColumnMeta(
            type=ColumnType.FLOAT, lower=lo - 1, upper=hi + 1, nullable=nullable
        )
        return ColumnRef(alias="t", name=node.name, meta=meta, sql=exp.column(node.name, table="t"), is_unit=False)

    return resolve


def _operands(lo: float, hi: float, rng: random.Random) -> list[float]:
    inside = [lo, hi, (lo + hi) / 2] + [rng.uniform(lo, hi) for _ in range(5)]
    if lo <= 0 <= hi:
        inside += [0.0, -0.0]
    return inside


NUMERIC_FORMS = {
    "+": "a + b", "-": "a - b", "*": "a * b", "/": "a / b", "%": "a % b", "NEG": "-a", "ABS": "ABS(a)",
    "SIGN": "SIGN(a)", "FLOOR": "FLOOR(a)", "CEIL": "CEIL(a)", "ROUND": "ROUND(a, 1)", "LEAST": "LEAST(a, b)",
    "GREATEST": "GREATEST(a, b)", "COALESCE": "COALESCE(a, b)", "CASE": "CASE WHEN a > b THEN a END",
    "CAST_NUMBER": "CAST(a AS DOUBLE)", "CAST_INTEGER": "CAST(a AS BIGINT)", "LENGTH": "LENGTH(CAST(a AS VARCHAR))",
}


def test_every_numeric_entry_has_an_interval_check() -> None:
    numeric = {n for n, s in DUCKDB.functions.items() if s.interval is not None} - {"DATE_PART"}  # date parts: below
    assert numeric == set(NUMERIC_FORMS)


@pytest.mark.parametrize("name", sorted(NUMERIC_FORMS))
def test_interval_rule_bounds_every_value_the_engine_computes(name: str) -> None:
    _check_intervals(name, [BOUNDS[0], BOUNDS[2], BOUNDS[3], BOUNDS[5]])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NUMERIC_FORMS))
def test_interval_rule_over_every_pair_of_bounds(name: str) -> None:
    _check_intervals(name, BOUNDS)


def _check_intervals(name: str, bounds: list[tuple[float, float]]) -> None:
    rng = random.Random(sum(map(ord, name)))
    cases, parts = [], []
    for (ba, bb), (na, nb) in itertools.product(itertools.product(bounds, bounds), itertools.product([False, True], repeat=2)):
        compiler = ScalarCompiler(_resolver({"a": (*ba, na), "b": (*bb, nb)}), clamp=True)
        typed = compiler(parse_one(NUMERIC_FORMS[name], read="duckdb"))
        # operands anywhere inside their declared bounds (a degenerate [c, c] is declared [c - 1, c + 1])
        a_vals = _operands(*(ba if ba[0] < ba[1] else (ba[0] - 1, ba[1] + 1)), rng) + ([None] if na else [])
        b_vals = _operands(*(bb if bb[0] < bb[1] else (bb[0] - 1, bb[1] + 1)), rng) + ([None] if nb else [])
        rows = ", ".join(f"({_lit(x)}, {_lit(y)})" for x, y in itertools.product(a_vals, b_vals))
        parts.append(f"SELECT {len(cases)} AS c, {typed.sql.sql(dialect='duckdb')} AS v FROM (VALUES {rows}) AS t(a, b)")
        cases.append((ba, bb, na, nb, typed))
    for c, v in CON.execute(" UNION ALL ".join(parts)).fetchall():
        ba, bb, na, nb, typed = cases[c]
        if v is None:
            assert typed.nullable, (name, ba, bb, na, nb, "NULL where the analysis says never")
            continue
        lo, hi = typed.interval
        tol = 1e-9 * max(1.0, abs(lo), abs(hi))
        assert lo - tol <= float(v) <= hi + tol, (name, ba, bb, na, nb, v, (lo, hi))


def _lit(x: float | None) -> str:
    if x is None:
        return "CAST(NULL AS DOUBLE)"
    return f"CAST({x!r} AS DOUBLE)" if math.isfinite(x) else f"CAST('{x!r}' AS DOUBLE)"


def test_least_skips_a_null_operand_and_its_bound_says_so() -> None:
    """The review's case: LEAST(balance, CASE WHEN ... THEN NULL ELSE 0 END) takes balance's value on the
    row where the CASE is NULL, so its upper bound is balance's, not 0."""
    compiler = ScalarCompiler(_resolver({"a": (0.0, 5000.0, False)}), clamp=True)
    typed = compiler(parse_one("LEAST(a, CASE WHEN a > 4000 THEN NULL ELSE 0 END)", read="duckdb"))
    assert typed.interval == (0.0, 5000.0)
    assert _eval("LEAST(4500.0, NULL)") == 4500.0
    sure = compiler(parse_one("LEAST(a, 100)", read="duckdb"))  # a never-NULL operand caps the value
    assert sure.interval == (0.0, 100.0)


@pytest.mark.parametrize("part", sorted(p for p, r in DUCKDB.date_parts.items() if r is not None))
def test_date_part_ranges_hold_in_the_engine(part: str) -> None:
    lo, hi = DUCKDB.date_parts[part]  # type: ignore[misc]
    got = CON.execute(
        f"SELECT MIN(EXTRACT({part} FROM d)), MAX(EXTRACT({part} FROM d)) FROM ("
        "SELECT TIMESTAMP '0001-01-01' + TO_HOURS(h) AS d FROM range(0, 24 * 366 * 30, 7) AS r(h) "
        "UNION ALL SELECT TIMESTAMP '9999-12-31 23:59:59' UNION ALL SELECT TIMESTAMP '2024-12-30' "
        "UNION ALL SELECT TIMESTAMP '2020-12-31 23:00:00')"
    ).fetchone()
    assert lo <= got[0] and got[1] <= hi, (part, got)  # type: ignore[index]
