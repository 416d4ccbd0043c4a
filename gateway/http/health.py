from __future__ import annotations

from apiflask import APIBlueprint

from gateway.app import metrics_text

bp = APIBlueprint("health", __name__, tag="health")


@bp.get("/healthz")
@bp.doc(summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/metrics")
@bp.doc(summary="Prometheus metrics")
def metrics():  # type: ignore[no-untyped-def]
    return metrics_text()
