"""`python -m training quantize <version>`: the version's SavedModel as OpenVINO IR,
float32 and int8, in `<version>/openvino/`, for the service's openvino runtime.

The int8 graph is NNCF's post-training quantization of the float32 one, its activation
ranges measured on `calibration_images` images drawn (seeded) from the training part of
the card's split; the validation images are never among them. Nothing is written unless
- the float32 IR matches the SavedModel on the parity batch (the first `parity_images`
  of the validation split): probabilities plain and TTA within `parity_atol`, every
  feature map within `feature_rtol` of its largest value;
- on the whole validation split, with and without TTA, int8's top class is float32's
  for at least `min_agreement` of the images and its accuracy is within
  `max_accuracy_gap` of float32's.
The validation accuracy of the SavedModel (TensorFlow), float32 and int8, plain and TTA,
is recomputed here and recorded in the card under `openvino`, with the files and the
calibration set.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from model import contract
from model.telemetry import telemetry_declined
from training import openvino_ir
from training.data import load_dataset, stratified_split
from training.export import git_commit


@dataclass(frozen=True)
class QuantizeConfig:
    """The calibration set and the checks that decide whether the IR is written."""

    calibration_images: int = 300  # images, drawn without replacement from the split's training part
    calibration_seed: int = 0  # numpy seed of that draw
    parity_images: int = 500  # the first images of the validation split (as `reexport` compares on)
    parity_atol: float = 1e-4  # max |Δp|, float32 IR vs SavedModel, probabilities plain and TTA
    feature_rtol: float = 1e-4  # max |Δ| of a feature map over its largest |value|, float32 IR vs SavedModel
    min_agreement: float = 0.99  # fraction of validation images whose int8 top class is float32's, plain
    min_agreement_tta: float = 0.99  # the same, with TTA
    max_accuracy_gap: float = 0.003  # |int8 - float32| validation accuracy, a fraction (0.3 point)
    batch_size: int = 250  # images per call while evaluating


class QuantizeError(Exception):
    """The version cannot be quantized, or the IR failed a check; nothing was written."""


def check_version(version: Path, force: bool = False) -> dict[str, Any]:
    """The version's card, if the folder can be quantized; QuantizeError otherwise."""
    for name in ("saved_model.pb", contract.MODEL_CARD_FILE):
        if not (version / name).is_file():
            raise QuantizeError(f"{version} has no {name}; quantize needs an exported version folder")
    card: dict[str, Any] = json.loads((version / contract.MODEL_CARD_FILE).read_text())
    if not card.get("data", {}).get("val_split") or not card.get("feature_layers"):
        raise QuantizeError(f"{version / contract.MODEL_CARD_FILE} lacks data.val_split or feature_layers")
    if (version / contract.OPENVINO_DIR).exists() and not force:
        raise QuantizeError(f"{version / contract.OPENVINO_DIR} already exists; pass --force to write it again")
    return card


