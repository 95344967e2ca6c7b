"""FastAPI dependencies: settings, the loaded service parts, and API-key auth.

All of them are `async def` on purpose: they never block, and FastAPI runs a plain
`def` dependency in a worker thread, which cost five thread hand-offs per request
(15% of the event loop's time under load, measured with py-spy).
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import numpy as np
from fastapi import Depends, Request

from app.batcher import BatchQueue
from app.classifier import ModelInfo
from app.errors import NotReady, Unauthorized
from app.settings import Settings
from app.state import Service


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[Service, Depends(get_service)]


async def get_model(service: ServiceDep) -> ModelInfo:
    if not service.ready or service.model is None:
        raise NotReady("the model is not loaded yet")
    return service.model


R = TypeVar("R")


@dataclass(frozen=True)
class Inference(Generic[R]):
    """What an inference route needs, resolved by one dependency. FastAPI solves each
    dependency node per request (12% of the event loop's time under load, py-spy), and
    settings + service + model + batcher were four nodes on the hottest route."""

    settings: Settings
    model: ModelInfo
    batcher: BatchQueue[Any, R]  # items: uint8 images, or (image, target class) pairs for explain
    decoder: Executor
    deadline: float  # event-loop time by which decoding and inference must be done (504 after)


def _inference(request: Request, batcher: BatchQueue[Any, R] | None) -> Inference[R]:
    service: Service = request.app.state.service
    if not service.ready or service.model is None or batcher is None or service.decoder is None:
        raise NotReady("the service is not ready")
    settings: Settings = request.app.state.settings
    deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
    return Inference(settings, service.model, batcher, service.decoder, deadline)


async def get_predict_inference(request: Request) -> Inference[np.ndarray]:
    return _inference(request, request.app.state.service.predict_batcher)


async def get_feature_inference(request: Request) -> Inference[dict[str, np.ndarray]]:
    return _inference(request, request.app.state.service.feature_batcher)


async def get_explain_inference(request: Request) -> Inference[dict[str, np.ndarray]]:
    # The batcher's items are (image, target class) pairs; Inference names the result type.
    return _inference(request, request.app.state.service.explain_batcher)


ModelDep = Annotated[ModelInfo, Depends(get_model)]
PredictDep = Annotated[Inference[np.ndarray], Depends(get_predict_inference)]
FeatureMapsDep = Annotated[Inference[dict[str, np.ndarray]], Depends(get_feature_inference)]
ExplainDep = Annotated[Inference[dict[str, np.ndarray]], Depends(get_explain_inference)]


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """With keys configured, accept `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    if not settings.api_keys:
        return
    auth = request.headers.get("authorization", "")
    offered = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    # Compare against every key in constant time, so timing reveals nothing.
    if not any(secrets.compare_digest(offered.encode(), key.encode()) for key in settings.api_keys):
        raise Unauthorized("missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
