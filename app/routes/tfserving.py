"""TensorFlow Serving's REST API, so TF Serving clients work unchanged:
POST /v1/models/{name}:predict (signatures serving_default and explain) and
GET /v1/models/{name}."""

from __future__ import annotations

import base64
import binascii
import json
from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from app.deps import ModelDep, PredictDep, get_explain_inference
from app.errors import InvalidJSON, InvalidRequest, NotFound, PayloadTooLarge
from app.images import decode_image
from app.inference import off_loop, run_batched
from app.routes.explain import check_explainable
from app.routes.predict import ERRORS
from app.schemas import ErrorResponse, TFServingResponse
from model import contract
from model.classes import IMAGE_SHAPE, NUM_CLASSES

router = APIRouter(tags=["tensorflow-serving"])

# A 2x2 red PNG and a black 32x32 pixel list: the example must itself be a valid body.
EXAMPLE = {
    "instances": [
        {
            "b64": "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR42mM8oaHBwMDAxMDAwMDAAAAN6gEcJklYAwAAAABJRU5ErkJggg=="
        },
        [[[0, 0, 0]] * 32] * 32,
    ]
}
_PIXELS = {
    "type": "array",
    "minItems": 32,
    "maxItems": 32,
    "description": "32x32x3 whole numbers 0-255, [row][column][R, G, B]",
    "items": {
        "type": "array",
        "minItems": 32,
        "maxItems": 32,
        "items": {
            "type": "array",
            "minItems": 3,
            "maxItems": 3,
            "items": {"type": "number", "multipleOf": 1, "minimum": 0, "maximum": 255},
        },
    },
}
_TARGET = {
    "type": "integer",
    "minimum": contract.TOP_CLASS,
    "maximum": NUM_CLASSES - 1,
    "description": f"signature explain only: the class to explain, {contract.TOP_CLASS} (default) for the top class",
}
_INSTANCE = {
    "oneOf": [
        _PIXELS,
        {
            "type": "object",
            "properties": {
                "b64": {"type": "string", "description": "base64 of an image file"},
                contract.TARGET_CLASS: _TARGET,
            },
            "required": ["b64"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {contract.INPUT_NAME: _PIXELS, contract.TARGET_CLASS: _TARGET},
            "required": [contract.INPUT_NAME],
            "additionalProperties": False,
        },
    ]
}
_INSTANCES = {
    "type": "array",
    "items": _INSTANCE,
    "minItems": 1,
    "description": "at most CIFAR10_MAX_IMAGES_PER_REQUEST (64)",
}
BODY_SCHEMA = {
    "type": "object",
    "properties": {
        "signature_name": {"type": "string", "enum": [contract.SERVING_SIGNATURE, contract.EXPLAIN_SIGNATURE]},
        "instances": _INSTANCES,
        "inputs": {
            "oneOf": [
                _INSTANCES,
                {
                    "type": "object",
                    "properties": {
                        contract.INPUT_NAME: _INSTANCES,
                        contract.TARGET_CLASS: {"type": "array", "items": _TARGET},
                    },
                    "required": [contract.INPUT_NAME],
                    "additionalProperties": False,
                },
            ]
        },
    },
    "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
    "additionalProperties": False,
}
TF_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {
        "model": ErrorResponse,
        "description": "the body is not JSON, or has no non-empty 'instances'/'inputs' list; "
        "or signature_name 'explain' on a model exported without it",
    },
    404: {"model": ErrorResponse, "description": "no model of that name is served here"},
}


ModelName = Annotated[str, Path(description="the served model's name", examples=["cifar10"])]


def _check_name(name: str, served: str) -> None:
    if name != served:
        raise NotFound(f"model {name!r} is not served here; this server serves {served!r}")


def _target(value: Any, where: str) -> int:
    if type(value) is not int or not contract.TOP_CLASS <= value < NUM_CLASSES:
        raise InvalidRequest(
            f"{where}: {contract.TARGET_CLASS} must be an integer class id 0-{NUM_CLASSES - 1}, "
            f"or {contract.TOP_CLASS} for the top class"
        )
    return value


def _instance(instance: Any, index: int, max_pixels: int, explain: bool) -> tuple[np.ndarray, int]:
    """An instance's pixels and target class; the target only in an explain request."""
    if explain and isinstance(instance, dict) and contract.TARGET_CLASS in instance:
        rest = {k: v for k, v in instance.items() if k != contract.TARGET_CLASS}
        target = _target(instance[contract.TARGET_CLASS], f"instances[{index}]")
        return _pixels(rest, index, max_pixels), target
    return _pixels(instance, index, max_pixels), contract.TOP_CLASS


