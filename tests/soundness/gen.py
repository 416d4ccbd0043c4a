"""Random scalar expressions over the allow-list of `gateway.sql.scalar`, and adversarial rows to run them on.

The soundness fuzzer (`tests/soundness/check.py`) plans aggregates of these expressions and compares
their exact values on neighbouring datasets with the planned sensitivities. Two halves:

* `DATASET` and `frames()`: one table `t` whose columns cover every declared type (bounded and
  unbounded numbers, nullable and not, categories with and without a public list, bools, dates with and
  without bounds, text), and rows holding what an engine can hold and the declarations do not rule out:
  NULL (also in columns declared non-nullable: the engine does not enforce declarations), ±inf, NaN,
  ±1e308, -0.0, subnormals, 2^53 + 1, the declared bounds and values beyond them, empty, long and
  unicode strings (composed 'é' and decomposed 'e' + U+0301, case mappings that change length), strings
  that cast to extreme numbers, dates in year 1 and 9999. `TARGETS` are the units whose removal makes
  the neighbours; their rows are the adversarial ones.
* `ExprGen`: SQL text of random scalar expressions, typed (numeric, text, bool, date, id) so that most
  are accepted by the planner, over every node in `_HANDLERS` (see `COVERAGE`), nested to a bounded
  depth, with NULL-producing branches (CASE without ELSE, failed casts, division and modulo by zero,
  NULL operands of LEAST/GREATEST/COALESCE) and comparisons with the privacy unit
  (`customer_id = 'c42'`), which make one unit's value differ from everyone else's.

Everything is drawn from a `random.Random` the caller seeds, so a run is reproducible; `strategy()`
wraps a generator for Hypothesis.
"""
from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable
from typing import Any

import pyarrow as pa

UNIT = "customer_id"
K = 3  # max_rows_per_unit: the targets hold more rows than that, so bounding cuts them
TABLE = "t"

DATASET: dict[str, Any] = {
    "name": "fuzz",
    "privacy_unit": UNIT,
    "budget": {"epsilon": 100, "delta": 1e-3},
    "tables": {
        TABLE: {
            "source": "raw_t",
            "max_rows_per_unit": K,
            "columns": {
                UNIT: {"type": "id"},
                "balance": {"type": "float", "lower": -1000, "upper": 5000},  # not nullable; 0 inside
                "bonus": {"type": "float", "lower": 0, "upper": 1, "nullable": True},
                "fee": {"type": "float", "lower": 5, "upper": 50},  # not nullable; 0 outside
                "rate": {"type": "float", "nullable": True},  # no bounds
                "qty": {"type": "int", "lower": 0, "upper": 10},
                "level": {"type": "int", "lower": -3, "upper": 3, "nullable": True},
                "age": {"type": "int", "lower": 18, "upper": 100},
                "big": {"type": "int", "lower": -1_000_000_000_000, "upper": 1_000_000_000_000},
                "cat": {"type": "category", "categories": ["food", "travel", "café", "cafe\u0301"]},
                "seg": {"type": "category", "categories": ["retail", "private"], "nullable": True},
                "note": {"type": "category", "nullable": True},  # no public list: text
                "flag": {"type": "bool"},
                "ok": {"type": "bool", "nullable": True},
                "ts": {"type": "date", "lower": "2020-01-01", "upper": "2025-12-31"},
                "born": {"type": "date", "nullable": True},  # no bounds
            },
        }
    },
}

COLUMNS: dict[str, dict[str, Any]] = DATASET["tables"][TABLE]["columns"]
BOUNDED_NUM = [c for c, m in COLUMNS.items() if m["type"] in ("int", "float") and "lower" in m]
UNBOUNDED_NUM = [c for c, m in COLUMNS.items() if m["type"] in ("int", "float") and "lower" not in m]
TEXT = [c for c, m in COLUMNS.items() if m["type"] == "category"]
BOOLS = [c for c, m in COLUMNS.items() if m["type"] == "bool"]
DATES = [c for c, m in COLUMNS.items() if m["type"] == "date"]

BENIGN_UNITS = [f"c{i}" for i in range(1, 21)]
#: the units whose removal makes a neighbour: four adversarial ones and a plain one as a control
TARGETS = ("c42", "c43", "c44", "c45", "c3")
UNITS = BENIGN_UNITS + ["c42", "c43", "c44", "c45"]

