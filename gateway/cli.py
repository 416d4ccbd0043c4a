"""The `dpgate` command line: the server, the demo, and thin clients of the HTTP API."""
from __future__ import annotations

import json
import runpy
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="dpgate: differentially private SQL over financial data.", no_args_is_help=True)
admin_app = typer.Typer(help="Administer analysts, datasets, budgets (a client of the API).", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
console = Console()

DEMO_QUERIES: list[tuple[str, str, float, float]] = [
    ("lending", "SELECT grade, COUNT(*) AS loans, AVG(interest_rate) AS avg_rate FROM loans GROUP BY grade ORDER BY grade", 1.0, 0.0),
    ("lending", "SELECT MEDIAN(annual_income) AS median_income FROM loans WHERE homeownership = 'RENT'", 0.5, 0.0),
    ("cards", "SELECT student, COUNT(*) AS customers, AVG(balance) AS avg_balance FROM card_customers GROUP BY student", 1.0, 0.0),
    ("cards", "SELECT merchant_category, COUNT(*) AS n, SUM(amount) AS spend FROM transactions GROUP BY merchant_category ORDER BY n DESC", 1.0, 0.0),
    ("cards", "SELECT merchant_category FROM transactions WHERE is_fraud GROUP BY merchant_category ORDER BY COUNT(*) DESC LIMIT 3", 0.5, 0.0),
    ("cards", "SELECT c.student, AVG(t.amount) AS avg_amount FROM transactions t JOIN card_customers c ON t.customer_id = c.customer_id GROUP BY c.student", 1.0, 0.0),
]
# what `make demo` prints for the reader to paste: (dataset, sql, epsilon) of its curl
DEMO_CURL_QUERY = ("cards", "SELECT merchant_category, COUNT(*) AS n FROM transactions GROUP BY merchant_category", 0.5)
URL = Annotated[str, typer.Option("--url", envvar="DPGATE_URL", help="the gateway's address")]
KEY = Annotated[Optional[str], typer.Option("--key", envvar="DPGATE_KEY", help="your API key")]
JSON_OUT = Annotated[bool, typer.Option("--json", help="print the API's JSON answer as it is, for scripts")]


def _print_json(data: Any) -> None:
    """The API's answer, unchanged, on stdout (no markup, no wrapping)."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _settings(config: Optional[Path], **overrides: object):  # type: ignore[no-untyped-def]
    from gateway.settings import load_settings

    return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return "NULL" if v is None else str(v)


def print_answer(dataset: str, sql: str, answer: dict[str, Any]) -> None:
    table = Table(title=f"[bold]{dataset}[/]: {sql}", title_justify="left")
    for col in answer["columns"]:
        acc = answer["accuracy"][col]
        ci = acc["ci95"]
        ci_text = "exact" if ci == 0 else ("±?" if ci is None else f"±{_fmt(ci)}")
        table.add_column(f"{col}\n[dim]{acc['mechanism']} {ci_text}[/]", justify="right")
    intervals = answer.get("intervals") or {}
    for i, row in enumerate(answer["rows"][:25]):
        table.add_row(*(_with_interval(v, _nth(intervals.get(col), i)) for col, v in zip(answer["columns"], row)))
    console.print(table)
    _print_extras(answer)
    cost, rem = answer["cost"], answer.get("remaining", {}).get("analyst")
    left = f", remaining ε={rem['epsilon']:g}" if rem else ""
    console.print(f"[dim]cost: ε={cost['epsilon']:g}, δ={cost['delta']:g}{left}{' (cached)' if answer.get('cached') else ''}[/]\n")


def _nth(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None


def _with_interval(value: object, interval: Any) -> str:
    """A released value with its own interval beside it: `263 [223, 303]`."""
    if not interval or value is None or interval[0] == interval[1] == value:
        return _fmt(value)
    from rich.markup import escape

    return f"{_fmt(value)} [dim]{escape(f'[{_fmt(interval[0])}, {_fmt(interval[1])}]')}[/]"


def _print_extras(answer: dict[str, Any]) -> None:
    """The intervals' level, a target's solved ε, the answer's notes and any diagnostics."""
    if answer.get("intervals") and answer.get("level") is not None:
        console.print(f"[dim]intervals: \\[low, high] at {answer['level']:.4g} coverage[/]")
    target = answer.get("target")
    if target:
        asked = f"±{target['ci95']:g}" if target.get("ci95") is not None else f"relative {target.get('relative'):g}"
        rows = f", for cells of {target['rows']} rows" if target.get("rows") else ""
        console.print(f"[dim]target {target['column']} {asked}{rows}: ε={answer.get('epsilon'):g} gives ±{target['expected_ci95']:.4g}[/]")
    for note in answer.get("notes") or []:
        console.print(f"[yellow]note[/]: {note}")
    if answer.get("diagnostics") is not None:
        console.print_json(data={"diagnostics": answer["diagnostics"]})


def _build_app(settings):  # type: ignore[no-untyped-def]
    from gateway.app import create_app

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as p:
        p.add_task("loading and bounding the datasets (the first run generates the demo data)…")
        return create_app(settings)


def _serve(application, settings) -> None:  # type: ignore[no-untyped-def]
    import waitress

    console.print(f"[bold green]dpgate[/] serving on http://{settings.host}:{settings.port}  (docs: /docs, spec: /openapi.json)")
    waitress.serve(application, host=settings.host, port=settings.port, threads=settings.threads, ident="dpgate", _quiet=True)


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option()] = None,
    port: Annotated[Optional[int], typer.Option()] = None,
    threads: Annotated[Optional[int], typer.Option(help="request threads per process, sharing its engines and ledger pool")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, max=64, help="pre-forked processes (gunicorn); more than 1 needs a PostgreSQL ledger_url")] = None,
    demo: Annotated[Optional[bool], typer.Option("--demo/--no-demo", help="also register the demo datasets")] = None,
    config: Annotated[Optional[Path], typer.Option(help="config.toml to use")] = None,
) -> None:
    """Run the gateway: one process with several threads (waitress), or with --workers N, N pre-forked
    processes (gunicorn) sharing one PostgreSQL ledger and the data directory."""
    settings = _settings(config, host=host, port=port, threads=threads, workers=workers)
    if demo is not None:
        settings.demo.enabled = demo
    if settings.workers > 1:
        from gateway.serve import ReplicasNeedPostgres, check_replicas, serve_workers

        try:
            check_replicas(settings, settings.workers)
        except ReplicasNeedPostgres as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        console.print(f"[bold green]dpgate[/] serving on http://{settings.host}:{settings.port} with {settings.workers} "
                      "worker processes  (docs: /docs, spec: /openapi.json)")  # fmt: skip
        serve_workers(settings, settings.workers)
        return
    from gateway.replicas import register_lock

    with register_lock(settings.data_dir):  # replicas on one data directory start one at a time
        application = _build_app(settings)
    _serve(application, settings)


