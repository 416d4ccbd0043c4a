"""The attack corpus (corpus.py, attack_corpus.sql) through the core and through the HTTP API.

Through `gateway.core`, every case:
- gets the outcome the corpus expects (answered, or refused with its stable code), and nothing else
  escapes the core; a refusal comes from the planner alone (it touches no data);
- when answered: the answer is strict JSON, every value is noisy or public (checks.check_answer), and
  asking again draws fresh noise (checks.assert_noisy);
- gets the same response (outcome, code, message; columns, mechanisms, scales, cost, row count) on a
  data set where one transaction makes its casts, divisions and date parsing fail (checks.shape);
- when answered, moves each exact aggregate by at most its stated sensitivity when a unit with extreme
  values is added (the noise is calibrated to that bound).
The `slow` run also plans and answers the whole corpus with per-query bounding (other SQL is rendered).
Extreme privacy parameters (ε = 1e-300, δ = 5e-324, ...) are answered within seconds or refused with
`invalid_request`, by the query and by the free preview alike.

Through the HTTP API with a real ledger (SQLite), a stratified sample of 60 cases (the whole corpus in
the `slow` run): never a 5xx; a refusal is problem+json with the expected code and charges nothing (the
analyst's budget and the ledger are unchanged, and the preview refuses it the same way); an answer is
charged exactly its cost, once, with one ledger entry; its repeat is a free cached re-release.
"""
from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import numpy as np
import pytest

from gateway.core import Gateway
from gateway.sql.release import _histogram, exact_cells, quantile_query
from gateway.sql.quantiles import quantile_lattice
from tests.api.conftest import Api
from tests.conftest import BANK, make_gateway
from tests.security import checks
from tests.security.corpus import CATEGORIES, Case, all_cases, clean_frames, counts, failing_frames, neighbour_frames

CASES = all_cases()
MIN_TOTAL = 500
MIN_PER_CATEGORY = 15


def test_the_corpus_is_large_and_covers_every_category() -> None:
    per = counts(CASES)
    assert sum(per.values()) >= MIN_TOTAL, per
    for category in CATEGORIES:
        assert per[category] >= MIN_PER_CATEGORY, (category, per[category])
    assert {c.expect for c in CASES} >= {"answered", "unsupported_sql", "invalid_sql", "unknown_table", "unknown_column"}
    answered = sum(c.expect == "answered" for c in CASES)
    assert 200 <= answered <= len(CASES) - 300, answered  # both outcomes are well represented


@pytest.fixture(scope="module")
def clean() -> Gateway:
    return make_gateway(clean_frames())


@pytest.fixture(scope="module")
def failing() -> Gateway:
    return make_gateway(failing_frames())


@pytest.fixture(scope="module")
def neighbour() -> Gateway:
    return make_gateway(neighbour_frames())


@pytest.mark.parametrize("case", CASES, ids=[c.id[:90] for c in CASES])
def test_core(clean: Gateway, failing: Gateway, case: Case) -> None:
    got = checks.ask(clean, case.sql, delta=case.delta)
    assert got.kind == case.expect, f"expected {case.expect}, got {got.kind}: {got.message}"
    if got.answer is None:
        checks.refused_while_planning(clean, case.sql, got, delta=case.delta)
    else:
        checks.check_answer(got.answer)
        checks.assert_noisy(clean, case.sql, got.answer, delta=case.delta)
    other = checks.ask(failing, case.sql, delta=case.delta)
    assert checks.shape(other) == checks.shape(got), "the response depends on a row that makes an expression fail"
    if other.answer is not None:
        checks.check_answer(other.answer)


@pytest.fixture(scope="module")
def per_query() -> Gateway:
    meta = copy.deepcopy(BANK)
    for table in ("tx", "acct"):
        meta["tables"][table]["bounding"] = "per_query"  # bound each query's rows after its WHERE
    return make_gateway(clean_frames(), meta)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id[:90] for c in CASES])
def test_core_with_per_query_bounding(per_query: Gateway, case: Case) -> None:
    """The other way of bounding contributions renders different SQL: the same outcomes, still total."""
    got = checks.ask(per_query, case.sql, delta=case.delta)
    assert got.kind == case.expect, f"expected {case.expect}, got {got.kind}: {got.message}"
    if got.answer is not None:
        checks.check_answer(got.answer)


ANSWERED = [c for c in CASES if c.expect == "answered" and "rates" not in c.sql]


