"""Synthetic jobs: private synthetic copies of a table, charged before they run (training.synthetic_jobs).

A job's result is a public table of its dataset (queried like any other, at no cost) and a download of
its rows for the job's owner (and administrators): CSV by default, Parquet with ``?format=parquet``.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from apiflask import APIBlueprint
from flask import Response, g

from gateway.http.auth import auth
from gateway.http.resources import ext
from gateway.schemas import (
    ListQuery,
    SyntheticAcceptedOut,
    SyntheticDownloadQuery,
    SyntheticJobIn,
    SyntheticJobOut,
    SyntheticJobsOut,
    documented,
)

if TYPE_CHECKING:
    from training.service import TrainingService

bp = APIBlueprint("synthetic", __name__, tag="synthetic data", url_prefix="/v1")
ROLES = ["analyst", "admin"]


def _service() -> TrainingService:
    return ext("training")


@bp.post("/synthetic-jobs")
@bp.auth_required(auth, roles=ROLES)
@bp.input(SyntheticJobIn, arg_name="body")
@bp.doc(summary="Start a synthetic copy of a table; its (ε, δ) is charged before it runs",
        responses={202: documented(SyntheticAcceptedOut, "accepted and charged"), 400: "invalid job",
                   403: "forbidden or budget exhausted", 404: "unknown dataset",
                   429: "over a rate limit, or max_active_jobs_per_analyst jobs are queued or running; nothing charged",
                   503: "the job service is shutting down or its queue is unreachable (unavailable)"})  # fmt: skip
def start_synthetic(body: SyntheticJobIn) -> tuple[dict[str, Any], int]:
    return _service().start_synthetic(g.analyst.name, body.model_dump(exclude_none=True)), 202


@bp.get("/synthetic-jobs")
@bp.auth_required(auth, roles=ROLES)
@bp.input(ListQuery, location="query", arg_name="params")
@bp.doc(summary="Your synthetic jobs, newest first (administrators: every analyst's)",
        responses={200: documented(SyntheticJobsOut, "the jobs")})
def list_synthetic(params: ListQuery) -> dict[str, Any]:
    return {"jobs": _service().synthetic_jobs(g.analyst.name, is_admin=g.analyst.is_admin, limit=params.limit)}


@bp.get("/synthetic-jobs/<job_id>")
@bp.auth_required(auth, roles=ROLES)
@bp.doc(summary="A synthetic job: status, progress, cost, its table and download (your own jobs)",
        responses={200: documented(SyntheticJobOut, "the job"), 404: "not found"})
def synthetic_status(job_id: str) -> dict[str, Any]:
    return _service().synthetic_status(g.analyst.name, job_id, is_admin=g.analyst.is_admin)


@bp.post("/synthetic-jobs/<job_id>/cancel")
@bp.auth_required(auth, roles=ROLES)
@bp.doc(summary="Cancel a synthetic job (its charge stays)", responses={200: documented(SyntheticJobOut, "the job"), 404: "not found"})
def cancel_synthetic(job_id: str) -> dict[str, Any]:
    return _service().cancel(g.analyst.name, job_id, is_admin=g.analyst.is_admin, synthetic=True)


@bp.get("/synthetic-jobs/<job_id>/download")
@bp.auth_required(auth, roles=ROLES)
@bp.input(SyntheticDownloadQuery, location="query", arg_name="params")
@bp.doc(summary="The synthetic rows of a succeeded job: CSV, or Parquet with ?format=parquet",
        responses={200: {"description": "the rows", "content": {
                       "text/csv": {"schema": {"type": "string"}},
                       "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}},
                   404: "not found", 409: "the job has not succeeded (not_ready)"})  # fmt: skip
def download_synthetic(job_id: str, params: SyntheticDownloadQuery) -> Response:
    dataset, table = _service().synthetic_rows(g.analyst.name, job_id, is_admin=g.analyst.is_admin)
    return table_download(dataset, table, params.format)


def table_download(dataset: str, table: str, fmt: str) -> Response:
    """A synthetic table's rows as a file (the console's download too)."""
    import pandas as pd

    from gateway.synthetic_tables import data_path

    path = data_path(ext("gateway").data_dir or ext("settings").data_dir, dataset, table)
    if not path.is_file():  # pragma: no cover - a succeeded job's file is written before it succeeds
        from training.errors import NotFound

        raise NotFound("the synthetic table's rows are gone")
    disposition = {"Content-Disposition": f'attachment; filename="{table}.{fmt}"'}
    if fmt == "parquet":
        return Response(path.read_bytes(), mimetype="application/vnd.apache.parquet", headers=disposition)
    buf = io.StringIO()
    pd.read_parquet(path).to_csv(buf, index=False)
    return Response(buf.getvalue(), mimetype="text/csv", headers=disposition)