@app.command()
def worker(
    processes: Annotated[int, typer.Option(min=1, max=256, help="worker processes, one job at a time each")] = 1,
    burst: Annotated[bool, typer.Option(help="exit once the queue is empty")] = False,
    heartbeat: Annotated[float, typer.Option(min=0.05, max=30.0, help="seconds between a running job's heartbeats (and cancel checks)")] = 2.0,
    config: Annotated[Optional[Path], typer.Option(help="config.toml to use")] = None,
) -> None:
    """Run the training jobs the gateways put on the queue named by `job_queue` (gateway/worker.py)."""
    import logging

    from gateway.app import configure_logging
    from gateway.worker import run

    settings = _settings(config)
    if not settings.job_queue:
        console.print("[red]job_queue is not set[/] (DPGATE_JOB_QUEUE): without a queue the gateway trains in-process")
        raise typer.Exit(2)
    configure_logging(settings.log_level)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    console.print(f"[bold green]dpgate worker[/] x{processes} on {escape(settings.job_queue.split('@')[-1].split('?')[0])}")
    raise typer.Exit(run(settings, processes=processes, burst=burst, heartbeat_s=heartbeat, config=config))


@app.command()
def demo(
    rows: Annotated[Optional[int], typer.Option(help="rows of the generated transactions table")] = None,
    port: Annotated[Optional[int], typer.Option()] = None,
    examples: Annotated[bool, typer.Option(help="answer example queries before serving")] = True,
    serve_: Annotated[bool, typer.Option("--serve/--no-serve", help="keep serving after the examples")] = True,
    config: Annotated[Optional[Path], typer.Option(help="config.toml to use")] = None,
) -> None:
    """Serve the demo data, with a new analyst (budget on every demo dataset) and a ready-to-paste curl;
    then say what really remains, at both levels (the datasets' totals are shared by every demo run)."""
    from budget.errors import LedgerError
    from gateway.cli_tables import budget_table, warning_lines
    from gateway.demo_data import demo_allocation
    from gateway.errors import DpgateError
    from gateway.service import QueryRequest

    settings = _settings(config, port=port)
    settings.demo.enabled = True
    if rows is not None:
        settings.demo.transactions_rows = rows
    application = _build_app(settings)
    ledger = application.extensions["dpgate"]["ledger"]
    gateway = application.extensions["dpgate"]["gateway"]
    suffix = secrets.token_hex(3)
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    if admin_key is None:
        _, admin_key = ledger.create_analyst(f"demo-admin-{suffix}", role="admin", actor="demo")
    name = f"demo-{suffix}"
    _, key = ledger.create_analyst(name, actor="demo")
    warnings: list[dict[str, Any]] = []
    for dataset in gateway.catalog.names():
        epsilon, delta = demo_allocation(dataset)
        ledger.set_allocation(name, dataset, epsilon=epsilon, delta=delta, actor="demo")
        warnings += ledger.allocation_warnings(name, dataset)
    if examples:
        service = application.extensions["dpgate"]["queries"]
        for dataset, sql, eps, delta in DEMO_QUERIES:
            try:
                print_answer(dataset, sql, service.query(name, QueryRequest(dataset, sql, eps, delta)))
            except (DpgateError, LedgerError) as e:  # a dataset spent by earlier demos: say so, go on
                console.print(f"[red]{escape(e.code)}[/]: {escape(e.message)}", soft_wrap=True)
    console.print(budget_table(ledger.budgets(name)))  # what this analyst can really spend, after the examples
    for line in warning_lines(warnings):
        console.print(line, soft_wrap=True)
    if warnings:
        console.print("[dim]the demo datasets' totals are shared by every demo analyst; a fresh data directory "
                      "(DPGATE_DATA_DIR) starts them anew[/]", soft_wrap=True)  # fmt: skip
    base = f"http://{settings.host}:{settings.port}"
    console.print(f"analyst [bold]{name}[/] key (shown once): [bold]{key}[/]", soft_wrap=True)
    console.print(f"admin key (shown once): {admin_key}\n", soft_wrap=True)
    curl_dataset, curl_sql, curl_epsilon = DEMO_CURL_QUERY
    body = json.dumps({"dataset": curl_dataset, "sql": curl_sql, "epsilon": curl_epsilon})
    console.print("try:", soft_wrap=True)
    console.print(f"curl -s {base}/v1/queries -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{body}'", soft_wrap=True, highlight=False)
    console.print(f"curl -s {base}/v1/budget -H 'Authorization: Bearer {key}'\n", soft_wrap=True, highlight=False)
    if serve_:
        _serve(application, settings)


