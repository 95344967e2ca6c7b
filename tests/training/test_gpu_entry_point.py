"""The GPU entry points run end to end on the CPU under JAX at toy size:
scripts/gpu_airbench.sh trains airbench94 and airbench96 over two seeds each, packs what
a device call returns (few files, each small), and the median seeds' weights export to
SavedModels that TensorFlow reloads with the same outputs; scripts/gpu_session.sh runs
the serving benchmark (a stand-in here) before the training and packs both in time."""

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

TOY = "--widths 8,16,16 --batch-size 32 --val-size 40 --max-steps 4 --seeds 0-1 --no-compile-run"
PRESETS = ("airbench94", "airbench95", "airbench96", "airbench94-fp32", "airbench94-476steps")


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


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "STAGE": str(tmp_path / "stage"),
        "RUNS": str(tmp_path / "runs"),
        "DATA": str(_tiny_source(tmp_path / "tiny.tar.gz")),
        "EXTRA": TOY,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }
    env.pop("KERAS_BACKEND", None)
    return env


def _unpack(out: Path, dest: Path) -> None:
    """What the docs tell a developer to do with what came back."""
    with tarfile.open(out / "results.tgz") as tar:
        tar.extractall(dest, filter="data")
    for weights in sorted(out.glob("*.weights.tgz*")):
        with tarfile.open(weights) as tar:
            tar.extractall(dest, filter="data")


def _export_and_reload(median: Path, version: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "training", "export", str(median), "--out", str(version)],
        cwd=ROOT,
        env={**env, "KERAS_BACKEND": "tensorflow"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version))
    with np.load(median / "parity.npz") as parity:
        images, expected_tta = parity["images"], parity["probabilities_tta"]
    tta = loaded.signatures[contract.TTA_SIGNATURE](image=tf.constant(images))[contract.PROBABILITIES].numpy()
    np.testing.assert_allclose(tta, expected_tta, atol=1e-4)
    return json.loads((version / contract.MODEL_CARD_FILE).read_text())


@pytest.mark.slow
def test_gpu_script_at_toy_size_then_export_under_tensorflow(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    env = _env(tmp_path, ONLY="airbench94 airbench96", WEIGHTS="airbench94 airbench96")
    done = subprocess.run(
        ["bash", "scripts/gpu_airbench.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    # Few files come back: the results and one weights archive per shipping candidate.
    assert sorted(p.name for p in out.iterdir()) == [
        "airbench94.weights.tgz",
        "airbench96.weights.tgz",
        "results.tgz",
    ]
    back = tmp_path / "back"
    _unpack(out, back)
    status = (back / "presets.txt").read_text()
    assert "airbench94: rc 0" in status and "airbench96: rc 0" in status
    assert status.count("skipped") == 3 and "not in ONLY" in status

    cards = {}
    for name in ("airbench94", "airbench96"):
        root = back / name
        assert "median seed" in (root / "train.log").read_text()
        summary = json.loads((root / "summary.json").read_text())
        assert summary["backend"] == "jax" and [r["seed"] for r in summary["runs"]] == [0, 1]
        assert summary["preset"] == name and summary["config"]["preset"] == name
        median = root / f"seed-{summary['median_seed']}"
        other = root / f"seed-{1 - summary['median_seed']}"
        assert (median / "model.weights.h5").is_file() and not (other / "model.weights.h5").exists()
        assert (other / "metrics.json").is_file() and not (other / "parity.npz").exists()
        metrics = json.loads((median / "metrics.json").read_text())
        assert metrics["steps"] == 4 and metrics["seed_statistics"]["val_accuracy_tta"]["mean"] >= 0
        cards[name] = _export_and_reload(median, tmp_path / "models" / name / "1", env)

    for card in cards.values():
        assert card["architecture"] == "airbench" and card["data"]["val_split"]["seed"] == 0
        assert "two one-pixel shifts" in card["test_time_augmentation"]
        assert card["training"]["precision"].startswith("bfloat16") and "seed_statistics" in card["training"]
    config = cards["airbench96"]["training"]["config"]
    assert (config["block_convs"], config["cutout"], config["translate"], config["bn_momentum"]) == (3, 12, 4, 0.9)
    import keras

    import model.layers  # noqa: F401  (registers the custom layers the archive names)

    archive = keras.saving.load_model(tmp_path / "models" / "airbench96" / "1" / contract.KERAS_ARCHIVE_FILE)
    assert {f"block{i}_add" for i in (1, 2, 3)} <= {layer.name for layer in archive.layers}


@pytest.mark.slow
def test_gpu_session_runs_the_benchmark_first_and_packs_both(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    stand_in = tmp_path / "bench.sh"
    # The serving benchmark's stand-in: writes its table where scripts/gpu_bench.sh does.
    stand_in.write_text('mkdir -p "$1" && echo "| cell | req/s |" > "$1/table.md" && date +%s.%N > "$1/ended"\n')
    env = _env(tmp_path, BENCH=str(stand_in), ONLY="airbench94", DEADLINE_S="1200")
    done = subprocess.run(
        ["bash", "scripts/gpu_session.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| cell | req/s |" in done.stdout
    back = tmp_path / "back"
    _unpack(tmp_path / "out", back)
    session = (back / "session.log").read_text().splitlines()
    assert session[0].startswith("bench rc 0") and session[1].startswith("train rc 0")
    assert (back / "bench" / "table.md").is_file() and (back / "airbench94" / "summary.json").is_file()
    assert "airbench94: rc 0" in (back / "presets.txt").read_text()
    # No airbench94 weights: only the presets that may ship bring theirs back.
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.tgz"]


@pytest.mark.slow
def test_gpu_session_keeps_what_ran_when_time_is_short(tmp_path: Path) -> None:
    stand_in = tmp_path / "bench.sh"
    stand_in.write_text('mkdir -p "$1" && echo "| cell |" > "$1/table.md"\n')
    # A minute in all: the benchmark runs, no preset's estimate fits, the results come back.
    env = _env(tmp_path, BENCH=str(stand_in), DEADLINE_S="60")
    done = subprocess.run(
        ["bash", "scripts/gpu_session.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    back = tmp_path / "back"
    _unpack(tmp_path / "out", back)
    assert (back / "bench" / "table.md").is_file()
    status = (back / "presets.txt").read_text()
    assert all(f"skipped {name}: its" in status for name in PRESETS), status
