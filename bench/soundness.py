"""Soundness fuzzer, large run: generated expressions against the planned sensitivities (issue 10).

Draws ``--expressions`` random scalar expressions (`tests/soundness/gen.py`: every node of the scalar
allow-list, NULL-producing branches, comparisons with the privacy unit), plans their aggregates (SUM,
AVG, VARIANCE/STDDEV, COUNT, COUNT(DISTINCT), MEDIAN/MIN/MAX/PERCENTILE) with and without a generated
WHERE and GROUP BY key, and checks each plan's exact measures on the adversarial dataset against every
neighbour (`tests/soundness/check.py`): L1 change within the sensitivity, nothing unnoised that moves,
quantile histograms within k, no engine failure. Prints what it tried, what was refused, every
violation grouped by cause (the first ones shrunk to a minimal expression) and how many aggregated
values fell outside the interval the analysis inferred (where the plan's outer clamp is what holds).

Run: ``.venv/bin/python bench/soundness.py --expressions 10000 --seed 1 --jobs 2`` (about 4.5 minutes on
the 2-core development machine); ``--forms 0`` tries every form of each expression (slower), ``--variants 4`` every
WHERE/GROUP BY combination, ``--faithful-every 1`` runs every plan also exactly as the release runs it.
``--out`` writes the summary and violations as JSON. The exit status is 1 on any violation.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.soundness import gen  # noqa: E402
from tests.soundness.check import COUNTERS, Item, Soundness, Stats, Violation, query  # noqa: E402

CHUNK = 25  # batches per task handed to a worker


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/soundness.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--expressions", type=int, default=10_000, help="expressions to draw (default 10000)")
    p.add_argument("--seed", type=int, default=1, help="run seed: expression i is drawn from (seed, i)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--batch", type=int, default=8, help="expressions planned together in one query (default 8)")
    p.add_argument("--depth", type=int, default=3, help="greatest nesting depth; each expression draws 1..depth")
    p.add_argument("--variants", type=int, default=1, choices=(1, 2, 3, 4),
                   help="of the 4 WHERE/GROUP BY combinations, how many per batch (default 1, drawn)")
    p.add_argument("--forms", type=int, default=4, help="aggregate forms per expression, SUM and drawn others (0: all)")
    p.add_argument("--faithful-every", type=int, default=100,
                   help="each worker's first plan and every n-th after also runs as the release runs it, on each"
                        " neighbour's own engine (default 100; such a plan costs about 30 ordinary ones)")
    p.add_argument("--shrink", type=int, default=25, help="violations to shrink to a minimal expression (default 25)")
    p.add_argument("--show", type=int, default=12, help="failing queries to print per cause (default 12)")
    p.add_argument("--out", type=Path, default=None, help="write the summary and every violation as JSON")
    args = p.parse_args(argv)
    if args.expressions < 1 or args.jobs < 1 or args.batch < 1 or args.depth < 1 or args.forms < 0:
        p.error("--expressions, --jobs, --batch, --depth >= 1; --forms >= 0")
    return args


_WORKER: Soundness | None = None  # one per process: its engines are built once


def run_chunk(seed: int, first: int, last: int, size: int, depth: int, variants: int, forms: int,
              faithful_every: int, expressions: int) -> Stats:
    """Batches first..last-1, in this process's engines; the statistics of these batches alone."""
    global _WORKER
    if _WORKER is None:
        _WORKER = Soundness(faithful_every=faithful_every)
    s = _WORKER
    s.stats = Stats()
    for b in range(first, last):
        n = min(size, expressions - b * size)
        if n > 0:
            s.run_batch(seed, b, size=n, depth=depth, variants=variants, forms=forms or None, stride=size)
    return s.stats


# shrinking ------------------------------------------------------------------------------------------

def _violates(s: Soundness, expr: str, forms: list[str], where: str | None, key: str | None, kind: str) -> bool:
    try:
        sqlglot.parse_one(expr, read="duckdb")
    except Exception:  # noqa: BLE001 - a candidate that does not parse is no smaller case
        return False
    found = s.run_items([Item(expr, list(forms))], where, key, count=False)
    return any(v.kind == kind for v in found)


