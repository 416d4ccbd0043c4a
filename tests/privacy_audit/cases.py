"""The audit cases: neighbouring datasets D and D' for every mechanism, whole queries through the
gateway, and positive controls (broken mechanisms the auditor must catch). Shared by the tests of this
folder and by ``bench/privacy_audit.py``.

A case builds two samplers, ``n -> outputs`` of the mechanism on D and on D' (an (n, d) array of
numbers), and states the (ε, δ) that is claimed. The samplers of the real mechanisms draw through
`mechanisms` (OpenDP) only; the vector mechanisms add independent noise to every coordinate, so
``release([v] * n)`` is n independent draws of the release on [v]. Only the positive controls draw their
own noise (torch), as the broken implementations they model would.

Neighbours are adversarial: one privacy unit added, with the most rows per unit the data allow (more
than `max_rows_per_unit` for whole queries, so that bounding must cut them), every value at or beyond
its declared bound (so that clamping must act), all in one cell where that maximises its effect.

Whole queries are sampled two ways:

* ``answers``: the answer of ``gateway.sql.release.release`` (what ``Gateway.query`` returns), drawn
  afresh each time with the plan's mechanisms. The plan is made once by ``Gateway.plan``, and the
  engine's results (deterministic: bounding by a keyed hash, no noise) are recorded on the first
  release and replayed to the next ones, in order, their SQL checked against the recording now and
  then; everything else — mechanisms, noise, post-processing — runs as in a query. About 0.3–1.5 ms an
  answer, hence the smaller sample sizes.
* ``traced``: one real release, whose mechanisms are watched, records the exact inputs the gateway
  hands to each mechanism (what plan, rewrite, bounding, clamping and the engine produced); the
  samplers then draw those mechanisms' outputs on those inputs, vectorised. Answers are post-processing
  of these outputs, so auditing them is at least as strong a test of the gateway's sensitivities and ε
  split, at 10^6 samples in seconds. Only for queries whose mechanism inputs do not depend on earlier
  noise (no top-k, no measure after threshold selection: the threshold query is audited by its answers).
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from gateway.core import Gateway
from gateway.sql.release import Answer, Mechanisms, exact_cells, release
from mechanisms import _timing
from mechanisms import ExponentialQuantile, Gaussian, LaplaceCount, LaplaceFloat, NoisyTopK, ThresholdCounts
from mechanisms.quantile import PrivateQuantile, representable_lattice
from mechanisms._opendp import dp
from mechanisms.audit import AuditResult, Sampler, audit
from tests.conftest import BANK, bank_frames, make_gateway

MISSING = -1.0  # a count that threshold selection did not release (counts are >= 0 after clipping)
NO_ANSWER = -1e300  # a NULL in an answer (AVG of no rows)
BATCH = 100_000  # draws per call to a vector mechanism (memory)
# Level of every audit in the tests: a mechanism that keeps its claim fails one with probability <= 1e-4
# (far less in practice: Clopper–Pearson and Bonferroni are conservative).
TEST_ALPHA = 1e-4
SLOW_SAMPLES = 1_000_000


@dataclass(frozen=True)
class Neighbours:
    sample: Sampler  # outputs of M(D), D with the adversarial unit
    neighbour_sample: Sampler  # outputs of M(D'), without it
    epsilon: float  # the claim (ε, δ), as the mechanism or the gateway states it
    delta: float = 0.0


@dataclass(frozen=True)
class Case:
    name: str
    group: str  # mechanism | query | control
    build: Callable[[], Neighbours]
    fast_samples: int  # per dataset, in the default (fast) test run
    expect_caught: bool = False  # a positive control: ε_lb must exceed the claim
    tight: bool = False  # the adversary attains the claim: a fast audit must find at least 40% of it
    note: str = ""


def run(case: Case, *, samples: int, alpha: float) -> tuple[Neighbours, AuditResult]:
    n = case.build()
    return n, audit(n.sample, n.neighbour_sample, samples=samples, delta=n.delta, alpha=alpha, batch=BATCH)


def _vector(draw: Callable[[list[Any]], list[Any]], values: list[Any]) -> Sampler:
    """n independent releases of a vector mechanism on `values`, in one call per batch."""

    def sample(n: int) -> np.ndarray:
        out = np.asarray(draw(list(values) * n), dtype=np.float64)
        return out.reshape(n, len(values))

    return sample


def _each(draw: Callable[[], Any]) -> Sampler:
    """n releases, one call each (selections return one answer per call)."""

    def sample(n: int) -> np.ndarray:
        return np.asarray([draw() for _ in range(n)], dtype=np.float64)

    return sample


# -- the mechanisms of `mechanisms/` ---------------------------------------------------------------------

EPSILON = Fraction(1)
K = 5  # rows one unit may contribute


def _laplace_count() -> Neighbours:
    m = LaplaceCount(epsilon=EPSILON, sensitivity=K)
    return Neighbours(_vector(m.release, [1000 + K]), _vector(m.release, [1000]), float(m.cost.epsilon))


def _laplace_float() -> Neighbours:
    upper = 1000.0
    m = LaplaceFloat(epsilon=EPSILON, sensitivity=K * upper)
    base = 123_456.5
    return Neighbours(_vector(m.release, [base + K * upper]), _vector(m.release, [base]), float(m.cost.epsilon))


def _gaussian(integer: bool) -> Callable[[], Neighbours]:
    def build() -> Neighbours:
        delta = Fraction(1, 10**5)
        if integer:
            m = Gaussian.for_epsilon_delta(epsilon=EPSILON, delta=delta, sensitivity=float(K), integer=True)
            d, d_prime = [100 + K], [100]
        else:
            m = Gaussian.for_epsilon_delta(epsilon=EPSILON, delta=delta, sensitivity=1.0)
            d, d_prime = [1.0], [0.0]
        return Neighbours(_vector(m.release, d), _vector(m.release, d_prime), float(m.cost.epsilon), float(m.cost.delta))

    return build


def _noisy_max(monotonic: bool) -> Callable[[], Neighbours]:
    def build() -> Neighbours:
        m = NoisyTopK(epsilon=EPSILON, sensitivity=K, monotonic=monotonic)
        # monotonic: one score rises by K (tight: P[0] = 1/2 against e^-ε / 2); otherwise both move
        d, d_prime = ([0, K], [0, 0]) if monotonic else ([0, K], [K, 0])
        return Neighbours(_each(lambda: m.release(d)[0]), _each(lambda: m.release(d_prime)[0]), float(m.cost.epsilon))

    return build


def _noisy_top_k() -> Neighbours:
    m = NoisyTopK(epsilon=EPSILON, sensitivity=K, k=2, monotonic=True)
    d, d_prime = [0, 0, K, K], [0, 0, 0, 0]

    def code(scores: list[int]) -> Callable[[], int]:
        def draw() -> int:
            first, second = m.release(scores)
            return 4 * first + second  # the ordered pair as one category

        return draw

    return Neighbours(_each(code(d)), _each(code(d_prime)), float(m.cost.epsilon))


def _quantile() -> Neighbours:
    candidates = [float(c) for c in range(11)]
    m = ExponentialQuantile(epsilon=EPSILON, alpha=Fraction(1, 2), candidates=candidates, max_rows=K)
    d_prime = [5.0] * 20
    d = d_prime + [10.0] * K  # the unit's K rows at the upper end pull the median up
    return Neighbours(_each(lambda: m.release(d)), _each(lambda: m.release(d_prime)), float(m.cost.epsilon))


def _private_quantile(form: str, part: str) -> Callable[[], Neighbours]:
    """The gateway's quantile: its estimate, or its two interval ends as one category (each end is
    audited against the whole ε, which bounds every part)."""

    def build() -> Neighbours:
        lattice = representable_lattice(0, 10, integer=True)
        m = PrivateQuantile(epsilon=EPSILON, alpha=Fraction(1, 2), lattice=lattice, max_rows=K, form=form)
        d_prime = [5.0] * 20
        d = d_prime + [10.0] * K

        def code(values: list[float]) -> Callable[[], float]:
            def draw() -> float:
                out = m.release(values)
                # "gaps" draws a point inside a gap: its gap is the category
                return float(int(out.value)) if part == "value" else 11 * out.low + out.high

            return draw

        return Neighbours(_each(code(d)), _each(code(d_prime)), float(m.cost.epsilon))

    return build


def _threshold_map(m: ThresholdCounts, count: int) -> Sampler:
    """n independent releases of one key's count: n keys in one call (the noise and the cut are per key)."""

    def sample(n: int) -> np.ndarray:
        out = m.release({f"k{i}": count for i in range(n)})
        return np.asarray([out.get(f"k{i}", MISSING) for i in range(n)], dtype=np.float64)

    return sample


