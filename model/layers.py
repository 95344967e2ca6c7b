"""Keras 3 layers the architectures share, written with `keras.ops` only so they run
on the TensorFlow, JAX and PyTorch backends alike."""

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
