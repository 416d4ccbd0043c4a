"""Prometheus metrics: the app's counters, who may read them, and an optional listener of their own.

`GET /metrics` on the main app is for administrators (a bearer admin key; 401 without one, 403 for an
analyst): its figures (the ε charged by everyone, requests per route and status) are the operators'
business. With `metrics_listen` set (e.g. "127.0.0.1:9108") the same figures are also served, without a
key, on a listener of their own, for a Prometheus scraper: bind it where only the scraper can reach.
Either way labels are route templates and statuses only: never an analyst, an organisation, a dataset
or an id (those are for administrators, through the ledger).

Several worker processes (gunicorn): each has its own counters. Set PROMETHEUS_MULTIPROC_DIR (an empty
directory) in the environment before the processes start, as prometheus_client reads it when it is
imported: every process then writes its counters there, and `exposition_registry` serves all of them
added together (prometheus_client's multiprocess mode). Without it, a scrape sees one process's share.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.settings import parse_listen  # noqa: F401  (kept here too: the listener's address)

log = structlog.get_logger("dpgate")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable, read by it at import


class Metrics:
    """The counters of one app. In multiprocess mode their values live in PROMETHEUS_MULTIPROC_DIR."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("dpgate_http_requests_total", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("dpgate_http_request_seconds", "HTTP latency", ["endpoint"], registry=self.registry)
        self.charged = Counter("dpgate_epsilon_charged_total", "ε charged by queries", registry=self.registry)
        self.listener: Listener | None = None


def multiprocess_dir() -> str | None:
    """The directory of prometheus_client's multiprocess mode, or None when each process counts alone."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition_registry(metrics: Metrics) -> CollectorRegistry:
    """What a scrape reads: every process's counters in multiprocess mode, else this app's own."""
    path = multiprocess_dir()
    if path is None:
        return metrics.registry
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return registry


def metrics_body(metrics: Metrics) -> tuple[bytes, int, dict[str, str]]:
    return generate_latest(exposition_registry(metrics)), 200, {"Content-Type": CONTENT_TYPE_LATEST}


@dataclass
class Listener:
    server: WSGIServer

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_listener(listen: str, metrics: Metrics) -> Listener | None:
    """Serve the Prometheus text on `listen`, without a key, in a daemon thread. Under several worker
    processes the first to bind the address serves it (all processes' figures in multiprocess mode);
    the others find it taken, log so and go on without one."""
    host, port = parse_listen(listen)
    try:
        server, _thread = start_http_server(port, addr=host, registry=exposition_registry(metrics))
    except OSError as exc:
        log.warning("metrics_listen_unavailable", address=listen, error_type=type(exc).__name__)
        return None
    metrics.listener = Listener(server)
    log.info("metrics_listen", address="%s:%d" % metrics.listener.address)
    return metrics.listener
