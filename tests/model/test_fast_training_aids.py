"""airbench's training aids in the fast network: the batch-norm bias that learns
faster (a reparametrisation) and the identity ("dirac") initialisation of the convs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from model.builders import build_model
from model.layers import PartialDirac, ScaledBias


def test_scaled_bias_moves_scale_squared_faster_under_sgd() -> None:
    x = np.random.default_rng(0).normal(size=(4, 3, 3, 2)).astype("float32")
    layer = ScaledBias(8.0)
    layer.build(x.shape)
    layer.offset.assign([0.5, -0.25])
    np.testing.assert_allclose(np.asarray(layer(x)), x + 8.0 * np.array([0.5, -0.25]), rtol=1e-6)
    # One SGD step of lr on sum(y): a plain bias would move by lr * N (N = 36 outputs
    # per channel); the effective bias scale * offset moves 64 times that.
    lr = 1e-3
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))
    (grad,) = tape.gradient(loss, [layer.offset.value])
    before = 8.0 * np.asarray(layer.offset)
    layer.offset.assign(layer.offset - lr * grad)
    moved = before - 8.0 * np.asarray(layer.offset)
    np.testing.assert_allclose(moved, 64 * lr * 36, rtol=1e-5)


def test_scaled_bias_follows_the_channel_axis() -> None:
    x = np.zeros((1, 2, 3, 3), dtype="float32")  # channels first: 2 channels
    layer = ScaledBias(2.0, axis=1)
    layer.build(x.shape)
    layer.offset.assign([1.0, 3.0])
    out = np.asarray(layer(x))
    assert (out[:, 0] == 2.0).all() and (out[:, 1] == 6.0).all()


@pytest.mark.parametrize("cin,cout", [(4, 6), (6, 4), (5, 5)])
def test_partial_dirac_passes_the_first_channels_through(cin: int, cout: int) -> None:
    kernel = np.asarray(PartialDirac(seed=1)((3, 3, cin, cout)))
    x = np.random.default_rng(0).normal(size=(2, 7, 7, cin)).astype("float32")
    y = np.asarray(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"))
    n = min(cin, cout)
    np.testing.assert_allclose(y[..., :n], x[..., :n], atol=1e-6)
    if cout > n:  # the remaining filters keep a random initialisation
        assert np.abs(kernel[..., n:]).max() > 0.0
        assert not np.allclose(y[..., n:], 0.0)


def test_fast_options_change_the_batch_norm_and_the_init() -> None:
    plain = build_model("fast", widths=(8, 8, 8), stem="whiten")
    aided = build_model("fast", widths=(8, 8, 8), stem="whiten", bias_lr_scale=64.0, dirac=True)
    plain_names = {w.path for w in plain.trainable_weights}
    aided_names = {w.path for w in aided.trainable_weights}
    # The defaults still build the first shipped models' network: affine batch norm.
    assert "block1_a_bn/gamma" in plain_names and "block1_a_bn/beta" in plain_names
    assert not any(name.startswith("block1_a_bn/") for name in aided_names)
    assert "block1_a_bias/offset" in aided_names
    assert aided.get_layer("block1_a_bias").scale == pytest.approx(8.0)
    kernel = np.asarray(aided.get_layer("block2_b_conv").kernel)
    np.testing.assert_array_equal(kernel[1, 1], np.eye(8))
    # Same feature layers either way, so /feature-maps does not care.
    for name in ("stem", "block1", "block2", "block3"):
        assert plain.get_layer(name).output.shape == aided.get_layer(name).output.shape
    with pytest.raises(ValueError, match="bias_lr_scale"):
        build_model("fast", widths=(8, 8, 8), bias_lr_scale=0.0)
    assert keras.backend.backend() == "tensorflow"
