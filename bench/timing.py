"""Timing side channels of releases (issues #6, #10): does a query's response time tell its noise, or
how many groups its data hide?

Three measurements, all in this process (the unit tests assert no wall-clock figure: STYLE.md §14):

1. **|noise|.** Through the gateway's query path (`gateway.core.Gateway.query`: parse, plan, engine,
   OpenDP noise, post-processing) on the test bank table, a COUNT(*) at ε = ``--epsilon`` (scale = k/ε)
   is asked ``--queries`` times with the constant-time padding of `mechanisms._timing` off and on
   (interleaved in blocks). For each answer |noise| = |answer - exact count| (the exact count read once
   from the engine); reported: the Spearman rank correlation between |noise| and the response time with
   its 95% interval (Fisher z), before (padding off) and after (padding on), the median latency cost of
   the padding and the draws that overran their deadline.
2. **Hidden groups.** ``SELECT grp, COUNT(*) FROM t GROUP BY grp`` (``grp`` has no public list of values:
   threshold partition selection) on ``--levels`` datasets that differ only in their data: the same
   rows and units (``--rows``, one row each), two large groups that are always released, and 1 to
   ``--max-groups`` groups of one row each that threshold selection never releases. The answer is the
   same two rows on every dataset; the number of hidden candidate groups is what a timing attacker
   wants. Queries cycle over the datasets in a shuffled order, ``--group-queries`` per mode, modes
   interleaved in blocks: **off** (no padding), **before** (padding sized by the number of candidate
   keys, as before issue #10: emulated by setting the cap to the dataset's own key count before each
   query) and **after** (sized by the public cap ``--cap``, default ``--max-groups``). Reported:
   Spearman ρ(n_groups, time) with its 95% interval, for the whole query and for the threshold step
   alone (``ThresholdCounts.release``, timed by a wrapper), and the overruns per mode. Target: after,
   the interval of the step contains 0; what the whole query keeps is the engine's share (grouping
   and fetching one row per group), which no padding inside `mechanisms` covers.
3. **Per-value cost** of each mechanism's draw with the padding off (the best of ``--repeats`` at
   1,000 values; threshold selection's whole step at several key counts, json-stringified cells as the
   gateway passes them), against its budget in ``_timing.PER_VALUE_S``: the headroom should be ~2x.

Run: ``.venv/bin/python bench/timing.py [--quick] [--queries 4000] [--group-queries 200]`` or
``dpgate bench timing``. ``--quick`` runs all three at smoke size (well under a minute).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BASE_S = 0.002  # the padding's base when on (mechanisms._timing's default)
GROUPS_SQL = "SELECT grp, COUNT(*) FROM t GROUP BY grp"


def _spearman(x: list[float], y: list[float]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    rho = float(spearmanr(x, y).statistic)
    half = 1.96 / math.sqrt(max(1, len(x) - 3))
    z = math.atanh(max(-0.999999, min(0.999999, rho)))
    return {"rho": rho, "ci95": [math.tanh(z - half), math.tanh(z + half)], "n": len(x)}


def _summary(x: list[float], s: list[float]) -> dict[str, Any]:
    import statistics

    return {**_spearman(x, s), "median_ms": 1000 * statistics.median(s), "p99_ms": 1000 * sorted(s)[int(0.99 * len(s))]}


def _ci(r: dict[str, Any]) -> str:
    return f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]"


# -- 1. |noise| --------------------------------------------------------------------------------------


def noise_part(args: argparse.Namespace) -> dict[str, Any]:
    from mechanisms import LaplaceCount, _timing
    from tests.conftest import make_gateway

    gw = make_gateway()
    mech = LaplaceCount(epsilon=Fraction(args.epsilon).limit_denominator(10**6), sensitivity=1)
    draws: dict[str, dict[str, list[float]]] = {"off": {"noise": [], "s": []}, "on": {"noise": [], "s": []}}
    runs: dict[str, dict[str, list[float]]] = {"off": {"noise": [], "s": []}, "on": {"noise": [], "s": []}}
    sql = "SELECT COUNT(*) FROM tx"
    exact = gw.engine._con.execute(f'SELECT count(*) FROM "{gw.engine.relation_name("bank", "tx", bounded=True)}"').fetchone()[0]
    saved = _timing.settings()
    overruns_before = _timing.overruns()
    try:
        for _ in range(3):  # warm-up
            gw.query("bank", sql, epsilon=args.epsilon)
        done = 0
        while done < args.queries:
            for mode in ("off", "on"):
                _timing.configure(base_s=0 if mode == "off" else BASE_S)
                for _ in range(min(args.block, args.queries - done)):
                    t = time.perf_counter()
                    v = mech.release([0])[0]
                    draws[mode]["s"].append(time.perf_counter() - t)
                    draws[mode]["noise"].append(abs(v))
                    t = time.perf_counter()
                    answer = gw.query("bank", sql, epsilon=args.epsilon)
                    runs[mode]["s"].append(time.perf_counter() - t)
                    runs[mode]["noise"].append(abs(answer.rows[0][0] - exact))
            done += args.block
    finally:
        _timing.configure(base_s=saved[0], scale=saved[1])
    report: dict[str, Any] = {"epsilon": args.epsilon, "exact_count_bounded": exact, "queries_per_setting": args.queries,
                              "overruns": _timing.overruns() - overruns_before}  # fmt: skip
    for mode in ("off", "on"):
        report["draw_" + mode] = _summary(draws[mode]["noise"], draws[mode]["s"])
        report[mode] = _summary(runs[mode]["noise"], runs[mode]["s"])
    print("| measured | padding | n | Spearman ρ(|noise|, time) | 95% interval | median ms | p99 ms |")
    print("|---|---|---:|---:|---|---:|---:|")
    for what, prefix in (("one draw (LaplaceCount.release)", "draw_"), ("whole query (Gateway.query)", "")):
        for mode, name in (("off", "off (before)"), ("on", "on (after)")):
            r = report[prefix + mode]
            print(f"| {what} | {name} | {r['n']} | {r['rho']:+.3f} | {_ci(r)} | {r['median_ms']:.3f} | {r['p99_ms']:.3f} |")
    print(f"\nCOUNT(*) at ε = {args.epsilon:g} through gateway.core; draws over their deadline: {report['overruns']}.\n")
    return report


# -- 2. hidden groups --------------------------------------------------------------------------------


def group_levels(max_groups: int, levels: int) -> list[int]:
    """1 .. max_groups hidden groups, evenly spaced (distinct, increasing)."""
    if levels <= 1:
        return [max_groups]
    return sorted({max(1, round(1 + i * (max_groups - 1) / (levels - 1))) for i in range(levels)})


def groups_gateway(levels: list[int], rows: int) -> Any:
    """One dataset per level: `rows` units of one row each; all but n of them in the groups "A" and "B"
    (always released), the other n in a group of their own (one row: never released)."""
    import numpy as np
    import pandas as pd

    from gateway.core import Gateway
    from gateway.engines.duckdb import DuckDBEngine

    engine = DuckDBEngine(None, seed="bench-timing")
    gw = Gateway(engine)
    for n in levels:
        if n > rows - 200:
            raise SystemExit(f"--rows must exceed the largest level by 200 ({n} hidden groups)")
        big = rows - n
        grp = np.array(["A"] * (big // 2) + ["B"] * (big - big // 2) + [f"h{i:06d}" for i in range(n)], dtype=object)
        engine.load_frame(f"raw_hidden{n}", pd.DataFrame({"uid": np.arange(rows), "grp": grp}))
        gw.register({
            "name": f"hidden{n}", "privacy_unit": "uid", "budget": {"epsilon": 1000, "delta": 1e-3},
            "tables": {"t": {"source": f"raw_hidden{n}", "max_rows_per_unit": 1,
                             "columns": {"uid": {"type": "id"}, "grp": {"type": "category"}}}},
        })  # fmt: skip
    return gw


def groups_part(args: argparse.Namespace) -> dict[str, Any]:
    from mechanisms import _timing, threshold
    from mechanisms.threshold import ThresholdCounts

    levels = group_levels(args.max_groups, args.levels)
    cap = args.cap or args.max_groups + 2
    gw = groups_gateway(levels, args.rows)
    modes = ("off", "before", "after")
    data: dict[str, dict[str, list[float]]] = {m: {"n": [], "query": [], "step": []} for m in modes}
    overruns = dict.fromkeys(modes, 0)
    step_s: list[float] = []
    original = ThresholdCounts.release

    def timed(self: Any, *a: Any, **kw: Any) -> Any:  # the threshold step alone, padding included
        t = time.perf_counter()
        try:
            return original(self, *a, **kw)
        finally:
            step_s.append(time.perf_counter() - t)

    rng = random.Random(args.seed)  # the order of the datasets only; noise comes from OpenDP
    saved, saved_cap = _timing.settings(), threshold.default_max_candidates()
    ThresholdCounts.release = timed  # type: ignore[method-assign]
    try:
        _timing.configure(base_s=0)
        for n in levels:  # warm-up, and a check that the hidden groups stay hidden
            answer = gw.query(f"hidden{n}", GROUPS_SQL, epsilon=args.group_epsilon, delta=args.group_delta)
            assert sorted(r[0] for r in answer.rows) == ["A", "B"], answer.rows
        done = 0
        while done < args.group_queries:
            block = min(args.block, args.group_queries - done)
            for mode in modes:
                _timing.configure(base_s=0 if mode == "off" else BASE_S)
                threshold.configure(max_candidates=cap)
                order = [levels[i % len(levels)] for i in range(block)]
                rng.shuffle(order)
                before = _timing.overruns()
                for n in order:
                    if mode == "before":  # the old deadline: base + per_value * (keys found in the data)
                        threshold.configure(max_candidates=n + 2)
                    step_s.clear()
                    t = time.perf_counter()
                    gw.query(f"hidden{n}", GROUPS_SQL, epsilon=args.group_epsilon, delta=args.group_delta)
                    data[mode]["query"].append(time.perf_counter() - t)
                    data[mode]["step"].append(step_s[0])
                    data[mode]["n"].append(n)
                overruns[mode] += _timing.overruns() - before
            done += block
    finally:
        ThresholdCounts.release = original  # type: ignore[method-assign]
        _timing.configure(base_s=saved[0], scale=saved[1])
        threshold.configure(max_candidates=saved_cap)
    report: dict[str, Any] = {"levels": levels, "rows": args.rows, "cap": cap, "queries_per_mode": args.group_queries,
                              "epsilon": args.group_epsilon, "delta": args.group_delta, "overruns": overruns}  # fmt: skip
    for mode in modes:
        for what in ("query", "step"):
            report[f"{what}_{mode}"] = _summary(data[mode]["n"], data[mode][what])
    names = {"off": "off", "before": "before (sized by the keys found)", "after": f"after (sized by the cap, {cap})"}
    print("| measured | padding | n | Spearman ρ(n_groups, time) | 95% interval | median ms | p99 ms | overruns |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for what, label in (("step", "threshold step (ThresholdCounts.release)"), ("query", "whole query (Gateway.query)")):
        for mode in modes:
            r = report[f"{what}_{mode}"]
            print(f"| {label} | {names[mode]} | {r['n']} | {r['rho']:+.3f} | {_ci(r)} | {r['median_ms']:.3f} "
                  f"| {r['p99_ms']:.3f} | {overruns[mode] if what == 'step' else ''} |")  # fmt: skip
    after = report["step_after"]["ci95"]
    print(f"\n`{GROUPS_SQL}` at ε = {args.group_epsilon:g}, δ = {args.group_delta:g} on {len(levels)} datasets of "
          f"{args.rows} rows hiding {levels[0]}..{levels[-1]} groups (the answer: the same 2 groups). "
          f"Target, the step after: interval contains 0: {'met' if after[0] <= 0 <= after[1] else 'NOT met'}.\n")  # fmt: skip
    return report


# -- 3. per-value cost -------------------------------------------------------------------------------


def per_value_part(args: argparse.Namespace) -> dict[str, Any]:
    from gateway.sql.release import _cell_key as cell_key  # how the gateway stringifies a cell
    from mechanisms import Gaussian, LaplaceCount, LaplaceFloat, NoisyTopK, ThresholdCounts, _timing
    from mechanisms.selection import ExponentialQuantile

    def best(f: Any) -> float:
        f()  # warm
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    n = 1000
    quantile = ExponentialQuantile(epsilon=Fraction(1), alpha=Fraction(1, 2), candidates=[float(i) for i in range(n)], max_rows=1)
    scores = [0] * n
    thr = ThresholdCounts(epsilon=Fraction(1), delta=Fraction(1, 10**6), max_partitions=1, max_rows=1)

    def threshold_step(keys: int) -> Any:
        cells = {(f"city{i}", i): {"c": 1} for i in range(keys)}
        return lambda: thr.release(((c, int(v["c"])) for c, v in cells.items()), key=cell_key)

    draws = {
        "laplace_int": (n, lambda: LaplaceCount(epsilon=Fraction(1), sensitivity=1).release([0] * n)),
        "laplace_float": (n, lambda: LaplaceFloat(epsilon=Fraction(1), sensitivity=1.0).release([0.0] * n)),
        "gaussian_float": (n, lambda: Gaussian(rho=Fraction(1, 10), sensitivity=1.0).release([0.0] * n)),
        "gaussian_int": (n, lambda: Gaussian(rho=Fraction(1, 10), sensitivity=1.0, integer=True).release([0] * n)),
        "noisy_max": (n, lambda: NoisyTopK(epsilon=Fraction(1), sensitivity=1, k=1, monotonic=True).release([0] * n)),
        "noisy_max (quantile scores)": (n, lambda: quantile.measurement(scores)),
        **{f"threshold ({k} keys)": (k, threshold_step(k)) for k in args.threshold_keys},
    }  # fmt: skip
    saved = _timing.settings()
    _timing.configure(base_s=0)
    try:
        measured = {name: best(f) / count for name, (count, f) in draws.items()}
    finally:
        _timing.configure(base_s=saved[0], scale=saved[1])
    print("| draw (padding off) | µs per value (best of %d) | budget µs | headroom |" % args.repeats)
    print("|---|---:|---:|---:|")
    report = {}
    for name, per in measured.items():
        budget = _timing.PER_VALUE_S[name.split(" ")[0]]
        report[name] = {"us_per_value": 1e6 * per, "budget_us": 1e6 * budget, "headroom": budget / per}
        print(f"| {name} | {1e6 * per:.1f} | {1e6 * budget:.0f} | {budget / per:.1f}x |")
    print()
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench/timing.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke sizes: 300 |noise| queries, 60 group queries of 1..300 groups")
    p.add_argument("--queries", type=int, default=None, help="|noise| part: queries per setting (4000)")
    p.add_argument("--epsilon", type=float, default=0.01)
    p.add_argument("--block", type=int, default=100, help="queries per interleaved block")
    p.add_argument("--group-queries", type=int, default=None, help="hidden-groups part: queries per mode (200; 0 skips)")
    p.add_argument("--max-groups", type=int, default=None, help="the most hidden groups (2000)")
    p.add_argument("--levels", type=int, default=10, help="datasets, hiding 1 .. --max-groups groups")
    p.add_argument("--rows", type=int, default=None, help="rows (= units) of each dataset (--max-groups + 3000)")
    p.add_argument("--cap", type=int, default=None, help="threshold_max_groups for 'after' (default: the most keys)")
    p.add_argument("--group-epsilon", type=float, default=1.0)
    p.add_argument("--group-delta", type=float, default=1e-6)
    p.add_argument("--repeats", type=int, default=5, help="per-value part: best of this many")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "timing.json")
    args = p.parse_args(argv)
    quick = args.quick
    args.queries = args.queries if args.queries is not None else (300 if quick else 4000)
    # sized from --queries when not given, so that `--queries 300` (bench/security.py --quick) stays quick
    args.group_queries = args.group_queries if args.group_queries is not None else (
        60 if quick or args.queries < 1000 else 200)  # fmt: skip
    args.max_groups = args.max_groups or (300 if quick or args.queries < 1000 else 2000)
    args.rows = args.rows or args.max_groups + 3000
    args.threshold_keys = [100, 1000] if quick else [100, 1000, 10_000]
    if quick:
        args.repeats = min(args.repeats, 3)

    report: dict[str, Any] = {"noise": noise_part(args)}
    if args.group_queries > 0:
        report["groups"] = groups_part(args)
    report["per_value"] = per_value_part(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
