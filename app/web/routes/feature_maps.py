"""POST /feature-maps: a single image's intermediate activations, as JSON or a PNG grid."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from app.errors import InvalidRequest
from app.imaging.channel_grid import channel_grid
from app.imaging.encode import encode_png
from app.serving.operations import Operation
from app.web.dependencies import InferenceDep
from app.web.routes.common import ERRORS, ONE_IMAGE_BODY, to_prediction
from app.web.schemas import FeatureMapsResponse
from app.web.uploads import read_uploads

router = APIRouter(tags=["inference"])


def _select_layers(requested: str | None, available: list[str]) -> list[str]:
    if not requested:
        return available
    names = [n.strip() for n in requested.split(",") if n.strip()]
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise InvalidRequest(
            f"unknown layer(s) {', '.join(unknown) or '(none given)'}; valid layers: {', '.join(available)}"
        )
    return names


@router.post(
    "/feature-maps",
    response_model=FeatureMapsResponse,
    openapi_extra=ONE_IMAGE_BODY,
    responses={**ERRORS, 200: {"content": {"image/png": {}}, "description": "JSON, or a PNG grid with format=png"}},
)
async def feature_maps(
    request: Request,
    inference: InferenceDep,
    layers: Annotated[str | None, Query(description="comma-separated layer names; default all")] = None,
    layer: Annotated[str | None, Query(description="format=png: the layer to draw; default the first")] = None,
    format: Annotated[Literal["json", "png"], Query(description="json values, or one layer as a PNG grid")] = "json",
    top_k: Annotated[int, Query(ge=1, le=10)] = 3,
) -> Response:
    """Activations of the named conv layers for one uploaded image (field `file`)."""
    served = inference.model
    available = served.layer_names()
    if format == "png":
        chosen = _select_layers(layer, available)[:1] if layer else available[:1]
    else:
        chosen = _select_layers(layers, available)
    (upload,) = await read_uploads(request, inference, max_files=1, fields=("file",))
    (result,) = await inference.run(Operation.FEATURE_MAPS, [upload.pixels], request)
    if format == "png":
        png = encode_png(channel_grid(result[chosen[0]]))
        return Response(
            png,
            media_type="image/png",
            headers={"X-Layer": chosen[0], "X-Layer-Shape": ",".join(map(str, result[chosen[0]].shape))},
        )
    # A dict, not FeatureMapsResponse: validating ~100k floats through pydantic would
    # cost more than the model run (response_model still documents the shape).
    return JSONResponse(
        {
            "model": {"name": served.name, "version": served.version},
            "prediction": to_prediction(result["probabilities"], served.classes, upload.filename, top_k),
            "input_png_base64": base64.b64encode(encode_png(upload.pixels)).decode(),
            "layers": [{"name": n, "shape": list(result[n].shape), "values": result[n].tolist()} for n in chosen],
        }
    )
