"""What every console page shares: the session cookie, the role checks, CSRF, and rendering errors."""
from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from flask import Response, g, redirect, render_template, request, url_for
from pydantic import ValidationError

from gateway.app import ext
from gateway.console.sessions import Session

COOKIE = "dpgate_session"
LOGIN_COOKIE = "dpgate_signin"  # a sign-in form's CSRF token, double-submitted (no session yet)


def cookie_options() -> dict[str, Any]:
    return {"httponly": True, "samesite": "Strict", "secure": request.is_secure, "path": "/"}


def current_session() -> Session | None:
    if "console_session" not in g:
        g.console_session = ext("sessions").get(request.cookies.get(COOKIE))
        if g.console_session is not None:
            g.analyst = g.console_session.analyst  # the request log names the caller, as on the API
    return g.console_session  # type: ignore[no-any-return]


def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    session = current_session()
    return render_template(template, session=session, me=session.analyst if session else None, **context), status


def refusal(status: int, code: str, message: str) -> tuple[str, int]:
    """An HTML refusal: the status, the stable code and a message (never one that depends on data)."""
    return page("error.html", status, error={"status": status, "code": code, "message": message})


def signed_in(*, admin: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Unauthenticated: redirect to sign-in (GET) or 401 (POST); wrong role: a 403 page; every POST's
    CSRF token is checked before the view runs."""

    def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            session = current_session()
            if session is None:
                if request.method == "GET":
                    return redirect(url_for("console.sign_in_form", next=request.full_path.rstrip("?")))
                return refusal(401, "unauthorized", "your session has ended: sign in again")
            if request.method == "POST" and not session.csrf_ok(request.form.get("csrf")):
                return refusal(403, "csrf_failed", "this form's CSRF token is missing or wrong: reload the page and try again")
            if admin and not session.analyst.is_admin:
                return refusal(403, "forbidden", "this page is for administrators")
            return view(*args, **kwargs)

        return inner

    return wrap


def login_token() -> str:
    token = request.cookies.get(LOGIN_COOKIE)
    if not token or len(token) > 64:
        token = secrets.token_urlsafe(32)
    g.login_token = token
    return token


def login_token_ok() -> bool:
    cookie, sent = request.cookies.get(LOGIN_COOKIE), request.form.get("csrf")
    return bool(cookie) and isinstance(sent, str) and hmac.compare_digest(cookie.encode(), sent.encode())


def with_login_cookie(response: Response) -> Response:
    if "login_token" in g:
        response.set_cookie(LOGIN_COOKIE, g.login_token, max_age=3600, **cookie_options())
    return response


def error_of(exc: BaseException) -> dict[str, Any]:
    """A typed core, ledger or training error, or a pydantic one, as the page shows it."""
    if isinstance(exc, ValidationError):
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        return {"status": 400, "code": "invalid_request", "message": fields, "fields": {}}
    fields = {k: v for k, v in getattr(exc, "to_dict", dict)().items() if k not in ("code", "detail")}
    from gateway.problems import STATUS_BY_CODE  # the API's one table of statuses

    code = getattr(exc, "code", "invalid_request")
    return {"status": STATUS_BY_CODE.get(code, 500), "code": code,
            "message": getattr(exc, "message", None) or "the request was refused", "fields": fields}


def typed_errors() -> tuple[type[BaseException], ...]:
    from budget.errors import LedgerError
    from gateway.errors import DpgateError
    from training.errors import TrainingError

    return (DpgateError, LedgerError, TrainingError, ValidationError)
