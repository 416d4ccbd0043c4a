"""Request and response bodies of the HTTP API (pydantic; apiflask turns them into the OpenAPI spec)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetIn(_In):
    """Ask by accuracy: the gateway finds the smallest ε (4 significant digits) whose expected 95%
    half-width on `column` is at most the target, from public inputs only, and charges exactly that.
    Give exactly one of `ci95` (an absolute half-width) or `relative` (a fraction of something public:
    for AVG, MEDIAN/quantiles, MIN, MAX and STDDEV the declared range upper - lower of the aggregated
    value, for VARIANCE that range squared, for COUNT `rows`, for SUM `rows` × max(|lower|, |upper|))."""

    column: str = Field(min_length=1, max_length=128, description="an aggregate column of the answer (by its name or alias)")
    ci95: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="the 95% half-width to reach")
    relative: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False, description="the half-width as a fraction of a public scale")
    rows: int | None = Field(
        default=None, ge=1, le=10**12,
        description="a public assumption about a cell's size: AVG's and VARIANCE's half-width depend on the cell's "
        "private count, so the target is met for a cell of this many rows (fewer rows: a wider interval); "
        "what a relative COUNT or SUM target is relative to",
    )  # fmt: skip


class QueryIn(_In):
    """Give exactly one of `epsilon` and `target`."""

    dataset: str = Field(min_length=1, max_length=64)
    sql: str = Field(min_length=1, max_length=20_000)
    epsilon: float | None = Field(default=None, gt=0, le=100, allow_inf_nan=False, description="the ε to spend; or give target")
    delta: float = Field(default=0.0, ge=0, lt=0.001, allow_inf_nan=False)
    request_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    target: TargetIn | None = Field(default=None, description="the accuracy to reach instead of an ε")
    alpha: float = Field(
        default=0.05, ge=1e-6, le=0.5, allow_inf_nan=False,
        description="the per-value intervals miss with probability alpha (0.05: 95% intervals)",
    )  # fmt: skip
    diagnostics: bool = Field(default=False, description="also release noisy counts of what bounding did (charged with the query)")


class AnalystIn(_In):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Literal["analyst", "admin"] = "analyst"
    organisation: str | None = Field(default=None, max_length=64)


class RenewIn(_In):
    """A budget that renews: each UTC calendar `every` may spend this (ε, δ), inside the total."""

    every: Literal["day", "week", "month"]
    epsilon: float = Field(ge=0, le=1000, allow_inf_nan=False, description="what each window may spend")
    delta: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)


class BudgetIn(_In):
    analyst: str = Field(min_length=1, max_length=64)
    dataset: str = Field(min_length=1, max_length=64)
    epsilon: float = Field(ge=0, le=1000, allow_inf_nan=False,
                           description="the total; with `renew`, the cap over all windows together")  # fmt: skip
    delta: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)
    renew: RenewIn | None = Field(default=None, description="renew on a schedule (absent: the allocation does not renew)")


class ListQuery(_In):
    limit: int = Field(default=100, ge=1, le=1000, description="at most this many, newest first")


class LedgerQuery(_In):
    dataset: str | None = None
    analyst: str | None = None
    limit: int = Field(default=1000, ge=1, le=10_000)


class _Out(BaseModel):
    """A response body that apiflask validates and serialises (`@bp.output`): members the handler left
    out stay out (no nulls for what does not apply: `diagnostics` only when asked), and members the
    answer grows pass through instead of being dropped."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set}


class AccuracyOut(_Out):
    mechanism: str
    scale: float | None
    ci95: float | None


class PrivacyOut(_Out):
    epsilon: float
    delta: float


class RemainingOut(_Out):
    analyst: PrivacyOut
    dataset: PrivacyOut


class BoundingOut(_Out):
    """What bounding did to an aggregate column's input: public bounds only."""

    lower: float | None = None
    upper: float | None = None
    max_rows_per_unit: int | None = None
    note: str | None = None


class TargetOut(_Out):
    """A target as asked, with what it means: `half_width` (the target as an absolute 95% half-width)
    and `expected_ci95` (what the solved ε gives, at most half_width; for a cell of `rows` rows)."""

    column: str
    ci95: float | None = None
    relative: float | None = None
    rows: int | None = None
    half_width: float
    expected_ci95: float


class QueryOut(_Out):
    request_id: str
    columns: list[str]
    rows: list[list[Any]]
    accuracy: dict[str, AccuracyOut]
    cost: PrivacyOut
    remaining: RemainingOut
    cached: bool
    intervals: dict[str, list[list[float | None] | None]] | None = Field(
        default=None, description="per column, one [low, high] per row (at level 1 - alpha); null where no interval is stated"
    )
    bounding: dict[str, BoundingOut | None] | None = Field(default=None, description="per column, what bounding did (null for keys and derived columns)")
    level: float | None = Field(default=None, description="the intervals' coverage, 1 - alpha")
    notes: list[str] | None = None
    diagnostics: dict[str, Any] | None = Field(default=None, description="noisy counts of what bounding did; only when asked")
    epsilon: float | None = Field(default=None, description="a target's request: the ε solved (and charged, unless cached)")
    target: TargetOut | None = None


