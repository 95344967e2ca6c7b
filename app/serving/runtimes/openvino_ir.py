"""The openvino runtimes: the OpenVINO IR beside a SavedModel (`python -m training
quantize` writes it), int8 (`openvino`) or float32 (`openvino-float32`).

The IR is one graph whose outputs are every feature layer, `probabilities` and
serving_tta's probabilities; predict and feature maps each compile the sub-graph of the
outputs they return. The files must be the ones the model card records (size and
SHA-256), so a missing, truncated or altered file is refused at load. Explanations
need gradients, which an IR does not have: they come from the SavedModel's `explain`
signature under TensorFlow in this process when TensorFlow is installed, and are
`unavailable` (a 400, and said in the version's status) when it is not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.serving.operations import Operation
from app.serving.runtimes import ModelLoadError
from model import contract
from model.classes import IMAGE_SHAPE
from model.telemetry import telemetry_declined

# float32 arithmetic in every layer the IR keeps in float32: OpenVINO's CPU plugin would
# otherwise run them in bfloat16 on CPUs that have it (AMX), unlike the figures that
# `python -m training quantize` checked and recorded (it compiles with the same hint).
# One stream: the batcher sends one batch at a time, and the stream uses every core.
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checked_files(path: Path, precision: str) -> tuple[Path, Path]:
    """The IR files (xml, bin) of `precision` that the card records, each as recorded."""
    card_file = path / contract.MODEL_CARD_FILE
    try:
        record = json.loads(card_file.read_text())["openvino"]["files"][precision]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"{path} has no {precision} OpenVINO IR in its model card (missing {exc}); "
            "write it with `python -m training quantize <version folder>`"
        ) from exc
    files = []
    for kind in ("xml", "bin"):
        file = path / record[kind]["path"]
        if not file.is_file():
            raise ModelLoadError(f"{file} is missing; write it again with `python -m training quantize --force`")
        if file.stat().st_size != record[kind]["bytes"] or _sha256(file) != record[kind]["sha256"]:
            raise ModelLoadError(
                f"{file} is not the file the model card records (size or SHA-256 differs): corrupt or replaced; "
                "write it again with `python -m training quantize --force`"
            )
        files.append(file)
    return files[0], files[1]


class OpenVinoRuntime:
    """Probabilities and feature maps from the IR of one precision; explanations from the
    SavedModel under TensorFlow where it is installed."""

    def __init__(self, path: Path, precision: str, layer_order: Sequence[str]) -> None:
        try:
            # Imported here: only this runtime needs it; and without the telemetry that
            # its import would start (model.telemetry).
            with telemetry_declined():
                import openvino as ov
        except ImportError as exc:
            raise ModelLoadError(
                "the openvino runtime needs the openvino package: pip install 'cifar10-service[openvino]'"
            ) from exc
        xml, weights = checked_files(path, precision)
        core = ov.Core()
        try:
            model = core.read_model(xml, weights)
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types for bad IR
            raise ModelLoadError(f"cannot read the OpenVINO IR {xml}: {exc}") from exc
        names = {name for output in model.outputs for name in output.get_names()}
        missing = [n for n in (*layer_order, contract.PROBABILITIES) if n not in names]
        (image,) = model.inputs
        if (
            missing
            or image.get_element_type() != ov.Type.u8
            or list(image.get_partial_shape())[1:] != list(IMAGE_SHAPE)
        ):
            raise ModelLoadError(
                f"{xml} breaks the contract: it lacks the outputs {missing}, or its input is not uint8 [N, 32, 32, 3]"
            )
        self.layer_shapes = {
            n: tuple(d.get_length() for d in model.output(n).get_partial_shape()[1:]) for n in layer_order
        }
        self._names = [*layer_order, contract.PROBABILITIES]

        def compiled(outputs: Sequence[str]) -> Any:
            sub = ov.Model([model.output(n) for n in outputs], model.get_parameters(), f"{path.name}-{precision}")
            try:
                return core.compile_model(sub, "CPU", COMPILE_CONFIG).create_infer_request()
            except Exception as exc:
                raise ModelLoadError(f"cannot compile the OpenVINO IR {xml}: {exc}") from exc

        self._predict = compiled([contract.PROBABILITIES])
        self._features = compiled(self._names)
        self._explainer: Any = None
        self._unavailable: dict[Operation, str] = {}
        try:
            from app.serving.runtimes.tf_savedmodel import SavedModelRuntime

            self._explainer = SavedModelRuntime(path)
            self._unavailable.update(self._explainer.unavailable)
        except ImportError:
            self._unavailable[Operation.EXPLAIN] = (
                "the openvino runtime explains through the SavedModel's explain signature under TensorFlow, "
                "which is not installed here; serve with CIFAR10_RUNTIME=tensorflow (or install tensorflow-cpu) to explain"
            )

    @property
    def unavailable(self) -> Mapping[Operation, str]:
        return self._unavailable

    def predict(self, batch: np.ndarray) -> np.ndarray:
        result = self._predict.infer({0: batch}, share_inputs=True)
        return np.array(result[0], dtype=np.float32)

    def feature_maps(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        result = self._features.infer({0: batch}, share_inputs=True)
        return {name: np.array(result[i], dtype=np.float32) for i, name in enumerate(self._names)}

    def explain(self, batch: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        assert self._explainer is not None, "explain called where it is unavailable"
        result: dict[str, np.ndarray] = self._explainer.explain(batch, targets)
        return result

    def prepare(self, sizes: Sequence[int]) -> None:
        """Nothing ahead: the CPU plugin prepares each new batch shape on its first call (warm-up)."""