def _threshold_existing_key() -> Neighbours:
    m = ThresholdCounts(epsilon=EPSILON, delta=Fraction(1, 10**5), max_partitions=K, max_rows=K)
    # a key near the threshold, with and without the unit's K rows: release and value both move
    low = m.threshold - 3
    return Neighbours(_threshold_map(m, low + K), _threshold_map(m, low), float(m.cost.epsilon), float(m.cost.delta))


def _threshold_new_key() -> Neighbours:
    # a δ large enough to measure: the unit's own key shows up with probability <= δ
    m = ThresholdCounts(epsilon=EPSILON, delta=Fraction(1, 100), max_partitions=1, max_rows=K)

    def absent(n: int) -> np.ndarray:
        # Without the unit its key is not in the input, and a key not in the input is never released;
        # one real call per batch checks it (OpenDP is slow on an empty map: ~2 ms a call).
        assert m.release({}) == {}
        return np.full(n, MISSING)

    return Neighbours(_threshold_map(m, K), absent, float(m.cost.epsilon), float(m.cost.delta))


MECHANISM_CASES = [
    Case("LaplaceCount (Δ=5)", "mechanism", _laplace_count, 100_000, tight=True),
    Case("LaplaceFloat (Δ=5000)", "mechanism", _laplace_float, 30_000, tight=True),
    Case("Gaussian float (Δ₂=1)", "mechanism", _gaussian(False), 10_000),
    Case("Gaussian integer (Δ₂=5)", "mechanism", _gaussian(True), 30_000),
    Case("NoisyTopK k=1 monotonic", "mechanism", _noisy_max(True), 10_000, tight=True),
    Case("NoisyTopK k=1 non-monotonic", "mechanism", _noisy_max(False), 8_000),
    Case("NoisyTopK k=2 monotonic", "mechanism", _noisy_top_k, 8_000),
    Case("ExponentialQuantile median", "mechanism", _quantile, 8_000),
    Case("PrivateQuantile median, round form", "mechanism", _private_quantile("round", "value"), 3_000),
    Case("PrivateQuantile median, gaps form", "mechanism", _private_quantile("gaps", "value"), 2_000),
    Case("PrivateQuantile median, interval ends", "mechanism", _private_quantile("round", "ends"), 3_000),
    Case("ThresholdCounts key near threshold", "mechanism", _threshold_existing_key, 50_000, tight=True),
    Case("ThresholdCounts unit's own key (δ=0.01)", "mechanism", _threshold_new_key, 50_000),
]


