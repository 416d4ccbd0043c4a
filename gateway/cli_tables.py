"""How the `dpgate` command line shows the API's answers: one function per answer, JSON in, rich out.

Each takes the JSON the API returned (the same that `--json` prints) and returns what to print; none
calls the gateway. The server's text (names, SQL, messages) is escaped, never read as markup.
"""
from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = [
    "allocation_table", "analyst_table", "analysts_table", "audit_table", "budget_table", "card_table", "cost_text", "dataset_schema",
    "datasets_table", "jobs_table", "ledger_table", "models_table", "num", "predictions_table", "preview_table",
    "warning_lines",
]  # fmt: skip


def num(v: Any) -> str:
    """A figure for a person, as markup: ε and δ to 4 significant digits, large numbers grouped, — for None."""
    return escape(plain(v))


def plain(v: Any) -> str:
    """`num` as plain text."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 10_000 else f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    return str(v)


def _of(spent: Any, total: Any) -> str:
    return f"{num(spent)} / {num(total)}"


def _left(row: dict[str, Any], parameter: str) -> float:
    remaining = row.get(f"{parameter}_remaining")
    if remaining is None:
        remaining = max(0.0, float(row[f"{parameter}_total"]) - float(row[f"{parameter}_spent"]))
    return float(remaining)


def budget_table(budgets: list[dict[str, Any]]) -> RenderableType:
    """`GET /v1/budget`: yours and the dataset's, spent of total, and what you can really spend (the
    smaller remainder: every charge is checked against both)."""
    if not budgets:
        return Text("no budget allocations: ask an administrator for one")
    t = Table(title="privacy budget", title_justify="left",
              caption="yours, the dataset's (all analysts together): spent / total; left: what you can still spend, "
                      "the smaller of the two remainders", caption_justify="left")  # fmt: skip
    for header in ("dataset", "ε yours", "ε dataset", "ε left", "δ yours", "δ dataset", "δ left"):
        t.add_column(header, justify="left" if header == "dataset" else "right", overflow="fold")
    for b in budgets:
        ds = b["dataset_level"]
        name = escape(b["dataset"]) + (f" [dim](organisation {escape(b['organisation'])})[/]" if b.get("organisation") else "")
        eps, dlt = min(_left(b, "epsilon"), _left(ds, "epsilon")), min(_left(b, "delta"), _left(ds, "delta"))
        eps_text = f"[bold]{num(eps)}[/]" + (" [yellow](dataset)[/]" if _left(ds, "epsilon") < _left(b, "epsilon") else "")
        t.add_row(name, _of(b["epsilon_spent"], b["epsilon_total"]), _of(ds["epsilon_spent"], ds["epsilon_total"]), eps_text,
                  _of(b["delta_spent"], b["delta_total"]), _of(ds["delta_spent"], ds["delta_total"]), num(dlt))  # fmt: skip
    windows = [window_line(b["dataset"], who, row) for b in budgets
               for who, row in (("yours", b), ("the dataset's", b["dataset_level"])) if row.get("window")]  # fmt: skip
    return Group(t, *windows) if windows else t


def window_line(dataset: str, who: str, row: dict[str, Any]) -> Text:
    """A budget that renews: its window, what the window has spent and left, and the cap over all windows."""
    w = row["window"]
    return Text.from_markup(
        f"[bold]{escape(dataset)}[/], {who} renews every {escape(w['every'])}: this window {escape(w['start'][:10])} to "
        f"{escape(w['end'][:10])} has spent ε={num(w['epsilon_spent'])} of {num(w['epsilon_per_window'])} "
        f"(left {num(w['epsilon_remaining'])}); all windows together are capped at ε={num(row['epsilon_total'])}"
    )


def preview_table(dataset: str, sql: str, preview: dict[str, Any]) -> RenderableType:
    """`POST /v1/queries/preview`: each column's mechanism and expected 95% half-width, then the cost."""
    t = Table(title=f"[bold]{escape(dataset)}[/] (preview, free): {escape(sql)}", title_justify="left")
    for header in ("column", "mechanism", "noise scale", "expected ±95%"):
        t.add_column(header, justify="left" if header in ("column", "mechanism") else "right", overflow="fold")
    for column, acc in preview.get("accuracy", {}).items():
        ci = acc.get("ci95")
        t.add_row(escape(column), escape(str(acc.get("mechanism"))), num(acc.get("scale")),
                  "exact" if ci == 0 else ("±?" if ci is None else f"±{num(ci)}"))  # fmt: skip
    cost, rem = preview["cost"], preview.get("remaining") or {}
    lines: list[RenderableType] = [t, Text.from_markup(f"would cost ε={num(cost['epsilon'])}, δ={num(cost['delta'])}")]
    if rem:
        a, d = rem["analyst"], rem["dataset"]
        lines.append(Text.from_markup(f"[dim]remaining: yours ε={num(a['epsilon'])}, δ={num(a['delta'])}; "
                                      f"the dataset's ε={num(d['epsilon'])}, δ={num(d['delta'])}[/]"))  # fmt: skip
        if cost["epsilon"] > 0 and min(a["epsilon"], d["epsilon"]) >= 0:
            n = int(min(a["epsilon"], d["epsilon"]) // cost["epsilon"])
            lines.append(Text.from_markup(f"[dim]≈ {n} more queries like this one[/]"))
    target = preview.get("target")
    if target:
        lines.append(Text.from_markup(f"[dim]target {escape(target['column'])}: ε={num(preview.get('epsilon'))} "
                                      f"gives ±{num(target['expected_ci95'])}[/]"))  # fmt: skip
    return Group(*lines)


def _bounds(column: dict[str, Any]) -> str:
    if column.get("categories") is not None:
        cats = [str(c) for c in column["categories"]]
        shown = ", ".join(cats[:6]) + (f", … ({len(cats)})" if len(cats) > 6 else "")
        return escape(shown)
    if column.get("lower") is not None or column.get("upper") is not None:
        return escape(f"[{plain(column.get('lower'))}, {plain(column.get('upper'))}]")
    return ""


def datasets_table(datasets: list[dict[str, Any]], budgets: list[dict[str, Any]] | None = None) -> RenderableType:
    """`GET /v1/datasets` (with `GET /v1/budget` beside it): each dataset's unit, tables, total and yours."""
    if not datasets:
        return Text("no datasets: ask an administrator for an allocation")
    mine = {b["dataset"].lower(): b for b in budgets or []}
    t = Table(title="datasets", title_justify="left")
    for header in ("dataset", "privacy unit", "tables (rows per unit)", "total ε, δ", "you can spend ε"):
        t.add_column(header, justify="right" if header.startswith(("total", "you")) else "left", overflow="fold")
    for d in datasets:
        tables = ", ".join(f"{escape(n)}{' [dim]public[/]' if m.get('public') else ''} ({num(m.get('max_rows_per_unit'))})"
                           for n, m in sorted(d["tables"].items()))  # fmt: skip
        unit = "[yellow]row-level[/]" if d.get("row_level") else escape(str(d.get("privacy_unit")))
        b = mine.get(d["name"].lower())
        left = num(min(_left(b, "epsilon"), _left(b["dataset_level"], "epsilon"))) if b else "[dim]no allocation[/]"
        t.add_row(escape(d["name"]), unit, tables, f"{num(d['budget']['epsilon'])}, {num(d['budget']['delta'])}", left)
    return t


def dataset_schema(dataset: dict[str, Any]) -> RenderableType:
    """One dataset's public schema: per table, each column's type, bounds or categories, nullability."""
    parts: list[RenderableType] = []
    for name, table in sorted(dataset["tables"].items()):
        kind = "public, costs nothing to read" if table.get("public") else f"at most {num(table.get('max_rows_per_unit'))} rows per unit"
        t = Table(title=f"[bold]{escape(dataset['name'])}.{escape(name)}[/] ({kind})", title_justify="left")
        for header in ("column", "type", "bounds or categories", "nullable"):
            t.add_column(header, overflow="fold")
        for column, meta in (table.get("columns") or {}).items():
            t.add_row(escape(column), escape(str(meta.get("type"))), _bounds(meta), "yes" if meta.get("nullable") else "")
        parts.append(t)
    return Group(*parts)


def cost_text(cost: dict[str, Any] | None) -> str:
    return "—" if not cost else f"{num(cost['epsilon'])}, {num(cost['delta'])}"


def _metrics(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "—"
    intervals = metrics.get("intervals") or {}

    def shown(k: str, v: Any) -> str:
        iv = intervals.get(k)
        return f"{k}={num(v)}" + (f" [{num(iv[0])}, {num(iv[1])}]" if iv else "")

    items = [shown(k, v) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _NOT_METRICS]  # fmt: skip
    return escape(", ".join(items[:4]))


_NOT_METRICS = ("bins", "held_out_rows", "cells", "interval_level", "scale")  # how the metrics were computed, not what they are
_ID_WIDTH = 32  # job and model ids, unbroken where the terminal allows: they are pasted into other commands
_STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "queued": "dim"}


def jobs_table(jobs: list[dict[str, Any]]) -> RenderableType:
    """`GET /v1/training-jobs`: newest first."""
    if not jobs:
        return Text("no training jobs")
    admin = any("analyst" in j for j in jobs)
    t = Table(title="training jobs", title_justify="left")
    for header in ("job", *(["analyst"] if admin else []), "method", "dataset.table", "status", "progress", "charged ε, δ",
                   "model", "created"):  # fmt: skip
        t.add_column(header, justify="right" if header in ("progress",) else "left", overflow="fold",
                     min_width=_ID_WIDTH if header in ("job", "model") else None)  # fmt: skip
    for j in jobs:
        style = _STATUS_STYLE.get(j["status"], "")
        status = f"[{style}]{j['status']}[/]" if style else escape(j["status"])
        if j.get("error"):
            status += f" [dim]{escape(str(j['error'])[:60])}[/]"
        t.add_row(escape(j["job_id"]), *([escape(str(j.get("analyst")))] if admin else []), escape(j["method"]),
                  f"{escape(j['dataset'])}.{escape(j['table'])}", status, f"{100 * float(j.get('progress') or 0):.0f}%",
                  cost_text(j.get("cost")), escape(str(j.get("model_id") or "—")), escape(str(j.get("created_at") or "")[:19]))  # fmt: skip
    return t


def models_table(models: list[dict[str, Any]]) -> RenderableType:
    """`GET /v1/models`: newest first, with the DP metrics released with each."""
    if not models:
        return Text("no models")
    admin = any("analyst" in m for m in models)
    t = Table(title="models", title_justify="left")
    for header in ("model", *(["analyst"] if admin else []), "method", "dataset.table", "charged ε, δ", "DP metrics", "created"):
        t.add_column(header, overflow="fold", min_width=_ID_WIDTH if header == "model" else None)
    for m in models:
        t.add_row(escape(m["model_id"]), *([escape(str(m.get("analyst")))] if admin else []), escape(m["method"]),
                  f"{escape(m['dataset'])}.{escape(m['table'])}", cost_text(m.get("cost")), _metrics(m.get("metrics")),
                  escape(str(m.get("created_at") or "")[:19]))  # fmt: skip
    return t


def card_table(card: dict[str, Any]) -> RenderableType:
    """`GET /v1/models/{id}`: what the model is, what it cost and how, its DP metrics and caveats."""
    t = Table(title=f"model [bold]{escape(card['model_id'])}[/]", title_justify="left", show_header=False)
    t.add_column("what", style="dim", overflow="fold")
    t.add_column("value", overflow="fold")
    privacy = card.get("privacy") or {}
    label = card.get("label") or {}
    rows: list[tuple[str, str]] = [
        ("method", escape(str(card.get("method")))),
        ("trained on", f"{escape(str(card.get('dataset')))}.{escape(str(card.get('table')))}"),
        ("label", escape(str(label.get("column"))) + (f" (positive: {escape(str(label.get('positive')))})" if label.get("positive") is not None else "")),
        ("privacy", "[red]none (not differentially private)[/]" if card.get("privacy", True) is None else
         f"ε={num(privacy.get('epsilon'))}, δ={num(privacy.get('delta'))}, {escape(str(privacy.get('level')))}-level"),
    ]  # fmt: skip
    for key in ("accountant", "noise_multiplier", "max_grad_norm", "sample_rate", "epochs", "steps", "aggregator", "teachers", "queries"):
        if card.get(key) is not None:
            rows.append((key.replace("_", " "), num(card[key])))
    features = [c["name"] for c in (card.get("features") or {}).get("columns", [])]
    if features:
        rows.append(("features", escape(", ".join(features))))
    rows.append(("DP metrics", _metrics(card.get("metrics"))))
    if card.get("exact_metrics"):
        rows.append(("exact metrics (admins)", _metrics(card["exact_metrics"])))
    for k, v in rows:
        t.add_row(k, v)
    caveats = [Text("caveat: " + c, style="dim") for c in card.get("caveats") or []]
    return Group(t, *caveats)


def predictions_table(rows: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> RenderableType:
    """`POST /v1/models/{id}/predict`: each row's features beside its label and probability."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    t = Table(title="predictions", title_justify="left")
    t.add_column("#", justify="right", style="dim", overflow="fold")
    for c in columns[:8]:
        t.add_column(escape(c), justify="right", overflow="fold")
    t.add_column("label", overflow="fold")
    t.add_column("probability", justify="right", overflow="fold")
    for i, (row, p) in enumerate(zip(rows, predictions, strict=False)):
        t.add_row(str(i), *(num(row.get(c)) for c in columns[:8]), f"[bold]{escape(str(p['label']))}[/]", f"{p['probability']:.3f}")
    return t


def analyst_table(analyst: dict[str, Any]) -> RenderableType:
    t = Table(show_header=False, title=f"analyst [bold]{escape(analyst['name'])}[/]", title_justify="left")
    t.add_column("what", style="dim", overflow="fold")
    t.add_column("value", overflow="fold")
    for k in ("role", "organisation", "key_id", "disabled"):
        if k in analyst:
            t.add_row(k.replace("_", " "), num(analyst[k]))
    return t


def analysts_table(analysts: list[dict[str, Any]]) -> RenderableType:
    """`GET /v1/admin/analysts`."""
    t = Table(title="analysts", title_justify="left")
    for header in ("name", "role", "organisation", "key id", "status", "created"):
        t.add_column(header, overflow="fold")
    for a in analysts:
        t.add_row(escape(a["name"]), escape(a["role"]), num(a.get("organisation")), escape(a["key_id"]),
                  "[red]disabled[/]" if a.get("disabled") else "[green]enabled[/]", escape(str(a.get("created_at") or "")[:19]))  # fmt: skip
    return t


def allocation_table(allocation: dict[str, Any]) -> RenderableType:
    """`PUT /v1/admin/budgets`: the allocation as set, and what remains at both levels."""
    rem = allocation["remaining"]
    t = Table(title=f"allocation of [bold]{escape(allocation['analyst'])}[/] on [bold]{escape(allocation['dataset'])}[/]",
              title_justify="left")  # fmt: skip
    for header in ("", "ε", "δ"):
        t.add_column(header, justify="left" if not header else "right", overflow="fold")
    renew = allocation.get("renew")
    t.add_row("allocation" if renew is None else "cap over all windows", num(allocation["epsilon"]), num(allocation["delta"]))
    if renew is not None:
        t.add_row(f"each {escape(renew['every'])} (UTC calendar)", num(renew["epsilon"]), num(renew["delta"]))
    t.add_row("the analyst can still spend", num(rem["analyst"]["epsilon"]), num(rem["analyst"]["delta"]))
    t.add_row("the dataset has left (all analysts)", num(rem["dataset"]["epsilon"]), num(rem["dataset"]["delta"]))
    return Group(t, *warning_lines(allocation.get("warnings") or []))


def warning_lines(warnings: list[dict[str, Any]]) -> list[Text]:
    return [Text.from_markup(f"[yellow]warning[/] ({escape(w['code'])}): {escape(w['detail'])}") for w in warnings]


def ledger_table(entries: list[dict[str, Any]]) -> RenderableType:
    """`GET /v1/admin/ledger`: newest first; what each charge paid for."""
    if not entries:
        return Text("no charges")
    t = Table(title="ledger", title_justify="left")
    for header in ("id", "at", "analyst", "dataset", "kind", "ε", "δ", "for", "mechanisms"):
        t.add_column(header, justify="right" if header in ("id", "ε", "δ") else "left", overflow="fold")
    for e in entries:
        what = e.get("sql") or (f"job {e['job_id']}" if e.get("job_id") else e.get("request_id") or "")
        analyst = escape(e["analyst"]) + (f" [dim]({escape(e['organisation'])})[/]" if e.get("organisation") else "")
        t.add_row(str(e["id"]), escape(str(e["at"])[:19]), analyst, escape(e["dataset"]), escape(e["kind"]), num(e["epsilon"]),
                  num(e["delta"]), escape(str(what)), escape(", ".join(e.get("mechanisms") or [])))  # fmt: skip
    return t


def _rate(value: Any) -> str:
    return "—" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.3g}"


def audit_table(result: dict[str, Any]) -> RenderableType:
    """`POST /v1/admin/models/{id}/audit`: each attack's AUC and TPR at low FPR beside the DP ceiling."""
    ceiling = result.get("ceiling") or {}
    at = ceiling.get("at_fpr") or {}
    model = result.get("model") or {}
    t = Table(title=f"membership-inference audit of model [bold]{escape(str(result.get('model_id')))}[/] "
                    f"(ε={num(model.get('epsilon'))}, δ={num(model.get('delta'))})", title_justify="left")  # fmt: skip
    for header in ("attack", "AUC", "TPR at FPR 0.1%", "TPR at FPR 1%", "ε lower bound", "recognition: members / non-members"):
        t.add_column(header, justify="left" if header == "attack" else "right", overflow="fold")
    t.add_row("[dim]DP ceiling e^ε·FPR + δ[/]", "", _rate(at.get("0.001")), _rate(at.get("0.01")), "", "")
    for name, a in (result.get("attacks") or {}).items():
        tpr = a.get("tpr_at_fpr") or {}
        rec = a.get("recognition_rate") or {}
        members, non = (rec.get("members") or {}).get("mean"), (rec.get("nonmembers") or {}).get("mean")
        t.add_row(escape(name), _rate(a.get("attack_auc")), _rate(tpr.get("0.001")), _rate(tpr.get("0.01")),
                  _rate(a.get("epsilon_lower_bound")), f"{_rate(members)} / {_rate(non)}")  # fmt: skip
    counts = result.get("counts") or {}
    lines: list[RenderableType] = [t, Text(f"members {counts.get('members')}, non-members {counts.get('nonmembers')}", style="dim")]
    if ceiling:
        exceeds = ceiling.get("any_exceeds")
        lines.append(Text.from_markup("[red]an attack exceeds the DP ceiling[/]" if exceeds else "[green]no attack exceeds the DP ceiling[/]"))
    return Group(*lines)
