"""The one door to OpenDP: its prelude with the `contrib` features on, and scale calibration.

Every noise draw in dpgate comes from an OpenDP measurement built through this module. OpenDP's samplers
are exact (no floating-point attacks) and use a CSPRNG, which is why no draw here can be seeded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import opendp.prelude as dp

dp.enable_features("contrib")

__all__ = ["dp", "calibrate", "at_most", "float_at_most", "check_scale"]

# doubling relative steps from one ulp reach x2 after ~52 tries; 200 is far more than enough
_MAX_STEPS = 200


def check_scale(scale: float) -> float:
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError("the noise scale is not a positive finite number (ε or ρ too small, or sensitivity too large)")
    return scale


def at_most(target: Fraction) -> Callable[[Any], bool]:
    """A predicate: OpenDP's float privacy loss is <= `target`, compared exactly."""

    def fits(loss: Any) -> bool:
        return math.isfinite(loss) and Fraction(loss) <= target

    return fits


def float_at_most(value: Fraction) -> float:
    """The largest float that is <= `value` (for handing an exact bound such as δ to OpenDP)."""
    f = float(value)
    while Fraction(f) > value:
        f = math.nextafter(f, -math.inf)
    return f


def calibrate(
    build: Callable[[float], Any],
    scale: float,
    d_in: Any,
    fits: Callable[[Any], bool],
) -> tuple[float, Any]:
    """Grow `scale` by tiny steps until ``fits(build(scale).map(d_in))``.

    The closed-form scale is right in exact arithmetic; OpenDP's privacy maps round conservatively, so
    its loss at that scale can exceed the target by an ulp or so. Increasing the scale only adds noise,
    so the mechanism never costs more than asked. Returns (scale, measurement).
    """
    check_scale(scale)
    relative = 2.0**-52
    for _ in range(_MAX_STEPS):
        measurement = build(scale)
        if fits(measurement.map(d_in)):
            return scale, measurement
        scale = max(math.nextafter(scale, math.inf), scale * (1.0 + relative))
        check_scale(scale)
        relative *= 2.0
    raise ValueError("could not calibrate the noise scale to the privacy target")
