"""Rate limits per analyst and per organisation (flask-limiter), checked before any view runs.

Every authenticated request counts once against its analyst (`rate_limit_per_analyst`) and once against
its organisation (`rate_limit_per_organisation`; an analyst without one is its own organisation), in
every endpoint together. A console page counts against the analyst its session cookie names, as its API
calls would. A request without a valid key or session counts against its client address under the
analyst limit, which also slows guessing keys (the console's sign-in form and /metrics included). The
liveness and spec endpoints are not limited.

A limited request is refused in `before_request`: its view never runs, so it reads no data, plans
nothing and is charged nothing. The refusal is 429 problem+json, code `rate_limited`, with Retry-After
(`problems`). Counters live in `rate_limit_storage`: memory:// per process, or Redis shared by processes;
if Redis is unreachable, each process counts in memory until it is back.
"""
from __future__ import annotations

from typing import Any

from apiflask import APIFlask
from flask import request
from flask_limiter import ApplicationLimit, Limiter

from gateway.http.auth import current_principal
from gateway.settings import Settings

UNLIMITED_BLUEPRINTS = frozenset({"health", "openapi"})  # /healthz; /openapi.json, /docs (not /metrics: it takes a key)


def _address() -> str:
    return f"address:{request.remote_addr or 'unknown'}"


def _caller() -> Any:
    """The analyst of the bearer key, or of the console session on a console page; None for neither."""
    who = current_principal()
    if who is None and request.blueprint == "console":
        from gateway.console._web import current_session

        session = current_session()
        who = None if session is None else session.analyst
    return who


def analyst_key() -> str:
    who = _caller()
    return _address() if who is None else f"analyst:{who.name}"


def organisation_key() -> str:
    who = _caller()
    if who is None:
        return _address()
    return f"organisation:{who.organisation}" if who.organisation else f"analyst:{who.name}"


def _unauthenticated() -> bool:
    return _caller() is None


def _unlimited() -> bool:
    return request.blueprint in UNLIMITED_BLUEPRINTS or request.endpoint == "static"


def install_rate_limits(app: APIFlask, settings: Settings) -> Limiter:
    limiter = Limiter(
        analyst_key,
        application_limits=[
            ApplicationLimit(settings.rate_limit_per_analyst, key_function=analyst_key, scope="analyst"),
            ApplicationLimit(
                settings.rate_limit_per_organisation,
                key_function=organisation_key,
                scope="organisation",
                exempt_when=_unauthenticated,  # the address already counts under the analyst limit
            ),
        ],
        storage_uri=settings.rate_limit_storage,
        in_memory_fallback_enabled=True,
        headers_enabled=True,  # X-RateLimit-* and, when limited, Retry-After (seconds)
        retry_after="delta-seconds",
        key_prefix="dpgate",
    )
    limiter.request_filter(_unlimited)
    limiter.init_app(app)
    return limiter
