"""The tutorial's network with its bugs fixed (`--arch tutorial`).

conv5x5x64 -> max-pool 3x3/2 -> LRN -> conv5x5x64 -> max-pool 2x2 -> LRN -> fc256 -> fc10.
Fixes relative to the tutorial's code (see docs/models.md, "Architectures"):
- logits are returned raw; the loss applies the softmax once (the tutorial applied
  softmax and then a softmax-cross-entropy, squashing the gradient);
- ReLU follows the bias add (the tutorial applied ReLU, then added the bias);
- no ReLU on the logits (it clipped every negative logit to zero);
- the second LRN's output is what the classifier reads (the tutorial dropped it);
- labels are integer class ids, not an [N, 1] float tensor.
"""

from __future__ import annotations

import keras

from model.classes import IMAGE_SHAPE, NUM_CLASSES
from model.layers import LocalResponseNorm, Standardise

FEATURE_LAYERS = ("conv1", "pool1", "norm1", "conv2", "pool2", "norm2")


def build_tutorial(l2: float = 1e-4) -> keras.Model:
    """Build the tutorial's network; it maps uint8 images to float32 logits."""
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = keras.Input(IMAGE_SHAPE, dtype="uint8", name="image")
    x = Standardise(name="standardise")(inputs)
    x = keras.layers.Conv2D(64, 5, padding="same", activation="relu", kernel_regularizer=reg, name="conv1")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = LocalResponseNorm(name="norm1")(x)
    x = keras.layers.Conv2D(64, 5, padding="same", activation="relu", kernel_regularizer=reg, name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name="pool2")(x)
    x = LocalResponseNorm(name="norm2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(256, activation="relu", kernel_regularizer=reg, name="fc1")(x)
    # float32 logits even under a mixed-precision policy, so the softmax stays exact.
    logits = keras.layers.Dense(NUM_CLASSES, kernel_regularizer=reg, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="tutorial")