def _client(url: str, key: Optional[str]):  # type: ignore[no-untyped-def]
    from gateway.client import Client

    if not key:
        console.print("[red]an API key is needed: --key or DPGATE_KEY[/]")
        raise typer.Exit(2)
    return Client(url, key)


def print_problem(error: Any) -> None:
    """A refusal: its status, code and detail, then each field the body names (`epsilon: Input should be
    greater than 0`), as the problem+json carries them. The server's text is printed, never read as markup."""
    from rich.markup import escape

    console.print(f"[red]{error.status} {escape(str(error.code))}[/]: {escape(str(error.problem.get('detail')))}")
    for line in error.errors:
        console.print(f"  {escape(line)}", soft_wrap=True, highlight=False)
    field = error.problem.get("field")
    if field and not error.errors:
        console.print(f"  [dim]field: {escape(str(field))}[/]")


def _call(fn, *args: Any, **kwargs: Any) -> Any:  # type: ignore[no-untyped-def]
    from gateway.client import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as e:
        print_problem(e)
        raise typer.Exit(1) from None
    except OSError as e:
        console.print(f"[red]cannot reach the gateway[/]: {e}")
        raise typer.Exit(1) from None


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="an SQL aggregate query")],
    dataset: Annotated[str, typer.Option("--dataset", "-d")] = "cards",
    epsilon: Annotated[Optional[float], typer.Option("--epsilon", "-e", help="the ε to spend (default 1, unless a target is given)")] = None,
    delta: Annotated[float, typer.Option("--delta")] = 0.0,
    request_id: Annotated[Optional[str], typer.Option("--request-id")] = None,
    preview: Annotated[bool, typer.Option(help="cost and expected intervals only; free, reads no data")] = False,
    target_column: Annotated[Optional[str], typer.Option("--target-column", help="ask by accuracy: the column whose interval to meet")] = None,
    target_ci95: Annotated[Optional[float], typer.Option("--target-ci95", help="the 95% half-width to reach on --target-column")] = None,
    target_relative: Annotated[Optional[float], typer.Option("--target-relative", help="the half-width as a fraction of a public scale (0-1]")] = None,
    rows: Annotated[Optional[int], typer.Option("--rows", help="the rows you assume a cell has (AVG, VARIANCE; relative COUNT, SUM)")] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="the intervals' miss probability (0.05: 95%)")] = None,
    diagnostics: Annotated[bool, typer.Option("--diagnostics", help="also release (charged) counts of what bounding did")] = False,
    as_json: JSON_OUT = False,
    url: URL = "http://127.0.0.1:8000",
    key: KEY = None,
) -> None:
    """Ask the gateway one query: with --epsilon, or by accuracy with --target-column and --target-ci95
    (or --target-relative), which charges the smallest ε that meets it (see it free with --preview)."""
    from gateway.cli_tables import preview_table

    target = _target_option(epsilon, target_column, target_ci95, target_relative, rows)
    if target is None and epsilon is None:
        epsilon = 1.0
    client = _client(url, key)
    asked = {"epsilon": epsilon, "delta": delta, "target": target, "alpha": alpha, "diagnostics": diagnostics}
    if preview:
        quote = _call(client.preview, dataset, sql, **asked)
        _print_json(quote) if as_json else console.print(preview_table(dataset, sql, quote))
        return
    answer = _call(client.query, dataset, sql, request_id=request_id, **asked)
    _print_json(answer) if as_json else print_answer(dataset, sql, answer)


