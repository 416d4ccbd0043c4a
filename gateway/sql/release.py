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
from typing import Any, Iterator, Protocol

import duckdb
import numpy as np
from sqlglot import exp

from gateway.errors import InvalidRequest
from gateway.sql.plan import Aggregate, Measure, Plan
from gateway.sql.scalar import lit_num
from mechanisms.accuracy import discrete_laplace_ci, laplace_ci
from mechanisms.cost import Cost
from mechanisms.laplace import LaplaceCount, LaplaceFloat
from mechanisms.selection import ExponentialQuantile, NoisyTopK, candidate_grid
from mechanisms.threshold import ThresholdCounts

QUANTILE_CANDIDATES = 1024


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

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "rows": self.rows,
            "accuracy": {k: v.to_json() for k, v in self.accuracy.items()},
            "cost": self.cost.to_json(),
        }


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
        self.grids: dict[str, list[float]] = {}
        if plan.public:
            for m in plan.measures:
                if m.kind == "quantile":
                    self.grids[m.id] = candidate_grid(m.lower, m.upper, integer=m.value_integer, max_candidates=QUANTILE_CANDIDATES)
            return
        eps = plan.share
        k = plan.max_rows
        for mid in plan.released:
            m = self._measure(mid)
            self.by_measure[mid] = self._build(m, eps, k)
        if plan.selection == "top_k":
            self.selection = NoisyTopK(epsilon=eps, sensitivity=k, k=plan.top_k, monotonic=True)
        elif plan.selection == "threshold":
            try:
                self.selection = ThresholdCounts(epsilon=eps, delta=plan.delta, max_partitions=k, max_rows=k)
            except ValueError:
                # public parameters only (ε's share, δ, k): refused before any data is read
                raise InvalidRequest(
                    "delta is too small for threshold partition selection at this epsilon; ask with a larger delta"
                ) from None
            if plan.count_measure is not None:
                self.by_measure[plan.count_measure] = self.selection
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
            grid = candidate_grid(m.lower, m.upper, integer=m.value_integer, max_candidates=QUANTILE_CANDIDATES)
            self.grids[m.id] = grid
            return ExponentialQuantile(epsilon=eps, alpha=m.alpha, candidates=grid, max_rows=k)
        raise AssertionError(m.kind)

    def cost(self) -> Cost:
        total = Cost(Fraction(0))
        for mech in {id(x): x for x in [*self.by_measure.values(), self.selection] if x is not None}.values():
            total = total + mech.cost
        return total


def _where(plan: Plan, extra: exp.Expression | None = None) -> exp.Expression | None:
    # No filter on the keys' public values here: `release` reads only the cells it may release, so
    # rows of other values are never released; filtering them in SQL cost a hash join over every row.
    parts = [p for p in (plan.where, extra) if p is not None]
    if not parts:
        return None
    return exp.and_(*[exp.Paren(this=p.copy()) for p in parts])


def _scanned(plan: Plan) -> list[Measure]:
    """The measures the engine computes in the main query (not quantiles, not derived sums)."""
    return [m for m in plan.measures if m.kind != "quantile" and m.base is None]


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


def quantile_query(plan: Plan, m: Measure, grid: list[float]) -> exp.Select:
    lo = grid[0]  # positions count from the first candidate (the grid is evenly spaced from it)
    width = (grid[-1] - grid[0]) / (len(grid) - 1) if len(grid) > 1 else 1.0
    pos = exp.Div(this=exp.Paren(this=exp.Sub(this=m.sql.copy(), expression=lit_num(lo))), expression=lit_num(width))  # type: ignore[union-attr]
    floor = exp.Anonymous(this="FLOOR", expressions=[pos.copy()])
    cols = [exp.alias_(k.sql.copy(), k.id, quoted=True) for k in plan.keys]
    cols += [
        exp.alias_(floor.copy(), "_bin", quoted=True),
        exp.alias_(exp.EQ(this=pos.copy(), expression=floor.copy()), "_exact", quoted=True),
        exp.alias_(exp.Count(this=exp.Star()), "_n", quoted=True),
    ]
    not_null = exp.Not(this=exp.Is(this=m.sql.copy(), expression=exp.Null()))  # type: ignore[union-attr]
    select = plan.source.render(exp.select(*cols), _where(plan, not_null))
    return select.group_by(*_positions(len(plan.keys) + 2))  # the keys, _bin and _exact


