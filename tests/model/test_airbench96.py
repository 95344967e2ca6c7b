"""airbench96's network (legacy/airbench96.py), as model.builders.airbench builds it with
three convs per block: the parameters, the residual over the last two convs, the
batch norms' momentum, the identity init, and the unchanged airbench94 layout."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from model.builders import build_model

WIDTHS = (128, 384, 512)


@pytest.fixture(scope="module")
def net() -> keras.Model:
    return build_model("airbench", widths=WIDTHS, block_convs=3, bn_momentum=0.9)


def test_parameters_are_airbench96s(net: keras.Model) -> None:
    # The whitening bias, nine 3x3 convs (three per block, none with a bias), one
    # batch-norm bias per channel of each of the nine batch norms, the linear layer.
    convs = 9 * (24 * 128 + 2 * 128 * 128 + 128 * 384 + 2 * 384 * 384 + 384 * 512 + 2 * 512 * 512)
    trainable = sum(math.prod(w.shape) for w in net.trainable_weights)
    assert trainable == 24 + convs + 3 * (128 + 384 + 512) + 512 * 10 == 9_915_416


def test_each_block_adds_its_first_activation_to_its_last_conv(net: keras.Model) -> None:
    for i in (1, 2, 3):
        add = net.get_layer(f"block{i}_add")
        # [bn3's output, the first GELU's output]: the residual skips conv2 and conv3.
        assert [t._keras_history.operation.name for t in add.input] == [f"block{i}_bn3", f"block{i}_gelu1"]
        assert net.get_layer(f"block{i}_bn3").momentum == pytest.approx(0.9)  # PyTorch's default 0.1
    assert net.get_layer("block3").output.shape[1:] == (3, 3, 512)
    np.testing.assert_array_equal(np.asarray(net.get_layer("block3_conv3").kernel)[1, 1], np.eye(512, dtype=np.float32))


def test_the_residual_passes_values_through() -> None:
    # With conv3's kernel zero, bn3 outputs its bias (zero): the block's output is GELU of
    # its first activation, which only the residual can carry.
    net = build_model("airbench", widths=(8, 8, 8), block_convs=3, bn_momentum=0.9)
    probe = keras.Model(net.input, [net.get_layer("block1_gelu1").output, net.get_layer("block1").output])
    net.get_layer("block1_conv3").kernel.assign(np.zeros((3, 3, 8, 8), np.float32))
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    first, out = (np.asarray(t) for t in probe(images, training=False))
    np.testing.assert_allclose(out, np.asarray(keras.activations.gelu(first)), rtol=1e-5, atol=1e-6)


def test_two_conv_blocks_keep_airbench94s_layers() -> None:
    names = {layer.name for layer in build_model("airbench", widths=(8, 8, 8)).layers}
    assert "block1_conv2" in names and not {"block1_conv3", "block1_add"} & names
    with pytest.raises(ValueError, match="2 or 3 convs"):
        build_model("airbench", block_convs=4)
