"""Liveness, readiness and Prometheus metrics; never behind the API key except metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.errors import NotReady
from app.web.dependencies import ServiceDep
from app.web.schemas import ErrorResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers; touches nothing else."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorResponse, "description": "model not warm or batcher stopped"}})
async def readyz(service: ServiceDep) -> dict[str, Any]:
    """Every model has a version loaded and warm whose batchers run; `model` is the
    default model's newest available version."""
    registry = service.registry
    if not service.ready or registry is None or not registry.ready:
        raise NotReady("model not loaded and warm yet, or shutting down")
    newest = registry.model(None).available()[0]
    return {"status": "ready", "model": {"name": registry.default, "version": str(newest.number)}}


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
