"""Timing side channel of releases (issue #6): does a query's response time tell its noise?

Through the gateway's query path (`gateway.core.Gateway.query`: parse, plan, engine, OpenDP noise,
post-processing) on the test bank table, a COUNT(*) at ε = ``--epsilon`` (scale = k/ε) is asked
``--queries`` times with the constant-time padding of `mechanisms._timing` off and on (interleaved in
blocks, same process). For each answer |noise| = |answer - exact count| (the exact count read once from
the engine), and the Spearman rank correlation between |noise| and the response time is reported with
its 95% interval (Fisher z) — before (padding off) and after (padding on) — plus the median latency
cost of the padding and the draws that overran their deadline.

Run: ``.venv/bin/python bench/timing.py [--queries 4000] [--epsilon 0.01]`` or ``dpgate bench timing``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _spearman(x: list[float], y: list[float]) -> dict[str, float]:
    from scipy.stats import spearmanr

    rho = float(spearmanr(x, y).statistic)
    half = 1.96 / math.sqrt(max(1, len(x) - 3))
    z = math.atanh(max(-0.999999, min(0.999999, rho)))
    return {"rho": rho, "ci95": [math.tanh(z - half), math.tanh(z + half)], "n": len(x)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import statistics

    from mechanisms import _timing
    from tests.conftest import make_gateway

    p = argparse.ArgumentParser(prog="bench/timing.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=4000, help="queries per setting")
    p.add_argument("--epsilon", type=float, default=0.01)
    p.add_argument("--block", type=int, default=100, help="queries per interleaved block")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "timing.json")
    args = p.parse_args(argv)

    from fractions import Fraction

    from mechanisms import LaplaceCount

    gw = make_gateway()
    mech = LaplaceCount(epsilon=Fraction(args.epsilon).limit_denominator(10**6), sensitivity=1)
    draws: dict[str, dict[str, list[float]]] = {"off": {"noise": [], "s": []}, "on": {"noise": [], "s": []}}
    sql = "SELECT COUNT(*) FROM tx"
    exact = gw.engine._con.execute(f'SELECT count(*) FROM "{gw.engine.relation_name("bank", "tx", bounded=True)}"').fetchone()[0]
    saved = _timing.settings()
    runs: dict[str, dict[str, list[float]]] = {"off": {"noise": [], "s": []}, "on": {"noise": [], "s": []}}
    overruns_before = _timing.overruns()
    try:
        for _ in range(3):  # warm-up
            gw.query("bank", sql, epsilon=args.epsilon)
        done = 0
        while done < args.queries:
            for mode in ("off", "on"):
                _timing.configure(base_s=0 if mode == "off" else 0.002)
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
        r = draws[mode]
        report["draw_" + mode] = {**_spearman(r["noise"], r["s"]), "median_ms": 1000 * statistics.median(r["s"]),
                                  "p99_ms": 1000 * sorted(r["s"])[int(0.99 * len(r["s"]))]}  # fmt: skip
        r = runs[mode]
        report[mode] = {**_spearman(r["noise"], r["s"]), "median_ms": 1000 * statistics.median(r["s"]),
                        "p99_ms": 1000 * sorted(r["s"])[int(0.99 * len(r["s"]))]}  # fmt: skip
    print("| measured | padding | n | Spearman ρ(|noise|, time) | 95% interval | median ms | p99 ms |")
    print("|---|---|---:|---:|---|---:|---:|")
    for what, prefix in (("one draw (LaplaceCount.release)", "draw_"), ("whole query (Gateway.query)", "")):
        for mode, name in (("off", "off (before)"), ("on", "on (after)")):
            r = report[prefix + mode]
            print(f"| {what} | {name} | {r['n']} | {r['rho']:+.3f} | [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] "
                  f"| {r['median_ms']:.3f} | {r['p99_ms']:.3f} |")  # fmt: skip
    print(f"\nCOUNT(*) at ε = {args.epsilon:g} through gateway.core; draws over their deadline: {report['overruns']}.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
