"""The console's pages as an analyst and an administrator use them (Flask test client): sign-in and its
cookie, CSP, preview and run with their values and intervals, refusals, budgets, history, admin work."""
from __future__ import annotations

import csv
import io
import json
import math
import re
import sqlite3
from typing import Any

import pytest

from tests.console.conftest import Console, text

COUNT = "SELECT COUNT(*) AS n FROM tx"
BY_SEGMENT = "SELECT segment, COUNT(*) AS n FROM cust GROUP BY segment"
_EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//""", re.I)


def cells(page: str, table_id: str | None = None) -> list[list[str]]:
    """The answer table's rows of cell texts (value, then its interval where one is shown)."""
    body = page[page.index('<table class="grid">'):] if table_id is None else page[page.index(f'id="{table_id}"'):]
    body = body[body.index("<tbody>"):body.index("</tbody>")]
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        rows.append([re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", td)).strip() for td in re.findall(r"<td>(.*?)</td>", tr, re.S)])
    return rows


def test_sign_in_gives_an_http_only_strict_cookie_and_never_keeps_the_key(console: Console) -> None:
    key = console.analyst("ann")
    b = console.browser()
    page = b.get("/")
    assert page.status_code == 200 and 'type="password"' in text(page) and 'name="csrf"' in text(page)
    r = b.post("/console/sign-in", {"key": key})
    assert r.status_code == 302 and r.headers["Location"] == "/console/datasets"
    [cookie] = [c for c in r.headers.getlist("Set-Cookie") if c.startswith("dpgate_session=")]
    session_id = cookie.split(";", 1)[0].split("=", 1)[1]
    assert len(session_id) >= 40 and key not in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # plain HTTP here
    assert key not in text(b.get("/console/datasets")) and key not in text(b.get("/console/query"))
    # the database holds the session id's hash only, and never the key
    db = console.app.extensions["dpgate"]["settings"].data_dir / "ledger.db"
    con = sqlite3.connect(db)
    rows = con.execute("SELECT * FROM console_sessions").fetchall()
    con.close()
    assert len(rows) == 1 and all(session_id not in str(v) and key not in str(v) for v in rows[0])
    # sign out: the session is gone on the server, the old cookie is worth nothing
    assert b.post("/console/sign-out").status_code == 302
    stale = console.browser()
    stale.client.set_cookie("dpgate_session", session_id)
    assert stale.client.get("/console/datasets").status_code == 302


def test_sessions_work_on_a_postgresql_ledger(tmp_path: Any) -> None:
    from tests.api.conftest import drop_pg_database, fresh_pg_database, make_app
    from tests.api.test_rate_limits import close

    url = fresh_pg_database()
    try:
        console = Console(make_app(tmp_path, ledger_url=url))
        try:
            ann = console.browser(console.analyst("ann"))
            assert ann.query(COUNT).status_code == 200
            assert "COUNT(*) AS n" in text(ann.get("/console/history"))
            assert ann.post("/console/sign-out").status_code == 302
            assert ann.get("/console/history").status_code == 302
        finally:
            close(console.api)
            console.ledger.close()
    finally:
        drop_pg_database(url)


def test_under_tls_the_cookie_is_secure(console: Console) -> None:
    key = console.analyst("ann")
    client = console.app.test_client()
    page = client.get("/console", base_url="https://localhost")
    token = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    r = client.post("/console/sign-in", data={"key": key, "csrf": token}, base_url="https://localhost")
    [cookie] = [c for c in r.headers.getlist("Set-Cookie") if c.startswith("dpgate_session=")]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_bad_keys_and_missing_sign_in_token_are_refused(console: Console) -> None:
    key = console.analyst("ann")
    b = console.browser()
    b.get("/console")
    for bad in ("", "dpg_nothing_" + "x" * 40, key + "x", "k" * 300):
        r = b.post("/console/sign-in", {"key": bad})
        assert r.status_code == 401 and "that key is not valid" in text(r), bad
        assert not any(c.startswith("dpgate_session=") for c in r.headers.getlist("Set-Cookie"))
    r = b.post("/console/sign-in", {"key": key}, csrf=False)  # a cross-site sign-in (login CSRF)
    assert r.status_code == 403 and "csrf_failed" in text(r)
    r = b.post("/console/sign-in", {"key": key, "csrf": "forged"}, csrf=False)
    assert r.status_code == 403


def test_a_rotated_key_or_a_disabled_analyst_ends_the_session(console: Console) -> None:
    b = console.browser(console.analyst("ann"))
    assert b.get("/console/datasets").status_code == 200
    console.ledger.rotate_key("ann")
    assert b.get("/console/datasets").status_code == 302
    c = console.browser(console.analyst("bob"))
    console.ledger.disable_analyst("bob")
    assert c.get("/console/history").status_code == 302


def test_every_html_page_has_a_strict_csp_and_nonced_scripts_only(console: Console) -> None:
    ann = console.browser(console.analyst("ann"))
    admin = console.admin()
    pages = [(console.browser(), "/"), (ann, "/console/datasets"), (ann, "/console/query"), (ann, "/console/history"),
             (ann, "/console/admin/ledger"), (admin, "/console/admin/analysts"), (admin, "/console/admin/datasets"),
             (admin, "/console/admin/ledger"), (ann, "/docs"), (ann, "/console/answers/nothing")]  # fmt: skip
    for browser, url in pages:
        r = browser.client.get(url)
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, url
        [nonce] = re.findall(r"'nonce-([^']+)'", csp)
        body = r.get_data(as_text=True)
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", body, re.S)
        assert scripts, url
        for attrs, inline in scripts:
            assert f'nonce="{nonce}"' in attrs and 'src="/' in attrs and not inline.strip(), (url, attrs)
        assert " style=" not in body and "<style" not in body, url  # style-src 'self': no inline styles
        assert not _EXTERNAL.search(body), (url, _EXTERNAL.search(body))
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert ann.client.get("/console/query").headers["Cache-Control"] == "no-store"


def test_docs_work_offline(console: Console) -> None:
    client = console.app.test_client()
    r = client.get("/docs")
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "swagger-ui" in body
    assert "http://" not in body and "https://" not in body and "cdn" not in body.lower()
    refs = [ref for ref in re.findall(r'(?:src|href)="([^"]+)"', body) if ref != "data:,"]  # no favicon request
    assert len(refs) == 5 and all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
    for ref in refs:
        asset = client.get(ref)
        assert asset.status_code == 200 and len(asset.data) > 50, ref
        asset.close()
    bundle = client.get("/console/assets/swagger/swagger-ui-bundle.js")
    assert "javascript" in bundle.headers["Content-Type"] and b"SwaggerUIBundle" in bundle.data
    bundle.close()
    assert "/openapi.json" in body and client.get("/openapi.json").status_code == 200


def test_datasets_page_shows_the_public_schema_and_gauges(console: Console) -> None:
    ann = console.browser(console.analyst("ann", epsilon=2.0))
    page = text(ann.get("/console/datasets"))
    assert 'id="dataset-bank"' in page and "<code>cid</code> (user-level)" in page
    assert "[0, 1000]" in page and "food, travel, tech, café ☕" in page and "at most 5 row(s) per unit" in page
    assert "raw_tx" not in page  # where the data lives is not public
    assert "ε 0 / 2 spent" in page and "ε 0 / 10 spent" in page


def test_preview_is_free_and_states_cost_intervals_and_how_many_more(console: Console) -> None:
    key = console.analyst("ann", epsilon=2.0)
    ann = console.browser(key)
    api = console.api.client.post("/v1/queries/preview", json={"dataset": "bank", "sql": COUNT, "epsilon": 0.3},
                                  headers={"Authorization": f"Bearer {key}"}).json  # fmt: skip
    r = ann.query(COUNT, action="preview", epsilon=0.3)
    page = text(r)
    assert r.status_code == 200 and 'id="preview-result"' in page
    assert "ε = 0.3</strong>" in page
    assert f"± {api['accuracy']['n']['ci95']:.6g}" in page  # the API's own expected interval
    assert "≈ 6 more queries like this one" in page  # floor(2 / 0.3)
    assert console.ledger.entries() == [] and console.ledger.budgets("ann")[0]["epsilon_spent"] == 0


def test_preview_by_accuracy_quotes_the_smallest_epsilon(console: Console) -> None:
    ann = console.browser(console.analyst("ann"))
    r = ann.query(COUNT, action="preview", epsilon="", target_column="n", target_ci95="30")
    page = text(r)
    assert r.status_code == 200, page[:2000]
    quoted = float(re.search(r"cost <strong>ε = ([0-9.e-]+)</strong>", page).group(1))  # type: ignore[union-attr]
    assert 0 < quoted <= 1 and "meets ± 30 on n" in page


def test_run_shows_each_value_with_its_interval_as_released(console: Console) -> None:
    ann = console.browser(console.analyst("ann"))
    r = ann.query("SELECT COUNT(*) AS n, AVG(amount) AS a FROM tx", epsilon=0.5)
    page = text(r)
    assert r.status_code == 200 and 'id="answer"' in page
    request_id = re.search(r"request id <code>([^<]+)</code>", page).group(1)  # type: ignore[union-attr]
    stored = console.ledger.stored_result("ann", request_id)
    assert stored is not None and stored["cost"]["epsilon"] == 0.5
    [[n_cell, a_cell]] = cells(page)
    for cell, column, value in ((n_cell, "n", stored["rows"][0][0]), (a_cell, "a", stored["rows"][0][1])):
        low, high = stored["intervals"][column][0]
        assert cell == f"{value:.6g} [{low:.6g}, {high:.6g}]", (cell, column)
        assert low <= value <= high
    assert "laplace" in page and "clamped to [0, 1000]" in page  # accuracy and bounding notes
    [entry] = console.ledger.entries(analyst="ann")
    assert entry["request_id"] == request_id and entry["epsilon"] == 0.5


def test_group_by_with_one_key_draws_a_bar_per_group_with_whiskers(console: Console) -> None:
    ann = console.browser(console.analyst("ann"))
    page = text(ann.query(BY_SEGMENT))
    rows = cells(page)
    assert [r[0] for r in rows] == ["retail", "private"]
    bars = re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)" class="bar"><title>([^<]+)</title>', page)
    assert [t.split(":")[0] for _, t in bars] == ["retail", "private"]
    values = [float(t.split(": ")[1]) for _, t in bars]
    assert values == [float(r[1].split()[0]) for r in rows]
    heights = [float(h) for h, _ in bars]
    assert (heights[0] > heights[1]) == (values[0] > values[1])  # taller bar, larger value
    assert page.count('class="whisker"') == 3 * len(bars)


def test_refusals_show_message_code_and_position_and_cost_nothing(console: Console) -> None:
    ann = console.browser(console.analyst("ann"))
    r = ann.query("SELECT * FROM tx")
    page = text(r)
    assert r.status_code == 400 and 'id="refusal"' in page
    assert "unsupported_sql" in page and "SELECT * would release rows" in page and "(line 1, column 8)" in page
    assert re.search(r"<dt>construct</dt><dd>\*</dd>", page)
    r = ann.query(COUNT, dataset="nope")
    assert r.status_code in (403, 404) and 'id="refusal"' in text(r)
    r = ann.query(COUNT, epsilon="-1")
    assert r.status_code == 400 and "invalid_request" in text(r) and "epsilon" in text(r)
    assert console.ledger.entries() == []


def test_budget_exhaustion_shows_the_refusal_and_a_full_gauge(console: Console) -> None:
    ann = console.browser(console.analyst("ann", epsilon=1.0))
    assert "≈ 2 more queries" in text(ann.query(COUNT, action="preview", epsilon=0.5))
    for sql in (COUNT, "SELECT SUM(amount) AS s FROM tx"):
        assert ann.query(sql, epsilon=0.5).status_code == 200
    assert "≈ 0 more queries" in text(ann.query(COUNT + " WHERE flag", action="preview", epsilon=0.5))
    r = ann.query(COUNT + " WHERE flag", epsilon=0.5)
    page = text(r)
    assert r.status_code == 403 and "budget_exhausted" in page and 'id="refusal"' in page
    assert re.search(r"<dt>level</dt><dd>analyst</dd>", page)
    assert 'class="gfull"' in page and "<strong>0</strong> left" in page
    assert [e["epsilon"] for e in console.ledger.entries(analyst="ann")] == [0.5, 0.5]


def test_history_lists_charges_and_shows_released_answers_again_for_free(console: Console) -> None:
    ann = console.browser(console.analyst("ann"))
    first = text(ann.query(COUNT))
    request_id = re.search(r"request id <code>([^<]+)</code>", first).group(1)  # type: ignore[union-attr]
    again = text(ann.query(COUNT))  # the same query again: the free-repeat store
    assert "cached: a free repeat" in again and "ε = 0, δ = 0" in again
    assert cells(again) == cells(first)
    page = text(ann.get("/console/history"))
    assert page.count("<code class=\"sql\">") == 2 and "COUNT(*) AS n" in page and "no (charged)" in page and "yes (free)" in page
    link = f"/console/answers/{request_id}"
    assert link in page
    shown = ann.get(link)
    assert shown.status_code == 200 and cells(text(shown)) == cells(first)
    assert len(console.ledger.entries()) == 1  # showing it again charged nothing


def test_another_analyst_cannot_reach_the_first_ones_history_answers_or_datasets(console: Console) -> None:
    ann = console.browser(console.analyst("ann"))
    page = text(ann.query("SELECT SUM(amount) AS secret_sum FROM tx"))
    request_id = re.search(r"request id <code>([^<]+)</code>", page).group(1)  # type: ignore[union-attr]
    bob = console.browser(console.analyst("bob", dataset="bank"))
    assert "secret_sum" not in text(bob.get("/console/history"))
    foreign, missing = bob.get(f"/console/answers/{request_id}"), bob.get("/console/answers/0123456789abcdef")
    assert foreign.status_code == missing.status_code == 404
    assert "no answer of yours has that request id" in text(foreign) and "no answer of yours has that request id" in text(missing)
    assert "secret_sum" not in text(foreign)
    # carol has no allocation at all: no dataset, no query on bank
    r = console.api.client.post("/v1/admin/analysts", json={"name": "carol"}, headers=console.api.admin)
    carol = console.browser(r.json["key"])
    assert 'id="dataset-bank"' not in text(carol.get("/console/datasets"))
    refused = carol.query(COUNT)
    assert refused.status_code == 403 and "forbidden" in text(refused)


def test_admin_creates_an_analyst_key_shown_once_and_sets_a_budget(console: Console) -> None:
    admin = console.admin()
    admin.get("/console/admin/analysts")
    r = admin.post("/console/admin/analysts", {"name": "dora", "role": "analyst", "organisation": ""})
    page = text(r)
    assert r.status_code == 201
    key = re.search(r'<pre class="key" id="new-key">([^<]+)</pre>', page).group(1)  # type: ignore[union-attr]
    assert console.ledger.authenticate(key).name == "dora"  # type: ignore[union-attr]
    assert key not in text(admin.get("/console/admin/analysts"))  # shown once
    r = admin.post("/console/admin/budgets", {"analyst": "dora", "dataset": "bank", "epsilon": "1.5", "delta": "0"})
    page = text(r)
    assert r.status_code == 200 and 'id="budget-set"' in page and "ε = 1.5" in page and 'id="warning"' not in page
    assert console.ledger.budgets("dora")[0]["epsilon_total"] == 1.5
    dora = console.browser(key)
    assert "ε 0 / 1.5 spent" in text(dora.get("/console/datasets"))
    assert dora.query(COUNT).status_code == 200
    # an allocation past what the dataset has left is set, with a warning
    r = admin.post("/console/admin/budgets", {"analyst": "dora", "dataset": "bank", "epsilon": "50", "delta": "0"})
    assert r.status_code == 200 and 'id="warning"' in text(r) and "binds first" in text(r)
    # a bad form is a refusal, nothing set
    r = admin.post("/console/admin/budgets", {"analyst": "dora", "dataset": "bank", "epsilon": "-3", "delta": "0"})
    assert r.status_code == 400 and "invalid_request" in text(r)
    r = admin.post("/console/admin/analysts", {"name": "dora", "role": "analyst"})
    assert r.status_code >= 400 and 'id="refusal"' in text(r)


def test_admin_rotates_a_key_and_disables_an_analyst(console: Console) -> None:
    admin = console.admin()
    old = console.analyst("erin")
    erin = console.browser(old)
    admin.get("/console/admin/analysts")
    r = admin.post("/console/admin/analysts/erin/rotate-key")
    if r.status_code == 404:
        pytest.skip("this gateway's admin API has no rotate-key yet")
    new = re.search(r'<pre class="key" id="new-key">([^<]+)</pre>', text(r)).group(1)  # type: ignore[union-attr]
    assert new != old and console.ledger.authenticate(old) is None and console.ledger.authenticate(new).name == "erin"  # type: ignore[union-attr]
    assert erin.get("/console/datasets").status_code == 302  # her session ended with the old key
    r = admin.post("/console/admin/analysts/erin/disable")
    assert r.status_code == 200 and 'id="disabled"' in text(r) and console.ledger.get_analyst("erin").disabled  # type: ignore[union-attr]


def test_admin_registers_a_dataset_from_json(console: Console, tmp_path: Any) -> None:
    src = tmp_path / "mini.csv"
    src.write_text("uid,amt\n1,1.5\n2,2.5\n3,3.0\n")
    definition = {"name": "mini", "privacy_unit": "uid", "budget": {"epsilon": 3, "delta": 0},
                  "tables": {"l": {"source": str(src), "max_rows_per_unit": 2,
                                   "columns": {"uid": {"type": "id"}, "amt": {"type": "float", "lower": 0, "upper": 100}}}}}  # fmt: skip
    admin = console.admin()
    admin.get("/console/admin/datasets")
    r = admin.post("/console/admin/datasets", {"definition": json.dumps(definition)})
    page = text(r)
    assert r.status_code == 201 and 'id="registered"' in page and "<strong>mini</strong>" in page
    assert {b["dataset"] for b in console.ledger.dataset_budgets()} >= {"mini"}
    stored = console.app.extensions["dpgate"]["settings"].data_dir / "datasets" / "mini.json"
    assert json.loads(stored.read_text())["name"] == "mini"  # the API's path: persisted for restarts
    # uploaded as a file, the same
    definition["name"] = "mini2"
    r = admin.post("/console/admin/datasets", {"file": (io.BytesIO(json.dumps(definition).encode()), "mini2.json")},
                   content_type="multipart/form-data")  # fmt: skip
    assert r.status_code == 201 and "<strong>mini2</strong>" in text(r)
    r = admin.post("/console/admin/datasets", {"definition": "{not json"})
    assert r.status_code == 400 and "not JSON" in text(r)
    r = admin.post("/console/admin/datasets", {"definition": json.dumps({"name": "x"})})
    assert r.status_code == 400 and "invalid_request" in text(r) and "tables" in text(r)
    assert {b["dataset"] for b in console.ledger.dataset_budgets()} == {"bank", "mini", "mini2"}


def test_admin_ledger_filters_and_exports_csv(console: Console) -> None:
    ann = console.browser(console.analyst("ann"))
    bob = console.browser(console.analyst("bob"))
    ann.query(COUNT, epsilon=0.25)
    bob.query("SELECT SUM(amount) AS s FROM tx", epsilon=0.5)
    admin = console.admin()
    page = text(admin.get("/console/admin/ledger?analyst=ann"))
    assert len(cells(page, "ledger")) == 1 and "COUNT(*) AS n" in page and "SUM(amount)" not in page
    assert len(cells(text(admin.get("/console/admin/ledger")), "ledger")) == 2
    r = admin.get("/console/admin/ledger.csv?analyst=bob")
    assert r.mimetype == "text/csv" and "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [(row["analyst"], row["dataset"], float(row["epsilon"])) for row in rows] == [("bob", "bank", 0.5)]
    assert "SUM(amount)" in rows[0]["sql"] and rows[0]["mechanisms"] == "laplace"
    r = admin.get("/console/admin/ledger?limit=0")
    assert r.status_code == 400 and "invalid_request" in text(r)
    assert math.isclose(sum(float(x["epsilon"]) for x in csv.DictReader(io.StringIO(admin.get("/console/admin/ledger.csv").get_data(as_text=True)))), 0.75)


def test_a_budget_that_renews_is_set_and_shown_with_its_window(console: Console) -> None:
    key = console.analyst("ann", epsilon=0.5)
    admin = console.admin()
    admin.get("/console/admin/analysts")
    r = admin.post("/console/admin/budgets", {"analyst": "ann", "dataset": "bank", "epsilon": "4", "delta": "0",
                                              "renew_every": "month", "window_epsilon": "1", "window_delta": "0"})  # fmt: skip
    assert r.status_code == 200, text(r)[:2000]
    page = text(r)
    assert "each month may spend ε = 1" in page and "every month: this window" in page
    refused = admin.post("/console/admin/budgets", {"analyst": "ann", "dataset": "bank", "epsilon": "0.5", "delta": "0",
                                                    "renew_every": "month", "window_epsilon": "1", "window_delta": "0"})  # fmt: skip
    assert refused.status_code == 400 and "may not exceed" in text(refused)
    ann = console.browser(key)
    assert ann.query("SELECT COUNT(*) AS n FROM tx", epsilon=0.25).status_code == 200
    datasets = text(ann.get("/console/datasets"))
    assert "your allocation: this month (" in datasets and "ε 0.25 / 1 spent" in datasets
    assert "your allocation: cap over all windows" in datasets and "ε 0.25 / 4 spent" in datasets
