"""Whole queries through the gateway, audited on adversarial neighbours: ε_lb <= the ε charged.

D has one more customer than D': 4·max_rows_per_unit transactions (bounding must keep k), amounts and
quantities far beyond their declared upper bounds (clamping must bring them back), all in one category
and one city. Two ways of sampling (see cases.py): the released answers (`release`, as
`Gateway.query` runs it) and the mechanism outputs traced through the gateway, vectorised.
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.sql.release import Mechanisms, main_query, release
from mechanisms import LaplaceCount, LaplaceFloat
from tests.privacy_audit.cases import (
    QUERIES,
    QUERY_CASES,
    QUERY_EPSILON,
    SLOW_SAMPLES,
    TEST_ALPHA,
    TRACED_CASES,
    Case,
    Replay,
    bank_pair,
    run,
    trace,
)


# parametrised by name: pytest holding the cases themselves upsets DuckDB's teardown (nanobind leak reports)
ANSWERS = {c.name: c for c in QUERY_CASES}
TRACED = {c.name: c for c in TRACED_CASES}
BY_NAME = {q.name: q for q in QUERIES}


def _check(case: Case, samples: int) -> None:
    neighbours, result = run(case, samples=samples, alpha=TEST_ALPHA)
    assert result.consistent_with(neighbours.epsilon), (case.name, neighbours.epsilon, result.to_json())
    if case.tight:  # the audit has teeth where the claim is attained: it finds much of it
        assert result.epsilon_lower_bound >= 0.4 * neighbours.epsilon, (case.name, result.to_json())


@pytest.mark.parametrize("name", list(ANSWERS))
def test_query_answers_keep_their_epsilon(name: str) -> None:
    _check(ANSWERS[name], ANSWERS[name].fast_samples)


@pytest.mark.parametrize("name", list(TRACED))
def test_query_mechanism_outputs_keep_their_epsilon(name: str) -> None:
    _check(TRACED[name], TRACED[name].fast_samples)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRACED))
def test_query_mechanism_outputs_keep_their_epsilon_at_a_million_samples(name: str) -> None:
    _check(TRACED[name], SLOW_SAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ANSWERS))
def test_query_answers_keep_their_epsilon_at_a_hundred_thousand_samples(name: str) -> None:
    _check(ANSWERS[name], 100_000)


@pytest.mark.parametrize("name", [q.name for q in QUERIES if q.traced])
def test_the_unit_moves_each_measurement_by_at_most_its_sensitivity(name: str) -> None:
    """What the gateway hands its mechanisms: the adversarial unit (4·k rows beyond the bounds) moves
    each Laplace input by at most the sensitivity the mechanism was calibrated for (L1), and — for
    COUNT and SUM, where the adversary is the worst case — by exactly that much."""
    query = BY_NAME[name]
    d, d_prime = bank_pair(query.pair)
    _, calls = trace(d, query.sql, delta=query.delta)
    _, calls_prime = trace(d_prime, query.sql, delta=query.delta)
    assert [type(m) for m, _, _ in calls] == [type(m) for m, _, _ in calls_prime]
    for (mech, kind, args), (_, _, args_prime) in zip(calls, calls_prime):
        if not isinstance(mech, (LaplaceCount, LaplaceFloat)):
            continue
        moved = float(np.abs(np.asarray(args[0], dtype=float) - np.asarray(args_prime[0], dtype=float)).sum())
        assert moved <= mech.sensitivity * (1 + 1e-12), (query.sql, mech, moved)
        if query.sql in ("SELECT COUNT(*) FROM tx", "SELECT SUM(amount) FROM tx"):
            assert moved == pytest.approx(mech.sensitivity), (query.sql, mech, moved)


def test_replayed_releases_are_gateway_queries() -> None:
    """The answers sampler runs what Gateway.query runs: same plan, same engine SQL, same answer shape."""
    d, _ = bank_pair()
    sql = "SELECT cat, COUNT(*), SUM(amount) FROM tx GROUP BY cat"
    direct = d.query("bank", sql, epsilon=QUERY_EPSILON)
    plan = d.plan("bank", sql, epsilon=QUERY_EPSILON)
    engine = Replay(d.engine, check_every=1)
    mechs = Mechanisms(plan)
    answers = []
    for _ in range(3):
        engine.begin()
        answers.append(release(plan, engine, mechs))
    assert engine.recorded is not None and engine.recorded[0][0] == main_query(plan).sql(dialect="duckdb")
    for a in answers:
        assert a.columns == direct.columns and a.cost == direct.cost
        assert [r[0] for r in a.rows] == [r[0] for r in direct.rows]
    assert len({tuple(map(tuple, a.rows)) for a in answers}) == 3  # fresh noise each time