# -- whole queries through the gateway -------------------------------------------------------------------

BASE_CUSTOMERS = 40
UNIT = 10**6  # the adversarial unit's id
EDGE_CITY = "edge"  # the city whose count straddles the threshold (the "threshold" pair)
QUERY_EPSILON = 1
QUERY_DELTA = 1e-5


def adversarial_rows(frame: pd.DataFrame, *, rows: int, **values: Any) -> pd.DataFrame:
    """`rows` transactions of the unit UNIT, copied from the first row of `frame`, with `values` set."""
    unit = frame.iloc[[0] * rows].copy()
    unit["cid"] = UNIT
    unit["tid"] = np.arange(10**7, 10**7 + rows)
    for col, v in values.items():
        unit[col] = v
    return pd.concat([frame, unit], ignore_index=True)


def cap_rows(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """At most `k` rows per customer, so that the bounded form is the table itself."""
    return frame[frame.groupby("cid").cumcount() < k].reset_index(drop=True)


@functools.lru_cache(maxsize=None)
def bank_pair(kind: str = "small") -> tuple[Gateway, Gateway]:
    """(D, D'): the BANK dataset with and without the adversarial unit: 4·k transactions (bounding
    keeps k), amount 1e9 and qty 1000 beyond their upper bounds (clamping brings them to 1000 and 10),
    all in one category and one city.

    "small": 40 customers, so that AVG and MEDIAN move visibly. "threshold": 300 customers of at most
    k rows, one city ("edge") holding threshold - 2 rows, and the unit's rows in it: the city's count
    straddles the threshold of threshold partition selection, where its release is most sensitive.
    """
    k = BANK["tables"]["tx"]["max_rows_per_unit"]
    if kind == "small":
        base = bank_frames(BASE_CUSTOMERS, seed=3)
        city = "rare"
    elif kind == "threshold":
        base = bank_frames(300, seed=3)
        tx = cap_rows(base["raw_tx"], k)
        # the selection's share of ε: one of two (the selection, then the COUNT measured again afresh)
        threshold = ThresholdCounts(epsilon=Fraction(QUERY_EPSILON) / 2, delta=Fraction(QUERY_DELTA), max_partitions=k, max_rows=k).threshold
        tx.loc[: threshold - 3, "city"] = EDGE_CITY
        base["raw_tx"] = tx
        city = EDGE_CITY
    else:
        raise ValueError(kind)
    with_unit = copy.deepcopy(base)
    with_unit["raw_tx"] = adversarial_rows(base["raw_tx"], rows=4 * k, amount=1e9, qty=1000, cat="food", city=city)
    return make_gateway(with_unit), make_gateway(copy.deepcopy(base))


class Replay:
    """The engine's results for one plan, recorded on the first release and replayed in order.

    The engine is deterministic (no noise; bounding by a keyed hash), so replaying its rows changes
    nothing but the time. Every `check_every`-th release the SQL asked for is compared with the
    recording, so a plan whose SQL varied between releases would fail loudly.
    """

    def __init__(self, engine: Any, check_every: int = 997) -> None:
        self.engine = engine
        self.check_every = check_every
        self.recorded: list[tuple[str, list[tuple]]] | None = None
        self._pending: list[tuple[str, list[tuple]]] = []
        self._i = 0
        self._releases = 0

    def begin(self) -> None:
        if self.recorded is None and self._pending:
            self.recorded = self._pending
        self._i = 0
        self._releases += 1

    def execute(self, select: Any) -> list[tuple]:
        if self.recorded is None:
            sql = select.sql(dialect="duckdb")
            rows = self.engine.execute(select)
            self._pending.append((sql, rows))
            return rows
        sql, rows = self.recorded[self._i]
        if self._releases % self.check_every == 0:
            assert select.sql(dialect="duckdb") == sql, "the plan's SQL changed between releases"
        self._i += 1
        return rows


def _encode(answer: Answer, cells: list[tuple], nkeys: int) -> list[float]:
    """The answer's aggregate columns, cell by cell in `cells` order; MISSING for an absent cell."""
    by_cell = {tuple(r[:nkeys]): r[nkeys:] for r in answer.rows}
    width = len(answer.columns) - nkeys
    out: list[float] = []
    for c in cells:
        values = by_cell.get(c)
        if values is None:
            out += [MISSING] * width
        else:
            out += [NO_ANSWER if v is None else float(v) for v in values]
    return out


def answers_sampler(gw: Gateway, sql: str, cells: list[tuple], nkeys: int, *, delta: float = 0.0) -> Sampler:
    plan = gw.plan("bank", sql, epsilon=QUERY_EPSILON, delta=delta)
    mechs = Mechanisms(plan)
    engine = Replay(gw.engine)

    def sample(n: int) -> np.ndarray:
        out = []
        for _ in range(n):
            engine.begin()
            out.append(_encode(release(plan, engine, mechs), cells, nkeys))
        return np.asarray(out, dtype=np.float64)

    return sample


class _Watch:
    """A mechanism that records the inputs of its releases and passes them on unchanged."""

    def __init__(self, mech: Any, calls: list[tuple[Any, str, tuple]]) -> None:
        self._mech = mech
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mech, name)

    def release(self, values: Any, *, key: Any = None, then: Any = None) -> Any:
        if key is None:
            self._calls.append((self._mech, "release", (copy.deepcopy(values),)))
            return self._mech.release(values)
        # ThresholdCounts given (cell, count) pairs and how to stringify a cell: record the string map
        pairs = list(values.items() if isinstance(values, dict) else values)
        self._calls.append((self._mech, "release", ({key(c): v for c, v in pairs},)))
        return self._mech.release(pairs, key=key, then=then)

    def release_counts(self, counts: Any) -> Any:
        self._calls.append((self._mech, "counts", (copy.deepcopy(counts),)))
        return self._mech.release_counts(counts)


