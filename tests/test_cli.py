"""The command line: the demo answers its examples, charges them, and hands out a working key."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from budget.ledger import Ledger
from gateway.cli import DEMO_QUERIES, app
from gateway.demo_data import DEMO_ALLOCATIONS, DEMO_BUDGETS
from tests.training.conftest import _IGNORED as _TRAINING_WARNINGS  # third-party warnings on training threads


def test_demo_answers_examples_and_prints_a_key(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DPGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    from gateway.cli import console

    monkeypatch.setattr(console, "width", 250)
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
    # what remains, at both levels, after the examples: cards' spent of the allocation and of the total
    spent = {d: sum(q[2] for q in DEMO_QUERIES if q[0] == d) for d in ("lending", "cards")}
    for dataset, (epsilon, _) in DEMO_ALLOCATIONS.items():
        row = _row(result.output, dataset)
        total = DEMO_BUDGETS[dataset][0]
        assert row[1:4] == [f"{spent.get(dataset, 0):g} / {epsilon:g}", f"{spent.get(dataset, 0):g} / {total:g}",
                            f"{epsilon - spent.get(dataset, 0):g}"], row  # fmt: skip
    assert "warning" not in result.output

    # another demo finds the cards' total nearly spent by others: it says what really remains
    from mechanisms.cost import Cost

    ledger.charge(analyst=analyst.name, dataset="cards", cost=Cost(15 - spent["cards"], 0), kind="query")
    ledger.create_analyst("spender")
    ledger.set_allocation("spender", "cards", epsilon=100)
    ledger.charge(analyst="spender", dataset="cards", cost=Cost(DEMO_BUDGETS["cards"][0] - 15 - 1.5, 0), kind="query")
    ledger.close()
    again = CliRunner().invoke(app, ["demo", "--no-serve", "--no-examples", "--rows", "20000"])
    assert again.exit_code == 0, again.output
    assert _row(again.output, "cards")[1:4] == ["0 / 15", f"{DEMO_BUDGETS['cards'][0] - 1.5:g} / {DEMO_BUDGETS['cards'][0]:g}", "1.5 (dataset)"]
    assert "warning (exceeds_dataset_remaining): the allocation leaves ε=15 to spend but dataset 'cards' has ε=1.5 left" in _one_line(again.output)
    assert _row(again.output, "lending")[3] == f"{DEMO_ALLOCATIONS['lending'][0]:g}"  # untouched


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
        params = {k: v for k, v in (params or {}).items() if v is not None}
        r = api.client.open(path, method=method, json=body, query_string=params, headers={"Authorization": f"Bearer {self.key}"})
        if r.status_code >= 400:
            raise ApiError(r.status_code, r.json)
        return r.json

    def raw(self, path):  # type: ignore[no-untyped-def]
        r = api.client.get(path, headers={"Authorization": f"Bearer {self.key}"})
        if r.status_code >= 400:
            raise ApiError(r.status_code, r.json)
        return r.data

    monkeypatch.setattr(Client, "request", request)
    monkeypatch.setattr(Client, "raw", raw)
    monkeypatch.setenv("COLUMNS", "200")
    from gateway.cli import console

    monkeypatch.setattr(console, "width", 250)  # the console read COLUMNS when it was made
    return api, key


def test_query_by_target_prints_the_epsilon_and_intervals(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    api, key = _served(tmp_path, monkeypatch)
    sql = "SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat"
    ask = ["query", sql, "-d", "bank", "--key", key, "--target-column", "n", "--target-ci95", "40", "--alpha", "0.1", "--diagnostics"]
    quoted = CliRunner().invoke(app, [*ask, "--preview", "--json"])  # diagnostics take shares of ε: part of the quote
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


# -- tables, and --json as the API gives it ------------------------------------------------------------

def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _one_line(output: str) -> str:
    return " ".join(output.split())


def _row(output: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first`."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{output}")


def test_budget_prints_both_levels_and_what_can_really_be_spent(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    api, key = _served(tmp_path, monkeypatch)
    _run("query", "SELECT COUNT(*) AS n FROM tx", "-d", "bank", "-e", "0.5", "--key", key)
    assert _row(_run("budget", "--key", key), "bank")[1:5] == ["0.5 / 5", "0.5 / 10", "4.5", "0 / 1e-06"]
    ledger = api.app.extensions["dpgate"]["ledger"]
    ledger.create_analyst("zed")
    ledger.set_allocation("zed", "bank", epsilon=10)
    from mechanisms.cost import Cost

    ledger.charge(analyst="zed", dataset="bank", cost=Cost(8, 0), kind="query")  # 1.5 left on the dataset
    row = _row(_run("budget", "--key", key), "bank")
    assert row[1:4] == ["0.5 / 5", "8.5 / 10", "1.5 (dataset)"], row  # the dataset's total binds first
    as_json = json.loads(_run("budget", "--json", "--key", key))
    assert as_json == api.client.get("/v1/budget", headers={"Authorization": f"Bearer {key}"}).json


def test_datasets_lists_the_callers_own_and_shows_a_schema(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    api, key = _served(tmp_path, monkeypatch)
    row = _row(_run("datasets", "--key", key), "bank")
    assert row[1] == "cid" and "tx (5)" in row[2] and "rates public (1)" in row[2] and row[3:] == ["10, 1e-05", "5"], row
    schema = _run("datasets", "bank", "--key", key)
    tx = schema[schema.index("bank.tx (at most 5 rows per unit)"):]
    assert _row(tx, "amount")[1:3] == ["float", "[0, 1000]"] and _row(tx, "qty")[3] == "yes"
    assert _row(tx, "cat")[1:3] == ["category", "food, travel, tech, café ☕"], _row(tx, "cat")
    assert _row(schema, "rate")[1:3] == ["float", "[0, 1]"] and "bank.rates (public, costs nothing to read)" in schema
    assert json.loads(_run("datasets", "--json", "--key", key)) == api.client.get("/v1/datasets", headers={"Authorization": f"Bearer {key}"}).json
    refused = CliRunner().invoke(app, ["datasets", "elsewhere", "--key", key])
    assert refused.exit_code == 1 and "no dataset 'elsewhere'" in refused.output


def test_preview_is_a_table_and_json_is_the_api_answer(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    api, key = _served(tmp_path, monkeypatch)
    sql = "SELECT cat, COUNT(*) AS n, SUM(amount) AS total FROM tx GROUP BY cat"
    out = _run("query", sql, "-d", "bank", "-e", "0.5", "--preview", "--key", key)
    quote = json.loads(_run("query", sql, "-d", "bank", "-e", "0.5", "--preview", "--json", "--key", key))
    body = {"dataset": "bank", "sql": sql, "epsilon": 0.5, "delta": 0.0}
    assert quote == api.client.post("/v1/queries/preview", json=body, headers={"Authorization": f"Bearer {key}"}).json
    n = _row(out, "n")
    assert n[1] == quote["accuracy"]["n"]["mechanism"] and n[3] == f"±{quote['accuracy']['n']['ci95']:.4g}", n
    assert "would cost ε=0.5, δ=0" in out and "≈ 10 more queries like this one" in out  # 5 left / 0.5
    assert api.client.get("/v1/admin/ledger", headers=api.admin).json["entries"] == []  # free


def test_set_budget_warns_when_the_dataset_has_less_left(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from mechanisms.cost import Cost
    from tests.api.conftest import ADMIN_KEY

    api, _ = _served(tmp_path, monkeypatch)
    ledger = api.app.extensions["dpgate"]["ledger"]
    ledger.charge(analyst="ann", dataset="bank", cost=Cost(5, 0), kind="query")  # the dataset's 10: 5 left
    created = _run("admin", "create-analyst", "bob", "--key", ADMIN_KEY)
    bob_key = re.search(r"key of bob \(shown once; only its hash is kept\): (dpg_\S+)", _one_line(created))
    assert bob_key and ledger.authenticate(bob_key.group(1)).name == "bob", created  # type: ignore[union-attr]
    out = _run("admin", "set-budget", "bob", "bank", "--epsilon", "6", "--key", ADMIN_KEY)
    assert "warning (exceeds_dataset_remaining): the allocation leaves ε=6 to spend but dataset 'bank' has ε=5 left" in _one_line(out)
    assert _row(out, "the dataset has left (all analysts)")[1] == "5" and _row(out, "the analyst can still spend")[1] == "6"
    as_json = json.loads(_run("admin", "set-budget", "bob", "bank", "--epsilon", "6", "--delta", "1e-4", "--json", "--key", ADMIN_KEY))
    assert [(w["parameter"], w["allocation_remaining"], w["dataset_remaining"]) for w in as_json["warnings"]] == [
        ("epsilon", 6.0, 5.0), ("delta", 1e-4, 1e-5)]
    assert as_json["remaining"] == {"analyst": {"epsilon": 6.0, "delta": 1e-4}, "dataset": {"epsilon": 5.0, "delta": 1e-5}}
    fits = _run("admin", "set-budget", "bob", "bank", "--epsilon", "5", "--key", ADMIN_KEY)
    assert "warning" not in fits
    # ann has spent all of her 5: raising her allocation to 10 leaves her 5 to spend, what the dataset has
    assert json.loads(_run("admin", "set-budget", "ann", "bank", "--epsilon", "10", "--json", "--key", ADMIN_KEY))["warnings"] == []


def test_admin_rotates_keys_disables_analysts_and_reads_the_ledger(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.api.conftest import ADMIN_KEY

    api, key = _served(tmp_path, monkeypatch)
    _run("query", "SELECT SUM(amount) AS total FROM tx", "-d", "bank", "-e", "0.25", "--key", key)
    ledger_out = _run("admin", "ledger", "--key", ADMIN_KEY)
    row = _row(ledger_out, "1")
    assert row[2:7] == ["ann", "bank", "query", "0.25", "0"] and "SUM" in row[7], row
    entries = json.loads(_run("admin", "ledger", "--analyst", "ann", "--json", "--key", ADMIN_KEY))
    assert entries == api.client.get("/v1/admin/ledger?analyst=ann&limit=50", headers=api.admin).json
    rotated = _one_line(_run("admin", "rotate-key", "ann", "--key", ADMIN_KEY))
    new_key = re.search(r"key of ann \(shown once; only its hash is kept\): (dpg_\S+)", rotated)
    assert new_key and new_key.group(1) != key, rotated
    old = CliRunner().invoke(app, ["budget", "--key", key])
    assert old.exit_code == 1 and "401 unauthorized" in old.output
    assert _row(_run("budget", "--key", new_key.group(1)), "bank")[1] == "0.25 / 5"  # same analyst, same spending
    assert _row(_run("admin", "analysts", "--key", ADMIN_KEY), "ann")[3:5] == [new_key.group(1)[:12], "enabled"]
    disabled = _run("admin", "disable-analyst", "ann", "--key", ADMIN_KEY)
    assert "analyst ann disabled" in _one_line(disabled)
    assert [a["disabled"] for a in json.loads(_run("admin", "analysts", "--json", "--key", ADMIN_KEY))["analysts"] if a["name"] == "ann"] == [True]
    refused = CliRunner().invoke(app, ["budget", "--key", new_key.group(1)])
    assert refused.exit_code == 1 and "401 unauthorized" in refused.output
    mine = CliRunner().invoke(app, ["admin", "disable-analyst", "admin", "--key", ADMIN_KEY])
    assert mine.exit_code == 1 and "400 invalid_request" in mine.output and "your own account" in mine.output
    missing = CliRunner().invoke(app, ["admin", "rotate-key", "nobody", "--key", ADMIN_KEY])
    assert missing.exit_code == 1 and "404 not_found" in missing.output


@pytest.mark.filterwarnings(*_TRAINING_WARNINGS)
def test_train_then_jobs_models_and_predict(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    api, key = _served(tmp_path, monkeypatch)
    out = _run("train", "--dataset", "bank", "--table", "cust", "--label", "segment", "--positive", "private",
               "--method", "logreg", "-e", "0.5", "--key", key)  # fmt: skip
    [job] = api.client.get("/v1/training-jobs", headers={"Authorization": f"Bearer {key}"}).json["jobs"]
    assert job["status"] == "succeeded" and job["model_id"], job
    assert _row(out, job["job_id"])[1:5] == ["logreg", "bank.cust", "succeeded", "100%"]
    assert _row(out, "method")[1] == "logreg" and _row(out, "trained on")[1] == "bank.cust"
    assert _row(_run("jobs", "--key", key), job["job_id"])[5] == "0.5, 0"
    assert json.loads(_run("jobs", "--json", "--key", key)) == {"jobs": [job]}
    model = _row(_run("models", "--key", key), job["model_id"])
    assert model[1:4] == ["logreg", "bank.cust", "0.5, 0"], model
    card = json.loads(_run("models", job["model_id"], "--json", "--key", key))
    assert card == api.client.get(f"/v1/models/{job['model_id']}", headers={"Authorization": f"Bearer {key}"}).json
    features = [c["name"] for c in card["features"]["columns"]]
    assert features == ["age"], features
    predicted = json.loads(_run("predict", job["model_id"], "--row", '{"age": 30}', "--row", '{"age": 90}', "--json", "--key", key))["predictions"]
    assert [p["label"] in ("private", "retail") and 0 <= p["probability"] <= 1 for p in predicted] == [True, True]
    table = _run("predict", job["model_id"], "--row", '{"age": 30}', "--key", key)
    assert _row(table, "0")[1:3] == ["30", predicted[0]["label"]] and _row(table, "0")[3] == f"{predicted[0]['probability']:.3f}"
    csv = tmp_path / "rows.csv"
    csv.write_text("cid,age\n1,30\n2,90\n3,\n")
    from_csv = CliRunner().invoke(app, ["predict", job["model_id"], "--csv", str(csv), "--key", key])
    assert from_csv.exit_code == 1 and "age" in from_csv.output, from_csv.output  # an empty age: the gateway names it
    csv.write_text("cid,age\n1,30\n2,90\n")
    from_csv_out = _run("predict", job["model_id"], "--csv", str(csv), "--key", key)
    assert "left out: cid" in from_csv_out and _row(from_csv_out, "1")[2] == predicted[1]["label"]
    both = CliRunner().invoke(app, ["predict", job["model_id"], "--key", key])
    assert both.exit_code == 2


def test_the_readmes_python_example_runs(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """The README's Python client example, as written, against the demo's lending dataset."""
    from gateway.client import ApiError, Client
    from gateway.demo_data import demo_datasets
    from tests.api.conftest import Api, make_app
    from tests.conftest import make_gateway

    gateway = make_gateway()
    for raw in demo_datasets(tmp_path, transactions_rows=1_000):
        gateway.register(raw)
    api = Api(make_app(tmp_path, gateway=gateway))
    key = api.analyst("reader", epsilon=5.0, dataset="lending")["Authorization"].split()[1]

    def request(self, method, path, body=None, params=None):  # type: ignore[no-untyped-def]
        assert self.url == "http://127.0.0.1:8000"
        r = api.client.open(path, method=method, json=body, query_string=params, headers={"Authorization": f"Bearer {self.key}"})
        if r.status_code >= 400:
            raise ApiError(r.status_code, r.json)
        return r.json

    monkeypatch.setattr(Client, "request", request)
    [code] = re.findall(r"```python\n(.*?)```", (Path(__file__).resolve().parent.parent / "README.md").read_text(), re.S)
    exec(code.replace("<the analyst key the demo printed>", key), {})  # noqa: S102 - our own README
    lines = capsys.readouterr().out.splitlines()
    grades = [line.split()[0] for line in lines[:7]]
    assert sorted(grades) == list("ABCDEFG"), lines  # every public grade, each with its interval
    number = r"-?[0-9.e+-]+"
    assert all(re.fullmatch(rf"[A-G] {number} \[{number}, {number}\]", line) for line in lines[:7]), lines
    assert lines[7].startswith("{'epsilon': 0.5, 'delta': 0.0}") and "'analyst': {'epsilon': 4.5" in lines[7], lines[7]
    assert lines[8].startswith("400 unsupported_sql"), lines[8]


@pytest.mark.filterwarnings(*_TRAINING_WARNINGS)
def test_audit_prints_each_attack_beside_the_dp_ceiling(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gateway.cli import console
    from gateway.cli_tables import audit_table
    from tests.api.conftest import ADMIN_KEY

    api, key = _served(tmp_path, monkeypatch)
    job = {"dataset": "bank", "table": "cust", "label": "segment", "positive": "private", "method": "logreg", "epsilon": 0.5}
    started = api.client.post("/v1/training-jobs", json=job, headers={"Authorization": f"Bearer {key}"}).json
    model_id = api.app.extensions["dpgate"]["training"].wait(started["job_id"], timeout=120)["model_id"]
    refused = CliRunner().invoke(app, ["audit", model_id, "--n-reference", "0", "--key", key])
    assert refused.exit_code == 1 and "403 forbidden" in refused.output  # administrators only
    result = json.loads(_run("audit", model_id, "--n-reference", "0", "--out", str(tmp_path / "audit"), "--json", "--key", ADMIN_KEY))
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == ["roc.png", "violin.png"]
    with console.capture() as captured:
        console.print(audit_table(result))
    out = captured.get()
    ceiling = _row(out, "DP ceiling e^ε·FPR + δ")
    assert ceiling[2:4] == [f"{result['ceiling']['at_fpr']['0.001']:.3g}", f"{result['ceiling']['at_fpr']['0.01']:.3g}"], ceiling
    for name, attack in result["attacks"].items():
        row = _row(out, name)
        assert row[1] == f"{attack['attack_auc']:.3g}" and row[3] == f"{attack['tpr_at_fpr']['0.01']:.3g}", row
    assert ("an attack exceeds" in out) == result["ceiling"]["any_exceeds"]


def test_set_budget_renews_on_a_schedule_and_budget_shows_the_window(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.api.conftest import ADMIN_KEY

    api, key = _served(tmp_path, monkeypatch)
    out = _run("admin", "set-budget", "ann", "bank", "--epsilon", "4", "--renew", "week", "--window-epsilon", "1", "--key", ADMIN_KEY)
    assert _row(out, "cap over all windows")[1] == "4" and _row(out, "each week (UTC calendar)")[1] == "1"
    _run("query", "SELECT COUNT(*) AS n FROM tx", "-d", "bank", "-e", "0.25", "--key", key)
    shown = _one_line(_run("budget", "--key", key))
    assert "bank, yours renews every week: this window" in shown
    assert "has spent ε=0.25 of 1 (left 0.75); all windows together are capped at ε=4" in shown
    lone = CliRunner().invoke(app, ["admin", "set-budget", "ann", "bank", "--epsilon", "4", "--renew", "week", "--key", ADMIN_KEY])
    assert lone.exit_code != 0 and "--renew and --window-epsilon go together" in lone.output
    assert api.app.extensions["dpgate"]["ledger"].verify() == []


def test_synth_makes_a_public_table_and_writes_its_rows(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`dpgate synth`: charged, followed, the public table named, the rows written as CSV and as Parquet."""
    import pandas as pd

    api, key = _served(tmp_path, monkeypatch)
    out = tmp_path / "copy.parquet"
    text = _run("synth", "--dataset", "bank", "--table", "cust", "-e", "0.5", "--delta", "1e-7", "--rows", "300",
                "--columns", "age,segment", "--out", str(out), "--key", key)  # fmt: skip
    [job] = api.client.get("/v1/synthetic-jobs", headers={"Authorization": f"Bearer {key}"}).json["jobs"]
    assert job["status"] == "succeeded" and job["cost"] == {"epsilon": 0.5, "delta": 1e-7}, job
    assert job["table"] in text and "300 synthetic rows" in text
    rows = pd.read_parquet(out)
    assert list(rows.columns) == ["age", "segment"] and len(rows) == 300
    assert rows["age"].between(18, 100).all() and set(rows["segment"]) <= {"retail", "private"}
    as_json = json.loads(_run("synth", "--dataset", "bank", "--table", "cust", "-e", "0.5", "--delta", "1e-7", "--rows", "20",
                              "--out", str(tmp_path / "c.csv"), "--json", "--key", key))  # fmt: skip
    assert as_json["status"] == "succeeded" and as_json["rows"] == 20
    assert len(pd.read_csv(tmp_path / "c.csv")) == 20
    # a refusal is the API's problem, and costs nothing
    refused = CliRunner().invoke(app, ["synth", "--dataset", "bank", "--table", "cust", "--columns", "cid", "--delta", "1e-7", "--key", key])
    assert refused.exit_code != 0 and "privacy unit" in refused.output
    bad = CliRunner().invoke(app, ["synth", "--dataset", "bank", "--table", "cust", "--out", "x.xlsx", "--key", key])
    assert bad.exit_code == 2 and ".csv or .parquet" in bad.output
    [b] = api.client.get("/v1/budget", headers={"Authorization": f"Bearer {key}"}).json["budgets"]
    assert b["epsilon_spent"] == 1.0
