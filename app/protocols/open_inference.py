"""The Open Inference Protocol's (KServe v2: Triton, MLServer, KServe) view of a served
version: its metadata (inputs and outputs as named tensors), which operations a
request's outputs need, and the response, as JSON or with the binary tensor data
extension. The request's inputs: app.protocols.v2_inputs.

Outputs: `probabilities` (FP32 [N, 10]) from any operation; a feature layer by its name
(FP32 [N, H, W, C], the feature_maps operation); the explanation's `gradcam_<layer>`
and `saliency` maps (FP32 [N, 32, 32]) and `target_class` (INT32 [N], the explain
operation). A request that names none gets `probabilities` only: the protocol would
return every output, but the maps cost several times the prediction, so they are
computed only when asked for by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.errors import InvalidRequest
from app.protocols.json_writer import render
from app.serving.model_info import ModelInfo
from app.serving.operations import Operation
from model import contract
from model.classes import IMAGE_SHAPE

SERVER_NAME = "cifar10-service"
EXTENSIONS = ["binary_tensor_data"]
HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORMS = {"tensorflow": "tensorflow_savedmodel", "jax": "keras_jax"}
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32"}


def output_shapes(info: ModelInfo) -> dict[str, tuple[str, list[int]]]:
    """Every output a request may name: (datatype, shape with -1 for the batch)."""
    side = IMAGE_SHAPE[0]
    shapes = {contract.PROBABILITIES: ("FP32", [-1, len(info.classes)])}
    shapes.update({layer.name: ("FP32", [-1, *layer.shape]) for layer in info.layers})
    shapes.update({name: ("FP32", [-1, side, side]) for name in info.explain_maps()})
    shapes[contract.TARGET_CLASS] = ("INT32", [-1])
    return shapes


def model_metadata(info: ModelInfo, versions: Sequence[str], runtime: str) -> dict[str, Any]:
    """The v2 model metadata response. `image` is listed as UINT8 pixels; it is also
    taken as BYTES [N] of image files (docs/protocols.md)."""
    explains = Operation.EXPLAIN not in info.unavailable
    inputs = [{"name": contract.INPUT_NAME, "datatype": "UINT8", "shape": [-1, *IMAGE_SHAPE]}]
    if explains:
        inputs.append({"name": contract.TARGET_CLASS, "datatype": "INT32", "shape": [-1]})
    outputs = [
        {"name": name, "datatype": datatype, "shape": shape}
        for name, (datatype, shape) in output_shapes(info).items()
        if explains or not (name == contract.TARGET_CLASS or name in info.explain_maps())
    ]
    return {
        "name": info.name,
        "versions": list(versions),
        "platform": PLATFORMS.get(runtime, runtime),
        "inputs": inputs,
        "outputs": outputs,
    }


def operations_for(info: ModelInfo, names: Sequence[str]) -> list[Operation]:
    """The operations that produce the named outputs (InvalidRequest for a name this
    version has no output of)."""
    known = output_shapes(info)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidRequest(
            f"unknown output(s) {', '.join(repr(n[:50]) for n in unknown)}; outputs: {', '.join(known)}"
        )
    explain = {contract.TARGET_CLASS, *info.explain_maps()}
    layers = set(info.layer_names())
    operations = [Operation.FEATURE_MAPS] if layers & set(names) else []
    if explain & set(names):
        operations.append(Operation.EXPLAIN)
    return operations or [Operation.PREDICT]


def gather(operation: Operation, results: Sequence[Any]) -> dict[str, np.ndarray]:
    """One operation's per-image results as named batch arrays."""
    if operation is Operation.PREDICT:
        return {contract.PROBABILITIES: np.stack(results)}
    return {name: np.stack([row[name] for row in results]) for name in results[0]}


def _output(name: str, array: np.ndarray, binary: bool) -> tuple[dict[str, Any], bytes]:
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    tensor: dict[str, Any] = {"name": name, "datatype": DATATYPES[array.dtype], "shape": list(array.shape)}
    if binary:
        data = array.tobytes()
        tensor["parameters"] = {"binary_data_size": len(data)}
        return tensor, data
    tensor["data"] = array.reshape(-1)  # written in pieces by json_writer.render
    return tensor, b""


def response(
    info: ModelInfo, request_id: str | None, outputs: Sequence[tuple[str, bool]], arrays: Mapping[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The inference response body, and the JSON header's length when any output goes
    back as binary data (the response's Inference-Header-Content-Length), else None."""
    tensors, parts = [], []
    for name, binary in outputs:
        tensor, data = _output(name, arrays[name], binary)
        tensors.append(tensor)
        parts.append(data)
    head: dict[str, Any] = {"model_name": info.name, "model_version": info.version}
    if request_id is not None:
        head["id"] = request_id
    head["outputs"] = tensors
    header = render(head)
    if not any(binary for _, binary in outputs):
        return header, None
    return header + b"".join(parts), len(header)
