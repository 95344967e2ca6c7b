"""Train for a few steps, export, check the contract and parity, evaluate: in-process
for speed and once through the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model import contract
from model.classes import CLASS_NAMES
from tests.conftest import ROOT


def test_run_folder_is_self_describing(tiny_run: Path) -> None:
    for name in (
        "config.json",
        "history.csv",
        "metrics.json",
        "model.weights.h5",
        "parity.npz",
        "curves.png",
        "confusion.png",
    ):
        assert (tiny_run / name).is_file(), name
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["truncated_epochs_to_steps"] == 2
    assert 0.0 <= metrics["val_accuracy"] <= 1.0
    assert len(metrics["confusion_matrix"]) == 10
    assert json.loads((tiny_run / "config.json").read_text())["widths"] == [8, 8, 8]


def test_export_honours_the_contract(tiny_model: Path) -> None:
    import tensorflow as tf

    path = contract.latest_version_dir(tiny_model)
    assert (path / "assets" / contract.LABELS_FILE).read_text().split() == list(CLASS_NAMES)
    card = json.loads((path / contract.MODEL_CARD_FILE).read_text())
    for key in ("architecture", "parameters", "feature_layers", "data", "metrics", "training", "export"):
        assert key in card
    assert card["export"]["parity_max_abs_diff"] <= 1e-4
    assert card["feature_layers"]["block1"] == [16, 16, 8]
    loaded = tf.saved_model.load(str(path))
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    probs = loaded.signatures[contract.SERVING_SIGNATURE](image=images)[contract.PROBABILITIES].numpy()
    assert probs.shape == (3, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    maps = loaded.signatures[contract.FEATURE_MAPS_SIGNATURE](image=images)
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "stem": (3, 32, 32, 32),
        "block1": (3, 16, 16, 8),
        "block2": (3, 8, 8, 8),
        "block3": (3, 4, 4, 8),
        "probabilities": (3, 10),
    }


def test_export_refuses_existing_destination(tiny_run: Path, tiny_model: Path) -> None:
    from training.export import ExportError, export_run

    with pytest.raises(ExportError, match="already exists"):
        export_run(tiny_run, tiny_model / "1")


def test_export_refuses_when_outputs_disagree(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    from training.export import ExportError, export_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    with np.load(run / "parity.npz") as parity:
        saved = dict(parity)
    np.savez(run / "parity.npz", **{**saved, "probabilities": np.roll(saved["probabilities"], 1, axis=1)})
    with pytest.raises(ExportError, match="disagrees"):
        export_run(run, tmp_path / "out" / "1")
    assert not (tmp_path / "out" / "1").exists()
    assert not [p for p in (tmp_path / "out").iterdir()]  # no half-written leftovers


def _tree(root: Path, per_class: int) -> Path:
    rng = np.random.default_rng(5)
    for split in ("train", "test"):
        for cls in CLASS_NAMES:
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return root


def test_evaluate_rebuilds_the_validation_split(tiny_model: Path, tmp_path: Path) -> None:
    from training.evaluate import evaluate

    data = _tree(tmp_path / "tree", per_class=10)
    report = evaluate(tiny_model, str(data), "val")
    assert report["images"] == 50  # the card's val_size
    assert np.asarray(report["confusion_matrix"]).sum() == 50
    test = evaluate(tiny_model, str(data), "test")
    assert test["images"] == 100


@pytest.mark.slow
def test_cli_train_export_evaluate_tutorial(tmp_path: Path) -> None:
    data = _tree(tmp_path / "tree", per_class=4)
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }

    stderr: list[str] = []

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "training", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        stderr.append(done.stderr)
        return done.stdout

    out = run(
        "train",
        "--preset",
        "tutorial-modern",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--val-size",
        "20",
        "--out",
        str(tmp_path / "run"),
    )
    assert "val_accuracy" in out.splitlines()[-1]
    # Progress through the slow parts: decoding the data, and each step after the last epoch.
    assert "decoding the train split" in stderr[-1]
    for step in ("validating on 20 held-out images", "recording the parity batch", "plotting curves.png"):
        assert step in out
    run("export", str(tmp_path / "run"), "--out", str(tmp_path / "models" / "cifar10-tutorial" / "1"))
    card = json.loads((tmp_path / "models" / "cifar10-tutorial" / "1" / contract.MODEL_CARD_FILE).read_text())
    assert card["architecture"] == "tutorial" and card["name"] == "cifar10-tutorial"
    assert list(card["feature_layers"]) == ["conv1", "pool1", "norm1", "conv2", "pool2", "norm2"]
    report = json.loads(
        run("evaluate", str(tmp_path / "models" / "cifar10-tutorial"), "--data", str(data), "--split", "test", "--json")
    )
    assert report["images"] == 40 and len(report["per_class_accuracy"]) == 10
    text = run("evaluate", str(tmp_path / "models" / "cifar10-tutorial"), "--data", str(data), "--split", "val")
    assert text.startswith("accuracy: ") and "confusion matrix" in text


@pytest.mark.slow
def test_cli_reports_bad_data_clearly(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "training", "train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert done.returncode == 2
    assert "error:" in done.stderr and "found neither" in done.stderr
