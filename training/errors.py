"""Typed errors of the training service. Each subclasses a builtin and carries a stable `code` and `status`.

The HTTP edge maps `code` to problem+json (`status` is the one DESIGN.md §4 gives the code). Messages name
fields, columns, row indices and parameters only: never a value of the private data (nor of a prediction
row: the edge may log messages).

`budget.BudgetExhausted` and `budget.NoAllocation` pass through unchanged: they are the ledger's.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Forbidden",
    "InvalidJob",
    "JobFailed",
    "NotFound",
    "NotReady",
    "TrainingError",
    "UnknownDataset",
]


class TrainingError(Exception):
    """Base of every error the training service raises on purpose."""

    code = "invalid_request"
    status = 400

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        """``{code, detail, **fields}``: problem+json's members, JSON-ready."""
        return {"code": self.code, "detail": self.message, **self.fields}

    def __reduce__(self) -> tuple[Any, ...]:
        # survive pickling (process pools) with the keyword fields intact
        return (_rebuild, (type(self), self.message, self.fields))


def _rebuild(cls: type[TrainingError], message: str, fields: dict[str, Any]) -> TrainingError:
    return cls(message, **fields)


class InvalidJob(TrainingError, ValueError):
    """A job body, a parameter, a feature choice or a prediction row the service refuses (400).

    `field` names the offending member (``"params.epochs"``, ``"features"``, ``"rows[3].balance"``);
    `row` is the index of a bad prediction row.
    """

    code = "invalid_request"
    status = 400


from budget.errors import UnknownDataset  # noqa: E402  (the one class of unknown_dataset)


class NotFound(TrainingError, LookupError):
    """No such job or model *for this caller*: another analyst's job reads as absent, so ids never leak."""

    code = "not_found"
    status = 404


class NotReady(TrainingError, RuntimeError):
    """What was asked for does not exist yet: a synthetic job's rows before it has succeeded (409)."""

    code = "not_ready"
    status = 409


class Forbidden(TrainingError, PermissionError):
    """The caller's role may not do this (non-private training is for administrators) (403)."""

    code = "forbidden"
    status = 403


class JobFailed(TrainingError, RuntimeError):
    """The service cannot take the job now (it is shutting down) (503)."""

    code = "unavailable"
    status = 503
