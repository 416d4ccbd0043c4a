"""Private synthetic copies of a table: MST / AIM-style (McKenna, Miklau & Sheldon 2021; McKenna et al.
2022) on OpenDP measurements, with a decomposable model of cliques of up to `MAX_CLIQUE` columns.

Guarantee. Neighbouring tables differ by adding or removing one privacy unit, which holds at most
``k = max_rows_per_unit`` rows (the gateway bounds them at registration; when the unit column is in the
frame it is bounded again here, ``groupby(unit).head(k)``). The whole synthesis is ρ-zCDP with
ρ = `epsilon_delta_to_rho` (ε, δ) — the largest ρ whose conversion by OpenDP's ``make_zCDP_to_approxDP``
(CKS20, tighter than the textbook ε = ρ + 2·sqrt(ρ·ln(1/δ)) of BS16, which it never exceeds) is ≤ ε, and
this is re-checked here — so it costs exactly the (ε, δ) asked, recorded as ``Cost(ε, δ, rho=ρ)``.

Domains are public. Every column's domain comes from its declared metadata only: a category column's
declared list (values outside it fall in no cell), a bool's two values, int / float / date columns binned
on equal-width edges over their declared [lower, upper] (values clamped in; an int column with at most
`bins` distinct values gets one bin per value), and NULL as a value of its own when the column is
nullable. No category, edge, row count or id is read from the rows; privacy-unit and id columns are not
synthesised. The row count released is a post-processing of the noisy marginals.

The budget, in exact Fractions (ρ₁ + ρ_sel + ρ₂ = ρ, asserted; each share a public constant of ρ and d):

1. 1-way marginals, ρ₁ = ρ·`ONE_WAY_SHARE` (split equally over the d columns). One unit moves at most
   k rows, and each row adds 1 to one cell of a marginal, so the count vector changes by at most k in
   L1 and, as all k rows may land in one cell, by at most k in L2 too (sqrt(k) only when they spread: we
   use the worst case k). Each marginal gets OpenDP's discrete Gaussian (``make_gaussian`` on
   ``vector_domain(atom_domain(i64))`` / ``l2_distance``), σ = k / sqrt(2·ρ₁/d), so ρ₁/d each.
2. d − 1 adaptive rounds. Round t first selects, at ρ_sel/(d − 1) (ρ_sel = ρ·`SELECT_SHARE`), a clique
   C = S ∪ {v}: in round 1 any pair, later a column v not yet in the model and a separator S of 1 to
   `MAX_CLIQUE` − 1 columns inside one clique already chosen (3+ columns only up to `MAX_CLIQUE_CELLS`
   cells, and only where their expected noise sqrt(2/π)·σ₂·cells is at most `WIDE_NOISE_SHARE` of the
   released N̂: at small ε a noisy 3-way costs more utility than it gains). The score is AIM's ``‖M_C(D) − round(N̂·P̂(S) ⊗ p̂_v)‖₁ − round(c·sqrt(2/π)·σ₂·|C|)``, with
   c = `SELECT_PENALTY`: the L1 gap between the clique's counts and what the current model predicts
   (P̂(S) and p̂_v are fitted from released values only), less the expected noise a measurement would
   add; an integer. The reference and the penalty are public, so one unit moves the score by at most
   k (triangle inequality on the L1 change of M_C): L∞ sensitivity k, and OpenDP's ``make_noisy_max``
   with ``zero_concentrated_divergence`` (Gumbel noise, the exponential mechanism) at scale
   k / sqrt(2·ρ_round) is ρ_round-zCDP. Then the round measures M_C at ρ₂/(d − 1) (ρ₂ = the rest),
   sensitivity k in L2 as in 1 whatever the number of columns of C (each row still adds to one cell).
   Which cliques may be chosen, and what they are fitted to, depends only on earlier released values.

Between 1 and 2, MST's domain compression (post-processing of the released 1-ways): in each column the
cells whose noisy count is below `COMPRESS_SIGMAS`·σ₁ merge into one, and the selection and the cliques
work on these compressed domains (a merged cell is expanded back at sampling, in proportion to the noisy
1-way). The compression reads only released values, and the sensitivities above hold for any domain.

With d = 2 the only clique is data-independent and the split is ρ/2, 0, ρ/2; with d = 1, all of ρ goes
to the one 1-way. Each measurement's scale is calibrated so OpenDP's own privacy map is ≤ its exact
share (`mechanisms._opendp.calibrate`); the 2d − 1 (d ≥ 3: 3d − 2) measurements compose sequentially
and adaptively (BS16 Lemma 2.3), each at a share fixed in advance from public inputs.

Fitting (post-processing, no privacy cost). The cliques, in the order chosen, form a junction tree (each
separator lies in an earlier clique: running intersection), so the maximum-entropy distribution with
their marginals is P(x) = P(x_root) · Π_t P(x_v | x_S) in closed form. Each noisy 1-way is combined, cell
by cell and weighted by inverse variance, with the margins of the noisy cliques that hold it; the total
N̂ likewise from all marginals' sums. Each clique's counts are projected onto {x ≥ 0, Σx = N̂}
(Euclidean) and fitted (IPF) to the model's marginal on its separator and to its new column's 1-way, so
all marginals are non-negative and consistent. Rows are sampled ancestrally, clique by clique (systematic
counts within each group of rows sharing the separator's cells); a bin becomes a value drawn uniformly
inside it. The sampling uses numpy's generator (seedable): only the measurements draw DP noise, through
OpenDP.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from mechanisms._opendp import at_most, calibrate, dp
from mechanisms.accounting import epsilon_delta_to_rho, rho_to_epsilon
from mechanisms.cost import Cost, to_fraction
from mechanisms.gaussian import Gaussian

from .errors import InvalidJob

__all__ = [
    "ColumnDomain",
    "GaussianCounts",
    "SynthesisPlan",
    "column_domains",
    "plan_cost",
    "selection_score",
    "synthesize",
    "encode",
    "tvd",
]

DEFAULT_BINS = 16
MIN_BINS, MAX_BINS = 2, 64
_IPF_ROUNDS = 30
MAX_CELLS = 4_000_000  # the largest 2-way marginal measured (public: from the declared domains)
MAX_CLIQUE = 3  # columns in a measured clique (a new column joins a separator of at most 2)
MAX_CLIQUE_CELLS = 4_096  # the largest clique of 3+ columns a round may pick (on the compressed domains)
ONE_WAY_SHARE = Fraction(1, 10)  # of ρ, for d >= 3: the 1-ways (they set the compression)
SELECT_SHARE = Fraction(1, 10)  # of ρ, for d >= 3: the selection rounds; the clique marginals get the rest
COMPRESS_SIGMAS = 3.0  # MST: a 1-way cell whose noisy count is below this many σ₁ merges with the other rare ones
# a 3+ column clique only where sqrt(2/π)·σ₂·cells <= this share of N̂. 0.1 (was 0.25), measured over 10
# runs on the loans (bench/synthetic.py): at the default 16 bins and ε = 5, 0.25 let in ~6 noisy 3-ways and
# TSTR AUC fell to 0.692 (0.732 with none; 0.729 at 0.1), while at 8 bins and ε = 5 the 3-ways help
# (0.757 at 0.1, 0.734 with none); 2-way TVD moves by at most 0.003 either way
WIDE_NOISE_SHARE = 0.1
SELECT_PENALTY = 0.25  # a candidate's score is its L1 gain less this many expected |noise| per cell (AIM)


# --------------------------------------------------------------------------- public domains


@dataclass(frozen=True)
class ColumnDomain:
    """One column's public domain: ``size`` cells, from its declared metadata only."""

    name: str
    type: str
    values: tuple[Any, ...] = ()  # category / bool: the value of each cell (before a NULL cell)
    edges: tuple[float, ...] = ()  # int / float / date: bin edges (len = bins + 1)
    integer_bins: tuple[tuple[int, int], ...] = ()  # int: inclusive [lo, hi] integers of each bin
    nullable: bool = False

    @property
    def bins(self) -> int:
        if self.type in ("category", "bool"):
            return len(self.values)
        if self.type == "int":
            return len(self.integer_bins)
        return len(self.edges) - 1

    @property
    def size(self) -> int:
        return self.bins + (1 if self.nullable else 0)


