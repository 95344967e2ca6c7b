"""What the handlers need of a served version: its name, version, classes, feature
layers, card, and the operations it cannot answer (and why). A front process receives
it from the model process as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.serving.operations import Operation
from model import contract
from model.classes import IMAGE_SHAPE


@dataclass(frozen=True)
class LayerInfo:
    name: str
    shape: tuple[int, ...]  # H, W, C


@dataclass(frozen=True)
class ModelInfo:
    """Name, version, classes and feature layers of the served model, and its card."""

    name: str
    version: str
    classes: list[str]
    layers: list[LayerInfo]
    card: dict[str, Any]
    # Operation -> why this version cannot answer it (e.g. explain: no explain
    # signature in the export). The routes answer it as a 4xx.
    unavailable: Mapping[Operation, str] = field(default_factory=dict)

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def explain_maps(self) -> list[str]:
        """The maps an explanation holds: Grad-CAM per feature layer (the last is the last
        convolutional block), then saliency."""
        return [contract.GRADCAM_PREFIX + name for name in self.layer_names()] + [contract.SALIENCY]

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
            # What this version refuses, and why (the routes answer those with a 400).
            "unavailable": {op.value: reason for op, reason in self.unavailable.items()},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "classes": self.classes,
            "layers": [[layer.name, list(layer.shape)] for layer in self.layers],
            "card": self.card,
            "unavailable": {op.value: reason for op, reason in self.unavailable.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        layers = [LayerInfo(name, tuple(shape)) for name, shape in data["layers"]]
        unavailable = {Operation(op): reason for op, reason in data.get("unavailable", {}).items()}
        return cls(data["name"], data["version"], list(data["classes"]), layers, data["card"], unavailable)
