"""Gaussian noise on vote counts, drawn by OpenDP (never by numpy).

Votes are integers. Each count is scaled onto the grid ``2**-GRID_BITS`` (multiplied by ``2**GRID_BITS``,
exactly, as int64) and OpenDP's discrete Gaussian (CKS20) of scale ``sigma * 2**GRID_BITS`` is added to
every coordinate by one ``make_gaussian`` call on the flattened vector; dividing back gives each count plus
a discrete Gaussian on a grid of step ``2**-20`` with standard deviation ``sigma`` (to within 1e-12
relative). Such noise is, for the privacy analysis, *the* Gaussian mechanism: the discrete Gaussian of
scale s on integer inputs of L2 sensitivity Δ is (α, α·Δ²/(2s²))-RDP for every α ≥ 1, exactly the bound of
the continuous one (CKS20, Theorem 4), and rescaling both the input and the noise by 2**20 changes
nothing. `opendp_rho` reads that figure from OpenDP's own privacy map, so tests can check the PATE
accounting against it.

Why integers and not OpenDP's float Gaussian: the privacy map of the integer version is exact (no float
rounding slack), and it samples ~3x faster than the float version at its default granularity. The grid is
fine enough (2**-20 ≈ 1e-6, against σ of order 1–100 for PATE) that noisy counts tie with negligible
probability; ties are broken towards the lowest class index, a post-processing that costs nothing.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from mechanisms._opendp import check_scale, dp

__all__ = ["GRID_BITS", "noisy_counts", "opendp_rho", "check_sigma", "as_counts"]

GRID_BITS = 20
_GRID = 1 << GRID_BITS
# |count| < 2**40 and σ < 2**30: scaled counts and ~40σ of noise stay far inside int64
_MAX_COUNT = 1 << 40
_MAX_SIGMA = float(1 << 30)


def check_sigma(sigma: float, *, name: str = "sigma") -> float:
    """`sigma` as a float in (0, 2**30]; ValueError otherwise (bools and non-numbers too)."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number")
    s = float(sigma)
    if not (math.isfinite(s) and 0.0 < s <= _MAX_SIGMA):
        raise ValueError(f"{name} must be a positive finite number at most 2**30")
    return s


def as_counts(values: Any, *, name: str = "votes") -> np.ndarray:
    """`values` as an int64 array of non-negative counts below 2**40 (integral floats accepted)."""
    a = np.asarray(values)
    if a.dtype == np.bool_ or a.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be an array of integer counts")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.floor(a)):
            raise ValueError(f"{name} must hold integer counts")
    if a.size and (a.min() < 0 or a.max() >= _MAX_COUNT):
        raise ValueError(f"{name} must hold counts in [0, 2**40)")
    return a.astype(np.int64)


@lru_cache(maxsize=64)
def _measurement(sigma: float) -> Any:
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T=float)
    return dp.m.make_gaussian(*space, scale=check_scale(sigma * _GRID))


def noisy_counts(counts: Any, sigma: float) -> np.ndarray:
    """`counts` (any shape) plus independent Gaussian noise of std `sigma` on EVERY entry, as float64.

    One OpenDP call for the whole array. Nothing here can be seeded: OpenDP samples from a CSPRNG.
    """
    s = check_sigma(sigma)
    c = as_counts(counts, name="counts")
    if c.size == 0:
        return c.astype(np.float64)
    scaled = (c * _GRID).ravel().tolist()
    noisy = np.asarray(_measurement(s)(scaled), dtype=np.int64)
    if noisy.shape != (c.size,):  # defensive: OpenDP returns one value per input
        raise RuntimeError("OpenDP returned a vector of the wrong length")
    return (noisy / _GRID).reshape(c.shape)


def opendp_rho(*, sigma: float, l2_sensitivity: float) -> float:
    """ρ of `noisy_counts` at `sigma` for inputs at L2 distance `l2_sensitivity`, by OpenDP's privacy map.

    The measurement is ρ-zCDP, i.e. (α, ρ·α)-RDP for every α ≥ 1.
    """
    s = check_sigma(sigma)
    if not (math.isfinite(l2_sensitivity) and l2_sensitivity >= 0):
        raise ValueError("l2_sensitivity must be a finite number >= 0")
    return float(_measurement(s).map(float(l2_sensitivity) * _GRID))
