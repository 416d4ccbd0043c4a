"""The ledger of privacy spending: budgets at two levels, charges before release, request ids, audit.

Pure core: imports `mechanisms` (for `Cost`) and SQLAlchemy, never the gateway or Flask.
"""

from __future__ import annotations

from .errors import (
    AnalystExists,
    BudgetExhausted,
    InvalidInput,
    LedgerError,
    LedgerUnavailable,
    NoAllocation,
    RequestConflict,
    RequestInProgress,
    SchemaTooNew,
    UnknownAnalyst,
    UnknownDataset,
)
from .ledger import ROLES, Ledger
from .records import Analyst, Charge, Remaining, Reservation

__all__ = [
    "ROLES",
    "Analyst",
    "AnalystExists",
    "BudgetExhausted",
    "Charge",
    "InvalidInput",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "NoAllocation",
    "Remaining",
    "RequestConflict",
    "RequestInProgress",
    "Reservation",
    "SchemaTooNew",
    "UnknownAnalyst",
    "UnknownDataset",
]
