from __future__ import annotations

from apiflask import APIBlueprint

from gateway.app import metrics_text
from gateway.schemas import HealthOut, documented

bp = APIBlueprint("health", __name__, tag="health")


@bp.get("/healthz")
@bp.doc(summary="Liveness", responses={200: documented(HealthOut, "alive")})
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/metrics")
@bp.doc(summary="Prometheus metrics (public: labels are route templates and statuses only)",
        responses={200: {"description": "the Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics():  # type: ignore[no-untyped-def]
    return metrics_text()