def _target_option(epsilon: Optional[float], column: Optional[str], ci95: Optional[float], relative: Optional[float], rows: Optional[int]) -> Optional[dict[str, Any]]:
    """The query's target from the options, or exit 2 where they do not make one."""
    if column is None:
        if ci95 is not None or relative is not None or rows is not None:
            console.print("[red]--target-ci95, --target-relative and --rows need --target-column[/]")
            raise typer.Exit(2)
        return None
    if epsilon is not None:
        console.print("[red]give --epsilon or a target (--target-column), not both[/]")
        raise typer.Exit(2)
    if (ci95 is None) == (relative is None):
        console.print("[red]--target-column needs exactly one of --target-ci95 and --target-relative[/]")
        raise typer.Exit(2)
    return {"column": column, "ci95": ci95, "relative": relative, "rows": rows}


@app.command()
def budget(as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None) -> None:
    """Your spent and remaining budget per dataset, at both levels, and what you can really spend."""
    from gateway.cli_tables import budget_table

    budgets = _call(_client(url, key).budget)
    _print_json({"budgets": budgets}) if as_json else console.print(budget_table(budgets))


@app.command()
def datasets(
    name: Annotated[Optional[str], typer.Argument(help="a dataset: show its tables' public schema")] = None,
    as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None,
) -> None:
    """The datasets you may use: privacy unit, tables, totals and what you can spend; with a name, its schema."""
    from gateway.cli_tables import dataset_schema, datasets_table

    client = _client(url, key)
    found = _call(client.datasets)
    if name is not None:
        chosen = [d for d in found if d["name"].lower() == name.lower()]
        if not chosen:
            console.print(f"[red]no dataset {escape(name)!r} among yours[/]: {escape(', '.join(d['name'] for d in found)) or 'none'}")
            raise typer.Exit(1)
        _print_json(chosen[0]) if as_json else console.print(dataset_schema(chosen[0]))
        return
    if as_json:
        _print_json({"datasets": found})
        return
    console.print(datasets_table(found, _call(client.budget)))


