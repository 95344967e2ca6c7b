"""A fake model for the API tests: a model folder with a card but no graph, and a
runtime in NumPy. The service's own code (Classifier, batchers, routes) runs as in
production; TensorFlow and the training package are never imported."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.serving.operations import Operation
from model import contract
from model.classes import CLASS_NAMES

# The feature layers of the fast network with a conv stem, 8 channels wide (as tests/conftest.py trains it).
LAYERS: dict[str, tuple[int, int, int]] = {
    "stem": (32, 32, 8),
    "block1": (16, 16, 8),
    "block2": (8, 8, 8),
    "block3": (4, 4, 8),
}


def write_fake_model(model_dir: Path, version: int = 1) -> Path:
    """`model_dir/<version>` with a card and labels, and an empty saved_model.pb."""
    folder = model_dir / str(version)
    (folder / "assets").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    (folder / "assets" / contract.LABELS_FILE).write_text("\n".join(CLASS_NAMES) + "\n")
    card = {
        "architecture": "fake",
        "parameters": 0,
        "feature_layers": {k: list(v) for k, v in LAYERS.items()},
        "metrics": {"val_accuracy": 0.5},
    }
    (folder / contract.MODEL_CARD_FILE).write_text(json.dumps(card))
    return model_dir


class FakeRuntime:
    """Deterministic, per image (a batch's other images never change a result), and
    different for different images."""

    def __init__(self, explain: bool = True) -> None:
        self.layer_shapes: dict[str, tuple[int, ...]] = dict(LAYERS)
        self.unavailable: dict[Operation, str] = (
            {} if explain else {Operation.EXPLAIN: "model version 1 was exported without the 'explain' signature"}
        )
        rng = np.random.default_rng(0)
        self._weights = rng.normal(size=(3 * 16, len(CLASS_NAMES))).astype(np.float32)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = batch.astype(np.float32) / 255.0
        # 4x4 patches' channel means: 16 regions x 3 channels per image.
        regions = x.reshape(len(x), 4, 8, 4, 8, 3).mean(axis=(2, 4)).reshape(len(x), -1)
        logits = 4 * (regions - 0.5) @ self._weights
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def feature_maps(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = batch.astype(np.float32) / 255.0
        maps = {}
        for name, (h, w, c) in LAYERS.items():
            step = 32 // h
            pooled = x[:, : h * step : step, : w * step : step, :].mean(axis=3, keepdims=True)
            maps[name] = pooled * np.linspace(0.5, 1.5, c, dtype=np.float32)
        return {**maps, contract.PROBABILITIES: self.predict(batch)}

    def explain(self, batch: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """The contract's outputs: maps from the image's brightness, shifted per target
        class, so tests can tell images and classes apart."""
        probs = self.predict(batch)
        used = np.where(targets < 0, probs.argmax(axis=1), targets).astype(np.int32)
        gray = batch.astype(np.float32).mean(axis=3) / 255.0
        out = {contract.PROBABILITIES: probs, contract.TARGET_CLASS: used}
        for k, name in enumerate([*(contract.GRADCAM_PREFIX + n for n in LAYERS), contract.SALIENCY]):
            shifted = np.roll(gray, shift=int(k), axis=2) * (1 + used[:, None, None]) / 10.0
            out[name] = np.clip(shifted, 0, 1).astype(np.float32)
        return out

    def prepare(self, sizes: Sequence[int]) -> None:
        pass


def fake_loader(name: str, path: Path, layer_order: Sequence[str]) -> FakeRuntime:
    return FakeRuntime()


def fake_loader_without_explain(name: str, path: Path, layer_order: Sequence[str]) -> FakeRuntime:
    """A model exported before the explain signature existed."""
    return FakeRuntime(explain=False)
