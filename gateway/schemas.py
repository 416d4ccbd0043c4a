"""Request and response bodies of the HTTP API (pydantic; apiflask turns them into the OpenAPI spec)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueryIn(_In):
    dataset: str = Field(min_length=1, max_length=64)
    sql: str = Field(min_length=1, max_length=20_000)
    epsilon: float = Field(gt=0, le=100, allow_inf_nan=False)
    delta: float = Field(default=0.0, ge=0, lt=0.001, allow_inf_nan=False)
    request_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")


class AnalystIn(_In):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Literal["analyst", "admin"] = "analyst"
    organisation: str | None = Field(default=None, max_length=64)


class BudgetIn(_In):
    analyst: str = Field(min_length=1, max_length=64)
    dataset: str = Field(min_length=1, max_length=64)
    epsilon: float = Field(ge=0, le=1000, allow_inf_nan=False)
    delta: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)


class LedgerQuery(_In):
    dataset: str | None = None
    analyst: str | None = None
    limit: int = Field(default=1000, ge=1, le=10_000)


class AccuracyOut(BaseModel):
    mechanism: str
    scale: float | None
    ci95: float | None


class PrivacyOut(BaseModel):
    epsilon: float
    delta: float


class RemainingOut(BaseModel):
    analyst: PrivacyOut
    dataset: PrivacyOut


class QueryOut(BaseModel):
    request_id: str
    columns: list[str]
    rows: list[list[Any]]
    accuracy: dict[str, AccuracyOut]
    cost: PrivacyOut
    remaining: RemainingOut
    cached: bool


class PreviewOut(BaseModel):
    cost: PrivacyOut
    accuracy: dict[str, AccuracyOut]
    remaining: RemainingOut


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
