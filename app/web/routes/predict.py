"""POST /predict: class probabilities for one or several uploaded images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.serving.operations import Operation
from app.web.dependencies import InferenceDep
from app.web.routes.common import ERRORS, IMAGE_FILE, multipart_body, to_prediction
from app.web.schemas import PredictResponse
from app.web.uploads import read_uploads

router = APIRouter(tags=["inference"])

PREDICT_BODY = multipart_body(
    {
        "file": {**IMAGE_FILE, "description": "one image"},
        "files": {"type": "array", "items": IMAGE_FILE, "description": "several images"},
    },
    {"anyOf": [{"required": ["file"]}, {"required": ["files"]}]},
)


@router.post("/predict", response_model=PredictResponse, openapi_extra=PREDICT_BODY, responses=ERRORS)
async def predict(
    request: Request,
    inference: InferenceDep,
    top_k: Annotated[int, Query(ge=1, le=10, description="how many top classes to list")] = 3,
) -> JSONResponse:
    """Classify the uploaded image(s); predictions come back in upload order."""
    served = inference.model
    uploads = await read_uploads(request, inference, inference.settings.max_images_per_request)
    results = await inference.run(Operation.PREDICT, [u.pixels for u in uploads], request)
    # Built as dicts (see common.to_prediction); response_model still documents them.
    return JSONResponse(
        {
            "model": {"name": served.name, "version": served.version},
            "predictions": [
                to_prediction(p, served.classes, u.filename, top_k) for u, p in zip(uploads, results, strict=True)
            ],
        }
    )
