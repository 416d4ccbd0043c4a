"""Passes 4–6: run a frozen plan on the engine, add the noise, post-process into the answer.

The mechanisms are built from the plan before any data is read (so their cost and accuracy are known
first); the engine runs only SQL generated from the plan; every noisy value comes from a mechanism's
`release()`; everything after that is post-processing of released values (clipping counts at 0,
AVG = centred SUM / COUNT, HAVING/ORDER BY/LIMIT on the noisy frame in a separate in-memory DuckDB).
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterator, Protocol, Sequence

import duckdb
import numpy as np
from sqlglot import exp

from gateway.errors import InvalidRequest
from gateway.sql.plan import Aggregate, Measure, Plan
from gateway.sql.scalar import lit_num
from mechanisms.accuracy import discrete_laplace_ci, gaussian_ci, laplace_ci
from mechanisms.gaussian import Gaussian
from mechanisms.cost import Cost
from mechanisms.laplace import LaplaceCount, LaplaceFloat
from gateway.sql.quantiles import build_quantile, histogram_query, quantile_lattice, release_quantile
from mechanisms.quantile import Lattice, RankCounts
from mechanisms.selection import NoisyTopK
from mechanisms.threshold import ThresholdCounts


class Engine(Protocol):
    def execute(self, select: exp.Expression) -> list[tuple]: ...


@dataclass(frozen=True)
class Accuracy:
    mechanism: str
    scale: float | None
    ci95: float | None

    def to_json(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism, "scale": self.scale, "ci95": self.ci95}


@dataclass(frozen=True)
class Answer:
    columns: list[str]
    rows: list[list[Any]]
    accuracy: dict[str, Accuracy]
    cost: Cost
    plan: Plan = field(repr=False)
    #: per column, one [low, high] per row in `rows` order (None: a key, a derived value, an empty cell)
    intervals: dict[str, list[list[float] | None]] = field(default_factory=dict)
    #: per aggregate column, what bounding did to its input (None for keys and derived columns)
    bounding: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    diagnostics: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "columns": self.columns,
            "rows": self.rows,
            "accuracy": {k: v.to_json() for k, v in self.accuracy.items()},
            "intervals": self.intervals,
            "level": 1 - self.plan.alpha,
            "bounding": self.bounding,
            "notes": self.notes,
            "cost": self.cost.to_json(),
        }
        if self.diagnostics is not None:
            out["diagnostics"] = self.diagnostics
        return out


def _literal(v: Any) -> exp.Expression:
    if isinstance(v, bool):
        return exp.Boolean(this=v)
    if isinstance(v, (int, float)):
        return lit_num(v)
    return exp.Literal.string(str(v))


class Mechanisms:
    """The plan's mechanisms, built (and so calibrated and costed) before the data is read."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.by_measure: dict[str, Any] = {}
        self.selection: Any = None
        #: each quantile measure's public lattice of candidates (the engine counts rows per slot of it)
        self.lattices: dict[str, Lattice] = {}
        for m in plan.measures:
            if m.kind == "quantile":
                self.lattices[m.id] = quantile_lattice(plan, m)
        if plan.public:
            return
        k = plan.max_rows
        for mid in plan.released:
            m = self._measure(mid)
            if plan.gaussian is not None:
                self.by_measure[mid] = plan.gaussian[mid].build()
            else:
                self.by_measure[mid] = self._build(m, plan.shares[mid], k)
        if plan.selection == "top_k":
            self.selection = NoisyTopK(epsilon=plan.share, sensitivity=k, k=plan.top_k, monotonic=True)
        elif plan.selection == "threshold":
            try:
                self.selection = ThresholdCounts(epsilon=plan.share, delta=plan.delta, max_partitions=k, max_rows=k)
            except ValueError:
                # public parameters only (ε's share, δ, k): refused before any data is read
                raise InvalidRequest(
                    "delta is too small for threshold partition selection at this epsilon; ask with a larger delta"
                ) from None
        # what the mechanisms cost, each by OpenDP's own map, never exceeds what the plan charges
        if not self.cost().fits_within(plan.cost):
            raise AssertionError("the mechanisms would cost more than the plan charges")

    def _measure(self, mid: str) -> Measure:
        return next(m for m in self.plan.measures if m.id == mid)

    def _build(self, m: Measure, eps: Fraction, k: int) -> Any:
        if m.kind in ("count", "count_distinct"):
            return LaplaceCount(epsilon=eps, sensitivity=int(m.sensitivity))
        if m.kind == "sum":
            if m.sensitivity == 0:
                if not m.constant:  # the plan floors sums over columns: a 0 here is a planner bug
                    raise AssertionError("a sum over private rows planned with sensitivity 0")
                return None  # a literal of the query (SUM(0)): the same on every dataset
            return LaplaceFloat(epsilon=eps, sensitivity=m.sensitivity)
        if m.kind == "quantile":
            # the lattice the engine's counts are taken on: one object for the query and the draw
            return build_quantile(m, eps, k, level_alpha=self.plan.alpha, lattice=self.lattices[m.id])
        raise AssertionError(m.kind)

    def cost(self) -> Cost:
        total = Cost(Fraction(0))
        rho = Fraction(0)
        for mech in {id(x): x for x in [*self.by_measure.values(), self.selection] if x is not None}.values():
            if isinstance(mech, Gaussian):
                rho += mech.rho  # composed in zCDP, converted once below
            else:
                total = total + mech.cost
        if rho:
            gaussian = self.plan.gaussian
            assert gaussian is not None and gaussian.cost.rho is not None
            if rho > gaussian.cost.rho:
                raise AssertionError("the Gaussian measurements compose to more ρ than the plan converts")
            total = total + gaussian.cost
        return total


