"""Training pages: jobs (start one, watch its progress live, cancel it), models and their cards,
predictions from a form row or an uploaded CSV, and, for administrators, the membership-inference audit
with its ROC and violin plots.

The writes run the very view functions of `POST /v1/training-jobs`, `.../cancel`, `.../predict` and
`POST /v1/admin/models/{id}/audit` (undecorated: the console has already checked the session, the role
and the CSRF token, and validates the body with the same pydantic models), and the reads call
`TrainingService` with the caller's role, so both paths do the same: an analyst sees only its own jobs
and models, and another analyst's id reads as 404 (`not_found`), never 403, so ids never leak.

Form text is turned into the JSON the API takes by the model card's public feature types (a number, true
or false, an ISO date, a category); a bad value or a CSV without a feature's column is refused (400)
naming the row and the column, never the value. Predictions are free: nothing here charges a budget but
starting a job, which charges its whole cost before it runs, as on the API.
"""
from __future__ import annotations

import csv
import inspect
import io
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from flask import Response, redirect, request, url_for

from gateway.app import ext
from gateway.console import bp
from gateway.console._web import current_session, error_of, page, refusal, signed_in, typed_errors
from gateway.console.render import gauges
from gateway.http import training as training_api
from gateway.http.analyst import public_metadata
from gateway.problems import problem
from gateway.schemas import AuditIn, PredictIn, TrainingJobIn
from training import METHODS, TASKS, InvalidJob, NotFound
from training.store import ACTIVE

MAX_CSV_BYTES = 1_000_000
MAX_CSV_ROWS = 1_000  # a page shows every prediction; larger batches go through the API (10,000 a call)
PLOTS = ("roc", "violin")
_JOB_FORM = ("task", "dataset", "table", "label", "positive", "features", "method", "epsilon", "delta", "params", "public_table")
_DEFAULT_JOB = {"method": "dpsgd", "epsilon": "1.0", "delta": "1e-6"}  # as `dpgate train`
_LABEL_TYPES = ("bool", "category", "int")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _api(view: Any) -> Any:
    return inspect.unwrap(view)


def _me() -> Any:
    return current_session().analyst  # type: ignore[union-attr]


def _not_found(exc: BaseException) -> tuple[str, int]:
    e = error_of(exc)
    return refusal(e["status"], e["code"], e["message"])


# -- jobs ------------------------------------------------------------------------------------------------


def _trainable(me: Any) -> list[str]:
    """The datasets the caller may train on: its allocations (administrators: the whole catalog)."""
    if me.is_admin:
        return sorted(m.name for m in ext("gateway").catalog)
    return sorted(ext("ledger").allocations_of(me.name))


def _tables(names: list[str]) -> list[dict[str, Any]]:
    """Each private table of those datasets with the columns that may be a label (public metadata only)."""
    catalog, out = ext("gateway").catalog, []
    for name in names:
        if name not in catalog:
            continue
        meta = public_metadata(catalog.get(name))
        unit = meta.get("privacy_unit")
        public = [t for t, tm in meta["tables"].items() if tm.get("public")]
        for table, tm in sorted(meta["tables"].items()):
            if tm.get("public"):
                continue
            columns = tm.get("columns") or {}
            labels = [{"name": c, "type": cm["type"], "categories": cm.get("categories") or []}
                      for c, cm in columns.items() if cm.get("type") in _LABEL_TYPES and c != unit]  # fmt: skip
            others = [c for c, cm in columns.items() if cm.get("type") != "id" and c != unit]
            if labels:
                out.append({"dataset": meta["name"], "table": table, "labels": labels, "columns": others, "public_tables": public})
    return out


def _jobs_page(me: Any, form: dict[str, str], status: int = 200, **extra: Any) -> tuple[str, int]:
    names = _trainable(me)
    budgets = sorted(ext("ledger").budgets(me.name), key=lambda b: str(b["dataset"]))
    methods = [m for m in METHODS if me.is_admin or m != "nonprivate"]
    tasks = {k: t for k, t in TASKS.items() if t.dataset in names}
    return page("jobs.html", status, jobs=ext("training").jobs(me.name, is_admin=me.is_admin), datasets=names,
                tables=_tables(names), tasks=tasks, methods=methods, form=form,
                gauges={b["dataset"]: gauges(b) for b in budgets}, **extra)  # fmt: skip


