"""Who may open which console page: every console route × {nobody, analyst, administrator}, CSRF on every
POST. The routes come from `app.url_map`, so a new console page fails `test_every_console_route_is_classified`
until it has a row here. Unauthenticated GETs are sent to the sign-in page; unauthenticated POSTs get a 401
page; analysts get a 403 page on administrators' pages; a POST without the session's CSRF token is a 403
page and does nothing."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.api.conftest import make_app
from tests.api.test_rate_limits import close
from tests.console.conftest import Browser, Console, text

PUBLIC, ANALYST, ADMIN = "public", "analyst", "admin"
ROUTES: dict[str, str] = {
    "console.static": PUBLIC,
    "console.swagger_asset": PUBLIC,
    "console.sign_in_form": PUBLIC,
    "console.sign_in": PUBLIC,  # its CSRF is the sign-in form's own (double-submitted), tested apart
    "console.sign_out": ANALYST,
    "console.datasets": ANALYST,
    "console.query_form": ANALYST,
    "console.query_submit": ANALYST,
    "console.history": ANALYST,
    "console.answer": ANALYST,
    "console.admin_datasets": ADMIN,
    "console.admin_register_dataset": ADMIN,
    "console.admin_analysts": ADMIN,
    "console.admin_create_analyst": ADMIN,
    "console.admin_set_budget": ADMIN,
    "console.admin_disable_analyst": ADMIN,
    "console.admin_rotate_key": ADMIN,
    "console.admin_ledger": ADMIN,
    "console.admin_ledger_csv": ADMIN,
    "console.admin_dataset": ADMIN,
    "console.jobs": ANALYST,
    "console.job_start": ANALYST,
    "console.job": ANALYST,
    "console.job_status_json": ANALYST,
    "console.job_cancel": ANALYST,
    "console.models": ANALYST,
    "console.model": ANALYST,
    "console.model_predict": ANALYST,
    "console.model_audit": ADMIN,
    "console.model_audit_plot": ADMIN,
    "console.synthetic": ANALYST,
    "console.synthetic_start": ANALYST,
    "console.synthetic_job": ANALYST,
    "console.synthetic_download": ANALYST,
}
pytestmark = pytest.mark.xdist_group("console_matrix")  # one app for the module
VALUES = {"filename": "console.css", "request_id": "0123456789abcdef", "analyst": "carl", "dataset": "bank",
          "job_id": "0123456789abcdef0123456789abcdef", "model_id": "0123456789abcdef0123456789abcdef", "name": "roc"}
# one job's or model's pages: no job runs here, so they are 404; test_console_training opens them
RECORD_PAGES = ("console.job", "console.job_status_json", "console.model", "console.model_audit_plot",
                "console.synthetic_job", "console.synthetic_download")


@dataclass
class World:
    console: Console
    ann: Browser
    admin: Browser


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    console = Console(make_app(tmp_path_factory.mktemp("console_matrix")))
    ann = console.browser(console.analyst("ann"))
    console.analyst("carl")
    yield World(console, ann, console.admin())
    close(console.api)


def _routes(world: World) -> list[tuple[str, str, str]]:
    adapter = world.console.app.url_map.bind("localhost")
    out = []
    for rule in world.console.app.url_map.iter_rules():
        if not rule.endpoint.startswith("console."):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            values = {**VALUES, "filename": "swagger-ui.css"} if rule.endpoint == "console.swagger_asset" else VALUES
            out.append((rule.endpoint, method, adapter.build(rule.endpoint, {a: values[a] for a in rule.arguments})))
    return out


def test_every_console_route_is_classified(world: World) -> None:
    endpoints = {e for e, _, _ in _routes(world)}
    assert endpoints == set(ROUTES), f"unclassified: {endpoints - set(ROUTES)}; gone: {set(ROUTES) - endpoints}"


def test_nobody_is_sent_to_sign_in_or_refused(world: World) -> None:
    anonymous = world.console.browser()
    for endpoint, method, url in _routes(world):
        if ROUTES[endpoint] == PUBLIC:
            continue
        r = anonymous.client.open(url, method=method, data={"csrf": "x"})
        if method == "GET":
            assert r.status_code == 302, (endpoint, r.status_code)
            assert r.headers["Location"].startswith("/console?next="), (endpoint, r.headers["Location"])
        else:
            assert r.status_code == 401 and "unauthorized" in text(r), (endpoint, r.status_code)


def test_a_forged_or_stale_cookie_is_nobody(world: World) -> None:
    anonymous = world.console.browser()
    anonymous.client.set_cookie("dpgate_session", "x" * 43)
    r = anonymous.client.get("/console/datasets")
    assert r.status_code == 302 and r.headers["Location"].startswith("/console?next=")


def test_analysts_get_a_403_page_on_every_admin_route(world: World) -> None:
    for endpoint, method, url in _routes(world):
        if ROUTES[endpoint] != ADMIN:
            continue
        r = world.ann.client.open(url, method=method, data={"csrf": world.ann.csrf})
        assert r.status_code == 403, (endpoint, r.status_code)
        body = text(r)
        assert "forbidden" in body and "for administrators" in body, endpoint
        assert r.headers["Content-Type"].startswith("text/html") and "Content-Security-Policy" in r.headers


@pytest.mark.parametrize("who", ["ann", "admin"])
def test_every_post_without_the_csrf_token_is_refused(world: World, who: str) -> None:
    browser: Browser = getattr(world, who)
    for endpoint, method, url in _routes(world):
        if method != "POST" or ROUTES[endpoint] == PUBLIC or (ROUTES[endpoint] == ADMIN and who != "admin"):
            continue
        for token in (None, "", "not-the-token", browser.csrf + "x"):
            data = {"name": "mallory", "analyst": "ann", "dataset": "bank", "epsilon": "99", "sql": "SELECT COUNT(*) FROM tx",
                    "action": "run", "request_id": "csrf-1"}  # fmt: skip
            if token is not None:
                data["csrf"] = token
            r = browser.client.post(url, data=data)
            assert r.status_code == 403, (endpoint, token, r.status_code)
            assert "csrf_failed" in text(r), endpoint
    ledger = world.console.ledger
    assert ledger.get_analyst("mallory") is None  # nothing a refused form asked was done
    assert all(e["request_id"] != "csrf-1" for e in ledger.entries())
    assert [b["epsilon_total"] for b in ledger.budgets("ann")] == [2.0]
    assert world.ann.get("/console/datasets").status_code == 200  # and sign-out without a token signed nobody out


def test_allowed_pages_open(world: World) -> None:
    for endpoint, method, url in _routes(world):
        if method != "GET" or endpoint in ("console.answer", "console.sign_in_form", *RECORD_PAGES):
            continue
        browser = world.admin if ROUTES[endpoint] == ADMIN else world.ann
        r = browser.client.get(url)
        assert r.status_code == 200, (endpoint, r.status_code, text(r)[:300])
        r.close()


def test_the_signed_in_front_page_goes_to_the_datasets(world: World) -> None:
    for url in ("/", "/console"):
        r = world.ann.client.get(url)
        assert r.status_code == 302 and r.headers["Location"] == "/console/datasets"


def test_sign_in_next_stays_on_this_site(world: World) -> None:
    for i, (target, lands) in enumerate( (("/console/history", "/console/history"), ("https://evil.example/", "/console/datasets"),
                          ("//evil.example/x", "/console/datasets"), ("/console/../v1/budget", "/console/datasets"))):  # fmt: skip
        b = world.console.browser()
        b.get("/console")
        r = b.post("/console/sign-in", {"key": world.console.analyst(f"next{i}"), "next": target})
        assert r.status_code == 302 and r.headers["Location"] == lands, (target, r.headers["Location"])
        assert re.match(r"^/", r.headers["Location"])
