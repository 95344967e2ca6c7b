"""What the route modules share: the documented error responses, the multipart body
schemas (uploads are parsed by hand, so FastAPI cannot derive them), TF Serving's three
ways to address a version, and the shaping of probabilities into a prediction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter

from app.web.schemas import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "missing or invalid API key",
        404: "no such model or version, or that version is not AVAILABLE",
        413: "body, file count or image dimensions over the limits",
        415: "not an image",
        422: "empty, corrupt or truncated image, or a bad parameter",
        429: "at capacity (requests in progress or queued images); see Retry-After",
        503: "not ready or shutting down",
        504: "decoding and inference did not finish within the request deadline",
    }.items()
}
TF_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {
        "model": ErrorResponse,
        "description": "the body is not JSON, or has no non-empty 'instances'/'inputs' list; "
        "or signature_name 'explain' on a model exported without it",
    },
    404: {"model": ErrorResponse, "description": "no such model, version or label, or that version is not AVAILABLE"},
}


def multipart_body(properties: dict[str, Any], required: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a multipart body: uploads are parsed by hand (app/web/uploads.py),
    so FastAPI cannot derive their schema."""
    schema = {"type": "object", "properties": properties, "additionalProperties": False, **required}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


IMAGE_FILE = {"type": "string", "format": "binary", "description": "an image file (PNG, JPEG, WebP, GIF, BMP, TIFF)"}
ONE_IMAGE_BODY = multipart_body({"file": {**IMAGE_FILE, "description": "one image"}}, {"required": ["file"]})


VERSION_PARAM = {
    "name": "version",
    "in": "path",
    "required": True,
    "description": "a version number",
    "schema": {"type": "string", "pattern": "^(0|[1-9][0-9]{0,17})$"},  # model.contract.parse_version
}
LABEL_PARAM = {
    "name": "label",
    "in": "path",
    "required": True,
    "description": "a version label",
    "schema": {"type": "string"},
}
# TF Serving's three ways to name what serves a request: the newest available
# version, a version number, or a version label: (path segment, its OpenAPI parameter).
TARGETS: list[tuple[str, dict[str, Any] | None]] = [
    ("", None),
    ("/versions/{version}", VERSION_PARAM),
    ("/labels/{label}", LABEL_PARAM),
]


def add_model_routes(
    router: APIRouter,
    suffix: str,
    endpoint: Any,
    method: str,
    openapi_extra: dict[str, Any] | None = None,
    **options: Any,
) -> None:
    """Register `endpoint` at `/v1/models/{model_name}[/versions/{version}|/labels/{label}]<suffix>`.
    The handler (or its dependency) declares `model_name` only; app.web.dependencies.path_target
    reads the version or label from the path."""
    for target, param in TARGETS:
        extra = dict(openapi_extra or {})
        if param is not None:
            extra["parameters"] = [param]  # added to the handler's own (FastAPI merges lists)
        router.add_api_route(
            f"/v1/models/{{model_name}}{target}{suffix}",
            endpoint,
            methods=[method],
            openapi_extra=extra or None,
            **options,
        )


def to_prediction(probs: np.ndarray, classes: Sequence[str], filename: str | None, top_k: int) -> dict[str, Any]:
    """One image's entry of a response, shaped as `schemas.Prediction`.

    A plain dict, not the pydantic model: the routes return it in a JSONResponse, which
    skips FastAPI's re-validation and re-serialisation of the response (with it, a
    /predict response cost about twice as much to build, by timeit). tests/app check
    the bodies against the schemas.
    """
    order = np.argsort(-probs, kind="stable")
    values = probs.tolist()
    best = int(order[0])
    return {
        "filename": filename,
        "label": classes[best],
        "class_id": best,
        "probabilities": dict(zip(classes, values, strict=True)),
        "top_k": [{"label": classes[i], "probability": values[i]} for i in order[:top_k]],
    }
