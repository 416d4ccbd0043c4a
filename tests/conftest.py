from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gateway.core import Gateway
from gateway.engines.duckdb import DuckDBEngine

BANK = {
    "name": "bank",
    "privacy_unit": "cid",
    "budget": {"epsilon": 10, "delta": 1e-5},
    "tables": {
        "tx": {
            "source": "raw_tx",
            "max_rows_per_unit": 5,
            "columns": {
                "tid": {"type": "id"},
                "cid": {"type": "id"},
                "amount": {"type": "float", "lower": 0, "upper": 1000},
                "qty": {"type": "int", "lower": 0, "upper": 10, "nullable": True},
                "cat": {"type": "category", "categories": ["food", "travel", "tech", "café ☕"]},
                "city": {"type": "category"},
                "ts": {"type": "date", "lower": "2025-01-01", "upper": "2025-12-31"},
                "flag": {"type": "bool"},
                "note": {"type": "category", "nullable": True, "categories": ["x", "y"]},
            },
        },
        "cust": {
            "source": "raw_cust",
            "max_rows_per_unit": 1,
            "columns": {
                "cid": {"type": "id"},
                "age": {"type": "int", "lower": 18, "upper": 100},
                "segment": {"type": "category", "categories": ["retail", "private"]},
            },
        },
        "acct": {
            "source": "raw_acct",
            "max_rows_per_unit": 2,
            "columns": {"cid": {"type": "id"}, "balance": {"type": "float", "lower": -1000, "upper": 5000}},
        },
        "rates": {
            "source": "raw_rates",
            "max_rows_per_unit": 1,
            "public": True,
            "columns": {"cat": {"type": "category"}, "rate": {"type": "float", "lower": 0, "upper": 1}},
        },
    },
}


def bank_frames(n_customers: int = 300, seed: int = 1) -> dict[str, pd.DataFrame]:
    """Small synthetic tables: test data, not noise (noise only ever comes from OpenDP)."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 12, n_customers)
    cid = np.repeat(np.arange(1, n_customers + 1), per)
    n = len(cid)
    qty = pd.array(rng.integers(0, 12, n), dtype="Int64")
    qty[rng.random(n) < 0.1] = pd.NA
    note = rng.choice(["x", "y", "z"], n).astype(object)
    note[rng.random(n) < 0.2] = None
    tx = pd.DataFrame(
        {
            "tid": np.arange(n),
            "cid": cid,
            "amount": np.round(rng.exponential(150, n), 2),
            "qty": qty,
            "cat": rng.choice(["food", "travel", "tech", "café ☕", "other"], n),
            "city": rng.choice([f"city{i}" for i in range(8)] + ["rare"], n, p=[0.12] * 8 + [0.04]),
            "ts": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 364 * 24, n), unit="h"),
            "flag": rng.random(n) < 0.2,
            "note": note,
        }
    )
    cust = pd.DataFrame(
        {"cid": np.arange(1, n_customers + 1), "age": rng.integers(18, 95, n_customers), "segment": rng.choice(["retail", "private"], n_customers)}
    )
    acct = pd.DataFrame({"cid": np.repeat(np.arange(1, n_customers + 1), 3), "balance": rng.normal(800, 1500, 3 * n_customers)})
    rates = pd.DataFrame({"cat": ["food", "travel", "tech"], "rate": [0.1, 0.2, 0.3]})
    return {"raw_tx": tx, "raw_cust": cust, "raw_acct": acct, "raw_rates": rates}


def make_gateway(frames: dict[str, pd.DataFrame] | None = None, meta: dict | None = None) -> Gateway:
    engine = DuckDBEngine(None, seed="test-seed")
    for name, frame in (frames or bank_frames()).items():
        engine.load_frame(name, frame)
    gw = Gateway(engine)
    gw.register(meta or BANK)
    return gw


@pytest.fixture(scope="session")
def bank() -> Gateway:
    return make_gateway()


def load_bench(name: str):  # type: ignore[no-untyped-def]
    """Import bench/<name>.py as a module (the benchmarks are scripts, not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"dpgate_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


@pytest.fixture(autouse=True, scope="session")
def _no_release_padding():  # type: ignore[no-untyped-def]
    """The constant-time padding of noise draws (`mechanisms._timing`, 2 ms a draw) is off in the test
    processes: statistical tests draw noise tens of thousands of times. Tests whose subject is the
    padding turn it on (tests/mechanisms/test_timing.py); servers started as subprocesses keep it on."""
    from mechanisms import _timing

    base, scale = _timing.settings()
    _timing.configure(base_s=0)
    yield
    _timing.configure(base_s=base, scale=scale)


@pytest.fixture
def pg_url():  # type: ignore[no-untyped-def]
    """A new, empty PostgreSQL database of its own for the test (dropped afterwards)."""
    from tests.api.conftest import drop_pg_database, fresh_pg_database

    url = fresh_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)
