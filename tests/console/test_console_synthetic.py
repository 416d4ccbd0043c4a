"""The console's synthetic data pages: a copy started from the form is charged exactly before it runs,
its page shows the public table and links its CSV / Parquet rows (the API's bytes); a refusal is a typed
page that costs nothing; another analyst's job reads as 404."""
from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pytest

from tests.api.conftest import make_app
from tests.api.test_rate_limits import close
from tests.console.conftest import Console, text
from tests.training.conftest import _IGNORED

pytestmark = [pytest.mark.filterwarnings(spec) for spec in _IGNORED]
FORM = {"dataset": "bank", "table": "cust", "epsilon": "0.5", "delta": "1e-7", "rows": "200", "columns": ""}


def _spent(console: Console, name: str) -> float:
    return sum(float(e["epsilon"]) for e in console.ledger.entries() if e["analyst"] == name)


def test_a_copy_started_from_the_form_is_charged_then_downloadable(tmp_path: Any) -> None:
    console = Console(make_app(tmp_path))
    try:
        ann = console.browser(console.analyst("ann"))
        bob = console.browser(console.analyst("bob"))
        page = ann.get("/console/synthetic")
        assert page.status_code == 200 and "Synthesise (charged)" in text(page) and "cust" in text(page)
        r = ann.post("/console/synthetic", FORM)
        assert r.status_code == 303, text(r)[:500]
        url = r.headers["Location"].split("?")[0]
        job_id = url.rsplit("/", 1)[1]
        assert _spent(console, "ann") == 0.5  # charged before it runs
        console.app.extensions["dpgate"]["training"].wait(job_id, timeout=120)
        body = text(ann.get(url))
        assert "succeeded" in body and f"cust_synth_{job_id[:12]}" in body and "200" in body
        csv = ann.get(f"{url}/download")
        assert csv.status_code == 200 and csv.mimetype == "text/csv"
        rows = pd.read_csv(io.StringIO(csv.get_data(as_text=True)))
        assert list(rows.columns) == ["age", "segment"] and len(rows) == 200  # no cid: the privacy unit
        api = console.api.client.get(f"/v1/synthetic-jobs/{job_id}/download?format=parquet", headers=console.api.admin)
        pq = ann.client.get(f"{url}/download?format=parquet")
        assert pq.status_code == 200 and pq.data == api.data
        assert pd.read_parquet(io.BytesIO(pq.data))["age"].tolist() == rows["age"].tolist()
        listing = text(ann.get("/console/synthetic"))
        assert f"cust_synth_{job_id[:12]}" in listing and "Parquet" in listing
        # another analyst: 404, as on the API
        assert bob.get(url).status_code == 404 and bob.get(f"{url}/download").status_code == 404
        assert f"cust_synth_{job_id[:12]}" not in text(bob.get("/console/synthetic"))
    finally:
        close(console.api)


@pytest.mark.parametrize(("change", "says"), [({"columns": "cid"}, "privacy unit"), ({"rows": "many"}, "whole number"),
                                               ({"epsilon": "50"}, "budget_exhausted"), ({"table": "nope"}, "no table")])
def test_refusals_are_pages_that_cost_nothing(tmp_path: Any, change: dict[str, str], says: str) -> None:
    console = Console(make_app(tmp_path))
    try:
        ann = console.browser(console.analyst("ann"))
        r = ann.post("/console/synthetic", {**FORM, **change})
        assert r.status_code in (400, 403), r.status_code
        assert says in text(r) and _spent(console, "ann") == 0
    finally:
        close(console.api)