@app.command()
def jobs(
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 50,
    as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None,
) -> None:
    """Your training jobs, newest first (an administrator's key: every analyst's)."""
    from gateway.cli_tables import jobs_table

    found = _call(_client(url, key).jobs, limit=limit)
    _print_json({"jobs": found}) if as_json else console.print(jobs_table(found))


@app.command()
def models(
    model_id: Annotated[Optional[str], typer.Argument(help="a model: show its card")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 50,
    as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None,
) -> None:
    """Your models with what they cost and their DP metrics; with an id, its model card."""
    from gateway.cli_tables import card_table, models_table

    client = _client(url, key)
    if model_id is not None:
        card = _call(client.model, model_id)
        _print_json(card) if as_json else console.print(card_table(card))
        return
    found = _call(client.models, limit=limit)
    _print_json({"models": found}) if as_json else console.print(models_table(found))


def _csv_rows(path: Path, card: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """A CSV's rows as the model's features want them (numbers, booleans, empty cells as missing), and
    the CSV's columns that are not features (left out)."""
    import csv

    features = {c["name"]: c for c in (card.get("features") or {}).get("columns", [])}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        ignored = [c for c in reader.fieldnames or [] if c not in features]
        rows = [{k: _cell(features[k], v) for k, v in row.items() if k in features} for row in reader]
    return rows, ignored


def _cell(feature: dict[str, Any], text: Optional[str]) -> Any:
    if text is None or text.strip() == "":
        return None
    kind = feature.get("type")
    if kind in ("int", "float"):
        try:
            return float(text)
        except ValueError:
            return text  # the gateway names the row and the feature
    if kind == "bool":
        lowered = text.strip().lower()
        return True if lowered in ("true", "1", "yes") else False if lowered in ("false", "0", "no") else text
    return text


@app.command()
def predict(
    model_id: str,
    row: Annotated[Optional[list[str]], typer.Option("--row", help='a JSON object of feature values, e.g. \'{"balance": 1500, "student": "No"}\'; repeatable')] = None,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", help="a CSV file of rows (a header of feature names)")] = None,
    as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None,
) -> None:
    """Predictions of one of your models for rows given as JSON (--row) or in a CSV file (--csv)."""
    from gateway.cli_tables import predictions_table

    if bool(row) == (csv_path is not None):
        console.print("[red]give the rows with --row (one or more) or with --csv, not both[/]")
        raise typer.Exit(2)
    client = _client(url, key)
    if row:
        try:
            rows = [json.loads(r) for r in row]
        except ValueError as e:
            console.print(f"[red]--row is not JSON[/]: {escape(str(e))}")
            raise typer.Exit(2) from None
    else:
        assert csv_path is not None
        rows, ignored = _csv_rows(csv_path, _call(client.model, model_id))
        if ignored and not as_json:
            console.print(f"[dim]not features of the model, left out: {escape(', '.join(ignored))}[/]")
    predictions = _call(client.predict, model_id, rows)
    _print_json({"predictions": predictions}) if as_json else console.print(predictions_table(rows, predictions))


@app.command()
def train(
    task: Annotated[Optional[str], typer.Option(help="a named task: credit_default, fraud")] = None,
    dataset: Annotated[Optional[str], typer.Option()] = None,
    table: Annotated[Optional[str], typer.Option()] = None,
    label: Annotated[Optional[str], typer.Option()] = None,
    positive: Annotated[Optional[str], typer.Option()] = None,
    method: Annotated[str, typer.Option(help="dpsgd, pate, logreg, naive_bayes, random_forest, nonprivate (admins)")] = "dpsgd",
    public_table: Annotated[Optional[str], typer.Option(help="the dataset's public table: PATE's student rows, DP-SGD's pre-training rows (image tables; a task names its own)")] = None,
    epsilon: Annotated[float, typer.Option("--epsilon", "-e")] = 1.0,
    delta: Annotated[float, typer.Option("--delta")] = 1e-6,
    params: Annotated[Optional[str], typer.Option(help="JSON object of hyper-parameters")] = None,
    follow: Annotated[bool, typer.Option(help="follow the job with a progress bar")] = True,
    as_json: JSON_OUT = False,
    url: URL = "http://127.0.0.1:8000",
    key: KEY = None,
) -> None:
    """Start a training job (charged before it runs) and follow it; then its status and its model card.
    With --json: the job's final status as the API gives it (or, with --no-follow, the accepted job)."""
    from gateway.cli_tables import card_table, cost_text, jobs_table

    client = _client(url, key)
    job: dict[str, Any] = {"method": method, "epsilon": epsilon, "delta": delta}
    for name, value in (("task", task), ("dataset", dataset), ("table", table), ("label", label), ("positive", positive),
                        ("public_table", public_table)):
        if value is not None:
            job[name] = value
    if params:
        job["params"] = json.loads(params)
    started = _call(client.train, job)
    if as_json:
        _print_json(_wait(client, started["job_id"], lambda s: None) if follow else started)
        return
    console.print(f"job {started['job_id']} accepted; charged ε, δ: {cost_text(started.get('cost'))}")
    if not follow:
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), *Progress.get_default_columns()[1:], console=console) as bar:
        task_id = bar.add_task("training", total=1.0)
        status = _wait(client, started["job_id"],
                       lambda s: bar.update(task_id, completed=s.get("progress") or 0.0, description=s["status"]))  # fmt: skip
    console.print(jobs_table([status]))
    if status.get("model_id"):
        console.print(card_table(_call(client.model, status["model_id"])))


