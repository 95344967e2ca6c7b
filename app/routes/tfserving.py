"""TensorFlow Serving's REST API, so TF Serving clients work unchanged:
POST /v1/models/{name}:predict and GET /v1/models/{name}."""

from __future__ import annotations

import base64
import binascii
import json
from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.deps import ClassifierDep, PredictDep
from app.errors import InvalidJSON, InvalidRequest, NotFound, PayloadTooLarge
from app.images import decode_image
from app.inference import off_loop, run_batched
from app.routes.predict import ERRORS
from app.schemas import TFServingResponse
from model import contract
from model.classes import IMAGE_SHAPE

router = APIRouter(tags=["tensorflow-serving"])

EXAMPLE = {"instances": [{"b64": "<base64 of a PNG or JPEG file>"}, [[[0, 0, 0]] * 32] * 32]}


def _check_name(name: str, served: str) -> None:
    if name != served:
        raise NotFound(f"model {name!r} is not served here; this server serves {served!r}")


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
        raise InvalidRequest(f"{where}: expected {{'b64': ...}}, {{'{contract.INPUT_NAME}': ...}} or a 32x32x3 pixel list")
    try:
        arr = np.asarray(instance, dtype=np.float64)  # 32x32x3 numbers: 24 KB, not an image-sized copy
    except (TypeError, ValueError, OverflowError, RecursionError):
        # OverflowError: integers beyond float range; RecursionError: absurd nesting.
        raise InvalidRequest(f"{where}: pixel lists must be numbers nested as [32][32][3]") from None
    if arr.shape != IMAGE_SHAPE:
        raise InvalidRequest(f"{where}: expected shape [32, 32, 3], got {list(arr.shape)}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 255 or np.any(arr != np.round(arr)):
        raise InvalidRequest(f"{where}: pixel values must be integers in 0..255")
    return arr.astype(np.uint8)


# JSON values (counted as commas and brackets) one instance may take: a 32x32x3 pixel
# list has 3,071 commas and 1,057 brackets. Counting is a fast scan of the bytes; it
# bounds what json.loads, which holds the GIL even in the decode pool, ever parses.
VALUES_PER_INSTANCE = 4200


def parse_instances(raw: bytes, max_images: int, max_pixels: int) -> list[np.ndarray]:
    """The images of a TF Serving request body; runs in the decode pool."""
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
    signature = body.get("signature_name", contract.SERVING_SIGNATURE)
    if signature != contract.SERVING_SIGNATURE:
        raise InvalidRequest(f"signature_name {str(signature)[:100]!r} is not served; use {contract.SERVING_SIGNATURE!r}")
    instances = body.get("instances", body.get("inputs"))
    if isinstance(instances, dict) and set(instances) == {contract.INPUT_NAME}:
        instances = instances[contract.INPUT_NAME]
    if not isinstance(instances, list) or not instances:
        raise InvalidJSON("expected a non-empty list in 'instances' (or 'inputs')")
    if len(instances) > max_images:
        raise PayloadTooLarge(f"too many instances: {len(instances)}, at most {max_images}")
    return [_pixels(instance, i, max_pixels) for i, instance in enumerate(instances)]


@router.post(
    "/v1/models/{model_name}:predict",
    response_model=TFServingResponse,
    responses=ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"example": EXAMPLE}}}},
)
async def tf_serving_predict(model_name: str, request: Request, inference: PredictDep) -> JSONResponse:
    """TF Serving's row (`instances`) or columnar (`inputs`) request format."""
    settings = inference.settings
    _check_name(model_name, inference.classifier.name)
    raw = await request.body()
    (images,) = await off_loop(inference, [partial(parse_instances, raw, settings.max_images_per_request, settings.max_image_pixels)])
    results = await run_batched(inference, images, request.receive)
    return JSONResponse({"predictions": [row.tolist() for row in results]})


@router.get("/v1/models/{model_name}")
async def model_info(model_name: str, classifier: ClassifierDep) -> dict[str, Any]:
    """Name, version, classes, input, feature layers and the model card's metrics,
    plus TF Serving's `model_version_status`."""
    _check_name(model_name, classifier.name)
    info = classifier.info()
    info["model_version_status"] = [{"version": classifier.version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    return info
