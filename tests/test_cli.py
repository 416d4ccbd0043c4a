"""The command line: the demo answers its examples, charges them, and hands out a working key."""
from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from budget.ledger import Ledger
from gateway.cli import DEMO_QUERIES, app


def test_demo_answers_examples_and_prints_a_key(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DPGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--rows", "20000"])
    assert result.exit_code == 0, result.output
    assert result.output.count("cost: ε=") == len(DEMO_QUERIES)
    key = re.search(r"analyst \S+ key \(shown once\):\s*(dpg_\S+)", result.output)
    assert key, result.output
    assert "curl -s http://127.0.0.1:8000/v1/queries" in result.output
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    analyst = ledger.authenticate(key.group(1))
    assert analyst is not None and analyst.role == "analyst"
    charged = ledger.entries(analyst=analyst.name)
    assert len(charged) == len(DEMO_QUERIES)
    assert sum(e["epsilon"] for e in charged) == sum(q[2] for q in DEMO_QUERIES)
    ledger.close()


def test_query_without_key_is_refused() -> None:
    result = CliRunner().invoke(app, ["query", "SELECT COUNT(*) FROM loans", "--url", "http://127.0.0.1:9"], env={"DPGATE_KEY": ""})
    assert result.exit_code == 2 and "API key" in result.output


def _served(tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    """The test app behind the Python client (no server): requests go to Flask's test client."""
    from gateway.client import ApiError, Client
    from tests.api.conftest import Api, make_app

    api = Api(make_app(tmp_path))
    key = api.analyst("ann", epsilon=5.0)["Authorization"].split()[1]

    def request(self, method, path, body=None, params=None):  # type: ignore[no-untyped-def]
        r = api.client.open(path, method=method, json=body, query_string=params, headers={"Authorization": f"Bearer {self.key}"})
        if r.status_code >= 400:
            raise ApiError(r.status_code, r.json)
        return r.json

    monkeypatch.setattr(Client, "request", request)
    monkeypatch.setenv("COLUMNS", "200")
    return api, key


def test_query_by_target_prints_the_epsilon_and_intervals(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    api, key = _served(tmp_path, monkeypatch)
    sql = "SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat"
    ask = ["query", sql, "-d", "bank", "--key", key, "--target-column", "n", "--target-ci95", "40", "--alpha", "0.1", "--diagnostics"]
    quoted = CliRunner().invoke(app, [*ask, "--preview"])  # diagnostics take shares of ε: part of the quote
    assert quoted.exit_code == 0, quoted.output
    eps = json.loads(quoted.output)["epsilon"]
    result = CliRunner().invoke(app, ask)
    assert result.exit_code == 0, result.output
    assert f"cost: ε={eps:g}" in result.output and f"target n ±40: ε={eps:g}" in result.output
    assert re.search(r"food\s*│\s*\d+ \[\d+, \d+\]", result.output), result.output  # each value with its interval
    assert "at 0.9 coverage" in result.output and "diagnostics" in result.output
    [entry] = api.client.get("/v1/admin/ledger", headers=api.admin).json["entries"]
    assert entry["epsilon"] == eps


def test_query_target_options_are_checked(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, key = _served(tmp_path, monkeypatch)
    base = ["query", "SELECT COUNT(*) AS n FROM tx", "-d", "bank", "--key", key]
    for extra in (["-e", "1", "--target-column", "n", "--target-ci95", "5"], ["--target-column", "n"], ["--target-ci95", "5"], ["-e", "1", "--rows", "9"]):
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code == 2, (extra, result.output)
    refused = CliRunner().invoke(app, [*base, "--target-column", "n", "--target-relative", "0.1"])
    assert refused.exit_code == 1 and "target_unsupported" in refused.output  # a relative COUNT needs --rows


def test_an_invalid_body_prints_each_field_error(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    api, key = _served(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, ["query", "SELECT COUNT(*) FROM tx", "-d", "bank", "--key", key, "--epsilon=-1", "--delta", "2"])
    assert result.exit_code == 1, result.output
    assert "400 invalid_request" in result.output
    assert "epsilon: Input should be greater than 0" in result.output
    assert "delta: Input should be less than" in result.output
    assert api.client.get("/v1/admin/ledger", headers=api.admin).json["entries"] == []  # refusals cost nothing


def test_a_refused_query_prints_the_message_as_text_not_markup(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, key = _served(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, ["query", "SELECT COUNT(*) FROM tx WHERE qty = [b] 1", "-d", "bank", "--key", key])
    assert result.exit_code == 1 and "400 invalid_sql" in result.output, result.output
    assert "syntax error near '1': unexpected token (line 1, column 41)" in " ".join(result.output.split()), result.output
    result = CliRunner().invoke(app, ["query", "SELEC COUNT(*) FROM tx", "-d", "bank", "--key", key])
    assert "syntax error near 'SELEC': did you mean SELECT? (line 1, column 1)" in " ".join(result.output.split())
    from gateway.cli import console, print_problem
    from gateway.client import ApiError

    with console.capture() as captured:  # rich would read an unescaped `[bold]` as markup and drop it
        print_problem(ApiError(400, {"code": "invalid_sql", "detail": "syntax error near '[bold]x'",
                                     "errors": {"json": {"sql": ["[red] is not a tag"]}}}))  # fmt: skip
    assert "near '[bold]x'" in captured.get() and "sql: [red] is not a tag" in captured.get()


def test_field_errors_flatten_every_shape_of_the_errors_member() -> None:
    from gateway.client import ApiError, field_errors

    problem = {
        "code": "invalid_request",
        "detail": "the request body or parameters are invalid",
        "errors": {
            "json": {"epsilon": ["Input should be greater than 0"], "target.ci95": ["a", "b"], "_schema": ["not an object"],
                     "rows": {"1": ["Input should be a valid dictionary"]}},
            "query": {"limit": ["Input should be a valid integer"]},
        },
    }
    assert field_errors(problem) == [
        "epsilon: Input should be greater than 0", "target.ci95: a", "target.ci95: b", "the body: not an object",
        "rows.1: Input should be a valid dictionary", "query parameter limit: Input should be a valid integer",
    ]  # fmt: skip
    assert field_errors({"code": "x"}) == [] and field_errors({"errors": "odd"}) == []
    error = ApiError(400, problem)
    assert str(error).startswith("400 invalid_request: the request body or parameters are invalid; epsilon: Input")
    assert ApiError(502, ["not", "a", "problem"]).code == "http_error"  # type: ignore[arg-type]
