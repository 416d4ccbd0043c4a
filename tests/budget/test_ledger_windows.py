"""Budgets that renew on a schedule (migration 4): each window's allowance renews, the cap over all windows
never does, both levels bind, and the figures, the refusals and `verify` say so — on both backends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from budget import BudgetExhausted, InvalidInput, Ledger
from budget.windows import Renewal, window_bounds

from ._support import grant, query


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 30, 23, 0, tzinfo=UTC))


@pytest.fixture
def led(open_ledger: Callable[..., Ledger], clock: Clock) -> Ledger:
    ledger = open_ledger(clock=clock)
    ledger.migrate()
    return ledger


def _figures(ledger: Ledger, analyst: str = "alice") -> dict:  # type: ignore[type-arg]
    (line,) = ledger.budgets(analyst)
    return line


@pytest.mark.parametrize(
    ("every", "now", "start", "end"),
    [
        ("day", datetime(2026, 12, 30, 23, 59, tzinfo=UTC), datetime(2026, 12, 30, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC)),
        ("week", datetime(2026, 12, 30, 5, tzinfo=UTC), datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC)),
        ("month", datetime(2026, 12, 31, 23, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("month", datetime(2027, 2, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC)),
    ],
)
def test_windows_are_utc_calendar_periods(every: str, now: datetime, start: datetime, end: datetime) -> None:
    assert window_bounds(every, now) == (start, end)
    # another zone's clock reading names the same window
    assert window_bounds(every, now.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))) == (start, end)


def test_the_allowance_renews_and_the_cap_does_not(led: Ledger, clock: Clock) -> None:
    grant(led, "bank", total=100, analysts={"alice": 0})
    led.set_allocation("alice", "bank", epsilon=2.5, renew=Renewal.of("month", 1))
    for _ in range(4):
        query(led, "alice", "bank", "0.25")
    with pytest.raises(BudgetExhausted) as refused:
        query(led, "alice", "bank", "0.25")
    assert refused.value.level == "analyst"
    assert refused.value.fields()["renews_at"] == "2027-01-01T00:00:00+00:00"
    line = _figures(led)
    assert line["epsilon_spent"] == 1.0 and line["epsilon_remaining"] == 0.0 and line["epsilon_total"] == 2.5
    assert line["window"] == {
        "every": "month", "start": "2026-12-01T00:00:00+00:00", "end": "2027-01-01T00:00:00+00:00",
        "epsilon_per_window": 1.0, "epsilon_spent": 1.0, "epsilon_remaining": 0.0,
        "delta_per_window": 0.0, "delta_spent": 0.0, "delta_remaining": 0.0,
    }  # fmt: skip

    clock.now = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)  # a new window: its allowance, inside the cap
    line = _figures(led)
    assert line["window"]["epsilon_spent"] == 0.0 and line["epsilon_remaining"] == 1.0
    for _ in range(4):
        query(led, "alice", "bank", "0.25")
    clock.now = datetime(2027, 2, 3, tzinfo=UTC)
    assert _figures(led)["epsilon_remaining"] == 0.5  # the cap (2.5) leaves less than the window (1.0)
    query(led, "alice", "bank", "0.5")
    with pytest.raises(BudgetExhausted) as refused:
        query(led, "alice", "bank", "0.25")
    assert "renews_at" not in refused.value.fields()  # the cap is spent: waiting for a window will not help
    assert _figures(led)["epsilon_spent"] == 2.5
    assert led.verify() == []


def test_a_charge_must_fit_the_window_exactly(led: Ledger, clock: Clock) -> None:
    grant(led, "bank", total=100, analysts={"alice": 0})
    led.set_allocation("alice", "bank", epsilon=10, renew=Renewal.of("day", 1))
    for _ in range(37):
        query(led, "alice", "bank", "0.027")
    with pytest.raises(BudgetExhausted):
        query(led, "alice", "bank", "0.027")
    query(led, "alice", "bank", Fraction(1) - 37 * Fraction("0.027"))  # exactly what is left
    assert _figures(led)["window"]["epsilon_remaining"] == 0.0
    assert led.verify() == []


def test_a_dataset_total_that_renews_binds_every_analyst(led: Ledger, clock: Clock) -> None:
    grant(led, "bank", total=3, analysts={"alice": 5, "bob": 5})
    led.set_dataset_budget("bank", epsilon=3, renew=Renewal.of("week", 1))
    query(led, "alice", "bank", "0.75")
    with pytest.raises(BudgetExhausted) as refused:
        query(led, "bob", "bank", "0.5")
    assert refused.value.level == "dataset" and refused.value.fields()["renews_at"] == "2027-01-04T00:00:00+00:00"
    assert _figures(led, "bob")["dataset_level"]["window"]["epsilon_spent"] == 0.75
    clock.now += timedelta(days=7)
    query(led, "bob", "bank", "0.5")
    (ds,) = led.dataset_budgets()
    assert ds["epsilon_spent"] == 1.25 and ds["window"]["epsilon_spent"] == 0.5
    assert led.verify() == []


def test_a_schedule_set_mid_window_counts_what_the_window_already_spent(led: Ledger, clock: Clock) -> None:
    grant(led, "bank", total=100, analysts={"alice": 5})
    query(led, "alice", "bank", "0.75")  # this month, before any schedule
    led.set_allocation("alice", "bank", epsilon=5, renew=Renewal.of("month", 1))
    window = _figures(led)["window"]
    assert window["epsilon_spent"] == 0.75 and window["epsilon_remaining"] == 0.25
    led.set_allocation("alice", "bank", epsilon=5)  # the schedule removed: a plain total again
    assert "window" not in _figures(led) and _figures(led)["epsilon_remaining"] == 4.25
    assert led.verify() == []


def test_schedules_are_audited_and_checked(led: Ledger) -> None:
    grant(led, "bank", total=100, analysts={"alice": 5})
    with pytest.raises(InvalidInput, match="may not exceed"):
        led.set_allocation("alice", "bank", epsilon=1, renew=Renewal.of("month", 2))
    with pytest.raises(InvalidInput, match="renew every"):
        Renewal.of("fortnight", 1)
    led.set_allocation("alice", "bank", epsilon=5, renew=Renewal.of("month", 1), actor="root")
    led.set_allocation("alice", "bank", epsilon=5, renew=Renewal.of("month", 1), actor="root")  # unchanged: not audited again
    changes = [a for a in led.audit_log() if a["action"] == "set_allocation"]
    assert changes[0]["new"] == {"epsilon": 5.0, "delta": 0.0, "renew": {"every": "month", "epsilon": 1.0, "delta": 0.0}}
    assert changes[0]["old"] == {"epsilon": 5.0, "delta": 0.0} and len(changes) == 2


def test_64_threads_charging_a_window_of_4_exactly_32_succeed(led: Ledger) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    grant(led, "bank", total=100, analysts={"alice": 0})
    led.set_allocation("alice", "bank", epsilon=50, renew=Renewal.of("week", 4))
    start = threading.Barrier(64)

    def one(i: int) -> bool:
        start.wait(timeout=60)
        try:
            query(led, "alice", "bank", 0.125, request_id=f"w{i}")
            return True
        except BudgetExhausted:
            return False

    with ThreadPoolExecutor(max_workers=64) as pool:
        assert sum(pool.map(one, range(64))) == 32
    line = _figures(led)
    assert line["window"]["epsilon_spent"] == 4.0 and line["epsilon_spent"] == 4.0 and line["epsilon_remaining"] == 0.0
    assert led.verify() == []
