"""Keras 3 layers the architectures share, written with `keras.ops` only so they run
on the TensorFlow, JAX and PyTorch backends alike."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from model.contract import CHANNEL_MEAN, CHANNEL_STD


@keras.saving.register_keras_serializable(package="cifar10")
class LocalResponseNorm(keras.layers.Layer):
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
class Standardise(keras.layers.Layer):
    """Raw uint8 pixels -> per-channel standardised floats, in the layer's compute dtype.

    Living inside the model, the constants travel with every export and cannot drift
    between training and serving.
    """

    def call(self, x: Any) -> Any:
        x = ops.cast(x, self.compute_dtype)
        mean = ops.convert_to_tensor(CHANNEL_MEAN, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(CHANNEL_STD, dtype=self.compute_dtype)
        return (x - mean) / std
