"""Private quantiles on the 10,000 Lending Club loans (issue 12): today's grid against the new forms.

Forms, all at the same ε with k = max_rows_per_unit = 1 (as the demo declares):

* ``grid-1024`` — before: `mechanisms.selection.ExponentialQuantile` over `candidate_grid(lo, hi, 1024)`
  (permute-and-flip on Smith's score), with the counts it was given (rows below, on and above each grid point, from the clamped values);
* ``round`` — after, the default: `mechanisms.quantile.PrivateQuantile` form "round" through the
  gateway hook (`gateway.sql.quantiles.release_quantile`): every representable value, tie-aware score,
  the roundness base measure, 8/10 of ε on the estimate and 1/10 on each end of its interval;
* ``points`` — (a) without the base measure;
* ``gaps`` — (b): the same, form "gaps" (Smith's / Tumult's continuous exponential mechanism on the
  lattice, Gumbel-max then a uniform point inside the interval);
* ``tumult`` — reference, computed here from the raw clamped values: the continuous exponential
  mechanism over the gaps between sorted values, gap i weighted len_i·exp(-|i - p·n|/scale),
  Δ = max(p, 1 - p), all of ε on the estimate (Tumult Analytics' PERCENTILE). OpenDP's Gumbel noise.

Queries: MEDIAN of loan_amount and of annual_income, MEDIAN(loan_amount) per grade (7 cells),
PERCENTILE_CONT 0.25 and 0.9 of both columns. The truth is PERCENTILE_CONT of the clamped values.
Per form and query: the mean absolute error relative to the truth (%, over runs and cells), the mean
signed error (bias, %), the mean rank error (the distance from p·n to the value's ranks
[#(x < v), #(x <= v)], over n), the cells whose
bias is over 3 standard errors, and for the forms with an interval its coverage and mean width (%).
Ratios: grid-1024's error over each new form's (> 1: the new form is better).

Run: ``.venv/bin/python bench/quantiles.py [--runs 30] [--epsilon 1 0.1] [--out FILE]``;
``--timing`` also times OpenDP's noisy max over 2^10 … 2^17 u64 scores (the candidate cap).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

QUERIES: list[tuple[str, str, str, float, str | None]] = [
    # name, sql, column, p, group column
    ("median loan_amount", "SELECT MEDIAN(loan_amount) FROM loans", "loan_amount", 0.5, None),
    ("median annual_income", "SELECT MEDIAN(annual_income) FROM loans", "annual_income", 0.5, None),
    ("median loan_amount by grade", "SELECT grade, MEDIAN(loan_amount) FROM loans GROUP BY grade", "loan_amount", 0.5, "grade"),
    ("p25 loan_amount", "SELECT PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY loan_amount) FROM loans", "loan_amount", 0.25, None),
    ("p90 loan_amount", "SELECT PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY loan_amount) FROM loans", "loan_amount", 0.9, None),
    ("p25 annual_income", "SELECT PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY annual_income) FROM loans", "annual_income", 0.25, None),
    ("p90 annual_income", "SELECT PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY annual_income) FROM loans", "annual_income", 0.9, None),
]
FORMS = ("grid-1024", "round", "points", "gaps", "tumult")
NEW = ("round", "points", "gaps")


def _gateway() -> tuple[Any, Any, Any]:
    from gateway.core import Gateway
    from gateway.demo_data import load_loans, loans_columns
    from gateway.engines.duckdb import DuckDBEngine

    engine = DuckDBEngine(None, seed="bench-quantiles")
    df = load_loans()
    engine.load_frame("loans_raw", df)
    gw = Gateway(engine)
    gw.register({
        "name": "lending", "privacy_unit": "borrower_id", "budget": {"epsilon": 1000},
        "tables": {"loans": {"source": "loans_raw", "max_rows_per_unit": 1, "columns": loans_columns()}},
    })
    return gw, engine, df


class _Tumult:
    """The continuous EM over the gaps of the sorted clamped values (the reference; rows in memory)."""

    def __init__(self, epsilon: Fraction, p: float, lo: float, hi: float) -> None:
        from mechanisms._opendp import dp

        self.p, self.lo, self.hi = p, lo, hi
        self.scale = 2 * max(p, 1 - p) / float(epsilon)
        space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.linf_distance(T=float, monotonic=False)
        self.measurement = dp.m.make_noisy_max(*space, dp.zero_concentrated_divergence(), scale=self.scale, negate=True)

    def release(self, values: np.ndarray) -> float:
        from mechanisms.quantile import _uniform_fraction

        x = np.sort(np.clip(values, self.lo, self.hi))
        edges = np.concatenate([[self.lo], x, [self.hi]])
        length = np.diff(edges)
        rank = np.arange(len(length), dtype=np.float64)
        keep = length > 0
        scores = np.abs(rank - self.p * len(x))[keep] - self.scale * np.log(length[keep])
        i = int(self.measurement(scores.tolist()))
        left, width = edges[:-1][keep][i], length[keep][i]
        return float(left + float(_uniform_fraction()) * width)


def _truth(df: Any, column: str, p: float, group: str | None, lo: float, hi: float) -> dict[tuple, np.ndarray]:
    clamped = df[column].astype(float).clip(lo, hi)
    if group is None:
        return {(): clamped.to_numpy()}
    return {(g,): clamped[df[group] == g].to_numpy() for g in sorted(df[group].unique())}


def _rank_error(sorted_x: np.ndarray, v: float, p: float) -> float:
    """Distance from the target rank p·n to the value's ranks [#(x < v), #(x <= v)], over n."""
    n = len(sorted_x)
    if n == 0:
        return 0.0
    lt = np.searchsorted(sorted_x, v, side="left")
    le = np.searchsorted(sorted_x, v, side="right")
    return float(max(0.0, lt - p * n, p * n - le) / n)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from mechanisms import _timing

    padding = _timing.settings()
    _timing.configure(base_s=0)  # accuracy, not latency: no constant-time padding here
    try:
        return _run(args)
    finally:
        _timing.configure(base_s=padding[0], scale=padding[1])


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from gateway.sql.quantiles import build_quantile, quantile_cells, release_quantile
    from mechanisms.selection import ExponentialQuantile, candidate_grid

    gw, engine, df = _gateway()
    results: dict[str, Any] = {"args": vars(args), "queries": {}}
    for eps in args.epsilon:
        for name, sql, column, p, group in QUERIES:
            plan = gw.plan("lending", sql, epsilon=eps)
            m = next(x for x in plan.measures if x.kind == "quantile")
            cells = plan.cells
            data = _truth(df, column, p, group, m.lower, m.upper)
            truth = {c: float(np.quantile(v, p)) for c, v in data.items()}
            srt = {c: np.sort(v) for c, v in data.items()}
            grid = candidate_grid(m.lower, m.upper, integer=m.value_integer, max_candidates=1024)
            old = ExponentialQuantile(epsilon=plan.share, alpha=m.alpha, candidates=grid, max_rows=plan.max_rows)
            g = np.asarray(grid)
            new = {f: build_quantile(m, plan.share, plan.max_rows, level_alpha=plan.alpha, cells=quantile_cells(plan), form=f)
                   for f in NEW if f in args.forms}
            tumult = _Tumult(plan.share, p, m.lower, m.upper)
            got: dict[str, list[list[float]]] = {f: [] for f in args.forms}
            covered: dict[str, list[bool]] = {f: [] for f in new}
            width: dict[str, list[float]] = {f: [] for f in new}
            started = time.perf_counter()
            for _ in range(args.runs):
                for f in args.forms:
                    if f == "grid-1024":
                        vals = []  # the counts the old engine query gave: rows below, on, above each grid point
                        for c in cells:
                            left, right = np.searchsorted(srt[c], g, "left"), np.searchsorted(srt[c], g, "right")
                            vals.append(old.release_from_histogram(left.tolist(), (right - left).tolist(), (len(srt[c]) - right).tolist()))
                    elif f == "tumult":
                        vals = [tumult.release(data[c]) for c in cells]
                    else:
                        vals, ivs = release_quantile(plan, m, new[f], engine, cells)
                        for c, iv in zip(cells, ivs):
                            covered[f].append(iv[0] <= truth[c] <= iv[1])
                            width[f].append((iv[1] - iv[0]) / abs(truth[c]) * 100)
                    got[f].append([float(v) for v in vals])
            key = f"eps={eps} {name}"
            rows: dict[str, Any] = {}
            for f in args.forms:
                arr = np.array(got[f])  # runs x cells
                t = np.array([truth[c] for c in cells])
                rel = (arr - t) / np.abs(t) * 100
                se = rel.std(axis=0, ddof=1) / math.sqrt(args.runs) if args.runs > 1 else np.full(rel.shape[1], np.inf)
                biased = int(np.sum(np.abs(rel.mean(axis=0)) > 3 * np.maximum(se, 1e-12)))
                rank = [[_rank_error(srt[c], v, p) for c, v in zip(cells, run_vals)] for run_vals in got[f]]
                rows[f] = {
                    "abs_rel_error_pct": float(np.abs(rel).mean()),
                    "median_abs_rel_error_pct": float(np.median(np.abs(rel))),
                    "bias_pct": float(rel.mean()),
                    "rank_error": float(np.mean(rank)),
                    "biased_cells": biased,
                    "cells": len(cells),
                }
                if f in covered:
                    rows[f]["coverage"] = float(np.mean(covered[f]))
                    rows[f]["width_pct"] = float(np.mean(width[f]))
            results["queries"][key] = {"truth": [truth[c] for c in cells], "forms": rows, "seconds": time.perf_counter() - started,
                                       "candidates": {f: new[f].lattice.count for f in new} | {"grid-1024": len(grid)}}
            _print(key, rows, args.forms)
    return results


