"""Membership-inference attacks: each turns a model's outputs into a score per target record.

Two attacks, both black-box (they read class probabilities only):

* ``loss_threshold`` — Yeom, Giacomelli, Fredrikson & Jha 2018 ("Privacy risk in machine learning:
  analyzing the connection to overfitting"): score = -cross-entropy loss of the true label = log p_y.
  A record the model fits better than usual is called a member. Its membership probability for the
  recognition rate is p_y itself: monotone in the score and fixed in advance (no calibration on the data).
* ``lira_offline`` — offline LiRA, Carlini, Chien, Nasr, Song, Terzis & Tramèr 2022 ("Membership
  inference attacks from first principles", §IV-C). Reference models are trained with the target's recipe
  on random subsets of the population, so every target record (member or not) is OUT for all of them.
  For each target record the statistic φ = log(p_y / (1 - p_y)) (the logit-scaled confidence, computed
  as log p_y - log Σ_{y'≠y} p_y' for stability, probabilities floored at 1e-12) of the references is fit
  by a Gaussian N(μ_out, σ²_out); the membership probability is the one-sided test
  Λ = 1 - Pr[Z > φ_target] = Φ((φ_target - μ_out)/σ_out). With fewer than 64 references the variance is
  pooled over all target records (the paper's "global variance", which it prefers when reference models
  are few: a per-record variance from a handful of models is noise; the cut-off 64 is our choice). The
  decision score is the z-value (φ_target - μ_out)/σ_out, which orders records as Λ does without Φ's
  saturation at 1 in floating point.

  Why offline LiRA rather than RMIA (Zarifzadeh et al. 2024): both work with OUT references only, and
  RMIA is reported stronger with very few references. But offline RMIA needs a per-dataset constant `a`
  (to guess IN behaviour from OUT models) and a second sample of population points for its pairwise
  ratios; offline LiRA has no such knob, and its per-record z-value is simple to check against an
  independent computation (tests/audit_mia).

  Reference training sets have min(n_members, n_population // 2) rows: the target's training-set size
  when the population allows (a reference should generalise like the target), never more than half of
  the population (so that references differ from one another).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from .data import AuditData, InvalidAuditInput, TrainFn, check_proba

__all__ = [
    "GLOBAL_VARIANCE_BELOW",
    "PROB_FLOOR",
    "AttackScores",
    "lira_offline",
    "logit_confidence",
    "loss_threshold",
    "true_class_probability",
]

#: Probabilities are floored here before taking logs (φ then lies in about ±27.6).
PROB_FLOOR = 1e-12
#: Fewer references than this: one pooled variance (per-record variances need many references).
GLOBAL_VARIANCE_BELOW = 64
# a spread below this counts as none: identical reference statistics give z = 0, not 0/0
_SIGMA_FLOOR = 1e-9
# deviations from the reference mean below this (relative) are float rounding of the mean, not signal
_ROUNDING = 1e-12
_MAX_REFERENCES = 1024


@dataclass(frozen=True)
class AttackScores:
    """One attack's output on the audit's members and non-members.

    `members`/`nonmembers`: the decision statistic (higher = more likely a member), for the ROC.
    `members_probability`/`nonmembers_probability`: the membership score in [0, 1] (Wang & Tsai's
    recognition rate is its distribution over the members), monotone in the statistic. `info`: JSON-ready
    facts about how the attack ran (never data values).
    """

    name: str
    members: np.ndarray
    nonmembers: np.ndarray
    members_probability: np.ndarray
    nonmembers_probability: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def true_class_probability(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """p_y: each row's probability of its own label."""
    return proba[np.arange(len(y)), y]


