"""Private synthetic copies of a table: MST (McKenna, Miklau & Sheldon 2021) on OpenDP measurements.

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

The budget, in exact Fractions (ρ₁ + ρ_sel + ρ₂ = ρ):

1. 1-way marginals, ρ₁ = ρ/3 (split equally over the d columns). One unit moves at most k rows, and
   each row adds 1 to one cell of a marginal, so the count vector changes by at most k in L1 and, as all
   k rows may land in one cell, by at most k in L2 too (sqrt(k) only when they spread: we use the
   worst case k). Each marginal gets OpenDP's discrete Gaussian (``make_gaussian`` on
   ``vector_domain(atom_domain(i64))`` / ``l2_distance``), σ = k / sqrt(2·ρ₁/d), so ρ₁/d each.
2. Selection of a spanning tree, ρ_sel = ρ/3, Kruskal-style in d − 1 rounds of ρ_sel/(d − 1): each
   round picks, among pairs joining two components, the one with the largest score
   ``‖M_ij(D) − round(N̂·p̂_i ⊗ p̂_j)‖₁`` (the 2-way counts against the product of the noisy 1-ways,
   which are already public; an integer). The score moves by at most k (triangle inequality on the L1 change of M_ij), so
   its L∞ sensitivity is k; OpenDP's ``make_noisy_max`` with ``zero_concentrated_divergence`` (Gumbel
   noise, the exponential mechanism) at scale k / sqrt(2·ρ_round) is ρ_round-zCDP.
3. The selected tree's d − 1 2-way marginals, ρ₂ = ρ/3, ρ₂/(d − 1) each, sensitivity k as in 1.

Between 1 and 2, MST's domain compression (post-processing of the released 1-ways): in each column the
cells whose noisy count is below 3σ₁ merge into one, and the selection and the 2-ways work on these
compressed domains (a merged cell is expanded back at sampling, in proportion to the noisy 1-way). The
compression reads only released values, and the sensitivities above hold for any domain.

With d = 2 the only tree is data-independent and the split is ρ/2, 0, ρ/2; with d = 1, all of ρ goes
to the one 1-way. Each measurement's scale is calibrated so OpenDP's own privacy map is ≤ its exact
share (`mechanisms._opendp.calibrate`); shares compose sequentially (BS16 Lemma 2.3).

Fitting (post-processing, no privacy cost). Each noisy 1-way is combined, cell by cell and weighted by
inverse variance, with the row sums of the noisy 2-ways that touch it; the total N̂ likewise from all
marginals' sums. Each 1-way and 2-way is projected onto {x ≥ 0, Σx = N̂} (Euclidean), and each 2-way
is rescaled (IPF) to the reconciled 1-ways, so the marginals are non-negative and consistent. The
maximum-entropy distribution with these tree marginals is P(x) = Π_edges P(x_i, x_j) / Π_nodes
P(x_i)^(deg − 1), sampled ancestrally from a root; a bin becomes a value drawn uniformly inside it. The
sampling uses numpy's generator (seedable): only the measurements draw DP noise, through OpenDP.
"""

from __future__ import annotations

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
    "synthesize",
    "encode",
    "tvd",
]

DEFAULT_BINS = 16
MIN_BINS, MAX_BINS = 2, 64
_IPF_ROUNDS = 30
MAX_CELLS = 4_000_000  # the largest 2-way marginal measured (public: from the declared domains)


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
    rho_two_way: Fraction
    max_rows_per_unit: int
    one_way_scale: float
    two_way_scale: float | None
    select_scale: float | None

    @property
    def cost(self) -> Cost:
        return Cost(self.epsilon, self.delta, self.rho)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.cost.to_json(),
            "rho_split": {"one_way": str(self.rho_one_way), "select": str(self.rho_select), "two_way": str(self.rho_two_way)},
            "max_rows_per_unit": self.max_rows_per_unit,
            "columns": {c.name: c.size for c in self.columns},
            "noise": {"one_way_sigma": self.one_way_scale, "two_way_sigma": self.two_way_scale, "select_scale": self.select_scale},
        }


def _split(rho: Fraction, d: int) -> tuple[Fraction, Fraction, Fraction]:
    if d == 1:
        return rho, Fraction(0), Fraction(0)
    if d == 2:
        return rho / 2, Fraction(0), rho / 2
    return rho / 3, rho / 3, rho - 2 * (rho / 3)


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
    return SynthesisPlan(
        columns=tuple(doms), epsilon=eps, delta=dlt, rho=rho,
        rho_one_way=r1, rho_select=rs, rho_two_way=r2, max_rows_per_unit=k,
        one_way_scale=one.scale, two_way_scale=None if two is None else two.scale,
        select_scale=None if sel is None else sel.scale,
    )


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


