"""The patch-whitening stem: its kernel whitens 2x2 patches, it stays frozen, and the
fast network's weights carry over between tensor layouts (export relies on that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.builders import build_model, fast
from model.layers import PatchWhitening, whitening_kernel

ROOT = Path(__file__).resolve().parents[2]


def _correlated_images(n: int = 200) -> np.ndarray:
    # Smooth, colour-correlated images: neighbouring pixels and channels covary strongly,
    # as in photographs, so whitening has something to undo.
    rng = np.random.default_rng(0)
    base = rng.normal(size=(n, 33, 33, 1))
    smooth = (base[:, :-1, :-1] + base[:, 1:, :-1] + base[:, :-1, 1:] + base[:, 1:, 1:]) / 4
    colour = smooth * np.array([1.0, 0.8, 0.6]) + 0.2 * rng.normal(size=(n, 32, 32, 3))
    return colour.astype(np.float32)


def test_kernel_whitens_patches() -> None:
    images = _correlated_images()
    kernel = whitening_kernel(images, epsilon=0.0)
    assert kernel.shape == (2, 2, 3, 24)
    patches = np.stack([images[:, i : 31 + i, j : 31 + j, :] for i in range(2) for j in range(2)], axis=3).reshape(
        -1, 12
    )
    patches = patches - patches.mean(axis=0)
    # The first 12 filters are the whitening; the other 12 are their negatives.
    filters = kernel.reshape(12, 24)
    np.testing.assert_allclose(filters[:, 12:], -filters[:, :12])
    whitened = patches @ filters[:, :12]
    np.testing.assert_allclose(np.cov(whitened, rowvar=False, bias=True), np.eye(12), atol=1e-3)


def test_layer_convolves_with_its_kernel_and_trains_only_its_bias() -> None:
    images = _correlated_images(8)
    layer = PatchWhitening(3)
    layer.adapt(images)
    assert [w.name for w in layer.trainable_weights] == ["bias"]
    out = np.asarray(layer(images))
    kernel = np.asarray(layer.kernel)
    expected = sum(
        np.einsum("nhwc,cf->nhwf", images[:, i : 31 + i, j : 31 + j, :], kernel[i, j])
        for i in range(2)
        for j in range(2)
    )
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_adapt_fits_the_stem_from_uint8_images() -> None:
    model = build_model("fast", widths=(8, 8, 8), stem="whiten")
    before = np.asarray(model.get_layer("stem_whiten").kernel).copy()
    fast.adapt(model, np.random.default_rng(1).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8))
    after = np.asarray(model.get_layer("stem_whiten").kernel)
    assert not np.allclose(before, after)
    fast.adapt(build_model("fast", widths=(8, 8, 8)), np.zeros((2, 32, 32, 3), np.uint8))  # conv stem: no-op


_TRAIN_CHANNELS_FIRST = """
import json, sys, numpy as np
from model.builders import adapt_model, build_model
out, arch, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
model = build_model(arch, data_format="channels_first", **options)
images = np.random.default_rng(2).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
adapt_model(arch, model, images)
model.save_weights(out + "/w.weights.h5")
np.savez(out + "/out.npz", images=images, logits=np.asarray(model(images)))
"""


@pytest.mark.parametrize(
    ("arch", "options"),
    [("fast", {"widths": [8, 8, 8], "stem": "whiten"}), ("airbench", {"widths": [8, 8, 8]})],
)
def test_weights_carry_from_channels_first_jax_to_channels_last_tensorflow(tmp_path, arch, options) -> None:
    # The path a PyTorch- or JAX-trained model takes to export: channels-first weights
    # written under another backend, loaded into the channels-last network under this
    # one (TensorFlow's CPU kernels have no channels-first max-pool). Same function.
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    subprocess.run(
        [sys.executable, "-c", _TRAIN_CHANNELS_FIRST, str(tmp_path), arch, json.dumps(options)],
        env=env,
        check=True,
        cwd=ROOT,
    )
    with np.load(tmp_path / "out.npz") as saved:
        images, logits = saved["images"], saved["logits"]
    last = build_model(arch, **options)
    last.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(np.asarray(last(images)), logits, rtol=1e-4, atol=1e-5)


def test_unknown_stem_and_layout() -> None:
    with pytest.raises(ValueError, match="unknown stem"):
        build_model("fast", stem="patchify")
    for arch in ("fast", "airbench"):
        with pytest.raises(ValueError, match="unknown data_format"):
            build_model(arch, data_format="nchw")
