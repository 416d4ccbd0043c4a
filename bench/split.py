"""ε split benchmark: the stated half-widths of an equal split against the optimised one, and of Laplace
against Gaussian (zCDP) where δ > 0, on the demo loans.

Per query form, the mean 95% half-width the answers' per-cell intervals state (``--runs`` answers,
every cell), three ways in one run:

* **equal**: today's split of wave 2 (each measurement ε / n, Laplace);
* **split**: the planner's split (`mechanisms.allocation.split_epsilon` over public weights), Laplace;
* **chosen**: what the planner does at the form's δ (Gaussian where it states tighter half-widths).

Gain = equal / chosen per column (> 1: tighter); the summary is the geometric mean over the columns.

Run: ``.venv/bin/python bench/split.py [--epsilon 1] [--runs 30]``.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FORMS: list[tuple[str, str, float]] = [
    ("avg", "SELECT AVG(loan_amount) AS a FROM loans", 0.0),
    ("count+sum+avg", "SELECT COUNT(*) AS n, SUM(loan_amount) AS s, AVG(loan_amount) AS a FROM loans", 0.0),
    ("grade avg+var", "SELECT grade, AVG(loan_amount) AS a, VARIANCE(loan_amount) AS v FROM loans GROUP BY grade", 0.0),
    ("stddev", "SELECT STDDEV(annual_income) AS sd FROM loans", 0.0),
    ("10 measures, δ=1e-6", "SELECT COUNT(*) n, SUM(loan_amount) s1, SUM(annual_income) s2, AVG(interest_rate) a1, "
     "AVG(loan_amount) a2, AVG(annual_income) a3, VARIANCE(interest_rate) v FROM loans", 1e-6),
    ("10 measures, δ=1e-4", "SELECT COUNT(*) n, SUM(loan_amount) s1, SUM(annual_income) s2, AVG(interest_rate) a1, "
     "AVG(loan_amount) a2, AVG(annual_income) a3, VARIANCE(interest_rate) v FROM loans", 1e-4),
]


@contextmanager
def _equal_split() -> Iterator[None]:
    from fractions import Fraction

    from gateway.sql import plan as plan_module

    saved = plan_module.split_epsilon, plan_module.choose_noise

    def equal(weights: dict[str, float], epsilon: Fraction, **_: Any) -> dict[str, Fraction]:
        return dict.fromkeys(weights, epsilon / len(weights))

    def laplace_only(items: Any, epsilon: Any, delta: Any = 0, **kw: Any) -> Any:
        return saved[1](items, epsilon, Fraction(0), **kw)

    plan_module.split_epsilon, plan_module.choose_noise = equal, laplace_only
    try:
        yield
    finally:
        plan_module.split_epsilon, plan_module.choose_noise = saved


@contextmanager
def _laplace_only() -> Iterator[None]:
    from fractions import Fraction

    from gateway.sql import plan as plan_module

    saved = plan_module.choose_noise

    def laplace_only(items: Any, epsilon: Any, delta: Any = 0, **kw: Any) -> Any:
        return saved(items, epsilon, Fraction(0), **kw)

    plan_module.choose_noise = laplace_only
    try:
        yield
    finally:
        plan_module.choose_noise = saved


def stated(gw: Any, sql: str, epsilon: float, delta: float, runs: int) -> tuple[dict[str, float], str]:
    """The mean stated 95% half-width per column over `runs` answers (every cell, every run)."""
    plan = gw.plan("lending", sql, epsilon=epsilon, delta=delta)
    noise = plan.gaussian.mechanism if plan.gaussian is not None else "laplace"
    widths: dict[str, list[float]] = {}
    for _ in range(runs):
        answer = gw.query("lending", sql, epsilon=epsilon, delta=delta)
        for col, bands in answer.intervals.items():
            for b in bands:
                if b is not None:
                    widths.setdefault(col, []).append((b[1] - b[0]) / 2)
    return {c: sum(w) / len(w) for c, w in widths.items() if sum(w) > 0}, noise


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args(argv)

    from gateway.core import Gateway
    from gateway.demo_data import demo_datasets
    from gateway.engines.duckdb import DuckDBEngine

    with tempfile.TemporaryDirectory() as tmp:
        lending = next(d for d in demo_datasets(tmp, transactions_rows=1000) if d["name"] == "lending")
        gw = Gateway(DuckDBEngine(None, seed="bench-split"))
        gw.register(lending)
        out = []
        print(f"| form | column | equal | split | chosen | noise | gain |  (mean stated 95% half-widths over {args.runs} answers, ε = {args.epsilon})")
        print("|---|---|---|---|---|---|---|")
        for name, sql, delta in FORMS:
            with _equal_split():
                equal, _ = stated(gw, sql, args.epsilon, delta, args.runs)
            with _laplace_only():
                split, _ = stated(gw, sql, args.epsilon, delta, args.runs)
            chosen, noise = stated(gw, sql, args.epsilon, delta, args.runs)
            gains = []
            for col in equal:
                g = equal[col] / chosen[col]
                gains.append(g)
                print(f"| {name} | {col} | {equal[col]:.4g} | {split[col]:.4g} | {chosen[col]:.4g} | {noise} | {g:.3f} |")
            geo = math.exp(sum(math.log(g) for g in gains) / len(gains))
            out.append({"form": name, "noise": noise, "gain": geo, "columns": {c: [equal[c], split[c], chosen[c]] for c in equal}})
        print()
        for r in out:
            print(f"{r['form']}: geometric-mean gain {r['gain']:.3f} ({r['noise']})")
    return out


if __name__ == "__main__":
    main()