def logit_confidence(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """φ = log p_y - log Σ_{y'≠y} p_y' (= log(p_y/(1 - p_y))), each probability mass floored at `PROB_FLOOR`.

    Summing the other classes, not 1 - p_y, keeps the digits when p_y is within 1e-16 of 1.
    """
    p_y = true_class_probability(proba, y)
    mask = np.ones_like(proba, dtype=bool)
    mask[np.arange(len(y)), y] = False
    others = np.where(mask, proba, 0.0).sum(axis=1)
    return np.log(np.maximum(p_y, PROB_FLOOR)) - np.log(np.maximum(others, PROB_FLOOR))


def loss_threshold(
    proba_members: np.ndarray, y_members: np.ndarray, proba_nonmembers: np.ndarray, y_nonmembers: np.ndarray
) -> AttackScores:
    """Yeom et al. 2018: score = log p_y (minus the cross-entropy loss); membership probability = p_y."""
    p_m = true_class_probability(proba_members, y_members)
    p_n = true_class_probability(proba_nonmembers, y_nonmembers)
    tiny = np.finfo(np.float64).tiny
    return AttackScores(
        name="loss_threshold",
        members=np.log(np.maximum(p_m, tiny)),
        nonmembers=np.log(np.maximum(p_n, tiny)),
        members_probability=p_m,
        nonmembers_probability=p_n,
        info={
            "reference": "Yeom et al. 2018",
            "score": "-cross_entropy(p, y) = log p_y",
            "membership_probability": "p_y (the target's confidence in the true label)",
        },
    )


def lira_offline(
    data: AuditData,
    proba_members: np.ndarray,
    proba_nonmembers: np.ndarray,
    *,
    train_reference: TrainFn,
    n_reference: int = 4,
    seed: int = 0,
    global_variance: bool | None = None,
) -> AttackScores:
    """Offline LiRA (Carlini et al. 2022) with `n_reference` reference models trained on the population.

    `data` must have passed `validate_data`; `proba_*` are the target's checked probabilities on the members
    and non-members. `global_variance`: pool the variance over records (None: when n_reference < 64).
    Randomness (the references' subsets and seeds) comes from ``numpy.random.default_rng(seed)``.
    """
    if isinstance(n_reference, bool) or not isinstance(n_reference, int | np.integer):
        raise InvalidAuditInput("n_reference must be an integer", field="n_reference")
    if not 2 <= n_reference <= _MAX_REFERENCES:
        raise InvalidAuditInput(f"n_reference must lie in [2, {_MAX_REFERENCES}]", field="n_reference")
    pooled = n_reference < GLOBAL_VARIANCE_BELOW if global_variance is None else bool(global_variance)
    n_classes = proba_members.shape[1]
    x_targets = np.concatenate([data.x_members, data.x_nonmembers])
    y_targets = np.concatenate([data.y_members, data.y_nonmembers])
    n_pop = len(data.y_population)
    size = max(1, min(len(data.y_members), n_pop // 2))

    rng = np.random.default_rng(seed)
    phi_ref = np.empty((n_reference, len(y_targets)))
    for r in range(n_reference):
        subset = np.sort(rng.choice(n_pop, size=size, replace=False))
        model_seed = int(rng.integers(2**31 - 1))
        model = train_reference(data.x_population[subset], data.y_population[subset], model_seed)
        proba = check_proba(model(x_targets), y_targets, f"reference[{r}](targets)", n_classes=n_classes)
        phi_ref[r] = logit_confidence(proba, y_targets)

    mu = phi_ref.mean(axis=0)
    var = phi_ref.var(axis=0, ddof=1)
    if pooled:
        var = np.full_like(var, var.mean())
    sigma = np.maximum(np.sqrt(var), _SIGMA_FLOOR)
    phi_target = np.r_[
        logit_confidence(proba_members, data.y_members), logit_confidence(proba_nonmembers, data.y_nonmembers)
    ]
    deviation = phi_target - mu
    deviation[np.abs(deviation) <= _ROUNDING * (1 + np.abs(mu))] = 0.0
    z = deviation / sigma
    prob = stats.norm.cdf(z)
    n_m = len(data.y_members)
    return AttackScores(
        name="lira_offline",
        members=z[:n_m],
        nonmembers=z[n_m:],
        members_probability=prob[:n_m],
        nonmembers_probability=prob[n_m:],
        info={
            "reference": "Carlini et al. 2022, offline LiRA",
            "score": "(phi - mu_out) / sigma_out, phi = log(p_y / (1 - p_y))",
            "membership_probability": "Phi((phi - mu_out) / sigma_out), one-sided",
            "n_reference": n_reference,
            "reference_train_size": int(size),
            "variance": "global" if pooled else "per_example",
        },
    )