def _meta(meta: Any) -> dict[str, Any]:
    if isinstance(meta, Mapping):
        got = dict(meta)
    else:
        got = {k: getattr(meta, k, None) for k in ("type", "lower", "upper", "categories", "nullable")}
    t = got.get("type")
    got["type"] = str(getattr(t, "value", t))
    got["nullable"] = bool(got.get("nullable") or False)
    return got


def _date_seconds(value: Any) -> float:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return float((ts - pd.Timestamp("1970-01-01")).total_seconds())


def _domain(name: str, meta: Any, bins: int) -> ColumnDomain:
    m = _meta(meta)
    t, nullable = m["type"], m["nullable"]
    if t == "category":
        if not m.get("categories"):
            raise InvalidJob(f"column {name}: a category column needs its declared categories to be synthesised", field="columns")
        return ColumnDomain(name, t, values=tuple(m["categories"]), nullable=nullable)
    if t == "bool":
        return ColumnDomain(name, t, values=(False, True), nullable=nullable)
    if t in ("int", "float", "date"):
        if m.get("lower") is None or m.get("upper") is None:
            raise InvalidJob(f"column {name}: a {t} column needs declared bounds to be synthesised", field="columns")
        if t == "int":
            lo, hi = int(m["lower"]), int(m["upper"])
            n = hi - lo + 1
            if n <= bins:
                groups = tuple((v, v) for v in range(lo, hi + 1))
            else:
                cuts = [lo + (n * b) // bins for b in range(bins + 1)]
                groups = tuple((cuts[b], cuts[b + 1] - 1) for b in range(bins))
            return ColumnDomain(name, t, integer_bins=groups, nullable=nullable)
        if t == "float":
            lo_f, hi_f = float(m["lower"]), float(m["upper"])
        else:
            lo_f, hi_f = _date_seconds(m["lower"]), _date_seconds(m["upper"])
        edges = tuple(float(e) for e in np.linspace(lo_f, hi_f, bins + 1))
        return ColumnDomain(name, t, edges=edges, nullable=nullable)
    raise InvalidJob(f"column {name}: type {t!r} cannot be synthesised", field="columns")


def column_domains(meta_columns: Mapping[str, Any], *, unit: str | None = None, bins: int = DEFAULT_BINS) -> list[ColumnDomain]:
    """The synthesised columns' public domains, in declared order (id and privacy-unit columns left out)."""
    if not isinstance(bins, int) or isinstance(bins, bool) or not MIN_BINS <= bins <= MAX_BINS:
        raise InvalidJob(f"bins must be an integer in [{MIN_BINS}, {MAX_BINS}]", field="bins")
    out = []
    for name, meta in meta_columns.items():
        if (unit is not None and name.lower() == unit.lower()) or _meta(meta)["type"] == "id":
            continue
        out.append(_domain(name, meta, bins))
    if not out:
        raise InvalidJob("no column to synthesise (id and privacy-unit columns are never synthesised)", field="columns")
    return out


def _key(value: Any, *, lower: bool) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)  # an int category read back as a float (a column with NULLs): 36.0 is "36"
    text = str(value)
    return text.lower() if lower else text