@pytest.mark.parametrize("case", ANSWERED, ids=[c.id[:90] for c in ANSWERED])
def test_one_unit_moves_each_exact_aggregate_by_at_most_its_sensitivity(clean: Gateway, neighbour: Gateway, case: Case) -> None:
    plan = clean.plan("bank", case.sql, epsilon=1, delta=case.delta)
    a, b = exact_cells(plan, clean.engine), exact_cells(plan, neighbour.engine)
    for m in plan.measures:
        if m.kind == "quantile":
            continue
        l1 = sum(abs(float((a.get(c) or {}).get(m.id) or 0) - float((b.get(c) or {}).get(m.id) or 0)) for c in set(a) | set(b))
        assert l1 <= m.sensitivity * (1 + 1e-9) + 1e-6, (m.id, m.kind, l1, m.sensitivity)
    nkeys = len(plan.keys)
    for m in plan.measures:
        if m.kind != "quantile":
            continue
        grid = quantile_lattice(plan, m)
        hists: list[dict[tuple, list]] = [{}, {}]
        for h, gw in zip(hists, (clean, neighbour)):
            for row in gw.engine.execute(quantile_query(plan, m, grid)):
                h.setdefault(tuple(row[:nkeys]), []).append(tuple(row[nkeys:]))
        num, den = m.alpha.numerator, m.alpha.denominator
        total = 0
        for c in set(hists[0]) | set(hists[1]):
            sa, sb = (_scores(h.get(c, []), len(grid), num, den) for h in hists)
            total += int(np.max(np.abs(sa - sb)))
        assert total <= plan.max_rows * max(num, den - num), (m.id, total)


def _scores(rows: list, n: int, num: int, den: int) -> np.ndarray:
    below, _, above = _histogram(rows, n)
    return np.abs((den - num) * below - num * above)


# ----------------------------------------------------------------------------------- HTTP

HTTP_EPSILON = 0.01


def http_sample(n: int = 60) -> list[Case]:
    """n cases spread over the categories, and within each over its cases (deterministic)."""
    by_category: dict[str, list[Case]] = {c: [] for c in CATEGORIES}
    for case in CASES:
        by_category[case.category].append(case)
    per = n // len(CATEGORIES)
    out = []
    for cases in by_category.values():
        step = max(len(cases) // per, 1)
        out.extend(cases[::step][:per])
    return out


SAMPLE = http_sample()


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> tuple[Api, dict[str, str]]:
    api = checks.make_api(tmp_path_factory.mktemp("security-api"), clean_frames())
    return api, api.analyst("mallory", epsilon=1000.0, delta=1e-3)


def _strict_json(data: bytes) -> Any:
    return json.loads(data, parse_constant=checks._strict)


def _budget(api: Api, headers: dict[str, str]) -> tuple[float, float, float, float]:
    [b] = api.client.get("/v1/budget", headers=headers).json["budgets"]
    return b["epsilon_spent"], b["delta_spent"], b["dataset_level"]["epsilon_spent"], b["dataset_level"]["delta_spent"]


def _entries(api: Api) -> list[dict]:
    r = api.client.get("/v1/admin/ledger", headers=api.admin)
    assert r.status_code == 200
    return r.json["entries"]


def http_expect(api: Api, case: Case, body: dict[str, Any]) -> str:
    """What the HTTP API answers: bodies over the server's size limit (413) or the schema's SQL length
    limit (400) are refused before they reach the core."""
    from gateway.problems import CODES_BY_STATUS
    from gateway.schemas import QueryIn

    if len(json.dumps(body).encode()) > (api.app.config.get("MAX_CONTENT_LENGTH") or float("inf")):
        return CODES_BY_STATUS[413]
    max_sql = min((m.max_length for m in QueryIn.model_fields["sql"].metadata if getattr(m, "max_length", None)), default=None)
    if max_sql is not None and len(case.sql) > max_sql:
        return "invalid_request"
    return case.expect


def check_over_http(api: Api, headers: dict[str, str], case: Case) -> None:
    before, n_entries = _budget(api, headers), len(_entries(api))
    body = {"dataset": "bank", "sql": case.sql, "epsilon": HTTP_EPSILON, "delta": case.delta, "request_id": f"r-{uuid.uuid4().hex}"}
    r = api.client.post("/v1/queries", json=body, headers=headers)
    assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    data = _strict_json(r.data)
    expect = http_expect(api, case, body)
    preview = api.client.post("/v1/queries/preview", json={k: v for k, v in body.items() if k != "request_id"}, headers=headers)
    assert preview.status_code < 500
    if expect != "answered":
        assert 400 <= r.status_code < 500 and r.headers["Content-Type"] == "application/problem+json", r.status_code
        assert data["code"] == expect, data
        assert data["status"] == r.status_code and data["type"].endswith(expect) and data["detail"]
        assert _budget(api, headers) == before, "a refusal was charged"
        assert len(_entries(api)) == n_entries, "a refusal left a ledger entry"
        assert preview.status_code == r.status_code and preview.json["code"] == expect
        return
    assert r.status_code == 200, data
    assert set(data["accuracy"]) == set(data["columns"])
    assert all(len(row) == len(data["columns"]) for row in data["rows"])
    if data["cached"]:  # an identical query (another case's) was answered before: a free re-release
        assert data["cost"] == {"epsilon": 0.0, "delta": 0.0}
        assert _budget(api, headers) == before and len(_entries(api)) == n_entries
        return
    public = "rates" in case.sql
    cost = 0.0 if public else HTTP_EPSILON
    assert data["cost"]["epsilon"] == pytest.approx(cost)
    if not public:
        plan = api.app.extensions["dpgate"]["gateway"].plan("bank", case.sql, epsilon=HTTP_EPSILON, delta=case.delta)
        for i, name in enumerate(data["columns"]):
            acc = data["accuracy"][name]
            checks.check_column(plan, i, acc["mechanism"], acc["scale"], [row[i] for row in data["rows"]])
    after = _budget(api, headers)
    assert after[0] == pytest.approx(before[0] + cost) and after[2] == pytest.approx(before[2] + cost)
    entries = _entries(api)
    assert len(entries) == n_entries + (0 if public else 1)
    if not public:
        assert entries[0]["request_id"] == body["request_id"] and entries[0]["epsilon"] == pytest.approx(cost)
    assert preview.status_code == 200 and preview.json["cost"]["epsilon"] == pytest.approx(cost)
    # the same query again (a new request id) re-releases the stored answer, for free
    again = api.client.post("/v1/queries", json={**body, "request_id": f"r-{uuid.uuid4().hex}"}, headers=headers)
    assert again.status_code == 200
    if not public:
        assert again.json["cached"] is True and again.json["rows"] == data["rows"] and again.json["cost"]["epsilon"] == 0
    assert _budget(api, headers) == after and len(_entries(api)) == len(entries)


@pytest.mark.parametrize("case", SAMPLE, ids=[c.id[:90] for c in SAMPLE])
def test_http_sample(http: tuple[Api, dict[str, str]], case: Case) -> None:
    check_over_http(*http, case)


def test_the_http_sample_covers_every_category_and_both_outcomes() -> None:
    assert len(SAMPLE) >= 60 and {c.category for c in SAMPLE} == set(CATEGORIES)
    assert {c.expect == "answered" for c in SAMPLE} == {True, False}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id[:90] for c in CASES])
