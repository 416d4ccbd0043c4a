"""The soundness check: planned sensitivities against the engine's real semantics, on neighbouring datasets.

Neighbours are the adversarial dataset of `tests.soundness.gen` with and without all rows of one target
unit (DESIGN.md §1: user-level DP). Each query is planned once (`Gateway.plan`, `release.Mechanisms`)
and its exact measures are compared, over the cells the release reads (the public cells, or the cells
found in the data for threshold selection), between the dataset and each neighbour:

* every non-quantile measure moves by at most its `sensitivity` in L1 over those cells, up to float
  rounding: 1e-9 of the magnitudes involved (for a centred sum `base - center * count`, those of `base`
  and `center * count`, which cancel) plus 1e-9;
* every measure released without noise (no mechanism in `release.Mechanisms`) is the same on both;
* for quantiles, the histogram (`quantile_query` + `_histogram`: rows below, on and above each
  candidate) moves by at most k per unit in L∞ over candidates, summed over cells, and the exponential
  mechanism's score by at most k * max(alpha, 1 - alpha) in its integer units;
* no exact measure is infinite or NaN (a noisy inf is inf: nothing would hide it).

Refusals with a typed 4xx error are counted; any other exception, in planning, building the mechanisms
or running the engine (a query must never fail because of a value in the data), is a violation. As a
statistic, not a failure: how many aggregated values fall outside the interval the analysis inferred
(`Typed.interval`) before the plan's outer clamp: where that clamp saves privacy and costs accuracy.

Speed: expressions are checked in batches (one query holds the aggregates of several expressions; a
refused batch is bisected down to the refused forms, and a violation found again one expression at a
time), and each plan's engine queries run once for the dataset and all neighbours
(`tests.soundness.scenarios`); every `faithful_every`-th plan is also run exactly as the release runs
it, on each neighbour's own engine, and any difference is a `harness` violation.
"""
from __future__ import annotations

import copy
import math
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import sqlglot
from sqlglot import exp

from gateway.core import Gateway
from gateway.engines.duckdb import DuckDBEngine
from gateway.errors import DpgateError
from gateway.sql import release as _release
from gateway.sql.parse import parse
from gateway.sql.release import Mechanisms, _histogram, _in_domains, exact_cells, main_query, quantile_query
from gateway.sql.scalar import BOOL, NUM, ScalarCompiler, Typed, bounded
from gateway.sql.source import Source
from tests.soundness import gen
from tests.soundness.scenarios import BASE, Light, Rows, by_cell, canonical_cell, diff_cells, group, scenarios

EPSILON = 10  # sensitivities do not depend on ε; a large one keeps threshold selection from refusing
DELTA = 5e-4
REL_TOL = 1e-9
ABS_TOL = 1e-9


@dataclass(frozen=True)
class Violation:
    kind: str  # sensitivity | unnoised | quantile | nonfinite | collision | error | harness
    sql: str
    measure: str  # "<id> <kind>", or the failing stage of an error
    sensitivity: float
    observed: float
    unit: str | None = None  # the target unit whose removal showed it
    detail: str = ""
    # the generated parts of a one-expression query (what `bench/soundness.py` shrinks)
    expr: str = ""
    where: str | None = None
    key: str | None = None

    def line(self) -> str:
        where = f" without {self.unit}" if self.unit else ""
        return (f"[{self.kind}] {self.measure}: planned {self.sensitivity:.6g}, observed {self.observed:.6g}{where}"
                f"{' (' + self.detail + ')' if self.detail else ''}\n    {self.sql}")


COUNTERS = ("expressions", "queries", "forms", "refused_forms", "accepted_forms", "plans_checked", "measures", "pairs",
            "faithful_plans", "values_checked", "values_outside", "expressions_outside")


