"""The console's pages are rate limited as the API is: a signed-in page counts against the session's
analyst (with its API calls, not against a shared address), and sign-in attempts against the address."""
from __future__ import annotations

from pathlib import Path

from tests.api.test_rate_limits import close, limited_api, member
from tests.console.conftest import Browser


def test_console_pages_count_against_the_sessions_analyst(tmp_path: Path) -> None:
    api = limited_api(tmp_path, rate_limit_per_analyst="6/minute", rate_limit_per_organisation="1000/minute")
    try:
        ledger = api.app.extensions["dpgate"]["ledger"]
        _, ann_key = ledger.create_analyst("ann")
        ledger.set_allocation("ann", "bank", epsilon="2")
        bob = member(api, "bob")
        ann = Browser(api.app)
        ann.sign_in(ann_key)  # two requests from the address, then one page of ann's
        statuses = [ann.get("/console/datasets").status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]  # ann's six: five more pages, then refused
        assert api.client.get("/v1/budget", headers={"Authorization": f"Bearer {ann_key}"}).status_code == 429  # one counter
        assert api.client.get("/v1/budget", headers=bob).status_code == 200  # same address, another analyst
    finally:
        close(api)


def test_sign_in_attempts_are_limited_per_address(tmp_path: Path) -> None:
    api = limited_api(tmp_path, rate_limit_per_analyst="4/minute", rate_limit_per_organisation="1000/minute")
    try:
        guesser = Browser(api.app)
        guesser.get("/console")
        statuses = [guesser.post("/console/sign-in", {"key": f"dpg_guess_{i}"}).status_code for i in range(4)]
        assert statuses == [401, 401, 401, 429]
    finally:
        close(api)
