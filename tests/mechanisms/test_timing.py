"""Noise draws in constant time (`mechanisms._timing`): the time a release takes must not tell how large
its noise was. Statistical: the rank correlation between |noise| and the release's duration, with the
padding on, must be indistinguishable from 0 (|Spearman rho| below a bound that a true correlation of
the size measured without padding, +0.24 and more, exceeds by far at this sample size)."""
from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import spearmanr

from mechanisms import LaplaceCount, _timing


@pytest.fixture()
def padding():  # type: ignore[no-untyped-def]
    _timing.configure(base_s=0.002)
    yield
    _timing.configure(base_s=0)


def _durations(n: int) -> tuple[np.ndarray, np.ndarray]:
    mech = LaplaceCount(epsilon=Fraction(1, 100), sensitivity=1)
    noise, took = np.empty(n), np.empty(n)
    for i in range(n):
        t = time.perf_counter_ns()
        noise[i] = abs(mech.release([0])[0])
        took[i] = time.perf_counter_ns() - t
    return noise, took


def test_a_padded_release_takes_its_deadline_and_no_less(padding) -> None:  # type: ignore[no-untyped-def]
    mech = LaplaceCount(epsilon=Fraction(1), sensitivity=1)
    t = time.perf_counter()
    mech.release([0] * 100)
    assert time.perf_counter() - t >= _timing.deadline(100, kind="laplace_int") == pytest.approx(0.002 + 100 * 12e-6)


def test_padding_removes_the_correlation_of_time_and_noise(padding) -> None:  # type: ignore[no-untyped-def]
    before = _timing.overruns()
    noise, took = _durations(1500)
    rho = spearmanr(noise, took).statistic
    # under independence rho ~ N(0, 1/(n-1)): 4.5 sd = 0.116 (false-failure rate ~ 7e-6); unpadded draws
    # correlate at +0.24 to +0.31 (measured), far beyond. Overruns (a loaded machine) are excluded from
    # the claim: they are counted, and there must be few.
    assert abs(rho) < 4.5 / np.sqrt(len(noise) - 1)
    assert _timing.overruns() - before < 0.01 * len(noise)


def test_padding_can_be_turned_off_and_deadlines_are_checked() -> None:
    assert _timing.deadline(10, kind="laplace_int") == 0.0  # off in the test process (tests/conftest.py)
    with pytest.raises(ValueError):
        _timing.configure(base_s=-1)


@pytest.mark.parametrize("kind", sorted(_timing.PER_VALUE_S))
def test_every_mechanism_kind_draws_within_its_deadline(kind: str) -> None:
    """The per-value budgets are above what the draws cost (a 1,000-value draw, padding off)."""
    from mechanisms import Gaussian, LaplaceFloat, NoisyTopK, ThresholdCounts

    n = 1000
    draw = {
        "laplace_int": lambda: LaplaceCount(epsilon=Fraction(1), sensitivity=1).release([0] * n),
        "laplace_float": lambda: LaplaceFloat(epsilon=Fraction(1), sensitivity=1.0).release([0.0] * n),
        "gaussian_float": lambda: Gaussian(rho=Fraction(1, 10), sensitivity=1.0).release([0.0] * n),
        "gaussian_int": lambda: Gaussian(rho=Fraction(1, 10), sensitivity=1.0, integer=True).release([0] * n),
        "noisy_max": lambda: NoisyTopK(epsilon=Fraction(1), sensitivity=1, k=1, monotonic=True).release([0] * n),
        "threshold": lambda: ThresholdCounts(epsilon=Fraction(1), delta=Fraction(1, 10**6), max_partitions=1,
                                             max_rows=1).release({str(i): 50 for i in range(n)}),
    }[kind]  # fmt: skip
    draw()  # warm
    took = min(_time(draw) for _ in range(3))  # the machine is shared: the best of three
    assert took < 0.002 + _timing.PER_VALUE_S[kind] * n, (kind, took)


def _time(f) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    f()
    return time.perf_counter() - t
