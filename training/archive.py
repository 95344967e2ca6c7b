"""The Keras archive beside each SavedModel: the same float32 weights as `model.keras`,
which the service's jax runtime loads under Keras's JAX backend, without TensorFlow.

The SavedModel stays the contract; the archive is checked against it on a fixed
batch (probabilities and every feature layer, max |Δ| ≤ 1e-4) before it is kept.
`add_archive` writes one for a version exported before archives existed, from that
SavedModel's own variables: `python -m training archive saved_models/cifar10/4`.
Runs under the TensorFlow backend (the CLI sets it).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from model import contract
from model.builders import build_model
from model.classes import IMAGE_SHAPE
from training.config import TrainConfig

ARCHIVE_ATOL = 1e-4  # max |Δ| between the archive's and the SavedModel's outputs
PARITY_IMAGES = 64  # random uint8 images for versions whose run folder is gone


class ArchiveError(Exception):
    """The archive disagrees with the SavedModel or cannot be built; nothing was kept."""


def write_archive(model: keras.Model, saved: Path, layers: tuple[str, ...], images: np.ndarray) -> float:
    """Save `model` as `saved/model.keras`, reload it, and compare it with the SavedModel
    in `saved` on `images`; return the max |Δ|, or remove the archive and raise."""
    path = saved / contract.KERAS_ARCHIVE_FILE
    if path.exists():
        raise ArchiveError(f"{path} already exists; archives are immutable like their SavedModel")
    model.save(path)
    try:
        diff = _parity(keras.saving.load_model(path, compile=False), saved, layers, images)
        if diff > ARCHIVE_ATOL:
            raise ArchiveError(f"{path} disagrees with the SavedModel: max |Δ| = {diff:.2e} > {ARCHIVE_ATOL:.0e}")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return diff


def _parity(archive: keras.Model, saved: Path, layers: tuple[str, ...], images: np.ndarray) -> float:
    loaded = tf.saved_model.load(str(saved))
    batch = tf.constant(images)
    expected = {k: v.numpy() for k, v in loaded.signatures[contract.FEATURE_MAPS_SIGNATURE](image=batch).items()}
    features = keras.Model(archive.input, [archive.get_layer(name).output for name in layers] + [archive.outputs[0]])
    *maps, logits = (keras.ops.convert_to_numpy(t) for t in features(images, training=False))
    got = {name: m.astype(np.float32) for name, m in zip(layers, maps, strict=True)}
    got[contract.PROBABILITIES] = keras.ops.convert_to_numpy(keras.ops.softmax(logits.astype(np.float32)))
    if set(got) != set(expected):
        raise ArchiveError(f"the archive's outputs {sorted(got)} differ from the SavedModel's {sorted(expected)}")
    return max(float(np.max(np.abs(got[k] - expected[k]))) for k in expected)


def add_archive(version: Path) -> dict[str, Any]:
    """Write `version/model.keras` from the SavedModel's variables, parity-checked, and
    record it in the model card. For versions exported before archives existed."""
    card_path = version / contract.MODEL_CARD_FILE
    card = json.loads(card_path.read_text())
    cfg = TrainConfig.from_json(card["training"]["config"])
    keras.mixed_precision.set_global_policy("float32")
    model = build_model(cfg.arch, **cfg.model_options())
    # The SavedModel tracks the Keras model as `model`: the same object graph restores it.
    status = tf.train.Checkpoint(model=model).read(str(version / "variables" / "variables"))
    try:
        status.expect_partial().assert_existing_objects_matched()
    except AssertionError as exc:
        raise ArchiveError(f"{version}'s variables do not fit a rebuilt {cfg.arch} network: {exc}") from exc
    images = np.random.default_rng(0).integers(0, 256, (PARITY_IMAGES, *IMAGE_SHAPE), dtype=np.uint8)
    diff = write_archive(model, version, tuple(card["feature_layers"]), images)
    card.setdefault("export", {})["keras_archive"] = archive_record(diff)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card


def archive_record(diff: float) -> dict[str, Any]:
    """What the model card says about the archive."""
    return {
        "file": contract.KERAS_ARCHIVE_FILE,
        "parity_max_abs_diff": diff,
        "keras": keras.__version__,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
