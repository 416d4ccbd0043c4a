"""End to end in a real browser: Playwright driving Debian's Chromium against a real `dpgate serve`.

An administrator creates two analysts and gives them budgets; Ann signs in, previews, runs, reads an
interval, draws a chart and exhausts her budget; Bob cannot reach Ann's answers nor the admin pages;
/docs renders Swagger UI with no request to another host and no CSP violation. Screenshots of the main
pages go to artifacts/console/ (gitignored; DPGATE_TEST_ARTIFACTS moves them). Skipped where
/usr/bin/chromium or the playwright package is absent (no browser is ever downloaded)."""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.client import Client
from tests.api.conftest import ADMIN_KEY
from tests.api.test_server import Server

CHROMIUM = "/usr/bin/chromium"
try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # pragma: no cover
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(
        sync_playwright is None or not (os.path.exists(CHROMIUM) or shutil.which("chromium")),
        reason="needs the playwright package and Debian's chromium at /usr/bin/chromium",
    ),
    pytest.mark.xdist_group("console_browser"),  # one server and one browser for the module
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("DPGATE_TEST_ARTIFACTS", ROOT / "artifacts" / "console"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("browser")
    rows = ["uid,segment,amount"] + [f"{i},{'retail' if i % 3 else 'private'},{(i * 37) % 500}" for i in range(1, 401)]
    (data_dir / "shop.csv").write_text("\n".join(rows) + "\n")
    srv = Server(data_dir, f"sqlite:///{data_dir / 'ledger.db'}").start()
    admin = Client(srv.url, ADMIN_KEY)
    admin.register_dataset({
        "name": "shop", "privacy_unit": "uid", "budget": {"epsilon": 10, "delta": 0},
        "tables": {"sales": {"source": str(data_dir / "shop.csv"), "max_rows_per_unit": 1, "columns": {
            "uid": {"type": "id"}, "segment": {"type": "category", "categories": ["retail", "private"]},
            "amount": {"type": "float", "lower": 0, "upper": 500}}}},
    })  # fmt: skip
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:  # type: ignore[misc]
        b = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page whose requests and console messages are kept: none may go to another host or break the CSP."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(base_url=base, viewport={"width": 1200, "height": 900})
        self.page: Page = self.context.new_page()
        self.base = base
        self.requests: list[str] = []
        self.messages: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))

    def sign_in(self, key: str) -> None:
        self.page.goto("/")
        self.page.fill("#key", key)
        self.page.click("#sign-in")
        self.page.wait_for_url("**/console/datasets")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def check_clean(self) -> None:
        foreign = [u for u in self.requests if not (u.startswith(self.base) or u.startswith("data:"))]
        assert not foreign, foreign
        violations = [m for m in self.messages if "Content Security Policy" in m or "Refused to" in m]
        assert not violations, violations


def _query(w: Watched, sql: str, action: str, epsilon: str = "0.5") -> None:
    w.page.goto("/console/query")
    w.page.select_option("#dataset", "shop")
    w.page.fill("#sql", sql)
    w.page.fill("#epsilon", epsilon)
    w.page.click(f"#{action}")
    w.page.wait_for_load_state()


