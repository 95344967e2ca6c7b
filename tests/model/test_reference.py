"""The NumPy reference layers: finite differences, agreement with TensorFlow's ops and
gradients on random shapes, and the shipped tutorial model's first feature map."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from model import contract
from model import reference as ref
from tests.conftest import SHIPPED_TUTORIAL

RNG = np.random.default_rng(1234)


def numeric_grad(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of scalar f at every element of x (float64)."""
    grad = np.zeros_like(x)
    flat, g = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f(x)
        flat[i] = old - eps
        down = f(x)
        flat[i] = old
        g[i] = (up - down) / (2 * eps)
    return grad


CONV_CASES = [
    pytest.param((2, 5, 5, 3), (3, 3, 3, 4), 1, "SAME", id="3x3-s1-same"),
    pytest.param((1, 6, 7, 2), (3, 3, 2, 3), 2, "SAME", id="3x3-s2-same-odd"),
    pytest.param((2, 7, 7, 2), (5, 5, 2, 2), 1, "VALID", id="5x5-valid"),
    pytest.param((1, 8, 8, 1), (2, 2, 1, 2), 2, (1, 0, 0, 1), id="explicit-pad"),
]


@pytest.mark.parametrize(("xs", "ws", "stride", "padding"), CONV_CASES)
def test_conv_backward_matches_finite_differences(xs, ws, stride, padding) -> None:
    x, w, b = RNG.normal(size=xs), RNG.normal(size=ws), RNG.normal(size=ws[-1])
    out = ref.conv2d_forward(x, w, b, stride, padding)
    dout = RNG.normal(size=out.shape)
    dx, dw, db = ref.conv2d_backward(dout, x, w, stride, padding)
    loss = lambda: float(np.sum(ref.conv2d_forward(x, w, b, stride, padding) * dout))  # noqa: E731
    np.testing.assert_allclose(dx, numeric_grad(lambda _: loss(), x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dw, numeric_grad(lambda _: loss(), w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, numeric_grad(lambda _: loss(), b), rtol=1e-5, atol=1e-6)


POOL_CASES = [
    pytest.param((2, 6, 6, 3), 2, 2, "VALID", id="2x2-s2"),
    pytest.param((1, 7, 7, 2), 3, 2, "SAME", id="3x3-s2-same-overlap"),
    pytest.param((1, 5, 6, 2), 2, 2, "SAME", id="2x2-s2-same-odd"),
    pytest.param((1, 5, 5, 1), 3, 1, "SAME", id="3x3-s1-same"),
]


@pytest.mark.parametrize(("xs", "size", "stride", "padding"), POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_backward_matches_finite_differences(xs, size, stride, padding, kind) -> None:
    x = RNG.normal(size=xs)  # continuous values: no ties, so max is differentiable
    fwd = ref.max_pool_forward if kind == "max" else ref.avg_pool_forward
    bwd = ref.max_pool_backward if kind == "max" else ref.avg_pool_backward
    dout = RNG.normal(size=fwd(x, size, stride, padding).shape)
    dx = bwd(dout, x, size, stride, padding)
    expected = numeric_grad(lambda v: float(np.sum(fwd(v, size, stride, padding) * dout)), x)
    np.testing.assert_allclose(dx, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("fwd", "bwd"), [(ref.relu, ref.relu_backward), (ref.sigmoid, ref.sigmoid_backward)])
def test_activation_gradients(fwd, bwd) -> None:
    x = RNG.normal(size=(3, 4)) * 3
    x[np.abs(x) < 1e-3] = 0.5  # keep away from ReLU's kink
    dout = RNG.normal(size=x.shape)
    expected = numeric_grad(lambda v: float(np.sum(fwd(v) * dout)), x)
    np.testing.assert_allclose(bwd(dout, x), expected, rtol=1e-5, atol=1e-7)


def test_sigmoid_is_stable_at_extremes() -> None:
    out = ref.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0])


def test_zero_pad_and_same_rule() -> None:
    x = np.ones((1, 2, 3, 1))
    padded = ref.zero_pad(x, (1, 2, 0, 1))
    assert padded.shape == (1, 5, 4, 1)
    assert padded.sum() == x.sum()
    # TensorFlow puts the odd padding pixel after the image, not before.
    assert ref.same_padding(6, 3, 2) == (0, 1)
    assert ref.same_padding(5, 5, 1) == (2, 2)


def _random_tf_case(seed: int):
    rng = np.random.default_rng(seed)
    n, h, w, c, f = rng.integers(1, 3), rng.integers(4, 10), rng.integers(4, 10), rng.integers(1, 4), rng.integers(1, 5)
    k, s = int(rng.integers(1, 6)), int(rng.integers(1, 3))
    padding = str(rng.choice(["SAME", "VALID"]))
    if padding == "VALID":
        k = min(k, h, w)
    return rng, (n, h, w, c, f), k, s, padding


@pytest.mark.parametrize("seed", range(8))
def test_conv_agrees_with_tensorflow(seed: int) -> None:
    tf = pytest.importorskip("tensorflow")
    rng, (n, h, w, c, f), k, s, padding = _random_tf_case(seed)
    x = rng.normal(size=(n, h, w, c))
    kernel = rng.normal(size=(k, k, c, f))
    xt, kt = tf.Variable(x), tf.Variable(kernel)
    with tf.GradientTape() as tape:
        out = tf.nn.conv2d(xt, kt, strides=s, padding=padding)
        dout = rng.normal(size=out.shape)
        loss = tf.reduce_sum(out * dout)
    tdx, tdw = tape.gradient(loss, [xt, kt])
    np.testing.assert_allclose(ref.conv2d_forward(x, kernel, None, s, padding), out.numpy(), rtol=1e-9, atol=1e-9)
    dx, dw, _ = ref.conv2d_backward(dout, x, kernel, s, padding)
    np.testing.assert_allclose(dx, tdx.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dw, tdw.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_agrees_with_tensorflow(seed: int, kind: str) -> None:
    tf = pytest.importorskip("tensorflow")
    rng, (n, h, w, c, _), k, s, padding = _random_tf_case(seed)
    # Windows larger than the image are covered by the next test: TF's AvgPoolGrad
    # is wrong there.
    k = min(max(k, 2), h, w)
    x = rng.normal(size=(n, h, w, c))
    xt = tf.Variable(x)
    op = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d
    with tf.GradientTape() as tape:
        out = op(xt, ksize=k, strides=s, padding=padding)
        dout = rng.normal(size=out.shape)
        loss = tf.reduce_sum(out * dout)
    tdx = tape.gradient(loss, xt).numpy()
    fwd = ref.max_pool_forward if kind == "max" else ref.avg_pool_forward
    bwd = ref.max_pool_backward if kind == "max" else ref.avg_pool_backward
    np.testing.assert_allclose(fwd(x, k, s, padding), out.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(bwd(dout, x, k, s, padding), tdx, rtol=1e-9, atol=1e-9)


def test_avg_pool_gradient_where_tensorflow_is_wrong() -> None:
    """A SAME window larger than the image (5x5 on 4x4): our gradient matches finite
    differences of TensorFlow's own forward pass; TensorFlow's AvgPoolGrad does not
    (seen with TF 2.21 on the CPU). Should TF fix it, the last assertion says so."""
    tf = pytest.importorskip("tensorflow")
    x = RNG.normal(size=(1, 4, 4, 1))
    dout = RNG.normal(size=(1, 4, 4, 1))
    np.testing.assert_allclose(
        ref.avg_pool_forward(x, 5, 1, "SAME"), tf.nn.avg_pool2d(x, 5, 1, "SAME").numpy(), rtol=1e-9, atol=1e-12
    )
    numeric = numeric_grad(lambda v: float(np.sum(tf.nn.avg_pool2d(v, 5, 1, "SAME").numpy() * dout)), x.copy())
    mine = ref.avg_pool_backward(dout, x, 5, 1, "SAME")
    np.testing.assert_allclose(mine, numeric, rtol=1e-6, atol=1e-8)
    xt = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.nn.avg_pool2d(xt, 5, 1, "SAME") * dout)
    assert np.abs(tape.gradient(loss, xt).numpy() - numeric).max() > 1e-3


def test_shipped_tutorial_first_feature_map_recomputed_in_numpy(real_samples) -> None:
    """conv1 of the shipped tutorial model = ReLU(conv(standardised pixels, its kernel) + bias)."""
    tf = pytest.importorskip("tensorflow")
    import io

    from PIL import Image

    path = contract.latest_version_dir(SHIPPED_TUTORIAL)
    loaded = tf.saved_model.load(str(path))
    # Read the kernel from the SavedModel's own variables: conv1 is the only kernel
    # that takes the 3 colour channels.
    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    shapes = reader.get_variable_to_shape_map()
    (kernel_key,) = [k for k, shape in shapes.items() if "_kernel" in k and shape == [5, 5, 3, 64]]
    conv1 = reader.get_tensor(kernel_key)
    bias = reader.get_tensor(kernel_key.replace("_kernel", "bias"))
    images = np.stack([np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for _, _, data in real_samples[:8]])
    served = loaded.signatures[contract.FEATURE_MAPS_SIGNATURE](image=tf.constant(images))["conv1"].numpy()
    x = (images.astype(np.float64) - np.array(contract.CHANNEL_MEAN)) / np.array(contract.CHANNEL_STD)
    mine = ref.relu(ref.conv2d_forward(x, conv1.astype(np.float64), bias.astype(np.float64), 1, "SAME"))
    assert mine.shape == served.shape == (8, 32, 32, 64)
    np.testing.assert_allclose(mine, served, rtol=1e-4, atol=1e-4)
    assert json.loads((path / contract.MODEL_CARD_FILE).read_text())["architecture"] == "tutorial"
