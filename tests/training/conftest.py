"""Fixtures of the training tests: small synthetic tables (test data, not noise), a SQLite ledger in
tmp_path, and a factory of `TrainingService`s whose `read_table` records its calls and can be held.

Warnings are errors in this project. Training jobs run on worker threads, where a warning turned into an
error would fail the job, so the few warnings that torch, Opacus, diffprivlib and SciPy are known to emit
on these code paths are ignored here, narrowly (by message and category), for the tests of this folder
only — each is benign:

* torch, when Opacus' backward hooks fire on a first layer whose input needs no gradient (our inputs are
  data): "Full backward hook is firing when gradients are computed with respect to module outputs since
  no inputs require gradients" — the hooks still capture what Opacus needs;
* Opacus' RDP analysis, used by the PRV accountant to size its domain: "Optimal order is the largest
  alpha" — the PRV bound it feeds stays valid (only the domain may be larger than needed);
* SciPy, through diffprivlib's logistic regression: "The `disp` and `iprint` options of the L-BFGS-B
  solver are deprecated" (a DeprecationWarning about an argument diffprivlib passes);
* scikit-learn 1.5+ through diffprivlib's logistic regression: "'multi_class' was deprecated" (a
  FutureWarning; diffprivlib 0.6.6 still sets it, hence the <1.7 pin).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from budget import Ledger
from training import TrainingService

_IGNORED = [
    "ignore:Full backward hook is firing when gradients are computed with respect to module outputs:UserWarning",
    "ignore:Optimal order is the largest alpha:UserWarning",
    "ignore:scipy.optimize.*The `disp` and `iprint` options of the L-BFGS-B solver are deprecated:DeprecationWarning",
    "ignore:.*'multi_class' was deprecated:FutureWarning",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            for spec in _IGNORED:
                item.add_marker(pytest.mark.filterwarnings(spec))


# -- synthetic tables -------------------------------------------------------------------------------------

CARDS_COLUMNS: dict[str, Any] = {
    "customer_id": {"type": "id"},
    "default": {"type": "category", "categories": ["No", "Yes"]},
    "student": {"type": "category", "categories": ["No", "Yes"]},
    "balance": {"type": "float", "lower": 0.0, "upper": 3000.0},
    "income": {"type": "float", "lower": 0.0, "upper": 80000.0},
}

TX_K = 20
TX_COLUMNS: dict[str, Any] = {
    "transaction_id": {"type": "id"},
    "customer_id": {"type": "id"},
    "ts": {"type": "date", "lower": "2025-01-01T00:00:00", "upper": "2025-12-31T23:59:59"},
    "amount": {"type": "float", "lower": 0.0, "upper": 5000.0},
    "channel": {"type": "category", "categories": ["pos", "online", "atm"]},
    "is_fraud": {"type": "bool"},
}


def cards_meta() -> dict[str, Any]:
    return {
        "name": "cards",
        "privacy_unit": "customer_id",
        "budget": {"epsilon": 100, "delta": 1e-4},
        "tables": {
            "card_customers": {"source": "mem", "max_rows_per_unit": 1, "public": False, "columns": CARDS_COLUMNS},
            "transactions": {"source": "mem", "max_rows_per_unit": TX_K, "public": False, "columns": TX_COLUMNS},
            # unlabelled public rows (PATE's student inputs)
            "applicants": {"source": "mem", "max_rows_per_unit": 1, "public": True,
                           "columns": {c: CARDS_COLUMNS[c] for c in ("student", "balance", "income")}},
        },
    }  # fmt: skip


def applicants(n: int = 2_000, seed: int = 9) -> pd.DataFrame:
    """Public, unlabelled rows from the same population as `card_customers`."""
    return card_customers(n, seed)[["student", "balance", "income"]]


def card_customers(n: int = 10_000, seed: int = 1) -> pd.DataFrame:
    """Like ISLR's Default: a rare default that rises steeply with the balance."""
    rng = np.random.default_rng(seed)
    balance = np.clip(rng.normal(835, 480, n), 0, 2700)
    income = np.clip(rng.normal(33500, 13000, n), 700, 74000)
    student = rng.random(n) < 0.3
    p = 1 / (1 + np.exp(-(-10.7 + 0.0057 * balance - 0.6 * student)))
    default = rng.random(n) < p
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "default": np.where(default, "Yes", "No"),
            "student": np.where(student, "Yes", "No"),
            "balance": balance,
            "income": income,
        }
    )


