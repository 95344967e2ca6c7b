"""POST /feature-maps: a single image's intermediate activations, as JSON or a PNG grid."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.errors import InvalidRequest
from app.imaging.channel_grid import channel_grid
from app.imaging.encode import encode_png
from app.serving.model_info import ModelInfo
from app.serving.operations import Operation
from app.web.answers import VALUE_BYTES, check_size, json_answer, png_bytes_bound
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
            f"unknown layer(s) {', '.join(unknown[:8]) or '(none given)'}; valid layers: {', '.join(available)}"
        )
    if len(set(names)) < len(names):
        # Each name would be answered again: a 1.4 KB query built one layer 280 times.
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidRequest(f"layer(s) named more than once: {', '.join(twice)}; name each layer once")
    return names


def _answer_bytes(served: ModelInfo, chosen: list[str]) -> int:
    shapes = {layer.name: layer.shape for layer in served.layers}
    values = sum(int(np.prod(shapes[name])) for name in chosen)
    return values * VALUE_BYTES + png_bytes_bound(32) + 4096  # the input PNG, the prediction


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
        check_size(_answer_bytes(served, chosen), inference.settings.max_answer_bytes, "fewer layers (?layers=)")
    (upload,) = await read_uploads(request, inference, max_files=1, fields=("file",))
    (result,) = await inference.run(Operation.FEATURE_MAPS, [upload.pixels], request)
    if format == "png":
        (png,) = await inference.decode([lambda: encode_png(channel_grid(result[chosen[0]]))])
        return Response(
            png,
            media_type="image/png",
            headers={"X-Layer": chosen[0], "X-Layer-Shape": ",".join(map(str, result[chosen[0]].shape))},
        )

    # A dict, not FeatureMapsResponse: validating ~100k floats through pydantic would
    # cost more than the model run (response_model still documents the shape).
    def build() -> dict[str, Any]:
        return {
            "model": {"name": served.name, "version": served.version},
            "prediction": to_prediction(result["probabilities"], served.classes, upload.filename, top_k),
            "input_png_base64": base64.b64encode(encode_png(upload.pixels)).decode(),
            "layers": [{"name": n, "shape": list(result[n].shape), "values": result[n]} for n in chosen],
        }

    return await json_answer(inference, build)
