"""POST /predict: class probabilities for one or several uploaded images."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.deps import PredictDep
from app.inference import run_batched, to_prediction
from app.schemas import ErrorResponse, PredictResponse
from app.uploads import read_uploads

router = APIRouter(tags=["inference"])

MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "one image"},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}, "description": "several images"},
                    },
                }
            }
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "missing or invalid API key", 413: "body, file count or image dimensions over the limits",
        415: "not an image", 422: "empty, corrupt or truncated image, or a bad parameter",
        429: "queue full; see Retry-After", 503: "not ready or shutting down", 504: "inference deadline passed",
    }.items()
}


@router.post("/predict", response_model=PredictResponse, openapi_extra=MULTIPART_BODY, responses=ERRORS)
async def predict(
    request: Request,
    inference: PredictDep,
    top_k: Annotated[int, Query(ge=1, le=10, description="how many top classes to list")] = 3,
) -> JSONResponse:
    """Classify the uploaded image(s); predictions come back in upload order."""
    settings, classifier = inference.settings, inference.classifier
    uploads = await read_uploads(request, inference, settings.max_images_per_request)
    results = await run_batched(inference, [u.pixels for u in uploads], request.receive)
    # Built as dicts (see inference.to_prediction); response_model still documents them.
    return JSONResponse({
        "model": {"name": classifier.name, "version": classifier.version},
        "predictions": [to_prediction(p, classifier.classes, u.filename, top_k) for u, p in zip(uploads, results, strict=True)],
    })