INF = math.inf
NAN = math.nan
FLOAT_EDGES = [None, INF, -INF, NAN, 1e308, -1e308, -0.0, 0.0, 5e-324, -5e-324, 1e15, -1e15, 2.0**53 + 2, 1e-300, 0.1 + 0.2]
INT_EDGES = [None, 0, -1, 1, 2**63 - 1, -(2**63), 2**53 + 1, 2**31, -(2**31) - 1]
TEXT_EDGES = [
    None, "", "food", "café", "cafe\u0301", "CAFÉ", "Food ", "é" * 1500, "☕" * 10 + "x", "1e308", "-1e308", "nan", "NaN",
    "inf", "-Infinity", "-0", " 12 ", "12", "0x1F", "true", "f", "2021-03-04", "9999-12-31", "0001-01-01 00:00:00", "%", "_",
    "'", "İ", "ß", "ﬁ", "\u212b", "👩\u200d💻", "مرحبا", "c42", "9223372036854775808", "1e-400",
]
DATE_EDGES = [
    None, dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), dt.datetime(2020, 1, 1), dt.datetime(2025, 12, 31),
    dt.datetime(2025, 12, 31, 23, 59, 59), dt.datetime(2019, 12, 31, 23, 59, 59), dt.datetime(2030, 6, 15), dt.datetime(1970, 1, 1),
    dt.datetime(2024, 2, 29, 12, 30), dt.datetime(1900, 3, 1, 23, 59),
]

ARROW_TYPES = {"id": pa.string(), "float": pa.float64(), "int": pa.int64(), "category": pa.string(), "bool": pa.bool_(), "date": pa.timestamp("us")}


def _edges(name: str) -> list[Any]:
    meta = COLUMNS[name]
    t = meta["type"]
    if t == "float":
        lo, hi = meta.get("lower"), meta.get("upper")
        extra = [] if lo is None else [float(lo), float(hi), lo - 1e-9 * max(1, abs(lo)), math.nextafter(hi, INF), hi * 1000 + 1, lo * 1000 - 1]
        return FLOAT_EDGES + extra
    if t == "int":
        lo, hi = meta.get("lower"), meta.get("upper")
        extra = [] if lo is None else [lo, hi, lo - 1, hi + 1, hi * 1000]
        return INT_EDGES + extra
    if t == "category":
        return TEXT_EDGES + list(meta.get("categories", ()))
    if t == "bool":
        return [None, True, False]
    if t == "date":
        return DATE_EDGES
    raise AssertionError(t)


def _plain(name: str, rng: random.Random) -> Any:
    """An ordinary value of a column: inside its declared bounds, from its public list."""
    meta = COLUMNS[name]
    t = meta["type"]
    if t == "float":
        lo, hi = meta.get("lower", -100.0), meta.get("upper", 100.0)
        return round(rng.uniform(lo, hi), 2)
    if t == "int":
        lo, hi = meta.get("lower", -50), meta.get("upper", 50)
        return rng.randint(lo, min(hi, lo + 10_000))
    if t == "category":
        return rng.choice(list(meta.get("categories", ["x", "y", "z", "rare"])))
    if t == "bool":
        return rng.random() < 0.3
    if t == "date":
        return dt.datetime(2020, 1, 1) + dt.timedelta(hours=rng.randrange(0, 6 * 365 * 24))
    raise AssertionError(t)


def _rows() -> list[dict[str, Any]]:
    rng = random.Random(20_240_611)
    cols = [c for c in COLUMNS if c != UNIT]
    rows: list[dict[str, Any]] = []
    for unit in BENIGN_UNITS:
        for _ in range(rng.randint(1, 5)):
            # mostly plain values; now and then an edge value, so the targets are not alone in being odd
            rows.append({UNIT: unit, **{c: (rng.choice(_edges(c)) if rng.random() < 0.06 else _plain(c, rng)) for c in cols}})
    # c42 and c45: every column an edge value, more rows than K (bounding keeps K of them)
    for unit, n, offset in (("c42", 7, 0), ("c45", 5, 11)):
        for i in range(n):
            rows.append({UNIT: unit, **{c: _edges(c)[(offset + i * 7 + j * 3) % len(_edges(c))] for j, c in enumerate(cols)}})
    # c43: NULL everywhere (also where declared non-nullable), then one row of plain values
    rows += [{UNIT: "c43", **{c: None for c in cols}} for _ in range(3)]
    rows.append({UNIT: "c43", **{c: _plain(c, rng) for c in cols}})
    # c44: the declared bounds exactly, -0.0, decomposed unicode, year 1 and 9999
    for i in range(4):
        row: dict[str, Any] = {UNIT: "c44"}
        for c in cols:
            meta = COLUMNS[c]
            t = meta["type"]
            if t in ("int", "float"):
                row[c] = [meta.get("lower", -0.0), meta.get("upper", 1e308), -0.0, None][i]
                if t == "float" and row[c] is not None:
                    row[c] = float(row[c])
            elif t == "category":
                row[c] = ["cafe\u0301", "café", "", "é" * 1500][i]
            elif t == "bool":
                row[c] = [True, False, None, True][i]
            else:
                row[c] = [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31), dt.datetime(2020, 1, 1), dt.datetime(2025, 12, 31)][i]
        rows.append(row)
    rng.shuffle(rows)
    return rows


