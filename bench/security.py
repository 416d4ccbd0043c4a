"""The proof suite's results table, from one command (issue #6).

Runs, each in its own process, and gathers what they print into ``bench/results/security.md``:

1. ``privacy_audit`` — `bench/privacy_audit.py`: the statistical DP auditor's ε lower bound for every
   mechanism and whole query, and the positive controls that must be caught (10^6 draws per dataset;
   about 70 min on one core, ``--jobs`` to spread it);
2. ``timing`` — `bench/timing.py`: the correlation of |noise| and release time, padding off and on;
3. ``load`` — `bench/load.py` on SQLite and on PostgreSQL: throughput, p50/p99, zero overspend;
4. ``suites`` — the security, privacy-audit, reliability and API test suites *including* their slow
   parts (the 1,080-query attack corpus over HTTP, 2,000 Hypothesis queries, schemathesis, kill -9 at each
   step, processes against one ledger): pass counts.

``--quick`` runs each at smoke size (seconds to minutes); ``--only NAME`` picks parts. Exit status 1 if
a part failed. Run: ``.venv/bin/python bench/security.py [--quick] [--only timing] [--jobs 2]`` or
``dpgate bench security``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("privacy_audit", "timing", "load", "suites")


def commands(args: argparse.Namespace) -> dict[str, list[list[str]]]:
    py = sys.executable
    quick = args.quick
    suites = ["tests/security", "tests/privacy_audit", "tests/reliability", "tests/api"]
    return {
        "privacy_audit": [[py, "bench/privacy_audit.py", "--jobs", str(args.jobs),
                           *(["--samples", "20000", "--answer-samples", "5000"] if quick else [])]],  # fmt: skip
        "timing": [[py, "bench/timing.py", "--queries", "300" if quick else "4000"]],
        "load": [[py, "bench/load.py", *(["--quick"] if quick else [])],
                 [py, "bench/load.py", "--backend", "postgresql", *(["--quick"] if quick else [])]],  # fmt: skip
        "suites": [[py, "-m", "pytest", "-q", "-n", "2", *suites, *([] if quick else ["-m", ""])]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/security.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke sizes")
    p.add_argument("--only", action="append", choices=PARTS, default=[], help="run only these parts (repeatable)")
    p.add_argument("--jobs", type=int, default=1, help="processes for the privacy audit")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "security.md")
    args = p.parse_args(argv)
    wanted = args.only or list(PARTS)
    out = [f"# dpgate proof suite{' (quick)' if args.quick else ''}", ""]
    failed = []
    for name, runs in commands(args).items():
        if name not in wanted:
            continue
        for cmd in runs:
            shown = " ".join(c if c != sys.executable else ".venv/bin/python" for c in cmd)
            print(f"[security] {shown}", file=sys.stderr, flush=True)
            t = time.perf_counter()
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            took = time.perf_counter() - t
            text = done.stdout.strip()
            if name == "suites":  # the summary line, not every dot
                text = "\n".join(line for line in text.splitlines() if " passed" in line or " failed" in line or "error" in line.lower())
            out += [f"## {name}: `{shown}` ({took:.0f} s, exit {done.returncode})", "", text or done.stderr.strip()[-2000:], ""]
            if done.returncode != 0:
                failed.append(shown)
    out.append("All parts passed." if not failed else "FAILED: " + "; ".join(failed))
    report = "\n".join(out) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