def trace(gw: Gateway, sql: str, *, delta: float = 0.0) -> tuple[Any, list[tuple[Any, str, tuple]]]:
    """One real release of `sql`, recording what each mechanism was handed."""
    plan = gw.plan("bank", sql, epsilon=QUERY_EPSILON, delta=delta)
    if plan.selection == "top_k" or (plan.selection == "threshold" and plan.released):
        raise ValueError("the inputs of this query's mechanisms depend on earlier noise: audit its answers")
    mechs = Mechanisms(plan)
    calls: list[tuple[Any, str, tuple]] = []
    watched: dict[int, _Watch] = {}

    def watch(m: Any) -> Any:
        if m is None:
            return None
        return watched.setdefault(id(m), _Watch(m, calls))

    mechs.by_measure = {k: watch(v) for k, v in mechs.by_measure.items()}
    mechs.selection = watch(mechs.selection)
    release(plan, gw.engine, mechs)
    return plan, calls


def _columns_of(calls: list[tuple[Any, str, tuple]]) -> list[str]:
    cols: list[str] = []
    for i, (mech, kind, args) in enumerate(calls):
        if kind == "counts":
            cols += [f"{i}:value", f"{i}:low", f"{i}:high"]
        elif kind == "release" and isinstance(mech, ThresholdCounts):
            cols += [f"{i}:{key}" for key in args[0]]
        elif kind == "release" and not isinstance(mech, NoisyTopK):
            cols += [f"{i}:{j}" for j in range(len(args[0]))]
        else:
            cols.append(f"{i}")
    return cols


