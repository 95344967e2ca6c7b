"""POST /explain: why the model chose a class for one image: Grad-CAM maps of every
feature layer and gradient saliency, from the SavedModel's `explain` signature, as
JSON (arrays and overlay PNGs) or one map's overlay as a PNG."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.errors import InvalidRequest
from app.imaging.encode import encode_png
from app.imaging.overlay import DEFAULT_SCALE, overlay
from app.serving.operations import Operation
from app.web.answers import VALUE_BYTES, check_size, json_answer, png_bytes_bound
from app.web.dependencies import InferenceDep
from app.web.routes.common import ERRORS, ONE_IMAGE_BODY, to_prediction
from app.web.schemas import ErrorResponse, ExplainResponse
from app.web.uploads import read_uploads
from model import contract

router = APIRouter(tags=["inference"])

EXPLAIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": ErrorResponse, "description": "the served model cannot explain (no explain signature, or jax)"},
    422: {"model": ErrorResponse, "description": ERRORS[422]["description"] + ", an unknown class or map name"},
}


def parse_class(value: str | None, classes: list[str]) -> int:
    """contract.TOP_CLASS without a value; else the class id of a name or of an id
    (ASCII digits, model.contract.parse_number)."""
    if value is None:
        return contract.TOP_CLASS
    if value in classes:
        return classes.index(value)
    number = contract.parse_number(value, len(classes) - 1)
    if number is not None:
        return number
    raise InvalidRequest(
        f"unknown class {value[:50]!r}: give a name ({', '.join(classes)}) or an id 0-{len(classes) - 1}"
    )


def _chosen_map(value: str | None, names: list[str]) -> str | None:
    if value is None:
        return None
    if value not in names:
        raise InvalidRequest(f"unknown map {value[:50]!r}; valid maps: {', '.join(names)}")
    return value


@router.post(
    "/explain",
    response_model=ExplainResponse,
    openapi_extra=ONE_IMAGE_BODY,
    responses={**EXPLAIN_ERRORS, 200: {"content": {"image/png": {}}, "description": "JSON, or one overlay PNG"}},
)
async def explain(
    request: Request,
    inference: InferenceDep,
    class_: Annotated[
        str | None, Query(alias="class", description="the class to explain, by name or id; default the top class")
    ] = None,
    format: Annotated[
        Literal["json", "png"], Query(description="maps as JSON, or one map's overlay as a PNG")
    ] = "json",
    map: Annotated[
        str | None,
        Query(description="png: the map to draw (default Grad-CAM of the last block); json: return only this map"),
    ] = None,
    scale: Annotated[int, Query(ge=1, le=16, description="overlay pixels per input pixel")] = DEFAULT_SCALE,
    top_k: Annotated[int, Query(ge=1, le=10)] = 3,
) -> Response:
    """Grad-CAM and saliency maps for one uploaded image (field `file`), for the top
    class or the one named in `class`."""
    served = inference.model
    inference.require(Operation.EXPLAIN)
    target = parse_class(class_, served.classes)
    names = served.explain_maps()
    chosen = _chosen_map(map, names)
    if format == "json":
        maps = len([chosen] if chosen else names)
        estimate = maps * (32 * 32 * VALUE_BYTES + png_bytes_bound(32 * scale)) + 2 * png_bytes_bound(32)
        check_size(estimate, inference.settings.max_answer_bytes, "one map (?map=) or a smaller ?scale=")
    (upload,) = await read_uploads(request, inference, max_files=1, fields=("file",))
    (result,) = await inference.run(Operation.EXPLAIN, [(upload.pixels, target)], request)
    used = int(result[contract.TARGET_CLASS])
    probs = result[contract.PROBABILITIES]
    if format == "png":
        name = chosen or names[-2]  # Grad-CAM of the last convolutional block
        (png,) = await inference.decode([lambda: encode_png(overlay(upload.pixels, result[name], scale))])
        headers = {
            "X-Map": name,
            "X-Target-Class": str(used),
            "X-Target-Label": served.classes[used],
            "X-Target-Probability": f"{float(probs[used]):.6f}",
        }
        return Response(png, media_type="image/png", headers=headers)

    def one_map(name: str) -> dict[str, Any]:
        method, _, layer = name.partition("_") if name != contract.SALIENCY else (name, "", "")
        heat: np.ndarray = result[name]
        return {
            "name": name,
            "method": method,
            "layer": layer or None,
            "values": np.round(heat, 4),
            "overlay_png_base64": base64.b64encode(encode_png(overlay(upload.pixels, heat, scale))).decode(),
        }

    # A dict for the same reason as /feature-maps: pydantic would cost more than the model.
    def build() -> dict[str, Any]:
        return {
            "model": {"name": served.name, "version": served.version},
            "prediction": to_prediction(probs, served.classes, upload.filename, top_k),
            "target": {
                "class_id": used,
                "label": served.classes[used],
                "probability": float(probs[used]),
                "requested": target != contract.TOP_CLASS,
            },
            "input_png_base64": base64.b64encode(encode_png(upload.pixels)).decode(),
            "maps": [one_map(name) for name in ([chosen] if chosen else names)],
        }

    return await json_answer(inference, build)
