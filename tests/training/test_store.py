"""Job records on both backends of the ledger's database: SQLite (a file) and PostgreSQL.

PostgreSQL is the server at DPGATE_TEST_PG_URL (as in tests/budget); each test gets a schema of its own
(the ledger's `schema` option, and ``search_path`` in the job store's URL). Unreachable: skipped, or
failed where CI is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from budget import Ledger
from training import TrainingService
from training.store import FAILED, INTERRUPTED, JobStore

from .conftest import cards_meta

PG_URL = os.environ.get("DPGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1/test")


def _pg_engine() -> sa.Engine:
    return sa.create_engine(PG_URL, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None, str]]:
    """(ledger URL, ledger schema, job-store URL) on one database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/ledger.db"
        yield url, None, url
        return
    engine = _pg_engine()
    schema = f"dpg_train_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # unreachable server
        engine.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unreachable: {type(exc).__name__}")
        pytest.skip(f"PostgreSQL unreachable: {type(exc).__name__}")
    try:
        yield PG_URL, schema, f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def test_a_job_runs_and_its_record_survives_a_restart(urls, tmp_path: Path, cards_frame: pd.DataFrame):
    ledger_url, schema, store_url = urls
    ledger = Ledger(ledger_url, schema=schema)
    ledger.migrate()
    ledger.create_analyst("alice")
    ledger.set_dataset_budget("cards", epsilon=10, delta=1e-5)
    ledger.set_allocation("alice", "cards", epsilon=10, delta=1e-5)

    def make() -> TrainingService:
        return TrainingService(
            data_dir=tmp_path / "data", db_url=store_url, ledger=ledger,
            datasets=lambda name: cards_meta(), read_table=lambda ds, t, cols: cards_frame[cols],
        )  # fmt: skip

    svc = make()
    done = svc.wait(svc.start("alice", {"task": "credit_default", "method": "logreg", "epsilon": 1})["job_id"], 30)
    assert done["status"] == "succeeded", done.get("error")
    # a record left running by a process that died
    svc.store.create_job(
        job_id="f" * 32, analyst="alice", dataset="cards", table_name="card_customers", method="logreg",
        status="running", progress=0.4, spec={}, plan={}, cost_epsilon="1", cost_delta="0",
        cancel_requested=False,
    )  # fmt: skip
    svc.close()

    again = make()
    assert again.status("alice", done["job_id"])["model_id"] == done["model_id"]
    dead = again.status("alice", "f" * 32)
    assert dead["status"] == FAILED and dead["error"] == INTERRUPTED and dead["cost"] == {"epsilon": 1.0, "delta": 0.0}
    assert [e["job_id"] for e in ledger.entries()] == [done["job_id"]]
    again.close()
    ledger.close()


def test_the_store_creates_its_tables_once(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/jobs.db"
    JobStore(url).close()
    store = JobStore(url)  # again: no error, nothing dropped
    assert store.active_job_ids() == []
    store.close()


def test_lists_are_newest_first_and_per_analyst(tmp_path: Path):
    from datetime import UTC, datetime, timedelta

    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i, analyst in enumerate(("ann", "bob", "ann")):
        job_id = f"{i:032x}"
        store.create_job(
            job_id=job_id, analyst=analyst, dataset="cards", table_name="card_customers", method="logreg",
            status="succeeded", progress=1.0, spec={}, plan={}, cost_epsilon="1/2", cost_delta="0",
            cancel_requested=False, created_at=t0 + timedelta(minutes=i), metrics={"accuracy": 0.5 + i / 10},
        )  # fmt: skip
        store.add_model(model_id=f"m{i}", job_id=job_id, analyst=analyst, dataset="cards", method="logreg")
    assert [j["job_id"][-1] for j in store.list_jobs("ann")] == ["2", "0"]
    assert [j["job_id"][-1] for j in store.list_jobs()] == ["2", "1", "0"]
    assert [j["job_id"][-1] for j in store.list_jobs(limit=1)] == ["2"]
    models = store.list_models("bob")
    assert [(m["model_id"], m["table_name"], m["cost_epsilon"], m["metrics"]) for m in models] == [
        ("m1", "card_customers", "1/2", {"accuracy": 0.6})]
    assert {m["model_id"] for m in store.list_models()} == {"m0", "m1", "m2"}
    store.close()
