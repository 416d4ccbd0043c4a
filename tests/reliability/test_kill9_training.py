"""kill -9 of the gateway while a training job runs: after the restart the job is marked failed
(interrupted), its charge stays in the ledger, and the budget still counts it."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from gateway.client import Client
from tests.api.conftest import ADMIN_KEY
from tests.api.test_server import Server


def _dataset(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    n = 20_000
    amount = rng.uniform(0, 1000, n)
    path = tmp_path / "cards.parquet"
    pd.DataFrame({"cid": np.arange(n), "amount": amount, "big": (amount + rng.normal(0, 200, n)) > 500}).to_parquet(path)
    return {
        "name": "cards", "privacy_unit": "cid", "budget": {"epsilon": 100, "delta": 1e-4},
        "tables": {"c": {"source": str(path), "max_rows_per_unit": 1, "columns": {
            "cid": {"type": "id"}, "amount": {"type": "float", "lower": 0, "upper": 1000}, "big": {"type": "bool"}}}},
    }  # fmt: skip


def test_kill9_mid_training_marks_the_job_failed_and_keeps_its_charge(tmp_path: Path) -> None:
    srv = Server(tmp_path, f"sqlite:///{tmp_path}/ledger.db").start()
    try:
        admin = Client(srv.url, ADMIN_KEY)
        admin.register_dataset(_dataset(tmp_path))
        key = admin.create_analyst("ann")["key"]
        admin.set_budget("ann", "cards", epsilon=10.0, delta=1e-5)
        ann = Client(srv.url, key)
        job = ann.train({"dataset": "cards", "table": "c", "label": "big", "method": "dpsgd", "epsilon": 2, "delta": 1e-6,
                         "params": {"epochs": 100, "batch_size": 16, "hidden": [64, 32]}})  # a long job  # fmt: skip
        deadline = time.monotonic() + 60
        while (status := ann.job(job["job_id"]))["status"] != "running" or not status["progress"]:
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        srv.kill9()
        srv.start()
        after = ann.job(job["job_id"])
        assert after["status"] == "failed" and "interrupted" in after["error"] and after["model_id"] is None
        [entry] = admin.ledger(dataset="cards")
        assert entry["kind"] == "training" and entry["job_id"] == job["job_id"]
        assert entry["epsilon"] == job["cost"]["epsilon"] == after["cost"]["epsilon"]
        [b] = ann.budget()
        assert b["epsilon_spent"] == job["cost"]["epsilon"]
    finally:
        srv.stop()