def traced_sampler(calls: list[tuple[Any, str, tuple]], columns: list[str]) -> Sampler:
    """n independent draws of every recorded release, as columns `columns` (MISSING where absent)."""

    def sample(n: int) -> np.ndarray:
        parts: dict[str, np.ndarray] = {}
        for i, (mech, kind, args) in enumerate(calls):
            if kind == "counts":
                got = [mech.release_counts(args[0]) for _ in range(n)]
                for end in ("value", "low", "high"):
                    parts[f"{i}:{end}"] = np.asarray([getattr(r, end) for r in got], dtype=np.float64)
            elif isinstance(mech, NoisyTopK):
                parts[f"{i}"] = np.asarray([mech.release(args[0])[0] for _ in range(n)], dtype=np.float64)
            elif isinstance(mech, ThresholdCounts):
                counts = args[0]
                out = mech.release({f"{r}\x1f{key}": v for r in range(n) for key, v in counts.items()})
                for key in counts:
                    parts[f"{i}:{key}"] = np.asarray([out.get(f"{r}\x1f{key}", MISSING) for r in range(n)], dtype=np.float64)
            else:
                values = list(args[0])
                block = np.asarray(mech.release(values * n), dtype=np.float64).reshape(n, len(values))
                for j in range(len(values)):
                    parts[f"{i}:{j}"] = block[:, j]
        return np.column_stack([parts.get(c, np.full(n, MISSING)) for c in columns])

    return sample


@dataclass(frozen=True)
class Query:
    name: str
    sql: str
    keys: int = 0  # leading GROUP BY columns of the answer
    delta: float = 0.0
    fast_samples: int = 3_000  # answers
    traced_samples: int = 20_000
    pair: str = "small"
    tight: bool = False  # COUNT and SUM: the unit's k rows at the bound attain the sensitivity
    #: its mechanisms' inputs do not depend on earlier noise, so their outputs can be traced (threshold
    #: selection measures the selected cells' counts again: those inputs depend on the selection)
    traced: bool = True


