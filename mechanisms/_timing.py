"""Releases in constant time: every noise draw is padded to a deadline fixed before it starts.

OpenDP's samplers run in time that grows with the magnitude of the noise they return (the discrete
Laplace sampler loops over geometric draws): measured here, the rank correlation between |noise| and
the draw's run time was +0.24 to +0.31 for `LaplaceCount` at ε = 1 and 0.01. Someone who times
responses could then learn about the noise, hence about the exact value. So each release runs
`padded`: the draw, then a sleep until ``start + deadline``, where the deadline depends only on public
inputs — the mechanism and how many values it may release: ``base + per_value * values``, with each
mechanism's per-value budget about twice its measured cost here (`PER_VALUE_S`). The time the caller
observes then no longer depends on the noise, except when a draw overruns its deadline (counted in
`overruns`). The sleep's own jitter is independent of the noise.

``values`` must itself be public: a vector's length fixed by the plan (public GROUP BY cells, a public
candidate grid, the cells that threshold selection already released), or a public cap (threshold
selection pads to ``ThresholdCounts.max_candidates``, never to the number of groups the data hold).
`deadline` is a function of ``(values, kind)`` and of `configure`'s process-wide settings only.

`configure` sets the base and scales the per-value budgets (slower hardware: scale > 1); ``base_s = 0``
turns the padding off (tests that draw noise many times; benchmarks that measure its cost).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["PER_VALUE_S", "configure", "deadline", "overruns", "padded", "settings"]

T = TypeVar("T")

#: per released value, by mechanism: ~2x the cost measured on a loaded 2-core machine (µs per value:
#: discrete Laplace 5.4, float Laplace 20, float Gaussian 47, integer Gaussian 9, noisy max / top-k and
#: the exponential quantile's scores ~1). Threshold selection: per candidate key of its public cap, the
#: whole step (the count map built from the caller's cells, OpenDP's draw, the map read back): at 10,000
#: keys, 31 to 34 µs a key (median of 25; best 19 to 25 µs) under load 1-3 on 2 cores, when the same runs
#: put the discrete Laplace at 18 µs (`bench/timing.py` prints these figures). Under heavier load than
#: measured, draws overrun: `overruns` counts them.
PER_VALUE_S: dict[str, float] = {
    "laplace_int": 12e-6,
    "laplace_float": 45e-6,
    "gaussian_float": 100e-6,
    "gaussian_int": 20e-6,
    "noisy_max": 3e-6,
    "threshold": 60e-6,
}

_lock = threading.Lock()
_base_s = 0.002  # 2 ms a draw: ~5x the worst single-value draw measured (0.4 ms)
_scale = 1.0
_overruns = 0


def configure(*, base_s: float, scale: float = 1.0) -> None:
    """Set the base of every deadline and a factor on the per-value budgets; ``base_s = 0`` turns the
    padding off."""
    global _base_s, _scale
    if not (base_s >= 0 and scale >= 0):
        raise ValueError("deadlines must be >= 0")
    with _lock:
        _base_s, _scale = float(base_s), float(scale)


def settings() -> tuple[float, float]:
    """``(base_s, scale)`` now (to restore them)."""
    return _base_s, _scale


def deadline(values: int, *, kind: str) -> float:
    """The deadline, in seconds, of a `kind` draw releasing `values` values (0 when padding is off)."""
    return 0.0 if _base_s == 0 else _base_s + _scale * PER_VALUE_S[kind] * max(0, int(values))


def overruns() -> int:
    """Draws that took longer than their deadline since the process started (their time leaked)."""
    return _overruns


def padded(draw: Callable[[], T], *, values: int, kind: str) -> T:
    """Run `draw` and return its result (or raise its error) no earlier than its deadline after it
    started. The deadline is fixed before `draw` runs, from `values` and `kind` alone."""
    global _overruns
    limit = deadline(values, kind=kind)
    start = time.perf_counter()
    try:
        return draw()
    finally:
        if limit > 0:
            left = start + limit - time.perf_counter()
            if left > 0:
                time.sleep(left)
            else:
                with _lock:
                    _overruns += 1
