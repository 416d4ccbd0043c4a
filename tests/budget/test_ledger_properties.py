"""Properties (Hypothesis): any sequence of charges and limit changes matches an exact model of the two
levels; any interleaving of concurrent charges never overspends, every refusal was deserved, and spent is
the sum of the entries.

Each example uses fresh analyst and dataset names, so examples share the test's ledger (one database per
test, not per example) without seeing each other.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from budget import BudgetExhausted, Ledger
from budget.units import DELTA_UNIT, EPSILON_UNIT
from mechanisms.cost import Cost

from ._support import fresh

# costs as an analyst would write them: a few decimals, sometimes a thirds-style fraction
EPSILONS = st.one_of(
    st.decimals(min_value=0, max_value=1, places=3).map(str),
    st.sampled_from(["1/3", "1/7", "0.027", "0.125", "0.1", "0"]),
)
DELTAS = st.sampled_from(["0", "0", "1e-7", "1/30000000"])
TOTALS = st.decimals(min_value=0, max_value=3, places=2).map(str)

PROPERTY = settings(
    deadline=None,
    derandomize=True,  # a fixed set of examples: the suite's time and outcome do not vary run to run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _units(cost: Cost) -> tuple[int, int]:
    return math.ceil(cost.epsilon * EPSILON_UNIT), math.ceil(cost.delta * DELTA_UNIT)


def _floor_units(epsilon: str, delta: str) -> tuple[int, int]:
    return math.floor(Fraction(epsilon) * EPSILON_UNIT), math.floor(Fraction(delta) * DELTA_UNIT)


@dataclass
class Level:
    """The model of one budget level: exact integers of the ledger's units."""

    total: tuple[int, int]
    spent: list[int] = field(default_factory=lambda: [0, 0])

    def room(self) -> tuple[int, int]:
        return max(0, self.total[0] - self.spent[0]), max(0, self.total[1] - self.spent[1])

    def fits(self, units: tuple[int, int]) -> bool:
        room = self.room()
        return units[0] <= room[0] and units[1] <= room[1]


def test_sequences_of_charges_and_limit_changes_match_the_model(ledger: Ledger) -> None:
    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.dataset = fresh("ds")
            self.analysts = [fresh("a"), fresh("b")]
            self.data = Level(_floor_units("2", "1e-6"))
            self.mine = {a: Level(_floor_units("1", "5e-7")) for a in self.analysts}
            ledger.set_dataset_budget(self.dataset, epsilon="2", delta="1e-6")
            for a in self.analysts:
                ledger.create_analyst(a, role="analyst")
                ledger.set_allocation(a, self.dataset, epsilon="1", delta="5e-7")
            self.entries = 0

        @rule(who=st.integers(0, 1), epsilon=EPSILONS, delta=DELTAS)
        def charge(self, who: int, epsilon: str, delta: str) -> None:
            analyst = self.analysts[who]
            cost = Cost.of(epsilon, delta)
            units = _units(cost)
            fits = self.mine[analyst].fits(units) and self.data.fits(units)
            try:
                ledger.charge(analyst=analyst, dataset=self.dataset, cost=cost, kind="query", detail={})
            except BudgetExhausted as refusal:
                assert not fits
                expected = "analyst" if not self.mine[analyst].fits(units) else "dataset"
                assert refusal.level == expected
                return
            assert fits
            for level in (self.mine[analyst], self.data):
                level.spent[0] += units[0]
                level.spent[1] += units[1]
            self.entries += 1

        @rule(who=st.integers(0, 1), epsilon=TOTALS)
        def set_allocation(self, who: int, epsilon: str) -> None:
            analyst = self.analysts[who]
            ledger.set_allocation(analyst, self.dataset, epsilon=epsilon, delta="5e-7")
            self.mine[analyst].total = _floor_units(epsilon, "5e-7")

        @rule(epsilon=TOTALS)
        def set_dataset_total(self, epsilon: str) -> None:
            ledger.set_dataset_budget(self.dataset, epsilon=epsilon, delta="1e-6")
            self.data.total = _floor_units(epsilon, "1e-6")

        @invariant()
        def matches_the_model(self) -> None:
            for analyst in self.analysts:
                got = ledger.remaining_cost(analyst, self.dataset)
                assert got.analyst == Cost(
                    Fraction(self.mine[analyst].room()[0], EPSILON_UNIT),
                    Fraction(self.mine[analyst].room()[1], DELTA_UNIT),
                )
                assert got.dataset == Cost(
                    Fraction(self.data.room()[0], EPSILON_UNIT), Fraction(self.data.room()[1], DELTA_UNIT)
                )

        def teardown(self) -> None:
            assert len(ledger.entries(dataset=self.dataset)) == self.entries
            assert ledger.verify() == []

    run_state_machine_as_test(Machine, settings=settings(PROPERTY, max_examples=8, stateful_step_count=12))


@settings(PROPERTY, max_examples=8)
@given(
    charges=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(["0.1", "0.25", "0.3", "1/3", "0.027", "0.5"])),
        min_size=4,
        max_size=24,
    ),
    allocation=st.sampled_from(["0.5", "1", "1.5"]),
    total=st.sampled_from(["1", "2", "3"]),
)
def test_concurrent_interleavings_never_overspend(
    ledger: Ledger, charges: list[tuple[int, str]], allocation: str, total: str
) -> None:
    dataset = fresh("ds")
    analysts = [fresh("a"), fresh("b"), fresh("c")]
    ledger.set_dataset_budget(dataset, epsilon=total)
    for a in analysts:
        ledger.create_analyst(a, role="analyst")
        ledger.set_allocation(a, dataset, epsilon=allocation)
    start = threading.Barrier(len(charges))

    def one(item: tuple[int, str]) -> tuple[str, Cost, bool]:
        who, epsilon = item
        start.wait(timeout=60)
        try:
            ledger.charge(analyst=analysts[who], dataset=dataset, cost=Cost.of(epsilon), kind="query", detail={})
            return analysts[who], Cost.of(epsilon), True
        except BudgetExhausted:
            return analysts[who], Cost.of(epsilon), False

    with ThreadPoolExecutor(max_workers=len(charges)) as pool:
        outcomes = list(pool.map(one, charges))

    spent_total = sum(_units(c)[0] for _, c, ok in outcomes if ok)
    assert spent_total <= _floor_units(total, "0")[0]
    for a in analysts:
        mine = sum(_units(c)[0] for who, c, ok in outcomes if ok and who == a)
        assert mine <= _floor_units(allocation, "0")[0]
    # remaining only shrinks while charges run, so every refusal must exceed what is left at the end
    for who, cost, ok in outcomes:
        if not ok:
            left = ledger.remaining_cost(who, dataset)
            assert not (cost.fits_within(left.analyst) and cost.fits_within(left.dataset))
    assert len(ledger.entries(dataset=dataset)) == sum(ok for _, _, ok in outcomes)
    assert ledger.verify() == []
