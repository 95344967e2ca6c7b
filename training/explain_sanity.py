"""Sanity checks for the explain signature's maps, after Adebayo et al., "Sanity Checks
for Saliency Maps" (NeurIPS 2018): tests/training/test_explain_sanity.py asserts them
on the shipped default model, and `python -m training.explain_sanity` prints them.

- Model randomisation: a map that explains the trained model must change when the
  weights are replaced by random ones. Measured as the Spearman rank correlation
  between the two maps of each image (same image, same target class).
- Deletion (Petsiuk et al., 2018, RISE): deleting the pixels a map ranks highest
  first must lower the true class's probability faster than deleting them in a
  chance order. Measured as the area under the probability-vs-fraction-deleted
  curve (lower is better); deleted pixels take the training mean, which the model
  sees as zero. The chance order that the test holds Grad-CAM to is a random map of
  the same grain: uniform noise on the last block's grid, upsampled as Grad-CAM is.
  Random single pixels are no fair chance here: scattered grey dots are far from
  any training image and sink the probability faster than removing any one region
  (docs/explain.md has the figures), so the run reports them beside the others.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from model import contract

DELETION_STEPS = 16  # the curve's points: 0, 1/16, ..., 16/16 of the pixels deleted
SANITY_IMAGES = 64  # validation images per check
RANDOM_ORDER_SEED = 0


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks of a flat array, ties sharing their average rank (as scipy's rankdata)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps; 0 when either is constant (an all-zero
    Grad-CAM carries no ranking to agree with)."""
    ra, rb = rank(a.ravel()), rank(b.ravel())
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def deletion_curves(predict: Any, images: np.ndarray, labels: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """[N, DELETION_STEPS + 1] true-class probabilities as pixels are deleted in `orders`
    ([N, 1024] flat pixel indices, first deleted first). `predict`: uint8 batch -> probs."""
    n, h, w, _ = images.shape
    mean = np.rint(contract.CHANNEL_MEAN).astype(np.uint8)
    curves = np.empty((n, DELETION_STEPS + 1), np.float32)
    for step in range(DELETION_STEPS + 1):
        count = step * h * w // DELETION_STEPS
        batch = images.reshape(n, h * w, -1).copy()
        rows = np.repeat(np.arange(n), count)
        batch[rows, orders[:, :count].ravel()] = mean
        probs = predict(batch.reshape(images.shape))
        curves[:, step] = probs[np.arange(n), labels]
    return curves


def area(curves: np.ndarray) -> np.ndarray:
    """Area under each curve over the deleted fraction 0..1 (trapezoids)."""
    return ((curves[:, 1:] + curves[:, :-1]) / 2).sum(axis=1) / DELETION_STEPS


def salient_first(maps: np.ndarray) -> np.ndarray:
    """Flat pixel indices by decreasing map value (stable, so ties keep image order)."""
    return np.argsort(-maps.reshape(len(maps), -1), axis=1, kind="stable")


def random_orders(n: int, pixels: int, seed: int = RANDOM_ORDER_SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(pixels) for _ in range(n)])


def random_smooth_maps(n: int, grid: tuple[int, int], seed: int = RANDOM_ORDER_SEED) -> np.ndarray:
    """[n, 32, 32] uniform noise on a `grid` (the last block's H, W), upsampled bilinearly
    as Grad-CAM's maps are: a chance map with Grad-CAM's grain."""
    from training.explain_reference import resize_bilinear

    return resize_bilinear(np.random.default_rng(seed).random((n, *grid)))


def run(version: Path, data: str, count: int = SANITY_IMAGES, report: bool = True) -> dict[str, Any]:
    """Both checks on `version` (a SavedModel with the explain signature and its
    model.keras); returns the statistics the test asserts on and the docs quote.
    `report=False` skips the deletion orders that are only reported (the test's)."""
    import keras
    import tensorflow as tf

    from model.builders import build_model
    from training.config import TrainConfig
    from training.explain_signature import Explainer
    from training.reexport import validation_images

    card = json.loads((version / contract.MODEL_CARD_FILE).read_text())
    images, labels = validation_images(card, data, count)
    layers = tuple(card["feature_layers"])
    loaded = tf.saved_model.load(str(version))
    serve, explain = loaded.signatures[contract.SERVING_SIGNATURE], loaded.signatures[contract.EXPLAIN_SIGNATURE]

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(serve(image=tf.constant(batch))[contract.PROBABILITIES])

    targets = tf.constant(labels.astype(np.int32))
    trained = {k: v.numpy() for k, v in explain(image=tf.constant(images), target_class=targets).items()}

    cfg = TrainConfig.from_json(card["training"]["config"])
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(RANDOM_ORDER_SEED)
    randomised = build_model(cfg.arch, **cfg.model_options())  # fresh initial weights, all layers
    shuffled = {k: v.numpy() for k, v in tf.function(Explainer(randomised, layers))(images, targets).items()}

    last = contract.GRADCAM_PREFIX + layers[-1]
    result: dict[str, Any] = {"model": str(version), "images": len(images), "randomisation": {}, "deletion": {}}
    for name in (last, contract.SALIENCY):
        rhos = np.abs([spearman(a, b) for a, b in zip(trained[name], shuffled[name], strict=True)])
        result["randomisation"][name] = {"mean_abs_rho": float(rhos.mean()), "max_abs_rho": float(rhos.max())}

    def auc(orders: np.ndarray) -> np.ndarray:
        return area(deletion_curves(predict, images, labels, orders))

    grid = tuple(card["feature_layers"][layers[-1]][:2])
    chance = auc(salient_first(random_smooth_maps(len(images), grid)))
    gradcam = auc(salient_first(trained[last]))
    result["deletion"] = {
        f"{last} (most salient first)": float(gradcam.mean()),
        f"{last} (least salient first)": float(auc(salient_first(-trained[last])).mean()),
        "random smooth map (chance)": float(chance.mean()),
    }
    if report:
        result["deletion"] |= {
            f"{last} of another image": float(auc(salient_first(np.roll(trained[last], 1, axis=0))).mean()),
            f"{contract.SALIENCY} (most salient first)": float(auc(salient_first(trained[contract.SALIENCY])).mean()),
            f"{contract.SALIENCY} of another image": float(
                auc(salient_first(np.roll(trained[contract.SALIENCY], 1, axis=0))).mean()
            ),
            "random pixels": float(auc(random_orders(len(images), 32 * 32)).mean()),
        }
    result["gradcam_vs_chance"] = {
        "auc_ratio": float(gradcam.mean() / chance.mean()),
        "images_where_gradcam_wins": float(np.mean(gradcam < chance)),
    }
    return result


if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import sys

    from training.config import DEFAULT_DATA

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("saved_models/cifar10/6")
    print(json.dumps(run(target, DEFAULT_DATA), indent=2))
