"""The SavedModel contract: the names and layout that the exporter writes and the
service reads. Changing a value here is a breaking change for both sides."""

from __future__ import annotations

import os
from dataclasses import dataclass
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


# Version numbers: TensorFlow Serving's are int64; ours have at most 18 digits, so every
# version on disk can also be named in a URL (app/web/routes/common.py: VERSION_PARAM).
MAX_VERSION = 10**18 - 1
VERSION_SYNTAX = "at most 18 ASCII digits, no leading zero"


def parse_number(text: str, maximum: int) -> int | None:
    """`text` as a whole number from 0 to `maximum`, else None. ASCII digits only and
    canonical (no sign, space, underscore or leading zero), so a number has exactly one
    spelling. The one parser for numbers in folder names, URL paths and queries:
    `str.isdigit()` and `int()` also take '²', '①', '٣' and fullwidth digits."""
    if not 0 < len(text) <= len(str(maximum)) or not (text.isascii() and text.isdigit()):
        return None
    if text[0] == "0" and len(text) > 1:
        return None
    value = int(text)
    return value if value <= maximum else None


def parse_version(text: str) -> int | None:
    """A version number as a folder name, path or query gives it (`parse_number`)."""
    return parse_number(text, MAX_VERSION)


def display_name(name: str) -> str:
    """A file name as text that is safe to log and to put in JSON: bytes that are not
    UTF-8 (which Linux allows in names) become \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def served_name(model_dir: Path) -> str:
    """The name a model folder is served under: its own name, as TensorFlow Serving's
    base path names a model (`saved_models/cifar10` -> `cifar10`, `models/tiny` ->
    `tiny`). A version folder given directly is named by the folder above it."""
    path = model_dir.absolute()
    return path.parent.name if parse_version(path.name) is not None else path.name


@dataclass(frozen=True)
class VersionFolders:
    """What a model's base path holds: its version folders, and the entries that look
    like versions but are not served (each with the reason, for the log and the status)."""

    versions: dict[int, Path]
    skipped: dict[str, str]  # display_name(folder name) -> why


def scan_versions(model_dir: Path) -> VersionFolders:
    """The version folders of a model's base path, as TensorFlow Serving sees them, but
    strictly: a folder counts when its name is a canonical version number
    (`parse_version`) and it resolves inside the base path (a link pointing out of it is
    skipped). Names that Python would read as a number but we do not (`008`, `²`, 19
    digits) are skipped with the reason; other names (`tmp`, `.incoming`) are not
    versions at all. A directory that is itself a SavedModel is one version: its own
    number when its name is one (`saved_models/cifar10/6`), else 0."""
    if not model_dir.is_dir():
        raise ModelDirError(f"model directory {model_dir} does not exist")
    if (model_dir / "saved_model.pb").is_file():
        number = parse_version(model_dir.name)
        return VersionFolders({number if number is not None else 0: model_dir}, {})
    base = model_dir.resolve()
    versions: dict[int, Path] = {}
    skipped: dict[str, str] = {}
    for entry in model_dir.iterdir():
        number = parse_version(entry.name)
        if number is None:
            if entry.name.isnumeric():  # any script's digits, '²', '½': a number to Python, not to us
                skipped[display_name(entry.name)] = f"not a version number ({VERSION_SYNTAX})"
            continue
        if not entry.is_dir():
            continue
        if not entry.resolve().is_relative_to(base):
            skipped[display_name(entry.name)] = "a link to a folder outside the model's base path"
            continue
        versions[number] = entry
    return VersionFolders(versions, skipped)


def latest_version_dir(model_dir: Path) -> Path:
    """Return `model_dir/<N>` for the highest version N (`scan_versions`), as TensorFlow
    Serving does.

    A directory that is itself a SavedModel (holds saved_model.pb) is returned as is,
    so a user can point at one export directly.
    """
    found = scan_versions(model_dir)
    if not found.versions:
        odd = "".join(f"; skipped {name!r}: {why}" for name, why in sorted(found.skipped.items()))
        raise ModelDirError(f"model directory {model_dir} holds no numeric version folder (e.g. {model_dir}/1){odd}")
    path = found.versions[max(found.versions)]
    if not (path / "saved_model.pb").is_file():
        raise ModelDirError(f"{path} has no saved_model.pb")
    return path