@bp.get("/console/jobs")
@signed_in()
def jobs() -> Any:
    me = _me()
    names = _trainable(me)
    form = dict.fromkeys(_JOB_FORM, "") | _DEFAULT_JOB | {"dataset": request.args.get("dataset") or (names[0] if names else "")}
    return _jobs_page(me, form)[0]


def _positive(text: str) -> str | bool | None:
    """The form's positive label value: true/false for a boolean label, otherwise the text as given."""
    if not text:
        return None
    return {"true": True, "false": False}.get(text.lower(), text)


def _job_body(form: dict[str, str]) -> TrainingJobIn:
    """The `POST /v1/training-jobs` body the form describes (a task fixes dataset, table and label)."""
    raw: dict[str, Any] = {"method": form["method"] or "dpsgd"}
    names = ("public_table",) if form["task"] else ("dataset", "table", "label", "public_table")
    raw.update({k: form[k] for k in ("task", *names) if form[k]})
    if (positive := _positive(form["positive"])) is not None:
        raw["positive"] = positive
    if features := [f.strip() for f in form["features"].split(",") if f.strip()]:
        raw["features"] = features
    if form["epsilon"]:
        raw["epsilon"] = form["epsilon"]
    if form["delta"]:  # left empty: the API's default (0), as when a JSON body leaves it out
        raw["delta"] = form["delta"]
    if form["params"]:
        try:
            raw["params"] = json.loads(form["params"])
        except json.JSONDecodeError as exc:
            raise InvalidJob(f"params is not JSON: {exc.msg} (column {exc.pos + 1})", field="params") from None
        if not isinstance(raw["params"], dict):
            raise InvalidJob("params must be a JSON object of hyper-parameters", field="params")
    return TrainingJobIn.model_validate(raw)


@bp.post("/console/jobs")
@signed_in()
def job_start() -> Any:
    me = _me()
    form = {k: request.form.get(k, "").strip() for k in _JOB_FORM}
    try:
        started, _ = _api(training_api.start_job)(body=_job_body(form))
    except typed_errors() as exc:
        error = error_of(exc)
        return _jobs_page(me, form, error["status"], error=error)
    return redirect(url_for("console.job", job_id=started["job_id"], started=1), code=303)


@bp.get("/console/jobs/<job_id>")
@signed_in()
def job(job_id: str) -> Any:
    me = _me()
    try:
        status = ext("training").status(me.name, job_id, is_admin=me.is_admin)
    except typed_errors() as exc:
        return _not_found(exc)
    notice = "started" if request.args.get("started") else "cancelled" if request.args.get("cancelled") else None
    return page("job.html", job=status, active=status["status"] in ACTIVE, notice=notice)[0]


@bp.get("/console/jobs/<job_id>/status.json")
@signed_in()
def job_status_json(job_id: str) -> Any:
    """The job's status as `GET /v1/training-jobs/{id}` answers it, for the job page's live progress."""
    me = _me()
    try:
        return ext("training").status(me.name, job_id, is_admin=me.is_admin), 200, {"Cache-Control": "no-store"}
    except typed_errors() as exc:
        e = error_of(exc)
        body, status, headers = problem(e["status"], e["code"], e["message"])
        return body, status, {**headers, "Cache-Control": "no-store"}


@bp.post("/console/jobs/<job_id>/cancel")
@signed_in()
def job_cancel(job_id: str) -> Any:
    try:
        _api(training_api.cancel_job)(job_id=job_id)
    except typed_errors() as exc:
        return _not_found(exc)
    return redirect(url_for("console.job", job_id=job_id, cancelled=1), code=303)


# -- models ----------------------------------------------------------------------------------------------


@bp.get("/console/models")
@signed_in()
def models() -> Any:
    me = _me()
    return page("models.html", models=ext("training").models(me.name, is_admin=me.is_admin))[0]


def _last_audit(model_id: str) -> dict[str, Any] | None:
    """The model's last audit, as `TrainingService.audit` returned it: it keeps the report beside its
    plots (`training.auditing`), so the plot's folder holds it; None before the first audit."""
    try:
        roc = ext("training").audit_plot(model_id, "roc")
    except NotFound:
        return None
    stored = roc.parent / "audit.json"
    return json.loads(stored.read_text()) if stored.is_file() else None