class PreviewOut(_Out):
    cost: PrivacyOut
    accuracy: dict[str, AccuracyOut]
    remaining: RemainingOut
    epsilon: float | None = Field(default=None, description="the ε quoted: as asked, or the smallest that meets the target")
    target: TargetOut | None = None


class Problem(BaseModel):
    """RFC 9457 problem details, with dpgate's stable `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


class TrainingJobIn(_In):
    """A training job. Give `task` (credit_default, fraud) or dataset, table and label."""

    task: str | None = None
    dataset: str | None = Field(default=None, max_length=64)
    table: str | None = Field(default=None, max_length=64)
    label: str | None = Field(default=None, max_length=64)
    positive: str | int | float | bool | None = None
    features: list[str] | None = None
    method: Literal["dpsgd", "logreg", "naive_bayes", "random_forest", "nonprivate", "pate"] = "dpsgd"
    epsilon: float | None = Field(default=None, gt=0, le=100, allow_inf_nan=False)
    delta: float = Field(default=0.0, ge=0, lt=0.001, allow_inf_nan=False)
    params: dict[str, Any] | None = None
    public_table: str | None = Field(default=None, max_length=64)


class AuditIn(_In):
    """A membership-inference audit: reference (shadow) models for the calibrated attack, and a seed."""

    n_reference: int = Field(default=4, ge=0, le=16)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class PredictIn(_In):
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


# Response bodies the handlers build as dicts: documented in the spec (schemathesis checks answers against
# them), never used to serialise. Members a shape may grow are allowed (pydantic's JSON schema does not
# close objects); the members listed without a default are required.


class HealthOut(BaseModel):
    status: Literal["ok"]


class DatasetOut(BaseModel):
    """A dataset's public metadata: everything declared except where its tables live."""

    name: str
    privacy_unit: str | None
    budget: PrivacyOut
    tables: dict[str, dict[str, Any]]
    row_level: bool


class DatasetsOut(BaseModel):
    datasets: list[DatasetOut]


class WindowOut(BaseModel):
    """The current window of a budget that renews (its totals are then the cap over all windows)."""

    every: Literal["day", "week", "month"]
    start: str
    end: str
    epsilon_per_window: float
    epsilon_spent: float
    epsilon_remaining: float
    delta_per_window: float
    delta_spent: float
    delta_remaining: float


class Spending(BaseModel):
    epsilon_total: float
    epsilon_spent: float
    delta_total: float
    delta_spent: float
    window: WindowOut | None = Field(default=None, description="only for a budget that renews on a schedule")


class BudgetLineOut(Spending):
    dataset: str
    dataset_level: Spending


class BudgetsOut(BaseModel):
    budgets: list[BudgetLineOut]


class AnalystOut(BaseModel):
    name: str
    role: Literal["analyst", "admin"]
    organisation: str | None
    key_id: str
    key: str = Field(description="the API key, shown this once; only its hash is stored")


class DatasetRegisteredOut(BaseModel):
    name: str
    version: str
    tables: list[str]


class BudgetWarningOut(BaseModel):
    """Something an administrator should know about an allocation that was nevertheless set."""

    code: Literal["exceeds_dataset_remaining"]
    parameter: Literal["epsilon", "delta"]
    allocation_remaining: float = Field(description="what the allocation leaves the analyst to spend (rounded down)")
    dataset_remaining: float = Field(description="what the dataset's total has left, for every analyst together (rounded down)")
    detail: str


class AllocationOut(BaseModel):
    analyst: str
    dataset: str
    epsilon: float
    delta: float
    renew: RenewIn | None = None
    remaining: RemainingOut
    warnings: list[BudgetWarningOut] = Field(
        description="empty, or why the allocation cannot be spent in full: the dataset's total has less left "
        "(the allocation is set all the same; every charge is checked against both levels)"
    )


class AnalystRecordOut(BaseModel):
    """An analyst as administrators see it: never its key, only the key's non-secret id."""

    name: str
    role: Literal["analyst", "admin"]
    organisation: str | None
    key_id: str
    disabled: bool
    created_at: str


class AnalystsOut(BaseModel):
    analysts: list[AnalystRecordOut]


class KeyRotatedOut(BaseModel):
    name: str
    key_id: str
    key: str = Field(description="the new API key, shown this once; only its hash is stored and the old key no longer works")


class LedgerEntryOut(BaseModel):
    id: int
    at: str
    analyst: str
    dataset: str
    request_id: str | None
    kind: str
    epsilon: float
    delta: float
    sql: str | None = None
    job_id: str | None = None
    mechanisms: list[str] | None = None
    organisation: str | None = None
    rho: float | None = Field(default=None, description="the zCDP ρ a Gaussian charge's (ε, δ) was converted from")


class LedgerOut(BaseModel):
    entries: list[LedgerEntryOut]