QUERIES = [
    Query("COUNT(*)", "SELECT COUNT(*) FROM tx", tight=True),
    Query("SUM(amount)", "SELECT SUM(amount) FROM tx", tight=True),
    Query("AVG(amount)", "SELECT AVG(amount) FROM tx"),
    Query("GROUP BY cat: COUNT, SUM", "SELECT cat, COUNT(*), SUM(amount) FROM tx GROUP BY cat", keys=1,
          fast_samples=2_000, traced_samples=5_000),
    Query("MEDIAN(qty)", "SELECT MEDIAN(qty) FROM tx", fast_samples=1_500, traced_samples=5_000),
    Query("GROUP BY city (threshold)", "SELECT city, COUNT(*) FROM tx GROUP BY city", keys=1, delta=QUERY_DELTA,
          fast_samples=1_500, traced_samples=5_000, pair="threshold", traced=False),
]


def _cells(q: Query, d: Gateway, d_prime: Gateway) -> list[tuple]:
    """The answer's cells: the public ones, or every GROUP BY key either dataset has."""
    found: set[tuple] = set()
    for gw in (d, d_prime):
        plan = gw.plan("bank", q.sql, epsilon=QUERY_EPSILON, delta=q.delta)
        found |= set(plan.cells if plan.cells is not None else exact_cells(plan, gw.engine))
    return sorted(found, key=str)


def _query_answers(q: Query) -> Callable[[], Neighbours]:
    def build() -> Neighbours:
        d, d_prime = bank_pair(q.pair)
        cells = _cells(q, d, d_prime)
        claim = d.plan("bank", q.sql, epsilon=QUERY_EPSILON, delta=q.delta).cost
        return Neighbours(
            answers_sampler(d, q.sql, cells, q.keys, delta=q.delta),
            answers_sampler(d_prime, q.sql, cells, q.keys, delta=q.delta),
            float(claim.epsilon),
            float(claim.delta),
        )

    return build


def _query_traced(q: Query) -> Callable[[], Neighbours]:
    def build() -> Neighbours:
        d, d_prime = bank_pair(q.pair)
        plan, calls = trace(d, q.sql, delta=q.delta)
        _, calls_prime = trace(d_prime, q.sql, delta=q.delta)
        columns = sorted(set(_columns_of(calls)) | set(_columns_of(calls_prime)))
        return Neighbours(
            traced_sampler(calls, columns),
            traced_sampler(calls_prime, columns),
            float(plan.cost.epsilon),
            float(plan.cost.delta),
        )

    return build


QUERY_CASES = [Case(f"query {q.name}", "query", _query_answers(q), q.fast_samples, tight=q.tight, note="answers") for q in QUERIES]
TRACED_CASES = [
    Case(f"query {q.name} [traced]", "query", _query_traced(q), q.traced_samples, tight=q.tight, note="traced")
    for q in QUERIES
    if q.traced
]


# -- positive controls -----------------------------------------------------------------------------------


def _understated(factor: float) -> Callable[[], Neighbours]:
    """OpenDP's Laplace calibrated at scale / `factor` of what ε needs: the sensitivity understated."""

    def build() -> Neighbours:
        honest = LaplaceCount(epsilon=EPSILON, sensitivity=K)
        space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
        broken = dp.m.make_laplace(*space, scale=honest.scale / factor)
        return Neighbours(_vector(broken, [1000 + K]), _vector(broken, [1000]), float(honest.cost.epsilon))

    return build


DPSGD_BATCH = 64
DPSGD_CLIP = 1.0
DPSGD_DIM = 4


@functools.lru_cache(maxsize=None)
def dpsgd_plan(sample_rate: float) -> Any:
    """Opacus' noise multiplier for ε = 1, δ = 1e-5 (one epoch), through training.dpsgd.plan_dpsgd."""
    import warnings

    from training.dpsgd import plan_dpsgd

    with warnings.catch_warnings():
        # Opacus' RDP analysis sizing the PRV domain; benign (see tests/training/conftest.py)
        warnings.filterwarnings("ignore", "Optimal order is the largest alpha", UserWarning)
        return plan_dpsgd(
            target_epsilon=1.0,
            delta=1e-5,
            units_estimate=round(DPSGD_BATCH / sample_rate),
            batch_size=DPSGD_BATCH,
            epochs=1,
            max_grad_norm=DPSGD_CLIP,
        )


