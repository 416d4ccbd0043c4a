"""One dataset's administrator page (its metadata, versions, spending over time and per analyst), the
analyst's history with free repeats, and the rate limit on sign-in attempts per address."""
from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pandas as pd

from tests.api.test_rate_limits import close, limited_api
from tests.console.conftest import Browser, Console, text
from gateway.console.render import spending_chart
from tests.console.test_console import COUNT

SUM = "SELECT SUM(amount) AS s FROM tx"


def cells(page: str, table_id: str) -> list[list[str]]:
    """The texts of the cells of table `table_id`'s body, row by row (rows and cells may carry attributes)."""
    body = page[page.index(f'id="{table_id}"'):]
    body = body[body.index("<tbody>"):body.index("</tbody>")]
    return [[re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", td)).strip() for td in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]  # fmt: skip


def _mini(source: Path, *, upper: float, extra_table: bool = False) -> dict[str, object]:
    tables: dict[str, object] = {"l": {"source": str(source), "max_rows_per_unit": 2, "columns": {
        "uid": {"type": "id"}, "amt": {"type": "float", "lower": 0, "upper": upper}}}}  # fmt: skip
    if extra_table:
        tables["m"] = {"source": str(source), "max_rows_per_unit": 2, "columns": {"uid": {"type": "id"}}}
    return {"name": "mini", "privacy_unit": "uid", "budget": {"epsilon": 3, "delta": 0}, "tables": tables}


def test_versions_list_each_registration_with_its_version_and_what_changed(console: Console, tmp_path: Path) -> None:
    source = tmp_path / "loans.csv"
    pd.DataFrame({"uid": [1, 2, 3, 3], "amt": [10.0, 20.0, 30.0, 40.0]}).to_csv(source, index=False)
    registered = []
    for meta in (_mini(source, upper=100), _mini(source, upper=500, extra_table=True)):
        r = console.api.client.post("/v1/admin/datasets", json=meta, headers=console.api.admin)
        assert r.status_code == 201, r.json
        registered.append(r.json["version"])
    assert registered[0] != registered[1]
    page = text(console.admin().get("/console/admin/datasets/mini"))
    rows = cells(page, "versions")
    assert [re.findall(r'<code class="version">([^<]*)</code>', page)] == [[v[:12] for v in reversed(registered)]]
    assert [r[1] for r in rows] == ["admin", "admin"] and [r[3] for r in rows] == ["l, m", "l"]
    assert rows[1][4] == "first registration"
    assert "tables added: m" in rows[0][4] and "columns changed: l.amt" in rows[0][4] and "also changed: version" in rows[0][4]
    assert "columns added" not in rows[0][4] and "tables removed" not in rows[0][4]
    assert 'id="metadata"' in page and "[0, 500]" in page and str(source) not in page  # public metadata: no source
    assert "Nothing charged on this dataset yet." in page
    listing = text(console.admin().get("/console/admin/datasets"))
    assert 'href="/console/admin/datasets/mini"' in listing and 'href="/console/admin/datasets/bank"' in listing


def test_spending_chart_and_tables_are_the_ledgers_sums(console: Console) -> None:
    ann = console.browser(console.analyst("ann", epsilon=3.0))
    bob = console.browser(console.analyst("bob", epsilon=3.0))
    for who, sql, epsilon in ((ann, COUNT, "0.5"), (bob, SUM, "0.25"), (ann, SUM, "0.125"), (ann, COUNT, "0.5")):  # the last is a free repeat
        assert who.query(sql, epsilon=epsilon).status_code == 200
    entries = list(reversed(console.ledger.entries(dataset="bank")))
    assert [e["epsilon"] for e in entries] == [0.5, 0.25, 0.125]
    page = text(console.admin().get("/console/admin/datasets/bank"))
    running, expected = Fraction(0), []
    for e in entries:
        running += Fraction(str(e["epsilon"]))
        expected.append(f"{float(running):.6g}")
    points = cells(page, "spending-points")  # one row per charge (few of them), newest first
    assert [p[1] for p in points] == ["1", "1", "1"] and [p[4] for p in reversed(points)] == expected
    [budget] = [b for b in console.ledger.dataset_budgets() if b["dataset"] == "bank"]
    spent = re.search(r'<span id="spent-cumulative">([^<]+)</span>', page).group(1)  # type: ignore[union-attr]
    assert spent == expected[-1] == f"{budget['epsilon_spent']:.6g}" == "0.875"
    assert cells(page, "spending-analysts") == [["ann", "2", "0.625", "0"], ["bob", "1", "0.25", "0"]]
    svg = page[page.index('<figure class="chart spending"'):page.index("</figure>")]
    assert svg.count('class="point"') == 3 and 'class="total"' in svg and "style=" not in svg
    total_y = float(re.search(r'y1="([\d.]+)" y2="[\d.]+" class="total"', svg).group(1))  # type: ignore[union-attr]
    ys = [float(y) for y in re.findall(r'cy="([\d.]+)"', svg)]
    assert ys == sorted(ys, reverse=True) and total_y < ys[-1]  # rising steps, under the total of ε = 10
    assert "of 10" in svg and f"ε {float(budget['epsilon_total']):.6g}" in page


def test_the_dataset_page_is_for_administrators_and_knows_its_datasets(console: Console) -> None:
    ann = console.browser(console.analyst("ann"))
    r = ann.get("/console/admin/datasets/bank")
    assert r.status_code == 403 and "for administrators" in text(r) and "Public metadata" not in text(r)
    missing = console.admin().get("/console/admin/datasets/nope")
    assert missing.status_code == 404 and "no dataset has that name" in text(missing)
    assert console.admin().get("/console/admin/datasets/BANK").status_code == 200  # names ignore case, as in the catalog


def _member(console: Console, name: str, organisation: str) -> str:
    """A new analyst of `organisation` with an allocation on bank; returns its key."""
    admin = console.api.admin
    r = console.api.client.post("/v1/admin/analysts", json={"name": name, "organisation": organisation}, headers=admin)
    assert r.status_code == 201, r.json
    key = str(r.json["key"])
    r = console.api.client.put("/v1/admin/budgets", json={"analyst": name, "dataset": "bank", "epsilon": 2.0}, headers=admin)
    assert r.status_code == 200, r.json
    return key


def test_history_shows_a_cached_repeat_free_and_what_was_asked(console: Console) -> None:
    ann = console.browser(_member(console, "ann", "acme"))
    assert ann.query(COUNT, epsilon="0.5").status_code == 200
    again = ann.query(COUNT, epsilon="0.5")  # the free-repeat store: no ledger entry
    assert "cached: a free repeat" in text(again)
    api_id = "api-repeat-1"  # a free repeat (of ann's organisation) asked through the JSON API with a request id shows too
    r = console.api.client.post("/v1/queries", json={"dataset": "bank", "sql": COUNT, "epsilon": 0.5, "request_id": api_id},
                                headers={"Authorization": f"Bearer {_member(console, 'ann2', 'acme')}"})  # fmt: skip
    assert r.status_code == 200 and r.json["cached"] is True
    assert len(console.ledger.entries()) == 1
    rows = cells(text(ann.get("/console/history")), "history")
    assert [(r[2], r[3], r[4], r[6]) for r in rows] == [("query", COUNT, "0", "yes (free)"), ("query", COUNT, "0.5", "no (charged)")]
    page = text(ann.get("/console/history"))
    for link in re.findall(r'href="(/console/answers/[^"]+)"', page):
        assert ann.get(link).status_code == 200
    assert len(re.findall(r'href="/console/answers/', page)) == 2
    assert "Nothing asked yet." in text(console.browser(console.analyst("ann3")).get("/console/history"))  # nothing of ann's
    ann2 = console.ledger.request_history("ann2")
    assert [(h["request_id"], h["sql"], h["epsilon"], h["cached"]) for h in ann2] == [(api_id, COUNT, 0.0, True)]


def test_sign_in_attempts_count_per_address_and_spare_signed_in_analysts(tmp_path: Path) -> None:
    api = limited_api(tmp_path, rate_limit_per_analyst="4/minute", rate_limit_per_organisation="1000/minute")
    try:
        ledger = api.app.extensions["dpgate"]["ledger"]
        _, key = ledger.create_analyst("ann")
        ledger.set_allocation("ann", "bank", epsilon="2")
        here, there = {"REMOTE_ADDR": "10.0.0.1"}, {"REMOTE_ADDR": "10.0.0.2"}
        ann = Browser(api.app)
        ann.csrf = re.search(r'name="csrf" value="([^"]*)"', ann.client.get("/console", environ_base=here).get_data(as_text=True)).group(1)  # type: ignore[union-attr]
        assert ann.client.post("/console/sign-in", data={"key": key, "csrf": ann.csrf}, environ_base=here).status_code == 302
        guesser = Browser(api.app)
        token = re.search(r'name="csrf" value="([^"]*)"', guesser.client.get("/console", environ_base=here).get_data(as_text=True)).group(1)  # type: ignore[union-attr]
        guesses = [guesser.client.post("/console/sign-in", data={"key": f"dpg_guess_{i}", "csrf": token}, environ_base=here).status_code
                   for i in range(2)]  # fmt: skip
        assert guesses == [401, 429]  # the address's fifth request in the minute: ann's form and sign-in, the form, a guess, this
        assert ann.client.get("/console/datasets", environ_base=here).status_code == 200  # ann counts as ann now, not as the address
        elsewhere = Browser(api.app)
        assert elsewhere.client.get("/console", environ_base=there).status_code == 200  # another address has its own counter
    finally:
        close(api)


def test_spending_chart_geometry_steps_up_to_the_last_point_under_the_total() -> None:
    points = [{"at": "2026-03-01", "epsilon": 0.75, "epsilon_cumulative": 0.75}, {"at": "2026-03-04", "epsilon": 1.25, "epsilon_cumulative": 2.0}]
    chart = spending_chart(points, 4.0, bucket="day")
    assert chart is not None and [p["x"] for p in chart["points"]] == [30 + 500 / 4, 530]  # placed by date: day 0 of 0..3, then day 3
    assert chart["zero_y"] == 190 and chart["top_y"] == chart["total_y"] == 30  # the total is the top: 160 px for ε = 4
    assert [p["y"] for p in chart["points"]] == [190 - 0.75 * 40, 190 - 2.0 * 40]
    assert chart["path"] == "M 30 190.0 H 155.0 V 160.0 H 530.0 V 110.0" and chart["spent"] == 2.0
    over = spending_chart(points, 1.0, bucket="entry")  # spent past a total cut below it: the top is what was spent
    assert over is not None and over["top"] == 2.0 and [p["x"] for p in over["points"]] == [280, 530] and over["total_y"] < over["zero_y"]
    assert spending_chart([], 4.0, bucket="day") is None


def test_a_dataset_budget_that_renews_shows_its_window_on_both_admin_pages(console: Console, tmp_path: Path) -> None:
    source = tmp_path / "loans.csv"
    pd.DataFrame({"uid": [1, 2, 3, 3], "amt": [10.0, 20.0, 30.0, 40.0]}).to_csv(source, index=False)
    meta = _mini(source, upper=100) | {"budget": {"epsilon": 3, "delta": 0, "renew": {"every": "week", "epsilon": 0.75}}}
    r = console.api.client.post("/v1/admin/datasets", json=meta, headers=console.api.admin)
    assert r.status_code == 201, r.json
    key = console.analyst("ann", dataset="mini", epsilon=2.0)
    assert console.browser(key).query("SELECT COUNT(*) AS n FROM l", epsilon=0.5, dataset="mini").status_code == 200
    admin = console.admin()
    listing = {row[0]: row for row in cells(text(admin.get("/console/admin/datasets")), "datasets")}
    assert "every week: this window" in listing["mini"][-1] and "ε 0.5 of 0.75" in listing["mini"][-1]
    assert listing["bank"][-1] == "never"
    page = text(admin.get("/console/admin/datasets/mini"))
    window = page[page.index('id="dataset-window"'):]
    assert "Renews every week" in window and "ε 0.5 of 0.75" in window and "caps every window" in window
    assert 'id="dataset-window"' not in text(admin.get("/console/admin/datasets/bank"))
