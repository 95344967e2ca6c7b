"""Evaluate a SavedModel on a CIFAR-10 split through its `serving_default` signature,
exactly as the service calls it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from model import contract
from training.data import DataError, load_dataset, stratified_split
from training.metrics import classification_report, format_report

__all__ = ["evaluate", "format_report", "record_per_class"]


def evaluate(
    saved_model: Path, data: str, split: str = "val", tta: bool = False, batch_size: int = 500
) -> dict[str, Any]:
    """Accuracy, per-class accuracy and confusion matrix on `split`, through
    `serving_default` (or `serving_tta` with `tta`).

    "val" and "train" rebuild the held-out split recorded in the model card, so the
    numbers are on images the model was never trained on (val) or trained on (train).
    """
    path = contract.latest_version_dir(saved_model)
    if split == "test":
        ds = load_dataset(data, "test")
        images, labels = ds.images, ds.labels
    else:
        card_file = path / contract.MODEL_CARD_FILE
        if not card_file.is_file():
            raise DataError(f"{card_file} is missing: cannot rebuild the validation split")
        val_split = json.loads(card_file.read_text())["data"]["val_split"]
        ds = load_dataset(data, "train")
        train_idx, val_idx = stratified_split(ds.labels, val_split["size"], val_split["seed"])
        idx = val_idx if split == "val" else train_idx
        images, labels = ds.images[idx], ds.labels[idx]
    signature = contract.TTA_SIGNATURE if tta else contract.SERVING_SIGNATURE
    serve = tf.saved_model.load(str(path)).signatures[signature]
    preds = np.concatenate(
        [
            serve(image=tf.constant(images[i : i + batch_size]))[contract.PROBABILITIES].numpy().argmax(1)
            for i in range(0, len(images), batch_size)
        ]
    )
    report = classification_report(labels, preds)
    report.update(
        {"model": str(path), "signature": signature, "split": split, "images": len(labels), "data_sha256": ds.sha256}
    )
    return report


def record_per_class(saved_model: Path, report: dict[str, Any]) -> None:
    """Add a validation report's per-class accuracy to a card that lacks it (the GPU
    trainer did not measure it). The card's own accuracy stays as trained and measured;
    the record says where the new figures come from and what accuracy they sum to."""
    path = contract.latest_version_dir(saved_model) / contract.MODEL_CARD_FILE
    card = json.loads(path.read_text())
    if card.get("metrics", {}).get("per_class_accuracy"):
        raise DataError(f"{path} already records per_class_accuracy")
    card.setdefault("metrics", {})["per_class_accuracy"] = report["per_class_accuracy"]
    card["metrics"]["per_class_accuracy_source"] = {
        "command": "python -m training evaluate --record",
        "signature": report["signature"],
        "images": report["images"],
        "accuracy": report["accuracy"],
    }
    path.write_text(json.dumps(card, indent=2) + "\n")
