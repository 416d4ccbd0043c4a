"""Splitting a query's privacy budget across its measurements, and choosing Laplace or Gaussian noise.

What is minimised. A query's stated 95% half-widths are linear in its measurements' noise half-widths,
so the lead planner hands each measurement a weight and we minimise the weighted sum of half-widths.

- Laplace (pure ε-DP, basic composition: Σ ε_i = ε). A measurement's half-width is ``ln 20 · Δ₁ / ε_i``,
  so the objective is ``Σ a_i / ε_i`` with ``a_i = weight_i · Δ₁_i``. By Lagrange (or Cauchy-Schwarz) the
  minimum under ``Σ ε_i = ε`` is at ``ε_i ∝ sqrt(a_i)``, where it equals ``(Σ sqrt(a_i))² / ε``.
- Gaussian (ρ-zCDP, composition Σ ρ_i = ρ, BS16 Lemma 2.3). A half-width is ``z · Δ₂ / sqrt(2 ρ_i)``,
  so the objective is ``Σ b_i / sqrt(ρ_i)`` with ``b_i = weight_i · Δ₂_i``, minimised at
  ``ρ_i ∝ b_i^(2/3)``. The total ρ is the largest whose conversion at δ is at most ε
  (`accounting.epsilon_delta_to_rho`, OpenDP's conversion of CKS20), and the cost is the (ε', δ) that ρ
  converts to, ε' <= ε. The shares add to ρ·(1 - 2⁻³⁰): headroom for OpenDP's float composition, so
  that OpenDP's own map of the composed measurements is within the recorded ρ too.

Both objectives are convex, so with a floor on every share (no measurement starved into uselessness)
the optimum is ``share_i = max(floor, c · a_i^p)`` with c set by the total: water-filling, done here in
exact rational arithmetic so that the shares sum to the total exactly (never more) and equal weights
give exactly the equal split.

`choose_noise` picks the tighter of the best Laplace split and the best Gaussian split (when δ > 0),
comparing the stated half-widths; everything it reads — sensitivities, weights, ε, δ — is public.
It draws nothing; `NoiseChoice.build` makes the mechanism, whose own construction checks the scale
against OpenDP's privacy map.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from .accounting import epsilon_delta_to_rho, rho_to_epsilon
from .accuracy import discrete_laplace_ci, gaussian_ci, laplace_ci
from .base import Mechanism, positive_fraction
from .cost import Cost, to_fraction
from .gaussian import Gaussian
from .laplace import LaplaceCount, LaplaceFloat

__all__ = [
    "DEFAULT_FLOOR",
    "NoiseChoice",
    "NoiseItem",
    "NoisePlan",
    "choose_noise",
    "gain",
    "split_epsilon",
    "split_rho",
]

DEFAULT_FLOOR = Fraction(1, 10)
"""No share is below this fraction of the equal share (total / n)."""

# the Gaussian shares add to this fraction of the plan's ρ: OpenDP composes zCDP measurements by a float
# sum rounded upwards, which may exceed the exact sum by a few ulps; this headroom keeps OpenDP's own
# composition of the built measurements within the ρ the plan records (and so within its (ε, δ))
_RHO_HEADROOM = 1 - Fraction(1, 2**30)

# the powered weights are rounded to integers of this many digits (relative to the largest) before the
# exact split: the objective is off its real-valued optimum by ~1e-18 relative, and shares stay short
_DIGITS = 9

Kind = Literal["laplace", "gaussian"]


# -- the splits ---------------------------------------------------------------------------------------


def split_epsilon(
    weights: Mapping[str, float], epsilon: Fraction, *, floor: Fraction | None = None
) -> dict[str, Fraction]:
    """Shares ε_i > 0 minimising ``Σ w_i / ε_i`` under ``Σ ε_i = ε`` exactly: ``ε_i ∝ sqrt(w_i)``.

    `weights` are the coefficients of 1/ε_i in the objective (sensitivity included, summed over the
    output columns). Every share is at least ``floor · ε / n`` (`floor` in (0, 1], default
    `DEFAULT_FLOOR`; ``floor=1`` is the equal split); equal weights give exactly ``ε / n`` each.
    Returns the shares in the order of `weights`.
    """
    return _split(weights, positive_fraction(epsilon, name="epsilon"), floor, 0.5)


def split_rho(weights: Mapping[str, float], rho: Fraction, *, floor: Fraction | None = None) -> dict[str, Fraction]:
    """Shares ρ_i > 0 minimising ``Σ w_i / sqrt(ρ_i)`` under ``Σ ρ_i = ρ`` exactly: ``ρ_i ∝ w_i^(2/3)``.

    As `split_epsilon` otherwise (the same floor rule, exact sum, equal weights give the equal split).
    """
    return _split(weights, positive_fraction(rho, name="rho"), floor, 2.0 / 3.0)


def _check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError("weights must be a non-empty mapping of measurement ids to weights")
    out: dict[str, float] = {}
    for key, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float, Fraction)):
            raise ValueError("weights must be numbers")
        value = float(w)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError("weights must be finite and >= 0")
        out[key] = value
    return out


def _check_floor(floor: Fraction | None) -> Fraction:
    if floor is None:
        return DEFAULT_FLOOR
    f = to_fraction(floor, name="floor")
    if not 0 < f <= 1:
        raise ValueError("floor must be in (0, 1]: a fraction of the equal share")
    return f


def _split(weights: Mapping[str, float], total: Fraction, floor: Fraction | None, power: float) -> dict[str, Fraction]:
    w = _check_weights(weights)
    f = _check_floor(floor)
    n = len(w)
    equal = {k: total / n for k in w}
    powered = {k: v**power for k, v in w.items()}
    top = max(powered.values())
    if top == 0:
        return equal
    # integer masses: identical weights get identical masses, hence identical shares
    mass = {k: round(p / top * 10**_DIGITS) for k, p in powered.items()}
    if len(set(mass.values())) == 1:
        return equal
    least = total * f / n
    # water-filling: clamp at the floor every share the free ones' rate would put below it, until none
    # is; the clamped set only grows, and the largest weight is never clamped (its share >= rest/free)
    clamped: set[str] = set()
    while True:
        free = [k for k in w if k not in clamped]
        rest = total - least * len(clamped)
        free_mass = sum(mass[k] for k in free)
        below = {k for k in free if rest * mass[k] < least * free_mass}
        if not below:
            break
        clamped |= below
    shares = {k: least if k in clamped else rest * mass[k] / free_mass for k in w}
    if sum(shares.values()) != total or min(shares.values()) <= 0:  # exact by construction
        raise AssertionError("the split does not add up to the total")
    return shares


# -- Laplace or Gaussian --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseItem:
    """One measurement to be noised: its public sensitivities and its weight in the objective.

    `l1_sensitivity` bounds one privacy unit's effect on the whole vector (all GROUP BY cells) in L1,
    `l2_sensitivity` in L2 (None: the same as L1, always a valid bound). `integer` counts get the
    discrete mechanisms (then the L1 sensitivity must be an integer). `weight` multiplies this
    measurement's own 95% half-width in the objective: ``objective = Σ weight_i · half_width_i``.
    (In `split_epsilon`'s terms its weight is ``weight · l1_sensitivity``.)
    """

    id: str
    l1_sensitivity: float
    l2_sensitivity: float | None = None
    integer: bool = False
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("a noise item needs a non-empty string id")
        for name in ("l1_sensitivity", "l2_sensitivity"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
                raise ValueError(f"{name} must be a number")
            if not (math.isfinite(float(value)) and float(value) > 0):
                raise ValueError(f"{name} must be finite and > 0")
        if self.l2_sensitivity is None:
            object.__setattr__(self, "l2_sensitivity", self.l1_sensitivity)
        if self.integer and float(self.l1_sensitivity) != int(float(self.l1_sensitivity)):
            raise ValueError("an integer measurement needs an integer L1 sensitivity")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float, Fraction)):
            raise ValueError("weight must be a number")
        if not (math.isfinite(float(self.weight)) and float(self.weight) >= 0):
            raise ValueError("weight must be finite and >= 0")

    @property
    def l2(self) -> float:
        return float(self.l2_sensitivity if self.l2_sensitivity is not None else self.l1_sensitivity)

    @property
    def l1(self) -> float:
        return float(self.l1_sensitivity)


@dataclass(frozen=True)
class NoiseChoice:
    """The noise one measurement gets: Laplace with `epsilon`, or Gaussian with `rho` (the other None).

    `scale` is the closed-form scale (Δ₁/ε, or σ = Δ₂/sqrt(2ρ)); the built mechanism's calibrated scale
    is at most a few ulps larger. `ci95` is the half-width stated at that scale.
    """

    item: NoiseItem
    mechanism: Kind
    epsilon: Fraction | None
    rho: Fraction | None
    scale: float
    ci95: float

    def build(self) -> Mechanism:
        """The mechanism (LaplaceCount, LaplaceFloat or Gaussian), calibrated against OpenDP's map.

        A Gaussian built here is charged by its ρ as part of the plan (`NoisePlan.cost`); on its own its
        `cost` is undefined (it has no δ of its own)."""
        if self.mechanism == "laplace":
            assert self.epsilon is not None
            if self.item.integer:
                return LaplaceCount(epsilon=self.epsilon, sensitivity=int(self.item.l1))
            return LaplaceFloat(epsilon=self.epsilon, sensitivity=self.item.l1)
        assert self.rho is not None
        return Gaussian(rho=self.rho, sensitivity=self.item.l2, integer=self.item.integer)


@dataclass(frozen=True)
class NoisePlan:
    """Per measurement its noise, and the plan's total cost.

    `cost` is (ε, 0) for Laplace (the shares add to ε exactly); for Gaussian it is the (ε', δ) that the
    total ρ converts to (ε' <= ε), with ``cost.rho`` that ρ (the shares add to a hair less, see
    `_RHO_HEADROOM`). `objective` is the chosen plan's weighted sum of half-widths;
    `laplace_objective` and `gaussian_objective` (None where δ = 0 or no ρ fits) are the two candidates'.
    """

    mechanism: Kind
    choices: tuple[NoiseChoice, ...]
    cost: Cost
    objective: float
    laplace_objective: float
    gaussian_objective: float | None

    def __getitem__(self, item_id: str) -> NoiseChoice:
        for choice in self.choices:
            if choice.item.id == item_id:
                return choice
        raise KeyError(item_id)

    @property
    def rho(self) -> Fraction | None:
        return self.cost.rho


def _laplace_ci(item: NoiseItem, scale: float) -> float:
    return discrete_laplace_ci(scale) if item.integer else laplace_ci(scale)


def _laplace(items: Sequence[NoiseItem], shares: Mapping[str, Fraction]) -> tuple[list[NoiseChoice], float]:
    choices = []
    for item in items:
        epsilon = shares[item.id]
        scale = float(Fraction(item.l1) / epsilon)
        choices.append(NoiseChoice(item, "laplace", epsilon, None, scale, _laplace_ci(item, scale)))
    return choices, _objective(choices)


def _gaussian(items: Sequence[NoiseItem], shares: Mapping[str, Fraction]) -> tuple[list[NoiseChoice], float]:
    choices = []
    for item in items:
        rho = shares[item.id]
        scale = item.l2 / math.sqrt(2.0 * float(rho))
        choices.append(NoiseChoice(item, "gaussian", None, rho, scale, gaussian_ci(scale)))
    return choices, _objective(choices)


def _objective(choices: Sequence[NoiseChoice]) -> float:
    return math.fsum(float(c.item.weight) * c.ci95 for c in choices)


def _check_items(items: Sequence[NoiseItem]) -> list[NoiseItem]:
    if not items or not all(isinstance(i, NoiseItem) for i in items):
        raise ValueError("items must be a non-empty list of NoiseItem")
    out = list(items)
    if len({i.id for i in out}) != len(out):
        raise ValueError("noise item ids must be distinct")
    return out


def choose_noise(
    items: Sequence[NoiseItem],
    epsilon: Fraction,
    delta: Fraction = Fraction(0),
    *,
    floor: Fraction | None = None,
) -> NoisePlan:
    """The best Laplace split of `epsilon`, or — where `delta` > 0 and it states tighter half-widths —
    Gaussian noise with the largest total ρ that converts to at most (`epsilon`, `delta`), split by
    ``ρ_i ∝ (weight_i · Δ₂_i)^(2/3)``.

    `delta` is the part of δ left for the measurements (the caller keeps what selection needs). Ties go
    to Laplace (pure DP, no δ spent). Raises ValueError on bad input; depends on public inputs only.
    """
    items = _check_items(items)
    e = positive_fraction(epsilon, name="epsilon")
    d = to_fraction(delta, name="delta")
    if not 0 <= d < 1:
        raise ValueError("delta must be in [0, 1)")
    laplace_shares = split_epsilon({i.id: float(i.weight) * i.l1 for i in items}, e, floor=floor)
    laplace, laplace_objective = _laplace(items, laplace_shares)
    best = NoisePlan("laplace", tuple(laplace), Cost(e), laplace_objective, laplace_objective, None)
    if d == 0:
        return best
    try:
        rho = epsilon_delta_to_rho(e, d)
    except ValueError:  # no positive ρ fits (an extreme ε, δ): Laplace it is
        return best
    rho_shares = split_rho({i.id: float(i.weight) * i.l2 for i in items}, rho * _RHO_HEADROOM, floor=floor)
    gaussian, gaussian_objective = _gaussian(items, rho_shares)
    if not gaussian_objective < laplace_objective:
        return NoisePlan("laplace", tuple(laplace), Cost(e), laplace_objective, laplace_objective, gaussian_objective)
    cost = Cost(Fraction(rho_to_epsilon(rho, d)), d, rho)
    if not cost.fits_within(Cost(e, d)):  # epsilon_delta_to_rho guarantees it; checked all the same
        raise AssertionError("the Gaussian plan's conversion exceeds the budget")
    return NoisePlan("gaussian", tuple(gaussian), cost, gaussian_objective, laplace_objective, gaussian_objective)


def gain(
    weights: Mapping[str, float] | Sequence[NoiseItem],
    epsilon: Fraction | float | str,
    delta: Fraction | float | str = 0,
    *,
    floor: Fraction | None = None,
) -> float:
    """How much tighter the optimised plan states its half-widths than today's: the weighted sum of
    half-widths with Laplace and ε split equally, over `choose_noise`'s (>= 1 up to rounding).

    `weights` as `split_epsilon` takes them (measurements with unit sensitivities, L2 = L1, floats),
    or the `NoiseItem`s themselves.
    """
    if isinstance(weights, Mapping):
        items = [NoiseItem(key, 1.0, 1.0, weight=w) for key, w in _check_weights(weights).items()]
    else:
        items = _check_items(weights)
    e = positive_fraction(epsilon, name="epsilon")
    _, baseline = _laplace(items, {i.id: e / len(items) for i in items})
    best = choose_noise(items, e, to_fraction(delta, name="delta"), floor=floor)
    return 1.0 if best.objective == 0 else baseline / best.objective
