"""Differential-privacy mechanisms: each knows its cost and accuracy before it runs; every draw is OpenDP's."""

from .accounting import epsilon_delta_to_rho, rho_to_epsilon
from .base import Mechanism
from .cost import ZERO, Cost
from .gaussian import Gaussian
from .laplace import LaplaceCount, LaplaceFloat
from .selection import ExponentialQuantile, NoisyTopK, candidate_grid
from .threshold import ThresholdCounts

__all__ = [
    "Cost",
    "ZERO",
    "Mechanism",
    "LaplaceCount",
    "LaplaceFloat",
    "Gaussian",
    "NoisyTopK",
    "ExponentialQuantile",
    "candidate_grid",
    "ThresholdCounts",
    "rho_to_epsilon",
    "epsilon_delta_to_rho",
]
