"""Membership-inference audits of trained classifiers: how much does a model reveal about who trained it?

A pure library (no HTTP, no database, no budget): it queries a model's class probabilities on its training
rows (members) and on held-out rows (non-members), runs black-box attacks, measures them at low
false-positive rates, and holds them against the ceiling that a claimed (ε, δ)-DP guarantee puts on any
attack. The facade is `run_audit`.

Modules: `data` (the inputs and their checks), `attacks` (loss threshold, Yeom et al. 2018; offline LiRA,
Carlini et al. 2022), `metrics` (ROC, AUC, TPR at FPR, Clopper–Pearson), `bounds` (the DP ceiling, Kairouz
et al. 2015; empirical ε lower bounds, Jagielski et al. 2020), `plots` (ROC and violin PNGs), `report`
(`run_audit`).
"""

from .attacks import AttackScores, lira_offline, logit_confidence, loss_threshold
from .bounds import FPR_LEVELS, ceiling_check, dp_ceiling, epsilon_lower_bound
from .data import MIN_ROWS, AuditData, InvalidAuditInput, Proba, TrainFn
from .metrics import ROC, attack_auc, clopper_pearson, roc_curve, tpr_at_fpr
from .report import run_audit

__all__ = [
    "FPR_LEVELS",
    "MIN_ROWS",
    "ROC",
    "AttackScores",
    "AuditData",
    "InvalidAuditInput",
    "Proba",
    "TrainFn",
    "attack_auc",
    "ceiling_check",
    "clopper_pearson",
    "dp_ceiling",
    "epsilon_lower_bound",
    "lira_offline",
    "logit_confidence",
    "loss_threshold",
    "roc_curve",
    "run_audit",
    "tpr_at_fpr",
]