def _where(plan: Plan, extra: exp.Expression | None = None) -> exp.Expression | None:
    # No filter on the keys' public values here: `release` reads only the cells it may release, so
    # rows of other values are never released; filtering them in SQL cost a hash join over every row.
    parts = [p for p in (plan.where, extra) if p is not None]
    if not parts:
        return None
    return exp.and_(*[exp.Paren(this=p.copy()) for p in parts])


def _scanned(plan: Plan) -> list[Measure]:
    """The measures the engine computes in the main query (not quantiles, not derived sums, not the
    per-table cap checks of diagnostics)."""
    return [m for m in plan.measures if m.kind != "quantile" and m.base is None and m.sql is not None]


def main_query(plan: Plan) -> exp.Select | None:
    """The exact aggregates per cell, as the engine runs them."""
    cols: list[exp.Expression] = [exp.alias_(k.sql.copy(), k.id, quoted=True) for k in plan.keys]
    cols += [exp.alias_(m.sql.copy(), m.id, quoted=True) for m in _scanned(plan)]  # type: ignore[union-attr]
    if len(cols) == len(plan.keys):
        return None  # keys from their public domains only: nothing to read
    select = plan.source.render(exp.select(*cols), _where(plan))
    if plan.keys:
        select = select.group_by(*_positions(len(plan.keys)))
    return select


def _positions(n: int) -> list[exp.Expression]:
    """GROUP BY the first n select items by position: a key that is a constant (`SELECT 5 AS k ...
    GROUP BY k`) repeated as a GROUP BY term would be read by the engine as a position itself."""
    return [exp.Literal.number(i + 1) for i in range(n)]


def quantile_query(plan: Plan, m: Measure, lattice: Lattice) -> exp.Select:
    """Rows per (cell, slot) of a quantile measure's clamped value on its lattice (the engine's counts;
    `gateway.sql.quantiles.histogram_query`)."""
    return histogram_query(plan, m, lattice)


