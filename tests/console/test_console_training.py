"""The console's training pages: a job started from the form is charged before it runs and followed through
its status JSON to its model; refusals are typed pages that cost nothing; the model card as a page;
predictions from the form and from a CSV equal the API's for the same rows; bad CSVs are 400 pages that
cost nothing; another analyst's job and model read as 404, as on the API; the audit is for administrators,
with its PNG plots."""
from __future__ import annotations

import csv
import html
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.conftest import make_app
from tests.api.test_rate_limits import close
from tests.console.conftest import Browser, Console, text
from tests.training.conftest import _IGNORED  # third-party warnings on training threads (see there)

pytestmark = [pytest.mark.xdist_group("console_training"), *(pytest.mark.filterwarnings(spec) for spec in _IGNORED)]

# diffprivlib's logistic regression on the test bank's transactions: a fraction of a second, and its
# features have every type a form must turn into JSON (a number, a nullable int, categories, a date)
JOB = {"task": "", "dataset": "bank", "table": "tx", "label": "flag", "positive": "true", "method": "logreg", "epsilon": "1",
       "delta": "", "features": "", "params": "", "public_table": ""}  # fmt: skip
ROWS = [
    {"amount": 10, "qty": 3, "cat": "food", "ts": "2025-03-01", "note": "x"},
    {"amount": 900, "cat": "tech", "ts": "2025-12-01T10:00:00"},
    {"amount": 250.5, "qty": 0, "cat": "café ☕", "ts": "2025-06-15", "note": "y"},
]
CSV_ROWS = "amount,qty,cat,ts,note\n10,3,food,2025-03-01,x\n900,,tech,2025-12-01T10:00:00,\n250.5,0,café ☕,2025-06-15,y\n"
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class World:
    console: Console
    ann: Browser
    ann_api: dict[str, str]
    bob: Browser
    admin: Browser
    job_id: str
    model_id: str
    accepted_page: str
    seen: list[dict[str, Any]]  # the job's statuses as the status JSON gave them, while it ran


def start(browser: Browser, **changes: str) -> Any:
    browser.get("/console/jobs")
    return browser.post("/console/jobs", {**JOB, **changes})


