"""The SavedModel contract: the names and layout that the exporter writes and the
service reads. Changing a value here is a breaking change for both sides."""

from __future__ import annotations

from pathlib import Path

SERVING_SIGNATURE = "serving_default"
FEATURE_MAPS_SIGNATURE = "feature_maps"
# Same input and output as serving_default, averaged over the image and its mirror:
# more accurate, twice the compute. The service serves serving_default.
TTA_SIGNATURE = "serving_tta"
INPUT_NAME = "image"  # uint8 [N, 32, 32, 3], raw pixels; normalisation is in the graph
PROBABILITIES = "probabilities"  # float32 [N, 10]

# Why the model chose a class (Grad-CAM and gradient saliency), computed in the graph so
# any TF Serving client can call it. Versions exported before it lack this signature.
EXPLAIN_SIGNATURE = "explain"
# Input and output, int32 [N]: the class to explain per image. Signature inputs cannot be
# optional, so TOP_CLASS asks for the image's top class; the output says which was used.
TARGET_CLASS = "target_class"
TOP_CLASS = -1
# Outputs, float32 [N, 32, 32], each scaled to 0-1 per image (0 everywhere when the map
# is all zero): `gradcam_<layer>` for every feature layer (the last one is the last
# convolutional block), and `saliency`, max over channels of |d logit / d pixel|.
GRADCAM_PREFIX = "gradcam_"
SALIENCY = "saliency"
LABELS_FILE = "labels.txt"  # asset: one class name per line, in label order
MODEL_CARD_FILE = "model_card.json"  # beside saved_model.pb
# The same float32 weights as a Keras archive, beside saved_model.pb: what the service's
# jax runtime loads (no TensorFlow there). The SavedModel stays the contract.
KERAS_ARCHIVE_FILE = "model.keras"
# The same model as OpenVINO IR (`python -m training quantize`), in this folder beside
# saved_model.pb: `<precision>.xml` + `<precision>.bin` per precision, one graph each
# whose outputs are every feature layer, `probabilities` (serving_default) and
# OPENVINO_TTA_OUTPUT (serving_tta's probabilities), over one copy of the weights. The
# card's `openvino` record lists the files with their sizes and SHA-256.
OPENVINO_DIR = "openvino"
OPENVINO_PRECISIONS = ("float32", "int8")
OPENVINO_TTA_OUTPUT = "probabilities_tta"

# Per-channel statistics of the CIFAR-10 training split, in 0-255 pixel units. They are
# baked into every exported graph, so serving never normalises by itself.
CHANNEL_MEAN = (125.307, 122.950, 113.865)
CHANNEL_STD = (62.993, 62.089, 66.705)


class ModelDirError(Exception):
    """A model directory that does not hold a usable versioned SavedModel."""


def served_name(model_dir: Path) -> str:
    """The name a model folder is served under: its own name, as TensorFlow Serving's
    base path names a model (`saved_models/cifar10` -> `cifar10`, `models/tiny` ->
    `tiny`). A version folder given directly is named by the folder above it."""
    path = model_dir.absolute()
    return path.parent.name if path.name.isdigit() else path.name


def latest_version_dir(model_dir: Path) -> Path:
    """Return `model_dir/<N>` for the highest numeric N, as TensorFlow Serving does.

    A directory that is itself a SavedModel (holds saved_model.pb) is returned as is,
    so a user can point at one export directly.
    """
    if not model_dir.is_dir():
        raise ModelDirError(f"model directory {model_dir} does not exist")
    if (model_dir / "saved_model.pb").is_file():
        return model_dir
    versions = sorted((int(p.name), p) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise ModelDirError(f"model directory {model_dir} holds no numeric version folder (e.g. {model_dir}/1)")
    path = versions[-1][1]
    if not (path / "saved_model.pb").is_file():
        raise ModelDirError(f"{path} has no saved_model.pb")
    return path


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """Every numeric version folder of a model's base path, as TensorFlow Serving sees
    them. A directory that is itself a SavedModel is one version: its own number when
    its name is one (`saved_models/cifar10/6`), else 0."""
    if not model_dir.is_dir():
        raise ModelDirError(f"model directory {model_dir} does not exist")
    if (model_dir / "saved_model.pb").is_file():
        return {int(model_dir.name) if model_dir.name.isdigit() else 0: model_dir}
    return {int(p.name): p for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir()}
