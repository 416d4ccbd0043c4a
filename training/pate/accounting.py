"""Privacy accounting of PATE's aggregators: the data-independent Rényi-DP analysis, converted to (ε, δ).

Neighbours and sensitivity (user level). The private table is partitioned by privacy unit
(`partition.partition_units`): every unit's rows sit in one teacher's partition, and the number of teachers
is fixed in advance. Adding, removing or changing one unit therefore changes one teacher's model, hence at
most one teacher's vote on each student query: on the vote histogram of a query one count goes down by 1
and another up by 1 (or nothing changes). So, per query:

* the histogram has L2 sensitivity sqrt(2) (and L∞ sensitivity 1);
* its maximum (``max_j n_j``) has sensitivity 1.

(Every teacher must vote on every query, even one whose partition happens to be empty; otherwise the
number of votes would itself depend on the data.)

GNMax (Papernot et al. 2018, "Scalable Private Learning with PATE", §4.1) releases argmax_j (n_j + N(0, σ²)):
post-processing of the Gaussian mechanism on the histogram, whose RDP at order α is α·Δ²/(2σ²) = α/σ²
(Mironov 2017, Corollary 3; the paper's Proposition 8). Confident-GNMax (§4.2, Algorithm 1) first checks
``max_j n_j + N(0, σ1²) >= T`` (a Gaussian mechanism of sensitivity 1: α/(2σ1²) for every query *checked*,
answered or not) and, if the check passes, answers by GNMax with σ2 (α/σ2² for every query *answered*).
These match the data-independent bounds of the authors' code (``rdp_data_independent_gaussian`` and
``compute_rdp_data_independent_threshold``). RDP adds under (adaptive) composition. Every mechanism here
is Gaussian, so the composed curve is linear in α: rdp(α) = ρ·α, i.e. ρ-zCDP with ρ the sum of the
per-step ρ's; `rdp_slope` and the `*_rho` functions return that ρ.

The number of *answered* queries is data-dependent: whether a query passes the threshold depends on the
votes. The data-independent default therefore charges the GNMax step on every checked query
(answered = checked): valid because the released output is a post-processing of running both steps on
every query. A smaller `answered` is valid only as a **cap fixed in advance** (public, chosen before any
vote is seen) that the aggregator enforces: `ConfidentGNMax.answer_batch(..., max_answers=cap)` stops
answering after `cap` answers. Then the GNMax steps run adaptively, at most `cap` times, and on every run
of the process the summed RDP at each α is at most ``checked·α/(2σ1²) + cap·α/σ2²``, which is what the
RDP filter theorem needs (Feldman & Zrnic 2021, "Individual Privacy Accounting via a Rényi Filter",
Thm. 3.1; the budget here is fixed, not data-dependent). Charging the *observed* number of answers after
the fact is **not** valid: that count is a function of the private votes. Using it would need the
data-dependent analysis of Papernot et al. 2018 (§3, Thm. 6, with the smooth-sensitivity release of the
data-dependent ε, §B), which is not implemented here: it needs the votes before the cost is known, while
dpgate charges the whole cost before any vote is used.

RDP to (ε, δ). For each order α > 1,

    ε(α) = rdp(α) + log(1 − 1/α) − (log δ + log α)/(α − 1)

(Canonne, Kamath & Steinke 2020, Prop. 12 / Asoodeh et al. 2021 / Balle et al. 2020, Thm. 21), never
larger than the classic ``rdp(α) + log(1/δ)/(α − 1)`` (Mironov 2017, Prop. 3); and, when
``δ >= sqrt(1 − exp(−rdp(α)))``, ε = 0 (the Bretagnolle–Huber bound TV <= sqrt(1 − exp(−KL)), with
KL <= D_α). ε is the minimum over the orders. This is exactly the conversion of Google's dp-accounting
(``rdp_privacy_accountant.compute_epsilon``), so the two agree on the same orders (tests check it). The
default grid `DEFAULT_ORDERS` (about 4,000 orders from 1.01 to 1e8) contains dp-accounting's default orders;
any α gives a valid bound, the grid only decides how tight.

All ε's are floats. Fitting to a target ε (`max_queries`, `sigma_for`, ...) keeps a relative margin of
`FIT_SLACK` (1e-9) so that float rounding in the computation can never put the true ε above the target.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from ._noise import check_sigma

__all__ = [
    "DEFAULT_ORDERS",
    "FIT_SLACK",
    "gnmax_rdp",
    "threshold_rdp",
    "confident_gnmax_rdp",
    "gnmax_rho",
    "confident_gnmax_rho",
    "rdp_to_epsilon",
    "gnmax_epsilon",
    "confident_gnmax_epsilon",
    "max_queries",
    "max_confident_queries",
    "sigma_for",
    "fits",
]

#: ε computed <= target·(1 − FIT_SLACK) counts as fitting the target (float safety margin)
FIT_SLACK = 1e-9

DEFAULT_ORDERS: np.ndarray = np.unique(
    np.concatenate(
        [
            1.0 + np.arange(1, 1000) / 100.0,  # 1.01 .. 10.99, step 0.01
            1.0 + np.arange(1, 100) / 10.0,  # dp-accounting's 1.1 .. 10.9, bit for bit
            np.arange(11.0, 64.0, 0.25),
            np.geomspace(64.0, 1e8, 2800),
            [128.0, 256.0, 512.0, 1024.0],
        ]
    )
)
DEFAULT_ORDERS.setflags(write=False)


# ---------------------------------------------------------------- inputs


def _count(value: int, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return int(value)


def _delta(delta: float) -> float:
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
        raise ValueError("delta must be a number in (0, 1)")
    d = float(delta)
    if not 0.0 < d < 1.0:
        raise ValueError("delta must be in (0, 1)")
    return d


def _epsilon(epsilon: float) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise ValueError("epsilon must be a positive number")
    e = float(epsilon)
    if not (math.isfinite(e) and e > 0):
        raise ValueError("epsilon must be a positive finite number")
    return e


def _orders(orders: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if orders is None:
        return DEFAULT_ORDERS
    a = np.asarray(orders, dtype=np.float64).ravel()
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 1.0):
        raise ValueError("orders must be finite Rényi orders > 1")
    return a


def _answered(checked: int, answered: int | None) -> int:
    c = _count(checked, name="checked")
    if answered is None:
        return c
    a = _count(answered, name="answered")
    if a > c:
        raise ValueError("answered cannot exceed checked")
    return a


# ---------------------------------------------------------------- RDP curves (slopes: rdp(α) = ρ·α)


def gnmax_rho(*, sigma: float, queries: int) -> float:
    """ρ of `queries` GNMax answers at `sigma`: queries · (sqrt 2)²/(2σ²) = queries/σ²."""
    s = check_sigma(sigma)
    return _count(queries, name="queries") / (s * s)


def confident_gnmax_rho(*, sigma1: float, sigma2: float, checked: int, answered: int | None = None) -> float:
    """ρ of Confident-GNMax: checked/(2σ1²) + answered/σ2² (answered defaults to checked; see module doc)."""
    s1 = check_sigma(sigma1, name="sigma1")
    s2 = check_sigma(sigma2, name="sigma2")
    a = _answered(checked, answered)
    return checked / (2.0 * s1 * s1) + a / (s2 * s2)


def gnmax_rdp(orders: Sequence[float] | np.ndarray, *, sigma: float, queries: int) -> np.ndarray:
    """RDP ε(α) of `queries` GNMax answers, at each of `orders`: α·queries/σ²."""
    return _orders(orders) * gnmax_rho(sigma=sigma, queries=queries)


def threshold_rdp(orders: Sequence[float] | np.ndarray, *, sigma1: float, checked: int) -> np.ndarray:
    """RDP of `checked` threshold checks (max vote + N(0, σ1²), sensitivity 1): α·checked/(2σ1²)."""
    s1 = check_sigma(sigma1, name="sigma1")
    return _orders(orders) * (_count(checked, name="checked") / (2.0 * s1 * s1))


def confident_gnmax_rdp(
    orders: Sequence[float] | np.ndarray,
    *,
    sigma1: float,
    sigma2: float,
    checked: int,
    answered: int | None = None,
) -> np.ndarray:
    """RDP of Confident-GNMax: every checked query's threshold step plus every answered query's GNMax."""
    return _orders(orders) * confident_gnmax_rho(sigma1=sigma1, sigma2=sigma2, checked=checked, answered=answered)


# ---------------------------------------------------------------- RDP -> (ε, δ)


def rdp_to_epsilon(
    rdp: Sequence[float] | np.ndarray,
    orders: Sequence[float] | np.ndarray,
    delta: float,
) -> tuple[float, float]:
    """(ε, best order) for an RDP curve given at `orders`, at `delta` (the conversion in the module doc)."""
    a = _orders(orders)
    r = np.asarray(rdp, dtype=np.float64).ravel()
    if r.shape != a.shape:
        raise ValueError("rdp and orders must have the same length")
    if np.any(np.isnan(r)) or np.any(r < 0):
        raise ValueError("rdp values must be >= 0")
    d = _delta(delta)
    with np.errstate(over="ignore", invalid="ignore"):
        eps = r + np.log1p(-1.0 / a) - (math.log(d) + np.log(a)) / (a - 1.0)
        # TV <= sqrt(1 - exp(-KL)) <= sqrt(1 - exp(-D_α)): δ at least that gives ε = 0
        eps = np.where(d * d + np.expm1(-r) > 0, 0.0, eps)
    eps = np.where(np.isnan(eps), np.inf, eps)
    i = int(np.argmin(eps))
    return max(0.0, float(eps[i])), float(a[i])


def _epsilon_of_rho(rho: float, delta: float, orders: np.ndarray) -> float:
    if rho == 0:
        return 0.0
    return rdp_to_epsilon(orders * rho, orders, delta)[0]


def fits(epsilon: float, target: float) -> bool:
    """True when a computed `epsilon` fits within `target` with the float margin `FIT_SLACK`."""
    return epsilon <= target * (1.0 - FIT_SLACK)


def gnmax_epsilon(
    *,
    sigma: float,
    queries: int,
    delta: float,
    orders: Sequence[float] | np.ndarray | None = None,
) -> float:
    """ε at `delta` of answering `queries` student queries by GNMax with noise `sigma` (data-independent)."""
    return _epsilon_of_rho(gnmax_rho(sigma=sigma, queries=queries), _delta(delta), _orders(orders))


def confident_gnmax_epsilon(
    *,
    sigma1: float,
    sigma2: float,
    checked: int,
    delta: float,
    answered: int | None = None,
    orders: Sequence[float] | np.ndarray | None = None,
) -> float:
    """ε at `delta` of Confident-GNMax over `checked` queries (data-independent).

    `answered` defaults to `checked` (the data-independent worst case). Pass a smaller number only if it
    is a cap fixed before any vote is seen and enforced by the aggregator (``max_answers``); never the
    number of queries that happened to be answered (see the module docstring).
    """
    rho = confident_gnmax_rho(sigma1=sigma1, sigma2=sigma2, checked=checked, answered=answered)
    return _epsilon_of_rho(rho, _delta(delta), _orders(orders))


# ---------------------------------------------------------------- fitting a target ε


def _max_rho(epsilon: float, delta: float, orders: np.ndarray) -> float:
    """The largest ρ (to ~1e-13 relative) whose ε at δ fits `epsilon` (ε(ρ) increases with ρ)."""
    lo, hi = 0.0, epsilon
    while fits(_epsilon_of_rho(hi, delta, orders), epsilon):
        lo, hi = hi, 2.0 * hi
        if hi > 1e300:  # pragma: no cover - ε(ρ) >= ρ + ... grows without bound
            raise ValueError("could not bracket rho")
    while hi - lo > 1e-13 * hi:
        mid = 0.5 * (lo + hi)
        if fits(_epsilon_of_rho(mid, delta, orders), epsilon):
            lo = mid
        else:
            hi = mid
    return lo


def _max_count(per_query_rho: float, epsilon: float, delta: float, orders: np.ndarray, extra_rho: float = 0.0) -> int:
    """The largest n with ε(extra_rho + n·per_query_rho) fitting `epsilon` (0 if not even one fits)."""

    def ok(n: int) -> bool:
        return fits(_epsilon_of_rho(extra_rho + n * per_query_rho, delta, orders), epsilon)

    if not ok(0):
        return -1
    guess = max(0.0, (_max_rho(epsilon, delta, orders) - extra_rho) / per_query_rho)
    if guess > 2**62:
        raise ValueError("the noise is so large that the number of queries is unbounded in practice")
    n = int(math.floor(guess))
    # ρ is found to ~1e-13: step to the exact boundary of the integer condition
    while n > 0 and not ok(n):
        n -= 1
    while ok(n + 1):
        n += 1
    return n


def max_queries(
    *,
    sigma: float,
    epsilon: float,
    delta: float,
    orders: Sequence[float] | np.ndarray | None = None,
) -> int:
    """The most GNMax queries at `sigma` whose ε at `delta` fits `epsilon` (0 if none)."""
    s = check_sigma(sigma)
    n = _max_count(1.0 / (s * s), _epsilon(epsilon), _delta(delta), _orders(orders))
    return max(n, 0)


def max_confident_queries(
    *,
    sigma1: float,
    sigma2: float,
    epsilon: float,
    delta: float,
    max_answers: int | None = None,
    orders: Sequence[float] | np.ndarray | None = None,
) -> int:
    """The most queries Confident-GNMax may check within `epsilon` at `delta` (0 if none).

    Without `max_answers` every checked query is charged as answered (data-independent). With a cap
    (fixed in advance, enforced by ``ConfidentGNMax.answer_batch(..., max_answers=cap)``), n checks are
    charged n threshold steps and min(n, cap) GNMax steps.
    """
    s1 = check_sigma(sigma1, name="sigma1")
    s2 = check_sigma(sigma2, name="sigma2")
    e, d, a = _epsilon(epsilon), _delta(delta), _orders(orders)
    if max_answers is None:
        return max(_max_count(1.0 / (2.0 * s1 * s1) + 1.0 / (s2 * s2), e, d, a), 0)
    cap = _count(max_answers, name="max_answers")
    # n checks cost n threshold steps and min(n, cap) GNMax steps; ε increases with n
    everything = max(_max_count(1.0 / (2.0 * s1 * s1) + 1.0 / (s2 * s2), e, d, a), 0)
    if everything <= cap:
        return everything
    return _max_count(1.0 / (2.0 * s1 * s1), e, d, a, extra_rho=cap / (s2 * s2))


def sigma_for(
    *,
    epsilon: float,
    delta: float,
    queries: int,
    orders: Sequence[float] | np.ndarray | None = None,
) -> float:
    """The smallest GNMax σ (to ~1e-12 relative, rounded up) with which `queries` answers fit `epsilon`."""
    e, d, a = _epsilon(epsilon), _delta(delta), _orders(orders)
    q = _count(queries, name="queries")
    if q == 0:
        raise ValueError("queries must be at least 1")
    rho = _max_rho(e, d, a)
    if rho <= 0:
        raise ValueError("no noise level fits this (epsilon, delta)")
    sigma = math.sqrt(q / rho)

    def ok(s: float) -> bool:
        return fits(_epsilon_of_rho(q / (s * s), d, a), e)

    step = 2.0**-50
    while not ok(sigma):
        sigma *= 1.0 + step
        step *= 2.0
    # shave down while the next smaller float still fits (at most a few steps: ρ is found to 1e-13)
    for _ in range(64):
        smaller = sigma * (1.0 - 1e-13)
        if not ok(smaller):
            break
        sigma = smaller
    return check_sigma(sigma)
