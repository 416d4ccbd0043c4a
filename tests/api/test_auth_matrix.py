"""Who may call what: every route of the app × {no key, bad key, owner analyst, other analyst, admin}.

The routes come from `app.url_map`, so a new endpoint fails `test_every_route_is_in_the_matrix` until it is
given a row here (and its declared roles must agree with that row). Refusals are problem+json with a
stable code: 401 without a valid key, 403 for the wrong role, and 404 — not 403 — for another analyst's
job or model, so that an id's existence is never confirmed. Keys are stored only hashed: the ledger's
database and every file of the data directory are read directly and searched for them.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from budget import keys
from tests.api.conftest import ADMIN_KEY, Api, make_app
from tests.api.test_rate_limits import close
from tests.training.conftest import _IGNORED  # third-party warnings on training threads (see there)

pytestmark = [pytest.mark.filterwarnings(spec) for spec in _IGNORED]

PROBLEM = "application/problem+json"
# DESIGN.md §4's codes, the ledger's and training's, and the request limits'
STABLE_CODES = {
    "invalid_sql", "unsupported_sql", "unknown_table", "unknown_column", "invalid_request", "unauthorized",
    "forbidden", "budget_exhausted", "unknown_dataset", "not_found", "request_in_progress", "rate_limited",
    "method_not_allowed", "request_too_large", "query_timeout", "training_quota", "unavailable",
    "ledger_unavailable", "internal", "internal_error", "not_ready",
}  # fmt: skip
PRINCIPALS = ("no_key", "bad_key", "owner", "other", "admin")
BAD_KEY = "dpg_deadbeef_" + "x" * 43  # well formed, unknown
QUERY = {"dataset": "bank", "sql": "SELECT COUNT(*) AS n FROM tx", "epsilon": 0.05}
LOGREG = {"dataset": "bank", "table": "cust", "label": "segment", "positive": "private", "method": "logreg", "epsilon": 0.5}
SYNTH = {"dataset": "bank", "table": "cust", "epsilon": 0.05, "delta": 1e-7, "rows": 50}


@dataclass(frozen=True)
class Route:
    access: str  # "public", "analyst" or "admin"
    ok: int = 200  # the status of an allowed call
    body: Callable[[World], Any] | None = None
    owned: bool = False  # names the owner's job or model: another analyst gets 404


@dataclass
class World:
    api: Api
    data_dir: Path
    headers: dict[str, dict[str, str]]
    keys: dict[str, str]
    job_id: str
    model_id: str
    synth_id: str
    csv: Path
    counter: list[int]

    def fresh(self, prefix: str) -> str:
        self.counter[0] += 1
        return f"{prefix}{self.counter[0]}"


ROUTES: dict[str, Route] = {
    "static": Route("public", ok=404),
    "openapi.spec": Route("public"),
    "openapi.docs": Route("public"),
    "openapi.swagger_ui_oauth_redirect": Route("public"),
    "health.healthz": Route("public"),
    "metrics.metrics": Route("admin"),  # the ε charged by everyone: operators' business
    "analyst.datasets": Route("analyst"),
    "analyst.query": Route("analyst", body=lambda w: QUERY),
    "analyst.preview": Route("analyst", body=lambda w: QUERY),
    "analyst.budget": Route("analyst"),
    "admin.create_analyst": Route("admin", ok=201, body=lambda w: {"name": w.fresh("new")}),
    "admin.list_analysts": Route("admin"),
    "admin.disable_analyst": Route("admin"),  # carl, a bystander: disabling twice is still 200
    "admin.rotate_key": Route("admin"),
    "admin.register_dataset": Route("admin", ok=201, body=lambda w: _dataset(w.csv)),
    "admin.set_budget": Route("admin", body=lambda w: {"analyst": "bob", "dataset": "bank", "epsilon": 5, "delta": 1e-6}),
    "admin.ledger_entries": Route("admin"),
    "training.start_job": Route("analyst", ok=202, body=lambda w: LOGREG),
    "training.list_jobs": Route("analyst"),
    "training.list_models": Route("analyst"),
    "training.job_status": Route("analyst", owned=True),
    "training.cancel_job": Route("analyst", owned=True),
    "training.model_card": Route("analyst", owned=True),
    "training.predict": Route("analyst", owned=True, body=lambda w: {"rows": [{"age": 30}]}),
    "training.audit_model": Route("admin", body=lambda w: {"n_reference": 0}),
    "training.audit_plot": Route("admin"),
    "synthetic.start_synthetic": Route("analyst", ok=202, body=lambda w: SYNTH),
    "synthetic.list_synthetic": Route("analyst"),
    "synthetic.synthetic_status": Route("analyst", owned=True),
    "synthetic.cancel_synthetic": Route("analyst", owned=True),
    "synthetic.download_synthetic": Route("analyst", owned=True),
}


# The web console's routes (HTML, session cookies, CSRF) have their own matrix: tests/console/test_console_matrix.py
CONSOLE = "console."


def _api_endpoints(endpoints: Any) -> set[str]:
    return {e for e in endpoints if not e.startswith(CONSOLE)}


def _dataset(csv: Path) -> dict[str, Any]:
    return {
        "name": "mini", "privacy_unit": "uid", "budget": {"epsilon": 3, "delta": 0},
        "tables": {"l": {"source": str(csv), "max_rows_per_unit": 2, "columns": {
            "uid": {"type": "id"}, "amt": {"type": "float", "lower": 0, "upper": 100}}}},
    }  # fmt: skip


def _new_analyst(api: Api, name: str, organisation: str | None) -> str:
    r = api.client.post("/v1/admin/analysts", json={"name": name, "organisation": organisation}, headers=api.admin)
    assert r.status_code == 201, r.json
    r2 = api.client.put("/v1/admin/budgets", json={"analyst": name, "dataset": "bank", "epsilon": 5, "delta": 1e-6}, headers=api.admin)
    assert r2.status_code == 200, r2.json
    return r.json["key"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("matrix")
    api = Api(make_app(data_dir))
    ann = _new_analyst(api, "ann", "acme")
    bob = _new_analyst(api, "bob", None)
    _new_analyst(api, "carl", None)  # the analyst the matrix disables and rotates
    r = api.client.put("/v1/admin/budgets", json={"analyst": "admin", "dataset": "bank", "epsilon": 5, "delta": 1e-6}, headers=api.admin)
    assert r.status_code == 200, r.json
    bearer = {name: {"Authorization": f"Bearer {key}"} for name, key in (("ann", ann), ("bob", bob))}
    r = api.client.post("/v1/training-jobs", json=LOGREG, headers=bearer["ann"])
    assert r.status_code == 202, r.json
    job_id = r.json["job_id"]
    api.app.extensions["dpgate"]["training"].wait(job_id, timeout=120)
    model_id = api.client.get(f"/v1/training-jobs/{job_id}", headers=bearer["ann"]).json["model_id"]
    assert model_id
    r = api.client.post(f"/v1/admin/models/{model_id}/audit", json={"n_reference": 0}, headers=api.admin)
    assert r.status_code == 200, r.json  # so that the audit plots exist
    r = api.client.post("/v1/synthetic-jobs", json=SYNTH, headers=bearer["ann"])
    assert r.status_code == 202, r.json
    synth_id = r.json["job_id"]
    assert api.app.extensions["dpgate"]["training"].wait(synth_id, timeout=120)["status"] == "succeeded"
    csv = data_dir / "mini.csv"
    pd.DataFrame({"uid": [1, 2, 3], "amt": [1.0, 2.0, 3.0]}).to_csv(csv, index=False)
    headers = {
        "no_key": {},
        "bad_key": {"Authorization": f"Bearer {BAD_KEY}"},
        "owner": bearer["ann"],
        "other": bearer["bob"],
        "admin": api.admin,
    }
    yield World(api, data_dir, headers, {"ann": ann, "bob": bob, "admin": ADMIN_KEY}, job_id, model_id, synth_id, csv, [0])
    close(api)


def _url(world: World, endpoint: str) -> tuple[str, str]:
    [rule] = [r for r in world.api.app.url_map.iter_rules() if r.endpoint == endpoint]
    values = {"job_id": world.synth_id if endpoint.startswith("synthetic.") else world.job_id, "model_id": world.model_id, "name": "roc", "filename": "nothing.txt", "analyst": "carl"}
    adapter = world.api.app.url_map.bind("localhost")
    methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
    assert len(methods) == 1, (endpoint, methods)
    return methods[0], adapter.build(endpoint, {a: values[a] for a in rule.arguments})


def assert_problem(r: Any, status: int, code: str | None = None) -> None:
    """An error answer: problem+json with a stable code, and a status that matches its body."""
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:500])
    assert r.headers["Content-Type"] == PROBLEM, r.headers["Content-Type"]
    body = r.get_json(force=True)
    assert body["status"] == status and body["code"] in STABLE_CODES, body
    assert body["type"] == f"urn:dpgate:problem:{body['code']}" and body["title"] and body["detail"]
    if code is not None:
        assert body["code"] == code, body
    if status == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def call(world: World, endpoint: str, principal: str) -> Any:
    route = ROUTES[endpoint]
    method, url = _url(world, endpoint)
    body = route.body(world) if route.body is not None else None
    r = world.api.client.open(url, method=method, json=body, headers=world.headers[principal])
    r.get_data()
    r.close()  # a streamed file (the audit plots) would otherwise stay open
    return r


def expected(route: Route, principal: str) -> tuple[int, str | None]:
    if route.access == "public":
        return route.ok, None
    if principal in ("no_key", "bad_key"):
        return 401, "unauthorized"
    if route.access == "admin" and principal != "admin":
        return 403, "forbidden"
    if route.owned and principal == "other":
        return 404, "not_found"
    return route.ok, None


def test_every_route_is_in_the_matrix(world: World) -> None:
    """A new endpoint must be placed in the matrix (and so be tested for every kind of caller)."""
    endpoints = _api_endpoints(rule.endpoint for rule in world.api.app.url_map.iter_rules())
    assert endpoints == set(ROUTES), f"unclassified: {endpoints - set(ROUTES)}; gone: {set(ROUTES) - endpoints}"


def test_declared_roles_agree_with_the_matrix(world: World) -> None:
    for endpoint, view in world.api.app.view_functions.items():
        if endpoint.startswith(CONSOLE):
            continue
        spec = getattr(view, "_spec", {})
        roles = spec.get("roles") if spec.get("auth") is not None else None
        access = ROUTES[endpoint].access
        if access == "public":
            assert roles is None, endpoint
        elif access == "admin":
            assert roles == ["admin"], (endpoint, roles)
        else:
            assert roles is not None and "analyst" in roles and "admin" in roles, (endpoint, roles)


def test_no_key_and_bad_keys_are_refused_on_every_non_public_route(world: World) -> None:
    """Straight from the url_map, whatever the matrix says: only the public routes answer without a key."""
    public = {e for e, r in ROUTES.items() if r.access == "public"}
    bad = [{}, {"Authorization": f"Bearer {BAD_KEY}"}, {"Authorization": "Bearer "}, {"Authorization": "Basic YWRtaW46eA=="},
           {"Authorization": f"Bearer {ADMIN_KEY}x"}, {"Authorization": f"Bearer {'k' * 300}"}, {"Authorization": ADMIN_KEY}]  # fmt: skip
    for rule in world.api.app.url_map.iter_rules():
        if rule.endpoint in public or rule.endpoint.startswith(CONSOLE):
            continue
        url = rule.rule.replace("<", "").replace(">", "")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for headers in bad:
                r = world.api.client.open(url, method=method, json={}, headers=headers)
                assert_problem(r, 401, "unauthorized")


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("endpoint", list(ROUTES))
def test_matrix(world: World, endpoint: str, principal: str) -> None:
    status, code = expected(ROUTES[endpoint], principal)
    r = call(world, endpoint, principal)
    if status >= 400:
        assert_problem(r, status, code)
    else:
        assert r.status_code == status, (endpoint, principal, r.status_code, r.get_data(as_text=True)[:500])


def test_foreign_ids_read_exactly_like_missing_ones(world: World) -> None:
    """Bob cannot tell Ann's job or model from an id that does not exist: same status, code and detail."""
    client, bob = world.api.client, world.headers["other"]
    pairs = [
        ("get", f"/v1/training-jobs/{world.job_id}", "/v1/training-jobs/0123456789abcdef0123456789abcdef", None),
        ("post", f"/v1/training-jobs/{world.job_id}/cancel", "/v1/training-jobs/0123456789abcdef0123456789abcdef/cancel", None),
        ("get", f"/v1/models/{world.model_id}", "/v1/models/0123456789abcdef0123456789abcdef", None),
        ("post", f"/v1/models/{world.model_id}/predict", "/v1/models/0123456789abcdef0123456789abcdef/predict", {"rows": [{"age": 1}]}),
    ]
    for method, foreign, missing, body in pairs:
        a = client.open(foreign, method=method.upper(), json=body, headers=bob)
        b = client.open(missing, method=method.upper(), json=body, headers=bob)
        assert_problem(a, 404, "not_found")
        assert_problem(b, 404, "not_found")
        strip = lambda j: {k: v for k, v in j.items() if k != "instance"}  # noqa: E731
        assert strip(a.json) == strip(b.json), (foreign, a.json, b.json)
    # and the owner's job is untouched by the other's cancel attempt
    assert client.get(f"/v1/training-jobs/{world.job_id}", headers=world.headers["owner"]).json["status"] == "succeeded"


