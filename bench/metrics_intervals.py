"""Coverage of the DP metrics' 95% intervals (issue #16; `training.metrics`).

A known population (binary: 20% positives, logistic scores; multi-class: 4 classes, 60% correct), many
independent held-out samples of ``--n`` rows, each released as a job releases its metrics (OpenDP's
discrete Laplace at the metrics' ε, k = 1). Printed per ε: how often each interval covers the
population's figure (accuracy, majority-class share, ROC-AUC; the target is 0.95), and the mean width.

Run: ``.venv/bin/python bench/metrics_intervals.py [--trials 400] [--n 1500] [--epsilons 0.1 0.5 5]``
(about a minute).
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.metrics import dp_metrics, multiclass_dp_metrics  # noqa: E402


def _binary(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.2).astype(np.float32)
    logits = rng.normal(-1.5, 1.0, n) + 2.5 * y
    return 1 / (1 + np.exp(-logits)), y


def _multiclass(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, 4, n))
    return np.eye(4)[pred], y


def main(argv: list[str] | None = None) -> int:
    from sklearn.metrics import roc_auc_score

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--epsilons", type=float, nargs="+", default=[0.1, 0.5, 5.0])
    args = ap.parse_args(argv)
    rng = np.random.default_rng(3)
    big_s, big_y = _binary(rng, 400_000)
    truth = {"accuracy": float(((big_s > 0.5) == (big_y == 1)).mean()), "majority_share": float(1 - big_y.mean()),
             "roc_auc": float(roc_auc_score(big_y, big_s))}  # fmt: skip
    big_p, big_c = _multiclass(rng, 400_000)
    truth_mc = {"accuracy": float((big_p.argmax(1) == big_c).mean()), "majority_share": 0.4}
    print("| release | ε | figure | coverage | mean width |\n|---|---:|---|---:|---:|")
    for eps in args.epsilons:
        e = Fraction(eps).limit_denominator(1000)
        for kind, draw, fn, want in (("binary", _binary, dp_metrics, truth), ("multi-class", _multiclass, None, truth_mc)):
            hits = {k: 0 for k in want}
            widths: dict[str, list[float]] = {k: [] for k in want}
            for _ in range(args.trials):
                a, b = draw(rng, args.n)
                m = dp_metrics(a, b, epsilon=e, k=1) if fn else multiclass_dp_metrics(a, b, epsilon=e, k=1, n_classes=4)
                for k, v in want.items():
                    iv = m["intervals"][k]
                    if iv is not None:
                        hits[k] += iv[0] <= v <= iv[1]
                        widths[k].append(iv[1] - iv[0])
            for k in want:
                print(f"| {kind} | {eps:g} | {k} | {hits[k] / args.trials:.3f} | {np.mean(widths[k]):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
