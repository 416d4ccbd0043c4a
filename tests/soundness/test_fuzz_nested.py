"""The soundness fuzzer over per-customer questions: generated inner queries grouped by the unit, outer
DP aggregates over them, on the adversarial table of `tests.soundness.gen`.

Each query is

    SELECT [key,] F1(a0), F2(a1), ... FROM (SELECT customer_id, G0(e0) AS a0, G1(e1) AS a1, ...
                                           FROM t [WHERE w] GROUP BY customer_id) d [WHERE v] [GROUP BY key]

with generated scalar expressions e (NULL where declared not nullable, NaN, ±inf, ±1e308, comparisons
with the unit that make one customer's value differ), inner aggregates G among COUNT(*), COUNT,
COUNT(DISTINCT), SUM, AVG, MIN, MAX, outer forms F among SUM, AVG, VARIANCE, COUNT, MEDIAN, MIN, MAX,
an outer WHERE on the derived values or the unit, and an outer key with a public domain (a CASE of
literals, a per-customer count) or without one (threshold selection). Every plan is run as the release
runs it (`exact_cells`, `quantile_query`) on the dataset and on each neighbour without one target unit
(each in its own engine), and checked as `check.Soundness.check` checks ordinary plans: every
non-quantile measure moves by at most its sensitivity in L1 over the released cells, nothing released
without noise moves, quantile histograms move by at most k = 1 per unit (and the exponential
mechanism's score by at most max(alpha, 1 - alpha) in its units), no exact value is infinite or NaN,
and nothing but a typed 4xx refusal escapes the planner or the engine.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any

import pytest

from gateway.sql.release import exact_cells, quantile_query
from tests.soundness import gen
from tests.soundness.check import ABS_TOL, REL_TOL, Refused, Soundness, Violation, _check_quantile, released_cells
from tests.soundness.scenarios import group

INNER_NUMERIC = ("SUM({e})", "AVG({e})", "MIN({e})", "MAX({e})")
INNER_COUNTS = ("COUNT(*)", "COUNT({e})", "COUNT(DISTINCT {e})")
OUTER_FORMS = ("SUM({a})", "AVG({a})", "VARIANCE({a})", "COUNT({a})", "MEDIAN({a})", "MIN({a})", "MAX({a})",
               "PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY {a})")
NULL_FOR_C42 = "CASE WHEN customer_id = 'c42' THEN NULL ELSE 0 END"


@dataclass
class Tally:
    queries: int = 0
    refused: int = 0
    checked: int = 0
    measures: int = 0
    pairs: int = 0


def nested_sql(inner: list[str], outer: list[str], where: str | None = None, outer_where: str | None = None,
               key: str | None = None) -> str:
    cols = ", ".join(f"{g} AS a{j}" for j, g in enumerate(inner))
    sub = f"SELECT {gen.UNIT}, {cols} FROM {gen.TABLE}" + (f" WHERE {where}" if where else "") + f" GROUP BY {gen.UNIT}"
    items = ([f"{key} AS k"] if key else []) + outer
    sql = f"SELECT {', '.join(items)} FROM ({sub}) d"
    if outer_where:
        sql += f" WHERE {outer_where}"
    if key:
        sql += " GROUP BY 1"
    return sql


def draw(seed: int, index: int) -> str:
    """Query `index` of the run `seed`."""
    rng = random.Random(f"nested/{seed}/{index}")
    g = gen.ExprGen(rng, depth=rng.randint(1, 3))
    inner, kinds = [], []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.65:
            e = g.num()
            if rng.random() < 0.5:
                e = g.clamp(e)  # most numeric values have a bound then
            inner.append(rng.choice(INNER_NUMERIC).format(e=e))
            kinds.append("num")
        else:
            inner.append(rng.choice(INNER_COUNTS).format(e=g.any()))
            kinds.append("count")
    outer = []
    for j in range(len(inner)):
        for f in rng.sample(OUTER_FORMS, rng.randint(1, 3)):
            outer.append(f.format(a=f"a{j}"))
    if rng.random() < 0.3:
        outer.append("COUNT(*)")
    where = g.boolean(2) if rng.random() < 0.4 else None
    outer_where = rng.choice([None, None, "a0 > 1", f"{gen.UNIT} = 'c42' OR a0 < 0", "a0 IS NULL", f"{gen.UNIT} <> 'c45'"])
    key = None
    r = rng.random()
    if r < 0.2:
        key = f"CASE WHEN a0 < {rng.choice(['0', '1', '10', '1000'])} THEN 'lo' ELSE 'hi' END"
    elif r < 0.3 and "count" in kinds:
        key = f"a{kinds.index('count')}"  # a count per customer: the public domain 0..k
    elif r < 0.35:
        key = "FLOOR(a0)"  # no public domain: threshold selection
    return nested_sql(inner, outer, where, outer_where, key)


class NestedCheck:
    def __init__(self, fuzz: Soundness) -> None:
        self.fuzz = fuzz
        self.engines = {"": fuzz.base.engine, **fuzz.neighbours}
        self.tally = Tally()

    def plan(self, sql: str) -> tuple[Any, Any] | None:
        self.tally.queries += 1
        try:
            return self.fuzz.plan(sql)
        except Refused:
            self.tally.refused += 1
            return None

    def run(self, sql: str) -> list[Violation]:
        try:
            planned = self.plan(sql)
        except Exception as e:  # noqa: BLE001 - a 5xx is what this looks for
            return [Violation("error", sql, "plan", 0, 0, detail=f"{type(e).__name__}: {e}"[:300])]
        if planned is None:
            return []
        plan, mechs = planned
        return self.check(plan, mechs, sql)

    def check(self, plan: Any, mechs: Any, sql: str, *, count: bool = True) -> list[Violation]:
        nkeys = len(plan.keys)
        exact: dict[str, dict] = {}
        hists: dict[str, dict[str, dict]] = {}
        grids = {m.id: mechs.lattices[m.id]
                 for m in plan.measures if m.kind == "quantile"}
        for unit, engine in self.engines.items():
            try:
                exact[unit] = exact_cells(plan, engine)
                for mid, grid in grids.items():
                    m = next(x for x in plan.measures if x.id == mid)
                    hists.setdefault(mid, {})[unit] = group(engine.execute(quantile_query(plan, m, grid)), nkeys)
            except Exception as e:  # noqa: BLE001 - a query must never fail because of a value in the data
                return [Violation("error", sql, "engine", 0, 0, unit or None, f"{type(e).__name__}: {e}"[:300])]
        if count:
            self.tally.checked += 1
            self.tally.measures += len(plan.measures)
        used = {mid for a in plan.aggregates for mid in a.measures}
        unnoised = {m.id for m in plan.measures if m.id in used and (m.sensitivity == 0 or mechs.by_measure.get(m.id) is None)
                    and not (plan.selection == "threshold" and m.id == plan.count_measure)}
        found: list[Violation] = []
        base = exact[""]
        for unit in self.fuzz.units:
            if count:
                self.tally.pairs += 1
            other = exact[unit]
            cells = released_cells(plan, base, other)
            for m in plan.measures:
                if m.kind == "quantile":
                    h = hists[m.id]
                    found += _check_quantile(plan, m, len(grids[m.id]), h.get("", {}), h.get(unit, {}), cells, sql, unit)
                    continue
                l1, mag, finite = 0.0, 0.0, True
                for c in cells:
                    a, b = base.get(c) or {}, other.get(c) or {}
                    va, vb = float(a.get(m.id) or 0), float(b.get(m.id) or 0)
                    if not (math.isfinite(va) and math.isfinite(vb)):
                        finite = False
                        continue
                    l1 += abs(va - vb)
                    for v in (a, b):
                        mag += abs(float(v.get(m.base) or 0)) + abs(m.center * float(v.get(m.count) or 0)) if m.base else abs(float(v.get(m.id) or 0))
                tol = REL_TOL * mag + ABS_TOL
                name = f"{m.id} {m.kind}"
                if not finite:
                    found.append(Violation("nonfinite", sql, name, m.sensitivity, math.inf, unit))
                elif l1 > m.sensitivity + tol:
                    found.append(Violation("sensitivity", sql, name, m.sensitivity, l1, unit))
                if m.id in unnoised and finite and l1 > tol:
                    found.append(Violation("unnoised", sql, name, m.sensitivity, l1, unit, "released without noise"))
        return found


def _explain(found: list[Violation]) -> str:
    return "\n".join(v.line() for v in found[:10]) + (f"\n... {len(found)} in all" if len(found) > 10 else "")


@pytest.fixture(scope="module")
def nested() -> NestedCheck:
    return NestedCheck(Soundness(faithful_every=0))


REGRESSIONS = [
    nested_sql([f"SUM(LEAST(balance, {NULL_FOR_C42}))", "COUNT(*)"], ["SUM(a0)", "AVG(a0)", "COUNT(a0)", "SUM(a1)"]),
    nested_sql(["AVG(fee)", "MIN(fee)", "MAX(bonus)"], ["AVG(a0)", "VARIANCE(a1)", "MEDIAN(a2)", "COUNT(a2)"]),  # fee NULL for c43
    nested_sql(["SUM(qty)", "COUNT(DISTINCT cat)"], ["SUM(a0)", "COUNT(*)"], key="a1"),
    nested_sql(["SUM(big)"], ["SUM(a0)", "VARIANCE(a0)", "MAX(a0)"]),  # int in [-1e12, 1e12]: k * 1e12 per customer
    nested_sql(["SUM(balance)"], ["COUNT(*)", "SUM(a0)"], where="customer_id = 'c42' OR flag", outer_where="a0 > 100",
               key="CASE WHEN a0 < 1000 THEN 'lo' ELSE 'hi' END"),
    nested_sql(["MAX(level)", "SUM(CASE WHEN customer_id = 'c45' THEN 5000 ELSE 0 END)"], ["SUM(a0)", "SUM(a1)", "AVG(a1)"]),
    nested_sql(["SUM(balance)"], ["COUNT(*)"], key="FLOOR(a0 / 1000)"),  # threshold selection over derived values
    nested_sql(["AVG(LEAST(GREATEST(rate, 0), 1))"], ["SUM(a0)", "MIN(a0)"]),  # rate unbounded, NaN and ±inf
    nested_sql(["COUNT(DISTINCT customer_id)", "SUM(flag)"], ["SUM(a0)", "SUM(a1)", "COUNT(DISTINCT customer_id)"]),
]


@pytest.mark.parametrize("sql", REGRESSIONS)
def test_hand_written_forms_within_their_sensitivity(nested: NestedCheck, sql: str) -> None:
    checked = nested.tally.checked
    found = nested.run(sql)
    assert not found, _explain(found)
    assert nested.tally.checked == checked + 1, f"refused: {sql}"


def test_an_understated_sensitivity_is_caught(nested: NestedCheck) -> None:
    plan, mechs = nested.fuzz.plan(REGRESSIONS[0])
    wrong = replace(plan, measures=tuple(replace(m, sensitivity=m.sensitivity / 10) for m in plan.measures))
    assert any(v.kind == "sensitivity" for v in nested.check(wrong, mechs, "understated", count=False))


def test_an_understated_quantile_bound_is_caught(nested: NestedCheck) -> None:
    """One row per customer: a quantile over the derived rows moves by at most 1; the check sees 0 is wrong."""
    plan, mechs = nested.fuzz.plan(nested_sql(["SUM(balance)"], ["MEDIAN(a0)"]))
    assert plan.max_rows == 1
    wrong = replace(plan, max_rows=0)
    assert any(v.kind == "quantile" for v in nested.check(wrong, mechs, "understated", count=False))


def test_generated_slice(nested: NestedCheck) -> None:
    found: list[Violation] = []
    for i in range(40):  # about 8 s; 48 of the first 60 are accepted and checked
        found += nested.run(draw(301, i))
    t = nested.tally
    assert t.checked >= 20 and t.refused > 0, t
    assert not found, _explain(found)


@pytest.mark.slow
def test_larger_generated_run(nested: NestedCheck) -> None:
    found: list[Violation] = []
    for seed in (401, 402, 403):
        for i in range(200):
            found += nested.run(draw(seed, i))
    assert not found, _explain(found)
