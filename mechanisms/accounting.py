"""Conversions between zero-concentrated DP (ρ) and approximate DP (ε, δ).

ρ-zCDP implies (ε, δ)-DP for every δ > 0. The textbook bound is ε = ρ + 2·sqrt(ρ·ln(1/δ)) (BS16,
Proposition 1.3); OpenDP's ``make_zCDP_to_approxDP`` computes the tighter conversion of CKS20
(Proposition 12 / Corollary 13), which is what `rho_to_epsilon` returns, never above the textbook bound.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Any

from ._opendp import dp, float_at_most
from .base import positive_fraction
from .cost import to_fraction

__all__ = ["rho_to_epsilon", "epsilon_delta_to_rho", "textbook_rho_to_epsilon"]

# significant digits kept when epsilon_delta_to_rho rounds its answer down to a readable Fraction
_RHO_DIGITS = 12


def _delta(delta: Any) -> Fraction:
    d = to_fraction(delta, name="delta")
    if not 0 < d < 1:
        raise ValueError("delta must be in (0, 1) to convert zCDP to (ε, δ)")
    return d


def textbook_rho_to_epsilon(rho: Fraction | float, delta: Fraction | float) -> float:
    """ε = ρ + 2·sqrt(ρ·ln(1/δ)) (BS16). Looser than `rho_to_epsilon`; for reference and tests."""
    r = float(rho)
    return r + 2.0 * math.sqrt(r * math.log(1.0 / float(delta)))


def rho_to_epsilon(rho: Fraction | float | int | str, delta: Fraction | float | int | str) -> float:
    """The ε at which ρ-zCDP gives (ε, δ)-DP, by OpenDP's conversion (rounded conservatively).

    OpenDP converts a measurement's privacy map, so the conversion is run on a Gaussian measurement
    whose ρ is at least the given one: the answer can only be larger than exact, never smaller.
    """
    r = to_fraction(rho, name="rho")
    if r < 0:
        raise ValueError("rho must be >= 0")
    d = _delta(delta)
    if r == 0:
        return 0.0
    return _rho_to_epsilon(r, d)


@lru_cache(maxsize=4096)
def _rho_to_epsilon(rho: Fraction, delta: Fraction) -> float:
    # a Gaussian with scale 1 and L2 sensitivity d has ρ = d²/2; pick d so that OpenDP's ρ >= rho
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float)
    measurement = dp.m.make_gaussian(*space, scale=1.0)
    d_in = math.sqrt(2.0 * float(rho))
    while Fraction(measurement.map(d_in)) < rho:
        d_in = math.nextafter(d_in, math.inf)
    profile = dp.c.make_zCDP_to_approxDP(measurement).map(d_in)
    # OpenDP's ε(δ) decreases in δ: hand it a float δ no larger than the exact one
    return float(profile.epsilon(float_at_most(delta)))


def epsilon_delta_to_rho(epsilon: Fraction | float | int | str, delta: Fraction | float | int | str) -> Fraction:
    """The largest ρ (to 12 significant digits, rounded down) with ``rho_to_epsilon(ρ, δ) <= ε``.

    A binary search over OpenDP's conversion, bracketed by the textbook bound (whose inverse
    ``(sqrt(L + ε) - sqrt(L))²`` with L = ln(1/δ) is always feasible).
    """
    e = positive_fraction(epsilon, name="epsilon")
    d = _delta(delta)
    return _epsilon_delta_to_rho(e, d)


def _fits(rho: float | Fraction, epsilon: Fraction, delta: Fraction) -> bool:
    return Fraction(_rho_to_epsilon(Fraction(rho), delta)) <= epsilon


@lru_cache(maxsize=1024)
def _epsilon_delta_to_rho(epsilon: Fraction, delta: Fraction) -> Fraction:
    log_inv_delta = -math.log(float(delta))
    eps = float(epsilon)
    lo = (math.sqrt(log_inv_delta + eps) - math.sqrt(log_inv_delta)) ** 2
    lo = math.nextafter(lo, 0.0)
    while lo > 0 and not _fits(lo, epsilon, delta):
        lo /= 2.0
    if lo <= 0:
        raise ValueError("no positive rho fits within this (epsilon, delta)")
    hi = max(eps, 2.0 * lo)
    while _fits(hi, epsilon, delta):
        lo, hi = hi, hi * 2.0
    # relative precision 1e-13 is finer than the 12 digits kept
    while hi - lo > lo * 1e-13:
        mid = (lo + hi) / 2.0
        if _fits(mid, epsilon, delta):
            lo = mid
        else:
            hi = mid
    exact = Fraction(lo)
    # round down to 12 significant digits: smaller ρ converts to smaller ε, so it still fits
    shift = math.floor(math.log10(lo)) - _RHO_DIGITS + 1
    unit = Fraction(10) ** shift
    rounded = math.floor(exact / unit) * unit
    return rounded if rounded > 0 and _fits(rounded, epsilon, delta) else exact