def test_admin_reads_every_analysts_resources(world: World) -> None:
    status = world.api.client.get(f"/v1/training-jobs/{world.job_id}", headers=world.api.admin).json
    assert status["analyst"] == "ann" and status["model_id"] == world.model_id
    card = world.api.client.get(f"/v1/models/{world.model_id}", headers=world.api.admin)
    assert card.status_code == 200 and card.json["model_id"] == world.model_id


def test_lists_hold_only_the_callers_own(world: World) -> None:
    """GET /v1/training-jobs and /v1/models: Ann sees her job and model, Bob neither, an admin both (named)."""
    client = world.api.client

    def listed(principal: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        jobs = client.get("/v1/training-jobs", headers=world.headers[principal]).json["jobs"]
        models = client.get("/v1/models", headers=world.headers[principal]).json["models"]
        return jobs, models

    jobs, models = listed("owner")
    assert [j["job_id"] for j in jobs if j["job_id"] == world.job_id] == [world.job_id]
    assert all("analyst" not in j and "exact_metrics" not in j for j in jobs)
    [model] = [m for m in models if m["model_id"] == world.model_id]
    assert model["job_id"] == world.job_id and model["method"] == "logreg" and model["dataset"] == "bank"
    assert model["cost"]["epsilon"] == pytest.approx(0.5) and "analyst" not in model
    jobs, models = listed("other")
    assert world.job_id not in {j["job_id"] for j in jobs} and world.model_id not in {m["model_id"] for m in models}
    jobs, models = listed("admin")
    assert {(j["job_id"], j["analyst"]) for j in jobs} >= {(world.job_id, "ann")}
    assert {(m["model_id"], m["analyst"]) for m in models} >= {(world.model_id, "ann")}


def test_a_rotated_key_replaces_the_old_and_is_stored_hashed(world: World) -> None:
    client, admin = world.api.client, world.api.admin
    name = world.fresh("rot")
    old = _new_analyst(world.api, name, None)
    assert client.get("/v1/budget", headers={"Authorization": f"Bearer {old}"}).status_code == 200
    r = client.post(f"/v1/admin/analysts/{name}/rotate-key", headers=admin)
    assert r.status_code == 200, r.json
    new, key_id = r.json["key"], r.json["key_id"]
    assert new != old and new.startswith(key_id + "_") and r.json["name"] == name
    assert_problem(client.get("/v1/budget", headers={"Authorization": f"Bearer {old}"}), 401, "unauthorized")
    budget = client.get("/v1/budget", headers={"Authorization": f"Bearer {new}"}).json["budgets"]
    assert [b["dataset"] for b in budget] == ["bank"] and budget[0]["epsilon_total"] == 5  # the allocation stays
    listed = {a["name"]: a for a in client.get("/v1/admin/analysts", headers=admin).json["analysts"]}
    assert listed[name]["key_id"] == key_id and "key" not in listed[name] and "key_hash" not in listed[name]
    stored = {str(v) for t, c, v in _all_values(world.data_dir / "ledger.db") if t == "analysts" and c == "key_hash"}
    assert keys.key_hash(new) in stored and keys.key_hash(old) not in stored
    for t, c, v in _all_values(world.data_dir / "ledger.db"):
        assert new.split("_", 2)[2] not in str(v), (t, c)
    audit = world.api.app.extensions["dpgate"]["ledger"].audit_log(limit=5)
    assert any(e["action"] == "rotate_key" and e["target"] == name and e["actor"] == "admin" for e in audit)


def test_a_disabled_analyst_is_refused_and_keeps_its_spending(world: World) -> None:
    client, admin = world.api.client, world.api.admin
    name = world.fresh("dis")
    key = _new_analyst(world.api, name, None)
    bearer = {"Authorization": f"Bearer {key}"}
    asked = {**QUERY, "sql": f"SELECT COUNT(*) AS n FROM tx WHERE amount > {world.counter[0]}"}  # no one's repeat: charged
    r = client.post("/v1/queries", json=asked, headers=bearer)
    assert r.status_code == 200 and r.json["cached"] is False, r.json
    r = client.post(f"/v1/admin/analysts/{name}/disable", headers=admin)
    assert r.status_code == 200 and r.json["disabled"] is True and r.json["name"] == name, r.json
    assert_problem(client.post("/v1/queries", json=QUERY, headers=bearer), 401, "unauthorized")
    assert [a["disabled"] for a in client.get("/v1/admin/analysts", headers=admin).json["analysts"] if a["name"] == name] == [True]
    spent = [e["epsilon"] for e in client.get("/v1/admin/ledger", query_string={"analyst": name}, headers=admin).json["entries"]]
    assert spent == [QUERY["epsilon"]]
    assert_problem(client.post("/v1/admin/analysts/nobody-here/disable", headers=admin), 404, "not_found")
    assert_problem(client.post("/v1/admin/analysts/nobody-here/rotate-key", headers=admin), 404, "not_found")
    own = client.post("/v1/admin/analysts/admin/disable", headers=admin)  # an administrator cannot lock itself out
    assert_problem(own, 400, "invalid_request")
    assert client.get("/v1/admin/analysts", headers=admin).status_code == 200


def test_request_ids_are_scoped_to_their_analyst(world: World) -> None:
    """A stored answer is found by (analyst, request_id): Bob's retry with Ann's id is a request of his own."""
    client = world.api.client
    ann = client.post("/v1/queries", json={**QUERY, "sql": "SELECT SUM(amount) FROM tx", "request_id": "scoped-1"}, headers=world.headers["owner"])
    assert ann.status_code == 200, ann.json
    bob = client.post("/v1/queries", json={**QUERY, "sql": "SELECT SUM(amount) FROM tx WHERE flag", "request_id": "scoped-1"}, headers=world.headers["other"])
    assert bob.status_code == 200 and bob.json["cached"] is False and bob.json["cost"]["epsilon"] > 0, bob.json
    assert bob.json["columns"] != ann.json["columns"] or bob.json["rows"] != ann.json["rows"]


def test_unknown_paths_and_methods_are_problems(world: World) -> None:
    client = world.api.client
    for headers in (world.headers["no_key"], world.headers["owner"]):
        assert_problem(client.get("/v1/nothing-here", headers=headers), 404, "not_found")
        r = client.delete("/v1/budget", headers=headers)
        assert_problem(r, 405, "method_not_allowed")
        assert "GET" in r.headers["Allow"]


def _all_values(db: Path) -> list[tuple[str, str, Any]]:
    con = sqlite3.connect(db)
    try:
        tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        out = []
        for table in tables:
            cur = con.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                out.extend((table, name, value) for name, value in zip(names, row, strict=True))
        return out
    finally:
        con.close()


def test_keys_are_only_hashes_in_the_database(world: World) -> None:
    db = world.data_dir / "ledger.db"
    values = _all_values(db)
    tables = {t for t, _, _ in values}
    assert {"analysts", "training_jobs"} <= tables, tables  # the right database, with the jobs beside the ledger
    secrets = {name: (key, key.split("_", 2)[2]) for name, key in world.keys.items()}  # dpg_<id>_<secret>: the secret may hold "_"
    for table, column, value in values:
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        for name, (key, secret) in secrets.items():
            assert key not in text and secret not in text, f"{name}'s key in {table}.{column}"
    stored = {str(v) for t, c, v in values if (t, c) == ("analysts", "key_hash")}
    assert {keys.key_hash(k) for k in world.keys.values()} <= stored
    # nor anywhere else in the data directory (the SQLite WAL, the models, the registered datasets)
    for path in world.data_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            for name, (key, secret) in secrets.items():
                assert key.encode() not in raw and secret.encode() not in raw, f"{name}'s key in {path}"


def test_metrics_are_for_administrators_and_name_nobody(world: World) -> None:
    """/metrics shows the ε charged by everyone: an administrator's key only (401 without a key, 403 for
    an analyst, problem+json). Its labels are route templates and statuses only: no analyst,
    organisation, dataset, job or model, and no key (a scraper on metrics_listen reads them too)."""
    assert_problem(world.api.client.get("/metrics"), 401, "unauthorized")
    assert_problem(world.api.client.get("/metrics", headers=world.headers["bad_key"]), 401, "unauthorized")
    for analyst in ("owner", "other"):
        r = world.api.client.get("/metrics", headers=world.headers[analyst])
        assert_problem(r, 403, "forbidden")
        assert b"dpgate_" not in r.data
    r = world.api.client.get("/metrics", headers=world.api.admin)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = r.get_data(as_text=True)
    assert "dpgate_http_requests_total" in text and "dpgate_epsilon_charged_total" in text
    for secret in ("ann", "bob", "acme", "bank", "mini", world.job_id, world.model_id, *world.keys.values()):
        assert secret not in text, secret
