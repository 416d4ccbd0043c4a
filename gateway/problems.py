"""One mapping from errors to RFC 9457 problem+json responses with a stable `code`.

Core and ledger errors carry their code and status. An unexpected error is a 500 that names only the
request id: its message may hold private data, so it goes nowhere, not even to the log.
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from apiflask import APIFlask
from apiflask.exceptions import HTTPError
from flask import g, request

from budget.errors import LedgerError
from gateway.errors import DpgateError

log = structlog.get_logger("dpgate")

CODES_BY_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "request_in_progress",
    413: "invalid_request",
    415: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
}


def problem(status: int, code: str, detail: str, **extra: Any) -> tuple[dict[str, Any], int, dict[str, str]]:
    body = {
        "type": f"urn:dpgate:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": g.get("request_id") if g else None,
        **extra,
    }
    headers = {"Content-Type": "application/problem+json"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="dpgate"'
    return body, status, headers


def install_problem_handlers(app: APIFlask) -> None:
    @app.error_processor
    def _http_error(error: HTTPError) -> Any:
        status = error.status_code
        code = CODES_BY_STATUS.get(status, "invalid_request" if status < 500 else "internal_error")
        detail = error.message or HTTPStatus(status).phrase
        extra: dict[str, Any] = {}
        if status == 400 and error.detail:
            extra["errors"] = error.detail
            detail = "the request body or parameters are invalid"
        if status == 401:
            detail = "a valid API key is required: Authorization: Bearer <key>"
        if status == 403:
            detail = "your role may not use this endpoint"
        body, st, headers = problem(status, code, detail, **extra)
        headers.update({k: v for k, v in (error.headers or {}).items() if k.lower() != "content-type"})
        return body, st, headers

    from training.errors import TrainingError

    def _typed_error(error: DpgateError | LedgerError | TrainingError) -> Any:
        """The core's, the ledger's and training's errors carry their own code and status."""
        return problem(error.status, error.code, error.message, **_extra(error.to_dict()))

    for typed in (DpgateError, LedgerError, TrainingError):
        app.register_error_handler(typed, _typed_error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Any:
        if isinstance(error, HTTPError):
            return _http_error(error)
        from werkzeug.exceptions import HTTPException

        if isinstance(error, HTTPException):
            return _http_error(HTTPError(error.code or 500, message=error.name))
        # The type only: an exception's message may quote data.
        log.error("unexpected_error", error_type=type(error).__name__, path=request.path, request_id=g.get("request_id"))
        return problem(500, "internal_error", f"internal error; quote request id {g.get('request_id')} when reporting it")


def _extra(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k not in ("code", "detail")}
