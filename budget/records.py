"""What the ledger hands back: frozen records, and their JSON shapes (DESIGN.md §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mechanisms.cost import Cost, round_down, round_up

__all__ = ["Analyst", "Charge", "Remaining", "Reservation", "entry_json"]


@dataclass(frozen=True)
class Analyst:
    """A principal. Its key is never here: only the key's non-secret id."""

    name: str
    role: str  # "analyst" | "admin"
    organisation: str | None
    key_id: str
    disabled: bool
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "organisation": self.organisation,
            "key_id": self.key_id,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
        }


def _down(cost: Cost) -> dict[str, float]:
    return {"epsilon": round_down(cost.epsilon), "delta": round_down(cost.delta)}


@dataclass(frozen=True)
class Remaining:
    """What is left at both levels, exact."""

    analyst: Cost
    dataset: Cost

    def to_json(self) -> dict[str, dict[str, float]]:
        """``{analyst: {epsilon, delta}, dataset: {epsilon, delta}}``, rounded down."""
        return {"analyst": _down(self.analyst), "dataset": _down(self.dataset)}


@dataclass(frozen=True)
class Charge:
    """A committed charge (or, with `replayed`, the one an earlier request with this request id made).

    `cost` is what the ledger recorded: the requested cost rounded up to its unit, with the requested
    cost's ρ (if any) as given. `result` is the
    stored answer of a replayed request; `id` is None where that request was answered without a charge
    (from the free-repeat store).
    """

    id: int | None
    at: datetime
    analyst: str
    dataset: str
    request_id: str | None
    kind: str
    cost: Cost
    remaining: Remaining
    detail: dict[str, Any] = field(default_factory=dict)
    organisation: str | None = None
    replayed: bool = False
    result: dict[str, Any] | None = None

    def entry(self) -> dict[str, Any]:
        """The ledger entry, in the shape of ``GET /v1/admin/ledger``."""
        return entry_json(
            id=self.id,
            at=self.at,
            analyst=self.analyst,
            organisation=self.organisation,
            dataset=self.dataset,
            request_id=self.request_id,
            kind=self.kind,
            detail=self.detail,
            cost=self.cost,
        )


@dataclass(frozen=True)
class Reservation:
    """A request id held for a request. `completed` means an earlier request finished: `result` is its
    stored answer, to return as it is (no new charge)."""

    analyst: str
    request_id: str
    body_hash: str | None
    completed: bool
    result: dict[str, Any] | None = None
    entry_id: int | None = None


_ENTRY_KEYS = frozenset(
    {"id", "at", "analyst", "organisation", "dataset", "request_id", "kind", "epsilon", "delta", "rho"}
)


def entry_json(
    *,
    id: int | None,
    at: datetime,
    analyst: str,
    organisation: str | None,
    dataset: str,
    request_id: str | None,
    kind: str,
    detail: dict[str, Any],
    cost: Cost,
) -> dict[str, Any]:
    """``{id, at, analyst, dataset, request_id, kind, <detail: sql | job_id, ...>, mechanisms, epsilon,
    delta[, rho]}``, costs rounded up (they are spending). `organisation` appears only for a charge to a
    shared allocation, `rho` only for a charge converted from zCDP (the (ε, δ) are what it was charged)."""
    out: dict[str, Any] = {
        "id": id,
        "at": at.isoformat(),
        "analyst": analyst,
        "dataset": dataset,
        "request_id": request_id,
        "kind": kind,
    }
    if organisation is not None:
        out["organisation"] = organisation
    out.update((k, v) for k, v in detail.items() if k not in _ENTRY_KEYS)
    out.setdefault("mechanisms", [])
    out["epsilon"] = round_up(cost.epsilon)
    out["delta"] = round_up(cost.delta)
    if cost.rho is not None:
        out["rho"] = round_up(cost.rho)
    return out
