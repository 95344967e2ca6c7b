"""Liveness, readiness and Prometheus metrics; never behind the API key except metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import ServiceDep
from app.errors import NotReady
from app.schemas import ErrorResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers; touches nothing else."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorResponse, "description": "model not warm or batcher stopped"}})
async def readyz(service: ServiceDep) -> dict[str, Any]:
    """The model is loaded and warm, and its batchers run."""
    batchers = (service.predict_batcher, service.feature_batcher, service.explain_batcher)
    if not service.ready or service.model is None or not all(b is not None and b.running for b in batchers):
        raise NotReady("model not loaded and warm yet, or shutting down")
    return {"status": "ready", "model": {"name": service.model.name, "version": service.model.version}}


metrics_router = APIRouter(tags=["operations"])


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "Prometheus text format",
        },
        401: {"model": ErrorResponse, "description": "missing or invalid API key"},
    },
)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
