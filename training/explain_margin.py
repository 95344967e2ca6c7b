"""Measures what explain_parity's tolerance rests on, for one exported version: per
output, how many images' maps the SavedModel's `explain` and the recomputation put
more than EXPLAIN_ATOL apart, the largest gap, each image's own indeterminacy under a
+-NUDGE of the input, and how many images a wrong saliency (the pixel gradient not
divided by the channels' std, or summed over channels instead of the max) would fail.

    python -m training.explain_margin saved_models/cifar10/4 [--images 512] [--data PATH]

The validation images come from the version's card (its split of --data).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"  # the SavedModel is TensorFlow's

import keras
import numpy as np
import tensorflow as tf

from model import contract
from training.config import DEFAULT_DATA
from training.explain_reference import (
    EXPLAIN_ATOL,
    NUDGE,
    _indeterminacy,
    _tail_gradient,
    reference_explain,
    scale_to_unit,
)
from training.explain_signature import STANDARDISE_LAYER
from training.reexport import validation_images


def _wrong_saliency(model: keras.Model, images: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    standardised = np.asarray(model.get_layer(STANDARDISE_LAYER)(images), dtype=np.float32)
    grad = _tail_gradient(model, STANDARDISE_LAYER, standardised, targets)
    return {
        "no std": scale_to_unit(np.abs(grad).max(axis=-1)),
        "sum over channels": scale_to_unit(np.abs(grad / np.asarray(contract.CHANNEL_STD)).sum(axis=-1)),
    }


def measure(version: Path, data: str, count: int, batch: int = 64) -> list[str]:
    card = json.loads((version / contract.MODEL_CARD_FILE).read_text())
    images, _ = validation_images(card, data, count)
    model = keras.saving.load_model(version / contract.KERAS_ARCHIVE_FILE, compile=False)
    layers = tuple(card["feature_layers"])
    signature = tf.saved_model.load(str(version)).signatures[contract.EXPLAIN_SIGNATURE]
    gaps: dict[str, list[np.ndarray]] = {}
    owns: dict[str, list[np.ndarray]] = {}
    wrong: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch):
        x = images[start : start + batch]
        targets = np.full(len(x), contract.TOP_CLASS, np.int32)
        got = {k: v.numpy() for k, v in signature(image=tf.constant(x), target_class=tf.constant(targets)).items()}
        want = reference_explain(model, layers, x, targets)
        own = _indeterminacy(model, layers, x, want[contract.TARGET_CLASS], want)
        for k in own:
            gaps.setdefault(k, []).append(np.abs(got[k] - want[k]).reshape(len(x), -1).max(axis=1))
            owns.setdefault(k, []).append(own[k])
        for name, bad in _wrong_saliency(model, x, want[contract.TARGET_CLASS]).items():
            gap = np.abs(bad - want[contract.SALIENCY]).reshape(len(x), -1).max(axis=1)
            wrong.setdefault(name, []).append(gap > EXPLAIN_ATOL + own[contract.SALIENCY])
    n = len(images)
    lines = [
        f"{version}: {n} validation images, top class; tolerance {EXPLAIN_ATOL:.0e} + own change under +-{NUDGE:.0e}",
        "",
        "| output | images > 1e-3 apart | largest gap | own change: median, max | images over the tolerance |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for k in gaps:
        gap, spread = np.concatenate(gaps[k]), np.concatenate(owns[k])
        lines.append(
            f"| {k} | {int(np.sum(gap > EXPLAIN_ATOL))} | {gap.max():.1e} | {np.median(spread):.1e}, {spread.max():.1e} "
            f"| {int(np.sum(gap > EXPLAIN_ATOL + spread))} |"
        )
    lines.append("")
    for name, failed in wrong.items():
        lines.append(f"a wrong saliency ({name}) fails on {int(np.concatenate(failed).sum())} of {n} images")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", type=Path, help="an exported version folder with model.keras and its card")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args()
    print("\n".join(measure(args.version, args.data, args.images)))


if __name__ == "__main__":
    main()
