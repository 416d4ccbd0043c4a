"""MST synthesis (`training.synthetic`): public domains, the exact budget split, OpenDP noise at its
claimed scale, output shape and types, and fidelity that grows with ε.

Statistical tests state their false-failure rate; OpenDP's noise cannot be seeded (CSPRNG), so the
fidelity checks use margins that a correct implementation misses with negligible probability.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from mechanisms.accounting import rho_to_epsilon
from mechanisms.cost import Cost
from training.errors import InvalidJob
from training.synthetic import (
    MAX_CLIQUE,
    MAX_CLIQUE_CELLS,
    ONE_WAY_SHARE,
    WIDE_NOISE_SHARE,
    SELECT_SHARE,
    GaussianCounts,
    _Compressed,
    NoisyArgmax,
    column_domains,
    counts,
    encode,
    plan_cost,
    project_simplex,
    selection_score,
    synthesize,
    tvd,
)

META = {
    "uid": {"type": "id"},
    "row_id": {"type": "id"},
    "colour": {"type": "category", "categories": ["red", "green", "blue", "violet"]},
    "size": {"type": "category", "categories": ["s", "m", "l"]},
    "amount": {"type": "float", "lower": 0.0, "upper": 100.0},
    "count": {"type": "int", "lower": 0, "upper": 9, "nullable": True},
    "when": {"type": "date", "lower": "2020-01-01", "upper": "2021-01-01"},
    "flag": {"type": "bool"},
}


def correlated(n: int, seed: int = 0) -> pd.DataFrame:
    """A tree-structured table: colour -> size -> amount -> flag, count and when loosely tied to colour.
    'violet' is declared but never present."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    size = np.where(rng.random(n) < 0.8, colour, rng.integers(0, 3, n))
    amount = np.clip(size * 30 + rng.normal(10, 6, n), 0, 100)
    flag = amount + rng.normal(0, 10, n) > 45
    count = np.where(rng.random(n) < 0.1, np.nan, np.clip(colour * 3 + rng.integers(0, 3, n), 0, 9))
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 366, n), unit="D")
    return pd.DataFrame({
        "uid": np.arange(n), "row_id": np.arange(n) + 10**6,
        "colour": np.array(["red", "green", "blue"])[colour], "size": np.array(["s", "m", "l"])[size],
        "amount": amount, "count": pd.array(count, dtype="Float64").astype("Int64"), "when": when, "flag": flag,
    })


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return correlated(20_000)


def test_unit_and_id_columns_are_not_synthesised_and_types_are_as_declared(table: pd.DataFrame) -> None:
    out, info = synthesize(table, META, epsilon=5, delta=1e-6, max_rows_per_unit=1, unit="uid", seed=3, rows=500)
    assert list(out.columns) == ["colour", "size", "amount", "count", "when", "flag"]
    assert len(out) == 500 and info["rows"] == 500
    assert out["colour"].dtype == object and set(out["colour"]) <= {"red", "green", "blue", "violet"}
    assert out["amount"].dtype == np.float64 and out["amount"].between(0, 100).all()
    assert str(out["count"].dtype) == "Int64" and out["count"].dropna().between(0, 9).all()
    assert pd.api.types.is_datetime64_any_dtype(out["when"])
    assert out["when"].between(pd.Timestamp("2020-01-01"), pd.Timestamp("2021-01-01")).all()
    assert out["flag"].dtype == bool
    assert out["when"].dt.quarter.nunique() == 4 and out["flag"].nunique() == 2
    assert {a for e in info["tree"] for a in e} == set(out.columns) and len(info["tree"]) == 5


def test_undeclared_category_never_appears_and_declared_absent_one_may() -> None:
    frame = pd.DataFrame({"c": ["a"] * 60 + ["b"] * 40 + ["zzz"] * 100, "d": ["x", "y"] * 100})
    meta = {"c": {"type": "category", "categories": ["a", "b", "never"]}, "d": {"type": "category", "categories": ["x", "y"]}}
    seen: set[str] = set()
    for seed in range(40):
        # ε tiny: the counts are mostly noise, so the declared-but-absent 'never' gets mass in ~40 % of runs
        out, _ = synthesize(frame, meta, epsilon=0.01, delta=1e-6, max_rows_per_unit=1, rows=300, seed=seed)
        seen |= set(out["c"])
    assert "zzz" not in seen
    assert "never" in seen  # fails only if 40 runs all zero it: a false-failure rate ~0.6^40 < 1e-8
    assert seen <= {"a", "b", "never"}