@app.command()
def synth(
    dataset: Annotated[str, typer.Option(help="the dataset")],
    table: Annotated[str, typer.Option(help="the private table to copy")],
    epsilon: Annotated[float, typer.Option("--epsilon", "-e")] = 1.0,
    delta: Annotated[Optional[float], typer.Option("--delta", help="default 1e-6")] = None,
    columns: Annotated[Optional[str], typer.Option(help="comma-separated; default: every column with a public domain")] = None,
    rows: Annotated[Optional[int], typer.Option(help="rows to generate; default: a noisy count of the table")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write the rows here once done (.csv or .parquet)")] = None,
    follow: Annotated[bool, typer.Option(help="follow the job with a progress bar")] = True,
    as_json: JSON_OUT = False,
    url: URL = "http://127.0.0.1:8000",
    key: KEY = None,
) -> None:
    """A private synthetic copy of a table (charged (ε, δ) before it runs). It becomes a public table of the
    dataset, free to query; --out also downloads its rows. With --json: the job's final status."""
    from gateway.cli_tables import cost_text

    if out is not None and out.suffix.lower() not in (".csv", ".parquet"):
        console.print("[red]--out must end in .csv or .parquet[/red]")
        raise typer.Exit(2)
    client = _client(url, key)
    job: dict[str, Any] = {"dataset": dataset, "table": table, "epsilon": epsilon}
    if delta is not None:
        job["delta"] = delta
    if columns:
        job["columns"] = [c.strip() for c in columns.split(",") if c.strip()]
    if rows is not None:
        job["rows"] = rows
    started = _call(client.synthesize, job)
    if not follow:
        _print_json(started) if as_json else console.print(
            f"synthetic job {started['job_id']} accepted; charged ε, δ: {cost_text(started.get('cost'))}; "
            f"its table will be {started['table']}")
        return
    if as_json:
        status = _wait(client, started["job_id"], lambda s: None, get=client.synthetic_job)
    else:
        console.print(f"synthetic job {started['job_id']} accepted; charged ε, δ: {cost_text(started.get('cost'))}")
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), *Progress.get_default_columns()[1:], console=console) as bar:
            task_id = bar.add_task("synthesising", total=1.0)
            status = _wait(client, started["job_id"],
                           lambda s: bar.update(task_id, completed=s.get("progress") or 0.0, description=s["status"]),
                           get=client.synthetic_job)  # fmt: skip
    if status["status"] == "succeeded" and out is not None:
        out.write_bytes(_call(client.synthetic_rows, started["job_id"], fmt=out.suffix.lower().lstrip(".")))
    if as_json:
        _print_json(status)
    elif status["status"] == "succeeded":
        console.print(f"{status['rows']} synthetic rows in the public table [bold]{status['table']}[/bold] of {dataset} "
                      f"(query it at no cost: SELECT ... FROM {status['table']})" + (f"; written to {out}" if out else ""))
    else:
        console.print(f"[red]synthetic job {status['status']}[/red]: {status.get('error', '')}")
    if status["status"] != "succeeded":
        raise typer.Exit(1)


