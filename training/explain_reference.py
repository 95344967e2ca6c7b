"""An independent recomputation of the `explain` outputs, to check the signature with.

It shares nothing with training.explain_signature but the definition: each layer's
gradient comes from its own Keras sub-model (that layer's activations in, logits
out) under a fresh GradientTape, and the Grad-CAM weighting, the bilinear upsampling
(half-pixel centres, as tf.image.resize) and the scaling are NumPy.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from model import contract
from model.classes import IMAGE_SHAPE
from training.explain_signature import STANDARDISE_LAYER


def resize_bilinear(maps: np.ndarray, size: int = IMAGE_SHAPE[0]) -> np.ndarray:
    """[N, H, W] -> [N, size, size], bilinear with half-pixel centres and edge clamping."""

    def axis_weights(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (src - lo).astype(np.float64)

    ylo, yhi, wy = axis_weights(maps.shape[1])
    xlo, xhi, wx = axis_weights(maps.shape[2])
    m = maps.astype(np.float64)
    rows = m[:, ylo, :] * (1 - wy)[None, :, None] + m[:, yhi, :] * wy[None, :, None]
    out = rows[:, :, xlo] * (1 - wx)[None, None, :] + rows[:, :, xhi] * wx[None, None, :]
    return out.astype(np.float32)


def scale_to_unit(maps: np.ndarray) -> np.ndarray:
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0.0).astype(np.float32)


def _tail_gradient(model: keras.Model, layer: str, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """d logit[target] / d (layer's output), through a sub-model that starts at that layer."""
    tail = keras.Model(model.get_layer(layer).output, model.outputs[0])
    x = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = tf.cast(tail(x, training=False), tf.float32)
        chosen = tf.reduce_sum(tf.gather(logits, targets, axis=1, batch_dims=1))
    return np.asarray(tape.gradient(chosen, x))


def reference_explain(
    model: keras.Model,
    layers: tuple[str, ...],
    images: np.ndarray,
    targets: np.ndarray,
    nudge: np.ndarray | float = 0.0,
) -> dict[str, np.ndarray]:
    """The explain outputs of `model` (TensorFlow backend) for uint8 `images` and int
    `targets` (contract.TOP_CLASS for the top class), in float32 NumPy. `nudge` is added
    to the standardised pixels first (explain_parity measures what that changes)."""
    names = [STANDARDISE_LAYER, *layers]
    if np.any(nudge):
        # The nudged input enters after the standardisation.
        probe = keras.Model(
            model.get_layer(STANDARDISE_LAYER).output, [model.get_layer(n).output for n in layers] + [model.outputs[0]]
        )
        standardised = np.asarray(model.get_layer(STANDARDISE_LAYER)(images), dtype=np.float32) + nudge
        *activations, logits = (np.asarray(t, dtype=np.float32) for t in probe(standardised, training=False))
    else:
        probe = keras.Model(model.input, [model.get_layer(n).output for n in names] + [model.outputs[0]])
        standardised, *activations, logits = (np.asarray(t, dtype=np.float32) for t in probe(images, training=False))
    targets = np.where(targets < 0, logits.argmax(axis=1), targets).astype(np.int32)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    result = {
        contract.PROBABILITIES: (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32),
        contract.TARGET_CLASS: targets,
    }
    grad = _tail_gradient(model, STANDARDISE_LAYER, standardised, targets)
    result[contract.SALIENCY] = scale_to_unit(np.abs(grad / np.asarray(contract.CHANNEL_STD)).max(axis=-1))
    for name, activation in zip(layers, activations, strict=True):
        grad = _tail_gradient(model, name, activation, targets)
        cam = np.maximum((grad.mean(axis=(1, 2), keepdims=True) * activation).sum(axis=-1), 0)
        result[contract.GRADCAM_PREFIX + name] = scale_to_unit(resize_bilinear(cam))
    return result


EXPLAIN_ATOL = 1e-3  # max |Δ| of any explain output (maps are 0-1) against the recomputation, on a determined map
# The gradient of a network with max-pools is piecewise: each pooling window sends its
# gradient to its largest input. Where two inputs of a window are within rounding of
# each other, two correct float32 computations (the SavedModel's graph, this eager
# recomputation) may pick different ones, and the maps differ there by one pooled
# unit's gradient against the map's maximum. Measured (`python -m training.explain_margin`,
# 512 validation images, top class): on a cpu88 run of 200 steps (`train --preset cpu88
# --max-steps 20`), the two forward passes differed by <= 1e-6 of each pooling layer's
# largest input; 11 images (2%) had saliency maps 1e-3 to 1.9e-2 apart, each with a
# window of block1's pool whose two largest inputs were within 1e-7 of that scale, and
# 1 image a Grad-CAM map 2.2e-3 apart; the other maps agreed within 1e-5 (saliency)
# and 8e-4 (Grad-CAM). The shipped cifar10/4 (cpu88, fully trained): 5 saliency maps
# (1%) up to 5.2e-3 apart; the shipped cifar10/6 (airbench95), 6 of 256 (2%) up to
# 4.3e-2. Larger and more often on the undertrained network, whose
# gradient is spread thin (its median pixel's saliency is 0.1 of the maximum), so one
# pooled unit's share of the maximum is larger. Export compares 16 images for two
# targets each: at 2% a map, 1 - 0.98**32 = 48% of such exports failed at a flat 1e-3.
# So each image's maps may differ by EXPLAIN_ATOL plus what the recomputation itself
# changes when its standardised input moves by +-NUDGE: that moves the pooling inputs by
# up to 4-6.5e-6 of their scale, 5x the rounding measured, and so flips every window that
# rounding could flip, with one sign or the other. On both networks above no map was
# then over its tolerance (nor on cifar10/6), the median saliency tolerance stayed
# 1.1-2e-3, and a wrong saliency (not divided by the channels' std; summed over
# channels) failed on 98-100% of the images. (NUDGE = 3e-7, 2x the rounding, left one Grad-CAM map over.)
NUDGE = 1e-6  # standardised units (the pixels span about +-2; float32 steps by 1.2e-7 at 1)


def _indeterminacy(
    model: keras.Model, layers: tuple[str, ...], images: np.ndarray, targets: np.ndarray, want: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per output and image: how far the recomputation's maps move under a +NUDGE and
    a -NUDGE of its input, summed (a signature may take some flips of each)."""
    # The nudge is a function of each pixel's value, not of its place: patches with the
    # same pixels (a flat background) stay exactly equal, so their exact ties, which
    # every computation breaks alike, stay ties; near-ties between different patches move.
    by_value = np.random.default_rng(0).choice([-1.0, 1.0], size=(images.shape[-1], 256)).astype(np.float32)
    pattern = NUDGE * by_value[np.arange(images.shape[-1]), images]
    spread = {k: np.zeros(len(images)) for k in want if k != contract.TARGET_CLASS}
    for sign in (1.0, -1.0):
        nudged = reference_explain(model, layers, images, targets, nudge=sign * pattern)
        for k in spread:
            spread[k] += np.abs(nudged[k] - want[k]).reshape(len(images), -1).max(axis=1)
    return spread


def explain_parity(loaded: object, model: keras.Model, layers: tuple[str, ...], images: np.ndarray) -> float:
    """Max |Δ| between a loaded SavedModel's `explain` signature and `reference_explain`,
    on `images` for their top class and for a fixed other class each. Raises ValueError
    when the target classes differ, or when any image's output is further off than
    EXPLAIN_ATOL plus that image's own indeterminacy (see NUDGE)."""
    signature = loaded.signatures[contract.EXPLAIN_SIGNATURE]  # type: ignore[attr-defined]
    worst = 0.0
    top = np.full(len(images), contract.TOP_CLASS, np.int32)
    for targets in (top, (np.arange(len(images)) % 10).astype(np.int32)):
        got = {k: v.numpy() for k, v in signature(image=tf.constant(images), target_class=tf.constant(targets)).items()}
        want = reference_explain(model, layers, images, targets)
        if set(got) != set(want) or not np.array_equal(got[contract.TARGET_CLASS], want[contract.TARGET_CLASS]):
            raise ValueError(f"explain outputs {sorted(got)} or target classes differ from the recomputation")
        spread = _indeterminacy(model, layers, images, want[contract.TARGET_CLASS], want)
        for k, own in spread.items():
            gap = np.abs(got[k] - want[k]).reshape(len(images), -1).max(axis=1)
            tolerance = EXPLAIN_ATOL + own
            if np.any(gap > tolerance):
                i = int(np.argmax(gap - tolerance))
                raise ValueError(
                    f"explain disagrees with the recomputation: {k} of image {i} max |Δ| = {gap[i]:.2e} > "
                    f"{tolerance[i]:.2e} ({EXPLAIN_ATOL:.0e} + {own[i]:.1e}, its own change under a {NUDGE:.0e} nudge)"
                )
            worst = max(worst, float(gap.max()))
    return worst