def _histogram(rows: list[tuple], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """#(x < c_i), #(x = c_i), #(x > c_i) from counts per (bin, exact) with x at grid position f."""
    on = np.zeros(n, dtype=np.int64)  # f == j
    between = np.zeros(n, dtype=np.int64)  # j < f < j + 1
    for b, exact, cnt in rows:
        j = int(min(max(b, 0), n - 1))
        if exact or j == n - 1:
            on[j] += cnt
        else:
            between[j] += cnt
    total = int(on.sum() + between.sum())
    below = np.concatenate([[0], np.cumsum(on + between)[:-1]])  # rows with f < i
    equal = on
    above = total - below - equal
    return below, equal, above


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
    nkeys = len(plan.keys)
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

    values: dict[str, list[Any]] = {}
    for m in plan.measures:
        if m.kind == "quantile":
            continue
        raw = [(exact.get(canonical_cell(c)) or {}).get(m.id) for c in cells]
        raw = [0 if v is None else v for v in raw]
        mech = mechs.by_measure.get(m.id)
        if plan.public or m.id not in plan.released and m.id != plan.count_measure:
            values[m.id] = raw
        elif mech is mechs.selection and plan.selection == "threshold":
            values[m.id] = [noisy_counts[c] for c in cells]
        elif mech is None:
            values[m.id] = [float(v) for v in raw]
        else:
            values[m.id] = mech.release([int(v) for v in raw] if m.integer else [float(v) for v in raw])
    for m in plan.measures:
        if m.kind != "quantile":
            continue
        grid = mechs.grids[m.id]
        per_cell: dict[tuple, list[tuple]] = {}
        for row in engine.execute(quantile_query(plan, m, grid)):
            per_cell.setdefault(canonical_cell(tuple(row[:nkeys])), []).append(tuple(row[nkeys:]))
        out = []
        for c in cells:
            below, equal, above = _histogram(per_cell.get(canonical_cell(c), []), len(grid))
            if plan.public:  # a public table's exact quantile, on the same grid
                num, den = m.alpha.numerator, m.alpha.denominator
                scores = [abs((den - num) * int(lt) - num * int(gt)) for lt, gt in zip(below, above)]
                out.append(grid[int(np.argmin(scores))])
            else:
                out.append(mechs.by_measure[m.id].release_from_histogram(below.tolist(), equal.tolist(), above.tolist()))
        values[m.id] = out

    frame: dict[str, list[Any]] = {}
    for i, key in enumerate(plan.keys):
        frame[key.id] = [c[i] for c in cells]
    accuracy_by_agg: dict[str, Accuracy] = {}
    for agg in plan.aggregates:
        frame[agg.id], accuracy_by_agg[agg.id] = _finish(agg, values, mechs, plan)
    if plan.selection == "top_k":
        frame["_rank"] = list(range(len(cells)))
    columns = [c.name for c in plan.columns]
    rows = post_process(plan, frame, len(cells))

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
    return Answer(columns, rows, accuracy, plan.cost, plan)


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


def post_process(plan: Plan, frame: dict[str, list[Any]], n: int) -> list[list[Any]]:
    """SELECT items, HAVING, ORDER BY and LIMIT over the released values only.

    Plain answers (every column a key or an aggregate, nothing to filter or order) are built directly;
    anything else runs the plan's post-processing SQL over a VALUES list in an in-memory DuckDB that
    holds no data."""
    post = plan.post
    show = [_shown_key if (c.source or "").startswith("_k") else _py for c in plan.columns]
    simple = all(c.source for c in plan.columns) and not any(post.args.get(k) for k in ("where", "order", "limit", "offset"))
    if simple:
        return [[f(frame[c.source][i]) for f, c in zip(show, plan.columns)] for i in range(n)]  # type: ignore[index]
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
    return laplace_ci(mech.scale, alpha)


def _finish(agg: Aggregate, values: dict[str, list[Any]], mechs: Mechanisms, plan: Plan) -> tuple[list[Any], Accuracy]:
    """Post-process one aggregate's released measures into its column, with its accuracy."""
    ms = [values[m] for m in agg.measures]
    mech = [mechs.by_measure.get(m) for m in agg.measures]
    public = plan.public
    if agg.func == "count":
        out = [max(0, int(v)) for v in ms[0]]
        if public:
            return out, Accuracy("none", 0.0, 0.0)
        return out, Accuracy(mech[0].name, mech[0].scale, _ci(mech[0], 0.05))
    if agg.func == "sum":
        out = [max(0.0, float(v)) if agg.nonnegative else float(v) for v in ms[0]]
        if public or mech[0] is None:
            return out, Accuracy("none", 0.0, 0.0)
        return out, Accuracy(mech[0].name, mech[0].scale, _ci(mech[0], 0.05))
    if agg.func == "quantile":
        if public:
            return list(ms[0]), Accuracy("none", 0.0, None)
        return list(ms[0]), Accuracy(mech[0].name, mech[0].scale, None)
    lo, hi = agg.lower, agg.upper
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    counts, sums = ms[0], ms[1]
    out = []
    worst: float | None = None  # no released value, no interval to state
    a = _ci(mech[1], 0.025) if not public else 0.0
    b = _ci(mech[0], 0.025) if not public else 0.0
    for i, (n, s) in enumerate(zip(counts, sums)):
        n = float(n)
        s = float(s)
        nn = max(n, 1.0)
        if agg.func == "avg":
            if n < 1:
                out.append(None)  # no released value, so no interval to state
                continue
            out.append(min(max(mid + s / nn, lo), hi))
            # |S/N - S~/N~| <= (a + |S~| b / N~) / (N~ - b) when |S - S~| <= a and |N - N~| <= b
            width = (a + abs(s) * b / nn) / (nn - b) if nn > b else hi - lo
            worst = max(worst or 0.0, min(width, hi - lo))
        else:
            qsum = float(ms[2][i])
            if n < 2:
                out.append(None)
                continue
            var = qsum / nn - (s / nn) ** 2
            if agg.sample:
                var *= nn / (nn - 1)
            var = min(max(var, 0.0), half * half * (2 if agg.sample else 1))
            out.append(var if agg.func == "var" else math.sqrt(var))
    if public:
        return out, Accuracy("none", 0.0, 0.0)
    if agg.func == "avg":
        return out, Accuracy("laplace", mech[1].scale if mech[1] else 0.0, worst)
    return out, Accuracy("laplace", mech[2].scale if mech[2] else 0.0, None)


def expected_accuracy(plan: Plan) -> tuple[Cost, dict[str, Accuracy]]:
    """Cost and per-column accuracy known before any data is read (the free preview)."""
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
            # AVG's interval depends on the noisy count; VAR/STDDEV report the sum of squares' noise, as the answer does
            noise = mech[1] if agg.func == "avg" else mech[2]
            acc[col.name] = Accuracy("laplace", noise.scale if noise else 0.0, None)
    return plan.cost, acc
