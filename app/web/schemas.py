"""Response models: they document the API in /docs and keep responses stable."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str = Field(examples=["cifar10"])
    version: str = Field(examples=["1"])


class TopK(BaseModel):
    label: str = Field(examples=["cat"])
    probability: float = Field(examples=[0.91])


class Prediction(BaseModel):
    filename: str | None = Field(examples=["cat.jpg"])
    label: str = Field(examples=["cat"])
    class_id: int = Field(examples=[3])
    probabilities: dict[str, float]
    top_k: list[TopK]


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction]


class LayerMaps(BaseModel):
    name: str = Field(examples=["conv1"])
    shape: list[int] = Field(examples=[[32, 32, 64]], description="[H, W, C]")
    values: list[list[list[float]]] = Field(description="activations indexed [y][x][channel]")


class FeatureMapsResponse(BaseModel):
    model: ModelRef
    prediction: Prediction
    input_png_base64: str = Field(description="the 32x32 RGB image the model received, as a PNG")
    layers: list[LayerMaps]


class ExplainTarget(BaseModel):
    class_id: int = Field(examples=[3])
    label: str = Field(examples=["cat"])
    probability: float = Field(examples=[0.91])
    requested: bool = Field(description="false when it is the top class because none was asked for")


class ExplainMap(BaseModel):
    name: str = Field(examples=["gradcam_block3"])
    method: str = Field(examples=["gradcam"], description="gradcam or saliency")
    layer: str | None = Field(examples=["block3"], description="the feature layer of a Grad-CAM map")
    values: list[list[float]] = Field(description="32x32 values in 0-1, indexed [y][x]")
    overlay_png_base64: str = Field(description="the map coloured over the 32x32 input, scaled up, as a PNG")


class ExplainResponse(BaseModel):
    model: ModelRef
    prediction: Prediction
    target: ExplainTarget = Field(description="the class the maps explain")
    input_png_base64: str = Field(description="the 32x32 RGB image the model received, as a PNG")
    maps: list[ExplainMap]


class TFServingResponse(BaseModel):
    predictions: list[list[float] | dict[str, int | list[float] | list[list[float]]]] = Field(
        description="per instance: 10 class probabilities; with signature_name 'explain', the signature's "
        "outputs by name (probabilities, target_class, gradcam_<layer> and saliency as 32x32 maps)"
    )


class TFServingClassifyResponse(BaseModel):
    # Lists, not tuple[str, float]: a tuple's schema (prefixItems) is not valid in the
    # OpenAPI document FastAPI writes, and schemathesis refuses it.
    result: list[list[Annotated[list[str | float], Field(min_length=2, max_length=2)]]] = Field(
        description="per example, every class as [label, score], best first"
    )


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_image"])
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ErrorResponseV2(BaseModel):
    """The Open Inference Protocol's error shape, on /v2 routes only."""

    error: str