@dataclass
class Stats:
    expressions: int = 0
    queries: int = 0  # plans asked for (batches, their bisections, probes)
    forms: int = 0  # aggregate calls tried (expression x form x variant)
    refused_forms: int = 0
    accepted_forms: int = 0
    plans_checked: int = 0
    measures: int = 0
    pairs: int = 0  # (plan, neighbour) comparisons
    faithful_plans: int = 0  # plans also run on every neighbour's own engine
    values_checked: int = 0  # aggregated values examined for the interval statistic
    values_outside: int = 0  # of which outside the inferred interval (before the outer clamp)
    expressions_outside: int = 0
    variants: Counter = field(default_factory=Counter)  # forms per (WHERE?, GROUP BY?)
    refusals: Counter = field(default_factory=Counter)
    refused_parts: Counter = field(default_factory=Counter)  # WHERE or GROUP BY drawn and refused on their own
    violations: list[Violation] = field(default_factory=list)
    outside_examples: list[str] = field(default_factory=list)

    def merge(self, other: Stats) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.variants.update(other.variants)
        self.refusals.update(other.refusals)
        self.refused_parts.update(other.refused_parts)
        self.violations.extend(other.violations)
        self.outside_examples.extend(other.outside_examples[: max(0, 30 - len(self.outside_examples))])


class Refused(Exception):
    def __init__(self, code: str, construct: str) -> None:
        super().__init__(code)
        self.code = code
        self.construct = construct


class EngineFailure(RuntimeError):
    pass


def embedded() -> Any:
    return DuckDBEngine(None, seed="soundness-fuzz", threads=1)


def _gateway(drop_unit: str | None, make_engine: Callable[[], Any] = embedded) -> Gateway:
    """The adversarial dataset (without `drop_unit`'s rows) in a fresh engine; `load_frame` takes the
    arrow tables as they are (NaN, ±inf, -0.0, year-1 dates) and says where they went."""
    engine = make_engine()
    meta = copy.deepcopy(gen.DATASET)
    for name, table in gen.frames(drop_unit).items():
        source = engine.load_frame(name, table)
        for t in meta["tables"].values():
            if t["source"] == name:
                t["source"] = source
    gw = Gateway(engine)
    gw.register(meta)
    return gw


def _num(v: Any) -> float:
    return 0.0 if v is None else float(v)


@dataclass
class Item:
    """One expression and the aggregate forms of it to try."""

    expr: str
    forms: list[str]
    typed: Typed | None = None


