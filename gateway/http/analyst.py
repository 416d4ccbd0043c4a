"""Analyst endpoints: datasets, queries, previews and budgets."""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import g

from gateway.http.auth import auth
from gateway.http.resources import ext
from gateway.catalog import DatasetMeta
from gateway.schemas import BudgetsOut, DatasetsOut, PreviewOut, QueryIn, QueryOut, documented
from gateway.service import QueryRequest

bp = APIBlueprint("analyst", __name__, tag="analyst", url_prefix="/v1")
ROLES = ["analyst", "admin"]


def public_metadata(meta: DatasetMeta) -> dict[str, Any]:
    """What an analyst may know of a dataset: everything declared, except where the data lives."""
    out = meta.model_dump(mode="json")
    for table in out["tables"].values():
        table.pop("source", None)
    out["row_level"] = meta.row_level
    return out


@bp.get("/datasets")
@bp.auth_required(auth, roles=ROLES)
@bp.doc(summary="The datasets you may query, with their public metadata",
        responses={200: documented(DatasetsOut, "your datasets"), 401: "unauthorized"})
def datasets() -> dict[str, Any]:
    return {"datasets": [public_metadata(m) for m in ext("queries").datasets_for(g.analyst)]}


def _request(body: QueryIn) -> QueryRequest:
    target = body.target.model_dump(exclude_none=True) if body.target is not None else None
    return QueryRequest(body.dataset, body.sql, body.epsilon, body.delta, body.request_id,
                        alpha=body.alpha, diagnostics=body.diagnostics, target=target)  # fmt: skip


@bp.post("/queries")
@bp.auth_required(auth, roles=ROLES)
@bp.input(QueryIn, arg_name="body")
@bp.output(QueryOut)
@bp.doc(
    summary="Answer an aggregate query with noise; charged before it is released",
    responses={400: "invalid query, or a target no ε can promise (target_unsupported)", 403: "forbidden or budget exhausted",
               404: "unknown dataset", 409: "request in progress",
               422: "the target is not met even at the largest ε (target_unreachable; best_ci95 says what is); nothing charged",
               504: "the engine query ran past query_timeout_s and was stopped (query_timeout); nothing charged"},
)
def query(body: QueryIn) -> dict[str, Any]:
    result = ext("queries").query(g.analyst.name, _request(body))
    ext("metrics").charged.inc(result["cost"]["epsilon"])
    return result


@bp.post("/queries/preview")
@bp.auth_required(auth, roles=ROLES)
@bp.input(QueryIn, arg_name="body")
@bp.output(PreviewOut)
@bp.doc(summary="Cost and expected intervals of a query; free, reads no data. With target: the smallest ε that meets it",
        responses={400: "invalid query, or a target no ε can promise (target_unsupported)", 404: "unknown dataset",
                   422: "the target is not met even at the largest ε (target_unreachable)"})
def preview(body: QueryIn) -> dict[str, Any]:
    return ext("queries").preview(g.analyst.name, _request(body))


@bp.get("/budget")
@bp.auth_required(auth, roles=ROLES)
@bp.doc(summary="Your spent and remaining budget per dataset, at both levels",
        responses={200: documented(BudgetsOut, "one line per allocation")})
def budget() -> dict[str, Any]:
    return {"budgets": ext("ledger").budgets(g.analyst.name)}