def _audit_view(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """An audit report with its FPR levels in order, for the template."""
    if not result:
        return None
    attacks = result.get("attacks") or {}
    first = next(iter(attacks.values()), {})
    return {**result, "levels": sorted(first.get("tpr_at_fpr") or {}, key=float)}


def _when(seconds: float) -> str:
    at = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
    return at.removesuffix(" 00:00")


def _shown_features(columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The card's feature columns with their bounds as the page shows them (a date's are epoch seconds)."""
    out = []
    for c in columns:
        bounds = None
        if c.get("lower") is not None:
            lower, upper = (_when(c["lower"]), _when(c["upper"])) if c["type"] == "date" else (c["lower"], c["upper"])
            bounds = (lower, upper)
        out.append({**c, "bounds": bounds})
    return out


def _model_page(me: Any, model_id: str, status: int = 200, **extra: Any) -> tuple[str, int]:
    """The model page: raises the service's NotFound for a model that is not the caller's."""
    card = ext("training").model_card(me.name, model_id, is_admin=me.is_admin)
    extra.setdefault("row_form", {})
    if me.is_admin and "audit" not in extra:
        extra["audit"] = _last_audit(model_id)
    extra["audit"] = _audit_view(extra.get("audit"))
    return page("model.html", status, card=card, features=_shown_features(card["features"]["columns"]), plots=PLOTS, **extra)


@bp.get("/console/models/<model_id>")
@signed_in()
def model(model_id: str) -> Any:
    try:
        return _model_page(_me(), model_id)[0]
    except typed_errors() as exc:
        return _not_found(exc)


def _typed(column: Mapping[str, Any], text: str, i: int) -> Any:
    """One form or CSV cell as the JSON value the API takes for this feature; empty is missing (None)."""
    name, kind = column["name"], column["type"]
    if text == "":
        return None
    if kind in ("int", "float"):
        for number in (int, float):
            try:
                return number(text)
            except ValueError:
                continue
        raise InvalidJob(f"row {i}: feature {name!r} must be a number", field=f"rows[{i}].{name}", row=i)
    if kind == "bool":
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise InvalidJob(f"row {i}: feature {name!r} must be true or false", field=f"rows[{i}].{name}", row=i)
    return text  # a date (ISO text) or a category, checked by the service


def _row(columns: list[dict[str, Any]], cells: Mapping[str, str], i: int) -> dict[str, Any]:
    return {c["name"]: v for c in columns if (v := _typed(c, cells.get(c["name"], "").strip(), i)) is not None}


def _csv_rows(columns: list[dict[str, Any]], data: bytes) -> list[dict[str, Any]]:
    """Rows of a CSV whose header names features of the model; a nullable feature's column may be left out."""
    if len(data) > MAX_CSV_BYTES:
        raise InvalidJob(f"the CSV is over {MAX_CSV_BYTES // 1_000_000} MB", field="csv")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidJob("the CSV is not UTF-8 text", field="csv") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    names = [c["name"] for c in columns]
    if not any(header):
        raise InvalidJob(f"the CSV is empty: its first line must name the features ({', '.join(names)})", field="csv")
    unknown = [h[:64] for h in header if h not in names]
    if unknown or len(set(header)) < len(header):
        what = f"columns that are not features of this model: {', '.join(map(repr, unknown))}" if unknown else "a column named twice"
        raise InvalidJob(f"the CSV's header has {what} (the features: {', '.join(names)})", field="csv")
    missing = [c["name"] for c in columns if c["name"] not in header and not c.get("nullable")]
    if missing:
        raise InvalidJob(f"the CSV lacks the feature column(s) {', '.join(map(repr, missing))}", field="csv")
    rows: list[dict[str, Any]] = []
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue  # a blank line
        i = len(rows)
        if i == MAX_CSV_ROWS:
            raise InvalidJob(f"at most {MAX_CSV_ROWS} rows per upload (the API takes more)", field="csv")
        if len(record) != len(header):
            raise InvalidJob(f"row {i} (line {reader.line_num}) has {len(record)} values for {len(header)} columns", field=f"rows[{i}]", row=i)
        rows.append(_row(columns, dict(zip(header, record, strict=True)), i))
    if not rows:
        raise InvalidJob("the CSV has a header but no rows", field="csv")
    return rows


def _rows(columns: list[dict[str, Any]], row_form: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
    """The rows to predict and where they came from: an uploaded CSV, the CSV of a shown result (its
    download), or the form's one row."""
    upload = request.files.get("csv")
    if upload is not None and upload.filename:
        return _csv_rows(columns, upload.read(MAX_CSV_BYTES + 1)), "csv"
    if text := request.form.get("csv_text", ""):
        return _csv_rows(columns, text.encode()), "csv"
    return [_row(columns, row_form, 0)], "form"


def _cell(v: Any) -> str:
    text = "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    return "'" + text if isinstance(v, str) and text[:1] in ("=", "+", "-", "@") else text  # no formulas in a spreadsheet


def _csv(columns: list[dict[str, Any]], rows: list[dict[str, Any]], predictions: list[dict[str, Any]] | None = None) -> str:
    """The rows as CSV (feature columns in the model's order) and, given predictions, each label and probability."""
    names = [c["name"] for c in columns]
    classes = list((predictions or [{}])[0].get("probabilities") or {})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names + (["label", "probability", *(f"p({c})" for c in classes)] if predictions is not None else []))
    for i, row in enumerate(rows):
        cells = [_cell(row.get(n)) for n in names]
        if predictions is not None:
            p = predictions[i]
            cells += [_cell(p["label"]), repr(p["probability"]), *(repr(p["probabilities"][c]) for c in classes)]
        writer.writerow(cells)
    return out.getvalue()


@bp.post("/console/models/<model_id>/predict")
@signed_in()
def model_predict(model_id: str) -> Any:
    me = _me()
    try:
        card = ext("training").model_card(me.name, model_id, is_admin=me.is_admin)
    except typed_errors() as exc:
        return _not_found(exc)
    columns = card["features"]["columns"]
    row_form = {c["name"]: request.form.get(f"feature:{c['name']}", "") for c in columns}
    try:
        rows, source = _rows(columns, row_form)
        out = _api(training_api.predict)(model_id=model_id, body=PredictIn.model_validate({"rows": rows}))
    except typed_errors() as exc:
        error = error_of(exc)
        return _model_page(me, model_id, error["status"], predict_error=error, row_form=row_form)
    predictions = out["predictions"]
    if request.form.get("action") == "csv":
        return Response(_csv(columns, rows, predictions), mimetype="text/csv",
                        headers={"Content-Disposition": f"attachment; filename=dpgate-predictions-{model_id}.csv", "Cache-Control": "no-store"})  # fmt: skip
    shown = {"rows": rows, "items": predictions, "source": source, "csv_text": _csv(columns, rows),
             "classes": list(predictions[0].get("probabilities") or {})}  # fmt: skip
    return _model_page(me, model_id, predictions=shown, row_form=row_form)


@bp.post("/console/models/<model_id>/audit")
@signed_in(admin=True)
def model_audit(model_id: str) -> Any:
    me = _me()
    form = {k: request.form.get(k, "").strip() for k in ("n_reference", "seed")}
    try:
        ext("training").model_card(me.name, model_id, is_admin=True)
    except typed_errors() as exc:
        return _not_found(exc)
    try:
        body = AuditIn.model_validate({k: v for k, v in form.items() if v})
        result = _api(training_api.audit_model)(model_id=model_id, body=body)
    except typed_errors() as exc:
        error = error_of(exc)
        return _model_page(me, model_id, error["status"], audit_error=error, audit_form=form)
    return _model_page(me, model_id, audit=result, audit_form=form, audit_fresh=True)


@bp.get("/console/models/<model_id>/audit/<name>.png")
@signed_in(admin=True)
def model_audit_plot(model_id: str, name: str) -> Any:
    """A plot of the model's last audit, as `GET /v1/admin/models/{id}/audit/{name}.png` serves it."""
    try:
        path = ext("training").audit_plot(model_id, name)
    except typed_errors() as exc:
        return _not_found(exc)
    return Response(path.read_bytes(), mimetype="image/png", headers={"Cache-Control": "no-store"})
