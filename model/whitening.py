"""airbench's patch-whitening stem: a 2x2 convolution whose kernel is fixed, before
training, to the ZCA-like whitening of the training set's 2x2 patches.

The first layer then starts out decorrelating neighbouring pixels and colours, which
the network would otherwise spend its first epochs learning. Each eigenvector appears
with both signs so that the GELU after it keeps the information of either half.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

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
