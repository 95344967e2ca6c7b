"""FastAPI dependencies: settings, the loaded service parts, and API-key auth.

All of them are `async def` on purpose: they never block, and FastAPI runs a plain
`def` dependency in a worker thread, which cost five thread hand-offs per request
(15% of the event loop's time under load, measured with py-spy).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import numpy as np
from fastapi import Depends, Request

from app.batcher import BatchQueue
from app.classifier import ModelInfo
from app.errors import APIError, InvalidRequest, NotFound, NotReady, Unauthorized
from app.registry import Host, Registry
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


async def get_registry(service: ServiceDep) -> Registry:
    if not service.ready or service.registry is None:
        raise NotReady("the models are not loaded yet")
    return service.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


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


def _number(text: str | None, error: type[APIError], what: str) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise error(f"{what} must be a version number (a whole number), got {text[:40]!r}")
    return int(text)


def requested(request: Request) -> tuple[str | None, int | None, str | None]:
    """(model, version, label) that the request names: TF Serving's path
    (`/v1/models/{model_name}[/versions/{version}|/labels/{label}]`) or the `model` and
    `version` query parameters. None: the default model, its newest available version."""
    path = request.path_params
    if "model_name" in path:
        return path["model_name"], _number(path.get("version"), NotFound, "the path's version"), path.get("label")
    query = request.query_params
    return query.get("model"), _number(query.get("version"), InvalidRequest, "the query's version"), None


@contextmanager
def _leased(request: Request) -> Iterator[tuple[Host, Executor]]:
    """The version the request names, and the decode pool, held for the request's whole
    duration, so the version it started on is not unloaded under it (app.registry)."""
    service: Service = request.app.state.service
    if not service.ready or service.registry is None or service.decoder is None:
        raise NotReady("the service is not ready")
    registry = service.registry
    version = registry.acquire(*requested(request))
    try:
        assert version.host is not None  # acquire hands out AVAILABLE versions only
        yield version.host, service.decoder
    finally:
        registry.release(version)


def _inference(request: Request, model: ModelInfo, batcher: BatchQueue[Any, R], decoder: Executor) -> Inference[R]:
    settings: Settings = request.app.state.settings
    deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
    return Inference(settings, model, batcher, decoder, deadline)


async def get_predict_inference(request: Request) -> AsyncIterator[Inference[np.ndarray]]:
    with _leased(request) as (host, decoder):
        yield _inference(request, host.info, host.predict_batcher, decoder)


async def get_feature_inference(request: Request) -> AsyncIterator[Inference[dict[str, np.ndarray]]]:
    with _leased(request) as (host, decoder):
        yield _inference(request, host.info, host.feature_batcher, decoder)


async def get_explain_inference(request: Request) -> AsyncIterator[Inference[dict[str, np.ndarray]]]:
    # The batcher's items are (image, target class) pairs; Inference names the result type.
    with _leased(request) as (host, decoder):
        if host.explain_batcher is None:
            raise NotReady("the explain batcher is not running")
        yield _inference(request, host.info, host.explain_batcher, decoder)


@dataclass(frozen=True)
class SignatureInference:
    """TF Serving's :predict, whose body names the signature: both batchers of one leased
    version (`explain` None where the host has no explain batcher)."""

    predict: Inference[np.ndarray]
    explain: Inference[dict[str, np.ndarray]] | None


async def get_signature_inference(request: Request) -> AsyncIterator[SignatureInference]:
    with _leased(request) as (host, decoder):
        explain = host.explain_batcher
        yield SignatureInference(
            _inference(request, host.info, host.predict_batcher, decoder),
            None if explain is None else _inference(request, host.info, explain, decoder),
        )


PredictDep = Annotated[Inference[np.ndarray], Depends(get_predict_inference)]
FeatureMapsDep = Annotated[Inference[dict[str, np.ndarray]], Depends(get_feature_inference)]
ExplainDep = Annotated[Inference[dict[str, np.ndarray]], Depends(get_explain_inference)]
SignatureDep = Annotated[SignatureInference, Depends(get_signature_inference)]


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """With keys configured, accept `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    if not settings.api_keys:
        return
    auth = request.headers.get("authorization", "")
    offered = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    # Compare against every key in constant time, so timing reveals nothing.
    if not any(secrets.compare_digest(offered.encode(), key.encode()) for key in settings.api_keys):
        raise Unauthorized("missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
