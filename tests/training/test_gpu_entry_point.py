"""The GPU entry point, scripts/gpu_airbench.sh, run end to end on the CPU under JAX at
toy size: it trains over two seeds, packs what a device call returns, and the median
seed's weights export to a SavedModel that TensorFlow reloads with the same outputs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model import contract
from model.classes import CLASS_NAMES
from tests.conftest import ROOT


def _tiny_source(path: Path, per_class: int = 24) -> Path:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for label, name in enumerate(CLASS_NAMES):
            for i in range(per_class):
                pixels = (rng.integers(0, 64, (32, 32, 3)) + label * 19).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, format="PNG")
                info = tarfile.TarInfo(f"train/{name}/{i:04d}.png")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


@pytest.mark.slow
def test_gpu_script_at_toy_size_then_export_under_tensorflow(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "RUNS": str(tmp_path / "runs"),
        "DATA": str(_tiny_source(tmp_path / "tiny.tar.gz")),
        "EXTRA": "--widths 8,16,16 --batch-size 32 --val-size 40 --max-steps 4 --seeds 0-1 --no-compile-run",
        "BUDGET_S": "0",  # the first preset only; the others are reported as skipped
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run(
        ["bash", "scripts/gpu_airbench.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "skipped.txt").read_text().count("skipped") == 3

    with tarfile.open(out / "airbench94.tgz") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    root = tmp_path / "back" / "airbench94"
    assert "median seed" in (root / "train.log").read_text()
    summary = json.loads((root / "summary.json").read_text())
    assert summary["backend"] == "jax" and [r["seed"] for r in summary["runs"]] == [0, 1]
    median = root / f"seed-{summary['median_seed']}"
    other = root / f"seed-{1 - summary['median_seed']}"
    assert (median / "model.weights.h5").is_file() and not (other / "model.weights.h5").exists()
    metrics = json.loads((median / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["seed_statistics"]["val_accuracy_tta"]["mean"] >= 0

    model_dir = tmp_path / "models" / "cifar10"
    env["KERAS_BACKEND"] = "tensorflow"
    done = subprocess.run(
        [sys.executable, "-m", "training", "export", str(median), "--out", str(model_dir / "1")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import tensorflow as tf

    card = json.loads((model_dir / "1" / contract.MODEL_CARD_FILE).read_text())
    assert card["architecture"] == "airbench" and card["data"]["val_split"]["seed"] == 0
    assert "two one-pixel shifts" in card["test_time_augmentation"]
    assert card["training"]["precision"].startswith("bfloat16") and "seed_statistics" in card["training"]
    loaded = tf.saved_model.load(str(model_dir / "1"))
    with np.load(median / "parity.npz") as parity:
        images, expected_tta = parity["images"], parity["probabilities_tta"]
    tta = loaded.signatures[contract.TTA_SIGNATURE](image=tf.constant(images))[contract.PROBABILITIES].numpy()
    np.testing.assert_allclose(tta, expected_tta, atol=1e-4)
