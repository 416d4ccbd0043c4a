"""`dpgate worker`: run the training jobs the gateway put on the queue named by ``job_queue``.

A worker shares with the gateway replicas the ledger's database (the job store, where jobs are claimed,
beaten and ended: `training.store`), the data directory (the bounding and split keys, the models, the
datasets registered through the API) and the data itself; it never charges anything — the gateway charged
each job before enqueueing its id. Jobs run one at a time per process (`training.queue.work`); several
processes (``--processes``) run several at once.

The catalog a worker reads is the gateway's: a dataset registered through the API (its stored definition
under ``<data_dir>/datasets``), then the settings' datasets, then the demo's. A dataset is registered with
the worker's own engines when a job first needs it, and again when its definition changes. The engines
are the gateway's, built from the same settings: the embedded DuckDB's tables are immutable version files
under ``<data_dir>/duckdb`` that every process attaches read-only (the one a replica wrote is reused), and
bounding is keyed by the shared secret seed, so a worker reads exactly the bounded rows the gateway planned
the job on. Workers must run with the gateway's settings (config.toml and the DPGATE_* environment).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from budget.ledger import Ledger
from gateway.core import Gateway
from gateway.settings import Settings

__all__ = ["WorkerCatalog", "build_service", "run"]


class WorkerCatalog:
    """Datasets as the gateway knows them, registered with this process's engines on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway = Gateway(settings=settings)  # engines created from the settings on first use
        self.gateway.set_query_timeout(settings.query_timeout_s)
        self._registered: dict[str, str] = {}  # name -> the definition registered (canonical JSON)
        self._demo: list[dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def _definition(self, name: str) -> dict[str, Any] | None:
        key = name.lower()
        stored = self.settings.data_dir / "datasets" / f"{key}.json"
        if stored.is_file():
            return json.loads(stored.read_text())
        for raw in self.settings.datasets:
            if str(raw.get("name", "")).lower() == key:
                return raw
        if self.settings.demo.enabled:
            if self._demo is None:
                from gateway.demo_data import demo_datasets

                self._demo = demo_datasets(self.settings.data_dir, transactions_rows=self.settings.demo.transactions_rows)
            for raw in self._demo:
                if raw["name"].lower() == key:
                    return {"engine": "duckdb", **raw}
        return None

    def _ensure(self, name: str) -> None:
        if not isinstance(name, str) or not name or len(name) > 200 or "/" in name or name.startswith("."):
            raise LookupError(name)
        with self._lock:
            raw = self._definition(name)
            if raw is None:
                raise LookupError(name)
            text = json.dumps(raw, sort_keys=True, default=str)
            if self._registered.get(name.lower()) != text:
                self.gateway.register(raw)
                self._registered[name.lower()] = text

    def meta(self, name: str) -> dict[str, Any]:
        self._ensure(name)
        return self.gateway.catalog.get(name).model_dump(mode="json")

    def read(self, dataset: str, table: str, columns: list[str]) -> Any:
        self._ensure(dataset)
        return self.gateway.read_bounded(dataset, table, columns)


def build_service(settings: Settings, *, heartbeat_s: float = 2.0) -> Any:
    """The worker's `TrainingService`: the gateway's store, models and keys; this process's engines."""
    from gateway.synthetic_tables import publisher
    from training.queue import JobQueue
    from training.service import TrainingService

    if not settings.job_queue:
        raise ValueError("job_queue is not set: without a queue, the gateway runs training in-process")
    catalog = WorkerCatalog(settings)
    return TrainingService(
        data_dir=settings.data_dir,
        db_url=settings.ledger,
        ledger=Ledger(settings.ledger),  # never charged here: the gateway charged each job before queueing it
        datasets=catalog.meta,
        read_table=catalog.read,
        queue=JobQueue(settings.job_queue),
        heartbeat_s=heartbeat_s,
        publish=publisher(catalog.gateway, settings.data_dir),
    )


def run(
    settings: Settings, *, processes: int = 1, burst: bool = False, heartbeat_s: float = 2.0, config: Path | None = None
) -> int:
    """Run `processes` worker processes (this one, if 1) until stopped; `burst`: until the queue is empty.
    Several: each a `dpgate worker` of its own, with this environment and `config`. Returns an exit status."""
    if processes > 1:
        return _supervise(processes, burst=burst, heartbeat_s=heartbeat_s, config=config)
    from training.queue import work

    service = build_service(settings, heartbeat_s=heartbeat_s)
    try:
        work(service, service.queue, burst=burst)
    finally:
        service.close()
        service.ledger.close()
    return 0


def _supervise(processes: int, *, burst: bool, heartbeat_s: float, config: Path | None) -> int:
    """Start `processes` single workers, pass SIGTERM / SIGINT on to them, and wait for all."""
    base = [sys.executable, "-m", "gateway.cli", "worker", "--processes", "1", "--heartbeat", str(heartbeat_s)]
    if config is not None:
        base += ["--config", str(config)]
    if burst:
        base.append("--burst")
    children = [subprocess.Popen(base, env=os.environ.copy()) for _ in range(processes)]

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(child.wait() for child in children)

