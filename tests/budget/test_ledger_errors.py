"""Pure parts, no database: typed errors, key handling, unit conversion."""

from __future__ import annotations

import pickle
from fractions import Fraction

import pytest

from budget import (
    AnalystExists,
    BudgetExhausted,
    InvalidInput,
    LedgerError,
    NoAllocation,
    RequestConflict,
    RequestInProgress,
    UnknownAnalyst,
    UnknownDataset,
    keys,
    units,
)
from mechanisms.cost import Cost


@pytest.mark.parametrize(
    "error, builtin, code, status",
    [
        (BudgetExhausted(requested=Cost.of(0.5), remaining=Cost.of("1/3"), level="analyst", dataset="bank"),
         ValueError, "budget_exhausted", 403),
        (NoAllocation(analyst="alice", dataset="bank"), PermissionError, "forbidden", 403),
        (RequestInProgress(analyst="alice", request_id="r1"), RuntimeError, "request_in_progress", 409),
        (RequestConflict(analyst="alice", request_id="r1"), ValueError, "request_in_progress", 409),
        (UnknownAnalyst("bob"), LookupError, "not_found", 404),
        (UnknownDataset("bank"), LookupError, "unknown_dataset", 404),
        (AnalystExists("alice"), ValueError, "invalid_request", 400),
        (InvalidInput("no"), ValueError, "invalid_request", 400),
    ],
)  # fmt: skip
def test_errors_are_typed_and_survive_pickling(error: LedgerError, builtin: type, code: str, status: int) -> None:
    assert isinstance(error, builtin) and isinstance(error, LedgerError)
    assert (error.code, error.status) == (code, status)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and again.to_dict() == error.to_dict() and str(again) == str(error)


def test_budget_exhausted_reports_rounded_figures() -> None:
    error = BudgetExhausted(requested=Cost.of("1/3"), remaining=Cost.of("2/3"), level="dataset", dataset="bank")
    assert error.to_dict() == {
        "code": "budget_exhausted",
        "detail": str(error),
        "level": "dataset",
        "dataset": "bank",
        "requested": {"epsilon": 0.333333333334, "delta": 0.0},  # spending rounds up
        "remaining": {"epsilon": 0.666666666666, "delta": 0.0},  # what is left rounds down
    }


def test_keys() -> None:
    key, key_id = keys.new_key()
    assert key.startswith(key_id + "_") and keys.key_id_of(key) == key_id
    assert len(key) - len(key_id) - 1 >= 43
    assert keys.key_id_of("some-configured-key-0123456789").startswith("cfg_")
    assert keys.key_hash(key) != keys.key_hash(key + " ")
    assert keys.digests_equal(keys.key_hash(key), keys.key_hash(key))
    assert not keys.digests_equal(None, keys.key_hash(key))


def test_units_round_charges_up_and_totals_down() -> None:
    assert units.charge_units(Cost.of("1/3", "1/3")) == (333_333_333_334, 333_333_333_333_333_334)
    assert units.total_units("1/3", "1/3") == (333_333_333_333, 333_333_333_333_333_333)
    assert units.total_units(0.027, 1e-5) == (27_000_000_000, 10_000_000_000_000)
    assert units.cost_of(units.charge_units(Cost.of(0.25))) == Cost(Fraction(1, 4))
    assert units.total_json(units.total_units(0.1, 1e-7)) == (0.1, 1e-7)
    for bad in [(-1, 0), (0, -1), (0, 2), (10**7, 0)]:
        with pytest.raises(InvalidInput):
            units.total_units(*bad)