def _candidates(node: exp.Expression) -> list[exp.Expression]:
    kids = [c for c in node.iter_expressions() if not isinstance(c, (exp.DataType, exp.Var, exp.Identifier))]
    return kids + [exp.Literal.number(0), exp.Literal.number(1), exp.Null()]


ALL_FORMS = (*gen.NUMERIC_FORMS, *gen.QUANTILE_FORMS, *gen.COUNT_FORMS)


def shrink(s: Soundness, v: Violation, budget: int = 300) -> tuple[str, list[str], str | None, str | None] | None:
    """A smaller (expression, forms, WHERE, key) that still shows a violation of the same kind: drop
    the forms, the WHERE and the key that it does not need, then replace subexpressions by their parts
    or by 0, 1, NULL. None when the expression's own query does not show it again."""
    # in the query's order: which aggregate comes first decides which measures they share
    forms = sorted((f for f in ALL_FORMS if f.format(e=v.expr) in v.sql), key=lambda f: v.sql.index(f.format(e=v.expr)))
    where, key = v.where, v.key
    if not forms or not _violates(s, v.expr, forms, where, key, v.kind):
        return None
    for f in list(forms):
        rest = [x for x in forms if x != f]
        if rest and _violates(s, v.expr, rest, where, key, v.kind):
            forms = rest
    for w, k in ((None, key), (where, None), (None, None)):
        if (w, k) != (where, key) and _violates(s, v.expr, forms, w, k, v.kind):
            where, key = w, k
    tree = sqlglot.parse_one(v.expr, read="duckdb")
    tries = 0
    improved = True
    while improved and tries < budget:
        improved = False
        size = len(tree.sql(dialect="duckdb"))
        for i in range(sum(1 for _ in tree.walk())):
            for cand in _candidates(list(tree.walk())[i]):
                tries += 1
                trial = tree.copy()
                target = list(trial.walk())[i]
                if target is trial:
                    trial = cand.copy()
                else:
                    target.replace(cand.copy())
                text = trial.sql(dialect="duckdb")
                if len(text) < size and _violates(s, text, forms, where, key, v.kind):
                    tree, improved = trial, True
                    break
                if tries >= budget:
                    break
            if improved or tries >= budget:
                break
    return tree.sql(dialect="duckdb"), forms, where, key


def cause(expr: str, forms: list[str]) -> str:
    """The aggregates and the functions of a (shrunk) query, as a label to group violations by."""
    try:
        tree = sqlglot.parse_one(expr, read="duckdb")
    except Exception:  # noqa: BLE001
        return "unparsed"
    skip = (exp.Column, exp.Literal, exp.Paren, exp.Identifier, exp.Null, exp.Boolean, exp.DataType, exp.Var, exp.Neg)
    names = sorted({type(n).__name__.upper() for n in tree.walk() if not isinstance(n, skip)})
    aggs = " + ".join(f.split("(")[0] + ("(DISTINCT)" if "DISTINCT" in f else "") for f in forms)
    return f"{aggs} of {' + '.join(names) or 'a column'}"


# report ---------------------------------------------------------------------------------------------

