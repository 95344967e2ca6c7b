"""The Keras archive beside each SavedModel: written and parity-checked by the export,
added to older versions from their SavedModel's variables, refused when it disagrees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model import contract


def test_export_writes_the_archive_with_its_parity(tiny_model: Path) -> None:
    version = contract.latest_version_dir(tiny_model)
    assert (version / contract.KERAS_ARCHIVE_FILE).is_file()
    record = json.loads((version / contract.MODEL_CARD_FILE).read_text())["export"]["keras_archive"]
    assert record["file"] == contract.KERAS_ARCHIVE_FILE and 0 <= record["parity_max_abs_diff"] <= 1e-4


def test_add_archive_rebuilds_it_from_the_savedmodel(tiny_model: Path, tmp_path: Path) -> None:
    from training.archive import ArchiveError, add_archive

    version = tmp_path / "cifar10" / "1"
    shutil.copytree(contract.latest_version_dir(tiny_model), version)
    (version / contract.KERAS_ARCHIVE_FILE).unlink()
    card = add_archive(version)
    assert (version / contract.KERAS_ARCHIVE_FILE).is_file()
    assert card["export"]["keras_archive"]["parity_max_abs_diff"] <= 1e-4
    assert json.loads((version / contract.MODEL_CARD_FILE).read_text()) == card
    with pytest.raises(ArchiveError, match="already exists"):
        add_archive(version)


def test_an_archive_that_disagrees_is_not_kept(tiny_model: Path, tmp_path: Path) -> None:
    import keras

    from training.archive import ArchiveError, write_archive

    version = tmp_path / "1"
    shutil.copytree(contract.latest_version_dir(tiny_model), version)
    (version / contract.KERAS_ARCHIVE_FILE).unlink()
    model = keras.saving.load_model(
        contract.latest_version_dir(tiny_model) / contract.KERAS_ARCHIVE_FILE, compile=False
    )
    kernel = model.get_layer("linear").kernel
    kernel.assign(
        kernel.numpy() + np.random.default_rng(1).normal(0, 1, kernel.shape)
    )  # other weights than the SavedModel's
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    layers = tuple(json.loads((version / contract.MODEL_CARD_FILE).read_text())["feature_layers"])
    with pytest.raises(ArchiveError, match="disagrees"):
        write_archive(model, version, layers, images)
    assert not (version / contract.KERAS_ARCHIVE_FILE).exists()