def calibration_indices(train_idx: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` indices of the split's training part, drawn without replacement."""
    if not 0 < size <= len(train_idx):
        raise QuantizeError(f"--calibration-images {size}: the training part holds {len(train_idx)} images")
    return np.sort(np.random.default_rng(seed).choice(train_idx, size=size, replace=False))


def first_convolutions(model: Any) -> list[str]:
    """The convolutions nearest the input, one per view (serving_tta runs the network on
    several): the stem, which sees standardised pixels."""
    found, seen = [], set()
    frontier = [target for parameter in model.get_parameters() for target in parameter.output(0).get_target_inputs()]
    while frontier:
        node = frontier.pop().get_node()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        if node.get_type_name() == "Convolution":
            found.append(node.get_friendly_name())
        else:
            frontier += [target for output in node.outputs() for target in output.get_target_inputs()]
    return sorted(found)


def _int8(float32: Any, calibration: np.ndarray) -> Any:
    """NNCF's post-training int8 graph of `float32`. Measured on the shipped versions
    (docs/serving.md): the stem stays float32 (quantizing its input, the standardised
    pixels, re-rounds 8-bit data onto another grid: the largest single loss of top-class
    agreement, for a layer that costs little), activation ranges come from histograms
    rather than the mean of per-image extremes, and the bias correction is the full one."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return nncf.quantize(
        float32,
        # One image per item: NNCF's statistics are per item, and subset_size counts items.
        nncf.Dataset([image[None] for image in calibration]),
        subset_size=len(calibration),
        fast_bias_correction=False,
        ignored_scope=nncf.IgnoredScope(names=first_convolutions(float32)),
        advanced_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.HISTOGRAM
        ),
    )


def _tensorflow_probabilities(version: Path, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    loaded = tf.saved_model.load(str(version))
    result = {}
    for signature, name in (
        (contract.SERVING_SIGNATURE, contract.PROBABILITIES),
        (contract.TTA_SIGNATURE, contract.OPENVINO_TTA_OUTPUT),
    ):
        serve = loaded.signatures[signature]
        result[name] = np.concatenate(
            [
                serve(image=tf.constant(images[i : i + batch_size]))[contract.PROBABILITIES].numpy()
                for i in range(0, len(images), batch_size)
            ]
        )
    return result


def _parity(version: Path, model: Any, layers: list[str], images: np.ndarray, cfg: QuantizeConfig) -> dict[str, Any]:
    loaded = tf.saved_model.load(str(version))
    batch = tf.constant(images)
    expected = {k: v.numpy() for k, v in loaded.signatures[contract.FEATURE_MAPS_SIGNATURE](image=batch).items()}
    tta = loaded.signatures[contract.TTA_SIGNATURE](image=batch)[contract.PROBABILITIES].numpy()
    expected[contract.OPENVINO_TTA_OUTPUT] = tta
    got = openvino_ir.run(openvino_ir.compile_model(model), images, cfg.batch_size)
    probs = {
        k: float(np.max(np.abs(got[k] - expected[k]))) for k in (contract.PROBABILITIES, contract.OPENVINO_TTA_OUTPUT)
    }
    features = {
        k: float(np.max(np.abs(got[k] - expected[k])) / max(float(np.max(np.abs(expected[k]))), 1e-12)) for k in layers
    }
    worst_p, worst_f = max(probs, key=probs.__getitem__), max(features, key=features.__getitem__)
    if probs[worst_p] > cfg.parity_atol or features[worst_f] > cfg.feature_rtol:
        raise QuantizeError(
            f"the float32 IR disagrees with the SavedModel on the parity batch: max |Δp| {probs[worst_p]:.2e} "
            f"({worst_p}, limit {cfg.parity_atol:.0e}), feature maps {features[worst_f]:.2e} of their largest value "
            f"({worst_f}, limit {cfg.feature_rtol:.0e}); nothing written"
        )
    return {
        "images": f"the first {len(images)} of the validation split",
        "probabilities_max_abs_diff": probs,
        "feature_maps_max_rel_diff": features,
    }


def _accuracy(probs: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float(np.mean(probs[contract.PROBABILITIES].argmax(1) == labels)),
        "accuracy_tta": float(np.mean(probs[contract.OPENVINO_TTA_OUTPUT].argmax(1) == labels)),
    }


def _check_int8(
    float32: dict[str, np.ndarray], int8: dict[str, np.ndarray], labels: np.ndarray, cfg: QuantizeConfig
) -> dict[str, Any]:
    """int8's figures against float32's; QuantizeError past the limits."""
    record: dict[str, Any] = _accuracy(int8, labels)
    reference = _accuracy(float32, labels)
    for output, suffix, limit in (
        (contract.PROBABILITIES, "", cfg.min_agreement),
        (contract.OPENVINO_TTA_OUTPUT, "_tta", cfg.min_agreement_tta),
    ):
        agreement = float(np.mean(int8[output].argmax(1) == float32[output].argmax(1)))
        record[f"top1_agreement_with_float32{suffix}"] = agreement
        gap = record[f"accuracy{suffix}"] - reference[f"accuracy{suffix}"]
        what = "with TTA" if suffix else "without TTA"
        if agreement < limit or abs(gap) > cfg.max_accuracy_gap:
            raise QuantizeError(
                f"int8 {what}: top class as float32's on {agreement:.2%} of {len(labels)} validation images "
                f"(need {limit:.1%}), accuracy {gap * 100:+.2f} points (limit "
                f"±{cfg.max_accuracy_gap * 100:.1f}); nothing written"
            )
    return record


def quantize(version: Path, data: str, cfg: QuantizeConfig = QuantizeConfig(), force: bool = False) -> dict[str, Any]:
    """Write `version/openvino/` (float32 and int8 IR) and its card record; return the card."""
    import openvino as ov

    with telemetry_declined():  # nncf's telemetry starts at its first import
        import nncf

    card = check_version(version, force)
    layers = list(card["feature_layers"])
    split = card["data"]["val_split"]
    ds = load_dataset(data, "train")
    train_idx, val_idx = stratified_split(ds.labels, split["size"], split["seed"])
    calibration = calibration_indices(train_idx, cfg.calibration_images, cfg.calibration_seed)
    assert not np.isin(calibration, val_idx).any(), "a validation image in the calibration set"
    val_images, val_labels = ds.images[val_idx], ds.labels[val_idx]

    tmp = version / f".{contract.OPENVINO_DIR}.tmp-{os.getpid()}"
    old = version / f".{contract.OPENVINO_DIR}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        try:
            ov.save_model(openvino_ir.convert(version, layers), tmp / "float32.xml", compress_to_fp16=False)
        except ValueError as exc:
            raise QuantizeError(f"{exc}; nothing written") from exc
        float32 = ov.Core().read_model(tmp / "float32.xml")  # checked and measured as written
        parity = _parity(version, float32, layers, val_images[: cfg.parity_images], cfg)
        quantized = _int8(ov.Core().read_model(tmp / "float32.xml"), ds.images[calibration])
        ov.save_model(quantized, tmp / "int8.xml", compress_to_fp16=False)
        int8 = ov.Core().read_model(tmp / "int8.xml")

        wanted = [contract.PROBABILITIES, contract.OPENVINO_TTA_OUTPUT]
        probs = {
            name: openvino_ir.run(openvino_ir.compile_model(openvino_ir.outputs(m, wanted)), val_images, cfg.batch_size)
            for name, m in (("float32", float32), ("int8", int8))
        }
        tensorflow = _tensorflow_probabilities(version, val_images, cfg.batch_size)
        validation = {
            "images": len(val_labels),
            "tensorflow": _accuracy(tensorflow, val_labels),
            "float32": _accuracy(probs["float32"], val_labels),
            "int8": _check_int8(probs["float32"], probs["int8"], val_labels, cfg),
        }
        final = version / contract.OPENVINO_DIR
        files = {
            precision: {kind: openvino_ir.file_record(tmp / f"{precision}.{kind}", tmp) for kind in ("xml", "bin")}
            for precision in contract.OPENVINO_PRECISIONS
        }
        for record in (r for precision in files.values() for r in precision.values()):
            record["path"] = f"{contract.OPENVINO_DIR}/{record['path']}"
        card["openvino"] = {
            "command": "python -m training quantize",
            "files": files,
            "outputs": openvino_ir.output_names(layers),
            "kept_float32": first_convolutions(float32),
            "calibration": {
                "images": len(calibration),
                "seed": cfg.calibration_seed,
                "drawn_from": f"the training part of the card's split ({len(train_idx)} images; never the validation images)",
                "data_sha256": ds.sha256,
            },
            "parity": parity,
            "validation": validation,
            "limits": dataclasses.asdict(cfg),
            "openvino": ov.__version__,
            "nncf": nncf.__version__,
            "git_commit": git_commit(),
            "quantized_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        card_tmp = version / f".{contract.MODEL_CARD_FILE}.tmp-{os.getpid()}"
        card_tmp.write_text(json.dumps(card, indent=2) + "\n")
        card_tmp.replace(version / contract.MODEL_CARD_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return card


def format_summary(version: Path, card: dict[str, Any]) -> str:
    """One line per runtime: validation accuracy plain and TTA, and the files' sizes."""
    record = card["openvino"]
    lines = [f"{version}: validation accuracy on {record['validation']['images']} images (plain / TTA)"]
    for name in ("tensorflow", *contract.OPENVINO_PRECISIONS):
        figures = record["validation"][name]
        line = f"  {name:<10} {figures['accuracy']:.2%} / {figures['accuracy_tta']:.2%}"
        if name in record["files"]:
            size = sum(f["bytes"] for f in record["files"][name].values())
            line += f"   {size / 1e6:.1f} MB"
        if "top1_agreement_with_float32" in figures:
            line += (
                f"   top class as float32's: {figures['top1_agreement_with_float32']:.2%} / "
                f"{figures['top1_agreement_with_float32_tta']:.2%}"
            )
        lines.append(line)
    return "\n".join(lines)
