"""Administrator endpoints: analysts, datasets, budgets and the ledger."""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import g

from budget.windows import Renewal
from gateway import registration
from gateway.catalog import DatasetMeta
from gateway.errors import InvalidRequest
from gateway.http.auth import auth
from gateway.http.resources import ext, resources
from gateway.schemas import (
    AllocationOut,
    AnalystIn,
    AnalystOut,
    AnalystRecordOut,
    AnalystsOut,
    BudgetIn,
    DatasetRegisteredOut,
    LedgerOut,
    KeyRotatedOut,
    LedgerQuery,
    documented,
)

bp = APIBlueprint("admin", __name__, tag="admin", url_prefix="/v1/admin")
ADMIN = ["admin"]


@bp.post("/analysts")
@bp.auth_required(auth, roles=ADMIN)
@bp.input(AnalystIn, arg_name="body")
@bp.doc(summary="Create an analyst; its key is shown once",
        responses={201: documented(AnalystOut, "created; the key is shown this once"), 400: "invalid, or the analyst exists",
                   403: "not an administrator"})  # fmt: skip
def create_analyst(body: AnalystIn) -> tuple[dict[str, Any], int]:
    analyst, key = ext("ledger").create_analyst(body.name, role=body.role, organisation=body.organisation, actor=g.analyst.name)
    return {**analyst.to_json(), "key": key}, 201


@bp.get("/analysts")
@bp.auth_required(auth, roles=ADMIN)
@bp.doc(summary="Every analyst and administrator: role, organisation, key id (never the key), disabled",
        responses={200: documented(AnalystsOut, "by name"), 403: "not an administrator"})
def list_analysts() -> dict[str, Any]:
    return {"analysts": [a.to_json() for a in ext("ledger").list_analysts()]}


@bp.post("/analysts/<analyst>/disable")
@bp.auth_required(auth, roles=ADMIN)
@bp.doc(summary="Disable an analyst: its key stops working at once; its allocations, spending and ledger entries stay "
        "(creating it again gives it a new key and its budgets back)",
        responses={200: documented(AnalystRecordOut, "the analyst, disabled"), 400: "your own account (ask another administrator)",
                   403: "not an administrator", 404: "no such analyst"})  # fmt: skip
def disable_analyst(analyst: str) -> dict[str, Any]:
    if analyst == g.analyst.name:
        raise InvalidRequest("you cannot disable your own account: ask another administrator", field="analyst")
    return ext("ledger").disable_analyst(analyst, actor=g.analyst.name).to_json()


@bp.post("/analysts/<analyst>/rotate-key")
@bp.auth_required(auth, roles=ADMIN)
@bp.doc(summary="Give an analyst a new key, shown once; the old key stops working at once",
        responses={200: documented(KeyRotatedOut, "the new key, shown this once"), 403: "not an administrator",
                   404: "no such analyst"})  # fmt: skip
def rotate_key(analyst: str) -> dict[str, Any]:
    ledger = ext("ledger")
    key = ledger.rotate_key(analyst, actor=g.analyst.name)
    rotated = ledger.get_analyst(analyst)
    assert rotated is not None  # rotate_key raised UnknownAnalyst otherwise
    return {"name": rotated.name, "key_id": rotated.key_id, "key": key}


@bp.post("/datasets")
@bp.auth_required(auth, roles=ADMIN)
@bp.input(DatasetMeta, arg_name="body")
@bp.doc(summary="Register a dataset: source, privacy unit, bounds, budget",
        responses={201: documented(DatasetRegisteredOut, "registered"), 400: "invalid metadata"})
def register_dataset(body: DatasetMeta) -> tuple[dict[str, Any], int]:
    res = resources()
    meta = registration.register(res.gateway, res.ledger, res.settings, body, actor=g.analyst.name, unavailable=res.queries.unavailable)
    return {"name": meta.name, "version": res.gateway.version(meta.name), "tables": sorted(meta.tables)}, 201


@bp.put("/budgets")
@bp.auth_required(auth, roles=ADMIN)
@bp.input(BudgetIn, arg_name="body")
@bp.doc(summary="Set an analyst's allocation on a dataset. An allocation the dataset's total cannot honour in full "
        "(it leaves the analyst more than the dataset has left) is set all the same, with a warning: every charge "
        "is checked against both levels, and the dataset's total may be raised later",
        responses={200: documented(AllocationOut, "the allocation, what remains at both levels, and any warnings"),
                   404: "unknown dataset or analyst"})  # fmt: skip
def set_budget(body: BudgetIn) -> dict[str, Any]:
    gateway, ledger = ext("gateway"), ext("ledger")
    dataset = gateway.catalog.get(body.dataset).name
    renew = None if body.renew is None else Renewal.of(body.renew.every, repr(body.renew.epsilon), repr(body.renew.delta))
    ledger.set_allocation(body.analyst, dataset, epsilon=repr(body.epsilon), delta=repr(body.delta), renew=renew,
                          actor=g.analyst.name)  # fmt: skip
    out = {"analyst": body.analyst, "dataset": dataset, "epsilon": body.epsilon, "delta": body.delta,
           "remaining": ledger.remaining(body.analyst, dataset), "warnings": ledger.allocation_warnings(body.analyst, dataset)}
    if body.renew is not None:
        out["renew"] = body.renew.model_dump()
    return out


@bp.get("/ledger")
@bp.auth_required(auth, roles=ADMIN)
@bp.input(LedgerQuery, location="query", arg_name="params")
@bp.doc(summary="The audit log of every charge, newest first", responses={200: documented(LedgerOut, "the entries")})
def ledger_entries(params: LedgerQuery) -> dict[str, Any]:
    return {"entries": ext("ledger").entries(dataset=params.dataset, analyst=params.analyst, limit=params.limit)}
