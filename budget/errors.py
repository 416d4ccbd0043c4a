"""Typed errors of the ledger. Each subclasses a builtin, carries structured fields and a stable `code`.

The HTTP edge maps `code` to a status and a problem+json body (`status` is the one DESIGN.md §4 gives the
code, for convenience). Messages name analysts, datasets and budget figures only: never private data.
"""

from __future__ import annotations

from typing import Any

from mechanisms.cost import Cost, round_down

__all__ = [
    "AnalystExists",
    "BudgetExhausted",
    "InvalidInput",
    "LedgerError",
    "LedgerUnavailable",
    "NoAllocation",
    "RequestConflict",
    "RequestInProgress",
    "SchemaTooNew",
    "UnknownAnalyst",
    "UnknownDataset",
]


def _remaining_json(cost: Cost) -> dict[str, float]:
    return {"epsilon": round_down(cost.epsilon), "delta": round_down(cost.delta)}


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""

    code = "invalid_request"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def fields(self) -> dict[str, Any]:
        """The structured fields, JSON-ready (problem+json extension members)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.message, **self.fields()}

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only constructors do not survive pickle's default (cls(*args)); rebuild from state,
        # so that these errors cross process boundaries (worker pools, training jobs)
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[LedgerError], args: tuple[Any, ...], state: dict[str, Any]) -> LedgerError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class InvalidInput(LedgerError, ValueError):
    """An argument the ledger cannot store: a negative or absurd amount, an empty name, a weak key."""

    code = "invalid_request"
    status = 400


class BudgetExhausted(LedgerError, ValueError):
    """The charge would take `level` ("analyst" or "dataset") past its total; nothing was written.

    `requested` is the cost as it would have been charged (rounded up to the ledger's unit), `remaining`
    what is left at that level. The inner level is "analyst" also where the analyst's allocation is one
    shared by its organisation (`organisation` then names it).
    """

    code = "budget_exhausted"
    status = 403

    def __init__(
        self,
        *,
        requested: Cost,
        remaining: Cost,
        level: str,
        analyst: str | None = None,
        dataset: str | None = None,
        organisation: str | None = None,
        renews_at: str | None = None,
    ) -> None:
        holder = f"organisation {organisation!r}'s shared allocation" if organisation else "the analyst's allocation"
        where = holder if level == "analyst" else "the dataset's total"
        on = f" on dataset {dataset!r}" if dataset is not None else ""
        window = f"; this window's allowance renews at {renews_at}" if renews_at else ""
        super().__init__(
            f"privacy budget exhausted{on} ({where}): requested {requested}, remaining {_remaining_str(remaining)}{window}"
        )
        self.renews_at = renews_at
        self.requested = requested
        self.remaining = remaining
        self.level = level
        self.analyst = analyst
        self.dataset = dataset
        self.organisation = organisation

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "level": self.level,
            "requested": self.requested.to_json(),
            "remaining": _remaining_json(self.remaining),
        }
        if self.dataset is not None:
            out["dataset"] = self.dataset
        if self.organisation:
            out["organisation"] = self.organisation
        if self.renews_at:
            out["renews_at"] = self.renews_at
        return out


def _remaining_str(cost: Cost) -> str:
    j = _remaining_json(cost)
    return f"(ε={j['epsilon']:g}, δ={j['delta']:g})"


class NoAllocation(LedgerError, PermissionError):
    """The analyst has no allocation on the dataset (nor does its organisation): it may not use it."""

    code = "forbidden"
    status = 403

    def __init__(self, *, analyst: str, dataset: str) -> None:
        super().__init__(f"analyst {analyst!r} has no budget allocation on dataset {dataset!r}")
        self.analyst = analyst
        self.dataset = dataset

    def fields(self) -> dict[str, Any]:
        return {"dataset": self.dataset}


class UnknownAnalyst(LedgerError, LookupError):
    code = "not_found"
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"no analyst named {name!r}")
        self.name = name

    def fields(self) -> dict[str, Any]:
        return {"analyst": self.name}


class UnknownDataset(LedgerError, LookupError):
    """No dataset has this name: the ledger holds no budget for it (it was never registered), or the
    catalog does not know it. The one class of `unknown_dataset`, raised by the ledger, the catalog
    (`gateway.errors` re-exports it) and training (`training.errors`)."""

    code = "unknown_dataset"
    status = 404

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"dataset {name!r} has no budget in the ledger")
        self.name = name

    def fields(self) -> dict[str, Any]:
        return {"dataset": self.name}


class AnalystExists(LedgerError, ValueError):
    """An enabled analyst already has this name (a disabled one is re-created instead)."""

    code = "invalid_request"
    status = 400

    def __init__(self, name: str) -> None:
        super().__init__(f"an analyst named {name!r} already exists")
        self.name = name

    def fields(self) -> dict[str, Any]:
        return {"analyst": self.name}


class RequestInProgress(LedgerError, RuntimeError):
    """The analyst's `request_id` is held by a request that is still running."""

    code = "request_in_progress"
    status = 409

    def __init__(self, *, analyst: str, request_id: str) -> None:
        super().__init__(f"request {request_id!r} is still in progress")
        self.analyst = analyst
        self.request_id = request_id

    def fields(self) -> dict[str, Any]:
        return {"request_id": self.request_id}


class RequestConflict(LedgerError, ValueError):
    """The analyst's `request_id` was already used for a different request (another body or dataset)."""

    code = "request_in_progress"
    status = 409

    def __init__(self, *, analyst: str, request_id: str) -> None:
        super().__init__(f"request id {request_id!r} was already used for a different request")
        self.analyst = analyst
        self.request_id = request_id

    def fields(self) -> dict[str, Any]:
        return {"request_id": self.request_id}


class SchemaTooNew(LedgerError, RuntimeError):
    """The database was migrated by a newer dpgate than this one; refuse rather than guess."""

    code = "internal"
    status = 500

    def __init__(self, *, found: int, known: int) -> None:
        super().__init__(f"ledger schema version {found} is newer than this code knows ({known})")
        self.found = found
        self.known = known


class LedgerUnavailable(LedgerError, ConnectionError):
    """The ledger's database cannot be reached (a lost connection, a refused one, a file that cannot be
    opened). Whatever asked for it was not released; a retry with the same request id is safe: the
    charge, if its commit landed before the connection went, is found and not made twice. The driver's
    message is not kept (it names hosts and files, not the caller's business)."""

    code = "ledger_unavailable"
    status = 503

    def __init__(self) -> None:
        super().__init__(
            "the privacy ledger is unavailable; no answer was released. Retry later, with the same request_id"
        )
