"""Releases in constant time: every noise draw is padded to a deadline fixed before it starts.

OpenDP's samplers run in time that grows with the magnitude of the noise they return (the discrete
Laplace sampler loops over geometric draws): measured here, the rank correlation between |noise| and
the draw's run time was +0.24 to +0.31 for `LaplaceCount` at ε = 1 and 0.01. Someone who times
responses could then learn about the noise, hence about the exact value. So each release runs
`padded`: the draw, then a sleep until ``start + deadline``, where the deadline depends only on public
inputs (how many values are released) — the time the caller observes no longer depends on the noise,
except when a draw overruns its deadline (counted in `overruns`, exported as a metric; the deadline is
chosen far above the draws' 99.9th percentile on this hardware). The sleep's own jitter is independent
of the noise.

`configure` sets the deadline (the gateway calls it from its settings); ``base_s = 0`` disables the
padding (benchmarks that measure the cost of it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["configure", "deadline", "overruns", "padded"]

T = TypeVar("T")

_lock = threading.Lock()
_base_s = 0.002  # 2 ms per draw: ~10x the 99th percentile of a draw measured under load
_per_value_s = 0.000_02  # and 20 µs per released value (the vector's length is public)
_overruns = 0


def configure(*, base_s: float, per_value_s: float) -> None:
    """Set the deadline of a draw: ``base_s + per_value_s * values``; ``base_s = 0`` turns padding off."""
    global _base_s, _per_value_s
    if not (base_s >= 0 and per_value_s >= 0):
        raise ValueError("deadlines must be >= 0")
    with _lock:
        _base_s, _per_value_s = float(base_s), float(per_value_s)


def deadline(values: int) -> float:
    """The deadline, in seconds, of a draw releasing `values` values (0 when padding is off)."""
    return 0.0 if _base_s == 0 else _base_s + _per_value_s * max(0, int(values))


def overruns() -> int:
    """Draws that took longer than their deadline since the process started (their time leaked)."""
    return _overruns


def padded(draw: Callable[[], T], *, values: int) -> T:
    """Run `draw` and return its result no earlier than its deadline after it started."""
    global _overruns
    limit = deadline(values)
    start = time.perf_counter()
    out = draw()
    if limit > 0:
        left = start + limit - time.perf_counter()
        if left > 0:
            time.sleep(left)
        else:
            with _lock:
                _overruns += 1
    return out