def encode(frame: pd.DataFrame, dom: ColumnDomain) -> np.ndarray:
    """Cell index of each row (``-1``: in no cell, e.g. an undeclared category or a NULL in a non-nullable column)."""
    col = frame[dom.name]
    null = col.isna().to_numpy()
    idx = np.full(len(col), -1, dtype=np.int64)
    if dom.type in ("category", "bool"):
        if dom.type == "bool":
            lookup = {"false": 0, "true": 1, "0": 0, "1": 1}
        else:
            lookup = {str(v): i for i, v in enumerate(dom.values)}
        keys = col.astype(object).map(lambda v: _key(v, lower=dom.type == "bool"))
        idx = keys.map(lambda k: lookup.get(k, -1) if k is not None else -1).to_numpy(dtype=np.int64)
    elif dom.type == "int":
        v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
        lo, hi = dom.integer_bins[0][0], dom.integer_bins[-1][1]
        ok = np.isfinite(v)
        vi = np.clip(np.round(np.where(ok, v, lo)), lo, hi).astype(np.int64)
        starts = np.array([g[0] for g in dom.integer_bins])
        idx = np.where(ok, np.searchsorted(starts, vi, side="right") - 1, -1)
        null = null | ~ok
    else:
        if dom.type == "date":
            ts = pd.to_datetime(col, errors="coerce", utc=True).dt.tz_localize(None)
            ok = ts.notna().to_numpy()
            # seconds since the epoch, whatever the datetime unit (pandas 3 parses to microseconds)
            v = np.where(ok, (ts - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy(dtype=float, na_value=0.0), 0.0)
        else:
            v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
            ok = np.isfinite(v)
        lo, hi = dom.edges[0], dom.edges[-1]
        b = dom.bins
        pos = (np.clip(np.where(ok, v, lo), lo, hi) - lo) / (hi - lo) * b
        idx = np.where(ok, np.clip(np.floor(pos), 0, b - 1).astype(np.int64), -1)
        null = null | ~ok
    if dom.nullable:
        idx = np.where(null, dom.bins, idx)
    else:
        idx = np.where(null, -1, idx)
    return idx.astype(np.int64)


def decode(cells: np.ndarray, dom: ColumnDomain, rng: np.random.Generator) -> pd.Series:
    """Values for cell indices: a category / bool as declared, a bin's value uniform inside it, NULL for the NULL cell."""
    is_null = cells == dom.bins if dom.nullable else np.zeros(len(cells), dtype=bool)
    safe = np.where(is_null, 0, cells)
    if dom.type in ("category", "bool"):
        vals = np.array(dom.values, dtype=object)[safe]
        if dom.type == "bool":
            s = pd.Series(vals, name=dom.name).astype("boolean" if dom.nullable else bool)
        else:
            s = pd.Series(vals, name=dom.name, dtype=object)
        if dom.nullable:
            s = s.mask(is_null)
        return s
    if dom.type == "int":
        lo = np.array([g[0] for g in dom.integer_bins])[safe]
        hi = np.array([g[1] for g in dom.integer_bins])[safe]
        v = rng.integers(lo, hi + 1)
        s = pd.Series(v, name=dom.name, dtype="Int64" if dom.nullable else "int64")
        return s.mask(is_null) if dom.nullable else s
    edges = np.asarray(dom.edges)
    v = rng.uniform(edges[safe], edges[safe + 1])
    if dom.type == "date":
        ts = pd.to_datetime(np.floor(v / 86400.0) * 86400.0, unit="s")
        s = pd.Series(ts, name=dom.name)
        return s.mask(is_null) if dom.nullable else s
    s = pd.Series(v, name=dom.name, dtype=float)
    return s.mask(is_null) if dom.nullable else s


def counts(cells: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """The (flattened) contingency table of some columns' cells; a row with a -1 counts nowhere."""
    keep = np.ones(len(cells[0]), dtype=bool)
    for c in cells:
        keep &= c >= 0
    flat = np.ravel_multi_index(tuple(c[keep] for c in cells), tuple(sizes)) if keep.any() else np.array([], dtype=np.int64)
    return np.bincount(flat, minlength=int(np.prod(sizes))).astype(np.int64)


# --------------------------------------------------------------------------- OpenDP measurements


@dataclass(frozen=True)
class GaussianCounts:
    """A count vector of `size` cells released with the project's discrete Gaussian
    (`mechanisms.gaussian.Gaussian`, integer: OpenDP's ``make_gaussian``, its scale calibrated so OpenDP's
    map is ≤ ρ, its draw timing-padded), ρ-zCDP when one unit moves it by at most `sensitivity` in L2.
    ``scale`` is σ."""

    size: int
    rho: Fraction
    sensitivity: int
    scale: float = field(init=False)
    _mechanism: Gaussian = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mechanism = Gaussian(rho=self.rho, sensitivity=self.sensitivity, integer=True)
        object.__setattr__(self, "scale", mechanism.scale)
        object.__setattr__(self, "_mechanism", mechanism)

    def release(self, vector: np.ndarray) -> np.ndarray:
        if len(vector) != self.size:
            raise ValueError(f"expected {self.size} counts, got {len(vector)}")
        return np.asarray(self._mechanism.release([int(x) for x in vector]), dtype=np.int64)


@dataclass(frozen=True)
class NoisyArgmax:
    """Report-noisy-max (Gumbel noise, the exponential mechanism) over `size` scores whose L∞
    sensitivity is `sensitivity`; ρ-zCDP by OpenDP's ``make_noisy_max`` map (ρ = Δ²/(2·scale²))."""

    size: int
    rho: Fraction
    sensitivity: int
    scale: float = field(init=False)
    _measurement: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # integer scores: their sensitivity is exactly k, with no floating-point rounding to argue about
        space = dp.vector_domain(dp.atom_domain(T="i64"), size=self.size), dp.linf_distance(T="i64")
        scale, measurement = calibrate(
            lambda s: dp.m.make_noisy_max(*space, dp.zero_concentrated_divergence(), scale=s),
            self.sensitivity / math.sqrt(2.0 * float(self.rho)),
            self.sensitivity,
            at_most(self.rho),
        )
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "_measurement", measurement)

    def release(self, scores: np.ndarray) -> int:
        return int(self._measurement([int(x) for x in scores]))


# --------------------------------------------------------------------------- the plan (public inputs only)


@dataclass(frozen=True)
class SynthesisPlan:
    """What a synthesis costs and how its budget splits, from public inputs only."""

    columns: tuple[ColumnDomain, ...]
    epsilon: Fraction
    delta: Fraction
    rho: Fraction
    rho_one_way: Fraction
    rho_select: Fraction
    rho_two_way: Fraction  # the clique marginals (2-way or wider) of the d − 1 rounds
    max_rows_per_unit: int
    one_way_scale: float
    two_way_scale: float | None
    select_scale: float | None

    @property
    def cost(self) -> Cost:
        return Cost(self.epsilon, self.delta, self.rho)

    def shares(self) -> list[tuple[str, Fraction]]:
        """Every measurement's ρ, in the order drawn: the d 1-ways, then per round its selection (d ≥ 3)
        and its clique marginal. They add up to ρ exactly (`plan_cost` asserts it)."""
        d = len(self.columns)
        out = [("one_way", self.rho_one_way / d)] * d
        for _ in range(d - 1):
            if d >= 3:
                out.append(("select", self.rho_select / (d - 1)))
            out.append(("clique", self.rho_two_way / (d - 1)))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            **self.cost.to_json(),
            "rho_split": {"one_way": str(self.rho_one_way), "select": str(self.rho_select), "two_way": str(self.rho_two_way)},
            "max_rows_per_unit": self.max_rows_per_unit,
            "columns": {c.name: c.size for c in self.columns},
            "noise": {"one_way_sigma": self.one_way_scale, "two_way_sigma": self.two_way_scale, "select_scale": self.select_scale},
            "max_clique": MAX_CLIQUE,
        }


