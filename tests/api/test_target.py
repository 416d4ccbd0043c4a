"""Ask by accuracy over HTTP: the preview quotes the smallest ε that meets a target, the query charges
exactly that; refusals cost nothing; alpha, diagnostics and the target reach the answer and its keys."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from gateway.sql.release import expected_accuracy
from gateway.target import Target, candidate, solve
from mechanisms.cost import round_down
from tests.api.conftest import Api

GROUPED = "SELECT cat, COUNT(*) AS n, AVG(amount) AS avg_amount, SUM(amount) AS total FROM tx GROUP BY cat"


def entries(api: Api) -> list[dict[str, Any]]:
    return api.client.get("/v1/admin/ledger", headers=api.admin).json["entries"]


def preview(api: Api, headers: dict[str, str], sql: str, **body: Any):  # type: ignore[no-untyped-def]
    return api.client.post("/v1/queries/preview", json={"dataset": "bank", "sql": sql, **body}, headers=headers)


def query(api: Api, headers: dict[str, str], sql: str, **body: Any):  # type: ignore[no-untyped-def]
    return api.client.post("/v1/queries", json={"dataset": "bank", "sql": sql, **body}, headers=headers)


def short(eps: float) -> Fraction:
    """The ε a target solves to is a decimal of at most 4 significant digits, exactly as sent."""
    assert len(Decimal(repr(eps)).normalize().as_tuple().digits) <= 4, eps
    return Fraction(repr(eps))


def test_preview_quotes_the_smallest_epsilon_and_the_query_charges_exactly_it(api: Api) -> None:
    ann = api.analyst("ann", epsilon=2.0)
    target = {"column": "n", "ci95": 40}
    r = preview(api, ann, GROUPED, target=target)
    assert r.status_code == 200, r.json
    quote = r.json
    eps = short(quote["epsilon"])
    assert quote["cost"] == {"epsilon": float(eps), "delta": 0.0}
    assert quote["accuracy"]["n"]["ci95"] <= 40
    assert quote["target"] == {"column": "n", "ci95": 40.0, "half_width": 40.0, "expected_ci95": quote["accuracy"]["n"]["ci95"]}
    assert entries(api) == [] and quote["remaining"]["analyst"]["epsilon"] == 2.0  # the quote is free

    # smallest: one step of the 4-digit grid below misses the target (planning only, through the core)
    gateway = api.app.extensions["dpgate"]["gateway"]
    solution = solve(lambda e: gateway.plan("bank", GROUPED, epsilon=e), Target("n", ci95=40))
    assert solution.epsilon == eps
    top = Decimal(repr(float(eps))).adjusted()  # eps = m × 10^(top - 3), m in 1000..9999
    ulp = Fraction(10) ** (top - 3) / (10 if eps == Fraction(10) ** top else 1)
    step_down = eps - ulp  # the grid's previous value
    assert expected_accuracy(gateway.plan("bank", GROUPED, epsilon=step_down))[1]["n"].ci95 > 40

    r = query(api, ann, GROUPED, target=target)
    assert r.status_code == 200, r.json
    body = r.json
    assert body["cost"] == quote["cost"]  # the charge is the quote, exactly
    assert body["epsilon"] == quote["epsilon"] and body["target"] == quote["target"]
    assert body["accuracy"]["n"]["ci95"] <= 40  # COUNT's stated half-width is the expected one
    assert body["cached"] is False
    [entry] = entries(api)
    assert entry["kind"] == "query" and Fraction(repr(entry["epsilon"])) == eps and entry["delta"] == 0
    assert body["remaining"]["analyst"]["epsilon"] == round_down(Fraction(2) - eps)


def test_avg_target_states_its_rows_assumption(api: Api) -> None:
    ann = api.analyst("ann", epsilon=10.0)
    target = {"column": "avg_amount", "relative": 0.05, "rows": 200}  # ±5% of the declared range [0, 1000]
    r = preview(api, ann, GROUPED, target=target)
    assert r.status_code == 200, r.json
    quote = r.json
    assert quote["target"]["rows"] == 200 and quote["target"]["half_width"] == pytest.approx(50.0)
    assert quote["accuracy"]["avg_amount"]["ci95"] <= 50.0  # for a cell of 200 rows
    eps = short(quote["epsilon"])
    r = query(api, ann, GROUPED, target=target)
    assert r.status_code == 200, r.json
    assert r.json["cost"] == quote["cost"] and Fraction(repr(r.json["cost"]["epsilon"])) == eps
    assert r.json["target"] == quote["target"]
    # relative SUM: to rows × max(|lower|, |upper|) = 200 × 1000
    r = preview(api, ann, GROUPED, target={"column": "total", "relative": 0.01, "rows": 200})
    assert r.status_code == 200 and r.json["target"]["half_width"] == pytest.approx(2000.0)
    assert r.json["accuracy"]["total"]["ci95"] <= 2000.0


def test_a_bigger_target_costs_less(api: Api) -> None:
    ann = api.analyst("ann")
    quotes = [preview(api, ann, "SELECT COUNT(*) AS n FROM tx", target={"column": "n", "ci95": ci}).json["epsilon"] for ci in (20, 40, 80)]
    assert quotes[0] > quotes[1] > quotes[2]


@pytest.mark.parametrize(
    "sql, target, status, code",
    [
        (GROUPED, {"column": "cat", "ci95": 5}, 400, "target_unsupported"),  # a GROUP BY key
        ("SELECT COUNT(*) * 2 AS twice FROM tx", {"column": "twice", "ci95": 5}, 400, "target_unsupported"),  # derived
        ("SELECT MEDIAN(amount) AS m FROM tx", {"column": "m", "ci95": 5}, 400, "target_unsupported"),  # quantile
        (GROUPED, {"column": "avg_amount", "ci95": 5}, 400, "target_unsupported"),  # AVG without rows
        (GROUPED, {"column": "n", "relative": 0.1}, 400, "target_unsupported"),  # relative COUNT without rows
        (GROUPED, {"column": "total", "ci95": 0.001}, 422, "target_unreachable"),  # SUM: ±150 at best
        (GROUPED, {"column": "nope", "ci95": 5}, 400, "invalid_request"),
        (GROUPED, {"column": "n", "ci95": 5, "relative": 0.1}, 400, "invalid_request"),
        (GROUPED, {"column": "n"}, 400, "invalid_request"),
        (GROUPED, {"column": "n", "relative": 1.5}, 400, "invalid_request"),
        (GROUPED, {"column": "n", "ci95": -1}, 400, "invalid_request"),
        (GROUPED, {"column": "n", "ci95": 5, "rows": 0}, 400, "invalid_request"),
        ("SELECT COUNT(* FROM tx", {"column": "n", "ci95": 5}, 400, "invalid_sql"),
    ],
)
def test_refused_targets_cost_nothing(api: Api, sql: str, target: dict, status: int, code: str) -> None:
    ann = api.analyst("ann")
    for send in (preview, query):
        r = send(api, ann, sql, target=target, request_id="t-1")
        assert r.status_code == status, r.json
        assert r.headers["Content-Type"] == "application/problem+json" and r.json["code"] == code, r.json
    if code == "target_unreachable":
        assert r.json["best_ci95"] > r.json["target_ci95"] == 0.001 and r.json["max_epsilon"] == 100
    if code == "target_unsupported" and "avg" in target["column"]:
        assert "rows" in r.json["detail"]
    assert entries(api) == []
    assert api.client.get("/v1/budget", headers=ann).json["budgets"][0]["epsilon_spent"] == 0
    # the request id was not taken: it serves a good request afterwards
    assert query(api, ann, "SELECT COUNT(*) AS n FROM tx", epsilon=0.1, request_id="t-1").status_code == 200


@pytest.mark.parametrize("body", [{}, {"epsilon": 0.5, "target": {"column": "n", "ci95": 40}}])
def test_exactly_one_of_epsilon_and_target(api: Api, body: dict) -> None:
    ann = api.analyst("ann")
    for send in (preview, query):
        r = send(api, ann, "SELECT COUNT(*) AS n FROM tx", **body)
        assert r.status_code == 400 and r.json["code"] == "invalid_request", r.json
        assert r.json["field"] == "epsilon" and "epsilon or target" in r.json["detail"]
    assert entries(api) == []


@pytest.mark.parametrize("alpha", [0, 1e-7, 0.51, "x"])
def test_alpha_out_of_range_is_refused(api: Api, alpha: Any) -> None:
    ann = api.analyst("ann")
    r = query(api, ann, "SELECT COUNT(*) AS n FROM tx", epsilon=0.5, alpha=alpha)
    assert r.status_code == 400 and r.json["code"] == "invalid_request", r.json
    assert "alpha" in str(r.json["errors"])
    assert entries(api) == []


def _widths(body: dict, column: str) -> list[float]:
    return [hi - lo for lo, hi in body["intervals"][column]]


def test_alpha_sets_the_intervals_level(api: Api) -> None:
    """Same ε: 99% intervals are wider than 95% ones (COUNT: the discrete Laplace quantiles at scale 10)."""
    ann = api.analyst("ann", epsilon=5.0)
    sql = "SELECT COUNT(*) AS n FROM tx"
    r95 = query(api, ann, sql, epsilon=0.5)
    r99 = query(api, ann, sql, epsilon=0.5, alpha=0.01)
    assert r95.status_code == 200 and r99.status_code == 200, (r95.json, r99.json)
    assert "intervals" in r95.json, "the lead's release.py states per-value intervals"
    assert r99.json["cached"] is False  # another level is another release, not a free repeat
    assert r95.json["level"] == pytest.approx(0.95) and r99.json["level"] == pytest.approx(0.99)
    w95, w99 = _widths(r95.json, "n"), _widths(r99.json, "n")
    assert w95 == [60.0] and w99[0] > w95[0]  # ±30 at 95%; ±46 at 99% (scale 5 / 0.5)
    lo, hi = r99.json["intervals"]["n"][0]
    assert lo <= r99.json["rows"][0][0] <= hi
    assert len(entries(api)) == 2


def test_diagnostics_and_alpha_are_part_of_the_free_repeat_key(api: Api) -> None:
    ann = api.analyst("ann", epsilon=5.0)
    sql = "SELECT COUNT(*) AS n, AVG(amount) AS a FROM tx"
    first = query(api, ann, sql, epsilon=0.5)
    assert first.status_code == 200 and "diagnostics" not in first.json  # only when asked
    with_diag = query(api, ann, sql, epsilon=0.5, diagnostics=True)
    assert with_diag.status_code == 200, with_diag.json
    assert with_diag.json["cached"] is False and with_diag.json["cost"]["epsilon"] == 0.5
    assert "diagnostics" in with_diag.json, "the lead's release.py releases the bounding counts"
    again = query(api, ann, sql, epsilon=0.5, diagnostics=True)
    assert again.json["cached"] is True and again.json["rows"] == with_diag.json["rows"]
    assert again.json["diagnostics"] == with_diag.json["diagnostics"]
    plain = query(api, ann, sql, epsilon=0.5)
    assert plain.json["cached"] is True and plain.json["rows"] == first.json["rows"] and "diagnostics" not in plain.json
    assert len(entries(api)) == 2


def test_a_target_is_keyed_by_the_epsilon_it_solves_to(api: Api) -> None:
    """A target's answer is the same release as asking its ε: a repeat either way is free, and each
    answer states only its own request's target."""
    ann = api.analyst("ann", epsilon=5.0)
    sql = "SELECT COUNT(*) AS n FROM tx"
    by_target = query(api, ann, sql, target={"column": "n", "ci95": 40})
    assert by_target.status_code == 200, by_target.json
    eps = by_target.json["epsilon"]
    by_eps = query(api, ann, sql, epsilon=eps)
    assert by_eps.json["cached"] is True and by_eps.json["rows"] == by_target.json["rows"]
    assert "target" not in by_eps.json and "epsilon" not in by_eps.json
    other = query(api, ann, sql, target={"column": "n", "ci95": 40.0001})  # solves to the same ε
    assert other.json["cached"] is True and other.json["target"]["ci95"] == 40.0001
    assert len(entries(api)) == 1


