"""TensorFlow Serving's gRPC API with its own generated stubs (tensorflow-serving-api), so
TF Serving's clients work unchanged: PredictionService.Predict (signatures
serving_default and explain), Classify and GetModelMetadata, and ModelService.
GetModelStatus, for every served model, version and label. Regress, MultiInference and
HandleReloadConfigRequest answer UNIMPLEMENTED, as TF Serving does for a model without
those signatures (and models change through the config file and the poll here).

Requests run the same operations through the same batchers as the REST routes
(app/web/routes/tfserving.py); status and metadata are app.protocols.tf_serving's JSON
parsed into the messages, so both transports say the same."""

from __future__ import annotations

from functools import partial
from typing import Any, NoReturn

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from app.errors import InvalidRequest, NotReady, PayloadTooLarge
from app.protocols.tf_serving import metadata, version_statuses
from app.rpc import tensors
from app.rpc.calls import Edge, target
from app.rpc.errors import abort
from app.serving.operations import Operation
from model import contract

PREDICTION = "/tensorflow.serving.PredictionService/"
MODEL = "/tensorflow.serving.ModelService/"
INPUTS = {
    contract.SERVING_SIGNATURE: {contract.INPUT_NAME},
    contract.EXPLAIN_SIGNATURE: {contract.INPUT_NAME, contract.TARGET_CLASS},
}


def _outputs(signature: str, wanted: list[str], results: list[Any]) -> dict[str, np.ndarray]:
    if signature == contract.SERVING_SIGNATURE:
        arrays = {contract.PROBABILITIES: np.stack(results)}
    else:
        arrays = {name: np.stack([row[name] for row in results]) for name in results[0]}
    unknown = sorted(set(wanted) - set(arrays))
    if unknown:
        raise InvalidRequest(f"output_filter names {unknown}, not outputs of {signature!r}: {', '.join(arrays)}")
    return {name: arrays[name] for name in wanted} if wanted else arrays


class PredictionService:
    """tensorflow.serving.PredictionService."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge

    async def Predict(self, request: Any, context: Any) -> Any:
        return await self.edge.call(PREDICTION + "Predict", context, partial(self._predict, request, context), True)

    async def _predict(self, request: Any, context: Any) -> Any:
        settings = self.edge.settings
        signature = request.model_spec.signature_name or contract.SERVING_SIGNATURE
        if signature not in INPUTS:
            raise InvalidRequest(
                f"serving signature name {signature[:100]!r} not found; signatures: {', '.join(INPUTS)}"
            )
        unknown = sorted(set(request.inputs) - INPUTS[signature])
        if unknown or contract.INPUT_NAME not in request.inputs:
            raise InvalidRequest(
                f"signature {signature!r} takes inputs {', '.join(sorted(INPUTS[signature]))} (image required)"
                + (f"; unknown: {', '.join(map(repr, unknown))}"[:200] if unknown else "")
            )
        with self.edge.work(context, request.model_spec) as work:
            operation = Operation.PREDICT if signature == contract.SERVING_SIGNATURE else Operation.EXPLAIN
            work.require(operation)
            (images,) = await work.decode(
                [
                    partial(
                        tensors.images,
                        request.inputs[contract.INPUT_NAME],
                        settings.max_images_per_request,
                        settings.max_image_pixels,
                    )
                ]
            )
            if operation is Operation.EXPLAIN:
                given = request.inputs.get(contract.TARGET_CLASS)
                items: list[Any] = list(zip(images, tensors.targets(given, len(images)), strict=True))
            else:
                items = images
            results = await work.submit(operation, items)
            arrays = _outputs(signature, list(request.output_filter), results)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = work.model.name
            response.model_spec.version.value = int(work.model.version)
            response.model_spec.signature_name = signature
            for name, array in arrays.items():
                response.outputs[name].CopyFrom(tensors.to_proto(array))
            return response

    async def Classify(self, request: Any, context: Any) -> Any:
        return await self.edge.call(PREDICTION + "Classify", context, partial(self._classify, request, context), True)

    async def _classify(self, request: Any, context: Any) -> Any:
        settings = self.edge.settings
        signature = request.model_spec.signature_name or contract.SERVING_SIGNATURE
        if signature != contract.SERVING_SIGNATURE:
            raise InvalidRequest(
                f"classify serves the signature {contract.SERVING_SIGNATURE!r}, not {signature[:100]!r}"
            )
        if request.input.WhichOneof("kind") != "example_list":
            raise InvalidRequest("classify takes input.example_list (every example carries its own image)")
        examples = list(request.input.example_list.examples)
        if not examples:
            raise InvalidRequest("input.example_list holds no examples")
        if len(examples) > settings.max_images_per_request:
            raise PayloadTooLarge(f"{len(examples)} examples; at most {settings.max_images_per_request} per request")
        with self.edge.work(context, request.model_spec) as work:
            images = await work.decode(
                [partial(tensors.example_image, e, i, settings.max_image_pixels) for i, e in enumerate(examples)]
            )
            results = await work.submit(Operation.PREDICT, images)
            classes = work.model.classes
            response = classification_pb2.ClassificationResponse()
            response.model_spec.name = work.model.name
            response.model_spec.version.value = int(work.model.version)
            response.model_spec.signature_name = signature
            for row in results:
                ranked = response.result.classifications.add()
                for i in np.argsort(-row, kind="stable"):
                    ranked.classes.add(label=classes[i], score=float(row[i]))
            return response

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:
        return await self.edge.call(PREDICTION + "GetModelMetadata", context, partial(self._metadata, request))

    async def _metadata(self, request: Any) -> Any:
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise InvalidRequest(f"metadata_field must be ['signature_def'] (the one served), got {fields[:5]}")
        registry = self.edge.service.registry
        if registry is None:
            raise NotReady("the models are not loaded yet")
        found = metadata(registry, *target(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        json_format.ParseDict(found["model_spec"], response.model_spec)
        defs = json_format.ParseDict(found["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap())
        response.metadata["signature_def"].Pack(defs)
        return response

    async def Regress(self, request: Any, context: Any) -> NoReturn:
        await abort(
            context, grpc.StatusCode.UNIMPLEMENTED, "the model has no regression signature; use Predict or Classify"
        )

    async def MultiInference(self, request: Any, context: Any) -> NoReturn:
        await abort(context, grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not served; use Predict or Classify")


class ModelService:
    """tensorflow.serving.ModelService: the versions' states."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge

    async def GetModelStatus(self, request: Any, context: Any) -> Any:
        return await self.edge.call(MODEL + "GetModelStatus", context, partial(self._status, request))

    async def _status(self, request: Any) -> Any:
        registry = self.edge.service.registry
        if registry is None:
            raise NotReady("the models are not loaded yet")
        found = version_statuses(registry, *target(request.model_spec))
        return json_format.ParseDict({"model_version_status": found}, get_model_status_pb2.GetModelStatusResponse())

    async def HandleReloadConfigRequest(self, request: Any, context: Any) -> NoReturn:
        await abort(
            context,
            grpc.StatusCode.UNIMPLEMENTED,
            "models change through CIFAR10_MODEL_CONFIG_FILE and its poll here (docs/model-management.md)",
        )


def add_to(server: grpc.aio.Server, edge: Edge) -> None:
    """Register both services on `server`."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(edge), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(edge), server)
