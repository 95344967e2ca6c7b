"""The Open Inference Protocol over REST (KServe v2; Triton's and MLServer's HTTP API),
so `tritonclient.http` and KServe's clients work unchanged: server and model metadata,
liveness and readiness, and inference with JSON or binary tensor data. Errors on these
routes have the protocol's shape, `{"error": "<message>"}` (app/web/error_handlers.py).
What the tensors mean: app/protocols/open_inference.py."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from app.errors import InvalidRequest, NotReady
from app.protocols import open_inference as v2
from app.protocols.tf_serving import leased_info
from app.protocols.v2_inputs import parse_request
from app.serving.host import running
from app.serving.operations import Operation
from app.serving.registry import State
from app.web.answers import VALUE_BYTES, check_size
from app.web.dependencies import ModelName, PathInferenceDep, RegistryDep, ServiceDep, SettingsDep, path_target
from app.web.routes.common import VERSION_PARAM
from app.web.schemas import ErrorResponseV2
from model import contract

router = APIRouter(tags=["open-inference-protocol"])
# Liveness and readiness: never behind the API key, as /healthz and /readyz.
health_router = APIRouter(tags=["open-inference-protocol"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponseV2, "description": text}
    for code, text in {
        400: "a bad request: the message names the input or output and what was expected; or not ready",
        401: "missing or invalid API key",
        404: "no such model or version",
        413: "body or image count over the limits",
        429: "at capacity; see Retry-After",
        503: "shutting down",
        504: "not finished within the request deadline",
    }.items()
}
VERSIONS = ("", "/versions/{version}")


@router.get("/v2", responses=ERRORS)
async def server_metadata() -> dict[str, Any]:
    """The server's name, version and the protocol extensions it supports."""
    return {"name": v2.SERVER_NAME, "version": "0.1.0", "extensions": v2.EXTENSIONS}


@health_router.get("/v2/health/live", responses=ERRORS)
async def live() -> dict[str, bool]:
    """The process answers (200); touches nothing else."""
    return {"live": True}


@health_router.get("/v2/health/ready", responses=ERRORS)
async def ready(service: ServiceDep) -> dict[str, bool]:
    """200 once every model has a version loaded and warm; else 400, as the protocol
    says a false health answer is a 4xx."""
    if not service.ready or service.registry is None or not service.registry.ready:
        raise InvalidRequest("not ready: the models are not loaded and warm yet, or the server is shutting down")
    return {"ready": True}


async def model_metadata(
    model_name: ModelName, request: Request, registry: RegistryDep, settings: SettingsDep
) -> dict[str, Any]:
    """The model's inputs and outputs, and its available versions (or the named one)."""
    name, version, _ = path_target(request)
    info, number = leased_info(registry, name, version, None)
    versions = [str(v.number) for v in registry.model(name).available()] if version is None else [str(number)]
    return v2.model_metadata(info, versions, settings.runtime)


async def model_ready(model_name: ModelName, request: Request, service: ServiceDep) -> dict[str, Any]:
    """200 if the model (or the named version) is AVAILABLE; 400 if not yet or no longer."""
    if not service.ready or service.registry is None:
        raise NotReady("the models are not loaded yet")
    name, version, _ = path_target(request)
    found = service.registry.model(name).find(version)  # NotFound for an unknown model or version
    if found.state is not State.AVAILABLE or found.host is None or not running(found.host):
        raise InvalidRequest(f"version {found.number} of model {name!r} is {found.state.value}, not ready")
    return {"name": name, "ready": True}


async def infer(request: Request, inference: PathInferenceDep) -> Response:
    """Inference: the `image` input as UINT8 [N, 32, 32, 3] or BYTES [N] of image files,
    optionally `target_class` INT32 [N]; outputs by name (default `probabilities`), as
    JSON or binary data (the binary tensor data extension)."""
    settings, info = inference.settings, inference.model
    raw = await request.body()
    length = request.headers.get(v2.HEADER_LENGTH)
    header_length = contract.parse_number(length, 1 << 62) if length is not None else None
    if length is not None and header_length is None:
        raise InvalidRequest(f"{v2.HEADER_LENGTH} must be a whole number of bytes (ASCII digits)")
    (parsed,) = await inference.decode(
        [partial(parse_request, raw, header_length, settings.max_images_per_request, settings.max_image_pixels)]
    )
    operations = v2.operations_for(info, [name for name, _ in parsed.outputs])
    shapes = v2.output_shapes(info)
    estimate = sum(
        len(parsed.images) * int(np.prod(shapes[name][1][1:])) * (4 if binary else VALUE_BYTES)
        for name, binary in parsed.outputs
    )
    check_size(estimate, settings.max_answer_bytes, "fewer outputs or images, or binary_data outputs")
    for operation in operations:
        inference.require(operation)  # before any runs: one answer, not a half-done request
    items: dict[Operation, list[Any]] = {
        Operation.PREDICT: parsed.images,
        Operation.FEATURE_MAPS: parsed.images,
        Operation.EXPLAIN: list(zip(parsed.images, parsed.targets, strict=True)),
    }
    results = await asyncio.gather(*(inference.run(op, items[op], request) for op in operations))
    arrays: dict[str, Any] = {}
    for operation, result in zip(operations, results, strict=True):
        arrays.update(v2.gather(operation, result))
    ((body, header_length),) = await inference.decode([partial(v2.response, info, parsed.id, parsed.outputs, arrays)])
    if header_length is None:
        return Response(body, media_type="application/json")
    return Response(body, media_type="application/octet-stream", headers={v2.HEADER_LENGTH: str(header_length)})


def _add(suffix: str, endpoint: Any, method: str, openapi_extra: dict[str, Any] | None = None, **options: Any) -> None:
    for versions in VERSIONS:
        extra = dict(openapi_extra or {})
        if versions:  # the handlers read it from the path (path_target): the schema must still say so
            extra["parameters"] = [VERSION_PARAM]
        router.add_api_route(
            f"/v2/models/{{model_name}}{versions}{suffix}",
            endpoint,
            methods=[method],
            responses=ERRORS,
            openapi_extra=extra or None,
            **options,
        )


_add("", model_metadata, "GET")
_add("/ready", model_ready, "GET")
_add(
    "/infer",
    infer,
    "POST",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the v2 inference request (JSON), or with the binary tensor data extension "
            "its JSON header (Inference-Header-Content-Length bytes) followed by the inputs' binary data",
            "content": {"application/json": {"schema": {"type": "object"}}, "application/octet-stream": {}},
        }
    },
    response_class=Response,
)
