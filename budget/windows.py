"""Budgets that renew on a schedule: a window's allowance inside a total that caps every window together.

A budget row (a dataset's total or an allocation) may renew every UTC calendar ``day``, ``week``
(from Monday) or ``month`` (from the 1st). Its ``*_total`` is then the cap over all windows — the
guarantee the row states, since renewal weakens per-window figures into a sum — and
``*_per_window`` is what each window may spend. A charge must fit both: the window's allowance and
what the cap has left. The cap never renews; spent figures are never lowered (the window's own
spending, ``*_window_spent``, counts the current window only and starts again at 0 in the next one).

The window a row's ``*_window_spent`` belongs to is ``window_start``; a row whose stored window is not
the current one has spent nothing in this window. Reads compute this without writing; the charge
transaction writes the current window with the new spending. When a schedule is set, the current
window's spending is counted from the ledger's entries, so setting one mid-window grants no fresh room.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import InvalidInput
from .units import Units, remaining_json, spent_json, total_json, total_units

__all__ = ["PERIODS", "Renewal", "renews_at", "window_bounds", "window_json", "window_room", "window_spent", "window_update"]

PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class Renewal:
    """A schedule: every `every`, `per_window` (ε, δ units) may be spent, inside the row's total."""

    every: str
    per_window: Units

    @classmethod
    def of(cls, every: object, epsilon: Any, delta: Any = 0) -> Renewal:
        if every not in PERIODS:
            raise InvalidInput(f"renew every must be one of {', '.join(PERIODS)}")
        return cls(str(every), total_units(epsilon, delta))

    def check_within(self, total: Units) -> None:
        """A window's allowance above the cap over all windows would state a guarantee it cannot keep."""
        if self.per_window[0] > total[0] or self.per_window[1] > total[1]:
            raise InvalidInput("a window's allowance may not exceed the total over all windows (the cap)")


def window_bounds(every: str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar window of `every` that holds `now`: [start, end)."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if every == "day":
        return day, day + timedelta(days=1)
    if every == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if every == "month":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, end
    raise InvalidInput(f"unknown renewal period {every!r}")


def window_spent(row: Any, now: datetime) -> Units:
    """What `row` has spent in the window that holds `now` (0 where its stored window is an earlier one)."""
    if row.renew_every is None or row.window_start is None:
        return 0, 0
    if row.window_start != window_bounds(row.renew_every, now)[0]:
        return 0, 0
    return int(row.epsilon_window_spent), int(row.delta_window_spent)


def window_room(row: Any, now: datetime, *, extra: Units = (0, 0)) -> Units | None:
    """What the current window leaves (after `extra` more), or None for a row that does not renew."""
    if row.renew_every is None:
        return None
    used = window_spent(row, now)
    return (max(0, int(row.epsilon_per_window) - used[0] - extra[0]),
            max(0, int(row.delta_per_window) - used[1] - extra[1]))  # fmt: skip


def renews_at(row: Any, now: datetime, units: Units) -> str | None:
    """When a refused charge of `units` could fit again: the next window's start, where it is the
    window's allowance that refuses it and the cap has room for it (else None: waiting will not help)."""
    if row.renew_every is None:
        return None
    cap_left = int(row.epsilon_total) - int(row.epsilon_spent), int(row.delta_total) - int(row.delta_spent)
    fits_cap = units[0] <= cap_left[0] and units[1] <= cap_left[1]
    fits_window = units[0] <= int(row.epsilon_per_window) and units[1] <= int(row.delta_per_window)
    return window_bounds(row.renew_every, now)[1].isoformat() if fits_cap and fits_window else None


def window_update(row: Any, now: datetime, units: Units) -> dict[str, Any]:
    """The window columns a charge of `units` writes on a locked `row` (nothing for a row that does not
    renew): the current window, with its spending so far plus the charge."""
    if row.renew_every is None:
        return {}
    used = window_spent(row, now)
    return {"window_start": window_bounds(row.renew_every, now)[0],
            "epsilon_window_spent": used[0] + units[0], "delta_window_spent": used[1] + units[1]}  # fmt: skip


def window_json(row: Any, now: datetime) -> dict[str, Any] | None:
    """The current window as the API states it (None for a row that does not renew)."""
    if row.renew_every is None:
        return None
    start, end = window_bounds(row.renew_every, now)
    per = total_json((int(row.epsilon_per_window), int(row.delta_per_window)))
    used = spent_json(window_spent(row, now))
    left = remaining_json(window_room(row, now) or (0, 0))
    return {
        "every": row.renew_every,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "epsilon_per_window": per[0],
        "epsilon_spent": used[0],
        "epsilon_remaining": left[0],
        "delta_per_window": per[1],
        "delta_spent": used[1],
        "delta_remaining": left[1],
    }
