"""The invariants every query must satisfy, whatever an analyst sends.

- It is answered or refused with a typed `DpgateError` whose `code` is one of the stable 4xx codes; no
  other exception escapes the core (at the HTTP edge that would be a 500).
- A refusal happens while planning, before any private data is read (so it costs nothing).
- An answer is strict JSON, its accuracy names every column, and every released value is noisy: each
  aggregate column declares a mechanism with a positive noise scale, unless the aggregate is a constant
  (every sum it derives from has sensitivity 0) or the table is public; a GROUP BY key without noise
  only takes values of the key's public domain.
- The response does not depend on whether a row on which an expression fails exists: same outcome,
  code and message, and for an answer the same columns, mechanisms, scales and cost (and row count,
  where the rows are not chosen by noisy values).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from gateway.core import Gateway
from gateway.errors import DpgateError
from gateway.sql.plan import Plan
from gateway.sql.release import Answer

STABLE_CODES = {"invalid_sql", "unsupported_sql", "unknown_table", "unknown_column", "invalid_request", "unknown_dataset"}
NOISY = {"laplace", "laplace_threshold", "exponential", "noisy_max", "gaussian"}


@dataclass
class Outcome:
    kind: str  # "answered" or the error's code
    answer: Answer | None = None
    error: DpgateError | None = None

    @property
    def message(self) -> str | None:
        return None if self.error is None else self.error.message


class UnexpectedError(AssertionError):
    """An exception that is not a typed refusal: at the HTTP edge, a 500."""


def ask(gw: Gateway, sql: str, *, epsilon: Any = 1, delta: Any = 0) -> Outcome:
    try:
        answer = gw.query("bank", sql, epsilon=epsilon, delta=delta)
    except DpgateError as e:
        assert e.code in STABLE_CODES, (e.code, e.message)
        assert 400 <= e.status < 500, (e.code, e.status)
        assert isinstance(e.message, str) and e.message
        json.dumps(e.to_dict(), allow_nan=False)
        return Outcome(e.code, error=e)
    except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
        raise UnexpectedError(f"{type(e).__name__} escaped the core for {sql[:200]!r}") from e
    return Outcome("answered", answer=answer)


def refused_while_planning(gw: Gateway, sql: str, outcome: Outcome, *, delta: Any = 0) -> None:
    """A refusal comes from the planner, which reads no data: the same error, from plan() alone."""
    assert outcome.error is not None
    try:
        gw.plan("bank", sql, epsilon=1, delta=delta)
    except DpgateError as e:
        assert (e.code, e.message) == (outcome.error.code, outcome.error.message)
        return
    raise AssertionError(f"planned, but refused after reading data ({outcome.kind}): {sql[:200]!r}")


def _strict(v: Any) -> Any:
    raise ValueError(f"non-finite number {v} in an answer")


def check_answer(answer: Answer) -> None:
    plan = answer.plan
    body = json.dumps(answer.to_json(), allow_nan=False)
    json.loads(body, parse_constant=_strict)
    assert len(set(answer.columns)) == len(answer.columns), answer.columns
    assert set(answer.accuracy) == set(answer.columns)
    assert len(plan.columns) == len(answer.columns)
    for row in answer.rows:
        assert len(row) == len(answer.columns)
    if plan.public:
        assert answer.cost.epsilon == 0 and answer.cost.delta == 0
        return
    assert answer.cost.epsilon == plan.epsilon > 0
    for i, col in enumerate(plan.columns):
        acc = answer.accuracy[col.name]
        check_column(plan, i, acc.mechanism, acc.scale, [row[i] for row in answer.rows])


def check_column(plan: Plan, i: int, mechanism: str, scale: float | None, values: list[Any]) -> None:
    """Column i of an answer to a private table is noisy, public, or a constant."""
    col = plan.columns[i]
    measures = {m.id: m for m in plan.measures}
    aggregates = {a.id: a for a in plan.aggregates}
    if col.source is None:
        assert mechanism == "derived", (col, mechanism)  # post-processing of released values only
    elif col.source.startswith("_k"):
        key = plan.keys[int(col.source[2:])]
        if mechanism == "none":
            assert plan.selection in ("none", "public") and key.domain is not None, (col, plan.selection)
            assert all(v in key.domain or _same_number(v, key.domain) for v in values), (col, values[:5])
        else:
            assert mechanism in NOISY and scale is not None and scale > 0, (col, mechanism, scale)
    else:
        agg = aggregates[col.source]
        if scale is not None and scale > 0:
            assert mechanism in NOISY, (col, mechanism)
        elif agg.func in ("avg", "var", "stddev") and mechanism in NOISY:
            # a ratio of released measures has no one scale of its own: each measure it is derived
            # from is released with noise (or is a constant sum)
            for m in agg.measures:
                assert m in plan.released or measures[m].base is not None or measures[m].sensitivity == 0, (col, m)
        else:
            # a constant: the sums it derives from cannot move (sensitivity 0); its counts are noisy
            sums = [measures[m] for m in agg.measures if measures[m].kind == "sum"]
            assert sums and all(m.sensitivity == 0 for m in sums), (col, mechanism, scale, agg)


def _same_number(v: Any, domain: tuple) -> bool:
    return isinstance(v, (int, float)) and any(isinstance(d, (int, float)) and not isinstance(d, bool) and d == v for d in domain)


def shape(outcome: Outcome) -> tuple:
    """What a response reveals besides its noisy values."""
    if outcome.answer is None:
        return (outcome.kind, outcome.message)
    a = outcome.answer
    plan = a.plan
    rows = None if _rows_are_noisy(plan) else len(a.rows)
    return (
        "answered",
        tuple(a.columns),
        rows,
        tuple((k, v.mechanism, v.scale) for k, v in a.accuracy.items()),
        (a.cost.epsilon, a.cost.delta),
    )


def _rows_are_noisy(plan: Plan) -> bool:
    """Rows chosen by noisy values: threshold selection, HAVING on noisy aggregates."""
    return plan.selection == "threshold" or plan.post.args.get("where") is not None


def noised_cells(answer: Answer) -> list[tuple[int, int, Any]]:
    """The cells of columns released with Laplace noise (counts, sums, averages, variances). A GROUP BY
    key kept by threshold selection states the selection's noise, but its value is the group's own."""
    keys = {i for i, c in enumerate(answer.plan.columns) if (c.source or "").startswith("_k")}
    ratios = {a.id for a in answer.plan.aggregates if a.func in ("avg", "var", "stddev")}
    cols = [i for i, c in enumerate(answer.columns) if answer.accuracy[c].mechanism in ("laplace", "laplace_threshold", "gaussian")
            and ((answer.accuracy[c].scale or 0) > 0 or answer.plan.columns[i].source in ratios) and i not in keys]
    return [(r, i, row[i]) for r, row in enumerate(answer.rows) for i in cols]


def clipped(answer: Answer, i: int, v: Any) -> bool:
    """A value that post-processing may return again and again: NULL, 0 (counts and sums are clipped
    at 0), or a bound of the aggregate (averages are clipped to the declared range)."""
    if v is None or v == 0:
        return True
    col = answer.plan.columns[i]
    agg = next((a for a in answer.plan.aggregates if a.id == col.source), None)
    if agg is None or not isinstance(v, (int, float)):
        return False
    bounds = [agg.lower, agg.upper]
    if agg.func in ("var", "stddev"):  # a variance is clipped to [0, half-width² (x2 for the sample's)]
        top = ((agg.upper - agg.lower) / 2) ** 2 * (2 if agg.sample else 1)
        bounds = [top, math.sqrt(top)]
    return any(math.isclose(v, b) for b in bounds)


def assert_noisy(gw: Gateway, sql: str, first: Answer, *, delta: Any = 0, tries: int = 8) -> None:
    """Asking again draws fresh noise: some noised cell changes. Only cells that clipping pins (0,
    NULL, a bound) may stay the same in every try; an un-noised value would never change."""
    cells = noised_cells(first)
    if not cells:
        return  # nothing released with Laplace noise (quantiles, keys only, an empty selection)
    seen = {(r, i): v for r, i, v in cells}
    for _ in range(tries):
        again = gw.query("bank", sql, epsilon=first.plan.epsilon, delta=delta)
        if len(again.rows) != len(first.rows) or any(seen.get((r, i)) != v for r, i, v in noised_cells(again)):
            return
    stuck = [(first.columns[i], v) for (r, i), v in seen.items() if not clipped(first, i, v)]
    assert not stuck, f"the same noised values in {tries + 1} answers: {stuck[:5]} for {sql[:200]!r}"


def make_api(tmp_path: Any, frames: Any) -> Any:
    """The HTTP app over `frames` with a real SQLite ledger, a large dataset budget (so that the whole
    corpus fits), and rate limits high enough not to refuse a test's bursts of requests."""
    import copy

    from budget.ledger import Ledger
    from gateway.app import create_app
    from gateway.settings import Settings, load_settings
    from tests.api.conftest import ADMIN_KEY, Api
    from tests.conftest import BANK, make_gateway

    meta = copy.deepcopy(BANK)
    meta["budget"] = {"epsilon": 1000, "delta": 1e-2}
    limits = {"rate_limit_per_analyst": "1000000/minute", "rate_limit_per_organisation": "1000000/minute"}
    settings = load_settings(data_dir=tmp_path, admin_key=ADMIN_KEY, **{k: v for k, v in limits.items() if k in Settings.model_fields})
    settings.demo.enabled = False
    ledger = Ledger(settings.ledger)
    ledger.migrate()
    app = create_app(settings, gateway=make_gateway(frames, meta), ledger=ledger)
    app.config["TESTING"] = True
    return Api(app)
