"""Administrator pages: datasets (list, register from JSON; one dataset's metadata, versions and spending
over time), analysts (create, key shown once), budgets (set, with a warning past what the dataset has
left) and the ledger (filters, CSV export).

The writes run the very view functions of `POST /v1/admin/analysts`, `POST /v1/admin/datasets` and
`PUT /v1/admin/budgets` (undecorated: the console has already checked the session, the role and the
CSRF token, and validates the body with the same pydantic models), so that both paths do the same."""
from __future__ import annotations

import csv
import inspect
import io
import json
from typing import Any

from flask import Response, request

from gateway.app import ext
from gateway.catalog import DatasetMeta
from gateway.console import bp
from gateway.console._web import error_of, page, refusal, signed_in, typed_errors
from gateway.console.render import spending_chart
from gateway.http import admin as admin_api
from gateway.http.analyst import public_metadata
from gateway.schemas import AnalystIn, BudgetIn, LedgerQuery

MAX_UPLOAD = 1_000_000
FEW_CHARGES = 60  # a dataset's spending chart steps at each charge up to this many, else by day


def _api(view: Any) -> Any:
    return inspect.unwrap(view)


def _datasets_page(status: int = 200, **extra: Any) -> Any:
    gateway, ledger = ext("gateway"), ext("ledger")
    budgets = {b["dataset"].lower(): b for b in ledger.dataset_budgets()}
    unavailable = ext("queries").unavailable
    rows = [{"name": m.name, "tables": sorted(m.tables), "version": gateway.version(m.name), "privacy_unit": m.privacy_unit,
             "budget": budgets.get(m.name.lower())} for m in sorted(gateway.catalog, key=lambda m: m.name)]  # fmt: skip
    return page("admin/datasets.html", status, rows=rows, unavailable=sorted(unavailable), **extra)


@bp.get("/console/admin/datasets")
@signed_in(admin=True)
def admin_datasets() -> Any:
    return _datasets_page()[0]


