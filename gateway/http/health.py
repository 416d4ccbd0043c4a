"""Liveness (anyone) and the Prometheus metrics (administrators; see `gateway.http.metrics`)."""
from __future__ import annotations

from apiflask import APIBlueprint

from gateway.http.auth import auth
from gateway.http.metrics import metrics_body
from gateway.http.resources import ext
from gateway.schemas import HealthOut, documented

bp = APIBlueprint("health", __name__, tag="health")
# a blueprint of its own: /metrics takes a key, so it counts against the rate limits like every
# authenticated endpoint (a request without a valid key: against its address), unlike /healthz
metrics_bp = APIBlueprint("metrics", __name__, tag="health")


@bp.get("/healthz")
@bp.doc(summary="Liveness", responses={200: documented(HealthOut, "alive")})
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@metrics_bp.get("/metrics")
@metrics_bp.auth_required(auth, roles=["admin"])
@metrics_bp.doc(summary="Prometheus metrics, for administrators (or without a key on the metrics_listen address); "
                "labels are route templates and statuses only",
                responses={200: {"description": "the Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
                           403: "not an administrator"})  # fmt: skip
def metrics() -> tuple[bytes, int, dict[str, str]]:
    return metrics_body(ext("metrics"))
