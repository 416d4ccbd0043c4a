"""Quantile measures (MEDIAN, PERCENTILE_CONT/DISC, MIN, MAX): the engine's counts, the private draw.

`build_quantile` makes the mechanism from public inputs only (the measure's bounds and alpha, ε, the
contribution bound, the interval level and how many cells the query releases); `release_quantile` runs
one GROUP BY on the engine and releases, per cell, a value and its interval. The query counts rows per
(cell, slot): slot 2j for a value on lattice candidate j, 2j + 1 for one strictly between j and j + 1
(`mechanisms.quantile.RankCounts`), so rows never leave the engine and the work after it is sized by
the public lattice. The tree is built from portable nodes only (CAST, arithmetic, FLOOR, ABS, CASE,
COUNT). `release.Mechanisms` builds the mechanism with `build_quantile`; `release.release` calls
`release_quantile` per quantile measure.

A public table (``plan.public``) gets the exact quantile (the engine's PERCENTILE_CONT of the clamped
values) with the interval [v, v]; no mechanism is needed (``mech`` may be None).
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Protocol

from sqlglot import exp

from gateway.sql.plan import Measure, Plan
from gateway.sql.scalar import as_double, lit_num
from mechanisms import threshold
from mechanisms.quantile import (
    CANDIDATE_CAP,
    DEFAULT_FORM,
    SNAP,
    Lattice,
    PrivateQuantile,
    RankCounts,
    lattice_for,
)

__all__ = [
    "QUERY_CANDIDATES",
    "MIN_CANDIDATES",
    "build_quantile",
    "candidate_cap",
    "histogram_query",
    "quantile_cells",
    "quantile_lattice",
    "release_quantile",
]

#: public cap on the candidates of one quantile measure over all the cells it releases (each draw
#: takes ~1 µs a candidate and is padded to 3 µs: 2^19 is ~1.6 s padded); a cell never gets fewer
#: than MIN_CANDIDATES (the old fixed grid) nor more than CANDIDATE_CAP
QUERY_CANDIDATES = 2**19
MIN_CANDIDATES = 1024


def _release() -> Any:
    """`gateway.sql.release` (its `_where`, `_positions`, `canonical_cell`), imported when first
    needed: release.py imports this module, so neither may import the other at its top."""
    import gateway.sql.release as release

    return release


class Engine(Protocol):
    def execute(self, select: exp.Expression) -> list[tuple]: ...


def candidate_cap(cells: int) -> int:
    """The candidates of each cell's lattice when a measure releases `cells` cells (public)."""
    return max(MIN_CANDIDATES, min(CANDIDATE_CAP, QUERY_CANDIDATES // max(int(cells), 1)))


def quantile_cells(plan: Plan) -> int:
    """A public upper bound on the cells a plan's quantiles are released for: the public cells, or
    for data-chosen cells (threshold selection) the selection's public cap."""
    cells = plan.cells
    if cells is None:  # cells the data choose (threshold selection): at most the selection's cap
        return threshold.default_max_candidates()
    return max(1, plan.top_k) if plan.selection == "top_k" else len(cells)


def quantile_lattice(plan: Plan, m: Measure, form: str = DEFAULT_FORM) -> Lattice:
    """The measure's public lattice (from its bounds, its type and the plan's cell count only): what
    the engine's counts are taken on and the mechanism draws from."""
    return lattice_for(form, m.lower, m.upper, integer=m.value_integer, max_candidates=candidate_cap(quantile_cells(plan)))


def build_quantile(
    m: Measure,
    epsilon: Fraction,
    max_rows: int,
    *,
    level_alpha: float,
    cells: int = 1,
    form: str = DEFAULT_FORM,
    lattice: Lattice | None = None,
) -> PrivateQuantile:
    """The measure's mechanism: cost exactly `epsilon` (the estimate and both interval ends), built and
    checked against OpenDP's maps before any data is read. `lattice`: the one the engine's counts are
    taken on (`quantile_lattice`), else the measure's own for `cells` cells."""
    if m.kind != "quantile":
        raise AssertionError(m.kind)
    if lattice is None:
        lattice = lattice_for(form, m.lower, m.upper, integer=m.value_integer, max_candidates=candidate_cap(cells))
    return PrivateQuantile(
        epsilon=epsilon, alpha=m.alpha, lattice=lattice, max_rows=max_rows, level_alpha=level_alpha, form=form
    )


def histogram_query(plan: Plan, m: Measure, lattice: Lattice) -> exp.Select:
    """Rows per (cell, slot) of the measure's clamped value on `lattice` (NULLs left out)."""
    value = as_double(m.sql.copy())  # type: ignore[union-attr]
    pos = exp.Paren(this=exp.Div(
        this=exp.Paren(this=exp.Sub(this=value, expression=lit_num(lattice.start))),
        expression=lit_num(lattice.step),
    ))

    def floor(e: exp.Expression) -> exp.Expression:
        return exp.Anonymous(this="FLOOR", expressions=[e])

    near = floor(exp.Add(this=pos.copy(), expression=lit_num(0.5)))
    snapped = exp.LTE(
        this=exp.Anonymous(this="ABS", expressions=[exp.Sub(this=pos.copy(), expression=near.copy())]),
        expression=lit_num(SNAP),
    )
    slot = exp.Case(
        ifs=[exp.If(this=snapped, true=exp.Mul(this=exp.Literal.number(2), expression=near.copy()))],
        default=exp.Add(this=exp.Mul(this=exp.Literal.number(2), expression=floor(pos.copy())), expression=exp.Literal.number(1)),
    )
    cols: list[exp.Expression] = [exp.alias_(k.sql.copy(), k.id, quoted=True) for k in plan.keys]
    cols += [exp.alias_(slot, "_slot", quoted=True), exp.alias_(exp.Count(this=exp.Star()), "_n", quoted=True)]
    not_null = exp.Not(this=exp.Is(this=m.sql.copy(), expression=exp.Null()))  # type: ignore[union-attr]
    select = plan.source.render(exp.select(*cols), _release()._where(plan, not_null))
    return select.group_by(*_release()._positions(len(plan.keys) + 1))


def exact_query(plan: Plan, m: Measure) -> exp.Select:
    """A public table's exact quantile per cell (PERCENTILE_CONT of the clamped value)."""
    value = as_double(m.sql.copy())  # type: ignore[union-attr]
    q = exp.PercentileCont(this=value, expression=lit_num(float(m.alpha)))
    cols: list[exp.Expression] = [exp.alias_(k.sql.copy(), k.id, quoted=True) for k in plan.keys]
    cols.append(exp.alias_(q, "_q", quoted=True))
    not_null = exp.Not(this=exp.Is(this=m.sql.copy(), expression=exp.Null()))  # type: ignore[union-attr]
    select = plan.source.render(exp.select(*cols), _release()._where(plan, not_null))
    return select.group_by(*_release()._positions(len(plan.keys))) if plan.keys else select


def release_quantile(
    plan: Plan,
    m: Measure,
    mech: PrivateQuantile | None,
    engine: Engine,
    cells: list[tuple],
) -> tuple[list[float | None], list[list[float] | None]]:
    """Per cell of `cells` (in that order): the released value and its [low, high] interval.

    Private tables: every cell gets a DP value from `mech`, a cell without rows too (its counts are
    zero). Public tables: the exact value, interval [v, v]; None for a cell without rows."""
    nkeys = len(plan.keys)
    canonical_cell = _release().canonical_cell
    if plan.public:
        exact: dict[tuple, float] = {}
        for row in engine.execute(exact_query(plan, m)):
            if row[nkeys] is not None:
                exact[canonical_cell(tuple(row[:nkeys]))] = float(row[nkeys])
        got = [exact.get(canonical_cell(c)) for c in cells]
        return got, [None if v is None else [v, v] for v in got]
    if mech is None:
        raise AssertionError("a private quantile without its mechanism")
    per_cell: dict[tuple, list[tuple[Any, Any]]] = {}
    for row in engine.execute(histogram_query(plan, m, mech.lattice)):
        per_cell.setdefault(canonical_cell(tuple(row[:nkeys])), []).append((row[nkeys], row[nkeys + 1]))
    values: list[float | None] = []
    intervals: list[list[float] | None] = []
    for c in cells:
        counts = RankCounts.from_slots(mech.lattice.count, per_cell.get(canonical_cell(c), []))
        out = mech.release_counts(counts)
        values.append(out.value)
        intervals.append([out.low, out.high])
    return values, intervals