class SyntheticJobIn(_In):
    """A private synthetic copy of a table (MST over public domains), charged exactly (ε, δ) before it runs.
    The result is a public table of the same dataset (free to query) and a CSV / Parquet download."""

    dataset: str = Field(max_length=64)
    table: str = Field(max_length=64)
    columns: list[str] | None = Field(default=None, description="default: every declared column with a public domain "
                                      "(declared categories or bounds), the privacy unit and id columns left out")
    epsilon: float = Field(gt=0, le=100, allow_inf_nan=False)
    delta: float | None = Field(default=None, gt=0, lt=0.001, allow_inf_nan=False, description="default 1e-6")
    rows: int | None = Field(default=None, ge=1, le=1_000_000, description="default: a noisy count of the table (no extra cost)")


class SyntheticDownloadQuery(_In):
    format: Literal["csv", "parquet"] = "csv"


class SyntheticJobOut(BaseModel):
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float = Field(ge=0, le=1)
    cost: PrivacyOut
    dataset: str
    source_table: str
    table: str = Field(description="the public table the job registers (free to query)")
    columns: list[str]
    rows: int | None = Field(description="once succeeded")
    download: str | None = Field(description="once succeeded: CSV, or Parquet with ?format=parquet")
    plan: dict[str, Any] | None = None
    skipped: dict[str, str] | None = Field(default=None, description="declared columns without a public domain, and why")
    created_at: str | None = None
    error: str | None = None
    analyst: str | None = Field(default=None, description="administrators only")


class SyntheticJobsOut(BaseModel):
    jobs: list[SyntheticJobOut]


class SyntheticAcceptedOut(BaseModel):
    job_id: str
    cost: PrivacyOut
    status: str
    table: str


class JobAcceptedOut(BaseModel):
    job_id: str
    cost: PrivacyOut | None
    status: str


class JobStatusOut(BaseModel):
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float = Field(ge=0, le=1)
    cost: PrivacyOut | None
    metrics: dict[str, Any] | None
    model_id: str | None
    method: str
    dataset: str
    table: str
    error: str | None = None
    analyst: str | None = Field(default=None, description="administrators only")
    exact_metrics: dict[str, Any] | None = Field(default=None, description="administrators only")


class JobsOut(BaseModel):
    jobs: list[JobStatusOut]


class ModelSummaryOut(BaseModel):
    model_id: str
    job_id: str
    method: str
    dataset: str
    table: str
    cost: PrivacyOut | None
    metrics: dict[str, Any] | None = Field(description="the DP metrics released with the model")
    created_at: str | None
    analyst: str | None = Field(default=None, description="administrators only")


class ModelsOut(BaseModel):
    models: list[ModelSummaryOut]


class ModelCardOut(BaseModel):
    model_id: str
    job_id: str
    method: str
    dataset: str
    table: str


class PredictionOut(BaseModel):
    label: str | int | float | bool | None
    probability: float = Field(ge=0, le=1)
    probabilities: dict[str, float] | None = None


class PredictOut(BaseModel):
    predictions: list[PredictionOut]


class AuditOut(BaseModel):
    model_id: str
    attacks: dict[str, Any]
    ceiling: dict[str, Any]
    plots: list[Any]
    plot_urls: dict[str, str]


_DOCUMENTED: dict[str, type[BaseModel]] = {}


def _ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


# OpenAPI links: which answer gives the id another operation takes (clients and stateful tests follow them)
_LINKS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("/v1/training-jobs", "post", "202"): {
        "JobStatus": {"operationRef": _ref("/v1/training-jobs/{job_id}", "get"), "parameters": {"job_id": "$response.body#/job_id"}},
        "CancelJob": {"operationRef": _ref("/v1/training-jobs/{job_id}/cancel", "post"), "parameters": {"job_id": "$response.body#/job_id"}},
    },
    ("/v1/training-jobs/{job_id}", "get", "200"): {
        "ModelCard": {"operationRef": _ref("/v1/models/{model_id}", "get"), "parameters": {"model_id": "$response.body#/model_id"}},
        "Predict": {"operationRef": _ref("/v1/models/{model_id}/predict", "post"), "parameters": {"model_id": "$response.body#/model_id"}},
        "Audit": {"operationRef": _ref("/v1/admin/models/{model_id}/audit", "post"), "parameters": {"model_id": "$response.body#/model_id"}},
    },
    ("/v1/models/{model_id}", "get", "200"): {
        "Predict": {"operationRef": _ref("/v1/models/{model_id}/predict", "post"), "parameters": {"model_id": "$response.body#/model_id"}},
    },
}


def documented(model: type[BaseModel], description: str) -> dict[str, Any]:
    """A response for `@bp.doc(responses=...)` whose JSON body has `model`'s shape (in the spec only)."""
    _DOCUMENTED[model.__name__] = model
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}


def document_bodies(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the schemas `documented` refers to (and those they nest) to the spec's components, the links
    between operations, and say that a request body is required where an operation has one (every
    handler refuses a missing body)."""
    paths = spec.get("paths", {})
    for item in paths.values():
        for op in item.values():
            if isinstance(op, dict) and "requestBody" in op:
                op["requestBody"]["required"] = True
    for (path, method, status), links in _LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is not None:
            response["links"] = links
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _DOCUMENTED.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for nested, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(nested, definition)
        schemas[name] = schema
    return spec
