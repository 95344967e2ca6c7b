"""The "fast" network: a small residual CNN in the airbench / ResNet-9 family.

stem conv -> 3 blocks of [conv3x3 -> max-pool 2 -> batch-norm -> GELU, then a
residual conv3x3 -> batch-norm -> GELU] -> global max-pool -> linear, logits scaled.
Widths are configurable: 64/128/128 trains on a 2-core CPU, 64/256/256 on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from model.classes import IMAGE_SHAPE, NUM_CLASSES
from model.layers import Standardise

FEATURE_LAYERS = ("stem", "block1", "block2", "block3")

# Short runs want the batch-norm statistics to follow the weights quickly
# (Keras momentum 0.9 = PyTorch momentum 0.1).
BN_MOMENTUM = 0.9
# A fixed logit scale keeps early, large-learning-rate steps from saturating the softmax.
LOGIT_SCALE = 0.125


def _conv_bn_gelu(x: keras.KerasTensor, width: int, name: str, pool: bool) -> keras.KerasTensor:
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    if pool:
        x = keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-5, name=f"{name}_bn")(x)
    return keras.layers.Activation("gelu", name=f"{name}_gelu")(x)


def build_fast(widths: Sequence[int] = (64, 128, 128), stem_width: int = 32) -> keras.Model:
    """Build the fast network; it maps uint8 images to float32 logits."""
    inputs = keras.Input(IMAGE_SHAPE, dtype="uint8", name="image")
    x = Standardise(name="standardise")(inputs)
    x = _conv_bn_gelu(x, stem_width, "stem_in", pool=False)
    x = keras.layers.Identity(name="stem")(x)
    for i, width in enumerate(widths, start=1):
        x = _conv_bn_gelu(x, width, f"block{i}_a", pool=True)
        y = _conv_bn_gelu(x, width, f"block{i}_b", pool=False)
        x = keras.layers.Add(name=f"block{i}")([x, y])
    x = keras.layers.GlobalMaxPooling2D(name="global_pool")(x)
    x = keras.layers.Dense(NUM_CLASSES, use_bias=False, dtype="float32", name="linear")(x)
    logits = keras.layers.Rescaling(LOGIT_SCALE, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="fast")