@bp.post("/console/admin/datasets")
@signed_in(admin=True)
def admin_register_dataset() -> Any:
    upload = request.files.get("file")
    text = request.form.get("definition", "")
    if upload is not None and upload.filename:
        text = upload.read(MAX_UPLOAD + 1).decode("utf-8", errors="replace")
    if len(text) > MAX_UPLOAD:
        return _datasets_page(400, error={"status": 400, "code": "invalid_request", "message": "the definition is over 1 MB"}, definition="")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return _datasets_page(400, error={"status": 400, "code": "invalid_request", "message": f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"},
                              definition=text)  # fmt: skip
    try:
        registered, _ = _api(admin_api.register_dataset)(body=DatasetMeta.model_validate(raw))
    except typed_errors() as exc:
        return _datasets_page(error_of(exc)["status"], error=error_of(exc), definition=text)
    return _datasets_page(201, registered=registered)


@bp.get("/console/admin/datasets/<dataset>")
@signed_in(admin=True)
def admin_dataset(dataset: str) -> Any:
    """One dataset: its public metadata, its registrations (what each changed) and what it has been
    charged over time (per charge while there are few, else per UTC day) and per analyst."""
    gateway, ledger = ext("gateway"), ext("ledger")
    if dataset not in gateway.catalog:
        return refusal(404, "not_found", "no dataset has that name")
    meta = gateway.catalog.get(dataset)
    budget = {b["dataset"].lower(): b for b in ledger.dataset_budgets()}.get(meta.name.lower())
    by_analyst = ledger.spending_by_analyst(meta.name)
    bucket = "entry" if sum(a["entries"] for a in by_analyst) <= FEW_CHARGES else "day"
    points = ledger.spending_over_time(meta.name, bucket=bucket)
    chart = spending_chart(points, budget["epsilon_total"] if budget else 0.0, bucket=bucket)
    return page("admin/dataset.html", meta=public_metadata(meta), version=gateway.version(meta.name), budget=budget,
                versions=ledger.dataset_history(meta.name), points=points, by_analyst=by_analyst, chart=chart)[0]  # fmt: skip


def _analysts_page(status: int = 200, **extra: Any) -> Any:
    ledger, gateway = ext("ledger"), ext("gateway")
    return page("admin/analysts.html", status, analysts=ledger.list_analysts(), allocations=ledger.allocations(),
                datasets=sorted(m.name for m in gateway.catalog), **extra)  # fmt: skip


@bp.get("/console/admin/analysts")
@signed_in(admin=True)
def admin_analysts() -> Any:
    return _analysts_page()[0]


@bp.post("/console/admin/analysts")
@signed_in(admin=True)
def admin_create_analyst() -> Any:
    form = {k: request.form.get(k, "").strip() for k in ("name", "role", "organisation")}
    try:
        body = AnalystIn.model_validate({"name": form["name"], "role": form["role"] or "analyst", "organisation": form["organisation"] or None})
        created, _ = _api(admin_api.create_analyst)(body=body)
    except typed_errors() as exc:
        return _analysts_page(error_of(exc)["status"], error=error_of(exc), form=form)
    return _analysts_page(201, created=created)  # the key, this once (the page is never cached)


@bp.post("/console/admin/budgets")
@signed_in(admin=True)
def admin_set_budget() -> Any:
    form = {k: request.form.get(k, "").strip() for k in ("analyst", "dataset", "epsilon", "delta", "renew_every", "window_epsilon", "window_delta")}
    raw: dict[str, Any] = {"analyst": form["analyst"], "dataset": form["dataset"], "epsilon": form["epsilon"], "delta": form["delta"] or 0}
    if form["renew_every"]:  # a schedule: ε above is then the cap over all windows
        raw["renew"] = {"every": form["renew_every"], "epsilon": form["window_epsilon"], "delta": form["window_delta"] or 0}
    try:
        body = BudgetIn.model_validate(raw)
        result = _api(admin_api.set_budget)(body=body)
    except typed_errors() as exc:
        return _analysts_page(error_of(exc)["status"], error=error_of(exc), budget_form=form)
    if "warnings" in result:  # the API states them (ledger.allocation_warnings)
        warnings = [w["detail"] for w in result["warnings"]]
    else:
        left = result["remaining"]
        warnings = [f"the allocation leaves {p}={left['analyst'][p]:g} to spend but dataset {result['dataset']!r} has {p}={left['dataset'][p]:g} left: "
                    "the dataset's total binds first" for p in ("epsilon", "delta") if left["analyst"][p] > left["dataset"][p]]  # fmt: skip
    return _analysts_page(budget_set=result, warnings=warnings)


def _analyst_action(view_name: str, analyst: str) -> Any:
    """Disable an analyst or rotate its key through the API's own view (where this gateway has it)."""
    view = getattr(admin_api, view_name, None)
    if view is None:
        return _analysts_page(404, error={"status": 404, "code": "not_found", "message": "this gateway cannot do that yet"})
    try:
        out = _api(view)(analyst=analyst)
    except typed_errors() as exc:
        return _analysts_page(error_of(exc)["status"], error=error_of(exc))
    return _analysts_page(**({"rotated": out} if "key" in out else {"disabled": out}))


@bp.post("/console/admin/analysts/<analyst>/disable")
@signed_in(admin=True)
def admin_disable_analyst(analyst: str) -> Any:
    return _analyst_action("disable_analyst", analyst)


@bp.post("/console/admin/analysts/<analyst>/rotate-key")
@signed_in(admin=True)
def admin_rotate_key(analyst: str) -> Any:
    return _analyst_action("rotate_key", analyst)


def _ledger_params() -> LedgerQuery:
    raw = {k: v for k in ("dataset", "analyst", "limit") if (v := request.args.get(k, "").strip())}
    return LedgerQuery.model_validate(raw)


@bp.get("/console/admin/ledger")
@signed_in(admin=True)
def admin_ledger() -> Any:
    try:
        params = _ledger_params()
    except typed_errors() as exc:
        return page("admin/ledger.html", 400, entries=[], error=error_of(exc), params=request.args)
    entries = ext("ledger").entries(dataset=params.dataset, analyst=params.analyst, limit=params.limit)
    return page("admin/ledger.html", entries=entries, params=request.args,
                analysts=[a.name for a in ext("ledger").list_analysts()], datasets=sorted(m.name for m in ext("gateway").catalog))[0]  # fmt: skip


CSV_COLUMNS = ("id", "at", "analyst", "organisation", "dataset", "request_id", "kind", "sql", "job_id", "mechanisms", "epsilon", "delta")


@bp.get("/console/admin/ledger.csv")
@signed_in(admin=True)
def admin_ledger_csv() -> Any:
    try:
        params = _ledger_params()
    except typed_errors() as exc:
        return page("error.html", 400, error=error_of(exc))
    entries = ext("ledger").entries(dataset=params.dataset, analyst=params.analyst, limit=params.limit)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        row = []
        for c in CSV_COLUMNS:
            v = e.get(c)
            v = ";".join(map(str, v)) if isinstance(v, list) else ("" if v is None else str(v))
            row.append("'" + v if v[:1] in ("=", "+", "-", "@") and c in ("sql", "analyst", "organisation", "dataset", "request_id") else v)
        writer.writerow(row)
    return Response(out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": "attachment; filename=dpgate-ledger.csv", "Cache-Control": "no-store"})