def _ipf(table: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    t = table.copy()
    for _ in range(_IPF_ROUNDS):
        rs = t.sum(axis=1)
        t *= np.divide(row, rs, out=np.zeros_like(row), where=rs > 0)[:, None]
        cs = t.sum(axis=0)
        t *= np.divide(col, cs, out=np.zeros_like(col), where=cs > 0)[None, :]
    return t


def _spanning_tree(
    cells: list[np.ndarray], sizes: list[int], one_way: list[np.ndarray], total: float, plan: SynthesisPlan
) -> list[tuple[int, int]]:
    d = len(sizes)
    if d < 2:
        return []
    if d == 2:
        return [(0, 1)]
    pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
    probs = [p / p.sum() if p.sum() > 0 else np.full(len(p), 1.0 / len(p)) for p in one_way]
    score = {}
    for i, j in pairs:
        real = counts([cells[i], cells[j]], [sizes[i], sizes[j]])
        reference = np.rint(total * np.outer(probs[i], probs[j]).ravel()).astype(np.int64)  # public
        score[(i, j)] = int(np.abs(real - reference).sum())
    comp = list(range(d))

    def find(a: int) -> int:
        while comp[a] != a:
            comp[a] = comp[comp[a]]
            a = comp[a]
        return a

    edges: list[tuple[int, int]] = []
    per_round = plan.rho_select / (d - 1)
    for _ in range(d - 1):
        candidates = [p for p in pairs if find(p[0]) != find(p[1])]
        pick = NoisyArgmax(len(candidates), per_round, plan.max_rows_per_unit)
        i, j = candidates[pick.release(np.array([score[p] for p in candidates]))]
        comp[find(i)] = find(j)
        edges.append((i, j))
    return edges


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
        supported = y >= 3.0 * sigma
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


def _fit(
    sizes: list[int], y1: list[np.ndarray], var1: list[np.ndarray], y2: dict[tuple[int, int], np.ndarray], s2: float | None
) -> tuple[float, list[np.ndarray], dict[tuple[int, int], np.ndarray]]:
    """Consistent non-negative marginals (as probabilities) and the total N̂, from the noisy counts
    (`var1`: each 1-way cell's noise variance; a 2-way cell's is s2²)."""
    # total: inverse-variance average of every marginal's sum (var of a sum = Σ of its cells' variances)
    est = [(float(v.sum()), float(var.sum())) for v, var in zip(y1, var1)] + [(float(v.sum()), (s2 or 1.0) ** 2 * v.size) for v in y2.values()]
    w = np.array([1.0 / var for _, var in est])
    total = max(float(np.dot(w, [e for e, _ in est]) / w.sum()), 1.0)
    # 1-ways: the direct measurement and each incident 2-way's margin, per cell by inverse variance
    ones = []
    for i, size in enumerate(sizes):
        num, den = y1[i].astype(float) / var1[i], 1.0 / var1[i]
        for (a, b), t in y2.items():
            if i in (a, b):
                table = t.reshape(sizes[a], sizes[b]).astype(float)
                margin, other = (table.sum(axis=1), sizes[b]) if i == a else (table.sum(axis=0), sizes[a])
                var = (s2 or 1.0) ** 2 * other
                num, den = num + margin / var, den + 1.0 / var
        ones.append(project_simplex(num / den, total))
    twos = {}
    for (a, b), t in y2.items():
        table = project_simplex(t.astype(float), total).reshape(sizes[a], sizes[b])
        table += 1e-9 * total * np.outer(ones[a], ones[b]) / total**2  # so IPF can reach every 1-way cell
        twos[(a, b)] = _ipf(table, ones[a], ones[b])
    return total, [o / total for o in ones], {e: t / t.sum() for e, t in twos.items()}


def _systematic(n: int, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts summing to `n` with E[count_c] = n·p_c (systematic sampling: one uniform offset), far less
    variable than a multinomial draw, so the synthetic marginals follow the fitted ones closely."""
    cum = np.concatenate([[0.0], np.cumsum(p / p.sum())]) * n
    marks = np.floor(cum + rng.random())
    marks[-1] = marks[0] + n
    return np.diff(marks).astype(np.int64)


def _sample(rows: int, sizes: list[int], p1: list[np.ndarray], p2: dict[tuple[int, int], np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Ancestral sampling along the tree from a root: the root's cells, then each child given its
    parent, group by group (rows sharing the parent's cell), each group's counts systematic."""
    d = len(sizes)
    adj: dict[int, list[int]] = {i: [] for i in range(d)}
    for a, b in p2:
        adj[a].append(b)
        adj[b].append(a)
    out: list[np.ndarray | None] = [None] * d
    for root in range(d):
        if out[root] is not None:
            continue
        out[root] = rng.permutation(np.repeat(np.arange(sizes[root]), _systematic(rows, p1[root], rng)))
        queue = [root]
        while queue:
            parent = queue.pop(0)
            pv = out[parent]
            assert pv is not None
            for child in adj[parent]:
                if out[child] is not None:
                    continue
                joint = p2[(parent, child)] if (parent, child) in p2 else p2[(child, parent)].T
                values = np.empty(rows, dtype=np.int64)
                for v in range(sizes[parent]):
                    where = np.flatnonzero(pv == v)
                    if len(where) == 0:
                        continue
                    row = joint[v] if joint[v].sum() > 0 else p1[child]
                    values[where] = rng.permutation(np.repeat(np.arange(sizes[child]), _systematic(len(where), row, rng)))
                out[child] = values
                queue.append(child)
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
    ref = [project_simplex(cm.counts, total1) for cm in comp]
    edges = _spanning_tree(cells, sizes, ref, total1, plan)
    y2 = {}
    for a, b in edges:
        y2[(a, b)] = GaussianCounts(sizes[a] * sizes[b], plan.rho_two_way / (d - 1), k).release(counts([cells[a], cells[b]], [sizes[a], sizes[b]]))
    total, p1, p2 = _fit(sizes, [cm.counts for cm in comp], [cm.variance for cm in comp], y2, plan.two_way_scale)
    n_out = rows if rows is not None else max(int(round(total)), 1)
    rng = np.random.default_rng(seed)
    sampled = [cm.expand(x, rng) for cm, x in zip(comp, _sample(n_out, sizes, p1, p2, rng))]
    out = pd.DataFrame({c.name: decode(s, c, rng) for c, s in zip(doms, sampled)})
    info = {**plan.to_json(), "cost": plan.cost, "plan": plan, "tree": [(doms[a].name, doms[b].name) for a, b in edges],
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