def _pixels(instance: Any, index: int, max_pixels: int) -> np.ndarray:
    where = f"instances[{index}]"
    if isinstance(instance, dict):
        if "b64" in instance and len(instance) == 1:
            try:
                data = base64.b64decode(instance["b64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise InvalidRequest(f"{where}.b64 is not valid base64") from None
            return decode_image(data, max_pixels, where)
        if contract.INPUT_NAME in instance and len(instance) == 1:
            return _pixels(instance[contract.INPUT_NAME], index, max_pixels)
        raise InvalidRequest(
            f"{where}: expected {{'b64': ...}}, {{'{contract.INPUT_NAME}': ...}} or a 32x32x3 pixel list"
        )
    try:
        arr = np.asarray(instance)  # 32x32x3 numbers: 24 KB, not an image-sized copy
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise InvalidRequest(f"{where}: pixel lists must be numbers nested as [32][32][3]") from None
    if arr.shape != IMAGE_SHAPE:
        raise InvalidRequest(f"{where}: expected shape [32, 32, 3], got {list(arr.shape)}")
    # NumPy turns true/false into 1/0, and integers beyond int64 into objects.
    if arr.dtype.kind not in "iuf" or any(type(v) is bool for row in instance for px in row for v in px):
        raise InvalidRequest(f"{where}: pixel values must be integers in 0..255")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 255 or np.any(arr != np.round(arr)):
        raise InvalidRequest(f"{where}: pixel values must be integers in 0..255")
    return arr.astype(np.uint8)


# JSON values (counted as commas and brackets) one instance may take: a 32x32x3 pixel
# list has 3,071 commas and 1,057 brackets. Counting is a fast scan of the bytes; it
# bounds what json.loads, which holds the GIL even in the decode pool, ever parses.
VALUES_PER_INSTANCE = 4200


def parse_request(raw: bytes, max_images: int, max_pixels: int) -> tuple[str, list[tuple[np.ndarray, int]]]:
    """The signature and (image, target class) pairs of a TF Serving request body (the
    target is contract.TOP_CLASS unless an explain request names one); runs in the decode pool."""
    if raw.count(b",") + raw.count(b"[") > max_images * VALUES_PER_INSTANCE:
        raise PayloadTooLarge(f"the body holds more JSON values than {max_images} instances of 32x32x3 pixels")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers over Python's digit limit;
        # RecursionError, nesting deeper than the parser goes.
        raise InvalidJSON(f"the body is not valid JSON: {type(exc).__name__}: {exc}"[:300]) from None
    if not isinstance(body, dict):
        raise InvalidJSON("the body must be a JSON object with 'instances' or 'inputs'")
    unknown = set(body) - {"signature_name", "instances", "inputs"}
    if unknown or ("instances" in body and "inputs" in body):
        raise InvalidJSON(
            "the body takes 'instances' or 'inputs' (not both) and optionally 'signature_name'"
            + (f"; unknown keys: {', '.join(sorted(map(repr, unknown)))}"[:200] if unknown else "")
        )
    signature = body.get("signature_name", contract.SERVING_SIGNATURE)
    if signature not in (contract.SERVING_SIGNATURE, contract.EXPLAIN_SIGNATURE):
        raise InvalidRequest(
            f"signature_name {str(signature)[:100]!r} is not served; use {contract.SERVING_SIGNATURE!r} "
            f"or {contract.EXPLAIN_SIGNATURE!r}"
        )
    explain = signature == contract.EXPLAIN_SIGNATURE
    instances = body.get("instances", body.get("inputs"))
    targets: Any = None
    if isinstance(instances, dict) and explain and set(instances) == {contract.INPUT_NAME, contract.TARGET_CLASS}:
        # Columnar explain: {"image": [...], "target_class": [...]}, one target per image.
        targets = instances[contract.TARGET_CLASS]
        instances = instances[contract.INPUT_NAME]
        if not isinstance(targets, list) or not isinstance(instances, list) or len(targets) != len(instances):
            raise InvalidRequest(f"inputs.{contract.TARGET_CLASS} must be a list with one class per image")
    elif isinstance(instances, dict) and set(instances) == {contract.INPUT_NAME}:
        instances = instances[contract.INPUT_NAME]
    if not isinstance(instances, list) or not instances:
        raise InvalidJSON("expected a non-empty list in 'instances' (or 'inputs')")
    if len(instances) > max_images:
        raise PayloadTooLarge(f"too many instances: {len(instances)}, at most {max_images}")
    items = [_instance(instance, i, max_pixels, explain) for i, instance in enumerate(instances)]
    if targets is not None:
        items = [
            (image, _target(t, f"inputs.{contract.TARGET_CLASS}[{i}]"))
            for i, ((image, _), t) in enumerate(zip(items, targets, strict=True))
        ]
    return signature, items


@router.post(
    "/v1/models/{model_name}:predict",
    response_model=TFServingResponse,
    responses=TF_ERRORS,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": BODY_SCHEMA, "example": EXAMPLE}}}
    },
)
async def tf_serving_predict(model_name: ModelName, request: Request, inference: PredictDep) -> JSONResponse:
    """TF Serving's row (`instances`) or columnar (`inputs`) request format.

    `"signature_name": "explain"` answers the explain signature instead: per instance a
    dict of its outputs (probabilities, target_class, gradcam_<layer>, saliency); an
    instance may name its class as `target_class` (columnar: a list beside `image`)."""
    settings = inference.settings
    _check_name(model_name, inference.model.name)
    raw = await request.body()
    ((signature, items),) = await off_loop(
        inference, [partial(parse_request, raw, settings.max_images_per_request, settings.max_image_pixels)]
    )
    if signature == contract.EXPLAIN_SIGNATURE:
        check_explainable(inference.model)
        explained = await run_batched(await get_explain_inference(request), items, request.receive)
        return JSONResponse({"predictions": [{k: v.tolist() for k, v in row.items()} for row in explained]})
    results = await run_batched(inference, [image for image, _ in items], request.receive)
    return JSONResponse({"predictions": [row.tolist() for row in results]})


@router.get("/v1/models/{model_name}", responses={404: TF_ERRORS[404], 503: ERRORS[503]})
async def model_info(model_name: ModelName, model: ModelDep) -> dict[str, Any]:
    """Name, version, classes, input, feature layers and the model card's metrics,
    plus TF Serving's `model_version_status`."""
    _check_name(model_name, model.name)
    info = model.info()
    info["model_version_status"] = [
        {"version": model.version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    return info
