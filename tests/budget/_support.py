"""Helpers shared by the ledger tests, importable by spawned worker processes (unlike conftest)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from budget import BudgetExhausted, Ledger
from mechanisms.cost import Cost


@dataclass(frozen=True)
class Spec:
    """Where a test's ledger lives; picklable, for worker processes."""

    url: str
    schema: str | None = None

    def open(self) -> Ledger:
        return Ledger(self.url, schema=self.schema)


def fresh(prefix: str) -> str:
    """A name nothing else in the database uses (property tests share one ledger across examples)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def grant(
    ledger: Ledger,
    dataset: str,
    *,
    total: Any = 10,
    delta_total: Any = 0,
    analysts: dict[str, Any] | None = None,
    delta: Any = 0,
) -> None:
    """A dataset with `total` and, for each analyst (created if missing), an allocation of ε."""
    ledger.set_dataset_budget(dataset, epsilon=total, delta=delta_total)
    for name, epsilon in (analysts or {}).items():
        if ledger.get_analyst(name) is None:
            ledger.create_analyst(name, role="analyst")
        ledger.set_allocation(name, dataset, epsilon=epsilon, delta=delta)


def query(ledger: Ledger, analyst: str, dataset: str, epsilon: Any, delta: Any = 0, **kwargs: Any) -> Any:
    return ledger.charge(
        analyst=analyst,
        dataset=dataset,
        cost=Cost.of(epsilon, delta),
        kind="query",
        detail={"sql": "SELECT COUNT(*) FROM t", "mechanisms": ["laplace"]},
        **kwargs,
    )


def start_migrate_and_charge(
    spec: Spec, analyst: str, dataset: str, epsilon: str, n: int, start: Any, ready: Any, out: Any
) -> None:
    """Worker process: start with the others on a blank database and migrate (racing them), wait for the
    parent to set the budgets up, then try `n` charges. Reports ("migrated", versions) and ("charged",
    successes, refusals) on `out`, or ("error", repr) — which the parent fails the test with."""
    ledger = spec.open()
    try:
        start.wait(timeout=120)
        out.put(("migrated", ledger.migrate()))
        ready.wait(timeout=120)
        ok = refused = 0
        for _ in range(n):
            try:
                query(ledger, analyst, dataset, epsilon)
                ok += 1
            except BudgetExhausted:
                refused += 1
        out.put(("charged", ok, refused))
    except Exception as exc:  # reported to the parent
        out.put(("error", f"{exc!r} (from {exc.__context__!r})"))  # the database's own error too
    finally:
        ledger.close()
