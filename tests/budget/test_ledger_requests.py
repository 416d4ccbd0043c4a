"""Request ids and the free-repeat store: a retry is answered once and charged once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from budget import BudgetExhausted, Ledger, RequestConflict, RequestInProgress
from mechanisms.cost import ZERO

from ._support import grant, query

ANSWER = {
    "columns": ["n"],
    "rows": [[41.7]],
    "accuracy": {"n": {"mechanism": "laplace", "scale": 2.0, "ci95": 6.0}},
}


@pytest.fixture
def bank(ledger: Ledger) -> Ledger:
    grant(ledger, "bank", total=2, analysts={"alice": 1, "bob": 1})
    return ledger


def test_a_retry_returns_the_stored_answer_and_is_charged_once(bank: Ledger) -> None:
    first = bank.reserve("alice", "r1", "h1")
    assert not first.completed
    charge = query(bank, "alice", "bank", 0.25, request_id="r1", result=ANSWER, body_hash="h1")
    assert not charge.replayed and charge.request_id == "r1"
    retry = bank.reserve("alice", "r1", "h1")
    assert retry.completed and retry.result == ANSWER and retry.entry_id == charge.id
    assert bank.stored_result("alice", "r1") == ANSWER
    # a charge for a completed request id (two racing requests, say) charges nothing and says so
    again = query(bank, "alice", "bank", 0.25, request_id="r1", result={"rows": [[0]]})
    assert again.replayed and again.id == charge.id and again.result == ANSWER and again.cost == charge.cost
    assert len(bank.entries()) == 1
    assert bank.budgets("alice")[0]["epsilon_spent"] == 0.25


def test_request_ids_are_scoped_to_their_analyst(bank: Ledger) -> None:
    query(bank, "alice", "bank", 0.25, request_id="r1", result=ANSWER)
    assert not bank.reserve("bob", "r1", "h").completed
    assert bank.stored_result("bob", "r1") is None


def test_a_second_reserve_while_in_progress_is_refused(bank: Ledger) -> None:
    bank.reserve("alice", "r1", "h1")
    with pytest.raises(RequestInProgress) as info:
        bank.reserve("alice", "r1", "h1")
    assert info.value.code == "request_in_progress" and info.value.status == 409


def test_a_completed_id_with_another_body_conflicts(bank: Ledger) -> None:
    bank.reserve("alice", "r1", "h1")
    query(bank, "alice", "bank", 0.25, request_id="r1", result=ANSWER)
    with pytest.raises(RequestConflict) as info:
        bank.reserve("alice", "r1", "h2")
    assert info.value.code == "request_in_progress" and info.value.status == 409


def test_a_completed_id_charged_again_on_another_dataset_conflicts(bank: Ledger) -> None:
    grant(bank, "cards", total=1, analysts={"alice": 1})
    query(bank, "alice", "bank", 0.25, request_id="r1", result=ANSWER)
    with pytest.raises(RequestConflict):
        query(bank, "alice", "cards", 0.25, request_id="r1", result=ANSWER)
    assert len(bank.entries()) == 1


def test_a_released_reservation_can_be_taken_again(bank: Ledger) -> None:
    bank.reserve("alice", "r1", "h1")
    assert bank.release_reservation("alice", "r1")
    assert not bank.release_reservation("alice", "r1")
    assert not bank.reserve("alice", "r1", "h1").completed
    assert bank.entries() == []


def test_release_never_drops_a_completed_request(bank: Ledger) -> None:
    bank.reserve("alice", "r1", "h1")
    query(bank, "alice", "bank", 0.25, request_id="r1", result=ANSWER)
    assert not bank.release_reservation("alice", "r1")
    assert bank.stored_result("alice", "r1") == ANSWER


def test_a_refused_charge_leaves_the_reservation_for_the_caller_to_release(bank: Ledger) -> None:
    bank.reserve("alice", "r1", "h1")
    with pytest.raises(BudgetExhausted):
        query(bank, "alice", "bank", 5, request_id="r1", result=ANSWER)
    assert bank.stored_result("alice", "r1") is None
    assert bank.release_reservation("alice", "r1")


def test_identical_queries_are_answered_from_the_cache(bank: Ledger) -> None:
    key = "bank@v1|SELECT COUNT(*) FROM t|0.25|0"
    assert bank.cached(key) is None
    query(bank, "alice", "bank", 0.25, result=ANSWER, cache_key=key)
    assert bank.cached(key) == ANSWER
    # a second charge under the same key (a race) keeps the first answer
    query(bank, "bob", "bank", 0.25, result={"rows": [[0.0]]}, cache_key=key)
    assert bank.cached(key) == ANSWER


def test_a_cache_hit_under_a_request_id_is_stored_for_retries_without_a_charge(bank: Ledger) -> None:
    bank.reserve("bob", "r9", "h9")
    assert bank.store_result("bob", "r9", ANSWER, dataset="bank", body_hash="h9")
    assert not bank.store_result("bob", "r9", {"rows": []})
    retry = bank.reserve("bob", "r9", "h9")
    assert retry.completed and retry.result == ANSWER and retry.entry_id is None
    replay = query(bank, "bob", "bank", 0.25, request_id="r9")
    assert replay.replayed and replay.id is None and replay.cost == ZERO and replay.result == ANSWER
    assert bank.entries() == []


def test_recover_clears_reservations_left_by_a_crash(bank: Ledger, open_ledger: Callable[..., Ledger]) -> None:
    bank.reserve("alice", "r1", "h1")
    bank.reserve("bob", "r2", "h2")
    query(bank, "alice", "bank", 0.25, request_id="r3", result=ANSWER)
    restarted = open_ledger()
    restarted.migrate()
    assert restarted.recover() == 2
    assert not restarted.reserve("alice", "r1", "h1").completed  # free again: nothing was charged
    assert restarted.reserve("alice", "r3", "h3").completed is True  # completed ones stay
    assert len(restarted.entries()) == 1


def test_recover_with_a_cutoff_spares_live_reservations(bank: Ledger, open_ledger: Callable[..., Ledger]) -> None:
    now = [datetime(2025, 1, 1, tzinfo=UTC)]
    clocked = open_ledger(clock=lambda: now[0], stale_after=timedelta(minutes=10))
    clocked.reserve("alice", "old", "h")
    now[0] += timedelta(minutes=30)
    clocked.reserve("alice", "new", "h")
    assert clocked.recover(older_than=timedelta(minutes=10)) == 1
    with pytest.raises(RequestInProgress):
        clocked.reserve("alice", "new", "h")
    assert not clocked.reserve("alice", "old", "h").completed


def test_a_stale_reservation_is_taken_over(bank: Ledger, open_ledger: Callable[..., Ledger]) -> None:
    now = [datetime(2025, 1, 1, tzinfo=UTC)]
    clocked = open_ledger(clock=lambda: now[0], stale_after=timedelta(minutes=10))
    clocked.reserve("alice", "r1", "h1")
    now[0] += timedelta(minutes=9)
    with pytest.raises(RequestInProgress):
        clocked.reserve("alice", "r1", "h1")
    now[0] += timedelta(minutes=2)
    assert not clocked.reserve("alice", "r1", "h1").completed
    # both holders charging still charges once
    first = query(clocked, "alice", "bank", 0.25, request_id="r1", result=ANSWER)
    second = query(clocked, "alice", "bank", 0.25, request_id="r1", result={"rows": []})
    assert second.replayed and second.id == first.id
    assert len(clocked.entries()) == 1
