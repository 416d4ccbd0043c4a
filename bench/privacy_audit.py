"""Privacy audit: a statistical lower bound on the ε of every mechanism and query, and the positive controls.

For every case of ``tests/privacy_audit/cases.py`` — each mechanism of ``mechanisms/`` on adversarial
neighbours, whole queries through the gateway (their answers, and their mechanism outputs traced through
the gateway), the synthesiser (``training/synthetic.py``, the count of a category only the extra unit
holds), and positive controls (a Laplace with its sensitivity understated; one DP-SGD step with its
noise divided by the batch size, as Tramèr et al. 2022 found in a published implementation, next to the
correct step; a synthesiser that reads its category list from the rows) — it draws outputs on D and D', computes the (1 - α) lower confidence bound ε_lb of
``mechanisms.audit`` (Clopper–Pearson bounds on rejection sets chosen on one half of the samples and
tested on the other, Bonferroni over the sets tested; both directions), and prints a Markdown table:

    | mechanism / query | claimed ε | δ | ε lower bound | samples | verdict |

Verdicts: ``pass`` (ε_lb <= claimed ε), ``VIOLATION`` (ε_lb > claimed ε: the mechanism is not what it
claims, at confidence 1 - α); for the broken controls ``caught`` or ``MISSED``.

Run: ``.venv/bin/python bench/privacy_audit.py`` (10^6 draws per dataset for every audit, 10^5 answers
for the query-answer audits, which cost ~0.3–1.5 ms each; 10^4 synthetic tables, ``--synth-samples``,
for the synthesiser audits, ~4 ms each; about an hour on one core) or with
``--samples 20000 --answer-samples 2000`` for a quick look; ``--only NAME`` (substring, repeatable) to
run some cases; ``--jobs N`` to run cases in N processes; ``--out`` for the JSON report (default
``bench/results/privacy_audit.json``). The exit status is 1 when a verdict is VIOLATION or MISSED.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.privacy_audit.cases import ALL_CASES, Case, no_timing_padding, run  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "privacy_audit.json"
DEFAULT_SAMPLES = 1_000_000
DEFAULT_ANSWER_SAMPLES = 100_000
DEFAULT_SYNTH_SAMPLES = 10_000  # synthetic tables cost ~4 ms each (MST on OpenDP measurements)
DEFAULT_ALPHA = 0.05


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="draws per dataset (default 10^6)")
    p.add_argument("--answer-samples", type=int, default=DEFAULT_ANSWER_SAMPLES,
                   help="answers per dataset for the query-answer audits (default 10^5; 0 skips them)")
    p.add_argument("--synth-samples", type=int, default=DEFAULT_SYNTH_SAMPLES,
                   help="at most this many synthetic tables per dataset for the synthesiser audits (default 10^4; capped by --samples)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="1 - confidence of the bounds (default 0.05)")
    p.add_argument("--only", action="append", default=[], help="run the cases whose name contains this (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="cases run in this many processes (default 1)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)
    if args.samples < 4 or args.answer_samples < 0 or args.synth_samples < 0 or not 0 < args.alpha < 1 or args.jobs < 1:
        p.error("--samples >= 4, --answer-samples >= 0, --synth-samples >= 0, 0 < --alpha < 1, --jobs >= 1")
    return args


def samples_for(case: Case, args: argparse.Namespace) -> int:
    if case.note == "synthetic":
        return min(args.samples, args.synth_samples)
    return args.answer_samples if case.note == "answers" else args.samples


def verdict(case: Case, epsilon: float, bound: float) -> str:
    exceeded = bound > epsilon
    if case.expect_caught:
        return "caught" if exceeded else "MISSED"
    return "VIOLATION" if exceeded else "pass"


def audit_case(name: str, samples: int, alpha: float) -> dict[str, Any]:
    """One case, by name (so that it can run in another process)."""
    case = next(c for c in ALL_CASES if c.name == name)
    started = time.perf_counter()
    with no_timing_padding():
        neighbours, result = run(case, samples=samples, alpha=alpha)
    w = result.witness
    return {
        "name": case.name,
        "group": case.group,
        "sampled": "answers" if case.note == "answers" else ("mechanism outputs traced through the gateway" if case.note == "traced" else "outputs"),
        "epsilon": neighbours.epsilon,
        "delta": neighbours.delta,
        "epsilon_lower_bound": result.epsilon_lower_bound,
        "samples": result.samples,
        "alpha": alpha,
        "verdict": verdict(case, neighbours.epsilon, result.epsilon_lower_bound),
        "expect_caught": case.expect_caught,
        "witness": None if w is None else {"set": w.description, "direction": w.direction, "p_hat": w.p_hat, "q_hat": w.q_hat},
        "seconds": time.perf_counter() - started,
    }


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def markdown(rows: list[dict[str, Any]], alpha: float) -> str:
    lines = [
        f"ε lower bounds at confidence {1 - alpha:g} (Clopper–Pearson, split-sample, Bonferroni; both directions)",
        "",
        "| mechanism / query | claimed ε | δ | ε lower bound | samples | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        name = r["name"] + (" (answers)" if r["sampled"] == "answers" else "")
        lines.append(
            f"| {name} | {r['epsilon']:.4g} | {r['delta']:g} | {r['epsilon_lower_bound']:.3f} | {r['samples']:,} | {r['verdict']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cases = [c for c in ALL_CASES if not args.only or any(o.lower() in c.name.lower() for o in args.only)]
    cases = [c for c in cases if samples_for(c, args) >= 4]
    if args.list:
        for c in cases:
            print(f"{c.group:9s} {c.name}  [{samples_for(c, args):,} samples]")
        return {"cases": [c.name for c in cases]}
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if args.jobs == 1:
        for c in cases:
            rows.append(audit_case(c.name, samples_for(c, args), args.alpha))
            _progress(f"{c.name}: ε_lb {rows[-1]['epsilon_lower_bound']:.3f} ({rows[-1]['seconds']:.0f} s)")
    else:
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(audit_case, c.name, samples_for(c, args), args.alpha) for c in cases]
            for c, f in zip(cases, futures):
                rows.append(f.result())
                _progress(f"{c.name}: ε_lb {rows[-1]['epsilon_lower_bound']:.3f} ({rows[-1]['seconds']:.0f} s)")
    report: dict[str, Any] = {
        "benchmark": "privacy_audit",
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "rows": rows,
        "ok": all(r["verdict"] in ("pass", "caught") for r in rows),
        "total_s": time.perf_counter() - started,
    }
    print(markdown(rows, args.alpha), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    _progress(f"wrote {out} ({report['total_s']:.0f} s)")
    return report


if __name__ == "__main__":
    sys.exit(0 if main().get("ok", True) else 1)