def follow(browser: Browser, job_id: str) -> list[dict[str, Any]]:
    """Poll the job's status JSON, as the page's script does, until the job has ended."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    while not seen or seen[-1]["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, seen[-1:]
        r = browser.get(f"/console/jobs/{job_id}/status.json")
        assert r.status_code == 200 and r.mimetype == "application/json" and r.headers["Cache-Control"] == "no-store"
        seen.append(r.json)
        time.sleep(0.02)
    return seen


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    console = Console(make_app(tmp_path_factory.mktemp("console_training")))
    key = console.analyst("ann", epsilon=3.0)
    ann = console.browser(key)
    r = start(ann)
    assert r.status_code == 303, text(r)[:800]
    job_id = re.fullmatch(r"/console/jobs/([0-9a-f]{32})\?started=1", r.headers["Location"]).group(1)  # type: ignore[union-attr]
    accepted = text(ann.get(r.headers["Location"]))
    seen = follow(ann, job_id)
    world = World(console, ann, {"Authorization": f"Bearer {key}"}, console.browser(console.analyst("bob", epsilon=3.0)),
                  console.admin(), job_id, seen[-1]["model_id"], accepted, seen)  # fmt: skip
    yield world
    close(console.api)


def api_get(world: World, path: str, headers: dict[str, str] | None = None) -> Any:
    r = world.console.api.client.get(path, headers=headers or world.ann_api)
    assert r.status_code == 200, r.json
    return r.json


def predictions_in(page: str) -> list[tuple[str, str]]:
    section = page[page.index('id="predictions"') :]
    return re.findall(r'<td class="value">([^<]*)</td><td>([^<]*)</td>', section)


def fmt(v: float | None) -> str:
    """As the console shows a figure: None (a noisy count sum <= 0: the release cannot tell) as a dash."""
    return "—" if v is None else f"{v:.6g}"


def spent(world: World) -> tuple[int, list[float]]:
    ledger = world.console.ledger
    return len(ledger.entries()), [b["epsilon_spent"] for b in ledger.budgets("ann")]


def test_a_job_from_the_form_is_charged_before_it_runs_and_followed_to_its_model(world: World) -> None:
    final = world.seen[-1]
    assert final["status"] == "succeeded" and final["progress"] == 1.0 and final["model_id"], final
    assert {s["status"] for s in world.seen} <= {"queued", "running", "succeeded"}
    progress = [s["progress"] for s in world.seen]
    assert progress == sorted(progress) and all(0.0 <= p <= 1.0 for p in progress)
    assert final == api_get(world, f"/v1/training-jobs/{world.job_id}")  # the status JSON is the API's
    [entry] = [e for e in world.console.ledger.entries(analyst="ann") if e.get("job_id") == world.job_id]
    assert entry["kind"] == "training" and (entry["epsilon"], entry["delta"]) == (final["cost"]["epsilon"], final["cost"]["delta"])
    assert 0 < final["cost"]["epsilon"] <= 1.0 and final["cost"]["delta"] == 0.0  # diffprivlib: pure ε
    [budget] = world.console.ledger.budgets("ann")  # (a later test may have charged another job)
    assert budget["epsilon_spent"] == pytest.approx(sum(e["epsilon"] for e in world.console.ledger.entries(analyst="ann")))
    assert f"Accepted and charged ε = {final['cost']['epsilon']:.6g}, δ = 0" in world.accepted_page

    page = text(world.ann.get(f"/console/jobs/{world.job_id}"))
    assert re.search(r'id="job-status" class="status status-succeeded">succeeded<', page)
    assert 'id="job-progress" max="1" value="1.0"' in page and 'id="cancel"' not in page
    assert f'href="/console/models/{world.model_id}"' in page
    assert f"ε = {final['cost']['epsilon']:.6g}, δ = 0" in page and f"accuracy {fmt(final['metrics']['accuracy'])}" in page

    jobs = text(world.ann.get("/console/jobs"))
    [row] = re.findall(r'<tr class="job-succeeded">.*?</tr>', jobs, re.S)
    assert "bank.tx" in row and "logreg" in row and f'href="/console/models/{world.model_id}"' in row and "<th>analyst</th>" not in jobs
    admin_jobs = text(world.admin.get("/console/jobs"))
    [row] = re.findall(r'<tr class="job-succeeded">.*?</tr>', admin_jobs, re.S)
    assert "<th>analyst</th>" in admin_jobs and "<td>ann</td>" in row
    models = text(world.ann.get("/console/models"))
    assert f'href="/console/models/{world.model_id}"' in models and f"{fmt(final['metrics']['accuracy'])}" in models


@pytest.mark.parametrize(
    ("changes", "status", "code", "message"),
    [
        ({"epsilon": "2.5"}, 403, "budget_exhausted", ""),  # 3 allocated, 1 spent
        ({"params": "{epochs: 1}"}, 400, "invalid_request", "params is not JSON"),
        ({"params": "[1]"}, 400, "invalid_request", "params must be a JSON object"),
        ({"method": "dpsgd", "delta": "0"}, 400, "invalid_request", "dpsgd needs delta > 0"),
        ({"label": "ghost"}, 400, "invalid_request", "unknown label column 'ghost'"),
        ({"epsilon": "-1"}, 400, "invalid_request", "epsilon"),
        ({"method": "nonprivate"}, 403, "forbidden", "administrators only"),
    ],
)
def test_a_refused_job_is_a_typed_refusal_that_costs_nothing(world: World, changes: dict[str, str], status: int, code: str, message: str) -> None:
    before = spent(world)
    r = start(world.ann, **changes)
    assert r.status_code == status and r.mimetype == "text/html"
    page = text(r)
    refusal = page[page.index('id="refusal"') :]
    assert f"Refused ({status} {code}" in re.sub(r"<[^>]+>", "", refusal)[:200] and message in refusal
    assert f'value="{changes.get("params", "")}"' in page  # the form keeps what was typed
    assert spent(world) == before


def test_the_model_page_shows_the_card(world: World) -> None:
    card = api_get(world, f"/v1/models/{world.model_id}")
    page = text(world.ann.get(f"/console/models/{world.model_id}"))
    charged = card["privacy"]["charged"]
    assert f"charged ε = {charged['epsilon']:.6g}, δ = {charged['delta']:.6g}" in re.sub(r"<[^>]+>", "", page)
    m = card["metrics"]
    shown = {k: fmt(m[k]) for k in ("accuracy", "roc_auc", "majority_share")}
    assert f'id="dp-accuracy">{shown["accuracy"]}<' in page and f'id="dp-auc">{shown["roc_auc"]}<' in page
    assert f'id="dp-baseline">{shown["majority_share"]}<' in page
    if m["intervals"]["accuracy"] is not None:
        low, high = m["intervals"]["accuracy"]
        assert low <= (m["accuracy"] or 0) <= high and f"95% interval [{low:.6g}, {high:.6g}]" in page
    assert f"scale {card['metrics']['scale']:.6g} on each of the {card['metrics']['bins']} bins" in page
    for column in card["features"]["columns"]:
        assert f"<code>{column['name']}</code>" in page and f'name="feature:{column["name"]}"' in page
    assert "food, travel, tech, café ☕" in page and "[2025-01-01, 2025-12-31]" in page  # a date's bounds as dates
    assert "left out (no public bounds or categories): city" in page
    for caveat in card["caveats"]:
        assert caveat in page
    assert "exact metrics" not in page and 'id="audit"' not in page

    admin_card = api_get(world, f"/v1/models/{world.model_id}", world.console.api.admin)
    page = text(world.admin.get(f"/console/models/{world.model_id}"))
    exact = page[page.index('id="exact-metrics"') :]
    assert f"<th>accuracy</th><td>{admin_card['exact_metrics']['accuracy']:.6g}</td>" in exact
    assert f"<th>held out rows</th><td>{admin_card['exact_metrics']['held_out_rows']}</td>" in exact


def test_predictions_from_the_form_and_a_csv_equal_the_apis(world: World) -> None:
    before = spent(world)
    r = world.console.api.client.post(f"/v1/models/{world.model_id}/predict", json={"rows": ROWS}, headers=world.ann_api)
    assert r.status_code == 200, r.json
    expected = r.json["predictions"]
    assert all(isinstance(p["label"], bool) for p in expected)  # a boolean label predicts booleans
    url = f"/console/models/{world.model_id}/predict"

    form = {f"feature:{k}": str(v) for k, v in ROWS[0].items()}
    page = text(world.ann.post(url, {**form, "action": "show"}))
    assert predictions_in(page) == [(json.dumps(expected[0]["label"]), f"{expected[0]['probability']:.6g}")]
    assert 'value="2025-03-01"' in page  # the form keeps the row

    r = world.ann.post(url, {"csv": (io.BytesIO(CSV_ROWS.encode()), "rows.csv"), "action": "show"})
    page = text(r)
    assert r.status_code == 200 and "3 prediction(s) from the CSV" in page
    assert predictions_in(page) == [(json.dumps(p["label"]), f"{p['probability']:.6g}") for p in expected]

    shown = html.unescape(re.search(r'name="csv_text" value="([^"]*)"', r.get_data(as_text=True)).group(1))  # type: ignore[union-attr]
    for data in ({"csv": (io.BytesIO(CSV_ROWS.encode()), "rows.csv"), "action": "csv"}, {"csv_text": shown, "action": "csv"}):
        r = world.ann.post(url, data)
        assert r.status_code == 200 and r.mimetype == "text/csv" and r.headers["Content-Disposition"].startswith("attachment;")
        got = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
        assert len(got) == len(expected)
        assert [({"true": True, "false": False}[g["label"]], float(g["probability"])) for g in got] == [(p["label"], p["probability"]) for p in expected]
        assert [g["cat"] for g in got] == [row["cat"] for row in ROWS] and [g["qty"] for g in got] == ["3", "", "0"]
    assert spent(world) == before  # predictions are free


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        ("amount,qty,cat,note\n1,2,food,x\n", "the CSV lacks the feature column(s) 'ts'"),
        ("amount,cat,ts,colour\n1,food,2025-01-01,red\n", "columns that are not features of this model: 'colour'"),
        ("amount,cat,ts\nold,food,2025-01-01\n", "row 0: feature 'amount' must be a number"),
        ("amount,cat,ts\n1,food,2025-01-01\n2,tech,2025-13-01\n", "row 1: feature 'ts' must be an ISO date or timestamp string"),
        ("amount,cat,ts\n1,food\n", "row 0 (line 2) has 2 values for 3 columns"),
        ("amount,cat,ts\n,food,2025-01-01\n", "row 0: missing required feature 'amount'"),
        ("amount,cat,ts\n", "the CSV has a header but no rows"),
        ("", "the CSV is empty"),
        ("amount,cat,ts\n" + "1,food,2025-01-01\n" * 1001, "at most 1000 rows per upload"),
        (b"\xff\xfeamount\n", "the CSV is not UTF-8 text"),
    ],
)
def test_a_bad_csv_is_a_clear_400_page_that_costs_nothing(world: World, upload: str | bytes, message: str) -> None:
    before = spent(world)
    data = upload if isinstance(upload, bytes) else upload.encode()
    r = world.ann.post(f"/console/models/{world.model_id}/predict", {"csv": (io.BytesIO(data), "rows.csv"), "action": "csv"})
    assert r.status_code == 400 and r.mimetype == "text/html"
    page = text(r)
    refusal = page[page.index('id="refusal"') :]
    assert "invalid_request" in refusal and message in refusal, refusal[:400]
    assert 'id="predictions"' not in page
    assert spent(world) == before


def test_a_bad_form_value_is_a_400_page(world: World) -> None:
    r = world.ann.post(f"/console/models/{world.model_id}/predict", {"feature:amount": "lots", "feature:cat": "food", "feature:ts": "2025-01-01"})
    assert r.status_code == 400 and "row 0: feature 'amount' must be a number" in text(r)


def test_another_analyst_finds_neither_the_job_nor_the_model(world: World) -> None:
    job, model = world.job_id, world.model_id
    for url in (f"/console/jobs/{job}", f"/console/models/{model}"):
        r = world.bob.get(url)
        assert r.status_code == 404 and "not_found" in text(r), url
    r = world.bob.get(f"/console/jobs/{job}/status.json")
    assert r.status_code == 404 and r.mimetype == "application/problem+json" and r.json["code"] == "not_found"
    for url, data in ((f"/console/jobs/{job}/cancel", {}), (f"/console/models/{model}/predict", {"feature:amount": "1"})):
        r = world.bob.post(url, data)
        assert r.status_code == 404 and "not_found" in text(r), url
    assert job not in text(world.bob.get("/console/jobs")) and model not in text(world.bob.get("/console/models"))
    assert api_get(world, f"/v1/training-jobs/{job}")["status"] == "succeeded"  # bob's cancel did nothing


def test_analysts_may_not_audit(world: World) -> None:
    url = f"/console/models/{world.model_id}"
    for r in (world.ann.post(f"{url}/audit", {}), world.ann.get(f"{url}/audit/roc.png")):
        assert r.status_code == 403 and r.mimetype == "text/html" and "for administrators" in text(r)


def test_an_administrator_audits_a_model_and_sees_its_plots(world: World) -> None:
    url = f"/console/models/{world.model_id}"
    r = world.admin.get(f"{url}/audit/roc.png")
    assert r.status_code == 404 and "run the audit first" in text(r)
    assert 'id="audit-result"' not in text(world.admin.get(url))

    r = world.admin.post(f"{url}/audit", {"n_reference": "1"})
    assert r.status_code == 400 and "n_reference must be 0" in text(r) and 'id="audit-result"' not in text(r)
    r = world.admin.post(f"{url}/audit", {"n_reference": "99"})
    assert r.status_code == 400 and "invalid_request" in text(r)

    r = world.admin.post(f"{url}/audit", {})  # the form's defaults: AuditIn's
    assert r.status_code == 200
    page = text(r)
    report = json.loads((world.console.app.extensions["dpgate"]["training"].audit_plot(world.model_id, "roc").parent / "audit.json").read_text())
    assert report["model"] == {"epsilon": world.seen[-1]["cost"]["epsilon"], "delta": 0.0} and len(report["attacks"]) == 2  # with LiRA
    figures = page[page.index('id="audit-figures"') :]
    for name, attack in report["attacks"].items():
        assert f"<td>{name.replace('_', ' ')}</td><td class=\"value\">{attack['attack_auc']:.6g}</td>" in figures
        assert f"<td>{attack['tpr_at_fpr']['0.01']:.6g}" in figures
    ceiling = report["ceiling"]
    assert f"<td>{ceiling['at_fpr']['0.001']:.6g}</td><td>{ceiling['at_fpr']['0.01']:.6g}</td>" in figures
    verdict = "No attack exceeds the DP ceiling" if not ceiling["any_exceeds"] else "An attack exceeds the DP ceiling"
    assert verdict in page and f"This audit: {report['counts']['members']} members, {report['counts']['nonmembers']} non-members" in page

    for name in ("roc", "violin"):
        assert f'src="{url}/audit/{name}.png"' in page
        png = world.admin.client.get(f"{url}/audit/{name}.png")
        assert png.status_code == 200 and png.mimetype == "image/png" and png.data[:8] == PNG
        api = world.console.api.client.get(f"/v1/admin/models/{world.model_id}/audit/{name}.png", headers=world.console.api.admin)
        assert api.data == png.data
    assert world.admin.get(f"{url}/audit/other.png").status_code == 404
    again = text(world.admin.get(url))  # the last audit, kept beside the model
    assert "The last audit:" in again and f"{report['attacks']['loss_threshold']['attack_auc']:.6g}" in again


def test_a_cancelled_job_keeps_its_charge(world: World) -> None:
    """The service's one worker is held, so the job is still queued when the cancel arrives: it never runs."""
    service = world.console.app.extensions["dpgate"]["training"]
    held = threading.Event()
    service._pool.submit(held.wait)
    try:
        r = start(world.ann, epsilon="0.5")
        assert r.status_code == 303, text(r)[:800]
        job_id = r.headers["Location"].split("/")[3].split("?")[0]
        page = text(world.ann.get(f"/console/jobs/{job_id}"))
        assert 'data-status="queued"' in page and f'data-status-url="/console/jobs/{job_id}/status.json"' in page and 'id="cancel"' in page
        r = world.ann.post(f"/console/jobs/{job_id}/cancel")
        assert r.status_code == 303 and r.headers["Location"] == f"/console/jobs/{job_id}?cancelled=1"
        page = text(world.ann.get(r.headers["Location"]))
        assert "Cancel requested" in page and 'status-cancelled">cancelled<' in page and 'id="cancel"' not in page
    finally:
        held.set()
    final = follow(world.ann, job_id)[-1]
    assert final["status"] == "cancelled" and final["model_id"] is None and final["progress"] == 0.0
    [entry] = [e for e in world.console.ledger.entries(analyst="ann") if e.get("job_id") == job_id]
    assert entry["epsilon"] == final["cost"]["epsilon"] == 0.5  # the charge stays