def per_sample_gradients(with_target: bool) -> Any:
    """One batch's per-sample gradients: the target's far beyond the clip norm along e0; the others in
    cancelling pairs along e1 (and one zero), so that only the target moves the clipped sum."""
    import torch

    rows = []
    if with_target:
        rows.append(torch.tensor([10.0 * DPSGD_CLIP] + [0.0] * (DPSGD_DIM - 1)))
    for i in range(DPSGD_BATCH - 1):
        sign = 0.0 if i == DPSGD_BATCH - 2 and DPSGD_BATCH % 2 == 0 else (1.0 if i % 2 == 0 else -1.0)
        rows.append(torch.tensor([0.0, 3.0 * sign * DPSGD_CLIP] + [0.0] * (DPSGD_DIM - 2)))
    return torch.stack(rows)


def opacus_optimizer(noise_multiplier: float, generator: Any = None) -> tuple[Any, Any]:
    """The DP optimiser training.dpsgd uses (flat clipping, loss reduction "sum"), on a DPSGD_DIM vector."""
    import torch
    from opacus.optimizers import get_optimizer_class

    p = torch.nn.Parameter(torch.zeros(DPSGD_DIM))
    cls = get_optimizer_class(clipping="flat", distributed=False, grad_sample_mode="hooks")
    opt = cls(
        torch.optim.SGD([p], lr=0.0),
        noise_multiplier=noise_multiplier,
        max_grad_norm=DPSGD_CLIP,
        expected_batch_size=DPSGD_BATCH,
        loss_reduction="sum",
        generator=generator,
    )
    return p, opt


def opacus_step(p: Any, opt: Any, grad_sample: Any) -> Any:
    """Opacus' clip-and-noise on these per-sample gradients: the noisy summed gradient of one step."""
    p.grad_sample = grad_sample.clone()
    opt.pre_step()
    out = p.grad.detach().clone()
    opt.zero_grad(set_to_none=True)
    return out


def _dpsgd(sample_rate: float, *, broken: bool) -> Callable[[], Neighbours]:
    """One DP-SGD step on D (the target sample in the batch with probability q) and D' (never).

    The clipped sums are Opacus' own (its optimiser without noise); the noise is N(0, (σC)²) per
    coordinate as Opacus' `add_noise` draws it — or, for the bug of Tramèr et al. (2022), N(0, (σC/B)²):
    the noise divided by the batch size while the claim still uses σ. Drawn vectorised with torch.
    """

    def build() -> Neighbours:
        import torch

        plan = dpsgd_plan(sample_rate)
        p, exact = opacus_optimizer(0.0)
        with_target = opacus_step(p, exact, per_sample_gradients(True))
        without = opacus_step(p, exact, per_sample_gradients(False))
        std = plan.noise_multiplier * plan.max_grad_norm / (DPSGD_BATCH if broken else 1)
        gen = torch.Generator().manual_seed(20221 + int(broken) + int(1000 * sample_rate))

        def step(target: bool) -> Sampler:
            def sample(n: int) -> np.ndarray:
                included = torch.rand(n, generator=gen) < plan.sample_rate if target else torch.zeros(n, dtype=torch.bool)
                clipped = torch.where(included[:, None], with_target, without)
                noise = torch.normal(0.0, std, size=(n, DPSGD_DIM), generator=gen)
                return (clipped + noise).double().numpy()

            return sample

        return Neighbours(step(True), step(False), plan.epsilon, plan.delta)

    return build


CONTROL_CASES = [
    Case("control: Laplace, sensitivity understated 4×", "control", _understated(4), 5_000, expect_caught=True),
    Case("control: Laplace, sensitivity understated 2×", "control", _understated(2), 50_000, expect_caught=True),
    Case("control: Laplace, sensitivity understated 1.25×", "control", _understated(1.25), 1_000_000, expect_caught=True,
         note="slow only: needs ~10^6 samples"),
    Case("control: DP-SGD step q=1, correct noise σC", "control", _dpsgd(1.0, broken=False), 20_000),
    Case("control: DP-SGD step q=1, noise σC/B", "control", _dpsgd(1.0, broken=True), 5_000, expect_caught=True),
    Case("control: DP-SGD step q=0.1, correct noise σC", "control", _dpsgd(0.1, broken=False), 20_000),
    Case("control: DP-SGD step q=0.1, noise σC/B", "control", _dpsgd(0.1, broken=True), 5_000, expect_caught=True),
]


# -- the synthesiser (training/synthetic.py) -------------------------------------------------------------