def _print(key: str, rows: dict[str, Any], forms: list[str]) -> None:
    print(f"\n{key}")
    print(f"  {'form':10s} {'|err| %':>9s} {'med %':>7s} {'bias %':>8s} {'rank err':>9s} {'biased':>7s} {'cover':>6s} {'width %':>8s}  grid/form")
    base = rows.get("grid-1024", {}).get("abs_rel_error_pct")
    for f in forms:
        r = rows[f]
        ratio = "-" if not base else (f"{base / r['abs_rel_error_pct']:.2f}" if r["abs_rel_error_pct"] > 0 else "inf")
        cov = f"{r['coverage']:.3f}" if "coverage" in r else "-"
        wid = f"{r['width_pct']:.2f}" if "width_pct" in r else "-"
        print(f"  {f:10s} {r['abs_rel_error_pct']:9.3f} {r['median_abs_rel_error_pct']:7.3f} {r['bias_pct']:+8.3f} {r['rank_error']:9.5f} "
              f"{r['biased_cells']:>3d}/{r['cells']:<3d} {cov:>6s} {wid:>8s}  {ratio}")
    sys.stdout.flush()


def summary(results: dict[str, Any], forms: list[str]) -> None:
    """One line per query: each form's mean |error| %, and grid-1024's over the default's."""
    print("\nSummary: mean |relative error| % (grid-1024 / round: > 1 means the new default is better)")
    print(f"  {'query':40s} " + " ".join(f"{f:>9s}" for f in forms) + "  grid/round")
    for key, q in results["queries"].items():
        errs = {f: q["forms"][f]["abs_rel_error_pct"] for f in forms}
        ratio = "-"
        if "grid-1024" in errs and "round" in errs:
            ratio = f"{errs['grid-1024'] / errs['round']:.2f}" if errs["round"] > 0 else "inf"
        print(f"  {key:40s} " + " ".join(f"{errs[f]:9.3f}" for f in forms) + f"  {ratio:>9s}")