def test_request_id_retry_of_a_target_is_charged_once(api: Api) -> None:
    ann = api.analyst("ann", epsilon=5.0)
    sql = "SELECT COUNT(*) AS n FROM tx"
    target = {"column": "n", "ci95": 40}
    first = query(api, ann, sql, target=target, request_id="r-1")
    retry = query(api, ann, sql, target=target, request_id="r-1")
    assert first.status_code == retry.status_code == 200
    assert retry.json["rows"] == first.json["rows"] and retry.json["target"] == first.json["target"]
    assert len(entries(api)) == 1
    for changed in ({"target": {"column": "n", "ci95": 50}}, {"target": target, "alpha": 0.01}, {"target": target, "diagnostics": True}):
        r = query(api, ann, sql, request_id="r-1", **changed)
        assert r.status_code == 409, (changed, r.json)  # the same id with another body
    assert len(entries(api)) == 1


def test_spec_documents_the_new_members(api: Api) -> None:
    spec = api.client.get("/openapi.json").json
    schemas = spec["components"]["schemas"]
    body = schemas["QueryIn"]["properties"]
    assert {"target", "alpha", "diagnostics", "epsilon"} <= set(body) and "epsilon" not in schemas["QueryIn"].get("required", [])
    out = schemas["QueryOut"]["properties"]
    assert {"intervals", "bounding", "diagnostics", "epsilon", "target"} <= set(out)
    assert {"epsilon", "target"} <= set(schemas["PreviewOut"]["properties"])
    for path in ("/v1/queries", "/v1/queries/preview"):
        assert "422" in spec["paths"][path]["post"]["responses"]


def test_grid_is_exact_and_short() -> None:
    assert candidate(0) == Fraction(1, 10**12)
    assert candidate(1) == Fraction(1001, 10**15)
    assert candidate(9000) == Fraction(1, 10**11)
    assert [candidate(i) for i in range(9000 * 14 - 1, 9000 * 14 + 1)] == [Fraction(9999, 100), Fraction(100)]
