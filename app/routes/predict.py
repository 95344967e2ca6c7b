"""POST /predict: class probabilities for one or several uploaded images."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.deps import PredictDep
from app.errors import InvalidRequest
from app.inference import run_batched, to_prediction
from app.schemas import ErrorResponse, PredictResponse
from app.uploads import read_uploads

router = APIRouter(tags=["inference"])


def multipart_body(properties: dict[str, Any], required: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a multipart body: uploads are parsed by hand (app/uploads.py),
    so FastAPI cannot derive their schema."""
    schema = {"type": "object", "properties": properties, "additionalProperties": False, **required}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


IMAGE_FILE = {"type": "string", "format": "binary", "description": "an image file (PNG, JPEG, WebP, GIF, BMP, TIFF)"}
PREDICT_BODY = multipart_body(
    {
        "file": {**IMAGE_FILE, "description": "one image"},
        "files": {"type": "array", "items": IMAGE_FILE, "description": "several images"},
    },
    {"anyOf": [{"required": ["file"]}, {"required": ["files"]}]},
)


def reject_unknown_query(request: Request, allowed: frozenset[str]) -> None:
    """422 for query parameters the route does not take, as the schema says: a typo
    such as `topk=5` would otherwise be ignored in silence."""
    unknown = request.query_params.keys() - allowed
    if unknown:
        raise InvalidRequest(
            f"unknown query parameter(s) {', '.join(sorted(map(repr, unknown)))[:200]}; this route takes {', '.join(sorted(allowed))}"
        )


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


PREDICT_QUERY = frozenset({"top_k", "model", "version"})
# Read by app.deps (which leases the version); declared on the routes for the schema.
ModelQuery = Annotated[str | None, Query(description="a served model's name; default the default model")]
VersionQuery = Annotated[
    int | None, Query(ge=0, le=10**18, description="a version of that model; default its newest available")
]


@router.post("/predict", response_model=PredictResponse, openapi_extra=PREDICT_BODY, responses=ERRORS)
async def predict(
    request: Request,
    inference: PredictDep,
    top_k: Annotated[int, Query(ge=1, le=10, description="how many top classes to list")] = 3,
    model: ModelQuery = None,
    version: VersionQuery = None,
) -> JSONResponse:
    """Classify the uploaded image(s); predictions come back in upload order."""
    reject_unknown_query(request, PREDICT_QUERY)
    settings, served = inference.settings, inference.model
    uploads = await read_uploads(request, inference, settings.max_images_per_request)
    results = await run_batched(inference, [u.pixels for u in uploads], request.receive)
    # Built as dicts (see inference.to_prediction); response_model still documents them.
    return JSONResponse(
        {
            "model": {"name": served.name, "version": served.version},
            "predictions": [
                to_prediction(p, served.classes, u.filename, top_k) for u, p in zip(uploads, results, strict=True)
            ],
        }
    )
