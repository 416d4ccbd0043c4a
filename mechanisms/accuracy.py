"""Confidence half-widths of the noise, known before any data is seen.

Each function returns the half-width `a` of the (1 - alpha) interval of one noise draw, ``P(|X| <= a) >=
1 - alpha``, for the distribution named. `alpha` follows OpenDP's accuracy helpers
(`dp.laplacian_scale_to_accuracy` and friends), but the discrete Laplace half-width here is the smallest
integer that covers, not OpenDP's real-valued bound.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["discrete_laplace_ci", "laplace_ci", "gaussian_ci", "discrete_laplace_tail"]


def _check(scale: float, alpha: float) -> None:
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError("scale must be finite and >= 0")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")


def discrete_laplace_tail(m: int, scale: float) -> float:
    """``P(|X| >= m)`` for the discrete Laplace with ``P(X = x) ∝ exp(-|x| / scale)``.

    For m >= 1 it is ``2 exp(-m/t) / (1 + exp(-1/t))`` (t = scale): the two geometric tails over their
    normaliser ``(1 - e^{-1/t}) / (1 + e^{-1/t})``.
    """
    if m <= 0:
        return 1.0
    if scale == 0:
        return 0.0
    return math.exp(math.log(2.0) - m / scale - math.log1p(math.exp(-1.0 / scale)))


def discrete_laplace_ci(scale: float, alpha: float = 0.05) -> float:
    """Smallest integer m with ``P(|X| <= m) >= 1 - alpha`` for the discrete Laplace(scale)."""
    _check(scale, alpha)
    if scale == 0:
        return 0.0
    # closed form, then settle float rounding against the tail itself
    bound = scale * (math.log(2.0 / alpha) - math.log1p(math.exp(-1.0 / scale)))
    m = max(0, math.ceil(bound) - 1)
    while m > 0 and discrete_laplace_tail(m, scale) <= alpha:
        m -= 1
    while discrete_laplace_tail(m + 1, scale) > alpha:
        m += 1
    return float(m)


def laplace_ci(scale: float, alpha: float = 0.05) -> float:
    """``scale * ln(1/alpha)``: the continuous Laplace has ``P(|X| > a) = exp(-a / scale)``."""
    _check(scale, alpha)
    return scale * math.log(1.0 / alpha)


def gaussian_ci(scale: float, alpha: float = 0.05) -> float:
    """``z_{1 - alpha/2} * scale`` (1.959963985 * scale at alpha = 0.05) for N(0, scale²)."""
    _check(scale, alpha)
    return NormalDist().inv_cdf(1.0 - alpha / 2.0) * scale