def _split(rho: Fraction, d: int) -> tuple[Fraction, Fraction, Fraction]:
    """ρ₁ (1-ways), ρ_sel (selection), ρ₂ (clique marginals), in exact Fractions summing to ρ."""
    if d == 1:
        return rho, Fraction(0), Fraction(0)
    if d == 2:
        return rho / 2, Fraction(0), rho / 2
    r1, rs = rho * ONE_WAY_SHARE, rho * SELECT_SHARE
    return r1, rs, rho - r1 - rs


def plan_cost(
    meta_columns: Mapping[str, Any],
    *,
    epsilon: Any,
    delta: Any,
    max_rows_per_unit: int,
    unit: str | None = None,
    bins: int = DEFAULT_BINS,
) -> SynthesisPlan:
    """The (ε, δ) charged (exactly the one asked), its ρ and the split, from public inputs only."""
    try:
        eps = to_fraction(epsilon, name="epsilon")
        dlt = to_fraction(delta, name="delta")
    except (TypeError, ValueError) as e:
        raise InvalidJob(str(e), field="epsilon") from None
    if eps <= 0:
        raise InvalidJob("epsilon must be > 0", field="epsilon")
    if not 0 < dlt < 1:
        raise InvalidJob("delta must be in (0, 1): the synthesiser composes Gaussian measurements in zCDP", field="delta")
    if not isinstance(max_rows_per_unit, int) or isinstance(max_rows_per_unit, bool) or max_rows_per_unit < 1:
        raise InvalidJob("max_rows_per_unit must be a positive integer", field="max_rows_per_unit")
    doms = column_domains(meta_columns, unit=unit, bins=bins)
    widest = sorted((c.size for c in doms), reverse=True)[:2]
    if math.prod(widest) > MAX_CELLS:
        raise InvalidJob(f"the two widest columns have {math.prod(widest)} cells together; at most {MAX_CELLS} can be measured", field="columns")
    rho = epsilon_delta_to_rho(eps, dlt)
    if Fraction(rho_to_epsilon(rho, dlt)) > eps:  # the conversion is conservative; check it anyway
        raise AssertionError("rho converts to more than the epsilon charged")
    r1, rs, r2 = _split(rho, len(doms))
    assert r1 + rs + r2 == rho
    d, k = len(doms), max_rows_per_unit
    one = GaussianCounts(doms[0].size, r1 / d, k)
    two = GaussianCounts(1, r2 / (d - 1), k) if d >= 2 else None
    sel = NoisyArgmax(1, rs / (d - 1), k) if d >= 3 else None
    plan = SynthesisPlan(
        columns=tuple(doms), epsilon=eps, delta=dlt, rho=rho,
        rho_one_way=r1, rho_select=rs, rho_two_way=r2, max_rows_per_unit=k,
        one_way_scale=one.scale, two_way_scale=None if two is None else two.scale,
        select_scale=None if sel is None else sel.scale,
    )
    assert sum((s for _, s in plan.shares()), Fraction(0)) == rho
    return plan


