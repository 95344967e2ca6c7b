"""TensorFlow Serving's REST inference API, so TF Serving clients work unchanged:
POST /v1/models/{name}[/versions/{v}|/labels/{label}]:predict (signatures
serving_default and explain) and :classify.
(Status and metadata: app/web/routes/models.py.)"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.serving.operations import Operation
from app.web.answers import VALUE_BYTES, check_size, json_answer
from app.web.dependencies import PathInferenceDep
from app.web.routes.common import TF_ERRORS, add_model_routes
from app.web.schemas import TFServingClassifyResponse, TFServingResponse
from app.web.tfserving_bodies import BODY_SCHEMA, CLASSIFY_SCHEMA, EXAMPLE, EXAMPLES, parse_examples, parse_instances
from model import contract

router = APIRouter(tags=["tensorflow-serving"])


async def tf_serving_predict(request: Request, inference: PathInferenceDep) -> Response:
    """TF Serving's row (`instances`) or columnar (`inputs`) request format.

    `"signature_name": "explain"` answers the explain signature instead: per instance a
    dict of its outputs (probabilities, target_class, gradcam_<layer>, saliency); an
    instance may name its class as `target_class` (columnar: a list beside `image`)."""
    settings = inference.settings
    raw = await request.body()
    ((signature, items),) = await inference.decode(
        [partial(parse_instances, raw, settings.max_images_per_request, settings.max_image_pixels)]
    )
    if signature == contract.EXPLAIN_SIGNATURE:
        inference.require(Operation.EXPLAIN)
        maps = len(inference.model.layers) + 1  # Grad-CAM per feature layer, and saliency
        per_row = (maps * 32 * 32 + len(inference.model.classes) + 1) * VALUE_BYTES
        check_size(len(items) * per_row, settings.max_answer_bytes, "fewer instances")
        explained = await inference.run(Operation.EXPLAIN, items, request)
        return await json_answer(inference, lambda: {"predictions": explained})
    results = await inference.run(Operation.PREDICT, [image for image, _ in items], request)
    return JSONResponse({"predictions": [row.tolist() for row in results]})


async def tf_serving_classify(request: Request, inference: PathInferenceDep) -> JSONResponse:
    """TF Serving's classify request (`examples`) -> [label, score] pairs per example, best first."""
    settings = inference.settings
    raw = await request.body()
    (images,) = await inference.decode(
        [partial(parse_examples, raw, settings.max_images_per_request, settings.max_image_pixels)]
    )
    results = await inference.run(Operation.PREDICT, images, request)
    classes = inference.model.classes
    return JSONResponse(
        {"result": [[[classes[i], float(row[i])] for i in np.argsort(-row, kind="stable")] for row in results]}
    )


def _body(schema: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema, "example": example}}}}


add_model_routes(
    router,
    ":predict",
    tf_serving_predict,
    "POST",
    _body(BODY_SCHEMA, EXAMPLE),
    response_model=TFServingResponse,
    responses=TF_ERRORS,
)
add_model_routes(
    router,
    ":classify",
    tf_serving_classify,
    "POST",
    _body(CLASSIFY_SCHEMA, EXAMPLES),
    response_model=TFServingClassifyResponse,
    responses=TF_ERRORS,
)
