"""`run_audit`: query the target, run the attacks, measure them, hold them against the claimed (ε, δ).

The report is a JSON-ready dict (plain floats, ints, bools, strings, lists and dicts; no NaN):

* ``attacks[name]``: ``attack_auc``; ``tpr_at_fpr`` at FPR 0.001 and 0.01 (largest TPR among thresholds
  with FPR <= the level) with ``fpr_resolution`` = 1/n_nonmembers and ``fpr_resolvable`` per level (False
  when fewer than one false positive fits in the level: the TPR is then at FPR 0); ``roc`` (<= 200 points);
  ``recognition_rate`` (Wang & Tsai 2022: the attack's membership probability on the training records —
  reported for members *and* non-members, mean, median and quantiles, since the members' figure means
  nothing alone); ``epsilon_lower_bound`` (at the claimed δ, 0 when none) and its
  ``epsilon_lower_bound_detail`` (`bounds`); ``info``.
* ``ceiling`` (None without ε): the DP ceiling at each level and, per attack and level, the measured rates,
  their Clopper–Pearson bounds and ``exceeds_ceiling`` (`bounds.ceiling_check`); ``any_exceeds``.
* ``model`` ({epsilon, delta} as claimed), ``counts`` (members, nonmembers, population), ``plots`` (file
  names written into `plots_dir`).

This is an attack, not a release: nothing is charged to a budget and no noise is drawn. Nothing here logs
or prints; the report holds aggregates of scores only.
"""

from __future__ import annotations

import math
from numbers import Real
from pathlib import Path
from typing import Any

from .attacks import AttackScores, lira_offline, loss_threshold
from .bounds import FPR_LEVELS, ceiling_check, dp_ceiling, epsilon_lower_bound
from .data import AuditData, InvalidAuditInput, Proba, TrainFn, check_proba, validate_data
from .metrics import ROC, attack_auc, downsample_roc, roc_curve, summarize, tpr_at_fpr
from .plots import write_plots

__all__ = ["run_audit"]


def _key(level: float) -> str:
    return f"{level:g}"


def _privacy(epsilon: float | None, delta: float | None) -> None:
    if epsilon is not None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, Real) or not math.isfinite(epsilon) or epsilon < 0:
            raise InvalidAuditInput("epsilon must be a finite number >= 0", field="epsilon")
    if delta is not None:
        if isinstance(delta, bool) or not isinstance(delta, Real) or not 0 <= delta < 1:
            raise InvalidAuditInput("delta must lie in [0, 1)", field="delta")


def _attack_entry(attack: AttackScores, roc: ROC, *, delta: float) -> dict[str, Any]:
    n_non = roc.n_nonmembers
    bound = epsilon_lower_bound(roc, delta=delta)
    return {
        "attack_auc": attack_auc(attack.members, attack.nonmembers),
        "tpr_at_fpr": {_key(a): tpr_at_fpr(roc, a) for a in FPR_LEVELS},
        "fpr_resolution": 1.0 / n_non,
        "fpr_resolvable": {_key(a): bool(a * n_non >= 1) for a in FPR_LEVELS},
        "roc": downsample_roc(roc),
        "recognition_rate": {
            "members": summarize(attack.members_probability),
            "nonmembers": summarize(attack.nonmembers_probability),
        },
        "epsilon_lower_bound": bound["epsilon_lower_bound"],
        "epsilon_lower_bound_detail": bound,
        "info": attack.info,
    }


def run_audit(
    target: Proba,
    data: AuditData,
    *,
    train_reference: TrainFn | None,
    epsilon: float | None,
    delta: float | None,
    n_reference: int = 4,
    seed: int = 0,
    plots_dir: Path | None = None,
    title: str = "",
) -> dict[str, Any]:
    """Audit `target` (a ``predict_proba``) for membership leakage on `data`; the report (module doc).

    Runs the loss-threshold attack always and offline LiRA with `n_reference` reference models when
    `train_reference` is given (`attacks`). With `epsilon` (and `delta`, 0 when None) the attacks are held
    against the (ε, δ)-DP ceiling (`bounds`). With `plots_dir`, writes ``roc.png`` and ``violin.png``
    there. Randomness comes from ``numpy.random.default_rng(seed)``. Raises `InvalidAuditInput` (a
    ValueError) on malformed inputs.
    """
    _privacy(epsilon, delta)
    data = validate_data(data, need_population=train_reference is not None)
    proba_m = check_proba(target(data.x_members), data.y_members, "target(x_members)")
    proba_n = check_proba(
        target(data.x_nonmembers), data.y_nonmembers, "target(x_nonmembers)", n_classes=proba_m.shape[1]
    )

    attacks = [loss_threshold(proba_m, data.y_members, proba_n, data.y_nonmembers)]
    if train_reference is not None:
        attacks.append(
            lira_offline(data, proba_m, proba_n, train_reference=train_reference, n_reference=n_reference, seed=seed)
        )
    rocs = [(a, roc_curve(a.members, a.nonmembers)) for a in attacks]

    d = float(delta) if delta is not None else 0.0
    ceiling: dict[str, Any] | None = None
    if epsilon is not None:
        checks = {
            a.name: {_key(level): ceiling_check(roc, level, epsilon=float(epsilon), delta=d) for level in FPR_LEVELS}
            for a, roc in rocs
        }
        ceiling = {
            "epsilon": float(epsilon),
            "delta": d,
            "at_fpr": {_key(level): float(dp_ceiling(level, epsilon=float(epsilon), delta=d)) for level in FPR_LEVELS},
            "attacks": checks,
            "any_exceeds": any(c["exceeds_ceiling"] for per in checks.values() for c in per.values()),
        }

    plots = write_plots(plots_dir, rocs, epsilon=epsilon, delta=delta, title=title) if plots_dir is not None else []
    return {
        "attacks": {a.name: _attack_entry(a, roc, delta=d) for a, roc in rocs},
        "ceiling": ceiling,
        "model": {
            "epsilon": None if epsilon is None else float(epsilon),
            "delta": None if delta is None else float(delta),
        },
        "counts": {
            "members": int(len(data.y_members)),
            "nonmembers": int(len(data.y_nonmembers)),
            "population": int(len(data.y_population)),
        },
        "plots": plots,
    }
