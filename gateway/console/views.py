"""Analyst pages: sign in and out, datasets with their public schema and budget gauges, the SQL editor
(free preview, then run), answers with per-value intervals, history and free re-display of answers.

Each page calls what the JSON API calls (`gateway.http.analyst`, `QueryService`, the ledger's reads),
with the same roles: an analyst sees only datasets it holds an allocation on, and only its own history."""
from __future__ import annotations

import re
import uuid
from typing import Any

from flask import current_app, make_response, redirect, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from gateway.app import ext
from gateway.console import bp
from gateway.console._web import (
    COOKIE,
    LOGIN_COOKIE,
    cookie_options,
    current_session,
    error_of,
    login_token,
    login_token_ok,
    page,
    refusal,
    signed_in,
    typed_errors,
    with_login_cookie,
)
from gateway.console.render import bar_chart, gauges, more_like_this
from gateway.http.analyst import _request, public_metadata
from gateway.schemas import QueryIn

_SAFE_NEXT = re.compile(r"^/console(/[A-Za-z0-9/_.-]*)?(\?[A-Za-z0-9=&_.%-]*)?$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _home() -> str:
    return url_for("console.datasets")


def _next_page(target: str) -> str:
    """Where sign-in goes: the console page the visitor was sent away from, never another site or path."""
    if not _SAFE_NEXT.fullmatch(target or "") or "//" in target or "/." in target:
        return _home()
    try:
        endpoint, _ = current_app.url_map.bind("localhost").match(target.split("?", 1)[0], method="GET")
    except HTTPException:
        return _home()
    return target if endpoint.startswith("console.") and endpoint != "console.sign_in_form" else _home()


@bp.get("/")
@bp.get("/console")
def sign_in_form() -> Any:
    if current_session() is not None:
        return redirect(_home())
    token = login_token()
    body, status = page("signin.html", csrf=token, next=request.args.get("next", ""))
    return with_login_cookie(make_response(body, status))


@bp.post("/console/sign-in")
def sign_in() -> Any:
    token = login_token()
    if not login_token_ok():
        body, status = page("signin.html", 403, csrf=token, error="the sign-in form expired (CSRF token missing or wrong): try again", code="csrf_failed")
        return with_login_cookie(make_response(body, status))
    key = request.form.get("key", "").strip()
    opened = ext("sessions").open(key) if 0 < len(key) <= 256 else None
    if opened is None:
        body, status = page("signin.html", 401, csrf=token, error="that key is not valid (or its analyst is disabled)", code="unauthorized",
                            next=request.form.get("next", ""))  # fmt: skip
        return with_login_cookie(make_response(body, status))
    session_id, _ = opened
    ext("sessions").close(request.cookies.get(COOKIE))  # a sign-in never keeps an earlier session id
    response = redirect(_next_page(request.form.get("next", "")))
    response.set_cookie(COOKIE, session_id, **cookie_options())  # a session cookie: gone when the browser closes
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@bp.post("/console/sign-out")
@signed_in()
def sign_out() -> WerkzeugResponse:
    ext("sessions").close(request.cookies.get(COOKIE))
    response = redirect(url_for("console.sign_in_form"))
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=request.is_secure)
    return response


def _my_budgets(name: str) -> dict[str, dict[str, Any]]:
    return {b["dataset"].lower(): b for b in ext("ledger").budgets(name)}


@bp.get("/console/datasets")
@signed_in()
def datasets() -> Any:
    me = current_session().analyst  # type: ignore[union-attr]
    metas = ext("queries").datasets_for(me)  # as GET /v1/datasets decides it
    budgets = _my_budgets(me.name)
    items = []
    for meta in metas:
        budget = budgets.get(meta.name.lower())
        items.append({"meta": public_metadata(meta), "budget": budget, "gauges": gauges(budget) if budget else []})
    return page("datasets.html", items=items)[0]


def _query_context(me: Any, form: dict[str, str]) -> dict[str, Any]:
    names = sorted(ext("ledger").allocations_of(me.name))
    budgets = _my_budgets(me.name)
    return {"datasets": names, "form": form, "budgets": budgets, "gauges": {k: gauges(v) for k, v in budgets.items()}}


_DEFAULT_FORM = {"dataset": "", "sql": "SELECT COUNT(*) AS n FROM ", "epsilon": "0.5", "delta": "0", "target_column": "", "target_ci95": ""}


@bp.get("/console/query")
@signed_in()
def query_form() -> Any:
    me = current_session().analyst  # type: ignore[union-attr]
    form = dict(_DEFAULT_FORM, request_id=uuid.uuid4().hex)
    context = _query_context(me, form)
    if context["datasets"]:
        form["dataset"] = request.args.get("dataset") or context["datasets"][0]
        tables = ext("gateway").catalog.get(form["dataset"]).tables if form["dataset"] in context["datasets"] else {}
        form["sql"] = _DEFAULT_FORM["sql"] + (sorted(tables)[0] if tables else "")
    return page("query.html", **context)[0]


def _body(form: dict[str, str]) -> QueryIn:
    raw: dict[str, Any] = {"dataset": form["dataset"], "sql": form["sql"], "delta": form["delta"] or 0, "request_id": form["request_id"] or None}
    if form["target_column"].strip():
        raw["target"] = {"column": form["target_column"].strip(), "ci95": form["target_ci95"] or None}
    else:
        raw["epsilon"] = form["epsilon"] or None
    return QueryIn.model_validate(raw)


@bp.post("/console/query")
@signed_in()
def query_submit() -> Any:
    me = current_session().analyst  # type: ignore[union-attr]
    form = {k: request.form.get(k, "") for k in (*_DEFAULT_FORM, "request_id")}
    action = request.form.get("action", "preview")
    result: dict[str, Any] = {"action": action}
    try:
        body = _body(form)
        if action == "run":
            answer = ext("queries").query(me.name, _request(body))
            ext("metrics").charged.inc(answer["cost"]["epsilon"])
            result["answer"] = answer
            result["chart"] = bar_chart(answer)
            form["request_id"] = uuid.uuid4().hex  # the next run is a new request; a resubmit of this one is a retry
        else:
            preview = ext("queries").preview(me.name, _request(body))
            result["preview"] = preview
            result["more"] = more_like_this(preview["cost"], preview["remaining"])
    except typed_errors() as exc:
        result["error"] = error_of(exc)
    status = result["error"]["status"] if "error" in result else 200
    return page("query.html", status, result=result, **_query_context(me, form))


@bp.get("/console/history")
@signed_in()
def history() -> Any:
    """What the caller asked, newest first: its requests, free repeats included (they make no ledger
    entry), and its charges made without a request (training jobs)."""
    me = current_session().analyst  # type: ignore[union-attr]
    return page("history.html", requests=ext("ledger").request_history(me.name, limit=500))[0]


@bp.get("/console/answers/<request_id>")
@signed_in()
def answer(request_id: str) -> Any:
    """An answer already released to this analyst, shown again: free, it is the stored released answer
    (the ledger keys it by analyst and request id, so another analyst's id finds nothing)."""
    me = current_session().analyst  # type: ignore[union-attr]
    stored = ext("ledger").stored_result(me.name, request_id) if _REQUEST_ID.fullmatch(request_id) else None
    if stored is None:
        return refusal(404, "not_found", "no answer of yours has that request id")
    return page("answer.html", answer=stored, chart=bar_chart(stored))[0]