def timing(repeats: int = 7) -> dict[str, Any]:
    """OpenDP's noisy max over M u64 scores (V-shaped, as a quantile's), median of `repeats`."""
    from mechanisms._opendp import dp

    space = dp.vector_domain(dp.atom_domain(T="u64")), dp.linf_distance(T="u64", monotonic=False)
    meas = {
        "permute-and-flip": dp.m.make_noisy_max(*space, dp.max_divergence(), scale=2.5, negate=True),
        "gumbel": dp.m.make_noisy_max(*space, dp.zero_concentrated_divergence(), scale=2.5, negate=True),
    }
    out: dict[str, Any] = {}
    times: dict[tuple[str, int], list[float]] = {}
    sizes = [2**k for k in range(10, 18)]
    for _ in range(repeats):
        for size in sizes:
            scores = [abs(2 * (i * 10_000 // size) - 10_000) for i in range(size)]
            for name, m in meas.items():
                t = time.perf_counter()
                m(scores)
                times.setdefault((name, size), []).append(time.perf_counter() - t)
    print("\nOpenDP make_noisy_max over M u64 scores (median of %d)" % repeats)
    for (name, size), ts in sorted(times.items()):
        med = statistics.median(ts)
        out[f"{name} {size}"] = med
        print(f"  {name:17s} M = {size:7d}: {med * 1e3:7.1f} ms  ({med / size * 1e6:.2f} µs a candidate)")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/quantiles.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--epsilon", type=float, nargs="+", default=[1.0, 0.1])
    p.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    p.add_argument("--queries", nargs="+", default=None, help="names of QUERIES to run (default all)")
    p.add_argument("--timing", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    global QUERIES
    args = parse_args(argv)
    if args.queries:
        QUERIES = [q for q in QUERIES if q[0] in args.queries]
    results = run(args)
    summary(results, args.forms)
    if args.timing:
        results["timing"] = timing()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
