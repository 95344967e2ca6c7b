"""`python -m training quantize`: OpenVINO IR written beside a version only when the
float32 graph matches the SavedModel and int8 stays within the limits; the card records
the files, the calibration set and the recomputed accuracies."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model import contract
from tests.conftest import SHARED_DATA, SHIPPED


def test_quantize_writes_the_ir_and_its_record(tiny_openvino: Path) -> None:
    version = contract.latest_version_dir(tiny_openvino)
    card = json.loads((version / contract.MODEL_CARD_FILE).read_text())
    record = card["openvino"]
    written = sorted(p.name for p in (version / contract.OPENVINO_DIR).iterdir())
    assert written == ["float32.bin", "float32.xml", "int8.bin", "int8.xml"]
    for precision in contract.OPENVINO_PRECISIONS:
        for kind in ("xml", "bin"):
            entry = record["files"][precision][kind]
            data = (version / entry["path"]).read_bytes()
            assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["outputs"] == [*card["feature_layers"], contract.PROBABILITIES, contract.OPENVINO_TTA_OUTPUT]
    assert record["calibration"]["images"] == 64 and "training part" in record["calibration"]["drawn_from"]
    assert len(record["kept_float32"]) >= 2  # the stem of serving_default's graph and of serving_tta's
    # The float32 graph is the SavedModel's, on the parity batch.
    assert max(record["parity"]["probabilities_max_abs_diff"].values()) <= 1e-4
    assert max(record["parity"]["feature_maps_max_rel_diff"].values()) <= 1e-4
    validation = record["validation"]
    assert validation["images"] == card["data"]["val_split"]["size"]
    assert set(validation) == {"images", "tensorflow", "float32", "int8"}
    # The float32 IR's accuracy is the SavedModel's: same top classes on the same images.
    assert validation["float32"] == validation["tensorflow"]
    assert 0 <= validation["int8"]["top1_agreement_with_float32"] <= 1
    assert not [p for p in version.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_calibration_images_come_from_the_training_part_only() -> None:
    from training.data import stratified_split
    from training.quantize import calibration_indices

    labels = np.arange(1000) % 10
    train_idx, val_idx = stratified_split(labels, 100, 0)
    picked = calibration_indices(train_idx, 300, 0)
    assert len(set(picked.tolist())) == 300 and not np.isin(picked, val_idx).any()
    np.testing.assert_array_equal(picked, calibration_indices(train_idx, 300, 0))  # seeded
    assert not np.array_equal(picked, calibration_indices(train_idx, 300, 1))


def test_quantize_refuses_int8_past_the_limits(tiny_model: Path, tmp_path: Path) -> None:
    from training.quantize import QuantizeConfig, QuantizeError, quantize

    version = tmp_path / "cifar10" / "1"
    shutil.copytree(contract.latest_version_dir(tiny_model), version)
    card_before = (version / contract.MODEL_CARD_FILE).read_text()
    # No int8 graph can agree with float32 on more than every image.
    strict = QuantizeConfig(calibration_images=16, min_agreement=1.01)
    with pytest.raises(QuantizeError, match="top class as float32's .* nothing written"):
        quantize(version, str(SHARED_DATA), strict)
    assert (version / contract.MODEL_CARD_FILE).read_text() == card_before
    assert not [p for p in version.iterdir() if p.name == contract.OPENVINO_DIR or p.name.startswith(".")]


def test_quantize_refuses_to_overwrite_without_force(tiny_openvino: Path) -> None:
    from training.quantize import QuantizeError, check_version

    version = contract.latest_version_dir(tiny_openvino)
    with pytest.raises(QuantizeError, match="already exists; pass --force"):
        check_version(version)
    assert check_version(version, force=True)["openvino"]


@pytest.mark.parametrize(
    ("folder", "flags", "words"),
    [
        pytest.param("nowhere/1", (), ("nowhere/1", "no saved_model.pb"), id="missing"),
        pytest.param(f"{SHIPPED.name}/6", (), ("openvino already exists", "--force"), id="already-quantized"),
        # Flags are checked before any folder or data is read (numpy would raise on a negative seed).
        pytest.param("nowhere/1", ("--calibration-seed", "-1"), ("--calibration-seed",), id="negative-seed"),
        pytest.param("nowhere/1", ("--calibration-images", "0"), ("--calibration-images",), id="no-calibration"),
        pytest.param("nowhere/1", ("--min-agreement-tta", "1.5"), ("--min-agreement-tta",), id="agreement-over-1"),
        pytest.param("nowhere/1", ("--data", "nowhere.tar.gz"), ("nowhere.tar.gz", "does not exist"), id="no-data"),
    ],
)
def test_quantize_cli_mistakes_are_one_line(
    tmp_path: Path, folder: str, flags: tuple[str, ...], words: tuple[str, ...]
) -> None:
    from tests.training.test_cli import assert_one_line_error, cli

    path = folder if folder.startswith("nowhere") else str(SHIPPED.parent / folder)
    assert_one_line_error(cli(tmp_path, "quantize", path, *flags), *words)