class Soundness:
    """The dataset and one neighbour per target unit, each in its own in-memory engine.

    On another engine (`make_engine`: PostgreSQL, Spark) the dataset lives there and every check runs
    on its SQL through its dialect; the neighbours are the scenarios of the one query (the stability
    premise and the faithful runs on each neighbour's own engine are the embedded engine's; the
    faithful run of the dataset itself runs on the engine under test)."""

    def __init__(self, *, faithful_every: int = 1, make_engine: Callable[[], Any] | None = None) -> None:
        self.embedded = make_engine is None
        self.base = _gateway(None, make_engine or embedded)
        self.units = list(gen.TARGETS)
        self.neighbours = {u: _gateway(u).engine for u in gen.TARGETS} if self.embedded else {}
        self.faithful_every = faithful_every
        self.rows = gen.frames()["raw_t"].num_rows
        self.stats = Stats()
        self._plans = 0  # plans checked in this instance's life (its stats may be renewed)
        meta = self.base.catalog.get(gen.DATASET["name"])
        self.source = Source(meta, parse(f"SELECT COUNT(*) FROM {gen.TABLE}"), self.base.engine)
        self.unit_sql = self.source.resolve(exp.column(gen.UNIT)).sql
        if self.embedded:
            self._check_stable()

    @property
    def bounded_rows(self) -> int:
        rel = self.base.engine.relation_name(gen.DATASET["name"], gen.TABLE, bounded=True)
        return int(self.base.engine._con.execute(f'SELECT count(*) FROM "{rel}"').fetchone()[0])  # type: ignore[index]

    def _check_stable(self) -> None:
        """The rewrite's premise: each neighbour's bounded rows are the dataset's minus the unit's."""
        rel = self.base.engine.relation_name(gen.DATASET["name"], gen.TABLE, bounded=True)
        q = f'SELECT * FROM "{rel}" WHERE CAST({gen.UNIT} AS VARCHAR) <> ? ORDER BY _dpgate_row'
        for unit, engine in self.neighbours.items():
            mine = self.base.engine._con.execute(q, [unit]).fetchall()
            theirs = engine._con.execute(q, [unit]).fetchall()
            assert repr(mine) == repr(theirs), f"bounding is not stable: removing {unit} changed other units' rows"

    # planning
    def plan(self, sql: str) -> tuple[Any, Mechanisms]:
        """The plan and its mechanisms, or Refused for a typed 4xx error; anything else propagates."""
        self.stats.queries += 1
        try:
            plan = self.base.plan(gen.DATASET["name"], sql, epsilon=EPSILON, delta=DELTA)
            mechs = Mechanisms(plan)  # built before any data is read: a refusal here is a 4xx too
        except DpgateError as e:
            if e.status >= 500:
                raise
            raise Refused(e.code, getattr(e, "construct", None) or "") from None
        return plan, mechs

    def _refused(self, sql: str) -> Refused | None:
        try:
            self.plan(sql)
        except Refused as r:
            return r
        except Exception:  # noqa: BLE001 - the batch reports it
            return None
        return None

    def screen(self, item: Item) -> Item:
        """Drop (and count as refused) the forms the planner refuses for the expression alone, asking
        the planner itself; the compiler says where to ask."""
        try:
            typed = ScalarCompiler(self.source.resolve, clamp=True, dialect=self.base.engine.dialect)(sqlglot.parse_one(item.expr, read="duckdb"))
        except Exception:  # noqa: BLE001 - refused (or a crash): the planner says which
            typed = None
        if typed is None:
            r = self._refused(query(item.expr, ["COUNT({e})"], None, None))
            if r is not None:
                self._count_refused(item.forms, r, (False, False))
                return Item(item.expr, [])
            return item
        item.typed = typed
        numeric = typed.type == BOOL or (typed.type == NUM and bounded(typed.interval) is not None)
        bounded_forms = [f for f in item.forms if not f.startswith("COUNT")]
        if bounded_forms and not numeric:
            r = self._refused(query(item.expr, [bounded_forms[0]], None, None))
            if r is not None:
                self._count_refused(bounded_forms, r, (False, False))
                return Item(item.expr, [f for f in item.forms if f.startswith("COUNT")], typed)
        return item

    def _count_refused(self, forms: list[str], r: Refused, variant: tuple[bool, bool]) -> None:
        self.stats.forms += len(forms)
        self.stats.refused_forms += len(forms)
        self.stats.variants[variant] += len(forms)
        self.stats.refusals[f"{r.code}: {r.construct}"] += len(forms)

    def variant(self, where: str | None, key: str | None) -> tuple[str | None, str | None]:
        """The drawn WHERE and GROUP BY key, without the parts the planner refuses on their own."""
        if where is None and key is None:
            return None, None
        if self._refused(query("1", ["COUNT(*)"], where, key)) is None:
            return where, key
        keep = []
        for part, w, k in (("WHERE", where, None), ("GROUP BY", None, key)):
            if w is None and k is None:
                keep.append(None)
                continue
            r = self._refused(query("1", ["COUNT(*)"], w, k))
            if r is not None:
                self.stats.refused_parts[f"{part}: {r.code}: {r.construct}"] += 1
                keep.append(None)
            else:
                keep.append(w if part == "WHERE" else k)
        if keep[0] is not None and keep[1] is not None:
            return keep[0], None  # each accepted alone, refused together: keep one
        return keep[0], keep[1]

    def run_items(self, items: list[Item], where: str | None, key: str | None, *, count: bool = True) -> list[Violation]:
        """Plan the items' forms in one query and check it; a refused or failing batch is bisected,
        a single expression split into its forms, so that each refused form is counted and each
        accepted one checked. Violations of a batch are found again one expression at a time, so each
        names the expression's own query."""
        items = [i for i in items if i.forms]
        if not items:
            return []
        variant = (where is not None, key is not None)
        sql = query_items(items, where, key)
        try:
            plan, mechs = self.plan(sql)
        except Refused as r:
            if len(items) > 1:
                half = len(items) // 2
                return self.run_items(items[:half], where, key, count=count) + self.run_items(items[half:], where, key, count=count)
            item = items[0]
            counts = [f for f in item.forms if f.startswith("COUNT")]
            others = [f for f in item.forms if not f.startswith("COUNT")]
            if counts and others:
                return (self.run_items([Item(item.expr, others, item.typed)], where, key, count=count)
                        + self.run_items([Item(item.expr, counts, item.typed)], where, key, count=count))
            if len(item.forms) > 1 and not r.construct.startswith("unbounded"):
                return sum((self.run_items([Item(item.expr, [f], item.typed)], where, key, count=count) for f in item.forms), [])
            # one form, or bounded forms of a value with no bound: SUM, AVG, VARIANCE and the quantiles
            # all need one (`_bounded_value`), so all of them are refused alike
            if count:
                self._count_refused(item.forms, r, variant)
            return []
        except Exception as e:  # noqa: BLE001 - a 5xx is what this looks for
            if len(items) > 1:
                half = len(items) // 2
                return self.run_items(items[:half], where, key, count=count) + self.run_items(items[half:], where, key, count=count)
            if count:
                self.stats.forms += len(items[0].forms)
                self.stats.variants[variant] += len(items[0].forms)
            return [Violation("error", sql, "plan", 0, 0, detail=f"{type(e).__name__}: {e}"[:300], expr=items[0].expr,
                              where=where, key=key)]
        n = sum(len(i.forms) for i in items)
        if count:
            self.stats.forms += n
            self.stats.accepted_forms += n
            self.stats.variants[variant] += n
        found = self.check(plan, mechs, sql, count=count)
        if found and len(items) > 1:
            singles = sum((self.run_items([i], where, key, count=False) for i in items), [])
            harness = [v for v in found if v.kind == "harness"]  # the singles are not run as released
            found = singles + harness if singles or harness else found
        elif found:
            found = [replace(v, expr=items[0].expr, where=where, key=key) for v in found]
        return found

    # the check
    def check(self, plan: Any, mechs: Mechanisms, sql: str, *, count: bool = True) -> list[Violation]:
        if count:
            self.stats.plans_checked += 1
            self._plans += 1
        # the first plan, then every n-th: a short run is checked against the release too
        faithful = count and self.faithful_every > 0 and (self._plans - 1) % self.faithful_every == 0
        quantiles = [m for m in plan.measures if m.kind == "quantile"]
        nkeys = len(plan.keys)
        try:
            light = Light(plan)
            exact = self.exact_by_scenario(plan, light)
            hists: dict[str, dict] = {}
            grids: dict[str, Any] = {}
            for m in quantiles:
                grids[m.id] = mechs.lattices[m.id]
                q = quantile_query(light.plan, light.measures[m.id], grids[m.id])
                hists[m.id] = by_cell(self.scenario_rows(q, light), nkeys)
        except Exception as e:  # noqa: BLE001 - a query must never fail because of a value in the data
            return [Violation("error", sql, "engine", 0, 0, None, f"{type(e).__name__}: {e}"[:300])]
        found: list[Violation] = []
        if faithful:
            found += self._faithful(plan, grids, exact, hists, sql)
        used = {mid for a in plan.aggregates for mid in a.measures}
        unnoised = {
            m.id for m in plan.measures
            if m.id in used and not (plan.selection == "threshold" and m.id == plan.count_measure)
            and (m.sensitivity == 0 or mechs.by_measure.get(m.id) is None)
        }
        if count:
            self.stats.measures += len(plan.measures)
        base = exact[BASE]
        if plan.selection == "threshold":
            found += _collisions(plan, exact, sql)
        for unit in self.units:
            if count:
                self.stats.pairs += 1
            other = exact[unit]
            cells = released_cells(plan, base, other)
            for m in plan.measures:
                if m.kind == "quantile":
                    h = hists[m.id]
                    found += _check_quantile(plan, m, len(grids[m.id]), h.get(BASE, {}), h.get(unit, {}), cells, sql, unit)
                    continue
                l1, mag, finite = 0.0, 0.0, True
                for c in cells:
                    a, b = base.get(c) or {}, other.get(c) or {}
                    va, vb = _num(a.get(m.id)), _num(b.get(m.id))
                    if not (math.isfinite(va) and math.isfinite(vb)):
                        finite = False
                        continue
                    l1 += abs(va - vb)
                    for v in (a, b):
                        if m.base is not None:
                            mag += abs(_num(v.get(m.base))) + abs(m.center * _num(v.get(m.count)))
                        else:
                            mag += abs(_num(v.get(m.id)))
                tol = REL_TOL * mag + ABS_TOL
                name = f"{m.id} {m.kind}" + (" (centred)" if m.base is not None else "")
                if not finite:
                    found.append(Violation("nonfinite", sql, name, m.sensitivity, math.inf, unit))
                elif l1 > m.sensitivity + tol:
                    found.append(Violation("sensitivity", sql, name, m.sensitivity, l1, unit))
                if m.id in unnoised and finite and l1 > tol:
                    found.append(Violation("unnoised", sql, name, m.sensitivity, l1, unit, "released without noise"))
        return found

    def scenario_rows(self, select: exp.Select, light: Light) -> dict[str, list[tuple]]:
        """The rows of a plan's engine query (built from `light.plan`) on the dataset (key BASE) and on
        each neighbour, from one query."""
        q = scenarios(select, self.units, self.unit_sql)
        try:
            rows = self._run(q, light)
        except Exception as e:  # noqa: BLE001
            raise EngineFailure(f"{type(e).__name__}: {e}") from None
        out: dict[str, list[tuple]] = {BASE: [], **{u: [] for u in self.units}}
        for r in rows:
            out[r[0]].append(tuple(r[1:]))
        return out

    def _run(self, select: exp.Select, light: Light) -> list[tuple]:
        """A rewritten query's rows: DuckDB's text fast path, or the engine's own `execute`."""
        if not self.embedded:
            return [tuple(r) for r in self.base.engine.execute(light.tree(select))]
        cur = self.base.engine._con.cursor()
        try:
            return cur.execute(light.text(select)).fetchall()
        finally:
            cur.close()

    def exact_by_scenario(self, plan: Any, light: Light) -> dict[str, dict[tuple, dict[str, Any]]]:
        """`exact_cells` of the plan for the dataset and each neighbour (as `exact_cells` derives them)."""
        q = main_query(light.plan)
        if q is None:
            return {u: {} for u in [BASE, *self.units]}
        by_unit = self.scenario_rows(q, light)
        if not plan.keys and not all(by_unit.values()):
            # Without GROUP BY the engine answers one row even where no row is left (SUM NULL, COUNT
            # 0); grouped by scenario, such a scenario has no row: ask the engine for that row
            empty = main_query(light.plan)
            empty.set("where", exp.Where(this=exp.false()))  # type: ignore[union-attr]
            row = self._run(empty, light)  # type: ignore[arg-type]
            by_unit = {u: rows or row for u, rows in by_unit.items()}
        # `exact_cells` itself turns the rows into cells (canonical keys, derived measures), on the light plan
        return {u: exact_cells(light.plan, Rows(rows)) for u, rows in by_unit.items()}

    def _faithful(self, plan: Any, grids: dict[str, Any], exact: dict, hists: dict, sql: str) -> list[Violation]:
        """The plan run as the release runs it, on each engine: it must agree with the rewrite."""
        self.stats.faithful_plans += 1
        found = []
        engines = {BASE: self.base.engine, **self.neighbours}
        for unit, engine in engines.items():
            try:
                real = exact_cells(plan, engine)
                real_hists = {mid: group(engine.execute(quantile_query(plan, m, grids[mid])), len(plan.keys))
                              for mid, m in ((m.id, m) for m in plan.measures if m.kind == "quantile")}
            except Exception as e:  # noqa: BLE001
                found.append(Violation("error", sql, "engine (as released)", 0, 0, unit or None, f"{type(e).__name__}: {e}"[:300]))
                continue
            diff = diff_cells(real, exact[unit])
            if diff:
                found.append(Violation("harness", sql, "exact_cells", 0, 0, unit or None, f"the rewrite disagrees with exact_cells: {diff}"))
            for mid, h in real_hists.items():
                if h != hists[mid].get(unit, {}):
                    found.append(Violation("harness", sql, f"{mid} histogram", 0, 0, unit or None, "the rewrite disagrees with quantile_query"))
        return found

    # the statistic
    def outside_interval(self, items: list[Item]) -> None:
        """Count the items' values (every row, no WHERE) outside their inferred intervals, in one query."""
        cols, kept = [], []
        for item in items:
            t = item.typed
            iv = bounded(t.interval) if t is not None and t.type == NUM else None
            if iv is None:
                continue
            v = exp.Cast(this=t.sql, to=exp.DataType.build("DOUBLE"))  # type: ignore[union-attr]
            lo, hi = exp.Literal.number(repr(iv[0])), exp.Literal.number(repr(iv[1]))
            out = exp.Or(this=exp.Or(this=exp.LT(this=v.copy(), expression=lo), expression=exp.GT(this=v.copy(), expression=hi)),
                         expression=exp.Anonymous(this="isnan", expressions=[v.copy()]))
            cols += [exp.Count(this=v), exp.Anonymous(this="count_if", expressions=[out])]
            kept.append((item, iv))
        if not cols or not self.embedded:  # the statistic is the embedded engine's (count_if, isnan)
            return
        try:
            text = self.source.render(exp.select(*cols), None).sql(dialect="duckdb", copy=False)
            (row,) = self.base.engine._con.execute(text).fetchall()
        except Exception:  # noqa: BLE001 - the statistic's own query; the check reports engine errors
            return
        for j, (item, iv) in enumerate(kept):
            checked, outside = int(row[2 * j]), int(row[2 * j + 1] or 0)
            self.stats.values_checked += checked
            self.stats.values_outside += outside
            if outside:
                self.stats.expressions_outside += 1
                if len(self.stats.outside_examples) < 30:
                    self.stats.outside_examples.append(f"{outside}/{checked} outside [{iv[0]:.6g}, {iv[1]:.6g}]: {item.expr}")

    # generated batches
    def run_batch(self, seed: int, index: int, *, size: int = 8, depth: int = 3, variants: int = 2,
                  forms: int | None = None, stride: int | None = None) -> list[Violation]:
        """Batch `index` of the run `seed`: expressions `index * stride` ... (`stride` defaults to `size`;
        each expression is drawn from its own seed, so it is the same whatever the batching), their
        forms (all, or `forms` of them), in `variants` of the four combinations of a generated WHERE
        and a generated GROUP BY key (drawn per batch)."""
        first = index * (stride or size)
        items = [self.draw(seed, first + j, depth=depth, forms=forms) for j in range(size)]
        rng = random.Random(f"{seed}/batch/{index}")
        g = gen.ExprGen(rng, depth=depth)
        where, key = g.boolean(2), g.key()
        combos = [(None, None), (where, None), (None, key), (where, key)]
        rng.shuffle(combos)
        items = [self.screen(i) for i in items]
        self.outside_interval(items)
        found: list[Violation] = []
        for w, k in combos[:variants]:
            w, k = self.variant(w, k)
            found += self.run_items(items, w, k)
        self.stats.violations += found
        return found

    def draw(self, seed: int, index: int, *, depth: int = 3, forms: int | None = None) -> Item:
        """Expression `index` of the run `seed`: numeric three times in four (SUM and the other forms),
        else of any type (the COUNT forms, and the numeric ones, which refuse text and dates)."""
        rng = random.Random(f"{seed}/{index}")
        g = gen.ExprGen(rng, depth=rng.randint(1, depth))
        self.stats.expressions += 1
        if rng.random() < 0.75:
            expr = g.num()
            if rng.random() < 0.3:
                expr = g.clamp(expr)  # the analyst's own clamp around it: accepted where the value had no bound
            return Item(expr, gen.numeric_forms(rng, forms=forms))
        return Item(g.any(), gen.other_forms(rng, forms=forms))

    def run_sql(self, expr: str, forms: list[str], where: str | None = None, key: str | None = None) -> list[Violation]:
        """One given expression (the regression cases)."""
        self.stats.expressions += 1
        item = self.screen(Item(expr, list(forms)))
        self.outside_interval([item])
        found = self.run_items([item], where, key)
        self.stats.violations += found
        return found


