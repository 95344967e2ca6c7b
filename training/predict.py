"""A trained Keras model's logits on the host, with test-time augmentation, and what the
run records from them: probabilities and the validation accuracies."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from model.builders.airbench import tta_logits
from training.metrics import classification_report


def predict_logits(model: keras.Model, images: np.ndarray, tta_level: int = 0, batch_size: int = 500) -> np.ndarray:
    """Logits in float32, averaged over the views of a test-time augmentation level
    (0: none, 1: the mirror, 2: airbench's six views), as `serving_tta` computes them."""

    def forward(views: Any) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(views), batch_size=batch_size, verbose=0), dtype=np.float32)

    return np.asarray(tta_logits(forward, images, tta_level), dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of [N, classes] logits, stable for large ones."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def validation_metrics(model: keras.Model, x_val: np.ndarray, y_val: np.ndarray, tta_level: int = 1) -> dict[str, Any]:
    """Accuracy as `serving_default` computes it, and as `serving_tta` does."""
    report = classification_report(y_val, predict_logits(model, x_val).argmax(1))
    tta = predict_logits(model, x_val, tta_level).argmax(1)
    return {
        "val_accuracy": report["accuracy"],
        "val_accuracy_tta": float(np.mean(tta == y_val)),
        "per_class_accuracy": report["per_class_accuracy"],
        "confusion_matrix": report["confusion_matrix"],
    }
