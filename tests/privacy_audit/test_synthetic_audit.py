"""The synthesiser (training/synthetic.py, MST) under the auditor, with its positive control.

Neighbours: 40 units of one row over categories a, b, c, and in D one more unit with 4·k rows of the
declared category "rare" (only it holds it; bounding keeps k). The output audited is the count of "rare"
(and of ("rare", True)) in each synthetic table; the claim is what `plan_cost` charges.

Correct: the declared category list is fixed, so "rare" may appear with or without the unit, and the
audit must pass. Broken (the control): the category list is read from the rows, so "rare" is in the
domain — and may appear — only when the unit is in the table; without it, never. That event reveals
the unit, and the auditor must report ε_lb far above the claim.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.privacy_audit.cases import (
    RARE,
    SYNTH_DELTA,
    SYNTH_EPSILON,
    SYNTH_K,
    SYNTH_META,
    SYNTH_ROWS,
    SYNTHETIC_CASES,
    TEST_ALPHA,
    run,
    synth_pair,
    synthesize_categories_from_data,
)

_BY_NAME = {c.name: c for c in SYNTHETIC_CASES}
CORRECT = "synthetic MST, unit's rare category (k=3)"
BROKEN = "control: synthetic MST, categories read from the data"
SLOW_SYNTH_SAMPLES = 20_000  # ~3 minutes a case


def _audit(name: str, samples: int | None = None) -> tuple[float, float, float]:
    case = _BY_NAME[name]
    neighbours, result = run(case, samples=samples or case.fast_samples, alpha=TEST_ALPHA)
    return neighbours.epsilon, neighbours.delta, result.epsilon_lower_bound


def test_claim_is_what_plan_cost_charges() -> None:
    from training.synthetic import plan_cost

    plan = plan_cost(SYNTH_META, epsilon=SYNTH_EPSILON, delta=SYNTH_DELTA, max_rows_per_unit=SYNTH_K, unit="uid")
    neighbours = _BY_NAME[CORRECT].build()
    assert (neighbours.epsilon, neighbours.delta) == (float(plan.cost.epsilon), float(plan.cost.delta)) == (1.0, 1e-5)
    assert plan.rho > 0


def test_neighbours_differ_in_one_unit_holding_the_only_rare_rows() -> None:
    d, d_prime = synth_pair()
    extra = d.iloc[len(d_prime):]
    assert d.iloc[: len(d_prime)].equals(d_prime)
    assert extra["uid"].nunique() == 1 and len(extra) > SYNTH_K  # more rows than k: bounding must cut them
    assert set(extra["cat"]) == {RARE} and RARE not in set(d_prime["cat"])
    assert RARE in SYNTH_META["cat"]["categories"]


def test_broken_synthesiser_reads_its_categories_from_the_rows() -> None:
    """Without the unit the broken variant can never output "rare"; the correct one, whose list is
    declared, can (so the category's presence does not reveal the unit)."""
    from training.synthetic import synthesize

    _, d_prime = synth_pair()
    kwargs = dict(epsilon=SYNTH_EPSILON, delta=SYNTH_DELTA, rows=SYNTH_ROWS, max_rows_per_unit=SYNTH_K, unit="uid")
    broken = [synthesize_categories_from_data(d_prime, SYNTH_META, **kwargs)[0] for _ in range(40)]
    assert all(RARE not in set(t["cat"]) for t in broken)
    assert all(len(t) == SYNTH_ROWS for t in broken)
    correct = [synthesize(d_prime, SYNTH_META, **kwargs)[0] for _ in range(40)]
    # "rare" shows up in about half the tables (its noisy count, σ ≈ 24, is positive): 40 misses ~ 1e-11
    assert any(RARE in set(t["cat"]) for t in correct)


def test_synthesiser_keeps_its_claim_on_adversarial_neighbours() -> None:
    claimed, _, bound = _audit(CORRECT)
    assert bound <= claimed, (claimed, bound)


def test_positive_control_synthesiser_with_categories_from_the_data_is_caught() -> None:
    claimed, _, bound = _audit(BROKEN)
    # "rare" appears in ~half of the tables on D and in none on D': ε_lb ≈ 3 at 1000 tables
    assert bound > 2 * claimed, (claimed, bound)


@pytest.mark.slow
@pytest.mark.parametrize("name", [CORRECT, BROKEN])
def test_synthetic_audit_verdict_at_more_samples(name: str) -> None:
    case = _BY_NAME[name]
    neighbours, result = run(case, samples=SLOW_SYNTH_SAMPLES, alpha=TEST_ALPHA)
    assert result.consistent_with(neighbours.epsilon) is not case.expect_caught, (case.name, result.to_json())
    if case.expect_caught:
        assert result.epsilon_lower_bound > 3 * neighbours.epsilon, result.to_json()
        assert np.isclose(result.witness.q_hat, 0.0), result.to_json()