# --------------------------------------------------------------------------- fitting (post-processing)


def project_simplex(y: np.ndarray, total: float) -> np.ndarray:
    """The Euclidean projection of `y` onto {x >= 0, Σx = total} (Duchi et al. 2008)."""
    y = np.asarray(y, dtype=float)
    if total <= 0:
        return np.zeros_like(y)
    u = np.sort(y)[::-1]
    css = np.cumsum(u) - total
    ind = np.arange(1, len(u) + 1)
    cond = u - css / ind > 0
    r = ind[cond][-1]
    theta = css[cond][-1] / r
    return np.maximum(y - theta, 0.0)


@dataclass(frozen=True)
class _Compressed:
    """MST's domain compression: the cells whose noisy 1-way count is below 3σ merge into one cell, so
    the 2-ways are measured on fewer, fuller cells. It reads only the released 1-way (post-processing)."""

    mapping: np.ndarray  # original cell -> compressed cell
    size: int
    counts: np.ndarray  # the 1-way on the compressed domain (noisy)
    variance: np.ndarray  # its noise variance per compressed cell
    within: np.ndarray  # each original cell's share of its merged cell (for expanding samples back)

    @staticmethod
    def of(y: np.ndarray, sigma: float) -> _Compressed:
        m = len(y)
        supported = y >= COMPRESS_SIGMAS * sigma
        if supported.sum() >= m - 1:
            return _Compressed(np.arange(m), m, y.astype(float), np.full(m, sigma**2), np.ones(m))
        rare = ~supported
        mapping = np.where(supported, np.cumsum(supported) - 1, int(supported.sum()))
        counts_ = np.append(y[supported].astype(float), float(y[rare].sum()))
        variance = np.append(np.full(int(supported.sum()), sigma**2), sigma**2 * rare.sum())
        within = np.ones(m)
        guess = np.maximum(y[rare].astype(float), 0.0)
        within[rare] = guess / guess.sum() if guess.sum() > 0 else 1.0 / rare.sum()
        return _Compressed(mapping, int(supported.sum()) + 1, counts_, variance, within)

    def compress(self, cells: np.ndarray) -> np.ndarray:
        return np.where(cells >= 0, self.mapping[np.maximum(cells, 0)], -1)

    def expand(self, cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.size == len(self.mapping):
            return cells
        rare = np.flatnonzero(self.mapping == self.size - 1)
        back = np.full(self.size, -1, dtype=np.int64)
        kept = self.mapping != self.size - 1
        back[self.mapping[kept]] = np.flatnonzero(kept)
        out = back[cells]
        merged = cells == self.size - 1
        p = self.within[rare] / self.within[rare].sum()
        out[merged] = rng.choice(rare, size=int(merged.sum()), p=p)
        return out


def _ipf_nd(table: np.ndarray, targets: list[tuple[tuple[int, ...], np.ndarray]]) -> np.ndarray:
    """Iterative proportional fitting of an n-way table to margins: each target is (axes kept, their table)."""
    t = table.copy()
    for _ in range(_IPF_ROUNDS):
        for axes, target in targets:
            other = tuple(a for a in range(t.ndim) if a not in axes)
            now = t.sum(axis=other, keepdims=True)
            want = np.expand_dims(target, other) if other else target
            t *= np.divide(want, now, out=np.zeros_like(now), where=now > 0)
    return t


@dataclass
class _Model:
    """A decomposable model grown one column at a time: clique t is ``parents[t] + (child[t],)`` and its
    separator ``parents[t]`` lies inside an earlier clique (or is one column already in), so the cliques
    in order satisfy the running-intersection property and the maximum-entropy distribution with these
    marginals is P = Π_t P(child_t | parents_t) · P(root): closed form, sampled ancestrally."""

    sizes: list[int]
    root: int = -1
    parents: list[tuple[int, ...]] = field(default_factory=list)
    child: list[int] = field(default_factory=list)
    tables: list[np.ndarray] = field(default_factory=list)  # each clique's probabilities, axes parents + child

    def columns(self) -> set[int]:
        return ({self.root} if self.root >= 0 else set()) | set(self.child)

    def clique(self, t: int) -> tuple[int, ...]:
        return (*self.parents[t], self.child[t])

    def separators(self, width: int) -> list[tuple[int, ...]]:
        """Every set of at most `width` columns inside one clique (sorted, each once): where a new column may attach."""
        out: set[tuple[int, ...]] = {(self.root,)} if self.root >= 0 else set()
        for t in range(len(self.child)):
            cols = sorted(self.clique(t))
            for r in range(1, min(width, len(cols)) + 1):
                out.update(itertools.combinations(cols, r))
        return sorted(out)

    def marginal(self, cols: tuple[int, ...], ones: list[np.ndarray]) -> np.ndarray:
        """The model's marginal on `cols` (a single column: its 1-way; more: from a clique holding them all)."""
        if len(cols) == 1:
            return ones[cols[0]]
        for t in range(len(self.child)):
            cl = self.clique(t)
            if set(cols) <= set(cl):
                m = self.tables[t].sum(axis=tuple(i for i, c in enumerate(cl) if c not in cols))
                kept = [c for c in cl if c in cols]
                return np.transpose(m, [kept.index(c) for c in cols])
        raise KeyError(cols)

    def fit_clique(self, t: int, noisy: np.ndarray, total: float, ones: list[np.ndarray]) -> None:
        """Clique t's table from its noisy counts: projected onto {x ≥ 0, Σx = N̂}, then fitted (IPF) to
        the model's marginal on its separator and to the child's 1-way, so it agrees with the earlier cliques."""
        cl = self.clique(t)
        shape = tuple(self.sizes[c] for c in cl)
        sep = self.marginal(self.parents[t], ones)
        base = np.multiply.outer(sep, ones[self.child[t]])
        table = project_simplex(noisy.astype(float), total).reshape(shape)
        table = table + 1e-9 * total * base  # so IPF can reach every cell the margins give mass to
        p = len(self.parents[t])
        fitted = _ipf_nd(table, [(tuple(range(p)), total * sep), ((p,), total * ones[self.child[t]])])
        s = fitted.sum()
        table = fitted / s if s > 0 else base
        if t < len(self.tables):
            self.tables[t] = table
        else:
            self.tables.append(table)


def selection_score(real: np.ndarray, reference: np.ndarray, total: float, penalty: float) -> int:
    """AIM's quality score of a candidate clique: ``‖real − round(total·reference)‖₁ − round(penalty·cells)``.
    `reference` (the model's prediction, as probabilities), `total` and `penalty` are public, so one unit
    (k rows, each in at most one cell of `real`) moves the score by at most k."""
    predicted = np.rint(total * np.asarray(reference, dtype=float).ravel()).astype(np.int64)
    return int(np.abs(np.asarray(real, dtype=np.int64) - predicted).sum()) - int(round(penalty * real.size))


def _select_and_measure(
    cells: list[np.ndarray], sizes: list[int], ones: list[np.ndarray], total: float, plan: SynthesisPlan
) -> tuple[_Model, list[np.ndarray]]:
    """The adaptive rounds (AIM-style, McKenna et al. 2022): each picks, by noisy max, a new column and
    the separator it joins, then measures that clique's marginal; the model is refitted on released values only."""
    d, k = len(sizes), plan.max_rows_per_unit
    model = _Model(sizes)
    noisy: list[np.ndarray] = []
    if d < 2:
        model.root = 0
        return model, noisy
    per_select = plan.rho_select / (d - 1)
    per_measure = plan.rho_two_way / (d - 1)
    sigma = plan.two_way_scale or 0.0
    penalty = SELECT_PENALTY * math.sqrt(2.0 / math.pi) * sigma  # expected |noise| per cell (public)
    # a clique of 3+ columns only where its expected noise (L1) is at most WIDE_NOISE_SHARE of N̂ (public σ, released N̂)
    wide_cells = min(MAX_CLIQUE_CELLS, int(WIDE_NOISE_SHARE * total / (math.sqrt(2.0 / math.pi) * sigma))) if sigma > 0 else MAX_CLIQUE_CELLS
    cache: dict[tuple[tuple[int, ...], int], int] = {}

    def score(sep: tuple[int, ...], v: int, reference: np.ndarray) -> int:
        key = (sep, v)  # the reference of (S, v) is fixed once S is in the model: earlier cliques are not refitted here
        if key not in cache:
            cache[key] = selection_score(counts([cells[c] for c in (*sep, v)], [sizes[c] for c in (*sep, v)]), reference, total, penalty)
        return cache[key]

    for rnd in range(d - 1):
        if rnd == 0:
            candidates = [((a,), b) for a in range(d) for b in range(a + 1, d)]
        else:
            inside = model.columns()
            seps = model.separators(MAX_CLIQUE - 1)
            candidates = [
                (s, v) for v in range(d) if v not in inside for s in seps
                if len(s) == 1 or math.prod(sizes[c] for c in (*s, v)) <= wide_cells
            ]
        if len(candidates) == 1:
            sep, v = candidates[0]
        else:
            scores = []
            for s, v in candidates:
                ref_sep = ones[s[0]] if rnd == 0 else model.marginal(s, ones)
                scores.append(score(s, v, np.multiply.outer(ref_sep, ones[v])))
            sep, v = candidates[NoisyArgmax(len(candidates), per_select, k).release(np.array(scores))]
        if rnd == 0:
            model.root = sep[0]
        model.parents.append(sep)
        model.child.append(v)
        cl = (*sep, v)
        shape = [sizes[c] for c in cl]
        y = GaussianCounts(math.prod(shape), per_measure, k).release(counts([cells[c] for c in cl], shape))
        noisy.append(y)
        model.fit_clique(len(noisy) - 1, y, total, ones)
    return model, noisy


def _reconcile(
    model: _Model, y1: list[np.ndarray], var1: list[np.ndarray], noisy: list[np.ndarray], sigma: float | None
) -> tuple[float, list[np.ndarray]]:
    """N̂ and the 1-ways from every measurement: each 1-way cell by inverse variance from its direct
    measurement and the margins of the cliques holding it; N̂ from all sums. Then the cliques are refitted in order."""
    s2 = (sigma or 1.0) ** 2
    est = [(float(v.sum()), float(var.sum())) for v, var in zip(y1, var1)] + [(float(v.sum()), s2 * v.size) for v in noisy]
    w = np.array([1.0 / var for _, var in est])
    total = max(float(np.dot(w, [e for e, _ in est]) / w.sum()), 1.0)
    num = [y.astype(float) / var for y, var in zip(y1, var1)]
    den = [1.0 / var for var in var1]
    for t, y in enumerate(noisy):
        cl = model.clique(t)
        table = y.reshape([model.sizes[c] for c in cl]).astype(float)
        for i, c in enumerate(cl):
            margin = table.sum(axis=tuple(a for a in range(len(cl)) if a != i))
            var = s2 * table.size / model.sizes[c]
            num[c], den[c] = num[c] + margin / var, den[c] + 1.0 / var
    ones = [project_simplex(n / dd, total) / total for n, dd in zip(num, den)]
    for t, y in enumerate(noisy):
        model.fit_clique(t, y, total, ones)
    return total, ones


def _systematic(n: int, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts summing to `n` with E[count_c] = n·p_c (systematic sampling: one uniform offset), far less
    variable than a multinomial draw, so the synthetic marginals follow the fitted ones closely."""
    cum = np.concatenate([[0.0], np.cumsum(p / p.sum())]) * n
    marks = np.floor(cum + rng.random())
    marks[-1] = marks[0] + n
    return np.diff(marks).astype(np.int64)


def _sample(rows: int, model: _Model, ones: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Ancestral sampling in clique order: the root's cells, then each clique's child given its parents,
    group by group (rows sharing the parents' cells), each group's counts systematic."""
    sizes = model.sizes
    out: list[np.ndarray | None] = [None] * len(sizes)
    out[model.root] = rng.permutation(np.repeat(np.arange(sizes[model.root]), _systematic(rows, ones[model.root], rng)))
    for t, v in enumerate(model.child):
        sep = model.parents[t]
        cond = model.tables[t].reshape(-1, sizes[v])
        key = np.ravel_multi_index(tuple(out[c] for c in sep), tuple(sizes[c] for c in sep))  # type: ignore[misc]
        values = np.empty(rows, dtype=np.int64)
        order = np.argsort(key, kind="stable")
        groups, starts = np.unique(key[order], return_index=True)
        for g, lo, hi in zip(groups, starts, [*starts[1:], rows]):
            where = order[lo:hi]
            row = cond[g] if cond[g].sum() > 0 else ones[v]
            values[where] = rng.permutation(np.repeat(np.arange(sizes[v]), _systematic(len(where), row, rng)))
        out[v] = values
    return [o for o in out if o is not None]


# --------------------------------------------------------------------------- the facade


def synthesize(
    frame: pd.DataFrame,
    meta_columns: Mapping[str, Any],
    *,
    epsilon: Any,
    delta: Any,
    rows: int | None = None,
    max_rows_per_unit: int,
    unit: str | None = None,
    seed: int | None = None,
    bins: int = DEFAULT_BINS,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A synthetic copy of `frame`'s declared columns (MST), and what it cost (see the module docstring).

    `frame` holds the bounded rows (at most `max_rows_per_unit` per unit); `meta_columns` the declared
    ``{name: ColumnMeta | dict}``. `rows` fixes the output size (public); otherwise it is N̂, a
    post-processing of the noisy marginals. `seed` seeds only the sampling, never the DP noise.
    """
    plan = plan_cost(meta_columns, epsilon=epsilon, delta=delta, max_rows_per_unit=max_rows_per_unit, unit=unit, bins=bins)
    if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or not 1 <= rows <= 10_000_000):
        raise InvalidJob("rows must be an integer in [1, 10000000]", field="rows")
    missing = [c.name for c in plan.columns if c.name not in frame.columns]
    if missing:
        raise InvalidJob(f"the frame lacks declared column {missing[0]}", field="columns")
    k = plan.max_rows_per_unit
    if unit is not None and unit in frame.columns:
        frame = frame.groupby(unit, sort=False, dropna=False).head(k)  # enforce the bound the proof needs
    doms = list(plan.columns)
    sizes = [c.size for c in doms]
    cells = [encode(frame, c) for c in doms]
    d = len(doms)
    y1 = [GaussianCounts(s, plan.rho_one_way / d, k).release(counts([c], [s])) for c, s in zip(cells, sizes)]
    s1 = plan.one_way_scale
    comp = [_Compressed.of(y, s1) for y in y1]
    cells = [cm.compress(c) for cm, c in zip(comp, cells)]
    sizes = [cm.size for cm in comp]
    # the selection's reference model: the noisy 1-ways, projected, at their own noisy total
    w = np.array([1.0 / (s1**2 * len(v)) for v in y1])
    total1 = max(float(np.dot(w, [v.sum() for v in y1]) / w.sum()), 1.0)
    ref = [project_simplex(cm.counts, total1) / total1 for cm in comp]
    model, noisy = _select_and_measure(cells, sizes, ref, total1, plan)
    total, ones = _reconcile(model, [cm.counts for cm in comp], [cm.variance for cm in comp], noisy, plan.two_way_scale)
    n_out = rows if rows is not None else max(int(round(total)), 1)
    rng = np.random.default_rng(seed)
    sampled = [cm.expand(x, rng) for cm, x in zip(comp, _sample(n_out, model, ones, rng))]
    out = pd.DataFrame({c.name: decode(s, c, rng) for c, s in zip(doms, sampled)})
    cliques = [tuple(doms[c].name for c in model.clique(t)) for t in range(len(model.child))]
    info = {**plan.to_json(), "cost": plan.cost, "plan": plan, "tree": cliques, "cliques": cliques,
            "rows": n_out, "noisy_total": total}
    return out, info


def tvd(real: pd.DataFrame, synth: pd.DataFrame, domains: list[ColumnDomain], *, way: int) -> float:
    """Average total-variation distance of the 1-way (``way=1``) or all 2-way marginals on the public domains."""
    rc = [encode(real, c) for c in domains]
    sc = [encode(synth, c) for c in domains]
    sizes = [c.size for c in domains]
    groups = [[i] for i in range(len(domains))] if way == 1 else [[i, j] for i in range(len(domains)) for j in range(i + 1, len(domains))]
    out = []
    for g in groups:
        p = counts([rc[i] for i in g], [sizes[i] for i in g]).astype(float)
        q = counts([sc[i] for i in g], [sizes[i] for i in g]).astype(float)
        out.append(0.5 * np.abs(p / max(p.sum(), 1) - q / max(q.sum(), 1)).sum())
    return float(np.mean(out))