def transactions(n_customers: int = 800, seed: int = 2) -> pd.DataFrame:
    """1..TX_K rows per customer (already bounded); fraud likelier online and for large amounts."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, TX_K + 1, n_customers)
    cid = np.repeat(np.arange(1, n_customers + 1), per)
    n = len(cid)
    amount = np.exp(rng.normal(3.5, 1.0, n))
    channel = rng.choice(["pos", "online", "atm"], n, p=[0.6, 0.3, 0.1])
    logit = -4.0 + 1.5 * (channel == "online") + 0.9 * (np.log(amount) - 3.5)
    fraud = rng.random(n) < 1 / (1 + np.exp(-logit))
    ts = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 365 * 86_400, n), unit="s")
    return pd.DataFrame(
        {
            "transaction_id": np.arange(1, n + 1),
            "customer_id": cid,
            "ts": ts,
            "amount": amount,
            "channel": channel,
            "is_fraud": fraud,
        }
    )


@pytest.fixture(scope="session")
def cards_frame() -> pd.DataFrame:
    return card_customers()


@pytest.fixture(scope="session")
def tx_frame() -> pd.DataFrame:
    return transactions()


# -- a ledger and services ------------------------------------------------------------------------------


class Reader:
    """`read_table` over in-memory frames; records calls, and can be held until released."""

    def __init__(self, frames: dict[tuple[str, str], pd.DataFrame]) -> None:
        self.frames = frames
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def __call__(self, dataset: str, table: str, columns: list[str]) -> pd.DataFrame:
        self.calls.append((dataset, table, tuple(columns)))
        self.entered.set()
        assert self.gate.wait(30), "the test never released the reader"
        return self.frames[(dataset, table)][list(columns)].copy()


class Env:
    """A ledger with analysts alice (ε 50) and bob, and admin root; services made on demand."""

    def __init__(self, tmp_path: Path, frames: dict[tuple[str, str], pd.DataFrame]) -> None:
        self.tmp_path = tmp_path
        self.db_url = f"sqlite:///{tmp_path}/ledger.db"
        self.ledger = Ledger(self.db_url)
        self.ledger.migrate()
        self.metas = {"cards": cards_meta()}
        self.ledger.set_dataset_budget("cards", epsilon=100, delta=1e-4)
        for name, role in (("alice", "analyst"), ("bob", "analyst"), ("root", "admin")):
            self.ledger.create_analyst(name, role=role)
            self.ledger.set_allocation(name, "cards", epsilon=50, delta=5e-5)
        self.reader = Reader(frames)
        self.services: list[TrainingService] = []

    def datasets(self, name: str) -> dict[str, Any]:
        return self.metas[name]  # KeyError (a LookupError) for an unknown one

    def service(
        self, *, reader: Callable[[str, str, list[str]], pd.DataFrame] | None = None, workers: int = 1
    ) -> TrainingService:
        svc = TrainingService(
            data_dir=self.tmp_path / "data",
            db_url=self.db_url,
            ledger=self.ledger,
            datasets=self.datasets,
            read_table=reader or self.reader,
            workers=workers,
        )
        self.services.append(svc)
        return svc

    def close(self) -> None:
        self.reader.release()
        for svc in self.services:
            if not svc._stopping:
                svc.close()
        self.ledger.close()


@pytest.fixture
def env(tmp_path: Path, cards_frame: pd.DataFrame, tx_frame: pd.DataFrame) -> Iterator[Env]:
    e = Env(tmp_path, {("cards", "card_customers"): cards_frame, ("cards", "transactions"): tx_frame,
                       ("cards", "applicants"): applicants()})  # fmt: skip
    yield e
    e.close()


@pytest.fixture
def svc(env: Env) -> TrainingService:
    return env.service()
