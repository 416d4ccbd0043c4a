"""The Flask app factory: wires settings, the core, the ledger and the HTTP handlers.

The HTTP layer is thin: it validates bodies (pydantic, through apiflask, which also writes the OpenAPI
spec), authenticates the bearer key, calls one core function and serialises the result. Core errors map
to RFC 9457 problem+json with a stable `code` in one place (`problems`).

What it builds lives in one typed `Resources` (`gateway.http.resources`); the bearer-key check is
`gateway.http.auth`. The blueprints import those, never this module. `ext`, `auth` and
`current_principal` are re-exported here for the modules that still import them from here.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from apiflask import APIFlask
from flask import Response, g, request

from budget.ledger import Ledger
from gateway.core import Gateway
from gateway.faults import Faults
from gateway.http.auth import auth, current_principal
from gateway.http.metrics import Metrics, start_listener
from gateway.http.resources import Resources, ext, install, resources
from gateway.problems import install_problem_handlers
from gateway.registration import dataset_definition, load_registered
from gateway.service import QueryService
from gateway.settings import Settings, load_settings

log = structlog.get_logger("dpgate")


def configure_logging(level: str = "info") -> None:
    """JSON lines on stderr. Handlers log paths, statuses, callers and timings: never bodies or values."""
    import logging
    import sys

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def create_app(
    settings: Settings | None = None,
    *,
    gateway: Gateway | None = None,
    ledger: Ledger | None = None,
) -> APIFlask:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    app = APIFlask("dpgate", title="dpgate", version="0.1.0", docs_path="/docs", spec_path="/openapi.json")
    app.config.update(
        VALIDATION_ERROR_STATUS_CODE=400,
        AUTH_ERROR_STATUS_CODE=401,
        SECURITY_SCHEMES={"BearerAuth": {"type": "http", "scheme": "bearer"}},
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,  # larger bodies: 413 request_too_large
        DOCS_FAVICON=None,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if ledger is None:
        ledger = Ledger(settings.ledger)
        ledger.migrate()
        ledger.recover()
    if settings.admin_key is not None:
        ledger.ensure_admin_key(settings.admin_key.get_secret_value())
    if gateway is None:
        gateway = Gateway.from_settings(settings)
    gateway.set_query_timeout(settings.query_timeout_s)
    if gateway.data_dir is None:  # built without settings (tests): its synthetic tables live in this data directory
        gateway.data_dir = settings.data_dir
    unavailable = {**gateway.unavailable, **load_registered(gateway, ledger, settings)}

    metrics = Metrics()
    res = install(app, Resources(
        settings=settings,
        gateway=gateway,
        ledger=ledger,
        queries=QueryService(gateway, ledger, faults=Faults(settings.fault), unavailable=unavailable),
        training=_training_service(settings, gateway, ledger),
        metrics=metrics,
    ))  # fmt: skip
    if settings.metrics_listen:  # the scraper's own address, no key (gateway/http/metrics.py)
        start_listener(settings.metrics_listen, metrics)
    install_problem_handlers(app)
    app.wsgi_app = Faults(settings.fault).wsgi(app.wsgi_app)  # type: ignore[method-assign]  # tests only
    _install_request_hooks(app)
    from gateway.replicas import install_refresh

    install_refresh(app, settings)  # datasets other replicas registered (gateway/replicas.py)
    from gateway.http.limits import install_rate_limits

    app.extensions["dpgate"]["limiter"] = install_rate_limits(app, settings)  # Resources.limiter
    app.spec_processor(_document)

    from gateway.http import admin, analyst, health, synthetic, training

    app.register_blueprint(health.bp)
    app.register_blueprint(health.metrics_bp)
    app.register_blueprint(analyst.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(training.bp)
    app.register_blueprint(synthetic.bp)
    from gateway.console import install_console

    install_console(app)  # the web console and the offline /docs (gateway/console)
    return app


def _training_service(settings: Settings, gateway: Gateway, ledger: Ledger) -> Any:
    """Training sees metadata as the §4 JSON shape. Without `job_queue`, jobs run in this process and read
    the bounded rows here; with it, this process charges, records and enqueues them, and `dpgate worker`
    processes run them (training/queue.py), sharing the ledger's database and the models directory."""
    from gateway.synthetic_tables import publisher
    from training.service import TrainingService

    queue = None
    if settings.job_queue:
        from training.queue import JobQueue

        queue = JobQueue(settings.job_queue)
        log.info("training_on_queue", queue=queue.describe())
    else:
        log.info("training_in_process", workers=1, hint="set job_queue to run jobs on `dpgate worker` processes")
    return TrainingService(
        data_dir=settings.data_dir,
        db_url=settings.ledger,
        ledger=ledger,
        datasets=lambda name: gateway.catalog.get(name).model_dump(mode="json"),
        read_table=gateway.read_bounded,
        max_active_jobs=settings.max_active_jobs_per_analyst,
        queue=queue,
        publish=publisher(gateway, settings.data_dir),
    )


def _document(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as the API answers: response bodies, problem+json errors, the limits' statuses."""
    from gateway.problems import document_problems
    from gateway.schemas import document_bodies

    return document_problems(document_bodies(spec))


def _install_request_hooks(app: APIFlask) -> None:
    @app.before_request
    def _start() -> None:
        g.request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        metrics = resources(app).metrics
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(elapsed)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        # Never log bodies or answers: the path, status, caller and timing only.
        log.info(
            "request",
            method=request.method,
            path=endpoint,
            status=response.status_code,
            analyst=getattr(g.get("analyst"), "name", None),
            ms=round(elapsed * 1000, 2),
            request_id=g.get("request_id"),
        )
        return response


__all__ = ["Resources", "auth", "configure_logging", "create_app", "current_principal", "dataset_definition", "ext",
           "load_registered", "resources"]  # fmt: skip
