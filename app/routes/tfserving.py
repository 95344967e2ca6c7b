"""TensorFlow Serving's REST inference API, so TF Serving clients work unchanged:
POST /v1/models/{name}[/versions/{v}|/labels/{label}]:predict (signatures
serving_default and explain) and :classify.
(Status and metadata: app/routes/models.py.)"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from app.deps import PredictDep, SignatureDep
from app.errors import NotReady
from app.inference import off_loop, run_batched
from app.routes.explain import check_explainable
from app.routes.predict import ERRORS
from app.schemas import ErrorResponse, TFServingClassifyResponse, TFServingResponse
from app.tf_requests import BODY_SCHEMA, CLASSIFY_SCHEMA, EXAMPLE, EXAMPLES, parse_examples, parse_instances
from model import contract

router = APIRouter(tags=["tensorflow-serving"])

TF_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {
        "model": ErrorResponse,
        "description": "the body is not JSON, or has no non-empty 'instances'/'inputs' list; "
        "or signature_name 'explain' on a model exported without it",
    },
    404: {"model": ErrorResponse, "description": "no such model, version or label, or that version is not AVAILABLE"},
}


ModelName = Annotated[str, Path(description="the served model's name", examples=["cifar10"])]


VERSION_PARAM = {
    "name": "version",
    "in": "path",
    "required": True,
    "description": "a version number",
    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
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
    The handler declares `model_name` only; app.deps reads the version or label from the path."""
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


async def tf_serving_predict(model_name: ModelName, request: Request, inference: SignatureDep) -> JSONResponse:
    """TF Serving's row (`instances`) or columnar (`inputs`) request format.

    `"signature_name": "explain"` answers the explain signature instead: per instance a
    dict of its outputs (probabilities, target_class, gradcam_<layer>, saliency); an
    instance may name its class as `target_class` (columnar: a list beside `image`)."""
    predict = inference.predict
    settings = predict.settings
    raw = await request.body()
    ((signature, items),) = await off_loop(
        predict, [partial(parse_instances, raw, settings.max_images_per_request, settings.max_image_pixels)]
    )
    if signature == contract.EXPLAIN_SIGNATURE:
        check_explainable(predict.model)
        if inference.explain is None:
            raise NotReady("the explain batcher is not running")
        explained = await run_batched(inference.explain, items, request.receive)
        return JSONResponse({"predictions": [{k: v.tolist() for k, v in row.items()} for row in explained]})
    results = await run_batched(predict, [image for image, _ in items], request.receive)
    return JSONResponse({"predictions": [row.tolist() for row in results]})


async def tf_serving_classify(model_name: ModelName, request: Request, inference: PredictDep) -> JSONResponse:
    """TF Serving's classify request (`examples`) -> [label, score] pairs per example, best first."""
    settings = inference.settings
    raw = await request.body()
    (images,) = await off_loop(
        inference, [partial(parse_examples, raw, settings.max_images_per_request, settings.max_image_pixels)]
    )
    results = await run_batched(inference, images, request.receive)
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