def _wait(client: Any, job_id: str, seen: Any, *, get: Any = None) -> dict[str, Any]:
    """Poll a job until it ends; `seen` gets each status (`get`: how to read it; a training job's by default)."""
    import time

    while True:
        status = _call(get or client.job, job_id)
        seen(status)
        if status["status"] in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(0.5)


@app.command()
def audit(
    model_id: str,
    n_reference: Annotated[int, typer.Option(help="reference (shadow) models of the calibrated attack")] = 4,
    seed: Annotated[int, typer.Option()] = 0,
    out: Annotated[Optional[Path], typer.Option(help="folder to save the ROC and violin plots in")] = None,
    as_json: JSON_OUT = False,
    url: URL = "http://127.0.0.1:8000",
    key: KEY = None,
) -> None:
    """Membership-inference audit of a model (administrators): attack AUC, TPR at FPR 0.1% / 1%, the DP ceiling."""
    from gateway.cli_tables import audit_table

    client = _client(url, key)
    result = _call(client.audit, model_id, n_reference=n_reference, seed=seed)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, path in (result.get("plot_urls") or {}).items():
            (out / f"{name}.png").write_bytes(_call(client.raw, path))
    if as_json:
        _print_json(result)
        return
    console.print(audit_table(result))
    if out is not None:
        console.print(f"[dim]plots: {escape(', '.join(str(out / f'{n}.png') for n in result.get('plot_urls') or {}))}[/]", soft_wrap=True)


@admin_app.command("create-analyst")
def admin_create_analyst(
    name: str, role: Annotated[str, typer.Option()] = "analyst", organisation: Annotated[Optional[str], typer.Option()] = None,
    as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None,
) -> None:
    """Create an analyst; prints its key once."""
    from gateway.cli_tables import analyst_table

    created = _call(_client(url, key).create_analyst, name, role=role, organisation=organisation)
    if as_json:
        _print_json(created)
        return
    console.print(analyst_table(created))
    _print_key(created["name"], created["key"])


def _print_key(name: str, key: str) -> None:
    console.print(f"key of [bold]{escape(name)}[/] (shown once; only its hash is kept): [bold]{escape(key)}[/]", soft_wrap=True, highlight=False)


@admin_app.command("analysts")
def admin_analysts(as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None) -> None:
    """Every analyst and administrator: role, organisation, key id, enabled or disabled."""
    from gateway.cli_tables import analysts_table

    found = _call(_client(url, key).analysts)
    _print_json({"analysts": found}) if as_json else console.print(analysts_table(found))


