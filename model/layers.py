"""Every custom Keras object an exported model names (`cifar10>...` in model.keras):
importing this module registers them, which is all the service's jax runtime needs
from the model code to load an archive. Written with `keras.ops` only, so they run on
the TensorFlow, JAX and PyTorch backends alike. The builders (model.builders) use them."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from model.contract import CHANNEL_MEAN, CHANNEL_STD


@keras.saving.register_keras_serializable(package="cifar10")
class LocalResponseNorm(keras.layers.Layer):  # type: ignore[misc]  # Keras classes are Any to mypy
    """Cross-channel local response normalisation with `tf.nn.lrn`'s semantics:

    out = x / (bias + alpha * sum_{c' in [c-r, c+r]} x[c']^2) ** beta

    Keras 3 has no LRN layer and `tf.nn.lrn` would tie the model to one backend.
    """

    def __init__(
        self,
        depth_radius: int = 4,
        bias: float = 1.0,
        alpha: float = 0.001 / 9.0,
        beta: float = 0.75,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, x: Any) -> Any:
        r = self.depth_radius
        sq = ops.square(x)
        channels = x.shape[-1]
        padded = ops.pad(sq, [[0, 0], [0, 0], [0, 0], [r, r]])
        # A sum of 2r+1 shifted slices: cheap for r=4 and identical on every backend.
        window = padded[..., 0:channels]
        for offset in range(1, 2 * r + 1):
            window = window + padded[..., offset : offset + channels]
        return x / ops.power(self.bias + self.alpha * window, self.beta)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }


@keras.saving.register_keras_serializable(package="cifar10")
class Standardise(keras.layers.Layer):  # type: ignore[misc]  # Keras classes are Any to mypy
    """Raw uint8 pixels -> per-channel standardised floats, in the layer's compute dtype.

    Living inside the model, the constants travel with every export and cannot drift
    between training and serving.
    """

    def call(self, x: Any) -> Any:
        x = ops.cast(x, self.compute_dtype)
        mean = ops.convert_to_tensor(CHANNEL_MEAN, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(CHANNEL_STD, dtype=self.compute_dtype)
        return (x - mean) / std


@keras.saving.register_keras_serializable(package="cifar10")
class ScaledBias(keras.layers.Layer):  # type: ignore[misc]  # Keras classes are Any to mypy
    """A per-channel bias stored divided by `scale`: y = x + scale * offset.

    Gradient descent on `offset` moves the bias scale**2 times faster than on a plain
    bias. airbench trains batch-norm biases at 64x the learning rate; writing that as a
    reparametrisation (scale 8) gives it to every Keras optimiser on every backend,
    momentum included, without a custom optimiser per backend.
    """

    def __init__(self, scale: float = 8.0, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = scale
        self.axis = axis

    def build(self, input_shape: Any) -> None:
        self.offset = self.add_weight(shape=(input_shape[self.axis],), initializer="zeros", name="offset")

    def call(self, x: Any) -> Any:
        shape = [1] * len(x.shape)
        shape[self.axis] = -1
        return x + ops.reshape(ops.cast(self.offset * self.scale, x.dtype), shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "axis": self.axis}


@keras.saving.register_keras_serializable(package="cifar10")
class PartialDirac(keras.initializers.Initializer):  # type: ignore[misc]  # Keras classes are Any to mypy
    """Conv kernels whose first min(in, out) filters are the identity (a 1 at the centre
    tap from input channel i to output channel i), the rest random.

    A deep stack of such convs starts out passing its input through, so a short run
    spends no epochs learning to propagate signal (airbench's "dirac" initialisation).
    The random part is Glorot-uniform, or with `torch_uniform` PyTorch's default
    conv init, U(+-1/sqrt(fan_in)), which airbench starts from.
    """

    def __init__(self, seed: int | None = None, torch_uniform: bool = False) -> None:
        self.seed = seed
        self.torch_uniform = torch_uniform

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        dtype = dtype or keras.backend.floatx()
        kh, kw, cin, cout = shape
        n = min(cin, cout)
        identity = np.zeros(shape, dtype="float32")
        identity[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        mask = np.zeros(shape, dtype=bool)
        mask[..., :n] = True
        base = torch_uniform(self.seed) if self.torch_uniform else keras.initializers.GlorotUniform(self.seed)
        random = base(shape, dtype)
        return ops.where(ops.convert_to_tensor(mask), ops.convert_to_tensor(identity, dtype), random)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, "torch_uniform": self.torch_uniform}


def torch_uniform(seed: int | None = None) -> keras.initializers.Initializer:
    """PyTorch's default for conv and linear weights (kaiming-uniform with a = sqrt(5)),
    which is U(+-1/sqrt(fan_in)): variance scaling 1/3, fan in, uniform."""
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed)


# --- airbench's patch-whitening stem ------------------------------------------------
# A 2x2 convolution whose kernel is fixed, before training, to the ZCA-like whitening of the training set's 2x2 patches.
#
# The first layer then starts out decorrelating neighbouring pixels and colours, which
# the network would otherwise spend its first epochs learning. Each eigenvector appears
# with both signs so that the GELU after it keeps the information of either half.

PATCH = 2
EPSILON = 5e-4  # keeps the near-zero eigenvalues from blowing the kernel up


def whitening_kernel(images: Any, epsilon: float = EPSILON, centre: bool = True, xp: Any = np) -> Any:
    """Kernel [2, 2, C, 2*4*C] from float images [N, H, W, C] (as the layer sees them).

    `centre=False` takes the uncentred second moment, as airbench94 does; on
    standardised images the patch mean is near zero, so the two differ little.
    `xp` is NumPy (float64) or an array module with its API, e.g. jax.numpy (float32),
    to fit on the device the images already live on.
    """
    x = xp.asarray(images, dtype=np.float64 if xp is np else np.float32)
    _, h, w, c = x.shape
    # Every 2x2 patch, flattened in the kernel's (row, column, channel) order.
    patches = xp.stack(
        [x[:, i : h - PATCH + 1 + i, j : w - PATCH + 1 + j, :] for i in range(PATCH) for j in range(PATCH)], axis=3
    )
    patches = patches.reshape(-1, PATCH * PATCH * c)
    if centre:
        patches = patches - patches.mean(axis=0)
    cov = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = xp.linalg.eigh(cov)
    filters = eigenvectors / xp.sqrt(eigenvalues + epsilon)  # columns whiten the patch
    filters = xp.concatenate([filters, -filters], axis=1)
    return filters.reshape(PATCH, PATCH, c, -1).astype(np.float32)


@keras.saving.register_keras_serializable(package="cifar10")
class PatchWhitening(keras.layers.Layer):  # type: ignore[misc]  # Keras classes are Any to mypy
    """2x2 valid convolution with a frozen, data-derived kernel and a trained bias."""

    def __init__(
        self, channels_in: int = 3, data_format: str = "channels_last", centre: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.channels_in = channels_in
        self.centre = centre
        self.filters = 2 * PATCH * PATCH * channels_in
        self.data_format = data_format

    def build(self, input_shape: Any) -> None:
        shape = (PATCH, PATCH, self.channels_in, self.filters)
        self.kernel = self.add_weight(shape=shape, initializer="glorot_uniform", trainable=False, name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def adapt(self, images: np.ndarray) -> None:
        """Set the kernel from float NHWC images, standardised as this layer's input is."""
        if not self.built:
            self.build((None, *images.shape[1:]))
        self.kernel.assign(whitening_kernel(images, centre=self.centre))

    def call(self, x: Any) -> Any:
        y = ops.conv(x, self.kernel, strides=1, padding="valid", data_format=self.data_format)
        bias_shape = (1, -1, 1, 1) if self.data_format == "channels_first" else (1, 1, 1, -1)
        return y + ops.reshape(self.bias, bias_shape)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        if self.data_format == "channels_first":
            n, _, h, w = input_shape
            return (n, self.filters, h - PATCH + 1, w - PATCH + 1)
        n, h, w, _ = input_shape
        return (n, h - PATCH + 1, w - PATCH + 1, self.filters)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "channels_in": self.channels_in,
            "data_format": self.data_format,
            "centre": self.centre,
        }
