"""Every mechanism of `mechanisms/`, audited on adversarial neighbours: ε_lb <= the ε it claims.

The default run uses 5·10^3–10^5 draws per dataset (about 25 s in all); the `slow` versions 10^6.
The power of the same auditor is shown by the positive controls (test_positive_controls.py).
"""

from __future__ import annotations

import pytest

from tests.privacy_audit.cases import MECHANISM_CASES, SLOW_SAMPLES, TEST_ALPHA, Case, run

# parametrised by name: pytest holding the cases themselves upsets DuckDB's teardown (nanobind leak reports)
CASES = {c.name: c for c in MECHANISM_CASES}


def _check(case: Case, samples: int) -> None:
    neighbours, result = run(case, samples=samples, alpha=TEST_ALPHA)
    assert result.consistent_with(neighbours.epsilon), (case.name, neighbours.epsilon, result.to_json())
    if case.tight:  # the audit has teeth where the claim is attained: it finds much of it
        assert result.epsilon_lower_bound >= 0.4 * neighbours.epsilon, (case.name, result.to_json())


@pytest.mark.parametrize("name", list(CASES))
def test_mechanism_keeps_its_epsilon(name: str) -> None:
    _check(CASES[name], CASES[name].fast_samples)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_mechanism_keeps_its_epsilon_at_a_million_samples(name: str) -> None:
    _check(CASES[name], SLOW_SAMPLES)
