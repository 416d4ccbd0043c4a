"""Registering datasets: the catalog, the ledger's budget and audit record, and the stored definition.

One path for both ways in: at start (`load_registered`: the config's, the demo's and those registered
earlier through the API, kept as JSON under `<data_dir>/datasets`) and for `POST /v1/admin/datasets`
(`register`). No HTTP here.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import structlog

from budget.ledger import Ledger
from gateway.catalog import DatasetMeta
from gateway.core import Gateway
from gateway.errors import DpgateError
from gateway.settings import Settings

log = structlog.get_logger("dpgate")


def dataset_store(settings: Settings) -> Path:
    """Where the definitions registered through the API are kept, one `<name>.json` each."""
    return settings.data_dir / "datasets"


def dataset_definition(gateway: Gateway, meta: DatasetMeta) -> dict[str, Any]:
    """What the audit log records of a dataset's registration: its metadata and its data's version."""
    return {"version": gateway.version(meta.name), **meta.without_synthetic().model_dump(mode="json")}


def record(gateway: Gateway, ledger: Ledger, meta: DatasetMeta, *, actor: str) -> None:
    """The dataset's total in the ledger (as its metadata says) and its registration in the audit log."""
    ledger.set_dataset_budget(meta.name, epsilon=str(meta.budget.epsilon), delta=str(meta.budget.delta),
                              renew=meta.budget.renewal(), actor=actor)  # fmt: skip
    ledger.record_dataset(meta.name, definition=dataset_definition(gateway, meta), actor=actor)


def load_registered(gateway: Gateway, ledger: Ledger, settings: Settings) -> dict[str, str]:
    """Datasets from the config, the demo and earlier `POST /v1/admin/datasets`, with their totals.

    A stored dataset whose data can no longer be loaded (its source file gone or corrupt) does not stop
    the gateway: it is returned (name -> why) and answered with `dataset_unavailable` until an
    administrator registers it again; its budget and spending stay in the ledger."""
    store = dataset_store(settings)
    unavailable: dict[str, str] = {}
    if store.exists():
        for path in sorted(store.glob("*.json")):
            try:
                gateway.register(json.loads(path.read_text()))
            except (DpgateError, ValueError, OSError) as exc:
                unavailable[path.stem] = str(exc)
                log.error("dataset_unavailable", dataset=path.stem, error_type=type(exc).__name__)
    for meta in gateway.catalog:
        record(gateway, ledger, meta, actor="config")
    return unavailable


def register(
    gateway: Gateway, ledger: Ledger, settings: Settings, raw: DatasetMeta, *, actor: str, unavailable: dict[str, str]
) -> DatasetMeta:
    """Register (or register again) a dataset: load and bound its data, set its total, record it, and
    keep its definition for the next start (written whole, then renamed: never half a file). A dataset
    that was unavailable is served again (`unavailable`, the query service's, loses it)."""
    meta = gateway.register(raw)
    record(gateway, ledger, meta, actor=actor)
    unavailable.pop(meta.name.lower(), None)
    store = dataset_store(settings)
    store.mkdir(parents=True, exist_ok=True)
    tmp = store / f".{meta.name.lower()}.json.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"  # replicas may write the same name at once
    tmp.write_text(json.dumps(meta.without_synthetic().model_dump(mode="json"), indent=2))  # its synthetic tables are kept apart
    os.replace(tmp, store / f"{meta.name.lower()}.json")
    return meta
