"""Synthetic data pages: start a private synthetic copy of a table, watch it, download its rows.

The write runs the view function of `POST /v1/synthetic-jobs` (undecorated: the console has checked the
session, the role and the CSRF token; the body is validated by the same pydantic model), so it is
charged exactly as on the API, before it runs; the reads call `TrainingService` with the caller's role:
another analyst's job reads as 404. A succeeded job's table is a public table of its dataset: the page
links it to the query page, where it is answered exactly at no cost.
"""
from __future__ import annotations

import inspect
from typing import Any

from flask import redirect, request, url_for

from gateway.app import ext
from gateway.console import bp
from gateway.console._web import current_session, error_of, page, refusal, signed_in, typed_errors
from gateway.console.render import gauges
from gateway.http import synthetic as synthetic_api
from gateway.http.analyst import public_metadata
from gateway.schemas import SyntheticJobIn
from training import InvalidJob
from training.store import ACTIVE

_FORM = ("dataset", "table", "columns", "epsilon", "delta", "rows")
_DEFAULT = {"epsilon": "1.0", "delta": "1e-6"}  # as `dpgate synth`


def _me() -> Any:
    return current_session().analyst  # type: ignore[union-attr]


def _datasets(me: Any) -> list[str]:
    if me.is_admin:
        return sorted(m.name for m in ext("gateway").catalog)
    return sorted(ext("ledger").allocations_of(me.name))


def _tables(names: list[str]) -> list[dict[str, Any]]:
    """The private tables of those datasets with their columns (public metadata only)."""
    catalog, out = ext("gateway").catalog, []
    for name in names:
        if name not in catalog:
            continue
        meta = public_metadata(catalog.get(name))
        unit = meta.get("privacy_unit")
        for table, tm in sorted(meta["tables"].items()):
            if tm.get("public") or tm.get("image"):
                continue
            cols = [c for c, cm in (tm.get("columns") or {}).items() if cm.get("type") != "id" and c != unit]
            out.append({"dataset": meta["name"], "table": table, "columns": cols, "k": tm.get("max_rows_per_unit", 1)})
    return out


def _page(me: Any, form: dict[str, str], status: int = 200, **extra: Any) -> tuple[str, int]:
    names = _datasets(me)
    budgets = sorted(ext("ledger").budgets(me.name), key=lambda b: str(b["dataset"]))
    return page("synthetic.html", status, jobs=ext("training").synthetic_jobs(me.name, is_admin=me.is_admin),
                datasets=names, tables=_tables(names), form=form,
                gauges={b["dataset"]: gauges(b) for b in budgets}, **extra)  # fmt: skip


@bp.get("/console/synthetic")
@signed_in()
def synthetic() -> Any:
    me = _me()
    names = _datasets(me)
    form = dict.fromkeys(_FORM, "") | _DEFAULT | {"dataset": request.args.get("dataset") or (names[0] if names else "")}
    return _page(me, form)[0]


def _body(form: dict[str, str]) -> SyntheticJobIn:
    raw: dict[str, Any] = {k: form[k] for k in ("dataset", "table", "epsilon", "delta") if form[k]}
    if columns := [c.strip() for c in form["columns"].split(",") if c.strip()]:
        raw["columns"] = columns
    if form["rows"]:
        try:
            raw["rows"] = int(form["rows"])
        except ValueError:
            raise InvalidJob("rows must be a whole number (leave it empty for a noisy count of the table)", field="rows") from None
    return SyntheticJobIn.model_validate(raw)


@bp.post("/console/synthetic")
@signed_in()
def synthetic_start() -> Any:
    me = _me()
    form = {k: request.form.get(k, "").strip() for k in _FORM}
    try:
        started, _ = inspect.unwrap(synthetic_api.start_synthetic)(body=_body(form))
    except typed_errors() as exc:
        error = error_of(exc)
        return _page(me, form, error["status"], error=error)
    return redirect(url_for("console.synthetic_job", job_id=started["job_id"], started=1), code=303)


@bp.get("/console/synthetic/<job_id>")
@signed_in()
def synthetic_job(job_id: str) -> Any:
    me = _me()
    try:
        status = ext("training").synthetic_status(me.name, job_id, is_admin=me.is_admin)
    except typed_errors() as exc:
        e = error_of(exc)
        return refusal(e["status"], e["code"], e["message"])
    return page("synthetic_job.html", job=status, active=status["status"] in ACTIVE,
                notice="started" if request.args.get("started") else None)[0]  # fmt: skip


@bp.get("/console/synthetic/<job_id>/download")
@signed_in()
def synthetic_download(job_id: str) -> Any:
    me = _me()
    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "parquet"):
        return refusal(400, "invalid_request", "format must be csv or parquet")
    try:
        dataset, table = ext("training").synthetic_rows(me.name, job_id, is_admin=me.is_admin)
    except typed_errors() as exc:
        e = error_of(exc)
        return refusal(e["status"], e["code"], e["message"])
    return synthetic_api.table_download(dataset, table, fmt)
