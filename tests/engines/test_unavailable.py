"""An engine that cannot be reached: its datasets answer 503 dataset_unavailable, the others are served."""
from __future__ import annotations

import json
from pathlib import Path

from budget.ledger import Ledger
from gateway.app import create_app
from gateway.core import Gateway
from gateway.engines.duckdb import DuckDBEngine
from gateway.settings import load_settings
from tests.api.conftest import ADMIN_KEY, Api
from tests.conftest import BANK, bank_frames

DOWN = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1
COREBANK = {
    "name": "corebank",
    "engine": "postgres",
    "privacy_unit": "cid",
    "budget": {"epsilon": 5, "delta": 1e-6},
    "tables": {"accounts": {"source": "public.accounts", "max_rows_per_unit": 3, "columns": {
        "cid": {"type": "id"}, "balance": {"type": "float", "lower": 0, "upper": 100000}}}},
}


def _app(tmp_path: Path) -> Api:
    settings = load_settings(data_dir=tmp_path, admin_key=ADMIN_KEY, engines={"postgres": {"url": DOWN, "connect_timeout_s": 2}})
    settings.demo.enabled = False
    engine = DuckDBEngine(None, seed="k")
    for name, frame in bank_frames().items():
        engine.load_frame(name, frame)
    gateway = Gateway(engine, settings=settings)
    gateway.register(BANK)
    ledger = Ledger(settings.ledger)
    ledger.migrate()
    app = create_app(settings, gateway=gateway, ledger=ledger)
    app.config["TESTING"] = True
    return Api(app)


def test_registering_on_an_unreachable_engine_is_503_and_changes_nothing(tmp_path: Path) -> None:
    api = _app(tmp_path)
    r = api.client.post("/v1/admin/datasets", json=COREBANK, headers=api.admin)
    assert r.status_code == 503 and r.json["code"] == "dataset_unavailable", r.json
    assert r.headers["Content-Type"] == "application/problem+json"
    assert "127.0.0.1:1" not in r.get_data(as_text=True)  # no connection details in the answer
    assert "corebank" not in api.app.extensions["dpgate"]["gateway"].catalog


def test_a_stored_dataset_whose_engine_is_down_is_unavailable_and_the_others_are_served(tmp_path: Path) -> None:
    store = tmp_path / "datasets"
    store.mkdir(parents=True)
    (store / "corebank.json").write_text(json.dumps(COREBANK))
    api = _app(tmp_path)  # starts although corebank's engine is down
    ann = api.analyst("ann", dataset="bank", epsilon=2.0)
    r = api.client.post("/v1/queries", json={"dataset": "corebank", "sql": "SELECT COUNT(*) FROM accounts", "epsilon": 0.5}, headers=ann)
    assert r.status_code == 503 and r.json["code"] == "dataset_unavailable", r.json
    r = api.client.post("/v1/queries", json={"dataset": "bank", "sql": "SELECT COUNT(*) AS n FROM tx", "epsilon": 0.5}, headers=ann)
    assert r.status_code == 200 and r.json["rows"][0][0] > 0
    [b] = api.client.get("/v1/budget", headers=ann).json["budgets"]
    assert b["epsilon_spent"] == 0.5  # the refused query cost nothing
