"""Accuracy, per-class accuracy and the confusion matrix, from label arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from model.classes import CLASS_NAMES, NUM_CLASSES


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """counts[true, predicted] for the ten classes."""
    counts = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def classification_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    counts = confusion_matrix(y_true, y_pred)
    per_class = {
        name: (float(counts[i, i] / counts[i].sum()) if counts[i].sum() else float("nan"))
        for i, name in enumerate(CLASS_NAMES)
    }
    return {
        "accuracy": float(np.trace(counts) / max(counts.sum(), 1)),
        "per_class_accuracy": per_class,
        "confusion_matrix": counts.tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table for the terminal."""
    lines = [f"accuracy: {report['accuracy']:.4f}"]
    if "images" in report:
        lines[0] += f"  ({report['images']} images, {report.get('split')} split, {report.get('signature')})"
    lines += ["", "per-class accuracy:"]
    lines += [f"  {name:<11} {acc:.4f}" for name, acc in report["per_class_accuracy"].items()]
    lines += ["", "confusion matrix (rows: true, columns: predicted):"]
    lines.append(" " * 12 + "".join(f"{n[:5]:>6}" for n in CLASS_NAMES))
    for name, row in zip(CLASS_NAMES, report["confusion_matrix"], strict=True):
        lines.append(f"  {name:<10}" + "".join(f"{v:>6}" for v in row))
    return "\n".join(lines)