def report(stats: Stats, args: argparse.Namespace, seconds: float, rows: int) -> dict[str, Any]:
    s = Soundness(faithful_every=0)  # for shrinking, in this process
    print(f"soundness fuzzer: seed {args.seed}, {stats.expressions:,} expressions (depth <= {args.depth}), "
          f"{seconds:.0f} s on {args.jobs} job(s)")
    print(f"  data: {rows} source rows, {s.bounded_rows} after bounding, {len(gen.UNITS)} units, k = {gen.K}; "
          f"{len(gen.TARGETS)} neighbours (without {', '.join(gen.TARGETS)})")
    print(f"  aggregate forms tried: {stats.forms:,} (accepted {stats.accepted_forms:,}, refused {stats.refused_forms:,} "
          f"with a 4xx); plans checked {stats.plans_checked:,}, measures {stats.measures:,}, "
          f"neighbour pairs {stats.pairs:,}; plans also run as released {stats.faithful_plans:,}; planner calls {stats.queries:,}")
    labels = {(False, False): "plain", (True, False): "WHERE", (False, True): "GROUP BY", (True, True): "WHERE + GROUP BY"}
    print("  forms by variant: " + ", ".join(f"{labels[k]} {v:,}" for k, v in sorted(stats.variants.items())))
    print("  refusals: " + ", ".join(f"{k} {v:,}" for k, v in stats.refusals.most_common(8)))
    if stats.refused_parts:
        print("  WHERE / GROUP BY drawn and refused alone (redrawn without): "
              + ", ".join(f"{k} {v:,}" for k, v in stats.refused_parts.most_common(5)))
    share = stats.values_outside / stats.values_checked if stats.values_checked else 0.0
    print(f"  values outside the inferred interval before the outer clamp: {stats.values_outside:,} of "
          f"{stats.values_checked:,} ({share:.3%}), in {stats.expressions_outside:,} expressions")
    for line in stats.outside_examples[:8]:
        print(f"      {line[:220]}")

    violations = stats.violations
    by_kind = Counter(v.kind for v in violations)
    print(f"  VIOLATIONS: {len(violations):,}" + (f" ({', '.join(f'{k} {n}' for k, n in by_kind.most_common())})" if violations else ""))
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    shrunk = 0
    seen: set[tuple[str, str | None, str | None]] = set()
    out: list[dict[str, Any]] = []
    for v in violations:
        record: dict[str, Any] = {"kind": v.kind, "measure": v.measure, "sensitivity": v.sensitivity, "observed": v.observed,
                                  "unit": v.unit, "detail": v.detail, "sql": v.sql}
        ident = (v.expr, v.where, v.key)
        if v.expr and ident not in seen and shrunk < args.shrink and v.kind not in ("harness",):
            seen.add(ident)
            shrunk += 1
            small = shrink(s, v)
            if small is None:
                record["cause"] = f"{v.kind}, not shown by the expression's own query"
            else:
                e, fs, w, k = small
                record["minimal"] = query(e, fs, w, k)
                record["cause"] = cause(e, fs)
        else:
            record["cause"] = "LEAST/GREATEST (not shrunk)" if any(t in v.expr.upper() for t in ("LEAST", "GREATEST")) else \
                f"{v.kind} (not shrunk)"
        groups[record["cause"]].append(record)
        out.append(record)
    for label, recs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"\n  cause: {label}: {len(recs)}")
        for r in recs[: args.show]:
            print(f"    [{r['kind']}] {r['measure']}: planned {r['sensitivity']:.6g}, observed {r['observed']:.6g}"
                  f"{' without ' + r['unit'] if r['unit'] else ''}{' (' + r['detail'] + ')' if r['detail'] else ''}")
            if "minimal" in r:
                print(f"      minimal: {r['minimal']}")
            print(f"      query:   {r['sql'][:400]}")
    summary = {"seed": args.seed, "seconds": seconds, "rows": rows, **{k: getattr(stats, k) for k in COUNTERS},
               "refusals": dict(stats.refusals), "violations": out, "outside_examples": stats.outside_examples}
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    batches = -(-args.expressions // args.batch)
    chunks = [(b, min(b + CHUNK, batches)) for b in range(0, batches, CHUNK)]
    started = time.perf_counter()
    stats = Stats()
    params = (args.batch, args.depth, args.variants, args.forms, args.faithful_every, args.expressions)
    done = 0
    if args.jobs == 1:
        for first, last in chunks:
            stats.merge(run_chunk(args.seed, first, last, *params))
            done += 1
            _progress(done, len(chunks), stats, started)
    else:
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_chunk, args.seed, first, last, *params) for first, last in chunks]
            for f in futures:
                stats.merge(f.result())
                done += 1
                _progress(done, len(chunks), stats, started)
    seconds = time.perf_counter() - started
    summary = report(stats, args, seconds, gen.frames()["raw_t"].num_rows)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2, default=str))
        print(f"\n  wrote {args.out}")
    return 1 if stats.violations else 0


def _progress(done: int, total: int, stats: Stats, started: float) -> None:
    print(f"[soundness] {done}/{total} chunks, {stats.expressions:,} expressions, {len(stats.violations)} violations, "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
