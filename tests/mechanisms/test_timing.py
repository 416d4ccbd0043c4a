"""Noise draws in constant time (`mechanisms._timing`): a release's time is fixed by public inputs.

Deterministic: the clock `padded` reads and the sleep it calls are replaced by a fake clock, so these
tests assert what the padding *decides* (when it sleeps until, what it counts), never how long anything
took here. The measurements — the rank correlation of |noise| and of the number of hidden groups with
the response time, the per-value cost of each mechanism — are in bench/timing.py (STYLE.md §14).
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest

from mechanisms import Gaussian, LaplaceCount, LaplaceFloat, NoisyTopK, ThresholdCounts, _timing, threshold
from mechanisms.selection import ExponentialQuantile

BASE = 0.002


class FakeClock:
    """`time.perf_counter` and `time.sleep` for `mechanisms._timing`: time moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock()
    # only _timing's view of the clock (its module-level name `time`), not the process's
    monkeypatch.setattr(_timing, "time", SimpleNamespace(perf_counter=fake.perf_counter, sleep=fake.sleep))
    saved = _timing.settings()
    _timing.configure(base_s=BASE)
    yield fake
    _timing.configure(base_s=saved[0], scale=saved[1])


def test_padded_sleeps_until_exactly_start_plus_deadline(clock: FakeClock) -> None:
    limit = _timing.deadline(100, kind="laplace_int")
    assert limit == pytest.approx(BASE + 100 * _timing.PER_VALUE_S["laplace_int"])
    for took in (0.0, 0.0001, 0.5 * limit, limit - 1e-9):  # however long the draw takes, within the deadline
        start = clock.now

        def draw(took: float = took) -> str:
            clock.now += took
            return "out"

        before = _timing.overruns()
        assert _timing.padded(draw, values=100, kind="laplace_int") == "out"
        assert clock.now == pytest.approx(start + limit)
        assert _timing.overruns() == before


def test_an_overrun_is_counted_and_not_slept(clock: FakeClock) -> None:
    limit = _timing.deadline(10, kind="noisy_max")
    before = _timing.overruns()
    start = clock.now

    def slow() -> int:
        clock.now += limit + 0.01
        return 1

    assert _timing.padded(slow, values=10, kind="noisy_max") == 1
    assert _timing.overruns() == before + 1
    assert clock.now == start + limit + 0.01 and not clock.sleeps


def test_a_draw_that_raises_is_padded_too(clock: FakeClock) -> None:
    start = clock.now

    def fails() -> None:
        clock.now += 0.0001
        raise ValueError("a caller bug")

    with pytest.raises(ValueError):
        _timing.padded(fails, values=3, kind="laplace_float")
    assert clock.now == pytest.approx(start + _timing.deadline(3, kind="laplace_float"))


def test_deadline_is_a_function_of_values_and_kind_only(clock: FakeClock) -> None:
    assert list(inspect.signature(_timing.deadline).parameters) == ["values", "kind"]
    for kind, per_value in _timing.PER_VALUE_S.items():
        for values in (0, 1, 1000):
            assert _timing.deadline(values, kind=kind) == pytest.approx(BASE + per_value * values)
    _timing.configure(base_s=0.01, scale=2.0)
    assert _timing.deadline(5, kind="threshold") == pytest.approx(0.01 + 2.0 * 5 * _timing.PER_VALUE_S["threshold"])
    with pytest.raises(KeyError):
        _timing.deadline(1, kind="no such mechanism")


def _threshold(**kwargs: int) -> ThresholdCounts:
    return ThresholdCounts(epsilon=Fraction(1), delta=Fraction(1, 10**6), max_partitions=1, max_rows=1, **kwargs)


@pytest.mark.parametrize("n_keys", [0, 1, 5000])
def test_threshold_release_takes_the_deadline_of_its_cap_whatever_the_keys(clock: FakeClock, n_keys: int) -> None:
    m = _threshold(max_candidates=10_000)
    start = clock.now
    out = m.release({f"k{i}": 0 for i in range(n_keys)})
    assert all(v >= m.threshold for v in out.values())
    expected = BASE + _timing.PER_VALUE_S["threshold"] * 10_000
    assert clock.now == pytest.approx(start + expected)
    assert clock.sleeps == [pytest.approx(expected)]  # the fake clock does not move in the draw


def test_threshold_candidates_beyond_the_cap_still_release_and_an_overrun_is_counted(clock: FakeClock) -> None:
    m = _threshold(max_candidates=2)
    limit = _timing.deadline(2, kind="threshold")
    before = _timing.overruns()

    def pairs() -> Iterator[tuple[str, int]]:  # read inside the padded step; a slow engine row each
        for i in range(5):
            clock.now += limit / 3
            yield f"k{i}", 1000 if i == 4 else 0

    out = m.release(pairs())
    assert set(out) == {"k4"}  # every candidate reached OpenDP: no truncation to the cap
    assert _timing.overruns() == before + 1 and not clock.sleeps


