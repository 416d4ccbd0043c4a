"""The attack corpus: hand-written cases (attack_corpus.sql) and parametric families built here.

A case is an adversarial query and the outcome the gateway must give it: `answered` (a DP answer) or the
stable problem `code` it is refused with. The data sets the corpus runs on are built here too:

- `clean_frames()`: the bank tables with text ids, where every cast and division in the corpus succeeds;
- `failing_frames()`: the same tables with one transaction changed so that casts, divisions and date
  parsing fail on it (qty 0, a city and a note that are not numbers, dates or booleans, an amount far
  outside its bounds, a timestamp far outside its declared range, ids that are not numbers);
- `neighbour_frames()`: the clean tables plus one extra unit with extreme values (a neighbouring data set
  under user-level DP), for the sensitivity check of every answered case.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import bank_frames

HERE = Path(__file__).parent
CATEGORIES = (
    "subquery",
    "set_operation",
    "comments_unicode",
    "multi_statement",
    "ddl_dml_system",
    "huge_literals",
    "failing_rows",
    "privacy_unit",
    "joins",
    "unbounded_groups",
    "row_release",
    "huge_trees",
    "null_tricks",
    "case_tricks",
    "side_effects",
)
CODES = {"answered", "invalid_sql", "unsupported_sql", "unknown_table", "unknown_column", "invalid_request"}


@dataclass(frozen=True)
class Case:
    title: str
    category: str
    sql: str
    expect: str  # "answered" or a problem code
    delta: float = 0.0

    @property
    def id(self) -> str:
        return f"{self.category}: {self.title}"


# ----------------------------------------------------------------------------------- the file

_ESCAPE = re.compile(r"\\u\{([0-9a-fA-F]{1,6})\}")


def load_file(path: Path = HERE / "attack_corpus.sql") -> list[Case]:
    text = path.read_text(encoding="utf-8")
    cases = []
    for block in re.split(r"\n(?=-- title:)", text):
        if not re.search(r"^-- title:", block, flags=re.M):
            continue
        meta = dict(re.findall(r"^-- (\w+): (.*)$", block, flags=re.M))
        lines = [line for line in block.splitlines() if not re.match(r"^-- \w+: ", line)]
        while lines and (not lines[-1].strip() or lines[-1].startswith("-- =")):
            lines.pop()  # section headers belong to no case
        sql = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), "\n".join(lines).strip())
        cases.append(Case(meta["title"], meta["category"], sql, meta["expect"], float(meta.get("delta", 0))))
    return cases


# ----------------------------------------------------------------------------------- families


def _privacy_unit() -> list[Case]:
    """The unit, plain and disguised, as a GROUP BY key (always refused) and as a filter (a filter on
    the unit is an ordinary noisy aggregate: it selects whole units)."""
    out = []
    disguised = {
        "plain": ("cid", "unsupported_sql"),
        "qualified": ("t.cid", "unsupported_sql"),
        "quoted upper": ('"CID"', "unsupported_sql"),
        "cast to text": ("CAST(t.cid AS TEXT)", "unsupported_sql"),
        "cast to varchar": ("CAST(cid AS VARCHAR)", "unsupported_sql"),
        "cast to int": ("CAST(cid AS INT)", "unsupported_sql"),
        "cast to double": ("CAST(cid AS DOUBLE)", "unsupported_sql"),
        "try_cast to bigint": ("TRY_CAST(cid AS BIGINT)", "unsupported_sql"),
        "plus zero": ("cid + 0", "unsupported_sql"),
        "times one": ("cid * 1", "unsupported_sql"),
        "modulo 2": ("cid % 2", "unsupported_sql"),
        "cast modulo 2": ("CAST(cid AS INT) % 2", "unsupported_sql"),
        "cast modulo 10": ("CAST(cid AS INT) % 10", "unsupported_sql"),
        "cast divided": ("FLOOR(CAST(cid AS DOUBLE) / 10)", "unsupported_sql"),
        "lower": ("lower(cid)", "unsupported_sql"),
        "lower of text": ("LOWER(CAST(cid AS TEXT))", "unsupported_sql"),
        "upper of text": ("UPPER(CAST(cid AS TEXT))", "unsupported_sql"),
        "length of text": ("LENGTH(CAST(cid AS TEXT))", "unsupported_sql"),
        "hash": ("hash(cid)", "unsupported_sql"),
        "md5": ("md5(CAST(cid AS TEXT))", "unsupported_sql"),
        "concat": ("cid || ''", "unsupported_sql"),
        "coalesce": ("COALESCE(cid, tid)", "unsupported_sql"),
        "least": ("LEAST(cid, tid)", "unsupported_sql"),
        "case on unit": ("CASE WHEN cid = 7 THEN 'a' ELSE 'b' END", "unsupported_sql"),
        "case returning unit": ("CASE WHEN flag THEN cid END", "unsupported_sql"),
        "comparison": ("cid > 100", "unsupported_sql"),
        "in list": ("cid IN (1, 2, 3)", "unsupported_sql"),
        "is null": ("cid IS NULL", "unsupported_sql"),
        "abs of cast": ("ABS(CAST(cid AS DOUBLE))", "unsupported_sql"),
        "round of cast": ("ROUND(CAST(cid AS DOUBLE), -1)", "unsupported_sql"),
    }
    for name, (expr, code) in disguised.items():
        for delta in (0.0, 1e-6):
            title = f"GROUP BY the unit disguised as {name}" + (" with delta" if delta else "")
            out.append(Case(title, "privacy_unit", f"SELECT {expr} AS k, COUNT(*) FROM tx t GROUP BY k", code, delta))
    filters = {
        "equality": ("cid = 7", "answered"),
        "text equality": ("cid = '7'", "answered"),
        "cast equality": ("CAST(cid AS INT) = 7", "answered"),
        "cast text equality": ("CAST(cid AS TEXT) = '7'", "answered"),
        "cast modulo": ("CAST(cid AS INT) % 2 = 0", "answered"),
        "cast lower": ("LOWER(CAST(cid AS TEXT)) = '7'", "answered"),
        "in list": ("cid IN (7, 8)", "answered"),
        "range": ("cid >= 7 AND cid <= 7", "answered"),
        "not equal": ("NOT cid <> 7", "answered"),
        "case": ("CASE WHEN cid = 7 THEN TRUE ELSE FALSE END", "answered"),
        "plus zero": ("cid + 0 = 7", "unsupported_sql"),
        "hash": ("hash(cid) = 7", "unsupported_sql"),
        "lower": ("lower(cid) = '7'", "unsupported_sql"),
        "like": ("cid LIKE '7'", "unsupported_sql"),
    }
    for name, (cond, code) in filters.items():
        for agg in ("COUNT(*)", "SUM(amount)", "AVG(amount)", "MAX(amount)"):
            out.append(Case(f"{agg} of one unit by {name}", "privacy_unit", f"SELECT {agg} FROM tx WHERE {cond}", code))
    return out


def _joins() -> list[Case]:
    """Joins of every pair of private tables, on the unit (answered, bounded) and on anything else
    (refused: such joins multiply one unit's contribution by other units' rows)."""
    out = []
    pairs = [("tx", "cust"), ("tx", "acct"), ("cust", "acct"), ("tx", "tx"), ("acct", "acct")]
    others = {
        "other columns": "a.{c1} = b.{c2}",
        "unit inequality": "a.cid <> b.cid",
        "unit less than": "a.cid < b.cid",
        "TRUE": "TRUE",
        "unit and a filter": "a.cid = b.cid AND TRUE",
        "unit cast": "CAST(a.cid AS TEXT) = CAST(b.cid AS TEXT)",
    }
    cols = {"tx": "qty", "cust": "age", "acct": "balance"}
    for left, right in pairs:
        out.append(Case(f"{left} joined with {right} on the unit", "joins", f"SELECT COUNT(*) FROM {left} a JOIN {right} b ON a.cid = b.cid", "answered"))
        out.append(Case(f"{left} left-joined with {right} on the unit", "joins", f"SELECT COUNT(*) FROM {left} a LEFT JOIN {right} b ON a.cid = b.cid", "answered"))
        out.append(Case(f"{left} cross-joined with {right}", "joins", f"SELECT COUNT(*) FROM {left} a CROSS JOIN {right} b", "unsupported_sql"))
        for name, cond in others.items():
            on = cond.format(c1=cols[left], c2=cols[right])
            out.append(Case(f"{left} joined with {right} on {name}", "joins", f"SELECT COUNT(*) FROM {left} a JOIN {right} b ON {on}", "unsupported_sql"))
    return out


def _unbounded_groups() -> list[Case]:
    """GROUP BY keys without a public list of values: refused with δ = 0, answered by threshold
    partition selection with δ > 0; keys with a public list (or a small declared range) are answered."""
    out = []
    unbounded = {
        "a category without a list": "city",
        "the amount": "amount",
        "the rounded amount": "ROUND(amount, 1)",
        "the floored amount": "FLOOR(amount)",
        "the amount cast to int": "CAST(amount AS INT)",
        "the timestamp": "ts",
        "the date": "CAST(ts AS DATE)",
        "a lowered category": "LOWER(city)",
        "a category length": "LENGTH(city)",
        "a transaction id as text": "CAST(tid AS TEXT)",
        "a customer age plus amount": "qty + amount",
        "a city cast to a number": "CAST(city AS INT)",
        "a note coalesced with a city": "COALESCE(note, city)",
        "a year of a parsed city": "EXTRACT(year FROM CAST(city AS DATE))",
        "a category compared": "city = 'rare'",
        "a comparison": "amount > 500",
        "a NULL test": "qty IS NULL",
    }
    for name, expr in unbounded.items():
        out.append(Case(f"GROUP BY {name} without delta", "unbounded_groups", f"SELECT {expr} AS k, COUNT(*) FROM tx GROUP BY k", "unsupported_sql"))
        out.append(Case(f"GROUP BY {name} with delta", "unbounded_groups", f"SELECT {expr} AS k, COUNT(*), SUM(amount) FROM tx GROUP BY k", "answered", 1e-6))
    public = {
        "a category with a list": "cat",
        "a nullable category with a list": "note",
        "a boolean": "flag",
        "a bounded integer": "qty",
        "a month": "EXTRACT(month FROM ts)",
        "a weekday": "EXTRACT(dow FROM ts)",
        "an hour": "HOUR(ts)",
        "a year in the declared range": "YEAR(ts)",
        "a literal CASE bucket": "CASE WHEN amount > 100 THEN 'hi' ELSE 'lo' END",
    }
    for name, expr in public.items():
        out.append(Case(f"GROUP BY {name}", "unbounded_groups", f"SELECT {expr} AS k, COUNT(*), AVG(amount) FROM tx GROUP BY k", "answered"))
    return out


def _row_release() -> list[Case]:
    """Aggregates that would return rows or single values (refused) and window functions."""
    out = []
    aggregates = [
        "ARRAY_AGG", "STRING_AGG", "LIST", "FIRST", "LAST", "ANY_VALUE", "ARBITRARY", "MODE", "HISTOGRAM",
        "GROUP_CONCAT", "LISTAGG", "BIT_AND", "BIT_OR", "BOOL_AND", "PRODUCT", "APPROX_COUNT_DISTINCT",
        "ENTROPY", "KURTOSIS", "SKEWNESS", "MAD", "FSUM", "FAVG",
    ]
    for func in aggregates:
        for col in ("amount", "cid"):
            args = f"{col}, ','" if func in ("STRING_AGG", "GROUP_CONCAT", "LISTAGG") else col
            out.append(Case(f"{func} of {col}", "row_release", f"SELECT {func}({args}) FROM tx", "unsupported_sql"))
    for func in ("ARG_MAX", "ARG_MIN", "MAX_BY", "MIN_BY"):
        for col in ("cid", "tid", "city"):
            out.append(Case(f"{func} of {col} by amount", "row_release", f"SELECT {func}({col}, amount) FROM tx", "unsupported_sql"))
    windows = [
        "ROW_NUMBER() OVER (ORDER BY amount)", "RANK() OVER (PARTITION BY cid ORDER BY amount)",
        "DENSE_RANK() OVER (ORDER BY ts)", "LAG(amount) OVER (ORDER BY ts)", "LEAD(amount, 1) OVER (ORDER BY ts)",
        "FIRST_VALUE(amount) OVER (PARTITION BY cid)", "LAST_VALUE(amount) OVER (ORDER BY amount)",
        "NTH_VALUE(amount, 2) OVER (ORDER BY amount)", "NTILE(100) OVER (ORDER BY amount)",
        "SUM(amount) OVER (PARTITION BY cid)", "COUNT(*) OVER (PARTITION BY cid)", "AVG(amount) OVER ()",
        "MAX(amount) OVER (ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)", "PERCENT_RANK() OVER (ORDER BY amount)",
        "CUME_DIST() OVER (ORDER BY amount)",
    ]
    for w in windows:
        out.append(Case(f"window {w.split('(')[0]} {len(out)}", "row_release", f"SELECT {w} FROM tx", "unsupported_sql"))
    for col in ("amount", "cid", "tid", "ts", "city", "qty"):
        out.append(Case(f"raw {col} ordered with LIMIT", "row_release", f"SELECT {col} FROM tx ORDER BY {col} DESC LIMIT 1", "unsupported_sql"))
        out.append(Case(f"DISTINCT {col}", "row_release", f"SELECT DISTINCT {col} FROM tx", "unsupported_sql"))
    for col in ("amount", "qty", "balance"):
        table = "acct" if col == "balance" else "tx"
        for func in ("MIN", "MAX", "MEDIAN"):
            out.append(Case(f"{func} of {col} by the exponential mechanism", "row_release", f"SELECT {func}({col}) FROM {table}", "answered"))
    return out


def _failing_rows() -> list[Case]:
    """Expressions that fail (or divide by zero) on the failing row, in every place an expression goes.
    They evaluate to NULL there: the answer must not depend on whether such a row exists."""
    out = []
    numeric = {
        "1/(amount - 2e6)": "1 / (amount - 2000000)",
        "amount/qty": "amount / qty",
        "amount%qty": "amount % qty",
        "cast city int": "CAST(city AS INT)",
        "cast city double": "CAST(city AS DOUBLE)",
        "cast city decimal": "CAST(city AS DECIMAL(8,2))",
        "cast note int": "CAST(note AS INT)",
        "cast tid bigint": "CAST(tid AS BIGINT)",
        "cast cid double": "CAST(cid AS DOUBLE)",
        "year of parsed city": "EXTRACT(year FROM CAST(city AS DATE))",
        "1/(length(city) - 12)": "1 / (LENGTH(city) - 12)",
        "cast of amount to smallint times 1e6": "CAST(amount * 1000000 AS SMALLINT)",
    }
    for name, e in numeric.items():
        out.append(Case(f"WHERE on {name}", "failing_rows", f"SELECT COUNT(*) FROM tx WHERE {e} > 1", "answered"))
        out.append(Case(f"clamped SUM of {name}", "failing_rows", f"SELECT SUM(LEAST(GREATEST({e}, 0), 100)) FROM tx", "answered"))
        out.append(Case(f"clamped AVG and MEDIAN of {name}", "failing_rows", f"SELECT AVG(LEAST(GREATEST({e}, 0), 100)), MEDIAN(LEAST(GREATEST({e}, 0), 100)) FROM tx", "answered"))
        out.append(Case(f"COUNT of {name}", "failing_rows", f"SELECT cat, COUNT({e}) FROM tx GROUP BY cat", "answered"))
        on_unit = "cid" in e  # a key computed from the unit is refused, whatever the expression
        out.append(Case(f"CASE key on {name}", "failing_rows", f"SELECT CASE WHEN {e} > 1 THEN 'a' ELSE 'b' END AS k, COUNT(*) FROM tx GROUP BY k", "unsupported_sql" if on_unit else "answered"))
        # inside an aggregate, amount and qty are clamped first: 1/(amount - 2e6) and amount % qty are bounded
        bounded = name in ("1/(amount - 2e6)", "amount%qty", "cast of amount to smallint times 1e6")
        out.append(Case(f"unclamped SUM of {name}", "failing_rows", f"SELECT SUM({e}) FROM tx", "answered" if bounded else "unsupported_sql"))
    dates = {
        "city as date": "CAST(city AS DATE)",
        "city as timestamp": "CAST(city AS TIMESTAMP)",
        "note as date": "TRY_CAST(note AS DATE)",
    }
    for name, e in dates.items():
        out.append(Case(f"date comparison on {name}", "failing_rows", f"SELECT COUNT(*) FROM tx WHERE {e} > '2025-01-01'", "answered"))
        out.append(Case(f"month of {name}", "failing_rows", f"SELECT COUNT(*) FROM tx WHERE MONTH({e}) = 1", "answered"))
        out.append(Case(f"date key of {name}", "failing_rows", f"SELECT {e} AS d, COUNT(*) FROM tx GROUP BY d HAVING d > '2000-01-01'", "answered", 1e-6))
    for name, e in {"note as boolean": "CAST(note AS BOOLEAN)", "city as boolean": "CAST(city AS BOOLEAN)"}.items():
        out.append(Case(f"filter on {name}", "failing_rows", f"SELECT COUNT(*) FROM tx WHERE {e}", "answered"))
        out.append(Case(f"key of {name}", "failing_rows", f"SELECT {e} AS b, COUNT(*) FROM tx GROUP BY b", "answered", 1e-6))
    for func in ("ln", "log", "log2", "log10", "sqrt", "cbrt", "exp", "acos", "asin", "atan2"):
        args = "amount - 500, 1" if func == "atan2" else "amount - 500"
        out.append(Case(f"{func} of values negative on some rows", "failing_rows", f"SELECT COUNT(*) FROM tx WHERE {func}({args}) > 0", "unsupported_sql"))
    for col in ("city", "note", "cat"):
        out.append(Case(f"{col} IS TRUE", "failing_rows", f"SELECT COUNT(*) FROM tx WHERE {col} IS TRUE", "unsupported_sql"))
    return out


def _huge_literals() -> list[Case]:
    """Numeric literals beyond ±1e15 (and non-finite ones) are refused wherever they appear; strings
    beyond 1,000 characters too; those within the limits are answered."""
    out = []
    too_big = {
        "1e308": "1e308", "1e309": "1e309", "2^63": "9223372036854775808", "2^63-1": "9223372036854775807",
        "-2^63-1": "-9223372036854775809", "2^64": "18446744073709551616", "max double": "1.7976931348623157e308",
        "1e15+1": "1000000000000001", "400 digits": "9" * 400, "1e1000": "1e1000",
    }
    contexts = {
        "WHERE": "SELECT COUNT(*) FROM tx WHERE amount > {v}",
        "SUM": "SELECT SUM({v}) FROM tx",
        "SUM times": "SELECT SUM(LEAST(GREATEST(amount * {v}, 0), 1)) FROM tx",
        "IN list": "SELECT COUNT(*) FROM tx WHERE qty IN (1, {v})",
        "CASE": "SELECT SUM(CASE WHEN flag THEN {v} ELSE 0 END) FROM tx",
        "HAVING": "SELECT cat, COUNT(*) FROM tx GROUP BY cat HAVING COUNT(*) < {v}",
    }
    for name, v in too_big.items():
        for where, template in contexts.items():
            out.append(Case(f"{name} in {where}", "huge_literals", template.format(v=v), "unsupported_sql"))
    for name, v in {"1e15": "1e15", "-1e15": "-1e15", "1e-400": "1e-400", "2^31": "2147483648", "tiny": "0." + "0" * 300 + "1"}.items():
        out.append(Case(f"{name} in a filter is within the limits", "huge_literals", f"SELECT COUNT(*) FROM tx WHERE amount > {v}", "answered"))
    out.append(Case("1e309 as a LIMIT", "huge_literals", "SELECT COUNT(*) FROM tx LIMIT 1e309", "unsupported_sql"))
    out.append(Case("1e309 as ROUND digits", "huge_literals", "SELECT COUNT(*) FROM tx WHERE ROUND(amount, 1e309) > 0", "unsupported_sql"))
    out.append(Case("2^31 as ROUND digits", "huge_literals", "SELECT COUNT(*) FROM tx WHERE ROUND(amount, 2147483648) > 0", "unsupported_sql"))
    out.append(Case("1e309 as a percentile", "huge_literals", "SELECT QUANTILE_CONT(amount, 1e309) FROM tx", "unsupported_sql"))
    out.append(Case("1e-400 as a percentile", "huge_literals", "SELECT PERCENTILE_CONT(1e-400) WITHIN GROUP (ORDER BY amount) FROM tx", "answered"))
    out.append(Case("NaN cast as a value", "huge_literals", "SELECT SUM(LEAST(GREATEST(CAST('nan' AS DOUBLE), 0), 1)) FROM tx", "answered"))
    out.append(Case("infinity cast as a value", "huge_literals", "SELECT COUNT(*) FROM tx WHERE amount < CAST('inf' AS DOUBLE)", "answered"))
    out.append(Case("1e309 cast from text", "huge_literals", "SELECT COUNT(*) FROM tx WHERE amount < CAST('1e309' AS DOUBLE)", "answered"))
    out.append(Case("products of literals overflow to infinity", "huge_literals", "SELECT SUM(LEAST(GREATEST(" + " * ".join(["999999999999999"] * 22) + ", 0), 1)) FROM tx", "answered"))
    out.append(Case("products of a column overflow to infinity", "huge_literals", "SELECT COUNT(*) FROM tx WHERE amount" + " * 999999999999999" * 22 + " > 0", "answered"))
    out.append(Case("noisy count times huge literals", "huge_literals", "SELECT cat, COUNT(*)" + " * 999999999999999" * 22 + " AS x FROM tx GROUP BY cat ORDER BY x", "answered"))
    for n in (1_000, 1_001, 5_000, 19_000):
        expect = "answered" if n <= 1_000 else "unsupported_sql"
        out.append(Case(f"string literal of {n} characters", "huge_literals", f"SELECT COUNT(*) FROM tx WHERE city = '{'a' * n}'", expect))
    out.append(Case("string literal of 1,000 emoji", "huge_literals", f"SELECT COUNT(*) FROM tx WHERE city = '{'💰' * 1000}'", "answered"))
    out.append(Case("string literal of 25,000 characters", "huge_literals", f"SELECT COUNT(*) FROM tx WHERE city = '{'a' * 25_000}'", "invalid_sql"))
    out.append(Case("string literal of 1 MB", "huge_literals", f"SELECT COUNT(*) FROM tx WHERE city = '{'a' * 1_000_000}'", "invalid_sql"))
    out.append(Case("LIKE pattern of 1,000 wildcards", "huge_literals", f"SELECT COUNT(*) FROM tx WHERE city LIKE '{'%' * 999}a'", "answered"))
    out.append(Case("alias of 10,000 characters", "huge_literals", f"SELECT COUNT(*) AS \"{'n' * 10_000}\" FROM tx", "answered"))
    return out


def _huge_trees() -> list[Case]:
    """Deep or huge parse trees: refused before any work that grows with them, or answered quickly."""
    out = []

    def add(title: str, sql: str, expect: str, delta: float = 0.0) -> None:
        out.append(Case(title, "huge_trees", sql, expect, delta))

    add("1,000 nested parentheses", "SELECT COUNT(*) FROM tx WHERE " + "(" * 1000 + "amount > 1" + ")" * 1000, "invalid_sql")
    add("100 nested parentheses", "SELECT COUNT(*) FROM tx WHERE " + "(" * 100 + "amount > 1" + ")" * 100, "invalid_sql")
    add("20 nested parentheses", "SELECT COUNT(*) FROM tx WHERE " + "(" * 20 + "amount > 1" + ")" * 20, "answered")
    add("1,000 nested parentheses in SUM", "SELECT SUM(" + "(" * 1000 + "amount" + ")" * 1000 + ") FROM tx", "invalid_sql")
    add("10,000-term sum", "SELECT SUM(" + " + ".join(["amount"] * 10_000) + ") FROM tx", "invalid_sql")
    add("2,000-term sum", "SELECT SUM(" + " + ".join(["qty"] * 2_000) + ") FROM tx", "unsupported_sql")
    add("60-term sum", "SELECT SUM(" + " + ".join(["qty"] * 60) + ") FROM tx", "answered")
    add("5,000 OR conditions", "SELECT COUNT(*) FROM tx WHERE " + " OR ".join(f"qty = {i}" for i in range(5_000)), "invalid_sql")
    add("1,000 OR conditions", "SELECT COUNT(*) FROM tx WHERE " + " OR ".join(f"qty = {i % 10}" for i in range(1_000)), "unsupported_sql")
    add("50 OR conditions", "SELECT COUNT(*) FROM tx WHERE " + " OR ".join(f"qty = {i}" for i in range(50)), "answered")
    add("5,000 AND conditions", "SELECT COUNT(*) FROM tx WHERE " + " AND ".join(["flag"] * 5_000), "invalid_sql")
    add("2,000 AND conditions", "SELECT COUNT(*) FROM tx WHERE " + " AND ".join(["flag"] * 2_000), "unsupported_sql")
    add("IN list of 1,000 values", "SELECT COUNT(*) FROM tx WHERE qty IN (" + ", ".join(str(i) for i in range(1_000)) + ")", "answered")
    add("IN list of 5,000 values", "SELECT COUNT(*) FROM tx WHERE qty IN (" + ", ".join(str(i) for i in range(5_000)) + ")", "invalid_sql")
    add("1 MB query of spaces", "SELECT COUNT(*) FROM tx" + " " * 1_000_000, "invalid_sql")
    add("1 MB query in a comment", "SELECT COUNT(*) FROM tx /* " + "x" * 1_000_000 + " */", "invalid_sql")
    add("1 MB query in a line comment", "SELECT COUNT(*) FROM tx -- " + "x" * 1_000_000, "invalid_sql")
    add("19,000-character comment", "SELECT COUNT(*) FROM tx /* " + "x" * 19_000 + " */", "answered")
    add("1,000 NOTs", "SELECT COUNT(*) FROM tx WHERE " + "NOT " * 1000 + "flag", "invalid_sql")
    add("50 NOTs", "SELECT COUNT(*) FROM tx WHERE " + "NOT " * 50 + "flag", "answered")
    add("1,000 unary minus signs", "SELECT COUNT(*) FROM tx WHERE " + "-" * 1000 + "amount > 0", "invalid_sql")
    add("500 unary minus signs with spaces", "SELECT COUNT(*) FROM tx WHERE " + "- " * 500 + "amount > 0", "invalid_sql")
    add("30 nested CASE", "SELECT SUM(" + "CASE WHEN flag THEN " * 30 + "amount" + " ELSE 0 END" * 30 + ") FROM tx", "answered")
    add("200 nested CASE", "SELECT SUM(" + "CASE WHEN flag THEN " * 200 + "amount" + " ELSE 0 END" * 200 + ") FROM tx", "invalid_sql")
    add("30 nested LEAST", "SELECT SUM(" + "LEAST(" * 30 + "amount" + ", 5)" * 30 + ") FROM tx", "answered")
    add("100 nested LEAST", "SELECT SUM(" + "LEAST(" * 100 + "amount" + ", 5)" * 100 + ") FROM tx", "invalid_sql")
    e = "amount"
    for _ in range(7):
        e = f"LEAST({e}, {e})"
    add("doubling LEAST tree", f"SELECT SUM({e}) FROM tx", "answered")
    e = "amount"
    for _ in range(12):
        e = f"LEAST({e}, {e})"
    add("doubling LEAST tree beyond the size limits", f"SELECT SUM({e}) FROM tx", "invalid_sql")
    e = "flag"
    for _ in range(5):
        e = f"CASE WHEN {e} THEN {e} ELSE {e} END"
    add("tripling CASE tree", f"SELECT COUNT(*) FROM tx WHERE {e}", "answered")
    add("1,000 aggregates", "SELECT " + ", ".join(f"SUM(qty + {i})" for i in range(1_000)) + " FROM tx", "unsupported_sql")
    add("40 aggregates", "SELECT " + ", ".join(f"SUM(qty + {i})" for i in range(40)) + " FROM tx", "answered")
    add("2,000 COUNT(*) columns", "SELECT " + ", ".join(["COUNT(*)"] * 2_000) + " FROM tx", "invalid_sql")
    add("500 COUNT(*) columns", "SELECT " + ",".join(["COUNT(*)"] * 500) + " FROM tx", "answered")
    add("100 GROUP BY keys", "SELECT COUNT(*) FROM tx GROUP BY " + ", ".join(["cat"] * 100), "unsupported_sql")
    add("HAVING with 1,000 ORs", "SELECT cat, COUNT(*) FROM tx GROUP BY cat HAVING " + " OR ".join(f"COUNT(*) = {i}" for i in range(1_000)), "unsupported_sql")
    add("ORDER BY 200 terms", "SELECT cat, COUNT(*) FROM tx GROUP BY cat ORDER BY " + ", ".join(["COUNT(*)"] * 200), "answered")
    add("65-term left-deep sum", "SELECT SUM(LEAST(GREATEST(amount" + " + 1" * 64 + ", 0), 1)) FROM tx", "unsupported_sql")
    add("55-term left-deep sum", "SELECT SUM(LEAST(GREATEST(amount" + " + 1" * 55 + ", 0), 1)) FROM tx", "answered")
    add("40-term product in a median", "SELECT MEDIAN(LEAST(GREATEST(qty" + " * 1" * 40 + ", 0), 5)) FROM tx", "answered")
    add("10,000 statements", "SELECT COUNT(*) FROM tx;" * 10_000, "invalid_sql")
    add("1,000 statements", "SELECT COUNT(*) FROM tx;" * 800, "unsupported_sql")
    return out


def _ddl_dml_system() -> list[Case]:
    """Statements other than SELECT, table functions, files and system catalogs."""
    out = []
    statements = [
        ("DROP TABLE", "DROP TABLE tx"), ("DROP VIEW", "DROP VIEW bnd__bank__tx"), ("CREATE TABLE AS", "CREATE TABLE leak AS SELECT * FROM tx"),
        ("CREATE VIEW", "CREATE VIEW v AS SELECT * FROM tx"), ("CREATE TEMP TABLE", "CREATE TEMP TABLE x (a INT)"),
        ("CREATE MACRO", "CREATE MACRO f(x) AS x"), ("CREATE SECRET", "CREATE SECRET s (TYPE S3, KEY_ID 'x')"),
        ("CREATE SEQUENCE", "CREATE SEQUENCE s"), ("CREATE INDEX", "CREATE INDEX i ON tx (cid)"), ("CREATE SCHEMA", "CREATE SCHEMA s"),
        ("INSERT", "INSERT INTO tx VALUES (1)"), ("INSERT SELECT", "INSERT INTO tx SELECT * FROM tx"), ("UPDATE", "UPDATE tx SET amount = 0"),
        ("DELETE", "DELETE FROM tx WHERE cid = 7"), ("TRUNCATE", "TRUNCATE tx"), ("ALTER", "ALTER TABLE tx ADD COLUMN z INT"),
        ("ALTER RENAME", "ALTER TABLE tx RENAME TO tx2"), ("MERGE", "MERGE INTO tx USING cust ON tx.cid = cust.cid WHEN MATCHED THEN DELETE"),
        ("PRAGMA", "PRAGMA database_list"), ("PRAGMA table_info", "PRAGMA table_info('raw_tx')"), ("PRAGMA assignment", "PRAGMA threads=1"),
        ("ATTACH", "ATTACH 'leak.db' AS leak"), ("ATTACH memory", "ATTACH ':memory:' AS m"), ("DETACH", "DETACH leak"), ("USE", "USE memory"),
        ("COPY TO", "COPY tx TO '/tmp/leak.csv'"), ("COPY FROM", "COPY tx FROM '/etc/passwd'"), ("COPY select", "COPY (SELECT * FROM tx) TO '/tmp/x.parquet'"),
        ("EXPORT DATABASE", "EXPORT DATABASE '/tmp/x'"), ("IMPORT DATABASE", "IMPORT DATABASE '/tmp/x'"), ("INSTALL", "INSTALL httpfs"),
        ("FORCE INSTALL", "FORCE INSTALL httpfs"), ("LOAD", "LOAD httpfs"), ("SET", "SET enable_external_access = true"),
        ("SET memory", "SET memory_limit = '1TB'"), ("RESET", "RESET threads"), ("CALL", "CALL pragma_table_info('tx')"), ("CALL dbgen", "CALL dbgen(sf=1)"),
        ("CHECKPOINT", "CHECKPOINT"), ("VACUUM", "VACUUM"), ("ANALYZE", "ANALYZE"), ("EXPLAIN", "EXPLAIN SELECT COUNT(*) FROM tx"),
        ("EXPLAIN ANALYZE", "EXPLAIN ANALYZE SELECT COUNT(*) FROM tx"), ("DESCRIBE", "DESCRIBE tx"), ("SUMMARIZE", "SUMMARIZE tx"),
        ("SHOW TABLES", "SHOW TABLES"), ("SHOW ALL TABLES", "SHOW ALL TABLES"), ("BEGIN", "BEGIN TRANSACTION"), ("COMMIT", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"), ("PREPARE", "PREPARE p AS SELECT amount FROM tx"), ("EXECUTE", "EXECUTE p"), ("DEALLOCATE", "DEALLOCATE p"),
        ("GRANT", "GRANT SELECT ON tx TO analyst"), ("VALUES", "VALUES (1)"), ("TABLE", "TABLE tx"), ("FROM only", "FROM tx"),
        ("UNPIVOT statement", "UNPIVOT tx ON amount INTO NAME k VALUE v"), ("PIVOT statement", "PIVOT tx ON cat USING SUM(amount)"),
    ]
    for name, sql in statements:
        code = "invalid_sql" if name in ("EXPORT DATABASE", "IMPORT DATABASE") else "unsupported_sql"
        out.append(Case(f"{name} statement", "ddl_dml_system", sql, code))
    sources = {
        "read_csv": "read_csv('/etc/passwd')", "read_csv_auto": "read_csv_auto('/data/raw_tx.csv')", "read_parquet": "read_parquet('/data/tx.parquet')",
        "parquet_scan": "parquet_scan('s3://bucket/x.parquet')", "read_json": "read_json('/x.json')", "read_text": "read_text('/etc/passwd')",
        "read_blob": "read_blob('/etc/shadow')", "glob": "glob('/*')", "range": "range(10)", "generate_series": "generate_series(1, 10)",
        "duckdb_tables()": "duckdb_tables()", "duckdb_columns()": "duckdb_columns()", "duckdb_settings()": "duckdb_settings()",
        "duckdb_secrets()": "duckdb_secrets()", "duckdb_extensions()": "duckdb_extensions()", "duckdb_databases()": "duckdb_databases()",
        "pragma_table_info": "pragma_table_info('raw_tx')", "sqlite_scan": "sqlite_scan('x.db', 't')", "postgres_scan": "postgres_scan('', 'public', 't')",
        "query_table": "query_table('raw_tx')", "query": "query('SELECT * FROM raw_tx')", "unnest": "unnest([1, 2])",
    }
    for name, src in sources.items():
        out.append(Case(f"COUNT over {name}", "ddl_dml_system", f"SELECT COUNT(*) FROM {src}", "unsupported_sql"))
    tables = {
        "raw source": ("raw_tx", "unknown_table"), "quoted raw source": ('"raw_tx"', "unknown_table"),
        "bounded relation": ("bnd__bank__tx", "unknown_table"), "source relation": ("src__bank__tx", "unknown_table"),
        "bookkeeping table": ("_dpgate_tables", "unknown_table"), "information_schema": ("information_schema.tables", "unknown_table"),
        "information_schema columns": ("information_schema.columns", "unknown_table"), "sqlite_master": ("sqlite_master", "unknown_table"),
        "sqlite_schema": ("sqlite_schema", "unknown_table"), "pg_catalog": ("pg_catalog.pg_tables", "unknown_table"),
        "duckdb_tables view": ("duckdb_tables", "unknown_table"), "main schema": ("main.tx", "unknown_table"),
        "catalog and schema": ("memory.main.raw_tx", "unknown_table"), "dataset as schema": ("bank.tx", "unknown_table"),
        "file path": ("'/etc/passwd'", "unknown_table"), "csv file": ("'data.csv'", "unknown_table"),
        "parquet url": ("'https://example.com/x.parquet'", "unknown_table"), "other dataset table": ("loan", "unknown_table"),
    }
    for name, (table, code) in tables.items():
        out.append(Case(f"COUNT over the {name}", "ddl_dml_system", f"SELECT COUNT(*) FROM {table}", code))
    return out


def _set_operations() -> list[Case]:
    out = []
    sides = {
        "counts": ("SELECT COUNT(*) FROM tx", "SELECT COUNT(*) FROM cust"),
        "units": ("SELECT cid FROM tx", "SELECT cid FROM cust"),
        "raw and count": ("SELECT amount FROM tx", "SELECT COUNT(*) FROM tx"),
        "public and private": ("SELECT COUNT(*) FROM rates", "SELECT COUNT(*) FROM tx"),
    }
    for op in ("UNION", "UNION ALL", "INTERSECT", "EXCEPT"):
        for name, (a, b) in sides.items():
            out.append(Case(f"{op} of {name}", "set_operation", f"{a} {op} {b}", "unsupported_sql"))
    return out


def _subqueries() -> list[Case]:
    out = []
    inner = {
        "raw rows": "SELECT * FROM tx",
        "the unit": "SELECT cid FROM tx",
        "one unit": "SELECT amount FROM tx WHERE cid = 7",
        "per-unit counts": "SELECT cid, COUNT(*) AS n FROM tx GROUP BY cid",
        "the top row": "SELECT amount FROM tx ORDER BY amount DESC LIMIT 1",
    }
    for name, q in inner.items():
        out.append(Case(f"CTE of {name}", "subquery", f"WITH s AS ({q}) SELECT COUNT(*) FROM s", "unsupported_sql"))
        grouped = name == "per-unit counts"  # one row per unit: a per-customer question, answered
        out.append(Case(f"FROM subquery of {name}", "subquery", f"SELECT COUNT(*) FROM ({q}) s", "answered" if grouped else "unsupported_sql"))
        out.append(Case(f"EXISTS of {name}", "subquery", f"SELECT COUNT(*) FROM tx WHERE EXISTS ({q})", "unsupported_sql"))
    return out


def _comments_unicode() -> list[Case]:
    """The same count with invisible or look-alike characters at every token boundary."""
    out = []
    base = ["SELECT", "COUNT(*)", "FROM", "tx", "WHERE", "amount", ">", "1"]
    chars = {"zero-width space": "\u200b", "zero-width non-joiner": "\u200c", "RTL override": "\u202e", "LTR mark": "\u200e", "BOM": "\ufeff"}
    for name, ch in chars.items():
        for i in (1, 3, 5):
            tokens = list(base)
            tokens[i] = tokens[i] + ch
            sql = " ".join(tokens)
            # after COUNT(*) the character is read as an (invisible) alias: answered, named by it
            out.append(Case(f"{name} after token {i}", "comments_unicode", sql, {1: "answered", 3: "unknown_table", 5: "unknown_column"}[i]))
    for i in (1, 3, 5):
        tokens = list(base)
        tokens[i] = f"/*{tokens[i]}*/ {tokens[i]} -- x\n"
        out.append(Case(f"comments around token {i}", "comments_unicode", " ".join(tokens), "answered"))
    return out


def families() -> list[Case]:
    return [
        *_privacy_unit(), *_joins(), *_unbounded_groups(), *_row_release(), *_failing_rows(), *_huge_literals(),
        *_huge_trees(), *_ddl_dml_system(), *_set_operations(), *_subqueries(), *_comments_unicode(),
    ]


def all_cases() -> list[Case]:
    cases = [*load_file(), *families()]
    ids = Counter(c.id for c in cases)
    dup = [i for i, n in ids.items() if n > 1]
    assert not dup, f"duplicate case titles: {dup[:5]}"
    for c in cases:
        assert c.category in CATEGORIES, c
        assert c.expect in CODES, c
    return cases


def counts(cases: list[Case]) -> Counter:
    return Counter(c.category for c in cases)


# ----------------------------------------------------------------------------------- data


def clean_frames() -> dict[str, pd.DataFrame]:
    """Bank tables where every cast and division the corpus uses succeeds: unit ids as text (that are
    numbers) and transaction ids as BIGINT (ids of two engine types), qty >= 1, cities that are small
    numbers, notes that are booleans."""
    frames = bank_frames(n_customers=120, seed=5)
    tx = frames["raw_tx"]
    tx["qty"] = tx["qty"].fillna(1).clip(lower=1)
    tx["city"] = (tx.index % 7 + 1).astype(str)
    tx["note"] = np.where(tx.index % 2 == 0, "true", "false").astype(object)
    for frame in frames.values():
        if "cid" in frame:
            frame["cid"] = frame["cid"].astype(str)
    return frames


def failing_frames() -> dict[str, pd.DataFrame]:
    """The clean tables with one transaction changed so that casts, divisions and date parsing fail on it."""
    frames = {k: v.copy() for k, v in clean_frames().items()}
    tx = frames["raw_tx"]
    tx.loc[0, ["qty", "city", "note", "amount", "tid", "cid"]] = [0, "not a number", "not a bool", 2e6, -1, "u1"]
    tx.loc[0, "ts"] = pd.Timestamp("2262-01-01")
    return frames


def neighbour_frames() -> dict[str, pd.DataFrame]:
    """The clean tables plus one unit ('n1') with extreme values in every table: more rows than any
    bound, values far outside the declared ranges, dates outside the declared range."""
    frames = {k: v.copy() for k, v in clean_frames().items()}
    n = 12
    add = pd.DataFrame(
        {
            "tid": np.arange(n) + 10**6,
            "cid": "n1",
            "amount": [1e12, -1e12, 5e6, 999.0, 0.0, 1e9, -5.0, 1e12, 2e6, 1e12, 1e12, 1e12],
            "qty": pd.array([10**6, -5, None, 11, 0, 10**6, 10**6, 7, 10**6, 10**6, 3, 10**6], dtype="Int64"),
            "cat": ["café ☕", "other", "food", "tech", "travel", "café ☕", "other", "food", "food", "food", "tech", "food"],
            "city": ["zzz", "1", "9999", "-1", "", "2262-01-01", "true", "1e300", "x", "y", "z", "w"],
            "ts": [pd.Timestamp("2262-01-01")] * (n - 2) + [pd.Timestamp("1678-01-02"), pd.Timestamp("2025-06-01")],
            "flag": [True] * n,
            "note": ["w", None, "x", "true", "false", "y", "w", "w", "w", "w", "w", "w"],
        }
    )
    frames["raw_tx"] = pd.concat([frames["raw_tx"], add], ignore_index=True)
    frames["raw_cust"] = pd.concat([frames["raw_cust"], pd.DataFrame({"cid": ["n1"], "age": [500], "segment": ["private"]})], ignore_index=True)
    frames["raw_acct"] = pd.concat([frames["raw_acct"], pd.DataFrame({"cid": ["n1"] * 4, "balance": [1e9, -1e9, 1e9, 1e9]})], ignore_index=True)
    return frames
