"""airbench's networks (Jordan, 2024), ported to Keras 3 layer for layer.

airbench94 and 95: whitening conv 2x2 (frozen kernel, trained bias) -> GELU -> 3 groups
of [conv3x3 -> max-pool 2 -> batch norm -> GELU -> conv3x3 -> batch norm -> GELU]
-> global max-pool -> linear (no bias) -> x 1/9. No residual connections.
airbench96 (`block_convs=3`): each group has a third conv, and a residual connection
over the last two: [conv -> pool -> BN -> GELU = x0 -> conv -> BN -> GELU -> conv -> BN,
+ x0 -> GELU]; its batch norms keep PyTorch's default momentum (`bn_momentum=0.9`).

What differs from the `fast` network, and why it is kept here as airbench has it:
batch norm with PyTorch momentum 0.4 (Keras 0.6), eps 1e-12, no scale and a
float32 dtype under mixed precision; PyTorch's default init for the convs with
their first c_in filters set to the identity; the uncentred patch covariance for
the whitening. The input is raw uint8, standardised inside the graph as in every
exported model of this project. `tta_logits` is airbench's level-2 test-time
augmentation, shared by the trainer, the parity check and the exported graph.

`data_format="channels_first"` is for training under PyTorch's Keras backend, as in
the fast network (model.builders.fast): the weights do not depend on it, and export
builds the channels-last network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from model.builders.fast import DATA_FORMATS
from model.classes import IMAGE_SHAPE, NUM_CLASSES
from model.layers import PartialDirac, PatchWhitening, Standardise, torch_uniform

FEATURE_LAYERS = ("stem", "block1", "block2", "block3")
WIDTHS = (64, 256, 256)  # airbench94; airbench93 uses 64/128/128
BN_MOMENTUM = 0.6  # Keras convention: PyTorch's momentum 0.4 (airbench94/95)
BLOCK_CONVS = (2, 3)  # convs per group: airbench94/95, airbench96
BN_EPSILON = 1e-12
LOGIT_SCALE = 1.0 / 9.0
TTA_LEVELS = (0, 1, 2)  # none, mirror, mirror + two one-pixel shifts


def _conv(width: int, name: str, data_format: str) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        width,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer=PartialDirac(torch_uniform=True),
        data_format=data_format,
        name=name,
    )


def _batch_norm(name: str, data_format: str, momentum: float) -> keras.layers.BatchNormalization:
    # float32 whatever the global policy: airbench keeps its batch norms in float32
    # while the convs run in half precision.
    return keras.layers.BatchNormalization(
        axis=1 if data_format == "channels_first" else -1,
        momentum=momentum,
        epsilon=BN_EPSILON,
        center=True,
        scale=False,
        dtype="float32",
        name=name,
    )


def _group(
    x: keras.KerasTensor, width: int, name: str, data_format: str, convs: int, bn_momentum: float
) -> keras.KerasTensor:
    x = _conv(width, f"{name}_conv1", data_format)(x)
    x = keras.layers.MaxPooling2D(2, data_format=data_format, name=f"{name}_pool")(x)
    x = _batch_norm(f"{name}_bn1", data_format, bn_momentum)(x)
    x = keras.layers.Activation("gelu", name=f"{name}_gelu1")(x)
    x0 = x
    x = _conv(width, f"{name}_conv2", data_format)(x)
    x = _batch_norm(f"{name}_bn2", data_format, bn_momentum)(x)
    x = keras.layers.Activation("gelu", name=f"{name}_gelu2")(x)
    if convs == 3:
        x = _conv(width, f"{name}_conv3", data_format)(x)
        x = _batch_norm(f"{name}_bn3", data_format, bn_momentum)(x)
        x = keras.layers.Add(name=f"{name}_add")([x, x0])
        x = keras.layers.Activation("gelu", name=f"{name}_gelu3")(x)
    return keras.layers.Identity(name=name)(x)


def build_airbench(
    widths: Sequence[int] = WIDTHS,
    float32_stem: bool = False,
    data_format: str = "channels_last",
    block_convs: int = 2,
    bn_momentum: float = BN_MOMENTUM,
) -> keras.Model:
    """Build the network; it maps uint8 NHWC images to float32 logits.

    `block_convs` 3 and `bn_momentum` 0.9 with widths 128/384/512 build airbench96's.

    The whitening kernel is a placeholder until `adapt` fits it to training images.
    `float32_stem` keeps the standardisation and the whitening conv in float32 under a
    mixed-precision policy: the whitening amplifies the smallest patch components up
    to ~45x, and with them bfloat16's rounding of its inputs (8 significant bits to
    float16's 11). Measured on an H200 over 8 seeds it changed nothing (90.21% vs
    90.19% with TTA, docs/gpu-training.md), so airbench's all-half-precision stays
    the default.
    """
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(f"airbench needs three positive widths, got {tuple(widths)}")
    if data_format not in DATA_FORMATS:
        raise ValueError(f"unknown data_format {data_format!r}; choose one of {', '.join(DATA_FORMATS)}")
    if block_convs not in BLOCK_CONVS:
        raise ValueError(f"airbench groups have {' or '.join(map(str, BLOCK_CONVS))} convs, got {block_convs}")
    inputs = keras.Input(IMAGE_SHAPE, dtype="uint8", name="image")
    stem_dtype = "float32" if float32_stem else None
    x = Standardise(dtype=stem_dtype, name="standardise")(inputs)
    if data_format == "channels_first":
        x = keras.layers.Permute((3, 1, 2), name="to_channels_first")(x)
    x = PatchWhitening(IMAGE_SHAPE[-1], centre=False, data_format=data_format, dtype=stem_dtype, name="stem_whiten")(x)
    x = keras.layers.Activation("gelu", name="stem_gelu")(x)
    x = keras.layers.Identity(name="stem")(x)
    for i, width in enumerate(widths, start=1):
        x = _group(x, width, f"block{i}", data_format, block_convs, bn_momentum)
    x = keras.layers.GlobalMaxPooling2D(data_format=data_format, name="global_pool")(x)
    x = keras.layers.Dense(NUM_CLASSES, use_bias=False, kernel_initializer=torch_uniform(), name="linear")(x)
    logits = keras.layers.Rescaling(LOGIT_SCALE, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="airbench")


def tta_logits(model: Any, images: Any, level: int = 2) -> Any:
    """Logits averaged over airbench's test-time augmentations of uint8 NHWC images.

    Level 1 averages each image with its mirror. Level 2 also averages, with equal
    total weight, the mirror pairs of the image shifted one pixel up-left and one
    pixel down-right (reflection padding): six forward passes. `model` is any
    callable from uint8 images to logits (a Keras model, or a stateless wrapper).
    """
    if level not in TTA_LEVELS:
        raise ValueError(f"tta level must be one of {TTA_LEVELS}, got {level}")

    def mirror_mean(x: Any) -> Any:
        return 0.5 * model(x) + 0.5 * model(ops.flip(x, axis=2))

    if level == 0:
        return model(images)
    logits = mirror_mean(images)
    if level == 1:
        return logits
    h, w = images.shape[1], images.shape[2]
    padded = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
    shifted = [padded[:, 0:h, 0:w, :], padded[:, 2 : h + 2, 2 : w + 2, :]]
    translated = 0.5 * mirror_mean(shifted[0]) + 0.5 * mirror_mean(shifted[1])
    return 0.5 * logits + 0.5 * translated