def test_bin_edges_come_from_the_declared_bounds_only() -> None:
    narrow = correlated(2_000, seed=1)
    wide = narrow.assign(amount=narrow["amount"] * 5 - 200)  # far outside the declared [0, 100]
    _, info_a = synthesize(narrow, META, epsilon=1, delta=1e-6, max_rows_per_unit=1, unit="uid", seed=0)
    out_b, info_b = synthesize(wide, META, epsilon=1, delta=1e-6, max_rows_per_unit=1, unit="uid", seed=0)
    assert info_a["plan"].columns == info_b["plan"].columns == tuple(column_domains(META, unit="uid"))
    amount = next(c for c in info_a["plan"].columns if c.name == "amount")
    assert amount.edges == tuple(np.linspace(0.0, 100.0, 17))
    count = next(c for c in info_a["plan"].columns if c.name == "count")
    assert count.integer_bins == tuple((v, v) for v in range(10)) and count.size == 11  # + NULL
    assert out_b["amount"].between(0, 100).all()
    cells = encode(pd.DataFrame({"amount": [0.0, 6.24, 6.26, 50.0, 99.9, 100.0, 1e9, float("nan")]}), amount)
    assert cells.tolist() == [0, 0, 1, 8, 15, 15, 15, -1]


def test_domains_come_from_metadata_and_refuse_what_is_undeclared() -> None:
    with pytest.raises(InvalidJob, match="categories"):
        column_domains({"c": {"type": "category"}})
    with pytest.raises(InvalidJob, match="bounds"):
        column_domains({"x": {"type": "float"}})
    many = {"type": "category", "categories": [f"c{i}" for i in range(3000)]}
    with pytest.raises(InvalidJob, match="cells"):
        plan_cost({"a": many, "b": many}, epsilon=1, delta=1e-6, max_rows_per_unit=1)
    terms = column_domains({"term": {"type": "category", "categories": [36, 60]}})[0]
    assert encode(pd.DataFrame({"term": [36, 60.0, None, "60", 37]}), terms).tolist() == [0, 1, -1, 1, -1]
    with pytest.raises(InvalidJob, match="no column"):
        column_domains({"uid": {"type": "id"}})
    wide = column_domains({"n": {"type": "int", "lower": 0, "upper": 999}}, bins=8)[0]
    assert wide.integer_bins[0] == (0, 124) and wide.integer_bins[-1] == (875, 999) and wide.size == 8
    cells = encode(pd.DataFrame({"n": [-5, 0, 124, 125, 999, 5000, None]}), wide)
    assert cells.tolist() == [0, 0, 0, 1, 7, 7, -1]  # clamped in; NULL in a non-nullable column: no cell
    quarter = column_domains({"w": {"type": "date", "lower": "2020-01-01", "upper": "2021-01-01", "nullable": True}}, bins=4)[0]
    days = ["2020-01-05", "2020-04-15", "2020-08-01", "2020-12-30", None]
    for frame in (pd.DataFrame({"w": days}), pd.DataFrame({"w": pd.to_datetime(days)}),
                  pd.DataFrame({"w": pd.to_datetime(days).astype("datetime64[s]")})):
        assert encode(frame, quarter).tolist() == [0, 1, 2, 3, 4]  # any datetime unit; NULL is cell 4


