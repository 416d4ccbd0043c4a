"""One mapping from errors to RFC 9457 problem+json responses with a stable `code`.

A typed error of the core (`gateway.errors`), the ledger (`budget.errors`) or training
(`training.errors`) names its stable `code`; `STATUS_BY_CODE` is the one table that gives each code its
HTTP status, and the edge answers with that status (the errors' own `status` attributes mirror it for
callers outside HTTP, and tests/api/test_problems.py holds every error class to this table). A code
missing from the table is answered as an internal error, never guessed. An unexpected error is a 500
that names only the request id: its message may hold private data, so it goes nowhere, not even to the
log.
"""
from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import Any

import structlog
from apiflask import APIFlask
from apiflask.exceptions import HTTPError
from flask import g, request

from budget.errors import LedgerError
from gateway.errors import DpgateError

log = structlog.get_logger("dpgate")

# Every stable code the API answers with, and its status (DESIGN.md §4, and the codes added since).
STATUS_BY_CODE: Mapping[str, int] = MappingProxyType({
    "invalid_request": 400,
    "invalid_sql": 400,
    "unsupported_sql": 400,
    "unknown_table": 400,
    "unknown_column": 400,
    "target_unsupported": 400,  # a target no ε can promise
    "unauthorized": 401,
    "forbidden": 403,  # the wrong role, or no allocation on the dataset
    "budget_exhausted": 403,
    "unknown_dataset": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_in_progress": 409,
    "not_ready": 409,  # a synthetic job's rows before it has succeeded
    "request_too_large": 413,
    "target_unreachable": 422,  # the target is not met even at the largest ε
    "rate_limited": 429,
    "training_quota": 429,  # max_active_jobs_per_analyst
    "internal": 500,  # the ledger's schema is newer than this code
    "internal_error": 500,
    "ledger_unavailable": 503,
    "dataset_unavailable": 503,
    "unavailable": 503,  # the training service is shutting down
    "service_unavailable": 503,
    "query_timeout": 504,
})  # fmt: skip
# The framework's errors (werkzeug's, apiflask's) come with a status and no code: the code they get.
CODES_BY_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "request_in_progress",
    413: "request_too_large",
    415: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}
PROBLEM_MEDIA_TYPE = "application/problem+json"


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
    if status == 503:  # the ledger's database or a dataset's data is away: worth retrying
        headers["Retry-After"] = "1"
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
        """The core's, the ledger's and training's errors name their code; the status is the table's."""
        status = STATUS_BY_CODE.get(error.code)
        if status is None:  # a code nobody gave a status: a bug of ours, not the caller's
            log.error("unmapped_error_code", error_type=type(error).__name__, code=error.code, request_id=g.get("request_id"))
            return problem(500, "internal_error", f"internal error; quote request id {g.get('request_id')} when reporting it")
        return problem(status, error.code, error.message, **_extra(error.to_dict()))

    for typed in (DpgateError, LedgerError, TrainingError):
        app.register_error_handler(typed, _typed_error)

    from flask_limiter import RateLimitExceeded

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(error: RateLimitExceeded) -> Any:
        # Retry-After (seconds) is added by the limiter's after-request hook, for this limit
        if str(error.limit.scope) == "organisation":
            per = "organisation"
        else:  # the analyst limit counts a request without a valid key against its address
            per = "analyst" if g.get("analyst") is not None else "client address"
        return problem(429, "rate_limited", f"rate limit exceeded: {error.description} per {per}; retry after Retry-After seconds")

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


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details with dpgate's stable `code`. Some problems add members: "
    "`errors` (invalid bodies), `level` (budget refusals), `construct`, `line` and `col` (refused SQL).",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": ["string", "null"]},
    },
    "additionalProperties": True,
}
_EXTRA_ERRORS = {
    413: "the request body is larger than max_request_bytes (request_too_large)",
    429: "over a rate limit (rate_limited); see Retry-After",
    500: "unexpected error (internal_error): quote the request id in `instance`",
}
_UNLIMITED_PREFIXES = ("/healthz", "/openapi.json", "/docs")


def document_problems(spec: dict[str, Any]) -> dict[str, Any]:
    """Make the spec say what the API does on errors: every 4xx/5xx is problem+json (not the framework's
    default error body), and every operation documents 413 (with a body), 429 (rate limited, with
    Retry-After), 403 (with a role) and 500."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = _PROBLEM_SCHEMA
    ref = {"$ref": "#/components/schemas/Problem"}
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method not in ("get", "put", "post", "delete", "patch") or not isinstance(op, dict):
                continue
            responses = op.setdefault("responses", {})
            extra = dict(_EXTRA_ERRORS)
            if "requestBody" not in op:
                extra.pop(413)
            if path.startswith(_UNLIMITED_PREFIXES):
                extra.pop(429)
            if op.get("security"):
                extra[403] = "your role, or your allocations, do not allow this (forbidden)"
                # every authenticated call reads the ledger; a query also a dataset's data
                extra[503] = "the ledger's database (ledger_unavailable) or a dataset's data (dataset_unavailable) is unavailable; retry"
            for status, description in extra.items():
                responses.setdefault(str(status), {"description": description})
            if "429" in responses:
                responses["429"]["headers"] = {
                    "Retry-After": {"description": "seconds until the limit resets", "schema": {"type": "integer"}}
                }
            for status, response in responses.items():
                if status[:1] in ("4", "5"):
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": ref}}
    for name in ("HTTPError", "ValidationError"):  # the framework's error bodies, unused now
        if name in schemas and name not in str(spec.get("paths")):
            del schemas[name]
    return spec