@admin_app.command("disable-analyst")
def admin_disable_analyst(name: str, as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None) -> None:
    """Disable an analyst: its key stops working; its budgets, spending and ledger entries stay."""
    disabled = _call(_client(url, key).disable_analyst, name)
    if as_json:
        _print_json(disabled)
        return
    console.print(f"analyst [bold]{escape(disabled['name'])}[/] disabled: key {escape(disabled['key_id'])} no longer works "
                  "(create-analyst with the same name gives it a new key and its budgets back)", soft_wrap=True)  # fmt: skip


@admin_app.command("rotate-key")
def admin_rotate_key(name: str, as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None) -> None:
    """Give an analyst a new key, shown once; the old key stops working."""
    rotated = _call(_client(url, key).rotate_key, name)
    if as_json:
        _print_json(rotated)
        return
    console.print(f"the old key of [bold]{escape(rotated['name'])}[/] no longer works; new key id {escape(rotated['key_id'])}", soft_wrap=True)
    _print_key(rotated["name"], rotated["key"])


@admin_app.command("set-budget")
def admin_set_budget(
    analyst: str, dataset: str, epsilon: Annotated[float, typer.Option(help="the total; with --renew, the cap over all windows")],
    delta: Annotated[float, typer.Option()] = 0.0,
    renew: Annotated[Optional[str], typer.Option(help="renew every UTC day, week or month")] = None,
    window_epsilon: Annotated[Optional[float], typer.Option(help="with --renew: what each window may spend")] = None,
    window_delta: Annotated[float, typer.Option(help="with --renew: the δ each window may spend")] = 0.0,
    as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None,
) -> None:
    """Set an analyst's allocation on a dataset; warns where the dataset has less left than it promises."""
    from gateway.cli_tables import allocation_table

    if (renew is None) != (window_epsilon is None):
        raise typer.BadParameter("--renew and --window-epsilon go together")
    schedule = None if renew is None else {"every": renew, "epsilon": window_epsilon, "delta": window_delta}
    allocation = _call(_client(url, key).set_budget, analyst, dataset, epsilon=epsilon, delta=delta, renew=schedule)
    _print_json(allocation) if as_json else console.print(allocation_table(allocation))


@admin_app.command("register-dataset")
def admin_register_dataset(path: Path, as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None) -> None:
    """Register a dataset from a JSON file in the shape of DESIGN.md §4."""
    registered = _call(_client(url, key).register_dataset, json.loads(path.read_text()))
    if as_json:
        _print_json(registered)
        return
    console.print(f"dataset [bold]{escape(registered['name'])}[/] registered, version {escape(registered['version'])}: "
                  f"tables {escape(', '.join(registered['tables']))}", soft_wrap=True)  # fmt: skip


@admin_app.command("ledger")
def admin_ledger(
    dataset: Annotated[Optional[str], typer.Option()] = None, analyst: Annotated[Optional[str], typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50, as_json: JSON_OUT = False, url: URL = "http://127.0.0.1:8000", key: KEY = None,
) -> None:
    """The ledger's entries, newest first."""
    from gateway.cli_tables import ledger_table

    entries = _call(_client(url, key).ledger, dataset=dataset, analyst=analyst, limit=limit)
    _print_json({"entries": entries}) if as_json else console.print(ledger_table(entries))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context, name: Annotated[str, typer.Argument(help="which benchmark: queries, service, training, study, privacy_audit")] = "queries") -> None:
    """Run a benchmark from bench/ (extra options are passed on)."""
    script = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    if not script.exists():
        console.print(f"[red]no benchmark named {name!r}[/]")
        raise typer.Exit(2)
    sys.argv = [str(script), *ctx.args]
    runpy.run_path(str(script), run_name="__main__")



@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def experiment(
    ctx: typer.Context,
    tasks: Annotated[Optional[list[str]], typer.Argument(help="vision, credit (default: both)")] = None,
) -> None:
    """Reproduce the financial-vision privacy study: non-private, DP-SGD and PATE models at ε = 1-12.6, each
    audited by membership inference; writes docs/study.md and the plots (bench/study.py, extra options passed on)."""
    script = Path(__file__).resolve().parent.parent / "bench" / "study.py"
    sys.argv = [str(script), *(["--tasks", *tasks] if tasks else []), *ctx.args]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    app()