def frames(drop_unit: str | None = None) -> dict[str, pa.Table]:
    """The source tables (DuckDB reads them as given: arrow keeps NaN, ±inf, -0.0 and year-1 dates);
    with `drop_unit`, the neighbour without that unit's rows (the other rows keep their order)."""
    rows = [r for r in _rows() if r[UNIT] != drop_unit]
    schema = pa.schema([(c, ARROW_TYPES[m["type"]]) for c, m in COLUMNS.items()])
    return {"raw_t": pa.table({c: pa.array([r[c] for r in rows], type=schema.field(c).type) for c in COLUMNS}, schema=schema)}


# --------------------------------------------------------------------------------------------- grammar

#: the scalar nodes of `gateway.sql.scalar._HANDLERS` (sqlglot class names), every one of which this
#: grammar produces (tests/soundness/test_fuzz_soundness.py checks it against `_HANDLERS` itself). It
#: also produces what the planner refuses (NULLIF, ISODOW, EXTRACT(epoch ...), FLOAT casts, literals
#: beyond 1e15, GROUP BY on the unit): refused with a 4xx, never a crash
COVERAGE = frozenset({
    "Column", "Literal", "Boolean", "Null", "Paren", "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Floor", "Ceil",
    "Sign", "Round", "Least", "Greatest", "Coalesce", "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "Between", "In", "Like",
    "ILike", "Is", "And", "Or", "Not", "Case", "If", "Cast", "TryCast", "Extract", "Anonymous", "Length", "Lower",
    "Upper", "Year", "Quarter", "Month", "Day", "DayOfWeek", "DayOfYear", "Hour", "Minute", "Week",
})

