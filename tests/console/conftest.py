"""A signed-in browser over the Flask test client: reads each form's CSRF token and posts it back."""
from __future__ import annotations

import html
import re
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import ADMIN_KEY, Api, make_app
from tests.api.test_rate_limits import close

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')
_REQUEST_ID = re.compile(r'name="request_id" value="([^"]*)"')


def text(r: Any) -> str:
    return html.unescape(r.get_data(as_text=True))


class Browser:
    """One cookie jar: a person at a browser. `sign_in` goes through the form, as a person would."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = app.test_client()
        self.csrf = ""

    def get(self, url: str, **kw: Any) -> Any:
        r = self.client.get(url, **kw)
        found = _CSRF.search(r.get_data(as_text=True))
        if found:
            self.csrf = found.group(1)
        return r

    def post(self, url: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kw: Any) -> Any:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf", self.csrf)
        r = self.client.post(url, data=form, **kw)
        found = _CSRF.search(r.get_data(as_text=True))
        if found:
            self.csrf = found.group(1)
        return r

    def sign_in(self, key: str) -> Any:
        self.get("/console")
        r = self.post("/console/sign-in", {"key": key})
        assert r.status_code == 302, text(r)[:500]
        self.get("/console/datasets")
        return r

    def query(self, sql: str, *, action: str = "run", epsilon: Any = 0.5, dataset: str = "bank", **extra: Any) -> Any:
        page = self.get("/console/query")
        request_id = _REQUEST_ID.search(page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
        form = {"dataset": dataset, "sql": sql, "epsilon": epsilon, "delta": 0, "target_column": "", "target_ci95": "",
                "request_id": request_id, "action": action, **extra}  # fmt: skip
        return self.post("/console/query", form)


class Console:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.api = Api(app)
        self.ledger = app.extensions["dpgate"]["ledger"]

    def analyst(self, name: str, *, epsilon: float = 2.0, dataset: str = "bank") -> str:
        """A new analyst with an allocation (through the JSON API); returns its key."""
        r = self.api.client.post("/v1/admin/analysts", json={"name": name}, headers=self.api.admin)
        assert r.status_code == 201, r.json
        key = r.json["key"]
        r = self.api.client.put("/v1/admin/budgets", json={"analyst": name, "dataset": dataset, "epsilon": epsilon, "delta": 1e-6}, headers=self.api.admin)
        assert r.status_code == 200, r.json
        return str(key)

    def browser(self, key: str | None = None) -> Browser:
        b = Browser(self.app)
        if key is not None:
            b.sign_in(key)
        return b

    def admin(self) -> Browser:
        return self.browser(ADMIN_KEY)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    c = Console(make_app(tmp_path))
    yield c
    close(c.api)