def test_the_console_end_to_end(server: Server, browser: Any) -> None:
    admin = Watched(browser, server.url)
    admin.sign_in(ADMIN_KEY)
    keys = {}
    for name in ("ann", "bob"):
        admin.page.goto("/console/admin/analysts")
        admin.page.fill("#new-name", name)
        admin.page.click("#create")
        keys[name] = admin.page.inner_text("#new-key").strip()
        assert keys[name].startswith("dpg_")
        admin.page.select_option("#budget-analyst", name)
        admin.page.select_option("#budget-dataset", "shop")
        admin.page.fill("#budget-epsilon", "1")
        admin.page.click("#set-budget")
        assert "set to ε = 1" in admin.page.inner_text("#budget-set")
    admin.shot("admin-analysts")
    admin.check_clean()

    ann = Watched(browser, server.url)
    ann.sign_in(keys["ann"])
    assert "ε 0 / 1 spent" in ann.page.inner_text("#dataset-shop")
    ann.shot("analyst-datasets")
    _query(ann, "SELECT COUNT(*) AS n FROM sales", "preview")
    assert "≈ 2 more queries like this one" in ann.page.inner_text("#preview-result")
    ann.shot("analyst-preview")
    _query(ann, "SELECT COUNT(*) AS n FROM sales", "run")
    cell = ann.page.inner_text("#answer table.grid tbody td")
    value, low, high = (float(x) for x in re.fullmatch(r"\s*(\S+)\s*\[(\S+), (\S+)\]\s*", cell.replace("\n", " ")).groups())  # type: ignore[union-attr]
    assert low <= value <= high and high - low > 0
    ann.shot("analyst-answer")
    _query(ann, "SELECT segment, COUNT(*) AS n FROM sales GROUP BY segment", "run")
    assert ann.page.locator("figure.chart rect.bar").count() == 2
    ann.shot("analyst-chart")
    _query(ann, "SELECT SUM(amount) AS s FROM sales", "run")
    refusal = ann.page.inner_text("#refusal")
    assert "budget_exhausted" in refusal and "403" in refusal
    ann.shot("analyst-budget-exhausted")
    ann.page.goto("/console/history")
    assert ann.page.locator("#history tbody tr").count() == 2
    answer_link = ann.page.locator("#history a").first.get_attribute("href")
    assert answer_link and answer_link.startswith("/console/answers/")
    ann.shot("analyst-history")
    ann.check_clean()

    bob = Watched(browser, server.url)
    bob.sign_in(keys["bob"])
    bob.page.goto("/console/history")
    assert "GROUP BY segment" not in bob.page.content()
    response = bob.page.goto(answer_link)
    assert response is not None and response.status == 404 and "no answer of yours" in bob.page.inner_text("#refusal")
    response = bob.page.goto("/console/admin/ledger")
    assert response is not None and response.status == 403
    bob.shot("other-analyst-refused")
    bob.check_clean()

    admin.page.goto("/console/admin/ledger")
    assert admin.page.locator("#ledger tbody tr").count() == 2
    admin.shot("admin-ledger")
    admin.page.goto("/console/admin/datasets/shop")
    assert admin.page.locator("#spending-chart circle.point").count() == 2
    assert admin.page.locator("#versions tbody tr").count() >= 1
    admin.shot("admin-dataset")
    admin.check_clean()


def test_docs_render_offline(server: Server, browser: Any) -> None:
    w = Watched(browser, server.url)
    w.page.goto("/docs")
    w.page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "dpgate" in w.page.inner_text(".swagger-ui .info .title")
    assert w.page.locator(".opblock").count() > 5
    w.shot("docs")
    w.check_clean()


def test_a_training_job_followed_live_to_its_model(server: Server, browser: Any) -> None:
    """Cara starts a job from the form; the job page's script follows it (status JSON, under the CSP) until
    it has succeeded; its model page predicts a row. Last in the module: its charge joins the ledger."""
    admin = Client(server.url, ADMIN_KEY)
    key = admin.create_analyst("cara")["key"]
    admin.set_budget("cara", "shop", epsilon=2.0)
    w = Watched(browser, server.url)
    w.sign_in(key)
    w.page.goto("/console/jobs")
    w.page.select_option("#job-dataset", "shop")
    for field, value in (("#job-table", "sales"), ("#job-label", "segment"), ("#job-positive", "private"), ("#job-epsilon", "1")):
        w.page.fill(field, value)
    w.page.select_option("#job-method", "logreg")
    w.page.click("#start")
    w.page.wait_for_url("**/console/jobs/*")
    assert "Accepted and charged ε = 1" in w.page.inner_text("#accepted")
    shown = w.page.get_attribute("#job-live", "data-status")  # as rendered: the job may already have ended
    w.page.wait_for_selector("#job-status.status-succeeded", timeout=60_000)  # the script's polling, then its reload
    assert shown == "succeeded" or any(u.endswith("/status.json") for u in w.requests), (shown, w.requests)
    assert w.page.inner_text("#job-percent") == "100%"
    w.page.click("#job-model a")
    w.page.wait_for_url("**/console/models/*")
    w.page.fill("#feature-0", "250")
    w.page.click("#predict-run")
    w.page.wait_for_selector("#predictions")
    assert w.page.inner_text("#predictions td.value") in ("private", "retail")
    w.shot("analyst-model")
    w.page.goto("/console/jobs")
    assert w.page.locator("#jobs tbody tr.job-succeeded").count() == 1
    w.shot("analyst-jobs")
    w.check_clean()
