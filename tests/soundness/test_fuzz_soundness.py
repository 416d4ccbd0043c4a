"""Property: no generated aggregate moves by more than its planned sensitivity between neighbouring datasets.

The soundness fuzzer (`tests/soundness/check.py`) over random expressions of the scalar allow-list
(`tests/soundness/gen.py`) on an adversarial table: NULL where declared non-nullable, ±inf, NaN, ±1e308,
-0.0, values beyond the declared bounds, decomposed unicode, dates in year 1 and 9999, and comparisons
with the privacy unit that make one unit's value differ. Neighbours are the table with and without each
target unit's rows. Here: the review's concrete cases, controls that the check has the power to see a
wrong plan, and a fixed slice of generated expressions (a larger run is `slow`;
`bench/soundness.py` is the large one).
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from tests.soundness import gen
from tests.soundness.check import Soundness, Violation, query

NULL_FOR_C42 = "CASE WHEN customer_id = 'c42' THEN NULL ELSE 0 END"
FORMS = ["SUM({e})", "AVG({e})", "VARIANCE({e})", "COUNT({e})", "MEDIAN({e})"]

#: the review's finding and its relatives: LEAST/GREATEST skip NULL operands on DuckDB
LEAST_GREATEST = [
    f"LEAST(balance, {NULL_FOR_C42})",  # the review's case
    f"LEAST(fee, {NULL_FOR_C42})",  # the same over bounds above 0: planned [0, 0] before the fix, released exactly
    "LEAST(balance, bonus)",  # bonus nullable in [0, 1]
    "LEAST(bonus, balance)",
    f"GREATEST(balance, {NULL_FOR_C42})",
    f"GREATEST(-balance, {NULL_FOR_C42})",
    "GREATEST(balance, bonus)",
    "GREATEST(LEAST(balance, bonus), CASE WHEN customer_id = 'c45' THEN NULL ELSE -1 END)",
    "LEAST(GREATEST(CASE WHEN customer_id IN ('c42', 'c44') THEN NULL ELSE fee END, 0), 10)",
    "LEAST(fee, CASE WHEN customer_id = 'c44' THEN NULL ELSE 5 END)",  # fee declared non-nullable, NULL in the data
    "LEAST(GREATEST(fee, 1), 1000)",
    "GREATEST(qty, level, CASE WHEN customer_id = 'c43' THEN NULL END)",
    "LEAST(balance, TRY_CAST(note AS DOUBLE))",  # a failed cast is NULL
    "GREATEST(balance / qty, 0)",  # a division by zero is NULL
    "LEAST(age % level, 2)",
    "LEAST(COALESCE(bonus, balance), NULLIF(1, 1))",  # refused (NULLIF): counted, not checked
]


def _explain(found: list[Violation]) -> str:
    return "\n".join(v.line() for v in found[:10]) + (f"\n... {len(found)} in all" if len(found) > 10 else "")


@pytest.fixture(scope="module")
def fuzz() -> Soundness:
    return Soundness(faithful_every=1)


@pytest.mark.parametrize("expr", LEAST_GREATEST)
@pytest.mark.parametrize("where, key", [(None, None), ("flag OR customer_id = 'c42'", "cat")])
def test_least_greatest_within_their_sensitivity(fuzz: Soundness, expr: str, where: str | None, key: str | None) -> None:
    accepted = fuzz.stats.accepted_forms
    found = fuzz.run_sql(expr, FORMS, where, key)
    assert not found, _explain(found)
    if "NULLIF" not in expr:
        assert fuzz.stats.accepted_forms > accepted, "the case was refused: nothing was checked"


@pytest.mark.parametrize("column", ["balance", "fee"])
def test_the_review_case_is_noised(fuzz: Soundness, column: str) -> None:
    plan, mechs = fuzz.plan(query(f"LEAST({column}, {NULL_FOR_C42})", ["SUM({e})"], None, None))
    (m,) = plan.measures
    assert m.sensitivity > 0 and mechs.by_measure[m.id] is not None


def test_variance_of_a_wide_int_column_does_not_fail_on_the_data(fuzz: Soundness) -> None:
    """Found by the fuzzer: big is an int column in [-1e12, 1e12]; VARIANCE's centred square was computed
    in BIGINT and overflowed on some rows, a failure (500) that depends on the private values."""
    found = fuzz.run_sql("big", ["VARIANCE({e})", "STDDEV({e})"])
    assert not found, _explain(found)


def test_count_of_a_value_then_its_variance(fuzz: Soundness) -> None:
    """Found by the fuzzer: COUNT(x) counts x on the raw rows, AVG/VARIANCE's centred sum needs the
    count of the clamped x; sharing one measure (same key) lets a row whose raw x is NULL but clamped
    x is not (TRY_CAST of an out-of-range raw value) move the centred sum by |x| instead of |x - mid|."""
    for forms in (["COUNT({e})", "VARIANCE({e})"], ["COUNT({e})", "AVG({e})"]):
        found = fuzz.run_sql("TRY_CAST(fee AS INT)", forms)
        found += fuzz.run_sql("CASE WHEN fee > 50 THEN NULL ELSE fee END", forms)
        assert not found, _explain(found)


# the check's power: it must see a plan that understates, whatever the planner does today

def test_an_understated_sensitivity_is_caught(fuzz: Soundness) -> None:
    plan, mechs = fuzz.plan(query(f"LEAST(balance, {NULL_FOR_C42})", ["SUM({e})"], None, None))
    wrong = replace(plan, measures=tuple(replace(m, sensitivity=0.0) for m in plan.measures))
    kinds = {v.kind for v in fuzz.check(wrong, mechs, "understated", count=False)}
    assert {"sensitivity", "unnoised"} <= kinds


def test_an_understated_quantile_bound_is_caught(fuzz: Soundness) -> None:
    plan, mechs = fuzz.plan(query("balance", ["MEDIAN({e})"], None, None))
    wrong = replace(plan, max_rows=1)  # c42 keeps 3 rows: its removal moves the histogram by 3
    assert any(v.kind == "quantile" for v in fuzz.check(wrong, mechs, "understated", count=False))


def test_values_outside_the_inferred_interval_are_counted(fuzz: Soundness) -> None:
    before = fuzz.stats.values_outside
    fuzz.run_sql("LEAST(GREATEST(fee, 1), 1000)", ["SUM({e})"])  # fee NULL where declared not: GREATEST gives 1
    assert fuzz.stats.values_outside > before


def test_the_fast_path_agrees_with_the_release(fuzz: Soundness) -> None:
    """Each plan run both ways (`faithful_every=1`): one query for all scenarios on small trees, and
    as the release runs it on each neighbour's own engine. Empty scenarios, public and threshold
    cells, NaN keys and quantiles included."""
    before = fuzz.stats.faithful_plans
    cases = [
        ("balance", ["SUM({e})", "AVG({e})", "MEDIAN({e})"], "customer_id = 'c42'", None),  # the neighbour without c42 is empty
        ("bonus", ["SUM({e})", "COUNT({e})", "PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY {e})"], None, "cat"),
        ("qty", ["COUNT(DISTINCT {e})", "VARIANCE({e})"], "flag", "rate"),  # threshold cells, NaN and ±inf keys
        ("customer_id", ["COUNT(DISTINCT {e})"], None, "seg"),
    ]
    for expr, forms, where, key in cases:
        found = fuzz.run_sql(expr, forms, where, key)
        assert not found, _explain(found)
    assert fuzz.stats.faithful_plans == before + len(cases)


def test_the_generator_covers_the_allow_list() -> None:
    import random

    import sqlglot

    from gateway.sql.scalar import _HANDLERS

    seen: set[str] = set()
    rng = random.Random(5)
    for _ in range(400):
        g = gen.ExprGen(rng, depth=3)
        for text in (g.num(), g.boolean(), g.any(), g.key()):
            seen |= {type(n).__name__ for n in sqlglot.parse_one(text, read="duckdb").walk()}
    handled = {c.__name__ for c in _HANDLERS}
    assert handled <= seen, f"never generated: {sorted(handled - seen)}"
    assert gen.COVERAGE <= seen | {"Nullif"}


# generated expressions

def _slice(fuzz: Soundness, seeds: tuple[int, ...], batches: int, *, variants: int, forms: int | None) -> list[Violation]:
    found: list[Violation] = []
    for seed in seeds:
        for b in range(batches):
            found += fuzz.run_batch(seed, b, size=8, variants=variants, forms=forms)
    return found


def test_fixed_slice() -> None:
    fuzz = Soundness(faithful_every=4)
    found = _slice(fuzz, (101, 102), 4, variants=2, forms=None)  # 64 expressions, every form, 2 of 4 variants
    st = fuzz.stats
    assert st.accepted_forms > 300 and st.refused_forms > 0 and st.faithful_plans > 0
    assert not found, _explain(found)


@pytest.mark.slow
def test_larger_run() -> None:
    fuzz = Soundness(faithful_every=10)
    found = _slice(fuzz, (201, 202, 203, 204), 20, variants=4, forms=None)  # 640 expressions, all 4 variants
    assert not found, _explain(found)