def query(expr: str, forms: list[str], where: str | None, key: str | None) -> str:
    return query_items([Item(expr, forms)], where, key)


def query_items(items: list[Item], where: str | None, key: str | None) -> str:
    cols = ([f"{key} AS k"] if key else []) + [f.format(e=i.expr) for i in items for f in i.forms]
    sql = f"SELECT {', '.join(cols)} FROM {gen.TABLE}"
    if where:
        sql += f" WHERE {where}"
    if key:
        sql += " GROUP BY 1"
    return sql


def released_cells(plan: Any, a: dict[tuple, Any], b: dict[tuple, Any]) -> list[tuple]:
    """The cells whose values the release reads: the public ones, or (threshold selection) those found
    in the data on either side whose keys with a public list keep to it."""
    cells = plan.cells
    if cells is not None:
        return [canonical_cell(c) for c in cells]
    return [c for c in {canonical_cell(c): None for c in [*a, *b]} if _in_domains(plan, c)]


def _collisions(plan: Any, exact: dict[str, dict[tuple, Any]], sql: str) -> list[Violation]:
    """Threshold selection files cells under `_cell_key`: two cells under one key would release one of
    their values, chosen by the data (NaN, ±inf and NULL were once all "null")."""
    key = getattr(_release, "_cell_key", None)
    if key is None:
        return []
    found = []
    for unit, cells in exact.items():
        seen: dict[str, tuple] = {}
        for c in cells:
            if not _in_domains(plan, c):
                continue
            k = key(c)
            if k in seen and seen[k] is not c:
                found.append(Violation("collision", sql, "threshold cells", 0, 2, unit or None,
                                       f"cells {seen[k]!r} and {c!r} share the key {k}"))
                break
            seen[k] = c
    return found[:1]


def _check_quantile(plan: Any, m: Any, n: int, ha: dict, hb: dict, cells: list[tuple], sql: str, unit: str) -> list[Violation]:
    num, den = m.alpha.numerator, m.alpha.denominator
    moved, score = 0, 0
    for c in cells:
        a = np.array(_histogram(ha.get(c, []), n))
        b = np.array(_histogram(hb.get(c, []), n))
        moved += int(np.max(np.abs(a - b)))
        sa = np.abs((den - num) * a[0] - num * a[2])
        sb = np.abs((den - num) * b[0] - num * b[2])
        score += int(np.max(np.abs(sa - sb)))
    k = plan.max_rows
    found = []
    if moved > k:
        found.append(Violation("quantile", sql, f"{m.id} histogram", k, moved, unit, "rows below/on/above a candidate"))
    if score > k * max(num, den - num):
        found.append(Violation("quantile", sql, f"{m.id} score", k * max(num, den - num), score, unit))
    return found
