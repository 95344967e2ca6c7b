"""A version's SavedModel as one OpenVINO graph, and running such a graph on batches.

The graph's outputs are every feature layer and `probabilities` (the feature_maps
signature, whose probabilities are serving_default's) and contract.OPENVINO_TTA_OUTPUT
(serving_tta's probabilities). Both signatures read the same variables, so the IR holds
one copy of the weights; a caller that needs fewer outputs compiles a sub-graph
(`outputs`), and OpenVINO drops what those outputs do not need.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from model import contract
from model.classes import IMAGE_SHAPE
from model.telemetry import telemetry_declined

with telemetry_declined():  # importing openvino sends an event otherwise
    import openvino as ov

# float32 arithmetic for every IR: OpenVINO's CPU plugin otherwise runs float32 layers in
# bfloat16 on CPUs that have it (AMX), which moves probabilities by ~1e-3. The service's
# runtime compiles with the same hint, so the card's figures are what it serves.
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def output_names(layers: Sequence[str]) -> list[str]:
    """The graph's outputs, in order."""
    return [*layers, contract.PROBABILITIES, contract.OPENVINO_TTA_OUTPUT]


def convert(version: Path, layers: Sequence[str]) -> ov.Model:
    """The SavedModel at `version` as one float32 OpenVINO graph (uint8 input)."""
    loaded = tf.saved_model.load(str(version))
    features = loaded.signatures[contract.FEATURE_MAPS_SIGNATURE]
    tta = loaded.signatures[contract.TTA_SIGNATURE]
    expected = {*layers, contract.PROBABILITIES}
    if set(features.structured_outputs) != expected:
        raise ValueError(
            f"{version}: the feature_maps signature gives {sorted(features.structured_outputs)}, "
            f"the card lists {sorted(expected)}"
        )
    names = output_names(layers)

    @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.uint8, name=contract.INPUT_NAME)])
    def graph(image: tf.Tensor) -> list[tf.Tensor]:
        maps = features(image=image)
        return [maps[name] for name in names[:-1]] + [tta(image=image)[contract.PROBABILITIES]]

    # A list keeps the order of `names`; a dict's outputs would come back sorted and
    # named after internal nodes. share_weights=False: the model outlives `loaded`.
    with telemetry_declined():  # each conversion starts the converter's telemetry anew
        model = ov.convert_model(graph.get_concrete_function(), share_weights=False)
    for output, name in zip(model.outputs, names, strict=True):
        output.get_tensor().set_names({name})
    model.inputs[0].get_tensor().set_names({contract.INPUT_NAME})
    return model


def outputs(model: ov.Model, names: Sequence[str]) -> ov.Model:
    """The sub-graph of `model` that computes only `names`."""
    return ov.Model([model.output(name) for name in names], model.get_parameters(), model.get_friendly_name())


def compile_model(model: ov.Model, threads: int | None = None) -> ov.CompiledModel:
    config: dict[str, Any] = dict(COMPILE_CONFIG)
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return ov.Core().compile_model(model, "CPU", config)


def run(compiled: ov.CompiledModel, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Every output of `compiled` for `images`, in batches."""
    request = compiled.create_infer_request()
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch_size):
        result = request.infer({0: images[start : start + batch_size]})
        for output in compiled.outputs:
            parts.setdefault(output.get_any_name(), []).append(np.array(result[output]))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def file_record(path: Path, root: Path) -> dict[str, Any]:
    """What the card says about one written file: where, how big, its SHA-256."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size, "sha256": digest}
