"""Unit tests: confidence half-widths against brute force and against OpenDP's accuracy helpers."""

from __future__ import annotations

import math

import pytest

from mechanisms._opendp import dp
from mechanisms.accuracy import discrete_laplace_ci, discrete_laplace_tail, gaussian_ci, laplace_ci


def _pmf(x: int, t: float) -> float:
    return (1 - math.exp(-1 / t)) / (1 + math.exp(-1 / t)) * math.exp(-abs(x) / t)


@pytest.mark.parametrize("t", [0.05, 0.3, 1.0, 2.0, 3.0, 7.5, 30.0, 123.4])
def test_discrete_laplace_ci_is_smallest_covering_integer(t: float) -> None:
    m = int(discrete_laplace_ci(t))
    covered = sum(_pmf(x, t) for x in range(-m, m + 1))
    assert covered >= 0.95 - 1e-12
    if m > 0:
        assert sum(_pmf(x, t) for x in range(-(m - 1), m)) < 0.95
    # the tail formula agrees with the pmf
    assert discrete_laplace_tail(m + 1, t) == pytest.approx(1 - covered, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("t", [0.3, 1.0, 3.0, 30.0, 1e4])
def test_discrete_laplace_ci_matches_opendp(t: float) -> None:
    # OpenDP's real-valued accuracy a has P(|X| >= a) = alpha; the smallest covering integer is ceil(a) - 1
    a = dp.discrete_laplacian_scale_to_accuracy(scale=t, alpha=0.05)
    assert discrete_laplace_ci(t) == max(0, math.ceil(a) - 1)


def test_continuous_helpers_match_opendp() -> None:
    assert laplace_ci(3.0) == pytest.approx(dp.laplacian_scale_to_accuracy(scale=3.0, alpha=0.05))
    assert laplace_ci(3.0) == pytest.approx(3.0 * math.log(20))
    assert gaussian_ci(3.0) == pytest.approx(1.959963985 * 3.0)
    assert gaussian_ci(3.0) == pytest.approx(dp.gaussian_scale_to_accuracy(scale=3.0, alpha=0.05))


def test_zero_scale_and_bad_input() -> None:
    assert discrete_laplace_ci(0.0) == 0.0
    for bad_scale in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            laplace_ci(bad_scale)
    with pytest.raises(ValueError):
        gaussian_ci(1.0, alpha=0.0)
