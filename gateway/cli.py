"""The `dpgate` command line."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateway.errors import DpgateError

app = typer.Typer(help="dpgate: differentially private SQL over financial data.", no_args_is_help=True)
console = Console()

DEMO_QUERIES: list[tuple[str, str, float, float]] = [
    ("lending", "SELECT grade, COUNT(*) AS loans, AVG(interest_rate) AS avg_rate FROM loans GROUP BY grade ORDER BY grade", 1.0, 0.0),
    ("lending", "SELECT MEDIAN(annual_income) AS median_income FROM loans WHERE homeownership = 'RENT'", 0.5, 0.0),
    ("cards", "SELECT student, COUNT(*) AS customers, AVG(balance) AS avg_balance FROM card_customers GROUP BY student", 1.0, 0.0),
    ("cards", "SELECT merchant_category, COUNT(*) AS n, SUM(amount) AS spend FROM transactions GROUP BY merchant_category ORDER BY n DESC", 1.0, 0.0),
    ("cards", "SELECT merchant_category FROM transactions WHERE is_fraud GROUP BY merchant_category ORDER BY COUNT(*) DESC LIMIT 3", 0.5, 0.0),
    ("cards", "SELECT EXTRACT(hour FROM ts) AS hour, AVG(CASE WHEN is_fraud THEN 1 ELSE 0 END) AS fraud_rate FROM transactions GROUP BY 1 ORDER BY 1 LIMIT 6", 1.0, 0.0),
    ("cards", "SELECT c.student, AVG(t.amount) AS avg_amount FROM transactions t JOIN card_customers c ON t.customer_id = c.customer_id GROUP BY c.student", 1.0, 0.0),
]


def _settings(config: Optional[Path], **overrides: object):  # type: ignore[no-untyped-def]
    from gateway.settings import load_settings

    return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})


def _gateway(config: Optional[Path], rows: Optional[int] = None):  # type: ignore[no-untyped-def]
    from gateway.core import Gateway

    settings = _settings(config)
    if rows is not None:
        settings.demo.transactions_rows = rows
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as p:
        p.add_task("loading and bounding the datasets (first run generates the demo data)…")
        return Gateway.from_settings(settings)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return "NULL" if v is None else str(v)


def print_answer(dataset: str, sql: str, answer) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"[bold]{dataset}[/]: {sql}", title_justify="left", show_lines=False)
    for col in answer.columns:
        acc = answer.accuracy[col]
        ci = "exact" if acc.ci95 == 0 else ("±?" if acc.ci95 is None else f"±{_fmt(acc.ci95)}")
        table.add_column(f"{col}\n[dim]{acc.mechanism} {ci}[/]", justify="right")
    for row in answer.rows[:20]:
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)
    console.print(f"[dim]cost: ε={float(answer.cost.epsilon):g}, δ={float(answer.cost.delta):g}[/]\n")


@app.command()
def demo(
    rows: Annotated[Optional[int], typer.Option(help="rows of the generated transactions table")] = None,
    config: Annotated[Optional[Path], typer.Option(help="config.toml to use")] = None,
) -> None:
    """Load the demo data and answer a handful of example queries with their intervals and cost."""
    gw = _gateway(config, rows)
    console.print(f"[bold green]dpgate[/] demo datasets: {', '.join(gw.catalog.names())}\n")
    for dataset, sql, eps, delta in DEMO_QUERIES:
        print_answer(dataset, sql, gw.query(dataset, sql, epsilon=eps, delta=delta))


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="an SQL aggregate query")],
    dataset: Annotated[str, typer.Option("--dataset", "-d")] = "cards",
    epsilon: Annotated[float, typer.Option("--epsilon", "-e")] = 1.0,
    delta: Annotated[float, typer.Option("--delta")] = 0.0,
    preview: Annotated[bool, typer.Option(help="show cost and expected intervals only; reads no data")] = False,
    config: Annotated[Optional[Path], typer.Option()] = None,
) -> None:
    """Answer one query on a local dataset."""
    gw = _gateway(config)
    try:
        if preview:
            cost, acc = gw.preview(dataset, sql, epsilon=epsilon, delta=delta)
            console.print({"cost": cost.to_json(), "accuracy": {k: v.to_json() for k, v in acc.items()}})
            return
        print_answer(dataset, sql, gw.query(dataset, sql, epsilon=epsilon, delta=delta))
    except DpgateError as e:
        console.print(f"[red]{e.code}[/]: {e.message}")
        raise typer.Exit(2) from None


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context, name: Annotated[str, typer.Argument(help="which benchmark: queries")] = "queries") -> None:
    """Run a benchmark from bench/ (extra options are passed on)."""
    script = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    if not script.exists():
        console.print(f"[red]no benchmark named {name!r}[/]")
        raise typer.Exit(2)
    sys.argv = [str(script), *ctx.args]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    app()
