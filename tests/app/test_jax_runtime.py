"""The jax runtime: the Keras archive under Keras's JAX backend, in a subprocess where
TensorFlow cannot be imported (as on the GPU hosts), against the SavedModel's
signatures in this process: the same outputs within 1e-4 at every batch size."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.serving.classifier import Classifier, ModelLoadError, bucket_sizes
from model import contract
from tests.conftest import ROOT, SHIPPED
from tests.no_tensorflow import env_without_tensorflow

ATOL = 1e-4
EXPLAIN_ATOL = 1e-3  # maps are 0-1, each divided by its own maximum: a few float32 ulps of gradient
MAX_BATCH = 16
TARGETS = [-1, 3, -1, 9, 0]  # the top class, or a chosen one
SCRIPT = f"""
import json, sys
from pathlib import Path
import numpy as np
from app.serving.classifier import Classifier

model_dir, inputs, outputs = map(Path, sys.argv[1:4])
TARGETS = {TARGETS}
classifier = Classifier(model_dir, {MAX_BATCH}, "jax")
classifier.warm()
import keras
assert keras.backend.backend() == "jax"
assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"]
# The serving image ships model/'s serving half only (tests/app/test_serving_imports.py).
assert "model.layers" in sys.modules
assert not [m for m in sys.modules if m.startswith(("model.builders", "model.reference", "training"))]
images = list(np.load(inputs)["images"])
result = {{}}
for n in (1, 3, len(images)):
    result[f"p{{n}}"] = np.stack(classifier.predict(images[:n]))
for name, value in classifier.feature_maps(images[:5])[4].items():
    result[f"f_{{name}}"] = value
explained = classifier.explain(list(zip(images[:5], TARGETS)))
for name in explained[0]:
    result[f"e_{{name}}"] = np.stack([e[name] for e in explained])
np.savez(outputs, **result)
print(json.dumps({{"compiled": sorted(map(list, classifier._runtime._compiled)),
                  "layers": [[layer.name, list(layer.shape)] for layer in classifier.info.layers]}}))
"""


def run_jax(model_dir: Path, images: np.ndarray, tmp_path: Path) -> tuple[dict[str, np.ndarray], dict]:
    np.savez(tmp_path / "in.npz", images=images)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model_dir), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        cwd=ROOT,
        env=env_without_tensorflow(tmp_path / "site"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(tmp_path / "out.npz") as out:
        return dict(out), json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "model_dir",
    [
        pytest.param("tiny", id="tiny-exported-model"),
        pytest.param(SHIPPED, id="shipped-default", marks=pytest.mark.slow),
    ],
)
def test_jax_runtime_matches_the_savedmodel(model_dir, tiny_model: Path, tmp_path: Path) -> None:
    model_dir = tiny_model if model_dir == "tiny" else model_dir
    images = np.random.default_rng(3).integers(0, 256, (MAX_BATCH - 1, 32, 32, 3), dtype=np.uint8)
    got, report = run_jax(model_dir, images, tmp_path)
    expected = Classifier(model_dir, MAX_BATCH)  # the SavedModel under TensorFlow
    assert report["layers"] == [[layer.name, list(layer.shape)] for layer in expected.info.layers]
    for n in (1, 3, len(images)):
        np.testing.assert_allclose(got[f"p{n}"], np.stack(expected.predict(list(images[:n]))), atol=ATOL, rtol=0)
    for name, value in expected.feature_maps(list(images[:5]))[4].items():
        np.testing.assert_allclose(got[f"f_{name}"], value, atol=ATOL, rtol=0)
    # Explanations: jax.grad through per-layer sub-models against the SavedModel's graph.
    explained = expected.explain(list(zip(images[:5], TARGETS, strict=True)))
    assert sorted(k[2:] for k in got if k.startswith("e_")) == sorted(explained[0])
    for name in explained[0]:
        np.testing.assert_allclose(got[f"e_{name}"], np.stack([e[name] for e in explained]), atol=EXPLAIN_ATOL, rtol=0)
    # Warm-up compiled every function at every batch size the batcher can form.
    assert report["compiled"] == sorted(
        [kind, size] for kind in ("explain", "feature_maps", "predict") for size in bucket_sizes(MAX_BATCH)
    )


def test_jax_runtime_refuses_a_process_whose_keras_uses_another_backend(tiny_model: Path) -> None:
    import keras  # the test process runs Keras on TensorFlow (it trained the tiny model)

    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(ModelLoadError, match="already imported with the tensorflow backend"):
        Classifier(tiny_model, 4, "jax")


def test_jax_runtime_needs_the_archive(tiny_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "cifar10" / "1"
    shutil.copytree(contract.latest_version_dir(tiny_model), copy)
    (copy / contract.KERAS_ARCHIVE_FILE).unlink()
    with pytest.raises(ModelLoadError, match="python -m training archive"):
        Classifier(copy.parent, 4, "jax")