def test_budget_split_is_exact_and_converts_within_the_charge() -> None:
    plan = plan_cost(META, epsilon=Fraction(1), delta=Fraction(1, 10**6), max_rows_per_unit=3, unit="uid")
    d = len(plan.columns)
    assert d == 6
    assert plan.rho_one_way + plan.rho_select + plan.rho_two_way == plan.rho
    assert plan.rho_one_way == plan.rho * ONE_WAY_SHARE and plan.rho_select == plan.rho * SELECT_SHARE
    assert plan.rho_two_way == plan.rho * (1 - ONE_WAY_SHARE - SELECT_SHARE)
    # the shares of every single measurement add back to ρ exactly
    shares = [plan.rho_one_way / d] * d + [plan.rho_select / (d - 1)] * (d - 1) + [plan.rho_two_way / (d - 1)] * (d - 1)
    assert sum(shares, Fraction(0)) == plan.rho
    assert sorted(s for _, s in plan.shares()) == sorted(shares)  # one selection and one clique a round
    assert [kind for kind, _ in plan.shares()] == ["one_way"] * d + ["select", "clique"] * (d - 1)
    assert Fraction(rho_to_epsilon(plan.rho, plan.delta)) <= 1
    assert plan.rho >= (math.sqrt(math.log(1e6) + 1) - math.sqrt(math.log(1e6))) ** 2  # at least the textbook ρ
    assert plan.cost == Cost(Fraction(1), Fraction(1, 10**6), plan.rho)
    # σ = k / sqrt(2 ρ_i), up to OpenDP's conservative rounding
    assert plan.one_way_scale == pytest.approx(3 / math.sqrt(2 * float(plan.rho_one_way / d)), rel=1e-9)
    assert plan.two_way_scale == pytest.approx(3 / math.sqrt(2 * float(plan.rho_two_way / (d - 1))), rel=1e-9)
    assert plan.select_scale == pytest.approx(3 / math.sqrt(2 * float(plan.rho_select / (d - 1))), rel=1e-9)
    two = plan_cost({"a": {"type": "bool"}, "b": {"type": "bool"}}, epsilon=1, delta=1e-6, max_rows_per_unit=1)
    assert (two.rho_one_way, two.rho_select, two.rho_two_way) == (two.rho / 2, 0, two.rho / 2)
    one = plan_cost({"a": {"type": "bool"}}, epsilon=1, delta=1e-6, max_rows_per_unit=1)
    assert (one.rho_one_way, one.rho_select, one.rho_two_way) == (one.rho, 0, 0)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"delta": 0}, "delta"), ({"epsilon": -1}, "epsilon"), ({"max_rows_per_unit": 0}, "max_rows_per_unit"), ({"bins": 1}, "bins")],
)
def test_bad_parameters_are_refused_before_any_measurement(kwargs: dict, field: str) -> None:
    args = {"epsilon": 1, "delta": 1e-6, "max_rows_per_unit": 1, **kwargs}
    with pytest.raises(InvalidJob) as err:
        plan_cost(META, **args)
    assert err.value.fields["field"] == field and err.value.code == "invalid_request"


def test_one_way_noise_has_the_claimed_scale() -> None:
    """400 releases of a fixed 50-cell histogram: the empirical σ of 20,000 draws is within 10 % of the
    claimed one (its relative standard error is ~0.5 %: a false-failure rate far below 1e-9)."""
    plan = plan_cost(META, epsilon=2, delta=1e-6, max_rows_per_unit=2, unit="uid")
    mech = GaussianCounts(50, plan.rho_one_way / len(plan.columns), 2)
    assert mech.scale == plan.one_way_scale
    truth = np.arange(50) * 7
    draws = np.stack([mech.release(truth) for _ in range(400)]) - truth
    assert abs(draws.mean()) < 5 * mech.scale / math.sqrt(draws.size)
    assert draws.std() == pytest.approx(mech.scale, rel=0.10)


def test_selection_is_report_noisy_max_at_its_claimed_cost() -> None:
    mech = NoisyArgmax(4, Fraction(1, 100), 2)
    assert mech.scale == pytest.approx(2 / math.sqrt(2 * 0.01), rel=1e-9)
    picks = [mech.release(np.array([0, 10_000, 0, 5])) for _ in range(20)]
    assert picks == [1] * 20  # a gap of ~700 scales: never missed in practice


def test_projection_is_onto_the_scaled_simplex() -> None:
    x = project_simplex(np.array([5.0, -3.0, 2.0, 0.5]), 6.0)
    assert x.min() >= 0 and x.sum() == pytest.approx(6.0)
    assert x.tolist() == pytest.approx([4.5, 0.0, 1.5, 0.0])


