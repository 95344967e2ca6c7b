"""Export a run as a versioned SavedModel that honours `model.contract`.

The export always runs under the TensorFlow backend and rebuilds the network in
float32, whatever backend or precision trained it. It writes to a temporary folder,
reloads that with plain `tf.saved_model.load`, compares its outputs with the trained
model's on the run's fixed batch, and only then renames it into place.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from model import contract
from model.builders import build_model, feature_layers
from model.builders.airbench import tta_logits
from model.classes import CLASS_NAMES, IMAGE_SHAPE
from training.archive import archive_record, write_archive
from training.config import TrainConfig
from training.explain_reference import explain_parity
from training.explain_signature import Explainer
from training.run_folder import CONFIG_FILE, METRICS_FILE, PARITY_FILE, WEIGHTS_FILE, RunFolderError, check_finished

PARITY_ATOL = 1e-4  # max |Δp| between the trained model and the SavedModel, float32
TTA_DESCRIPTION = {
    0: "no augmentation (as serving_default)",
    1: "mirror-averaged",
    2: "averaged over the mirror and two one-pixel shifts (six views)",
}
TRAINING_RECORD = ("precision", "compile_seconds", "compile_run_seconds", "eval_seconds", "steps", "seed_statistics")


class ExportError(Exception):
    """The export was refused; nothing was written at the destination."""


class _Servable(tf.Module):
    """The exported object: the contract's signatures over one set of weights, plus the labels."""

    def __init__(self, model: keras.Model, layers: tuple[str, ...], labels: Path, tta_level: int = 1) -> None:
        super().__init__()
        self.model = model
        self._tta_level = tta_level
        self.feature_model = keras.Model(
            model.input, [model.get_layer(name).output for name in layers] + [model.outputs[0]]
        )
        self.labels = tf.saved_model.Asset(str(labels))
        self._layers = layers
        self._explainer = Explainer(model, layers)

    @staticmethod
    def _softmax(logits: tf.Tensor) -> tf.Tensor:
        return tf.nn.softmax(tf.cast(logits, tf.float32), name=contract.PROBABILITIES)

    @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.uint8, name=contract.INPUT_NAME)])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {contract.PROBABILITIES: self._softmax(self.model(image, training=False))}

    @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.uint8, name=contract.INPUT_NAME)])
    def serve_tta(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        # Test-time augmentation at the run's level: the mirror (1), and the two
        # one-pixel shifts too (2); the same function the trainer measured with.
        logits = tta_logits(lambda x: self.model(x, training=False), image, self._tta_level)
        return {contract.PROBABILITIES: self._softmax(logits)}

    @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.uint8, name=contract.INPUT_NAME)])
    def feature_maps(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        *maps, logits = self.feature_model(image, training=False)
        result = {name: tf.cast(m, tf.float32) for name, m in zip(self._layers, maps, strict=True)}
        result[contract.PROBABILITIES] = self._softmax(logits)
        return result

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, *IMAGE_SHAPE], tf.uint8, name=contract.INPUT_NAME),
            tf.TensorSpec([None], tf.int32, name=contract.TARGET_CLASS),
        ]
    )
    def explain(self, image: tf.Tensor, target_class: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._explainer(image, target_class)


SIGNATURES = (
    contract.SERVING_SIGNATURE,
    contract.FEATURE_MAPS_SIGNATURE,
    contract.TTA_SIGNATURE,
    contract.EXPLAIN_SIGNATURE,
)


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def export_run(run: Path, out: Path) -> dict[str, Any]:
    """Export `run` to `out` (which must not exist) and return the model card."""
    if keras.backend.backend() != "tensorflow":
        raise ExportError("export needs KERAS_BACKEND=tensorflow (the CLI sets it)")
    if out.exists():
        raise ExportError(f"{out} already exists; exports are immutable, choose a new version")
    try:
        check_finished(run)
    except RunFolderError as exc:
        raise ExportError(str(exc)) from exc
    cfg = TrainConfig.from_json(json.loads((run / CONFIG_FILE).read_text()))
    metrics = json.loads((run / METRICS_FILE).read_text())
    # Runs from before the airbench trainer's warm-up run was called its compile run.
    if "warmup_run_seconds" in metrics:
        metrics.setdefault("compile_run_seconds", metrics.pop("warmup_run_seconds"))
    keras.mixed_precision.set_global_policy("float32")
    model = build_model(cfg.arch, **cfg.model_options())
    model.load_weights(run / WEIGHTS_FILE)
    layers = feature_layers(cfg.arch)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            # The asset keeps its file name inside the SavedModel: it must be labels.txt.
            labels = Path(scratch) / contract.LABELS_FILE
            labels.write_text("\n".join(CLASS_NAMES) + "\n")
            servable = _Servable(model, layers, labels, cfg.tta_level)
            save_servable(servable, tmp)
        max_diff = _check_parity(tmp, run / PARITY_FILE)
        with np.load(run / PARITY_FILE) as parity:  # the jax runtime's archive, checked like the signatures
            archive_diff = write_archive(model, tmp, layers, parity["images"])
            try:
                explain_diff = explain_parity(tf.saved_model.load(str(tmp)), model, layers, parity["images"][:16])
            except ValueError as exc:
                raise ExportError(f"{exc}; nothing written") from exc
        card = _model_card(cfg, metrics, model, tmp, max_diff)
        card["export"]["explain_parity_max_abs_diff"] = explain_diff
        card["export"]["keras_archive"] = archive_record(archive_diff)
        (tmp / contract.MODEL_CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card


def save_servable(servable: _Servable, path: Path) -> None:
    tf.saved_model.save(
        servable,
        str(path),
        signatures={
            contract.SERVING_SIGNATURE: servable.serve,
            contract.FEATURE_MAPS_SIGNATURE: servable.feature_maps,
            contract.TTA_SIGNATURE: servable.serve_tta,
            contract.EXPLAIN_SIGNATURE: servable.explain,
        },
    )


def _check_parity(saved: Path, parity_file: Path) -> float:
    with np.load(parity_file) as parity:
        images, expected, expected_tta = parity["images"], parity["probabilities"], parity["probabilities_tta"]
    loaded = tf.saved_model.load(str(saved))
    batch = tf.constant(images)
    probs = loaded.signatures[contract.SERVING_SIGNATURE](image=batch)[contract.PROBABILITIES].numpy()
    tta = loaded.signatures[contract.TTA_SIGNATURE](image=batch)[contract.PROBABILITIES].numpy()
    maps = loaded.signatures[contract.FEATURE_MAPS_SIGNATURE](image=batch)
    diff = max(float(np.max(np.abs(probs - expected))), float(np.max(np.abs(tta - expected_tta))))
    if diff > PARITY_ATOL:
        raise ExportError(
            f"SavedModel disagrees with the trained model: max |Δp| = {diff:.2e} > {PARITY_ATOL:.0e}; nothing written"
        )
    feature_diff = float(np.max(np.abs(maps[contract.PROBABILITIES].numpy() - probs)))
    if feature_diff > 1e-6:
        raise ExportError(f"feature_maps and serving_default disagree by {feature_diff:.2e}; nothing written")
    top = tf.fill([len(images)], contract.TOP_CLASS)
    explained = loaded.signatures[contract.EXPLAIN_SIGNATURE](image=batch, target_class=top)
    explain_diff = float(np.max(np.abs(explained[contract.PROBABILITIES].numpy() - probs)))
    if explain_diff > 1e-6:
        raise ExportError(f"explain and serving_default disagree by {explain_diff:.2e}; nothing written")
    return diff


def _model_card(
    cfg: TrainConfig, metrics: dict[str, Any], model: keras.Model, saved: Path, parity: float
) -> dict[str, Any]:
    layer_shapes = {name: list(model.get_layer(name).output.shape[1:]) for name in feature_layers(cfg.arch)}
    return {
        # For the record: the service names a model by the folder it serves, as this does.
        "name": contract.served_name(saved.parent),
        "architecture": cfg.arch,
        "parameters": int(model.count_params()),
        "classes": list(CLASS_NAMES),
        "input": {"name": contract.INPUT_NAME, "dtype": "uint8", "shape": [None, *IMAGE_SHAPE]},
        "signatures": list(SIGNATURES),
        "feature_layers": layer_shapes,
        "test_time_augmentation": f"none in {contract.SERVING_SIGNATURE}; {TTA_DESCRIPTION[cfg.tta_level]} in {contract.TTA_SIGNATURE}",
        "data": {
            "source": metrics.get("data_source"),
            "sha256": metrics.get("data_sha256"),
            "train_images": metrics.get("train_images"),
            "val_images": metrics.get("val_images"),
            "val_split": {"size": cfg.val_size, "seed": cfg.split_seed, "method": "stratified"},
        },
        "metrics": {
            "val_accuracy": metrics.get("val_accuracy"),
            "val_accuracy_tta": metrics.get("val_accuracy_tta"),
            "per_class_accuracy": metrics.get("per_class_accuracy"),
        },
        "training": {
            "epochs": cfg.epochs,
            "train_seconds": metrics.get("train_seconds"),
            "device": metrics.get("device"),
            "keras_backend": metrics.get("backend"),
            "preset": cfg.preset,
            "config": cfg.to_json(),
            # The GPU trainer's record: precision, compilation, the timed evaluation, the other seeds.
            **{k: metrics[k] for k in TRAINING_RECORD if k in metrics},
        },
        "export": {
            "parity_max_abs_diff": parity,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "git_commit": git_commit(),
            "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    }