def test_http_full_corpus(http: tuple[Api, dict[str, str]], case: Case) -> None:
    check_over_http(*http, case)


# ----------------------------------------------------------------------------------- privacy parameters

PARAMETER_CASES = [  # (sql, epsilon, delta, expected): the SQL is fine, the privacy parameters are the attack
    ("SELECT COUNT(*) FROM tx", "1e-300", 0, "invalid_request"),  # a noise scale of 5e300: the sampler never returns
    ("SELECT COUNT(*) FROM tx", "1e-25", 0, "invalid_request"),
    ("SELECT COUNT(*) FROM tx", 5e-324, 0, "invalid_request"),
    ("SELECT COUNT(*) FROM tx", "1e-12", 0, "answered"),
    ("SELECT COUNT(*), SUM(amount), AVG(qty), MEDIAN(amount), VARIANCE(amount) FROM tx", "1e-12", 0, "answered"),
    ("SELECT cat, COUNT(*) FROM tx GROUP BY cat ORDER BY COUNT(*) DESC LIMIT 1", "1e-12", 0, "answered"),
    ("SELECT city, COUNT(*) FROM tx GROUP BY city", "1e-12", 1e-6, "answered"),
    ("SELECT city, COUNT(*) FROM tx GROUP BY city", 1, 1e-17, "invalid_request"),  # δ too small for a threshold
    ("SELECT city, COUNT(*) FROM tx GROUP BY city", 1, 5e-324, "invalid_request"),
    ("SELECT city, COUNT(*) FROM tx GROUP BY city", "1e-6", "1e-300", "invalid_request"),
    ("SELECT COUNT(*) FROM tx", 1, 5e-324, "answered"),  # δ is not used (nor charged) without a threshold
    ("SELECT COUNT(*) FROM tx", 100, 0, "answered"),
    ("SELECT COUNT(*) FROM tx", 101, 0, "invalid_request"),
    ("SELECT COUNT(*) FROM tx", "nan", 0, "invalid_request"),
    ("SELECT COUNT(*) FROM tx", 1, 0.001, "invalid_request"),
    ("SELECT COUNT(*) FROM tx", 1, -1e-300, "invalid_request"),
]


@pytest.mark.parametrize(("sql", "epsilon", "delta", "expect"), PARAMETER_CASES, ids=[f"{c[1]}-{c[2]}-{c[0][:40]}" for c in PARAMETER_CASES])
def test_extreme_privacy_parameters_are_answered_quickly_or_refused(clean: Gateway, sql: str, epsilon: Any, delta: Any, expect: str) -> None:
    import threading

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["outcome"] = checks.ask(clean, sql, epsilon=epsilon, delta=delta)
        except BaseException as e:  # noqa: BLE001 - reported below
            box["error"] = e

    worker = threading.Thread(target=run, daemon=True)  # a hung sampler cannot hang the test run
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the query did not finish in 30 s"
    if "error" in box:
        raise box["error"]
    got: checks.Outcome = box["outcome"]
    assert got.kind == expect, got.message
    if got.answer is not None:
        checks.check_answer(got.answer)
    else:
        preview_refused = False
        try:
            clean.preview("bank", sql, epsilon=epsilon, delta=delta)
        except Exception as e:  # noqa: BLE001
            preview_refused = getattr(e, "code", None) == expect
        assert preview_refused, "the free preview must refuse what the query refuses"
