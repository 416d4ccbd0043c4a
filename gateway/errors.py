"""Typed errors of the core. Each carries a stable `code`; the HTTP edge maps them to problem+json, with
the status `gateway.problems.STATUS_BY_CODE` gives the code (`status` here mirrors that table for callers
outside HTTP; tests/api/test_problems.py holds them equal).

Messages never quote private data: they name constructs of the query or fields of metadata only.
"""
from __future__ import annotations


class DpgateError(Exception):
    """Base of every error the core raises on purpose."""

    code = "invalid_request"
    status = 400

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "detail": self.message, **self.fields}


class InvalidRequest(DpgateError, ValueError):
    code = "invalid_request"


class InvalidMetadata(InvalidRequest):
    """A dataset's metadata is malformed; raised at registration, never at query time."""

    code = "invalid_request"


class QueryError(DpgateError, ValueError):
    """A query refused before any private data is touched."""

    def __init__(
        self,
        message: str,
        *,
        construct: str | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        where = f" (line {line}, column {col})" if line is not None else ""
        super().__init__(message + where, construct=construct, line=line, col=col)
        self.construct = construct
        self.line = line
        self.col = col


class InvalidSQL(QueryError):
    code = "invalid_sql"


class UnsupportedSQL(QueryError):
    code = "unsupported_sql"


class UnknownTable(QueryError):
    code = "unknown_table"


class UnknownColumn(QueryError):
    code = "unknown_column"


from budget.errors import UnknownDataset  # noqa: E402  (the one class of unknown_dataset, with the ledger's)


class DatasetUnavailable(DpgateError, RuntimeError):
    """A registered dataset whose data cannot be loaded (its source file is missing or unreadable): it is
    answered with this until an administrator fixes the source and registers it again. Nothing is
    charged; the other datasets are served as usual."""

    code = "dataset_unavailable"
    status = 503
