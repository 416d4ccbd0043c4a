"""PATE done right: teachers on disjoint partitions by privacy unit, noisy argmax over every class's vote
(GNMax, Confident-GNMax) with OpenDP noise, and the data-independent RDP accounting converted to (ε, δ)
and charged before any teacher vote is used.

Modules: `partition` (teacher of each row, by keyed hash of its unit), `aggregate` (the aggregators),
`accounting` (RDP of the aggregators, RDP → (ε, δ), fitting queries or σ to a target ε), `plan` (a
plan fitted to (ε, δ), and `label_queries`, which charges it before asking the teachers), `teachers`
(`train_pate`: teachers, noisy labels and the student end to end, with default non-private fits).
"""

from .accounting import (
    DEFAULT_ORDERS,
    confident_gnmax_epsilon,
    confident_gnmax_rdp,
    confident_gnmax_rho,
    gnmax_epsilon,
    gnmax_rdp,
    gnmax_rho,
    max_confident_queries,
    max_queries,
    rdp_to_epsilon,
    sigma_for,
    threshold_rdp,
)
from .aggregate import ABSTAIN, ConfidentGNMax, GNMax, vote_histogram
from .partition import partition_units
from .plan import PATEPlan, label_queries, plan_confident_gnmax, plan_gnmax
from .teachers import EMPTY_VOTE, MIN_LABELLED, Fit, PATEResult, Predict, logreg_fit, mlp_fit, train_pate

__all__ = [
    "ABSTAIN",
    "DEFAULT_ORDERS",
    "EMPTY_VOTE",
    "MIN_LABELLED",
    "ConfidentGNMax",
    "Fit",
    "GNMax",
    "PATEPlan",
    "PATEResult",
    "Predict",
    "confident_gnmax_epsilon",
    "confident_gnmax_rdp",
    "confident_gnmax_rho",
    "gnmax_epsilon",
    "gnmax_rdp",
    "gnmax_rho",
    "label_queries",
    "logreg_fit",
    "max_confident_queries",
    "max_queries",
    "mlp_fit",
    "partition_units",
    "plan_confident_gnmax",
    "plan_gnmax",
    "rdp_to_epsilon",
    "sigma_for",
    "threshold_rdp",
    "train_pate",
    "vote_histogram",
]
