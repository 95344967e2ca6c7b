"""TensorFlow Serving's REST API, so TF Serving clients work unchanged:
POST /v1/models/{name}:predict and GET /v1/models/{name}."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.deps import ModelDep, PredictDep
from app.errors import InvalidJSON, InvalidRequest, NotFound, PayloadTooLarge
from app.images import decode_image
from app.inference import run_batched
from app.routes.predict import ERRORS
from app.schemas import TFServingResponse
from app.settings import Settings
from model import contract
from model.classes import IMAGE_SHAPE

router = APIRouter(tags=["tensorflow-serving"])

EXAMPLE = {"instances": [{"b64": "<base64 of a PNG or JPEG file>"}, [[[0, 0, 0]] * 32] * 32]}


def _check_name(name: str, served: str) -> None:
    if name != served:
        raise NotFound(f"model {name!r} is not served here; this server serves {served!r}")


def _pixels(instance: Any, index: int, settings: Settings) -> np.ndarray:
    where = f"instances[{index}]"
    if isinstance(instance, dict):
        if "b64" in instance and len(instance) == 1:
            try:
                data = base64.b64decode(instance["b64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise InvalidRequest(f"{where}.b64 is not valid base64") from None
            return decode_image(data, settings.max_image_pixels, where)
        if contract.INPUT_NAME in instance and len(instance) == 1:
            return _pixels(instance[contract.INPUT_NAME], index, settings)
        raise InvalidRequest(f"{where}: expected {{'b64': ...}}, {{'{contract.INPUT_NAME}': ...}} or a 32x32x3 pixel list")
    try:
        arr = np.asarray(instance, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{where}: pixel lists must be numbers nested as [32][32][3]") from None
    if arr.shape != IMAGE_SHAPE:
        raise InvalidRequest(f"{where}: expected shape [32, 32, 3], got {list(arr.shape)}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 255 or np.any(arr != np.round(arr)):
        raise InvalidRequest(f"{where}: pixel values must be integers in 0..255")
    return arr.astype(np.uint8)


@router.post(
    "/v1/models/{model_name}:predict",
    response_model=TFServingResponse,
    responses=ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"example": EXAMPLE}}}},
)
async def tf_serving_predict(model_name: str, request: Request, inference: PredictDep) -> JSONResponse:
    """TF Serving's row (`instances`) or columnar (`inputs`) request format."""
    settings = inference.settings
    _check_name(model_name, inference.model.name)
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidJSON(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidJSON("the body must be a JSON object with 'instances' or 'inputs'")
    signature = body.get("signature_name", contract.SERVING_SIGNATURE)
    if signature != contract.SERVING_SIGNATURE:
        raise InvalidRequest(f"signature_name {signature!r} is not served; use {contract.SERVING_SIGNATURE!r}")
    instances = body.get("instances", body.get("inputs"))
    if isinstance(instances, dict) and set(instances) == {contract.INPUT_NAME}:
        instances = instances[contract.INPUT_NAME]
    if not isinstance(instances, list) or not instances:
        raise InvalidJSON("expected a non-empty list in 'instances' (or 'inputs')")
    if len(instances) > settings.max_images_per_request:
        raise PayloadTooLarge(f"too many instances: {len(instances)}, at most {settings.max_images_per_request}")
    images = [_pixels(instance, i, settings) for i, instance in enumerate(instances)]
    results = await run_batched(inference.batcher, images, settings)
    return JSONResponse({"predictions": [row.tolist() for row in results]})


@router.get("/v1/models/{model_name}")
async def model_info(model_name: str, model: ModelDep) -> dict[str, Any]:
    """Name, version, classes, input, feature layers and the model card's metrics,
    plus TF Serving's `model_version_status`."""
    _check_name(model_name, model.name)
    info = model.info()
    info["model_version_status"] = [{"version": model.version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    return info
