"""PATE done right: teachers on disjoint partitions by privacy unit, noisy argmax over every class's vote
(GNMax, Confident-GNMax) with OpenDP noise, and the data-independent RDP accounting converted to (ε, δ)
and charged before any teacher vote is used.

Modules: `partition` (teacher of each row, by keyed hash of its unit), `aggregate` (the aggregators),
`accounting` (RDP of the aggregators, RDP → (ε, δ), fitting queries or σ to a target ε), `plan` (a
plan fitted to (ε, δ), and `label_queries`, which charges it before asking the teachers). Training the
teacher and student models is not here.
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

__all__ = [
    "ABSTAIN",
    "DEFAULT_ORDERS",
    "ConfidentGNMax",
    "GNMax",
    "PATEPlan",
    "confident_gnmax_epsilon",
    "confident_gnmax_rdp",
    "confident_gnmax_rho",
    "gnmax_epsilon",
    "gnmax_rdp",
    "gnmax_rho",
    "label_queries",
    "max_confident_queries",
    "max_queries",
    "partition_units",
    "plan_confident_gnmax",
    "plan_gnmax",
    "rdp_to_epsilon",
    "sigma_for",
    "threshold_rdp",
    "vote_histogram",
]
