"""Re-export a shipped version in place with the `explain` signature, from its own
Keras archive (`model.keras`), so its weights, card metrics and version number stay.

Nothing replaces the old SavedModel until the new one is checked against it on real
held-out images (the card's validation split): every `serving_default`,
`serving_tta` and `feature_maps` output within REEXPORT_ATOL, the same top class for
every image, and `explain` within EXPLAIN_ATOL of an independent recomputation. The
figures go into the model card under `export.reexport`.
Runs under the TensorFlow backend (the CLI sets it): `python -m training reexport DIR`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from model import contract
from training.config import DEFAULT_DATA, TrainConfig
from training.data import load_dataset, stratified_split
from training.explain_reference import explain_parity
from training.export import SIGNATURES, _Servable, git_commit, save_servable

REEXPORT_ATOL = 1e-4  # max |Δ| of any output between the old and new SavedModel, float32
PARITY_VAL_IMAGES = 500  # the first images of the card's validation split
EXPLAIN_CHECK_IMAGES = 32  # of those, for the (slower, per-layer) recomputation


class ReexportError(Exception):
    """The version cannot be re-exported, or the new graph disagrees; nothing changed."""


def check_version(version: Path) -> dict[str, Any]:
    """The version's card, if the folder can be re-exported; ReexportError otherwise."""
    for name in ("saved_model.pb", contract.KERAS_ARCHIVE_FILE, contract.MODEL_CARD_FILE):
        if not (version / name).is_file():
            raise ReexportError(f"{version} has no {name}; re-export needs a version folder with all three")
    card: dict[str, Any] = json.loads((version / contract.MODEL_CARD_FILE).read_text())
    if contract.EXPLAIN_SIGNATURE in card.get("signatures", []):
        raise ReexportError(f"{version} already has the {contract.EXPLAIN_SIGNATURE!r} signature")
    return card


def validation_images(card: dict[str, Any], data: str, count: int = PARITY_VAL_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` images and labels of the card's held-out validation split."""
    split = card["data"]["val_split"]
    ds = load_dataset(data, "train")
    _, val_idx = stratified_split(ds.labels, split["size"], split["seed"])
    return ds.images[val_idx[:count]], ds.labels[val_idx[:count]]


def _outputs(saved: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    batch = tf.constant(images)
    result = {
        f"{contract.FEATURE_MAPS_SIGNATURE}/{k}": v.numpy()
        for k, v in saved.signatures[contract.FEATURE_MAPS_SIGNATURE](image=batch).items()
    }
    for name in (contract.SERVING_SIGNATURE, contract.TTA_SIGNATURE):
        result[f"{name}/{contract.PROBABILITIES}"] = saved.signatures[name](image=batch)[contract.PROBABILITIES].numpy()
    return result


def _compare(old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, Any]:
    if set(old) != set(new):
        raise ReexportError(f"the new SavedModel's outputs {sorted(new)} differ from the old {sorted(old)}")
    diffs = {k: float(np.max(np.abs(old[k] - new[k]))) for k in old}
    key = f"{contract.SERVING_SIGNATURE}/{contract.PROBABILITIES}"
    changed = int(np.sum(old[key].argmax(1) != new[key].argmax(1)))
    worst = max(diffs, key=lambda k: diffs[k])
    if changed or diffs[worst] > REEXPORT_ATOL:
        raise ReexportError(
            f"the new SavedModel disagrees with the old: {changed} top classes changed, "
            f"max |Δ| {diffs[worst]:.2e} in {worst} (limit {REEXPORT_ATOL:.0e}); nothing changed"
        )
    return {"max_abs_diff": diffs[worst], "worst_output": worst, "top_class_changes": changed}


def reexport(version: Path, data: str = DEFAULT_DATA) -> dict[str, Any]:
    """Replace `version`'s SavedModel by one with the explain signature; return the card."""
    if keras.backend.backend() != "tensorflow":
        raise ReexportError("re-export needs KERAS_BACKEND=tensorflow (the CLI sets it)")
    card = check_version(version)
    cfg = TrainConfig.from_json(card["training"]["config"])
    layers = tuple(card["feature_layers"])
    images, _ = validation_images(card, data)
    keras.mixed_precision.set_global_policy("float32")
    model = keras.saving.load_model(version / contract.KERAS_ARCHIVE_FILE, compile=False)
    tmp = version.parent / f".{version.name}.reexport-{os.getpid()}"
    old_copy = version.parent / f".{version.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            labels = Path(scratch) / contract.LABELS_FILE  # the asset keeps this file name
            labels.write_text((version / "assets" / contract.LABELS_FILE).read_text())
            save_servable(_Servable(model, layers, labels, cfg.tta_level), tmp)
        new = tf.saved_model.load(str(tmp))
        record = _compare(_outputs(tf.saved_model.load(str(version)), images), _outputs(new, images))
        try:
            explain_diff = explain_parity(new, model, layers, images[:EXPLAIN_CHECK_IMAGES])
        except ValueError as exc:
            raise ReexportError(f"{exc}; nothing changed") from exc
        record.update(
            {
                "images": f"the first {len(images)} of the validation split (seed {card['data']['val_split']['seed']})",
                "signatures_compared": [
                    contract.SERVING_SIGNATURE,
                    contract.TTA_SIGNATURE,
                    contract.FEATURE_MAPS_SIGNATURE,
                ],
                "explain_parity_max_abs_diff": explain_diff,
                "explain_parity_images": EXPLAIN_CHECK_IMAGES,
                "from": contract.KERAS_ARCHIVE_FILE,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "git_commit": git_commit(),
                "reexported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )
        card["signatures"] = list(SIGNATURES)
        card.setdefault("export", {})["reexport"] = record
        shutil.copy2(version / contract.KERAS_ARCHIVE_FILE, tmp / contract.KERAS_ARCHIVE_FILE)
        (tmp / contract.MODEL_CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        # Two renames: a reader sees the old version or the new one, never half of each.
        version.rename(old_copy)
        tmp.rename(version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old_copy, ignore_errors=True)
    return card
