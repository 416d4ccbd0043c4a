"""The fuzzer's fast path: one engine query for the dataset and all its neighbours, on small trees.

Engines spend milliseconds per query whatever its rows, and sqlglot copies a plan's expression trees
several times to build each query, so the check runs each plan's queries once for every scenario
(the dataset, and the dataset without each target unit) instead of once per neighbour's engine:

* `Light` puts a placeholder column in place of each key, measure and WHERE of the plan, so that the
  release's own builders (`main_query`, `quantile_query`) run on small trees; `Light.text` renders each
  part once and puts it back;
* `scenarios` rewrites such a query to read the bounded relation once per scenario (`CROSS JOIN` the
  list of removed units, `GROUP BY` it first): valid because bounding is stable (a neighbour's
  bounded rows are the dataset's minus the unit's: `check.Soundness` asserts it at setup);
* `Rows` hands rows already read to `exact_cells`, which makes the cells as the release does.

`check.Soundness` runs every `faithful_every`-th plan also as the release runs it, on each neighbour's
own engine, and reports any difference.
"""
from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from sqlglot import exp

from gateway.sql import release as _release

BASE = ""  # the scenario that removes no unit (no unit id is empty)
REL_TOL = 1e-9  # summation order differs between the two ways of running a plan
ABS_TOL = 1e-9


class Light:
    """The plan with every key, measure and WHERE replaced by a placeholder column, so that the release's
    own query builders (`main_query`, `quantile_query`) run on small trees (they copy what they are
    given, several times: on the real plan that is most of the fuzzer's time); `text` puts each part's
    SQL, rendered once, back in place of its placeholder."""

    def __init__(self, plan: Any) -> None:
        self.parts: dict[str, str] = {}
        self.trees: dict[str, exp.Expression] = {}

        def hole(e: exp.Expression | None) -> exp.Expression | None:
            # rendered without the generator's defensive copy (the largest cost of the fuzzer); the
            # faithful runs render the same trees again and must agree (`check.Soundness._faithful`)
            if e is None:
                return None
            name = f"zzfz_{len(self.parts)}_zz"
            self.parts[name] = "(" + e.sql(dialect="duckdb", copy=False) + ")"
            self.trees[name] = e
            return exp.column(name)

        keys = tuple(replace(k, sql=hole(k.sql)) for k in plan.keys)
        measures = tuple(replace(m, sql=hole(m.sql)) for m in plan.measures)
        self.measures = {m.id: m for m in measures}
        self.plan = replace(plan, keys=keys, measures=measures, where=hole(plan.where))

    def text(self, select: exp.Expression) -> str:
        return _HOLE.sub(lambda mt: self.parts[mt.group(0)], select.sql(dialect="duckdb", copy=False))

    def tree(self, select: exp.Expression) -> exp.Expression:
        """`select` with each placeholder replaced by its part's tree: what another engine runs (through
        its own dialect; `text` is DuckDB's fast path)."""
        def put(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column) and not node.table and node.name in self.trees:
                return exp.Paren(this=self.trees[node.name].copy())
            return node

        return select.transform(put)


_HOLE = re.compile(r"zzfz_[0-9]+_zz")


def scenarios(select: exp.Select, units: list[str], unit_sql: exp.Expression) -> exp.Select:
    """`select` (a plan's engine query over one relation; rewritten in place) once per scenario: the
    first column says which unit's rows are left out (BASE: none), and the query groups by it first."""
    q = select  # a fresh tree from main_query / quantile_query: rewritten in place
    frm = q.args.get("from_") or q.args.get("from")
    table = frm.this
    if not isinstance(table, exp.Table) or q.args.get("joins"):
        raise AssertionError("the rewrite reads one bounded relation")
    alias = table.alias
    values = exp.Values(
        expressions=[exp.Tuple(expressions=[exp.Literal.string(u)]) for u in [BASE, *units]],
        alias=exp.TableAlias(this=exp.to_identifier("_s"), columns=[exp.to_identifier("_excl")]),
    )
    excl = exp.column("_excl", table="_s")
    keep = exp.NEQ(this=exp.Cast(this=unit_sql.copy(), to=exp.DataType.build("VARCHAR")), expression=excl.copy())
    inner = (
        exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier(alias, quoted=True)), excl)
        .from_(table.copy())
        .join(values, join_type="cross")
        .where(keep)
    )
    frm.set("this", exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True))))
    q.set("expressions", [exp.alias_(exp.column("_excl", table=alias, quoted=True), "_excl", quoted=True), *q.expressions])
    group = q.args.get("group")
    n = len(group.expressions) if group is not None else 0
    q.set("group", exp.Group(expressions=[exp.Literal.number(i + 1) for i in range(n + 1)]))
    return q


class Rows:
    """An engine that answers the one query `exact_cells` asks with rows already read."""

    def __init__(self, rows: list[tuple]) -> None:
        self.rows = rows

    def execute(self, select: exp.Expression) -> list[tuple]:
        return self.rows


_NAN = float("nan")


def _canonical_fallback(cell: tuple) -> tuple:
    # releases before canonical cells: one NaN object, so that dict lookups of NaN keys match
    return tuple(_NAN if isinstance(v, float) and math.isnan(v) else v for v in cell)


#: the cell a GROUP BY row goes to, as the release files it
canonical_cell = getattr(_release, "canonical_cell", _canonical_fallback)


def group(rows: list[tuple], nkeys: int) -> dict[tuple, list[tuple]]:
    out: dict[tuple, list[tuple]] = {}
    for r in rows:
        out.setdefault(canonical_cell(tuple(r[:nkeys])), []).append(tuple(r[nkeys:]))
    return {c: sorted(v) for c, v in out.items()}


def by_cell(rows: dict[str, list[tuple]], nkeys: int) -> dict[str, dict[tuple, list[tuple]]]:
    return {u: group(r, nkeys) for u, r in rows.items()}


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    fa, fb = float(a), float(b)
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    return fa == fb or abs(fa - fb) <= REL_TOL * (abs(fa) + abs(fb)) + ABS_TOL


def diff_cells(real: dict[tuple, dict[str, Any]], mine: dict[tuple, dict[str, Any]]) -> str:
    """'' where the two agree, else the first difference."""
    if set(real) != set(mine):
        return f"cells {sorted(map(repr, set(real) ^ set(mine)))[:3]}"
    for c in real:
        if set(real[c]) != set(mine[c]):
            return f"measures of cell {c!r}"
        for m in real[c]:
            if not _close(real[c][m], mine[c][m]):
                return f"cell {c!r} {m}: {real[c][m]!r} vs {mine[c][m]!r}"
    return ""


