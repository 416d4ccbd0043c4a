"""Property: random queries from a small grammar over the bank tables never break the invariants.

The grammar (below) builds SELECTs of aggregates (supported and not) over arithmetic, CASE, casts,
date parts, functions the gateway does not know, literals in and out of range, WHERE predicates
(including filters on the privacy unit and comparisons of ids with other types), GROUP BY on random
columns (the unit and ids among them), HAVING, ORDER BY and LIMIT, nested to a small depth, sometimes
over a join (on the unit or not). For each query:

- core (`gateway.core`): it is answered, or refused with a typed `DpgateError` that has a stable 4xx
  code, by the planner alone; an answer passes `checks.check_answer` (strict JSON, noisy or public
  values) and asking again draws fresh noise; the response has the same shape on the data set where
  one row makes casts and divisions fail (`checks.shape`);
- service (`QueryService` over a SQLite ledger): a refusal charges nothing and leaves no ledger entry;
  an answer is charged exactly its cost, or is a free repeat of a stored answer;
- HTTP: never a 5xx; a refusal is a problem+json with a code.

The default run keeps to about 15 s of CPU; the `slow` run tries 2,000 queries on the core and 300
through HTTP.
"""
from __future__ import annotations

import uuid
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from budget.errors import LedgerError
from budget.ledger import Ledger
from gateway.errors import DpgateError
from gateway.service import QueryRequest, QueryService
from tests.api.conftest import Api
from tests.conftest import make_gateway
from tests.security import checks
from tests.security.corpus import clean_frames, failing_frames

# ----------------------------------------------------------------------------------- grammar

NUM_LEAVES = [
    "amount", "qty", "amount", "qty", "0", "1", "2.5", "-3", "1000", "1e15", "1e16", "1e309", "NULL",
    "CAST(city AS INT)", "CAST(note AS DOUBLE)", "CAST(cid AS DOUBLE)", "LENGTH(city)", "EXTRACT(month FROM ts)",
    "YEAR(ts)", "HOUR(ts)", "cid", "tid", "CAST(flag AS INT)", "9223372036854775808",
]
PRED_LEAVES = [
    "flag", "TRUE", "NULL", "note IS NULL", "qty IS NOT NULL", "cat = 'food'", "cat IN ('food', 'tech')", "city LIKE '1%'",
    "ts > '2025-06-01'", "ts < '2025-02-30'", "cid = 7", "cid = '7'", "cid IN (1, 2, 3)", "tid BETWEEN 1 AND 'z'",
    "city IS TRUE", "CAST(note AS BOOLEAN)", "CAST(city AS DATE) > '2025-01-01'", "note = 'x'", "flag IS FALSE",
]
COLUMNS = ["amount", "qty", "cat", "city", "note", "flag", "ts", "cid", "tid"]
KEYS = [  # mostly keys with a public domain; the unit, ids and unbounded keys now and then
    "cat", "cat", "cat", "flag", "flag", "flag", "note", "note", "qty", "qty", "EXTRACT(month FROM ts)", "YEAR(ts)", "HOUR(ts)",
    "CASE WHEN amount > 100 THEN 'hi' ELSE 'lo' END", "CASE WHEN CAST(city AS INT) > 3 THEN 1 ELSE 0 END",
    "city", "amount", "CAST(ts AS DATE)", "amount > 500", "5", "NULL", "cid", "tid", "CAST(cid AS TEXT)",
]
UNARY = ["ABS", "FLOOR", "CEIL", "SIGN", "ROUND", "ln", "sqrt", "-", "CAST_INT", "COALESCE"]


def num(depth: int) -> st.SearchStrategy[str]:
    leaves = st.sampled_from(NUM_LEAVES)
    if depth == 0:
        return leaves
    sub = num(depth - 1)
    return st.one_of(
        leaves,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "%"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(pred(depth - 1), sub, sub).map(lambda t: f"CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END"),
        st.tuples(st.sampled_from(["LEAST", "GREATEST"]), sub, sub).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(st.sampled_from(UNARY), sub).map(_unary),
    )


def _unary(t: tuple[str, str]) -> str:
    f, e = t
    return {"-": f"-{e}", "CAST_INT": f"CAST({e} AS INT)", "COALESCE": f"COALESCE({e}, 0)"}.get(f, f"{f}({e})")