def test_fidelity_is_high_at_large_epsilon_and_lower_at_small(table: pd.DataFrame) -> None:
    doms = column_domains(META, unit="uid")
    big, _ = synthesize(table, META, epsilon=50, delta=1e-6, max_rows_per_unit=1, unit="uid", seed=1)
    small, _ = synthesize(table, META, epsilon=0.02, delta=1e-6, max_rows_per_unit=1, unit="uid", seed=1)
    one_big, two_big = tvd(table, big, doms, way=1), tvd(table, big, doms, way=2)
    assert one_big < 0.05 and two_big < 0.05
    assert tvd(table, small, doms, way=2) > two_big + 0.02
    assert abs(len(big) - len(table)) < 200  # the noisy total


def test_rows_per_unit_are_bounded_when_the_unit_column_is_present() -> None:
    # one unit with 5,000 identical rows among 1,000 single-row units: bounded to k = 1, it cannot dominate
    base = pd.DataFrame({"uid": np.arange(1000), "c": np.where(np.arange(1000) % 2 == 0, "a", "b")})
    heavy = pd.DataFrame({"uid": [-1] * 5000, "c": ["a"] * 5000})
    frame = pd.concat([base, heavy], ignore_index=True)
    meta = {"uid": {"type": "id"}, "c": {"type": "category", "categories": ["a", "b"]}}
    out, info = synthesize(frame, meta, epsilon=20, delta=1e-6, max_rows_per_unit=1, unit="uid", seed=0)
    assert abs(info["noisy_total"] - 1001) < 50
    assert (out["c"] == "a").mean() == pytest.approx(0.5, abs=0.06)


def test_compression_merges_cells_below_three_sigma_and_expands_back_into_them() -> None:
    noisy = np.array([500, 3, -4, 200, 10, 0])
    comp = _Compressed.of(noisy, 5.0)  # 3σ = 15: cells 1, 2, 4, 5 merge
    assert comp.size == 3 and comp.mapping.tolist() == [0, 2, 2, 1, 2, 2]
    assert comp.counts.tolist() == [500, 200, 9] and comp.variance.tolist() == [25, 25, 100]
    assert comp.compress(np.array([0, 1, 3, 5, -1])).tolist() == [0, 2, 1, 2, -1]
    back = comp.expand(np.array([0, 1] + [2] * 400), np.random.default_rng(0))
    assert back[:2].tolist() == [0, 3] and set(back[2:]) <= {1, 4, 5}  # shares 3:0:10:0 -> 1 and 4 only
    assert set(back[2:]) == {1, 4}
    assert _Compressed.of(np.array([100, 90, 2]), 5.0).size == 3  # one rare cell alone is not merged


def test_split_for_three_columns_is_exact_with_one_selection_and_one_clique_a_round() -> None:
    meta = {c: {"type": "bool"} for c in "abc"}
    for eps in (Fraction(1, 3), 1, Fraction(7, 2)):
        plan = plan_cost(meta, epsilon=eps, delta=Fraction(1, 10**7), max_rows_per_unit=2)
        assert sum((s for _, s in plan.shares()), Fraction(0)) == plan.rho  # exact, no float
        assert all(isinstance(s, Fraction) and s > 0 for _, s in plan.shares())
        assert len(plan.shares()) == 3 + 2 * 2
        assert plan.to_json()["max_clique"] == MAX_CLIQUE


def test_clique_counts_and_scores_move_by_at_most_k_when_one_unit_is_added() -> None:
    """Adding one unit of k rows (anywhere, all in one cell or spread, some in no cell) changes a 3-way
    count vector by <= k in L1 and L2, and the selection score by <= k, whatever the public reference."""
    rng = np.random.default_rng(7)
    sizes = [4, 3, 5]
    for trial in range(300):
        k = int(rng.integers(1, 6))
        n = int(rng.integers(0, 200))
        base = [rng.integers(-1, s, n) for s in sizes]  # -1: a value in no declared cell
        if trial % 3 == 0:
            extra = [np.full(k, int(rng.integers(0, s))) for s in sizes]  # all k rows in one cell
        else:
            extra = [rng.integers(-1, s, k) for s in sizes]
        with_unit = [np.concatenate([b, e]) for b, e in zip(base, extra)]
        m0, m1 = counts(base, sizes), counts(with_unit, sizes)
        assert m0.size == m1.size == 60
        diff = (m1 - m0).astype(float)
        assert np.abs(diff).sum() <= k and math.sqrt((diff**2).sum()) <= k
        ref = rng.dirichlet(np.ones(60))
        total = float(rng.uniform(1, 300))
        penalty = float(rng.uniform(0, 10))
        assert abs(selection_score(m1, ref, total, penalty) - selection_score(m0, ref, total, penalty)) <= k


