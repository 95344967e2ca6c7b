"""The "fast" network: a small residual CNN in the airbench / ResNet-9 family.

stem -> 3 blocks of [conv3x3 -> max-pool 2 -> batch-norm -> GELU, then a
residual conv3x3 -> batch-norm -> GELU] -> global max-pool -> linear, logits scaled.
Widths are configurable: 64/128/128 trains on a 2-core CPU, 64/256/256 on a GPU.

The stem is either a trained conv3x3 (`"conv"`, 32x32 out) or airbench's frozen 2x2
patch-whitening conv (`"whiten"`, 31x31x24 out), which learns faster and costs less.

`data_format="channels_first"` exists for training under PyTorch, whose Keras backend
otherwise transposes NHWC to NCHW around every conv and pool (measured 23% slower per
step on the 2-core CPU). The weights are layout-independent, so a model trained
channels-first loads into the channels-last one that export builds for TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np

from model.classes import IMAGE_SHAPE, NUM_CLASSES
from model.layers import PartialDirac, PatchWhitening, ScaledBias, Standardise

FEATURE_LAYERS = ("stem", "block1", "block2", "block3")

# Short runs want the batch-norm statistics to follow the weights quickly
# (Keras momentum 0.9 = PyTorch momentum 0.1).
BN_MOMENTUM = 0.9
# A fixed logit scale keeps early, large-learning-rate steps from saturating the softmax.
LOGIT_SCALE = 0.125
STEMS = ("conv", "whiten")
DATA_FORMATS = ("channels_last", "channels_first")


def _conv_bn_gelu(
    x: keras.KerasTensor, width: int, name: str, pool: bool, data_format: str, bias_lr_scale: float, dirac: bool
) -> keras.KerasTensor:
    axis = 1 if data_format == "channels_first" else -1
    init = PartialDirac() if dirac else "glorot_uniform"
    x = keras.layers.Conv2D(
        width, 3, padding="same", use_bias=False, kernel_initializer=init, data_format=data_format, name=f"{name}_conv"
    )(x)
    if pool:
        x = keras.layers.MaxPooling2D(2, data_format=data_format, name=f"{name}_pool")(x)
    if bias_lr_scale == 1.0:
        x = keras.layers.BatchNormalization(axis=axis, momentum=BN_MOMENTUM, epsilon=1e-5, name=f"{name}_bn")(x)
    else:
        # airbench's batch norm: no scale (the conv before it already sets each channel's) and a
        # bias that learns bias_lr_scale times faster than the convs.
        x = keras.layers.BatchNormalization(
            axis=axis, momentum=BN_MOMENTUM, epsilon=1e-5, center=False, scale=False, name=f"{name}_bn"
        )(x)
        x = ScaledBias(math.sqrt(bias_lr_scale), axis=axis, name=f"{name}_bias")(x)
    return keras.layers.Activation("gelu", name=f"{name}_gelu")(x)


def build_fast(
    widths: Sequence[int] = (64, 128, 128),
    stem: str = "conv",
    stem_width: int = 32,
    data_format: str = "channels_last",
    bias_lr_scale: float = 1.0,
    dirac: bool = False,
) -> keras.Model:
    """Build the fast network; it maps uint8 NHWC images to float32 logits.

    `bias_lr_scale` != 1 drops the batch norms' scale and trains their bias that many
    times faster (see ScaledBias); `dirac` starts every block conv as an identity.
    The defaults build the network of the first shipped models.
    """
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    if bias_lr_scale <= 0:
        raise ValueError(f"bias_lr_scale must be positive, got {bias_lr_scale}")
    if data_format not in DATA_FORMATS:
        raise ValueError(f"unknown data_format {data_format!r}; choose one of {', '.join(DATA_FORMATS)}")
    inputs = keras.Input(IMAGE_SHAPE, dtype="uint8", name="image")
    x = Standardise(name="standardise")(inputs)
    if data_format == "channels_first":
        x = keras.layers.Permute((3, 1, 2), name="to_channels_first")(x)
    if stem == "whiten":
        x = PatchWhitening(IMAGE_SHAPE[-1], data_format=data_format, name="stem_whiten")(x)
        x = keras.layers.Activation("gelu", name="stem_gelu")(x)
    else:
        x = _conv_bn_gelu(x, stem_width, "stem_in", False, data_format, bias_lr_scale, dirac)
    x = keras.layers.Identity(name="stem")(x)
    for i, width in enumerate(widths, start=1):
        x = _conv_bn_gelu(x, width, f"block{i}_a", True, data_format, bias_lr_scale, dirac)
        y = _conv_bn_gelu(x, width, f"block{i}_b", False, data_format, bias_lr_scale, dirac)
        x = keras.layers.Add(name=f"block{i}")([x, y])
    x = keras.layers.GlobalMaxPooling2D(data_format=data_format, name="global_pool")(x)
    x = keras.layers.Dense(NUM_CLASSES, use_bias=False, dtype="float32", name="linear")(x)
    logits = keras.layers.Rescaling(LOGIT_SCALE, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="fast")


def adapt(model: keras.Model, images: np.ndarray) -> None:
    """Fit the data-derived parts of a fresh model (the whitening stem) to uint8 images."""
    try:
        whitening = model.get_layer("stem_whiten")
    except ValueError:
        return  # the conv stem has nothing to fit
    standardised = keras.ops.convert_to_numpy(model.get_layer("standardise")(images))
    whitening.adapt(standardised)