SYNTH_EPSILON = 1
SYNTH_DELTA = 1e-5
SYNTH_K = 3  # max_rows_per_unit
SYNTH_ROWS = 40  # rows of each synthetic table (public)
RARE = "rare"  # a declared category that only the adversarial unit holds
SYNTH_META: dict[str, dict[str, Any]] = {
    "uid": {"type": "id"},
    "cat": {"type": "category", "categories": ["a", "b", "c", RARE]},
    "flag": {"type": "bool"},
}


def synth_pair() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(D, D'): 40 units of one row each over categories a, b, c; D adds one unit with 4·k rows, all of
    the category `RARE` with flag True (bounding keeps k of them)."""
    base = pd.DataFrame({"uid": np.arange(40), "cat": ["a"] * 20 + ["b"] * 10 + ["c"] * 10, "flag": [True, False] * 20})
    unit = pd.DataFrame({"uid": [UNIT] * (4 * SYNTH_K), "cat": [RARE] * (4 * SYNTH_K), "flag": [True] * (4 * SYNTH_K)})
    return pd.concat([base, unit], ignore_index=True), base


def synthesize_categories_from_data(frame: pd.DataFrame, meta: dict[str, dict[str, Any]], **kwargs: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A BROKEN synthesiser (positive control only): each category column's domain is read from the
    rows (``frame[col].unique()``) instead of its declared list, then MST runs as usual. A category
    only one unit holds is in the domain exactly when that unit is in the table."""
    from training.synthetic import synthesize

    leaky = {
        name: ({**m, "categories": sorted(str(v) for v in frame[name].dropna().unique())} if m["type"] == "category" else m)
        for name, m in meta.items()
    }
    return synthesize(frame, leaky, **kwargs)


def _synthetic(broken: bool) -> Callable[[], Neighbours]:
    """MST on (D, D'); each output is (count of `RARE`, count of (`RARE`, True)) in one synthetic table.
    The claim is what `plan_cost` charges for the declared columns."""

    def build() -> Neighbours:
        from training.synthetic import plan_cost, synthesize

        fn = synthesize_categories_from_data if broken else synthesize
        plan = plan_cost(SYNTH_META, epsilon=SYNTH_EPSILON, delta=SYNTH_DELTA, max_rows_per_unit=SYNTH_K, unit="uid")

        def tables(frame: pd.DataFrame) -> Sampler:
            def sample(n: int) -> np.ndarray:
                out = np.empty((n, 2))
                for i in range(n):
                    synth, info = fn(frame, SYNTH_META, epsilon=SYNTH_EPSILON, delta=SYNTH_DELTA, rows=SYNTH_ROWS,
                                     max_rows_per_unit=SYNTH_K, unit="uid")
                    assert info["cost"] == plan.cost  # the broken variant charges the same
                    rare = (synth["cat"] == RARE).to_numpy()
                    out[i] = rare.sum(), (rare & synth["flag"].to_numpy(dtype=bool)).sum()
                return out

            return sample

        d, d_prime = synth_pair()
        return Neighbours(tables(d), tables(d_prime), float(plan.cost.epsilon), float(plan.cost.delta))

    return build


# "synthetic": ~4 ms a table, so the bench draws `--synth-samples` of them (not `--samples`)
SYNTHETIC_CASES = [
    Case("synthetic MST, unit's rare category (k=3)", "mechanism", _synthetic(False), 2_000, note="synthetic"),
    Case("control: synthetic MST, categories read from the data", "control", _synthetic(True), 1_000,
         expect_caught=True, note="synthetic"),
]

ALL_CASES = MECHANISM_CASES + QUERY_CASES + TRACED_CASES + CONTROL_CASES + SYNTHETIC_CASES


@contextlib.contextmanager
def no_timing_padding() -> Iterator[None]:
    """Turn off the constant-time padding of releases (`mechanisms._timing`) while auditing.

    The padding sleeps until a deadline fixed before each draw; it changes when an answer leaves,
    never what it is, so the output distributions audited here are the same without it — and a
    million padded draws would take an hour of sleeping.
    """
    base, scale = _timing.settings()
    _timing.configure(base_s=0.0)
    try:
        yield
    finally:
        _timing.configure(base_s=base, scale=scale)
