"""Ask by accuracy: the smallest ε whose stated interval on one column meets a target. No data read.

A query may give `target` instead of `epsilon`: `{column, ci95}` (an absolute half-width) or `{column,
relative}` (a half-width relative to something public), with `rows` optional. The half-width is that of
the interval the answer states for the column in its accuracy summary (`accuracy[column].ci95`, the 95%
interval), as `expected_accuracy` predicts it before any data is read. (`alpha` sets the level of the
per-value `intervals`; the target is on the 95% summary whatever the level.)

What `relative` is relative to (always public; where nothing public fits, `target_unsupported`):
- AVG, MEDIAN / quantiles, MIN, MAX, STDDEV: the declared range `upper - lower` of the aggregated value
  (the clamp bounds the plan enforces); VARIANCE: that range squared;
- COUNT: `rows`, the cell size the analyst assumes; SUM: `rows * max(|lower|, |upper|)`, the largest
  sum such a cell could have. Without `rows` there is nothing to be relative to.

`rows` is a public assumption the analyst makes about a cell's size: AVG's and VARIANCE's half-widths
depend on the (private) count of the cell, so the expected half-width is that of a cell with `rows` rows;
a cell with fewer rows gets a wider stated interval. The quote and the answer state it.

The search: ε runs over numbers of 4 significant digits in [1e-12, 100] (the gateway's range), and a
binary search finds the smallest whose expected half-width meets the target (the half-width never grows
with ε: every noise scale is a sensitivity over an equal share of ε). Each probe only plans the query.
The result is an exact, short Fraction (0.01234 = 617/50000) that the preview quotes and the query then
charges exactly. Only public inputs decide it: the SQL, the metadata, δ, alpha, diagnostics, the target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable

from gateway.core import MAX_EPSILON, MIN_EPSILON
from gateway.errors import DpgateError, InvalidRequest
from gateway.sql.plan import Aggregate, Plan
from gateway.sql.release import Accuracy, expected_accuracy
from mechanisms.cost import Cost

DIGITS = 4  # significant digits of a solved ε
_STEPS = 9 * 10 ** (DIGITS - 1)  # mantissas 1000..9999 per decade
_LOW = -12  # the first decade: 1e-12 (MIN_EPSILON)
_DECADES = 14  # 1e-12 .. 99.99; then 100 (MAX_EPSILON) itself
_CANDIDATES = _DECADES * _STEPS + 1


class TargetUnsupported(DpgateError, ValueError):
    """The target names a column whose interval no ε can promise from public inputs alone (a GROUP BY
    key, an expression over aggregates, a quantile, AVG without `rows`), or a relative target with
    nothing public to be relative to. Refused before any data is read: costs nothing."""

    code = "target_unsupported"
    status = 400


class TargetUnreachable(DpgateError, ValueError):
    """Even the largest ε the gateway accepts (100) does not meet the target; the problem states the
    best half-width there is. Costs nothing."""

    code = "target_unreachable"
    status = 422


@dataclass(frozen=True)
class Target:
    column: str
    ci95: float | None = None
    relative: float | None = None
    rows: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise InvalidRequest("target.column must name a column of the query's answer", field="target.column")
        if (self.ci95 is None) == (self.relative is None):
            raise InvalidRequest("target needs exactly one of ci95 (a half-width) or relative (a fraction)", field="target")
        if self.ci95 is not None and not (_number(self.ci95) and self.ci95 > 0):
            raise InvalidRequest("target.ci95 must be a positive number", field="target.ci95")
        if self.relative is not None and not (_number(self.relative) and 0 < self.relative <= 1):
            raise InvalidRequest("target.relative must be a number in (0, 1]", field="target.relative")
        if self.rows is not None and not (isinstance(self.rows, int) and not isinstance(self.rows, bool) and self.rows >= 1):
            raise InvalidRequest("target.rows must be an integer >= 1", field="target.rows")

    @classmethod
    def from_json(cls, raw: Any) -> Target:
        if isinstance(raw, Target):
            return raw
        if not isinstance(raw, dict):
            raise InvalidRequest("target must be an object {column, ci95 | relative, rows?}", field="target")
        unknown = set(raw) - {"column", "ci95", "relative", "rows"}
        if unknown:
            raise InvalidRequest(f"target has unknown members: {', '.join(sorted(map(str, unknown)))}", field="target")
        return cls(raw.get("column"), raw.get("ci95"), raw.get("relative"), raw.get("rows"))  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"column": self.column}
        if self.ci95 is not None:
            out["ci95"] = self.ci95
        if self.relative is not None:
            out["relative"] = self.relative
        if self.rows is not None:
            out["rows"] = self.rows
        return out


@dataclass(frozen=True)
class Solution:
    """The ε a target asks for, and what it gives."""

    epsilon: Fraction
    target: Target
    half_width: float  # the target as an absolute half-width
    expected: float  # the expected stated half-width at `epsilon` (<= half_width)

    def to_json(self) -> dict[str, Any]:
        return {**self.target.to_json(), "half_width": self.half_width, "expected_ci95": self.expected}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def candidate(i: int) -> Fraction:
    """The i-th ε of the search: 1e-12, 1.001e-12, ..., 99.99, 100 (4 significant digits, exact)."""
    if i >= _CANDIDATES - 1:
        return MAX_EPSILON
    decade, step = divmod(i, _STEPS)
    return Fraction(10 ** (DIGITS - 1) + step) * Fraction(10) ** (_LOW + decade - (DIGITS - 1))


assert candidate(0) == MIN_EPSILON and candidate(_CANDIDATES - 2) == Fraction(9999, 100) and candidate(_CANDIDATES - 1) == MAX_EPSILON


def accuracy(plan: Plan, rows: int | None = None) -> tuple[Cost, dict[str, Accuracy]]:
    """`expected_accuracy` of the plan, for cells of `rows` rows where that is given."""
    return expected_accuracy(plan, rows=rows)


def output_column(plan: Plan, name: str) -> str:
    """The answer's column the target names: exactly, else the one that matches ignoring case."""
    names = [c.name for c in plan.columns]
    if name in names:
        return name
    folded = [n for n in names if n.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise InvalidRequest(f"target.column {name!r} is not a column of the answer; its columns: {', '.join(names)}", field="target.column")


def _aggregate(plan: Plan, column: str) -> Aggregate:
    col = next(c for c in plan.columns if c.name == column)
    if col.source is None:
        raise TargetUnsupported(f"column {column!r} is an expression over aggregates: ask a target on an aggregate column", column=column)
    if col.source.startswith("_k"):
        raise TargetUnsupported(f"column {column!r} is a GROUP BY key: its values have no interval to target", column=column)
    return next(a for a in plan.aggregates if a.id == col.source)


def half_width(target: Target, agg: Aggregate, column: str) -> float:
    """The target as an absolute half-width (see the module docstring for `relative`)."""
    if target.ci95 is not None:
        return float(target.ci95)
    assert target.relative is not None
    span = agg.upper - agg.lower
    if agg.func in ("count", "sum"):
        if target.rows is None:
            raise TargetUnsupported(
                f"a relative target on {agg.func.upper()} column {column!r} is relative to the cell's size: give target.rows "
                "(the rows you assume a cell has), or an absolute target.ci95",
                column=column,
            )
        base = float(target.rows) if agg.func == "count" else target.rows * max(abs(agg.lower), abs(agg.upper))
    elif agg.func == "var":
        base = span * span
    else:  # avg, stddev, quantile (MEDIAN, MIN, MAX, PERCENTILE_CONT): the value's declared range
        base = span
    if not (math.isfinite(base) and base > 0):
        raise TargetUnsupported(f"column {column!r} has no public scale for a relative target (its declared range is empty)", column=column)
    return target.relative * base


def _why_no_interval(agg: Aggregate, column: str, rows: int | None) -> str:
    if agg.func in ("avg", "var", "stddev"):
        if rows is None:
            return (f"the interval of {agg.func.upper()} column {column!r} depends on the cell's private count: "
                    "give target.rows, the rows you assume a cell has")
        return f"the gateway states no closed-form interval for {agg.func.upper()} column {column!r}"
    if agg.func == "quantile":
        return f"the interval of quantile column {column!r} (MEDIAN, MIN, MAX, PERCENTILE) depends on the data: ask with epsilon"
    return f"column {column!r} states no interval to target"


def solve(plan_at: Callable[[Fraction], Plan], target: Target) -> Solution:
    """The smallest 4-significant-digit ε in [1e-12, 100] at which `plan_at(ε)`'s expected half-width on
    the target's column is at most the target. `plan_at` only plans (no data); its refusals propagate."""
    top = plan_at(MAX_EPSILON)  # a query refused for what it says is refused here, whatever ε
    column = output_column(top, target.column)
    agg = _aggregate(top, column)
    goal = half_width(target, agg, column)
    best = accuracy(top, target.rows)[1][column].ci95
    if best is None:
        raise TargetUnsupported(_why_no_interval(agg, column, target.rows), column=column)
    if best > goal:
        raise TargetUnreachable(
            f"column {column!r} cannot meet a half-width of {goal:.6g}: the best at epsilon {MAX_EPSILON} is {best:.6g}",
            column=column, target_ci95=goal, best_ci95=best, max_epsilon=float(MAX_EPSILON),
        )  # fmt: skip

    def width(i: int) -> float | None:
        try:
            return accuracy(plan_at(candidate(i)), target.rows)[1][column].ci95
        except InvalidRequest:
            return None  # refused at this ε only (threshold selection's δ too small for it): too small an ε

    lo, hi, at_hi = 0, _CANDIDATES - 1, best  # width(hi) meets the goal; find the first index that does
    w0 = width(lo)
    if w0 is not None and w0 <= goal:
        hi, at_hi = lo, w0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        w = width(mid)
        if w is not None and w <= goal:
            hi, at_hi = mid, w
        else:
            lo = mid
    return Solution(candidate(hi), target, goal, float(at_hi))


__all__ = ["Target", "Solution", "TargetUnsupported", "TargetUnreachable", "solve", "accuracy", "candidate", "half_width"]