def test_threshold_candidates_and_the_callers_clean_up_run_inside_the_padded_step(clock: FakeClock) -> None:
    """The gateway hands the engine's rows as a generator and drops the unreleased cells in `then`:
    both take time that grows with the hidden groups, and both must end before the deadline's sleep."""
    m = _threshold(max_candidates=100)
    start, limit = clock.now, _timing.deadline(100, kind="threshold")
    seen: list[dict[str, int]] = []

    def pairs() -> Iterator[tuple[str, int]]:
        for i in range(40):
            clock.now += limit / 200  # an engine row
            yield f"k{i}", 1000 if i < 2 else 0

    def then(released: dict[str, int]) -> None:
        clock.now += limit / 10  # freeing 38 hidden cells
        seen.append(released)

    out = m.release(pairs(), then=then)
    assert set(out) == {"k0", "k1"} and seen == [out]
    assert clock.now == pytest.approx(start + limit) and len(clock.sleeps) == 1


def test_threshold_keys_come_back_as_the_caller_keyed_them() -> None:
    m = _threshold()
    cells = {("a", 1): 1000, ("b", None): 1000, ("c", 2): 0}
    out = m.release(cells.items(), key=repr)
    assert set(out) == {("a", 1), ("b", None)} and all(isinstance(v, int) for v in out.values())
    merged = m.release([(("x",), 600), (("x", ""), 600)], key=lambda c: c[0])  # one string: one key
    assert list(merged) == [("x",)] and merged[("x",)] > 1100  # 1200 + noise of scale 1


def test_threshold_cap_comes_from_configure_when_not_given() -> None:
    assert threshold.MAX_CANDIDATES == 10_000
    saved = threshold.default_max_candidates()
    try:
        threshold.configure(max_candidates=123)
        assert _threshold().max_candidates == 123
        assert _threshold(max_candidates=7).max_candidates == 7
        with pytest.raises(ValueError):
            threshold.configure(max_candidates=0)
    finally:
        threshold.configure(max_candidates=saved)


def test_threshold_cap_is_read_from_the_settings(tmp_path: Path) -> None:
    from gateway.core import Gateway
    from gateway.settings import Settings, load_settings

    assert Settings.model_fields["threshold_max_groups"].default == threshold.MAX_CANDIDATES
    with pytest.raises(ValueError):
        Settings(threshold_max_groups=0)
    saved = threshold.default_max_candidates()
    try:
        gw = Gateway.from_settings(load_settings(data_dir=tmp_path, threshold_max_groups=50), demo=False)
        assert threshold.default_max_candidates() == 50 and _threshold().max_candidates == 50
        gw.engine.close()
    finally:
        threshold.configure(max_candidates=saved)


def test_a_threshold_query_pads_to_the_cap_whatever_the_groups_its_data_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import make_gateway

    calls: list[tuple[int, str, int]] = []
    real = threshold.padded

    def recorded(draw, *, values: int, kind: str):  # type: ignore[no-untyped-def]
        out = real(draw, values=values, kind=kind)
        calls.append((values, kind, len(out)))
        return out

    monkeypatch.setattr(threshold, "padded", recorded)
    gw = make_gateway()
    for where in ("", "WHERE city = 'rare'", "WHERE city = 'no such city'"):  # 9, 1 and 0 candidate groups
        # ε = 5: each of the 9 cities (146-159 units) passes the threshold; at ε = 1 as few as 1 of 9 may
        gw.query("bank", f"SELECT city, COUNT(*) FROM tx {where} GROUP BY city", epsilon=5, delta=1e-6)
    assert [(v, k) for v, k, _ in calls] == [(threshold.default_max_candidates(), "threshold")] * 3
    assert calls[0][2] > 1 and calls[2][2] == 0


MECHANISMS = {
    "laplace_int": (lambda: LaplaceCount(epsilon=Fraction(1), sensitivity=1), lambda m, n: m.release([0] * n)),
    "laplace_float": (lambda: LaplaceFloat(epsilon=Fraction(1), sensitivity=1.0), lambda m, n: m.release([0.0] * n)),
    "gaussian_float": (lambda: Gaussian(rho=Fraction(1, 10), sensitivity=1.0), lambda m, n: m.release([0.0] * n)),
    "gaussian_int": (lambda: Gaussian(rho=Fraction(1, 10), sensitivity=1.0, integer=True), lambda m, n: m.release([0] * n)),
    "noisy_max": (lambda: NoisyTopK(epsilon=Fraction(1), sensitivity=1, k=1, monotonic=True), lambda m, n: m.release([0] * n)),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(MECHANISMS))
def test_every_vector_mechanism_pads_to_the_length_it_releases(clock: FakeClock, kind: str) -> None:
    """The vector mechanisms' `values` is the length of the vector they are given: the plan fixes it
    (public GROUP BY cells, or the cells threshold selection already released)."""
    make, draw = MECHANISMS[kind]
    m = make()
    for n in (1, 40):
        start = clock.now
        draw(m, n)
        assert clock.now == pytest.approx(start + _timing.deadline(n, kind=kind))


def test_the_exponential_quantile_pads_to_its_public_grid(clock: FakeClock) -> None:
    grid = [float(i) for i in range(16)]
    q = ExponentialQuantile(epsilon=Fraction(1), alpha=Fraction(1, 2), candidates=grid, max_rows=1)
    start = clock.now
    q.release([3.0] * 500)  # the data's size does not enter: 16 candidates
    assert clock.now == pytest.approx(start + _timing.deadline(16, kind="noisy_max"))


def test_padding_can_be_turned_off_and_deadlines_are_checked() -> None:
    assert _timing.deadline(10, kind="laplace_int") == 0.0  # off in the test process (tests/conftest.py)
    with pytest.raises(ValueError):
        _timing.configure(base_s=-1)