def test_clique_noise_has_the_claimed_scale() -> None:
    """300 releases of a fixed 3-way table (4·3·5 cells) at the clique share: the empirical σ of
    18,000 draws is within 10 % of the plan's (relative standard error ~0.5 %: false failures < 1e-9)."""
    plan = plan_cost(META, epsilon=3, delta=1e-6, max_rows_per_unit=2, unit="uid")
    mech = GaussianCounts(60, plan.rho_two_way / (len(plan.columns) - 1), 2)
    assert mech.scale == plan.two_way_scale
    assert mech.scale == pytest.approx(2 / math.sqrt(2 * float(plan.rho_two_way / (len(plan.columns) - 1))), rel=1e-9)
    truth = np.arange(60) * 3
    draws = np.stack([mech.release(truth) for _ in range(300)]) - truth
    assert abs(draws.mean()) < 5 * mech.scale / math.sqrt(draws.size)
    assert draws.std() == pytest.approx(mech.scale, rel=0.10)


def _xor(n: int = 6_000) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    frame = pd.DataFrame({"a": np.array(["x", "y"])[a], "b": np.array(["p", "q"])[b], "c": np.array(["0", "1"])[a ^ b]})
    frame.loc[:99, "a"] = "undeclared"
    meta = {"a": {"type": "category", "categories": ["x", "y", "z"]}, "b": {"type": "category", "categories": ["p", "q"]},
            "c": {"type": "category", "categories": ["0", "1"]}}
    return frame, meta


def test_a_three_way_clique_captures_what_no_tree_can_on_the_declared_domain() -> None:
    """c = a XOR b: every pair is independent, so a spanning tree cannot keep the relation; a clique
    (a, b, c) does. Undeclared values in the rows never appear, and the clique is measured on the
    declared (compressed) domain only."""
    frame, meta = _xor()
    out, info = synthesize(frame, meta, epsilon=20, delta=1e-6, max_rows_per_unit=1, seed=0)
    assert any(len(cl) == 3 for cl in info["cliques"]) and len(info["cliques"]) == 2
    three = next(cl for cl in info["cliques"] if len(cl) == 3)
    assert set(three) == {"a", "b", "c"}
    assert set(out["a"]) <= {"x", "y", "z"}
    held = ((out["a"] == "y") ^ (out["b"] == "q")) == (out["c"] == "1")
    assert held[out["a"] != "z"].mean() > 0.95  # a tree gives ~0.5
    # the clique never exceeds the declared cells: 3 (a) x 2 x 2 before compression
    assert math.prod(c.size for c in info["plan"].columns) == 12 <= MAX_CLIQUE_CELLS


def test_no_wide_clique_where_its_expected_noise_exceeds_the_cap() -> None:
    """At ε = 0.001 a 2·2·2 clique's expected noise (sqrt(2/π)·σ₂·8) is over WIDE_NOISE_SHARE of any
    N̂ below 100,000, so every round measures a 2-way, even on the XOR table whose 3-way gain is large.
    The selection's N̂ (6,000 rows; the mean of three noisy 1-way sums, σ about 13,000) exceeds 100,000
    with probability < 1e-8."""
    frame, meta = _xor()
    plan = plan_cost(meta, epsilon=Fraction(1, 1000), delta=1e-6, max_rows_per_unit=1)
    assert math.sqrt(2 / math.pi) * plan.two_way_scale * 8 > WIDE_NOISE_SHARE * 100_000
    for seed in range(3):
        _, info = synthesize(frame, meta, epsilon=Fraction(1, 1000), delta=1e-6, max_rows_per_unit=1, seed=seed)
        assert [len(c) for c in info["cliques"]] == [2, 2]