def _histogram(rows: list[tuple], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """#(x < c_j), #(x = c_j), #(x > c_j) per candidate from one cell's (slot, rows) pairs (n the
    lattice's count): what one unit moves is bounded by the rows it holds."""
    counts = RankCounts.from_slots(n, [(s, c) for s, c in rows])
    total = counts.total
    below = np.concatenate([[0], np.cumsum(counts.on + counts.between)[:-1]])
    return below, counts.on, total - below - counts.on


def _in_domains(plan: Plan, cell: tuple) -> bool:
    return all(k.domain is None or v in k.domain for k, v in zip(plan.keys, cell))


NAN = float("nan")  # the one NaN object of canonical cells, so that dict lookups of NaN keys match


def canonical_value(v: Any) -> Any:
    """One GROUP BY key value in canonical form: numbers as int or float (-0.0 as 0.0, every NaN the
    same object), NULL as None, text exactly as the engine holds it (two Unicode forms of 'é' are two
    groups in the engine, and stay two)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating, decimal.Decimal)):
        f = float(v)
        if math.isnan(f):
            return NAN
        return 0.0 if f == 0 else f
    return v


def canonical_cell(row: tuple) -> tuple:
    return tuple(canonical_value(v) for v in row)


def _tag(v: Any) -> list[Any]:
    if v is None:
        return ["null"]
    if isinstance(v, bool):
        return ["bool", v]
    if isinstance(v, (int, float)):
        if isinstance(v, float) and math.isnan(v):
            return ["nan"]
        if isinstance(v, float) and v.is_integer() and abs(v) < 2**63:
            return ["num", str(int(v))]  # 1.0 and 1 are one group, as they are one dict key
        return ["num", str(v) if isinstance(v, int) else repr(v)]  # repr is exact; inf and -inf included
    if isinstance(v, str):
        return ["str", v]
    if isinstance(v, (dt.date, dt.time)):
        return ["date", v.isoformat()]
    return ["other", type(v).__name__, repr(v)]


def _cell_key(cell: tuple) -> str:
    """The text a cell goes by in threshold selection: injective over canonical cells (NaN, ±inf,
    NULL, -0.0 and every string each their own key; one key is never two engine groups)."""
    return json.dumps([_tag(canonical_value(v)) for v in cell], ensure_ascii=False)


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    """Two engine groups with one canonical key (an engine that keeps -0.0 apart from 0.0) are one
    cell: counts and sums add (one unit's rows still move the sum of cells by at most k)."""
    for name, v in more.items():
        if v is not None:
            into[name] = v if into.get(name) is None else into[name] + v


def exact_cells(plan: Plan, engine: Engine) -> dict[tuple, dict[str, Any]]:
    """Per GROUP BY cell found in the data, the exact value of every non-quantile measure."""
    nkeys = len(plan.keys)
    exact: dict[tuple, dict[str, Any]] = {}
    q = main_query(plan)
    if q is None:
        return exact
    names = [m.id for m in _scanned(plan)]
    for row in engine.execute(q):
        values = dict(zip(names, row[nkeys:]))
        cell = canonical_cell(tuple(row[:nkeys]))
        if cell in exact:
            _merge(exact[cell], values)
        else:
            exact[cell] = values
    for m in plan.measures:
        if m.base is not None:
            for v in exact.values():
                v[m.id] = float(v[m.base] or 0) - m.center * float(v[m.count] or 0)  # type: ignore[index]
    return exact


def release(plan: Plan, engine: Engine, mechanisms: Mechanisms | None = None) -> Answer:
    mechs = mechanisms or Mechanisms(plan)
    exact: dict[tuple, dict[str, Any]] = {}
    cells = plan.cells
    noisy_counts: dict[tuple, int] = {}
    selection_accuracy: Accuracy | None = None
    if plan.selection == "threshold":
        count_id = plan.count_measure

        def candidates() -> Iterator[tuple[tuple, int]]:
            # Read inside the selection's padded step: the engine's grouping, the exact cells and the
            # draw together take a deadline sized by the public cap on candidate groups, so how many
            # groups the data hide does not show in the time (bench/timing.py measures it).
            exact.update(exact_cells(plan, engine))
            for cell in [c for c in exact if not _in_domains(plan, c)]:
                del exact[cell]  # keys that have a public list keep to it
            for c, v in exact.items():
                yield c, int(v[count_id] or 0)

        def keep_released(released: dict[tuple, int]) -> None:
            for cell in [c for c in exact if c not in released]:
                del exact[cell]  # freed inside the step too

        noisy_counts = mechs.selection.release(candidates(), key=_cell_key, then=keep_released)
        cells = sorted(noisy_counts, key=lambda c: tuple((v is None, str(v)) for v in c))
        selection_accuracy = Accuracy("laplace_threshold", mechs.selection.scale, None)
    else:
        exact = exact_cells(plan, engine)
    if plan.selection == "data":
        cells = sorted(exact, key=lambda c: tuple((v is None, str(v)) for v in c))
    assert cells is not None
    if plan.selection == "top_k":
        scores = [int((exact.get(canonical_cell(c)) or {}).get(plan.count_measure) or 0) for c in cells]
        picked = mechs.selection.release(scores)
        cells = [cells[i] for i in picked]
        selection_accuracy = Accuracy("noisy_max", mechs.selection.scale, None)

    checks = {mid for _, _, mid in plan.checks}
    values: dict[str, list[Any]] = {}
    for m in plan.measures:
        if m.kind == "quantile" or m.id in checks:
            continue
        raw = [(exact.get(canonical_cell(c)) or {}).get(m.id) for c in cells]
        raw = [0 if v is None else v for v in raw]
        mech = mechs.by_measure.get(m.id)
        if plan.public or m.id not in plan.released:
            values[m.id] = raw
        elif mech is None:
            values[m.id] = [float(v) for v in raw]
        else:
            values[m.id] = mech.release([int(v) for v in raw] if m.integer else [float(v) for v in raw])
    quantile_intervals: dict[str, list[list[float] | None]] = {}
    for m in plan.measures:
        if m.kind == "quantile":
            values[m.id], quantile_intervals[m.id] = release_quantile(plan, m, mechs.by_measure.get(m.id), engine, cells)

    frame: dict[str, list[Any]] = {}
    for i, key in enumerate(plan.keys):
        frame[key.id] = [c[i] for c in cells]
    accuracy_by_agg: dict[str, Accuracy] = {}
    bands: dict[str, list[list[float] | None]] = {}
    for agg in plan.aggregates:
        frame[agg.id], accuracy_by_agg[agg.id], bands[agg.id] = _finish(agg, values, mechs, plan, quantile_intervals)
    if plan.selection == "top_k":
        frame["_rank"] = list(range(len(cells)))
    # each aggregate column's interval ends travel with its row through HAVING, ORDER BY and LIMIT
    carried = [c.source for c in plan.columns if c.source in bands]
    for aid in dict.fromkeys(carried):
        frame[f"_lo{aid}"] = [None if b is None else b[0] for b in bands[aid]]
        frame[f"_hi{aid}"] = [None if b is None else b[1] for b in bands[aid]]
    columns = [c.name for c in plan.columns]
    extra = [f"_{end}{aid}" for aid in dict.fromkeys(carried) for end in ("lo", "hi")]
    full = post_process(plan, frame, len(cells), extra=extra)
    width = len(plan.columns)
    rows = [r[:width] for r in full]
    ends = {name: [r[width + j] for r in full] for j, name in enumerate(extra)}
    intervals: dict[str, list[list[float] | None]] = {}
    for col in plan.columns:
        if col.source in bands:
            lo, hi = ends[f"_lo{col.source}"], ends[f"_hi{col.source}"]
            intervals[col.name] = [None if a is None or b is None else [a, b] for a, b in zip(lo, hi)]
        else:
            intervals[col.name] = [None] * len(rows)

    accuracy: dict[str, Accuracy] = {}
    for col in plan.columns:
        if col.source is None:
            accuracy[col.name] = Accuracy("derived", None, None)
        elif col.source.startswith("_k"):
            if plan.public or plan.selection in ("public", "none"):
                accuracy[col.name] = Accuracy("none", 0.0, 0.0)
            else:
                accuracy[col.name] = selection_accuracy or Accuracy("none", 0.0, 0.0)
        else:
            accuracy[col.name] = accuracy_by_agg[col.source]
    bounding = bounding_of(plan)
    notes = _notes(plan, rows, intervals)
    diagnostics = _diagnostics(plan, exact, mechs, engine) if plan.checks else None
    return Answer(columns, rows, accuracy, plan.cost, plan, intervals, bounding, notes, diagnostics)


def bounding_of(plan: Plan) -> dict[str, dict[str, Any] | None]:
    """Per output column that is an aggregate: the clamp bounds its values were held to and the
    per-unit row cap, all public. The stated intervals cover the noise only, not what these did."""
    aggs = {a.id: a for a in plan.aggregates}
    out: dict[str, dict[str, Any] | None] = {}
    # the cap on the tables' rows (a per-unit subquery reads up to its tables' caps per unit)
    caps = [t.meta.max_rows_per_unit for t in plan.source.tables if not t.meta.public]
    cap = max(caps) if caps else plan.max_rows
    for col in plan.columns:
        agg = aggs.get(col.source or "")
        if agg is None or plan.public:
            out[col.name] = None
            continue
        entry: dict[str, Any] = {"max_rows_per_unit": cap}
        if agg.func != "count":
            entry["lower"], entry["upper"] = agg.lower, agg.upper
            entry["note"] = (
                f"each value was clamped to [{_num(agg.lower)}, {_num(agg.upper)}] and at most {cap} "
                f"row(s) per {_unit_name(plan)} were read; the interval covers the noise only, not the bias "
                "of clamping or of the cap (ask with diagnostics: true to count them)"
            )
        else:
            entry["note"] = (
                f"at most {cap} row(s) per {_unit_name(plan)} were counted; the interval covers the "
                "noise only, not rows the cap left out (ask with diagnostics: true to count them)"
            )
        out[col.name] = entry
    return out


def _unit_name(plan: Plan) -> str:
    return plan.source.dataset.privacy_unit or "row"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def _notes(plan: Plan, rows: list[list[Any]], intervals: dict[str, list[list[float] | None]]) -> list[str]:
    """What a reader of the intervals must know: cells with no value, cells whose interval is the
    whole clamp range (too few rows to say more)."""
    notes = []
    aggs = {a.id: a for a in plan.aggregates}
    for j, col in enumerate(plan.columns):
        agg = aggs.get(col.source or "")
        if agg is None or agg.func not in ("avg", "var", "stddev", "quantile") or plan.public:
            continue
        full = intervals.get(col.name) or []
        empty = sum(1 for r in rows if r[j] is None)
        if agg.func == "quantile":
            wide = 0
        else:
            top = (agg.upper - agg.lower) ** 2 if agg.func == "var" else (agg.upper - agg.lower)
            wide = sum(1 for b in full if b is not None and b[1] - b[0] >= top * (1 - 1e-9) and top > 0)
        if empty:
            notes.append(f"{col.name}: {empty} cell(s) too small to state a value (too few rows)")
        if wide:
            notes.append(f"{col.name}: {wide} cell(s) have too few rows for an interval narrower than the clamp range")
    return notes


def cap_query(plan: Plan, use: Any, cap: int) -> exp.Select:
    """Units of one table with more than `cap` rows before bounding, and their rows past the cap
    (counted up to `cap` per unit), over the table as loaded (the cap applies before any WHERE)."""
    per_unit = plan.source.rows_per_unit(use)
    n = exp.column("_n", table="_u", quoted=True)
    over = exp.GT(this=n, expression=exp.Literal.number(cap))
    cut = exp.Least(this=exp.Sub(this=n.copy(), expression=exp.Literal.number(cap)), expressions=[exp.Literal.number(cap)])
    units = exp.Sum(this=exp.Case(ifs=[exp.If(this=over, true=exp.Literal.number(1))], default=exp.Literal.number(0)))
    rows = exp.Sum(this=exp.Case(ifs=[exp.If(this=over.copy(), true=cut)], default=exp.Literal.number(0)))
    return exp.select(exp.alias_(units, "_units", quoted=True), exp.alias_(rows, "_rows", quoted=True)).from_(
        exp.Subquery(this=per_unit, alias=exp.TableAlias(this=exp.to_identifier("_u", quoted=True)))
    )


def _diagnostics(plan: Plan, exact: dict[tuple, dict[str, Any]], mechs: Mechanisms, engine: Engine) -> dict[str, Any]:
    """The noisy counts `diagnostics: true` paid for: values clamped per aggregate column (over every
    row the query's WHERE keeps) and, per table, units whose rows the cap cut and the rows cut."""
    names = {c.source: c.name for c in plan.columns if c.source}
    out: dict[str, Any] = {"clamped": {}, "capped": {}}
    cap_rows: dict[str, tuple[int, int]] = {}
    for what_id, what, mid in plan.checks:
        mech = mechs.by_measure[mid]
        if what == "clamped":
            total = sum(int(v.get(mid) or 0) for v in exact.values())
            noisy = max(0, int(mech.release([total])[0]))
            out["clamped"][names.get(what_id, what_id)] = {"rows": noisy, "ci95": _ci(mech, 0.05)}
        else:
            table = what_id
            if table not in cap_rows:
                use = next(u for u in plan.source.tables if u.name == table)
                got = engine.execute(cap_query(plan, use, use.meta.max_rows_per_unit))
                units, rows = (got[0] if got else (0, 0))
                cap_rows[table] = (int(units or 0), int(rows or 0))
            exact_value = cap_rows[table][0 if what == "units_capped" else 1]
            noisy = max(0, int(mech.release([exact_value])[0]))
            out["capped"].setdefault(table, {})[what] = {"value": noisy, "ci95": _ci(mech, 0.05)}
    out["note"] = (
        "noisy counts, charged with the query: 'clamped' counts rows whose value lay outside the clamp "
        "bounds; 'capped' counts units with more rows than the per-unit cap (before any WHERE) and the "
        "rows past it, each unit's counted up to the cap"
    )
    return out


_POST = duckdb.connect(":memory:")  # holds no data: each call reads its own VALUES list


def _sql_type(plan: Plan, name: str, values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if name.startswith("_k"):
        key = plan.keys[int(name[2:])]
        if key.type == "bool":
            return "BOOLEAN"
        if key.type == "num":
            return "BIGINT" if all(isinstance(v, int) and not isinstance(v, bool) for v in present) else "DOUBLE"
        if key.type == "date":
            return "TIMESTAMP"  # as the post-processing SQL compiles it (YEAR(k), k > '2025-06-01')
        if key.type == "null":
            return "DOUBLE"  # a NULL key is compiled as a number
        return "VARCHAR"
    if name == "_rank" or (present and all(isinstance(v, int) and not isinstance(v, bool) for v in present)):
        return "BIGINT"
    return "DOUBLE"


def post_process(plan: Plan, frame: dict[str, list[Any]], n: int, *, extra: Sequence[str] = ()) -> list[list[Any]]:
    """SELECT items, HAVING, ORDER BY and LIMIT over the released values only.

    Plain answers (every column a key or an aggregate, nothing to filter or order) are built directly;
    anything else runs the plan's post-processing SQL over a VALUES list in an in-memory DuckDB that
    holds no data."""
    post = plan.post
    show = [_shown_key if (c.source or "").startswith("_k") else _py for c in plan.columns] + [_py] * len(extra)
    simple = all(c.source for c in plan.columns) and not any(post.args.get(k) for k in ("where", "order", "limit", "offset"))
    if simple:
        sources = [c.source for c in plan.columns] + list(extra)
        return [[f(frame[src][i]) for f, src in zip(show, sources)] for i in range(n)]  # type: ignore[index]
    names = list(frame)
    if names:
        # TRY_CAST: a released key may be a value the type cannot hold (a date out of range, as text)
        casts = [exp.alias_(exp.TryCast(this=exp.column(f"c{j}"), to=exp.DataType.build(_sql_type(plan, name, frame[name]))), name, quoted=True)
                 for j, name in enumerate(names)]
        rows = [exp.Tuple(expressions=[_value(frame[name][i]) for name in names]) for i in range(n)]
        if rows:
            values = exp.Values(expressions=rows, alias=exp.TableAlias(this=exp.to_identifier("v"), columns=[exp.to_identifier(f"c{j}") for j in range(len(names))]))
            source = exp.select(*casts).from_(values)
        else:
            nulls = [exp.alias_(exp.Cast(this=exp.Null(), to=exp.DataType.build(_sql_type(plan, name, []))), name, quoted=True) for name in names]
            source = exp.select(*nulls).where(exp.false())
    else:
        source = exp.select(exp.alias_(exp.Literal.number(1), "_one")).from_(exp.Anonymous(this="range", expressions=[exp.Literal.number(n)]))
    query = post.copy()
    if extra:  # columns carried through HAVING/ORDER BY/LIMIT beside the answer's (interval ends)
        query.set("expressions", [*query.expressions, *(exp.column(e, quoted=True) for e in extra)])
    query.set("from_", exp.From(this=exp.Subquery(this=source, alias=exp.TableAlias(this=exp.to_identifier("noisy")))))
    cur = _POST.cursor()
    try:
        return [[f(v) for f, v in zip(show, row)] for row in cur.execute(query.sql(dialect="duckdb")).fetchall()]
    finally:
        cur.close()


def _value(v: Any) -> exp.Expression:
    if v is None:
        return exp.Null()
    if isinstance(v, float) and not math.isfinite(v):  # a released key: NaN, inf or -inf
        return exp.Cast(this=exp.Literal.string(repr(v)), to=exp.DataType.build("DOUBLE"))
    return _literal(v)


def _shown_key(v: Any) -> Any:
    """A key column's value in the answer: NaN and ±inf by name (JSON has no such numbers), so that the
    groups NaN, inf, -inf and NULL stay four rows an analyst can tell apart."""
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return _py(v)


def _py(v: Any) -> Any:
    """A released value as a JSON-native one (the answer is stored as JSON with its charge)."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float, decimal.Decimal)):
        f = float(v)
        return None if not math.isfinite(f) else f
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (dt.date, dt.time)):  # datetime is a date
        return v.isoformat()
    return v


def _ci(mech: Any, alpha: float) -> float:
    if mech is None:
        return 0.0
    if isinstance(mech, (LaplaceCount, ThresholdCounts)):
        return discrete_laplace_ci(mech.scale, alpha)
    if isinstance(mech, Gaussian):
        ci = gaussian_ci(mech.scale, alpha)
        return float(math.ceil(ci)) if mech.integer else ci
    return laplace_ci(mech.scale, alpha)


def _finish(
    agg: Aggregate, values: dict[str, list[Any]], mechs: Mechanisms, plan: Plan, quantile_intervals: dict[str, list[list[float] | None]]
) -> tuple[list[Any], Accuracy, list[list[float] | None]]:
    """Post-process one aggregate's released measures into its column, its per-column accuracy (the
    95% summary) and each cell's interval at the plan's level 1 - alpha (None where no value is
    released). Every interval is computed from released values and public scales only."""
    ms = [values[m] for m in agg.measures]
    mech = [mechs.by_measure.get(m) for m in agg.measures]
    public = plan.public
    alpha = plan.alpha
    if agg.func == "count":
        raw = [int(v) for v in ms[0]]
        out = [max(0, v) for v in raw]
        if public:
            return out, Accuracy("none", 0.0, 0.0), [[float(v), float(v)] for v in out]
        h = _ci(mech[0], alpha)
        return out, Accuracy(mech[0].name, mech[0].scale, _ci(mech[0], 0.05)), [[float(max(0, v - h)), float(max(0, v + h))] for v in raw]
    if agg.func == "sum":
        raw_f = [float(v) for v in ms[0]]
        out = [max(0.0, v) for v in raw_f] if agg.nonnegative else raw_f
        if public or mech[0] is None:
            return out, Accuracy("none", 0.0, 0.0), [[v, v] for v in out]
        h = _ci(mech[0], alpha)
        clip = (lambda v: max(0.0, v)) if agg.nonnegative else (lambda v: v)
        return out, Accuracy(mech[0].name, mech[0].scale, _ci(mech[0], 0.05)), [[clip(v - h), clip(v + h)] for v in raw_f]
    if agg.func == "quantile":
        bands = quantile_intervals.get(agg.measures[0]) or [None] * len(ms[0])
        if public:
            return list(ms[0]), Accuracy("none", 0.0, 0.0), bands
        # the per-column summary: the widest cell's half-width, when the intervals are the 95% ones
        widths = [(b[1] - b[0]) / 2 for b in bands if b is not None]
        ci = max(widths) if widths and abs(alpha - 0.05) < 1e-12 else None
        return list(ms[0]), Accuracy(mech[0].name, mech[0].scale, ci), bands
    lo, hi = agg.lower, agg.upper
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    counts, sums = ms[0], ms[1]
    parts = 2 if agg.func == "avg" else 3  # each measure's interval misses with alpha / parts (union bound)
    out: list[Any] = []
    bands: list[list[float] | None] = []
    worst: float | None = None  # the widest cell's 95% half-width: no released value, no interval
    a = _ci(mech[1], alpha / parts) if not public else 0.0
    b = _ci(mech[0], alpha / parts) if not public else 0.0
    a95 = _ci(mech[1], 0.05 / parts) if not public else 0.0
    b95 = _ci(mech[0], 0.05 / parts) if not public else 0.0
    c = _ci(mech[2], alpha / parts) if not public and parts == 3 else 0.0
    for i, (n, s) in enumerate(zip(counts, sums)):
        n = float(n)
        s = float(s)
        nn = max(n, 1.0)
        if agg.func == "avg":
            if n < 1:
                out.append(None)  # no released value, so no interval to state
                bands.append(None)
                continue
            value = min(max(mid + s / nn, lo), hi)
            out.append(value)
            w = _avg_halfwidth(s, nn, a, b, half)
            bands.append([max(lo, value - w), min(hi, value + w)])
            worst = max(worst or 0.0, _avg_halfwidth(s, nn, a95, b95, half))
            continue
        qsum = float(ms[2][i])
        if n < 2:
            out.append(None)
            bands.append(None)
            continue
        var = qsum / nn - (s / nn) ** 2
        if agg.sample:
            var *= nn / (nn - 1)
        top = half * half * (2 if agg.sample else 1)
        var = min(max(var, 0.0), top)
        out.append(var if agg.func == "var" else math.sqrt(var))
        v_lo, v_hi = _var_band(qsum, s, nn, a, b, c, half, agg.sample)
        v_lo, v_hi = max(0.0, min(v_lo, var)), min(top, max(v_hi, var))
        bands.append([v_lo, v_hi] if agg.func == "var" else [math.sqrt(v_lo), math.sqrt(v_hi)])
    if public:
        return out, Accuracy("none", 0.0, 0.0), [None if v is None else [v, v] for v in out]
    if agg.func == "avg":
        return out, Accuracy("laplace", None, worst), bands
    return out, Accuracy("laplace", None, None), bands


def _avg_halfwidth(s: float, n: float, a: float, b: float, half: float) -> float:
    """|S/N - S~/N~| <= (a + |S~| b / N~) / (N~ - b) when |S - S~| <= a and |N - N~| <= b (S the
    centred sum); the whole clamp range where the noisy count is within its own noise of 0."""
    if n <= b:
        return 2 * half
    return min((a + abs(s) * b / n) / (n - b), 2 * half)


def _var_band(q: float, s: float, n: float, a: float, b: float, c: float, half: float, sample: bool) -> tuple[float, float]:
    """Bounds on the variance given |Q - Q~| <= c, |S - S~| <= a, |N - N~| <= b (Q the centred sum of
    squares, S the centred sum, N the count): V = Q/N - (S/N)^2, times N/(N-1) for the sample form."""
    top = half * half * (2 if sample else 1)
    if n - b <= (1 if sample else 0):
        return 0.0, top
    n_lo, n_hi = n - b, n + b
    q_lo = max(0.0, q - c) / n_hi
    q_hi = (q + c) / n_lo
    m = s / n
    w = _avg_halfwidth(s, n, a, b, half)
    m_lo, m_hi = max(-half, m - w), min(half, m + w)
    sq_hi = max(m_lo * m_lo, m_hi * m_hi)
    sq_lo = 0.0 if m_lo <= 0 <= m_hi else min(m_lo * m_lo, m_hi * m_hi)
    v_lo, v_hi = max(0.0, q_lo - sq_hi), max(0.0, q_hi - sq_lo)
    if sample:
        v_lo *= n_hi / (n_hi - 1)
        v_hi *= n_lo / (n_lo - 1)
    return min(v_lo, top), min(v_hi, top)


def expected_accuracy(plan: Plan, rows: int | None = None) -> tuple[Cost, dict[str, Accuracy]]:
    """Cost and per-column 95% accuracy known before any data is read (the free preview).

    AVG, VAR and STDDEV depend on a cell's private count: with `rows` (a public assumption the caller
    makes about a cell's size) their half-width is stated for a cell of that many rows, in the widest
    case over the values (AVG: a mean at a bound); without it, None."""
    mechs = Mechanisms(plan)
    acc: dict[str, Accuracy] = {}
    for col in plan.columns:
        if col.source is None:
            acc[col.name] = Accuracy("derived", None, None)
            continue
        if col.source.startswith("_k"):
            if plan.selection == "top_k":
                acc[col.name] = Accuracy("noisy_max", mechs.selection.scale, None)
            elif plan.selection == "threshold":
                acc[col.name] = Accuracy("laplace_threshold", mechs.selection.scale, None)
            else:
                acc[col.name] = Accuracy("none", 0.0, 0.0)
            continue
        agg = next(a for a in plan.aggregates if a.id == col.source)
        if plan.public:
            acc[col.name] = Accuracy("none", 0.0, 0.0)
            continue
        mech = [mechs.by_measure.get(m) for m in agg.measures]
        if agg.func in ("count", "sum"):
            m0 = mech[0]
            acc[col.name] = Accuracy(m0.name, m0.scale, _ci(m0, 0.05)) if m0 is not None else Accuracy("none", 0.0, 0.0)
        elif agg.func == "quantile":
            acc[col.name] = Accuracy(mech[0].name, mech[0].scale, None)
        else:
            half = (agg.upper - agg.lower) / 2
            ci: float | None = None
            if rows is not None:
                parts = 2 if agg.func == "avg" else 3
                a, b = _ci(mech[1], 0.05 / parts), _ci(mech[0], 0.05 / parts)
                if agg.func == "avg":
                    # the widest case, |S~| = half · N: a cell of at least `rows` rows states no more
                    ci = _avg_halfwidth(half * float(rows), float(rows), a, b, half)
                else:
                    c = _ci(mech[2], 0.05 / parts)
                    # the widest band over typical values: spread half the range, centred mean
                    q = float(rows) * (half * half) / 3
                    v_lo, v_hi = _var_band(q, 0.0, float(rows), a, b, c, half, agg.sample)
                    if agg.func == "stddev":
                        v_lo, v_hi = math.sqrt(v_lo), math.sqrt(v_hi)
                    ci = (v_hi - v_lo) / 2
            acc[col.name] = Accuracy("laplace", None, ci)
    return plan.cost, acc