def pred(depth: int) -> st.SearchStrategy[str]:
    leaves = st.sampled_from(PRED_LEAVES)
    if depth == 0:
        return leaves
    sub, n = pred(depth - 1), num(depth - 1)
    return st.one_of(
        leaves,
        st.tuples(n, st.sampled_from(["=", "<>", "<", ">=", "IS DISTINCT FROM"]), n).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(sub, st.sampled_from(["AND", "OR"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        sub.map(lambda p: f"NOT {p}"),
        st.tuples(n, n, n).map(lambda t: f"{t[0]} BETWEEN {t[1]} AND {t[2]}"),
        st.tuples(n, n, n).map(lambda t: f"{t[0]} IN ({t[1]}, {t[2]})"),
    )


def aggregate(depth: int) -> st.SearchStrategy[str]:
    n = num(depth)
    clamped = st.tuples(n, st.sampled_from([(0, 100), (-5, 5), (0, 1)])).map(lambda t: f"LEAST(GREATEST({t[0]}, {t[1][0]}), {t[1][1]})")
    value = st.one_of(n, clamped, clamped)
    return st.one_of(
        st.just("COUNT(*)"),
        value.map(lambda e: f"COUNT({e})"),
        st.sampled_from(COLUMNS).map(lambda c: f"COUNT(DISTINCT {c})"),
        st.tuples(st.sampled_from(["SUM", "AVG", "MEDIAN", "MIN", "MAX", "VARIANCE", "STDDEV"]), value).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(["ARRAY_AGG", "FIRST", "ANY_VALUE", "STRING_AGG", "MODE"]), st.sampled_from(COLUMNS)).map(lambda t: f"{t[0]}({t[1]})"),
        value.map(lambda e: f"QUANTILE_CONT({e}, 0.9)"),
    )


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, float]:
    depth = draw(st.integers(0, 2))
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True))
    aggs = draw(st.lists(aggregate(depth), min_size=0 if keys else 1, max_size=3))
    raw = [draw(st.sampled_from(COLUMNS))] if draw(st.integers(0, 7)) == 0 else []  # a row-level column, sometimes
    items = [*keys, *aggs, *raw] or ["COUNT(*)"]
    source = draw(st.sampled_from(["tx"] * 6 + ["tx t JOIN cust c ON t.cid = c.cid"] * 2 + ["tx t JOIN cust c ON t.qty = c.age", "tx t JOIN tx u ON t.cid = u.cid"]))
    if source.startswith("tx t JOIN tx"):
        items = [i.replace("amount", "t.amount") for i in items]  # unambiguous in a self-join, most of the time
    sql = f"SELECT {', '.join(items)} FROM {source}"
    if draw(st.booleans()):
        where = draw(pred(depth))
        sql += f" WHERE {where.replace('amount', 't.amount') if 'JOIN tx' in source else where}"
    if keys:
        sql += " GROUP BY " + ", ".join(keys)
        if draw(st.booleans()):
            sql += f" HAVING {draw(aggregate(0))} {draw(st.sampled_from(['>', '<', '=']))} {draw(st.sampled_from(['0', '10', '1e15', 'NULL']))}"
    if draw(st.booleans()):
        sql += f" ORDER BY {draw(st.sampled_from(['1', '2', '1 DESC', '2 DESC', 'COUNT(*) DESC', 'COUNT(*)', 'amount', '1e309', '0']))}"
    if draw(st.booleans()):
        sql += f" LIMIT {draw(st.sampled_from(['1', '3', '0', '100000', '100001', '-1', '1.5']))}"
    delta = draw(st.sampled_from([0.0, 0.0, 1e-6]))
    return sql, delta


# ----------------------------------------------------------------------------------- core

CLEAN = make_gateway(clean_frames())
FAILING = make_gateway(failing_frames())


def core_property(sql: str, delta: float) -> None:
    got = checks.ask(CLEAN, sql, delta=delta)
    if got.answer is None:
        checks.refused_while_planning(CLEAN, sql, got, delta=delta)
    else:
        checks.check_answer(got.answer)
        checks.assert_noisy(CLEAN, sql, got.answer, delta=delta)
    other = checks.ask(FAILING, sql, delta=delta)
    assert checks.shape(other) == checks.shape(got), sql
    if other.answer is not None:
        checks.check_answer(other.answer)


COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much]}


@settings(max_examples=120, **COMMON)
@given(q=queries())
def test_generated_queries_keep_the_invariants(q: tuple[str, float]) -> None:
    core_property(*q)


@pytest.mark.slow
@settings(max_examples=2_000, **COMMON)
@given(q=queries())
def test_generated_queries_keep_the_invariants_many(q: tuple[str, float]) -> None:
    core_property(*q)


def test_the_grammar_reaches_both_outcomes() -> None:
    """The property is not vacuous: the grammar yields answered and refused queries (a fixed sample)."""
    quick = settings(max_examples=300, database=None, phases=[Phase.generate], **COMMON)  # no shrinking
    find(queries(), lambda q: checks.ask(CLEAN, q[0], delta=q[1]).kind == "answered", settings=quick)
    find(queries(), lambda q: checks.ask(CLEAN, q[0], delta=q[1]).kind != "answered", settings=quick)


# ----------------------------------------------------------------------------------- service

EPSILON = Fraction(1, 100)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> QueryService:
    path: Path = tmp_path_factory.mktemp("security-ledger") / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    ledger.migrate()
    ledger.set_dataset_budget("bank", epsilon=1000, delta="0.01")
    ledger.create_analyst("eve", role="analyst")
    ledger.set_allocation("eve", "bank", epsilon=1000, delta="0.001")
    return QueryService(CLEAN, ledger)


@settings(max_examples=60, **COMMON)
@given(q=queries(), with_id=st.booleans())
def test_a_refusal_charges_nothing_and_an_answer_exactly_its_cost(service: QueryService, q: tuple[str, float], with_id: bool) -> None:
    sql, delta = q
    ledger = service.ledger
    before = ledger.remaining_cost("eve", "bank")
    n_entries = len(ledger.entries(dataset="bank"))
    request = QueryRequest("bank", sql, str(EPSILON), delta, f"q-{uuid.uuid4().hex}" if with_id else None)
    try:
        result = service.query("eve", request)
    except (DpgateError, LedgerError) as e:
        assert e.code in checks.STABLE_CODES | {"budget_exhausted"}, e.code
        assert ledger.remaining_cost("eve", "bank") == before, "a refusal was charged"
        assert len(ledger.entries(dataset="bank")) == n_entries
        return
    except Exception as e:  # noqa: BLE001
        raise checks.UnexpectedError(f"{type(e).__name__} escaped the service for {sql[:200]!r}") from e
    after = ledger.remaining_cost("eve", "bank")
    spent = before.analyst.epsilon - after.analyst.epsilon
    if result["cached"]:
        assert spent == 0 and result["cost"] == {"epsilon": 0.0, "delta": 0.0}
    else:
        assert spent == Fraction(str(result["cost"]["epsilon"])) and spent in (0, EPSILON)
        assert len(ledger.entries(dataset="bank")) == n_entries + (1 if spent else 0)


# ----------------------------------------------------------------------------------- HTTP


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> tuple[Api, dict[str, str]]:
    api = checks.make_api(tmp_path_factory.mktemp("security-gen-api"), clean_frames())
    return api, api.analyst("trudy", epsilon=1000.0, delta=1e-3)


def http_property(api: Api, headers: dict[str, str], sql: str, delta: float) -> None:
    before = api.client.get("/v1/budget", headers=headers).json
    r = api.query(headers, sql, epsilon=float(EPSILON), delta=delta, request_id=f"h-{uuid.uuid4().hex}")
    assert r.status_code < 500, (sql, r.get_data(as_text=True)[:300])
    if r.status_code != 200:
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json["code"] in checks.STABLE_CODES | {"budget_exhausted"}, r.json
        assert api.client.get("/v1/budget", headers=headers).json == before, "a refusal was charged"


@settings(max_examples=25, **COMMON)
@given(q=queries())
def test_generated_queries_over_http(http: tuple[Api, dict[str, str]], q: tuple[str, float]) -> None:
    http_property(*http, *q)


@pytest.mark.slow
@settings(max_examples=300, **COMMON)
@given(q=queries())
def test_generated_queries_over_http_many(http: tuple[Api, dict[str, str]], q: tuple[str, float]) -> None:
    http_property(*http, *q)
