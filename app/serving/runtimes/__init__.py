"""The runtimes behind the classifier: the SavedModel under TensorFlow (the default,
and the contract), the Keras archive beside it under Keras's JAX backend, or the
OpenVINO IR beside it, int8 (`openvino`) or float32 (`openvino-float32`).

Each takes a padded uint8 batch [B, 32, 32, 3] and returns numpy arrays; the
classifier owns padding, metadata and warm-up. Each runtime module imports its
framework only when loaded, so the jax runtime never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from app.serving.operations import Operation

RuntimeName = Literal["tensorflow", "jax", "openvino", "openvino-float32"]
RUNTIMES: tuple[RuntimeName, ...] = ("tensorflow", "jax", "openvino", "openvino-float32")
# The IR precision each openvino runtime serves (model.contract.OPENVINO_PRECISIONS).
OPENVINO_PRECISION: dict[RuntimeName, str] = {"openvino": "int8", "openvino-float32": "float32"}


class ModelLoadError(Exception):
    """The model folder is missing, corrupt or breaks the contract."""


class Runtime(Protocol):
    """A loaded model; `layer_shapes` maps every feature layer to its [H, W, C].
    `unavailable` names the operations it cannot answer, and why (explain, for an
    export without the explain signature)."""

    layer_shapes: dict[str, tuple[int, ...]]

    @property
    def unavailable(self) -> Mapping[Operation, str]: ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """float32 probabilities [B, 10]."""
        ...

    def feature_maps(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every feature layer's float32 [B, H, W, C] and `probabilities`."""
        ...

    def explain(self, batch: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """The contract's explain outputs for int32 `targets` [B] (contract.TOP_CLASS: the
        top class); only called when explain is not `unavailable`."""
        ...

    def prepare(self, sizes: Sequence[int]) -> None:
        """Get ready to run these batch sizes (compile them) before serving."""
        ...


# How a classifier gets its runtime: load_runtime, or a test's fake (no framework at all).
RuntimeLoader = Callable[[RuntimeName, Path, Sequence[str]], Runtime]


def load_runtime(name: RuntimeName, path: Path, layer_order: Sequence[str]) -> Runtime:
    """Load the model version at `path` with runtime `name`; raises ModelLoadError."""
    if name == "jax":
        from app.serving.runtimes.jax_keras import JaxRuntime

        return JaxRuntime(path, layer_order)
    if name in OPENVINO_PRECISION:
        from app.serving.runtimes.openvino_ir import OpenVinoRuntime

        return OpenVinoRuntime(path, OPENVINO_PRECISION[name], layer_order)
    from app.serving.runtimes.tf_savedmodel import SavedModelRuntime

    return SavedModelRuntime(path)
