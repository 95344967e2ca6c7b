"""The run folder as both training loops write it (training.run_writer, run_data,
predict, device): the files export reads, their keys, the parity batch, the split."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from training.config import TrainConfig
from training.data import Dataset
from training.predict import softmax
from training.run_data import PARITY_BATCH, WHITENING_IMAGES, RunData
from training.run_folder import FINISHED, check_finished
from training.run_writer import RunWriter, run_record, write_history

COMMON_KEYS = {
    "arch",
    "params",
    "epochs",
    "backend",
    "device",
    "data_source",
    "data_sha256",
    "train_images",
    "val_images",
}


def _data(n: int = 300) -> Dataset:
    rng = np.random.default_rng(1)
    return Dataset(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10, "synthetic", "ab" * 32)


def _tiny_model():
    from model.builders import build_model

    return build_model("fast", widths=(4, 4, 4), stem="whiten")


def test_split_is_stratified_disjoint_and_gives_the_parity_batch() -> None:
    cfg = TrainConfig(val_size=100, split_seed=3)
    split = RunData.split(cfg, _data())
    assert (len(split.x_train), len(split.x_val)) == (200, 100)
    assert np.bincount(split.y_val).tolist() == [10] * 10
    assert np.array_equal(split.parity_images(), split.x_val[:PARITY_BATCH])
    assert len(split.whitening_images()) == min(WHITENING_IMAGES, 200)
    # Without a validation split the parity batch comes from the training images.
    no_val = RunData.split(cfg.replace(val_size=0), _data())
    assert np.array_equal(no_val.parity_images(), no_val.x_train[:PARITY_BATCH])


def test_writer_leaves_a_finished_run_with_the_common_keys(tmp_path: Path) -> None:
    cfg = TrainConfig(arch="fast", widths=(4, 4, 4), stem="whiten", val_size=100)
    split = RunData.split(cfg, _data())
    model = _tiny_model()
    writer = RunWriter(tmp_path / "run")
    writer.config(cfg)
    writer.history([{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}])
    writer.weights(model)
    logits = np.random.default_rng(0).normal(size=(PARITY_BATCH, 10)).astype(np.float32)
    writer.parity(split.parity_images(), lambda images, level: logits * (level + 1), tta_level=2)
    with pytest.raises(Exception, match="not a finished run"):
        check_finished(tmp_path / "run")  # metrics.json comes last
    record = run_record(cfg, model, split)
    writer.metrics(record)
    check_finished(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted((*FINISHED, "history.csv"))

    assert set(record) == COMMON_KEYS
    assert (record["train_images"], record["val_images"], record["data_sha256"]) == (200, 100, "ab" * 32)
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == json.loads(json.dumps(cfg.to_json()))
    with np.load(tmp_path / "run" / "parity.npz") as parity:
        assert np.array_equal(parity["images"], split.parity_images())
        np.testing.assert_allclose(parity["probabilities"], softmax(logits), rtol=1e-6)
        np.testing.assert_allclose(parity["probabilities_tta"], softmax(logits * 3), rtol=1e-6)
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").read_text().splitlines()))
    assert rows == [{"epoch": "1", "loss": "2.0"}, {"epoch": "2", "loss": "1.5"}]


def test_history_columns_are_the_first_rows(tmp_path: Path) -> None:
    write_history(tmp_path / "h.csv", [{"epoch": 1, "val_accuracy": 0.5}])
    assert (tmp_path / "h.csv").read_text().splitlines() == ["epoch,val_accuracy", "1,0.5"]


def test_softmax_is_stable_and_normalised() -> None:
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])


def test_training_layout_follows_the_backend() -> None:
    import keras

    from training.device import device_name, training_data_format

    assert training_data_format("channels_first") == "channels_first"
    expected = "channels_first" if keras.backend.backend() == "torch" else "channels_last"
    assert training_data_format("auto") == expected
    assert device_name().split(":")[0] in ("cpu", "gpu", "cuda")
