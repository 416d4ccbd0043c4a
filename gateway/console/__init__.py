"""The web console: server-rendered pages for analysts and administrators, served by the gateway itself.

Nothing comes from another host: the templates, the CSS, the few lines of JavaScript and, for `/docs`,
the Swagger UI files (from the `flask-swagger-ui` package's dist folder) are all served from here. Every HTML
response carries a Content-Security-Policy that allows only this origin (scripts also by a per-request
nonce). Sign-in exchanges an API key for a server-side session (`sessions`); the cookie holds only a
random id (HttpOnly, SameSite=Strict, Secure under TLS); every form carries a CSRF token checked on
every POST. The pages call the same core and ledger functions as the JSON API, with the same roles.
"""
from __future__ import annotations

import secrets

from apiflask import APIFlask
from flask import Blueprint, Response, current_app, g, render_template, request, send_from_directory, url_for

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static", static_url_path="/console/static")
_FILES = frozenset({"console.static", "console.swagger_asset"})


def nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return str(g.csp_nonce)


def content_security_policy() -> str:
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce()}'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ])  # fmt: skip


def _secure_html(response: Response) -> Response:
    """Every HTML page, the console's and the docs', is held to this origin."""
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = content_security_policy()
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.blueprint == "console":  # answers and keys are never cached by the browser
            response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/console/assets/swagger/<path:filename>")
def swagger_asset(filename: str) -> Response:
    """Swagger UI's dist files, as the flask-swagger-ui package ships them (no CDN; only its files are used)."""
    return send_from_directory(_swagger_dist(), filename, max_age=3600)


def _swagger_dist() -> str:
    from importlib.resources import files

    return str(files("flask_swagger_ui") / "dist")


def _docs() -> str:
    return render_template("docs.html", title=current_app.title, version=current_app.version, spec_url=url_for("openapi.spec"))  # type: ignore[attr-defined]


def install_console(app: APIFlask) -> None:
    """Register the console's pages, its sessions, the CSP on every HTML page and the offline /docs."""
    from gateway.console import admin_views, synthetic_views, training_views, views  # noqa: F401  (their routes join `bp`)
    from gateway.console.sessions import SessionStore

    app.extensions["dpgate"]["sessions"] = SessionStore(app.extensions["dpgate"]["ledger"])
    app.register_blueprint(bp)
    limiter = app.extensions["dpgate"].get("limiter")
    if limiter is not None:  # files, like /docs itself, are never rate limited; pages count as on the API
        limiter.request_filter(lambda: request.endpoint in _FILES)
    app.jinja_env.globals["csp_nonce"] = nonce
    app.after_request(_secure_html)
    if "openapi.docs" in app.view_functions:
        app.view_functions["openapi.docs"] = _docs  # the same route, its assets served from here
