"""`dpgate serve --workers N`: the gateway in N pre-forked processes (gunicorn), on one ledger.

Each worker builds its own app after the fork (DuckDB connections, the ledger's pools and the engines'
sessions must not cross a fork): its own catalog, engines and ledger connections, `threads` request
threads. They agree through what they share: every charge is one transaction in the PostgreSQL ledger
(so budgets are exact across them), and the data directory (`gateway.replicas`: a registration on one
is answered by the others within `replica_refresh_ms`; DuckDB's version files are read-only to all).

The SQLite ledger is for one process: asking it for several workers is refused (`ReplicasNeedPostgres`).
The master migrates the ledger and drops the reservations that requests of dead processes left, once,
before the workers start; a worker that dies and is replaced does not drop its siblings' live ones
(its own dead requests' ids are taken over after the ledger's `stale_after`). Workers build their apps
one at a time (the data directory's registration lock), as independent `dpgate serve` processes do.
"""
from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from budget.ledger import Ledger
from gateway.settings import Settings


class ReplicasNeedPostgres(ValueError):
    """Several worker processes asked of a gateway whose ledger is the embedded SQLite file."""


def uses_sqlite(settings: Settings) -> bool:
    return settings.ledger.startswith("sqlite")


def check_replicas(settings: Settings, workers: int) -> None:
    """Refuse several workers on the SQLite ledger, saying what to set instead."""
    if workers > 1 and uses_sqlite(settings):
        raise ReplicasNeedPostgres(
            f"--workers {workers} needs a PostgreSQL ledger shared by the workers; this gateway's ledger is the "
            "embedded SQLite file. Set ledger_url in config.toml or DPGATE_LEDGER_URL "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1/test), or serve with --workers 1."
        )


def gunicorn_options(settings: Settings, workers: int) -> dict[str, Any]:
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": settings.threads,
        "preload_app": False,  # each worker builds its own app after the fork
        # gthread workers heartbeat between requests, so a long query does not count; a hung worker does
        "timeout": max(60, int(settings.query_timeout_s * 2) + 30),
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": None,  # the app logs each request (without bodies)
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "dpgate",
        "limit_request_line": 8190,
        "child_exit": _child_exit,
    }


class GatewayApplication(BaseApplication):  # type: ignore[misc]
    """gunicorn running `create_app(settings)` in each worker."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.options = gunicorn_options(settings, workers)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from gateway.app import create_app
        from gateway.replicas import register_lock

        # the master migrated and recovered the ledger: a worker only connects (see the module docstring);
        # workers start one at a time, so that the first writes what the others then only read
        with register_lock(self.settings.data_dir):
            return create_app(self.settings, ledger=Ledger(self.settings.ledger))


def prepare_ledger(settings: Settings) -> None:
    """Once, in the master: the ledger's schema, and the holds of requests that died with a process."""
    with Ledger(settings.ledger) as ledger:
        ledger.migrate()
        ledger.recover()


def metrics_dir(settings: Settings) -> str:
    """Where the workers' counters live (prometheus_client's multiprocess mode), so that one scrape of
    `/metrics` adds every worker: PROMETHEUS_MULTIPROC_DIR if set, else a directory under the data
    directory for this master, emptied at start (files of an earlier run would be added in). Set before
    prometheus_client is imported, which reads it then."""
    import os
    import shutil

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = str(settings.data_dir / "metrics" / str(os.getpid()))
        shutil.rmtree(path, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    return path


def _child_exit(_server: Any, worker: Any) -> None:
    """A worker that exited: its live gauges go (its counters stay counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def serve_workers(settings: Settings, workers: int) -> None:
    """Serve with `workers` pre-forked processes (ReplicasNeedPostgres on the SQLite ledger)."""
    check_replicas(settings, workers)
    metrics_dir(settings)
    prepare_ledger(settings)
    import gateway.app  # noqa: F401 - imported once, before the fork, rather than in every worker

    GatewayApplication(settings, workers).run()
