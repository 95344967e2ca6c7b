"""The served model: loads a versioned SavedModel per `model.contract`, checks it, and
runs its two signatures on batches. Called from the batcher's inference thread."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model import contract
from model.classes import CLASS_NAMES, IMAGE_SHAPE

log = logging.getLogger("cifar10.model")


class ModelLoadError(Exception):
    """The model folder is missing, corrupt or breaks the contract."""


@dataclass(frozen=True)
class LayerInfo:
    name: str
    shape: tuple[int, ...]  # H, W, C


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
    """A loaded SavedModel with its card; `predict` and `feature_maps` take a list of
    uint8 [32, 32, 3] images and return one result per image."""

    def __init__(self, model_dir: Path, max_batch_size: int) -> None:
        try:
            self.path = contract.latest_version_dir(model_dir)
        except contract.ModelDirError as exc:
            raise ModelLoadError(str(exc)) from exc
        import tensorflow as tf  # imported here: the rest of the app never needs it

        self._tf = tf
        try:
            loaded = tf.saved_model.load(str(self.path))
        except Exception as exc:  # TF raises many types for corrupt protos and variables
            raise ModelLoadError(f"cannot load the SavedModel at {self.path}: {exc}") from exc
        self._loaded = loaded  # keeps the variables alive
        try:
            self._serve = loaded.signatures[contract.SERVING_SIGNATURE]
            self._features = loaded.signatures[contract.FEATURE_MAPS_SIGNATURE]
        except KeyError as exc:
            raise ModelLoadError(f"{self.path} lacks the signature {exc}; found {sorted(loaded.signatures)}") from exc
        self._check_signature(self._serve)
        self._check_signature(self._features)
        self.card = self._read_card()
        self.classes = self._read_labels()
        outputs = self._features.structured_outputs
        self.layers = [
            LayerInfo(name, tuple(int(d) for d in spec.shape[1:]))
            for name, spec in outputs.items()
            if name != contract.PROBABILITIES
        ]
        order = list(self.card.get("feature_layers", {}))
        self.layers.sort(key=lambda layer: order.index(layer.name) if layer.name in order else len(order))
        self.name = str(self.card.get("name", self.path.parent.name))
        self.version = self.path.name if self.path.name.isdigit() else "0"
        self.buckets = bucket_sizes(max_batch_size)

    def _check_signature(self, fn: Any) -> None:
        _, kwargs = fn.structured_input_signature
        spec = kwargs.get(contract.INPUT_NAME)
        if spec is None or spec.dtype != self._tf.uint8 or tuple(spec.shape[1:]) != IMAGE_SHAPE:
            raise ModelLoadError(f"{self.path}: signature input must be {contract.INPUT_NAME!r} uint8 [N, 32, 32, 3], got {kwargs}")
        if contract.PROBABILITIES not in fn.structured_outputs:
            raise ModelLoadError(f"{self.path}: signature lacks the {contract.PROBABILITIES!r} output")

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

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def _padded(self, images: list[np.ndarray]) -> tuple[Any, int]:
        n = len(images)
        size = next((b for b in self.buckets if b >= n), n)
        batch = np.zeros((size, *IMAGE_SHAPE), dtype=np.uint8)
        batch[:n] = np.stack(images)
        return self._tf.constant(batch), n

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities, float32 [10] per image."""
        batch, n = self._padded(images)
        probs = self._serve(image=batch)[contract.PROBABILITIES].numpy()[:n]
        return list(probs)

    def feature_maps(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per image: every feature layer's [H, W, C] activations and `probabilities`."""
        batch, n = self._padded(images)
        outputs = {k: v.numpy()[:n] for k, v in self._features(image=batch).items()}
        return [{k: v[i] for k, v in outputs.items()} for i in range(n)]

    def warm(self) -> None:
        """Run both signatures at every bucket size once, before serving."""
        for size in self.buckets:
            dummy = [np.zeros(IMAGE_SHAPE, dtype=np.uint8)] * size
            self.predict(dummy)
        for size in self.buckets:
            self.feature_maps([np.zeros(IMAGE_SHAPE, dtype=np.uint8)] * size)

    def info(self) -> dict[str, Any]:
        card = self.card
        return {
            "name": self.name,
            "version": self.version,
            "classes": self.classes,
            "input": {"name": contract.INPUT_NAME, "dtype": "uint8", "shape": list(IMAGE_SHAPE)},
            "layers": [{"name": layer.name, "shape": list(layer.shape)} for layer in self.layers],
            "architecture": card.get("architecture"),
            "parameters": card.get("parameters"),
            "test_time_augmentation": card.get("test_time_augmentation"),
            "metrics": card.get("metrics", {}),
            "training": {k: v for k, v in card.get("training", {}).items() if k != "config"},
        }
