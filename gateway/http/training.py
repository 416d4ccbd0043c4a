"""Training jobs and models: DP-SGD and classic private models, charged before they run."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apiflask import APIBlueprint
from flask import Response, g

from gateway.http.auth import auth
from gateway.http.resources import ext
from gateway.schemas import (
    AuditIn,
    AuditOut,
    JobAcceptedOut,
    JobStatusOut,
    JobsOut,
    ListQuery,
    ModelCardOut,
    ModelsOut,
    PredictIn,
    PredictOut,
    TrainingJobIn,
    documented,
)

if TYPE_CHECKING:
    from training.service import TrainingService

bp = APIBlueprint("training", __name__, tag="training", url_prefix="/v1")
ROLES = ["analyst", "admin"]


def _service() -> TrainingService:
    return ext("training")


@bp.post("/training-jobs")
@bp.auth_required(auth, roles=ROLES)
@bp.input(TrainingJobIn, arg_name="body")
@bp.doc(summary="Start a training job; its whole cost is charged before it runs",
        responses={202: documented(JobAcceptedOut, "accepted and charged"), 400: "invalid job",
                   403: "forbidden or budget exhausted", 404: "unknown dataset",
                   429: "over a rate limit (rate_limited), or max_active_jobs_per_analyst jobs are queued or running "
                        "(training_quota); nothing charged",
                   503: "the training service is shutting down (unavailable)"})  # fmt: skip
def start_job(body: TrainingJobIn) -> tuple[dict[str, Any], int]:
    job = body.model_dump(exclude_none=True)
    if job.get("delta") == 0.0 and "delta" not in body.model_fields_set:
        job.pop("delta")
    return _service().start(g.analyst.name, job, is_admin=g.analyst.is_admin), 202


@bp.get("/training-jobs")
@bp.auth_required(auth, roles=ROLES)
@bp.input(ListQuery, location="query", arg_name="params")
@bp.doc(summary="Your training jobs, newest first (administrators: every analyst's)",
        responses={200: documented(JobsOut, "the jobs, as their status shows them")})
def list_jobs(params: ListQuery) -> dict[str, Any]:
    return {"jobs": _service().jobs(g.analyst.name, is_admin=g.analyst.is_admin, limit=params.limit)}


@bp.get("/training-jobs/<job_id>")
@bp.auth_required(auth, roles=ROLES)
@bp.doc(summary="A job's status, progress, DP metrics and cost (your own jobs)",
        responses={200: documented(JobStatusOut, "the job"), 404: "not found"})
def job_status(job_id: str) -> dict[str, Any]:
    return _service().status(g.analyst.name, job_id, is_admin=g.analyst.is_admin)


@bp.post("/training-jobs/<job_id>/cancel")
@bp.auth_required(auth, roles=ROLES)
@bp.doc(summary="Cancel a job (its charge stays)", responses={200: documented(JobStatusOut, "the job"), 404: "not found"})
def cancel_job(job_id: str) -> dict[str, Any]:
    return _service().cancel(g.analyst.name, job_id, is_admin=g.analyst.is_admin)


@bp.get("/models")
@bp.auth_required(auth, roles=ROLES)
@bp.input(ListQuery, location="query", arg_name="params")
@bp.doc(summary="Your models, newest first (administrators: every analyst's)",
        responses={200: documented(ModelsOut, "one line per model: method, dataset, cost, DP metrics")})
def list_models(params: ListQuery) -> dict[str, Any]:
    return {"models": _service().models(g.analyst.name, is_admin=g.analyst.is_admin, limit=params.limit)}


@bp.get("/models/<model_id>")
@bp.auth_required(auth, roles=ROLES)
@bp.doc(summary="A model card (exact metrics for administrators only)",
        responses={200: documented(ModelCardOut, "the card"), 404: "not found"})
def model_card(model_id: str) -> dict[str, Any]:
    return _service().model_card(g.analyst.name, model_id, is_admin=g.analyst.is_admin)


@bp.post("/models/<model_id>/predict")
@bp.auth_required(auth, roles=ROLES)
@bp.input(PredictIn, arg_name="body")
@bp.doc(summary="Predictions of a model for rows of features",
        responses={200: documented(PredictOut, "one prediction per row"), 400: "bad rows", 404: "not found"})
def predict(model_id: str, body: PredictIn) -> dict[str, Any]:
    return _service().predict(g.analyst.name, model_id, body.rows, is_admin=g.analyst.is_admin)


@bp.post("/admin/models/<model_id>/audit")
@bp.auth_required(auth, roles=["admin"])
@bp.input(AuditIn, arg_name="body")
@bp.doc(summary="Membership-inference audit of a model (administrators only): loss-threshold and LiRA-style "
        "attacks, TPR at low FPR, the DP ceiling e^ε·FPR + δ; plots under .../audit/{roc,violin}.png",
        responses={200: documented(AuditOut, "the attacks' figures and the DP ceiling"), 400: "invalid audit",
                   403: "not an administrator", 404: "not found"})  # fmt: skip
def audit_model(model_id: str, body: AuditIn) -> dict[str, Any]:
    result = _service().audit(model_id, n_reference=body.n_reference, seed=body.seed)
    result["plot_urls"] = {name: f"/v1/admin/models/{model_id}/audit/{name}.png" for name in ("roc", "violin")}
    return result


@bp.get("/admin/models/<model_id>/audit/<name>.png")
@bp.auth_required(auth, roles=["admin"])
@bp.doc(summary="A plot of the model's last audit (roc or violin)",
        responses={200: {"description": "the plot", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
                   403: "not an administrator", 404: "not found"})  # fmt: skip
def audit_plot(model_id: str, name: str) -> Any:
    # the bytes, not a file handle: a PNG of tens of kB, and nothing left open if the client goes away
    return Response(_service().audit_plot(model_id, name).read_bytes(), mimetype="image/png")
