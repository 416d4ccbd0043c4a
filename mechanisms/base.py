"""What every mechanism is: an object that knows its cost and accuracy before it sees data.

Construction does all the privacy work (scale from the target loss and the sensitivity, the OpenDP
measurement, the check that OpenDP's own privacy map stays within the target); `release()` is the only
method that draws noise. A mechanism is immutable once built.
"""

from __future__ import annotations

import math
from fractions import Fraction
from collections.abc import Sequence
from typing import Any, Protocol

from .cost import Cost, to_fraction

__all__ = ["Mechanism", "Frozen", "positive_fraction", "positive_int", "positive_float", "finite_floats"]


class Mechanism(Protocol):
    """A differentially private release with a known cost and noise scale."""

    @property
    def name(self) -> str:
        """The mechanism family as answers report it ("laplace", "gaussian", ...)."""
        ...

    @property
    def cost(self) -> Cost:
        """The exact (ε, δ) this release is charged."""
        ...

    @property
    def scale(self) -> float:
        """The noise scale after calibration (OpenDP's `scale` parameter)."""
        ...

    def ci95(self) -> float | None:
        """Half-width of the 95% interval of the noise added to one output value (None: no closed form)."""
        ...

    def release(self, value: Any) -> Any:
        """Draw noise and return the private output. The only method that draws."""
        ...


class Frozen:
    """Attributes are set in ``__init__`` and never after."""

    _frozen: bool = False

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, key: str, value: Any) -> None:
        if self._frozen:
            raise AttributeError(f"{type(self).__name__} is immutable")
        object.__setattr__(self, key, value)

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


def positive_fraction(value: Any, *, name: str) -> Fraction:
    """An exact, finite, strictly positive privacy parameter."""
    result = to_fraction(value, name=name)
    if result <= 0:
        raise ValueError(f"{name} must be > 0")
    return result


def positive_int(value: Any, *, name: str) -> int:
    """A strictly positive integer; integral numbers of other types (numpy ints) are accepted."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{name} must be an integer")
    try:
        as_int = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be an integer") from None
    if as_int != value:
        raise ValueError(f"{name} must be an integer")
    if as_int < 1:
        raise ValueError(f"{name} must be >= 1")
    return as_int


def positive_float(value: Any, *, name: str) -> float:
    """A finite, strictly positive number, as a float."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{name} must be a number")
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a number") from None
    if not math.isfinite(result) or result <= 0:
        raise ValueError(f"{name} must be finite and > 0")
    return result


def finite_floats(values: Sequence[Any], *, name: str = "values") -> list[float]:
    """Values as floats; NaN or ±inf is a caller bug (inputs are clamped), so it raises.

    The message never includes the values: they may be private.
    """
    try:
        out = [float(v) for v in values if not isinstance(v, (str, bytes))]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers") from None
    if len(out) != len(values):
        raise ValueError(f"{name} must be numbers")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite (clamp before release)")
    return out
