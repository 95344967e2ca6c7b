"""A loaded model version: resolves a versioned model folder per `model.contract`, reads
its card and labels, and runs a runtime (app.serving.runtimes) on padded batches, one
method per operation (app.serving.operations). Called from the version's inference
thread."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.serving.model_info import LayerInfo, ModelInfo
from app.serving.operations import OPERATIONS, ExplainItem, Operation, split_rows
from app.serving.runtimes import ModelLoadError, RuntimeLoader, RuntimeName, load_runtime
from model import contract
from model.classes import CLASS_NAMES, IMAGE_SHAPE

log = logging.getLogger("cifar10.model")


BUCKET_STEP = 8


def bucket_sizes(max_batch_size: int, step: int = BUCKET_STEP) -> list[int]:
    """Batch sizes the model ever runs: 1, 2, 4, then multiples of `step`, and the maximum.

    Padding every batch up to one of these keeps the set of shapes small, so warm-up
    covers all of them and no request pays for a first-time kernel setup. Steps of 8
    rather than powers of two: a batch of 33 padded to 64 would spend half the model
    time on zeros, at the load where throughput matters most.
    """
    sizes = [s for s in (1, 2, 4) if s < max_batch_size]
    sizes += range(step, max_batch_size, step)
    return [*sizes, max_batch_size]


class Classifier:
    """A loaded model version with its card. Each operation's method takes a list of
    items (uint8 [32, 32, 3] images; for explain, (image, target class) pairs) and
    returns one result per item."""

    def __init__(
        self,
        model_dir: Path,
        max_batch_size: int,
        runtime: RuntimeName = "tensorflow",
        name: str | None = None,
        loader: RuntimeLoader = load_runtime,
    ) -> None:
        """`name`: the served name; default the model folder's (model.contract.served_name).
        `loader`: loads the runtime; tests pass a fake one."""
        try:
            self.path = contract.latest_version_dir(model_dir)
        except contract.ModelDirError as exc:
            raise ModelLoadError(str(exc)) from exc
        card = self._read_card()
        order = list(card.get("feature_layers", {}))
        self.runtime_name = runtime
        self._runtime = loader(runtime, self.path, order)
        layers = [LayerInfo(name, shape) for name, shape in self._runtime.layer_shapes.items()]
        layers.sort(key=lambda layer: order.index(layer.name) if layer.name in order else len(order))
        number = contract.parse_version(self.path.name)  # the same spelling as the registry's status
        version = str(number) if number is not None else "0"
        self.info = ModelInfo(
            name or contract.served_name(model_dir),
            version,
            self._read_labels(),
            layers,
            card,
            dict(self._runtime.unavailable),
        )
        self.name, self.version = self.info.name, self.info.version
        self.buckets = bucket_sizes(max_batch_size)

    def _read_card(self) -> dict[str, Any]:
        path = self.path / contract.MODEL_CARD_FILE
        if not path.is_file():
            log.warning("%s has no %s; serving without metadata", self.path, contract.MODEL_CARD_FILE)
            return {}
        try:
            card = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
        return card if isinstance(card, dict) else {}

    def _read_labels(self) -> list[str]:
        path = self.path / "assets" / contract.LABELS_FILE
        labels = path.read_text().split() if path.is_file() else list(CLASS_NAMES)
        if len(labels) != len(CLASS_NAMES):
            raise ModelLoadError(f"{path} lists {len(labels)} classes, expected {len(CLASS_NAMES)}")
        return labels

    def _padded(self, images: list[np.ndarray]) -> tuple[np.ndarray, int]:
        n = len(images)
        size = next((b for b in self.buckets if b >= n), n)
        batch = np.zeros((size, *IMAGE_SHAPE), dtype=np.uint8)
        batch[:n] = np.stack(images)
        return batch, n

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities, float32 [10] per image."""
        batch, n = self._padded(images)
        return list(self._runtime.predict(batch)[:n])

    def feature_maps(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per image: every feature layer's [H, W, C] activations and `probabilities`."""
        batch, n = self._padded(images)
        return split_rows(self._runtime.feature_maps(batch), n)

    def explain(self, items: list[ExplainItem]) -> list[dict[str, np.ndarray]]:
        """Per (image, target class) item, target contract.TOP_CLASS for the top class:
        its Grad-CAM maps, saliency, `probabilities` and `target_class` (the class used)."""
        batch, n = self._padded([image for image, _ in items])
        targets = np.full(len(batch), contract.TOP_CLASS, dtype=np.int32)
        targets[:n] = [target for _, target in items]
        return split_rows(self._runtime.explain(batch, targets), n)

    def method(self, operation: Operation) -> Callable[[list[Any]], list[Any]]:
        """The method that runs `operation` on a list of items (what its batcher calls)."""
        method: Callable[[list[Any]], list[Any]] = getattr(self, OPERATIONS[operation].method)
        return method

    def warm(self) -> None:
        """Compile (jax) and run every operation this version answers at every bucket
        size once, before serving."""
        self._runtime.prepare(self.buckets)
        for operation, spec in OPERATIONS.items():
            if operation not in self.info.unavailable:
                run = self.method(operation)
                for size in self.buckets:
                    run([spec.blank()] * size)