NUM_LITERALS = ["0", "1", "-1", "2", "0.5", "-0.0", "3", "10", "100", "1000", "5000", "-1000", "1e3", "2.5e2", "0.001", "1e15", "-1e15", "7"]
RARE_NUM_LITERALS = ["1e16", "1e309", "9223372036854775808"]  # refused: beyond the literal limit
TEXT_LITERALS = ["food", "travel", "café", "cafe\u0301", "", "x", "é" * 40, "1e308", "nan", "-0", "12", "true", "2021-03-04", "İ", "ß", "c42", "'"]
DATE_LITERALS = ["2020-01-01", "2021-06-15", "2025-12-31", "2025-12-31 23:59:59", "0001-01-01", "9999-12-31", "2024-02-29 12:00:00"]
PARTS = ["YEAR", "QUARTER", "MONTH", "DAY", "DAYOFWEEK", "DAYOFYEAR", "HOUR", "MINUTE", "WEEK"]
EXTRACT_PARTS = ["year", "quarter", "month", "day", "dow", "doy", "hour", "minute", "week", "isodow", "dayofweek", "dayofyear"]
RARE_PARTS = ["epoch", "second", "millennium", "microseconds"]  # refused (unbounded or not in the dialect's table)
NUM_CASTS = ["DOUBLE", "DOUBLE", "INT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "DECIMAL(10, 2)", "DOUBLE", "INT"]
RARE_NUM_CASTS = ["FLOAT", "REAL", "HUGEINT"]  # refused
TEXT_CASTS = ["VARCHAR", "TEXT"]
LIKE_PATTERNS = ["%", "f%", "_", "caf%", "é%", "%e\u0301", "", "c4_", "%%", "_a_%"]
COMPARE = ["=", "<>", "!=", "<", "<=", ">", ">="]


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class ExprGen:
    """Random SQL text of one scalar expression of a given type, at most `depth` levels deep.

    `num()` is numeric-valued (for SUM, AVG, VARIANCE, quantiles), `boolean()` a predicate (WHERE, CASE
    conditions), `text()`, `date()`, `any()` any type (COUNT, COUNT(DISTINCT)), `key()` a GROUP BY key
    (mostly with a public domain)."""

    def __init__(self, rng: random.Random, *, depth: int = 3) -> None:
        self.rng = rng
        self.depth = depth

    def _pick(self, options: list[tuple[float, Callable[[], str]]]) -> str:
        total = sum(w for w, _ in options)
        x = self.rng.random() * total
        for w, f in options:
            x -= w
            if x < 0:
                return f()
        return options[-1][1]()

    def _sub(self, d: int) -> int:
        return max(0, d - 1 - (1 if self.rng.random() < 0.3 else 0))

    # unit predicates: what makes one unit's value differ
    def unit_pred(self) -> str:
        r = self.rng
        u = r.choice(list(TARGETS) + ["c42", "c42", "c45", "c7", "c99"])
        return self._pick([
            (6, lambda: f"{UNIT} = {quote(u)}"),
            (2, lambda: f"{UNIT} <> {quote(u)}"),
            (1, lambda: f"{UNIT} IN ({quote(u)}, {quote(r.choice(UNITS))})"),
            (1, lambda: f"NOT {UNIT} IN ({quote(u)})"),
            (1, lambda: f"{UNIT} BETWEEN 'c40' AND 'c43'"),
            (0.5, lambda: f"{UNIT} > {quote(u)}"),
            (0.5, lambda: f"{UNIT} = {r.choice(['42', '0', '3'])}"),  # an id with a number: TRY_CAST
            (0.3, lambda: f"{UNIT} IS NULL"),
        ])

    # numbers
    def num_leaf(self) -> str:
        r = self.rng
        return self._pick([
            (6, lambda: r.choice(BOUNDED_NUM)),
            (1, lambda: r.choice(UNBOUNDED_NUM)),
            (3, lambda: r.choice(NUM_LITERALS)),
            (0.05, lambda: r.choice(RARE_NUM_LITERALS)),
            (0.7, lambda: "NULL"),
            (0.7, lambda: f"{r.choice(PARTS)}({r.choice(DATES)})"),
            (0.3, lambda: f"LENGTH({r.choice(TEXT)})"),
            (0.3, lambda: f"CAST({r.choice(BOOLS)} AS INT)"),
        ])

    def null_or(self, d: int) -> str:
        """A value that is NULL on some rows: the operand LEAST/GREATEST/COALESCE skip or take."""
        return self._pick([
            (4, lambda: f"CASE WHEN {self.unit_pred()} THEN NULL ELSE {self.num(self._sub(d))} END"),
            (3, lambda: f"CASE WHEN {self.unit_pred()} THEN {self.num(self._sub(d))} END"),
            (2, lambda: f"CASE WHEN {self.boolean(self._sub(d))} THEN {self.num(self._sub(d))} END"),
            (1, lambda: "NULL"),
            (1, lambda: self.rng.choice(["bonus", "level", "rate"])),
            (1, lambda: f"TRY_CAST({self.rng.choice(TEXT)} AS DOUBLE)"),
            (1, lambda: f"{self.num(self._sub(d))} / {self.rng.choice(['qty', 'level', '0', 'bonus', 'level - level'])}"),
            (0.5, lambda: f"{self.num(self._sub(d))} % {self.rng.choice(['qty', 'level', '0'])}"),
            (0.5, lambda: f"TRY_CAST({self.rng.choice(['big', 'balance', 'rate'])} AS TINYINT)"),
            (0.5, lambda: f"IF({self.unit_pred()}, NULL, {self.num(self._sub(d))})"),
        ])

    def num(self, d: int | None = None) -> str:
        d = self.depth if d is None else d
        if d <= 0:
            return self.num_leaf()
        r = self.rng
        s = self._sub(d)

        def args(n: int) -> str:
            parts = [self.null_or(d) if r.random() < 0.45 else self.num(s) for _ in range(n)]
            return ", ".join(parts)

        return self._pick([
            (3, self.num_leaf),
            (3, lambda: f"({self.num(s)} {r.choice(['+', '-', '*'])} {self.num(s)})"),
            (1.2, lambda: f"({self.num(s)} {r.choice(['/', '%'])} {self.num(s)})"),
            (0.5, lambda: f"({self.num(s)} / ({r.choice(BOUNDED_NUM)} + {r.choice(['1', '0', '0.5', '2000'])}))"),
            (0.8, lambda: f"-({self.num(s)})"),  # parenthesised: "--0.0" would be a comment
            (1.5, lambda: f"{r.choice(['ABS', 'FLOOR', 'CEIL', 'CEILING', 'SIGN'])}({self.num(s)})"),
            (0.8, lambda: f"ROUND({self.num(s)}" + (f", {r.choice(['0', '1', '2', '-1', '-3', '16', '0.5'])})" if r.random() < 0.6 else ")")),
            (5, lambda: f"{r.choice(['LEAST', 'GREATEST'])}({args(r.choice([2, 2, 2, 3, 4]))})"),
            (2, lambda: f"COALESCE({args(r.choice([2, 2, 3]))})"),
            (3, lambda: self.case(d, self.num)),
            (1, lambda: f"IF({self.boolean(s)}, {self.num(s)}, {self.null_or(d) if r.random() < 0.4 else self.num(s)})"),
            (0.3, lambda: f"NULLIF({self.num(s)}, {self.num(s)})"),  # refused: not in the allow-list
            (1, lambda: f"{r.choice(['CAST', 'TRY_CAST'])}({self.num(s)} AS {r.choice(NUM_CASTS)})"),
            (0.05, lambda: f"CAST({self.num(s)} AS {r.choice(RARE_NUM_CASTS)})"),
            (0.8, lambda: f"{r.choice(['CAST', 'TRY_CAST'])}({self.text(s)} AS {r.choice(NUM_CASTS)})"),
            (0.3, lambda: f"CAST({self.boolean(s)} AS INT)"),
            (1, lambda: self.date_part(s)),
            (0.4, lambda: f"LENGTH({self.text(s)})"),
            (1.5, lambda: self.clamp(self.num(s))),
            (2, lambda: self.null_or(d)),
        ])

    def clamp(self, e: str) -> str:
        """The analyst's own clamp, LEAST(GREATEST(e, lo), hi) and its mirror, with literal bounds."""
        r = self.rng
        lo = r.choice(["0", "-1", "-100", "1", "-1000", "0.5"])
        hi = r.choice(["1", "10", "100", "1000", "5000", "2"])
        return r.choice([f"LEAST(GREATEST({e}, {lo}), {hi})", f"GREATEST(LEAST({e}, {hi}), {lo})"])

    def date_part(self, d: int) -> str:
        r = self.rng
        x = self.date(d)
        return self._pick([
            (3, lambda: f"{r.choice(PARTS)}({x})"),
            (2, lambda: f"EXTRACT({r.choice(EXTRACT_PARTS)} FROM {x})"),
            (0.1, lambda: f"EXTRACT({r.choice(RARE_PARTS)} FROM {x})"),
            (1, lambda: f"DATE_PART({quote(r.choice(EXTRACT_PARTS))}, {x})"),
            (0.5, lambda: f"{r.choice(['DOW', 'DOY', 'ISODOW'])}({x})"),
        ])

    def case(self, d: int, branch: Callable[[int], str]) -> str:
        """A CASE of `branch` values: searched or simple, with or without ELSE, often on the unit."""
        r = self.rng
        s = self._sub(d)
        n = r.choice([1, 1, 2, 3])
        if r.random() < 0.2:  # simple CASE x WHEN v THEN ...
            subject, values = r.choice([
                ("cat", [quote(v) for v in ["food", "café", "cafe\u0301", "other", ""]]),
                ("qty", ["0", "1", "5", "10", "NULL"]),
                (UNIT, [quote(u) for u in TARGETS]),
                ("flag", ["TRUE", "FALSE"]),
                ("level", ["-3", "0", "3"]),
            ])
            whens = " ".join(f"WHEN {r.choice(values)} THEN {branch(s)}" for _ in range(n))
            head = f"CASE {subject} "
        else:
            whens = " ".join(
                f"WHEN {self.unit_pred() if r.random() < 0.5 else self.boolean(s)} THEN {branch(s)}" for _ in range(n)
            )
            head = "CASE "
        tail = f" ELSE {branch(s)} END" if r.random() < 0.6 else " END"
        return head + whens + tail

    # text
    def text(self, d: int | None = None) -> str:
        d = self.depth if d is None else d
        r = self.rng
        s = self._sub(d)
        leaf = [(5, lambda: r.choice(TEXT)), (2, lambda: quote(r.choice(TEXT_LITERALS))), (0.3, lambda: "NULL")]
        if d <= 0:
            return self._pick(leaf)
        return self._pick(leaf + [
            (1.5, lambda: f"{r.choice(['LOWER', 'UPPER'])}({self.text(s)})"),
            (1, lambda: f"{r.choice(['CAST', 'TRY_CAST'])}({self.num(s)} AS {r.choice(TEXT_CASTS)})"),
            (0.5, lambda: f"CAST({r.choice(DATES + BOOLS)} AS VARCHAR)"),
            (1.5, lambda: self.case(d, self.text)),
            (0.7, lambda: f"COALESCE({self.text(s)}, {self.text(s)})"),
            (0.5, lambda: f"IF({self.boolean(s)}, {self.text(s)}, {self.text(s)})"),
            (0.3, lambda: f"{r.choice(['LEAST', 'GREATEST'])}({self.text(s)}, {self.text(s)})"),
        ])

    # dates
    def date(self, d: int | None = None) -> str:
        d = self.depth if d is None else d
        r = self.rng
        s = self._sub(d)
        leaf = [(6, lambda: r.choice(DATES))]
        if d <= 0:
            return self._pick(leaf)
        return self._pick(leaf + [
            (0.7, lambda: f"CAST({quote(r.choice(DATE_LITERALS))} AS {r.choice(['DATE', 'TIMESTAMP'])})"),
            (0.7, lambda: f"TRY_CAST({self.text(s)} AS {r.choice(['DATE', 'TIMESTAMP'])})"),
            (0.7, lambda: f"COALESCE({r.choice(DATES)}, {r.choice(DATES)})"),
            (0.7, lambda: self.case(d, self.date)),
            (0.3, lambda: f"{r.choice(['LEAST', 'GREATEST'])}({self.date(s)}, {self.date(s)})"),
        ])

    # predicates
    def boolean(self, d: int | None = None) -> str:
        d = self.depth if d is None else d
        r = self.rng
        s = self._sub(d)
        leaf = [
            (2, lambda: r.choice(BOOLS)),
            (3, self.unit_pred),
            (2, lambda: f"{r.choice(BOUNDED_NUM + UNBOUNDED_NUM)} {r.choice(COMPARE)} {r.choice(NUM_LITERALS)}"),
            (1, lambda: f"{r.choice(TEXT)} = {quote(r.choice(TEXT_LITERALS))}"),
            (0.5, lambda: f"{r.choice(DATES)} {r.choice(COMPARE)} {quote(r.choice(DATE_LITERALS))}"),
            (0.8, lambda: f"{r.choice(list(COLUMNS))} IS {r.choice(['NULL', 'NOT NULL'])}"),
            (0.3, lambda: r.choice(["TRUE", "FALSE", "NULL"])),
        ]
        if d <= 0:
            return self._pick(leaf)
        return self._pick(leaf + [
            (2, lambda: f"{self.num(s)} {r.choice(COMPARE)} {self.num(s)}"),
            (1, lambda: f"{self.text(s)} {r.choice(COMPARE)} {self.text(s)}"),
            (0.5, lambda: f"{self.date(s)} {r.choice(COMPARE)} {self.date(s)}"),
            (1, lambda: f"{self.num(s)} {r.choice(['', 'NOT '])}BETWEEN {self.num(s)} AND {self.num(s)}"),
            (1, lambda: f"{self.num(s)} {r.choice(['', 'NOT '])}IN ({', '.join(self.num(0) for _ in range(r.randint(1, 4)))})"),
            (0.8, lambda: f"{r.choice(TEXT)} {r.choice(['', 'NOT '])}IN ({', '.join(quote(r.choice(TEXT_LITERALS)) for _ in range(r.randint(1, 3)))})"),
            (1, lambda: f"{self.text(s)} {r.choice(['LIKE', 'ILIKE', 'NOT LIKE'])} {quote(r.choice(LIKE_PATTERNS))}"),
            (0.8, lambda: f"({self.any(s)}) IS {r.choice(['NULL', 'NOT NULL'])}"),
            (0.5, lambda: f"({self.boolean(s)}) IS {r.choice(['TRUE', 'FALSE', 'NOT TRUE'])}"),
            (2, lambda: f"({self.boolean(s)} {r.choice(['AND', 'OR'])} {self.boolean(s)})"),
            (1, lambda: f"NOT ({self.boolean(s)})"),
            (0.5, lambda: f"{r.choice(['CAST', 'TRY_CAST'])}({self.text(s)} AS BOOLEAN)"),
            (0.3, lambda: self.case(d, self.boolean)),
        ])

    def any(self, d: int | None = None) -> str:
        d = self.depth if d is None else d
        return self._pick([
            (4, lambda: self.num(d)), (2, lambda: self.text(d)), (1.5, lambda: self.boolean(d)), (1, lambda: self.date(d)),
            (0.5, lambda: UNIT),
        ])

    # GROUP BY keys
    def key(self) -> str:
        """A GROUP BY key: mostly one with a public domain (public list, bool, small int range, date
        part, CASE of literals), now and then one without (threshold selection) or on the unit (refused)."""
        r = self.rng
        return self._pick([
            (3, lambda: r.choice(["cat", "seg", "flag", "ok", "qty", "level"])),
            (2, lambda: r.choice(["MONTH(ts)", "YEAR(ts)", "QUARTER(ts)", "EXTRACT(dow FROM ts)", "HOUR(born)"])),
            (2, lambda: f"CASE WHEN {self.boolean(1)} THEN 'hi' ELSE 'lo' END"),
            (1, lambda: f"CASE WHEN {self.boolean(1)} THEN 1 END"),
            (1, lambda: "CASE cat WHEN 'food' THEN 'f' WHEN 'cafe\u0301' THEN 'c' ELSE NULL END"),
            (1, lambda: r.choice(["note", "YEAR(born)", "LOWER(cat)", "CAST(qty AS VARCHAR)"])),  # no public domain
            (0.5, lambda: self.any(1)),
            (0.1, lambda: f"CASE WHEN {self.unit_pred()} THEN 'a' ELSE 'b' END"),  # refused: reads the unit
        ])


# ------------------------------------------------------------------------------------ aggregate forms

NUMERIC_FORMS = ("SUM({e})", "AVG({e})", "VARIANCE({e})", "STDDEV({e})")
QUANTILE_FORMS = ("MEDIAN({e})", "MIN({e})", "MAX({e})", "PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY {e})",
                  "PERCENTILE_DISC(0.25) WITHIN GROUP (ORDER BY {e} DESC)")
COUNT_FORMS = ("COUNT({e})", "COUNT(DISTINCT {e})")


def numeric_forms(rng: random.Random, *, forms: int | None = None, quantile: float = 0.3) -> list[str]:
    """SUM, AVG, VARIANCE (or STDDEV), COUNT, COUNT(DISTINCT) and one quantile form; with `forms`,
    SUM and `forms - 1` of the others, drawn, the quantile with probability `quantile` (each form costs
    the planner a few milliseconds, a quantile an engine query of its own)."""
    others = ["AVG({e})", rng.choice(["VARIANCE({e})", "STDDEV({e})"]), *COUNT_FORMS]
    q = rng.choice(QUANTILE_FORMS)
    if forms is None:
        return ["SUM({e})", *others, q]
    n = min(len(others) + 1, max(0, forms - 1))
    picked = ([q] if rng.random() < quantile and n > 0 else [])
    picked = rng.sample(others, min(len(others), n - len(picked))) + picked
    rng.shuffle(picked)
    return ["SUM({e})", *picked]


def other_forms(rng: random.Random, *, forms: int | None = None) -> list[str]:
    """The forms for a value of any type: COUNT and COUNT(DISTINCT); SUM, AVG and MEDIAN, which take
    numbers and true/false values (and refuse the rest)."""
    out = [*COUNT_FORMS, "SUM({e})", "AVG({e})", "MEDIAN({e})"]
    return out if forms is None else out[:2] + rng.sample(out[2:], min(3, max(0, forms - 2)))


def strategy(kind: str = "num", depth: int = 3) -> Any:
    """A Hypothesis strategy of expressions of `kind` (num | text | boolean | date | any | key)."""
    from hypothesis import strategies as st

    return st.randoms(use_true_random=False).map(lambda r: getattr(ExprGen(r, depth=depth), kind)())
