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
    model: keras.Model, layers: tuple[str, ...], images: np.ndarray, targets: np.ndarray
) -> dict[str, np.ndarray]:
    """The explain outputs of `model` (TensorFlow backend) for uint8 `images` and int
    `targets` (contract.TOP_CLASS for the top class), in float32 NumPy."""
    names = [STANDARDISE_LAYER, *layers]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names] + [model.outputs[0]])
    *activations, logits = (np.asarray(t, dtype=np.float32) for t in probe(images, training=False))
    targets = np.where(targets < 0, logits.argmax(axis=1), targets).astype(np.int32)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    result = {
        contract.PROBABILITIES: (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32),
        contract.TARGET_CLASS: targets,
    }
    grad = _tail_gradient(model, STANDARDISE_LAYER, activations[0], targets)
    result[contract.SALIENCY] = scale_to_unit(np.abs(grad / np.asarray(contract.CHANNEL_STD)).max(axis=-1))
    for name, activation in zip(layers, activations[1:], strict=True):
        grad = _tail_gradient(model, name, activation, targets)
        cam = np.maximum((grad.mean(axis=(1, 2), keepdims=True) * activation).sum(axis=-1), 0)
        result[contract.GRADCAM_PREFIX + name] = scale_to_unit(resize_bilinear(cam))
    return result


EXPLAIN_ATOL = 1e-3  # max |Δ| of any explain output (maps are 0-1) against the recomputation


def explain_parity(loaded: object, model: keras.Model, layers: tuple[str, ...], images: np.ndarray) -> float:
    """Max |Δ| between a loaded SavedModel's `explain` signature and `reference_explain`,
    on `images` for their top class and for a fixed other class each; raises ValueError
    when the target classes differ or the gap is over EXPLAIN_ATOL."""
    signature = loaded.signatures[contract.EXPLAIN_SIGNATURE]  # type: ignore[attr-defined]
    worst = 0.0
    top = np.full(len(images), contract.TOP_CLASS, np.int32)
    for targets in (top, (np.arange(len(images)) % 10).astype(np.int32)):
        got = {k: v.numpy() for k, v in signature(image=tf.constant(images), target_class=tf.constant(targets)).items()}
        want = reference_explain(model, layers, images, targets)
        if set(got) != set(want) or not np.array_equal(got[contract.TARGET_CLASS], want[contract.TARGET_CLASS]):
            raise ValueError(f"explain outputs {sorted(got)} or target classes differ from the recomputation")
        worst = max(worst, *(float(np.max(np.abs(got[k] - want[k]))) for k in want if k != contract.TARGET_CLASS))
    if worst > EXPLAIN_ATOL:
        raise ValueError(f"explain disagrees with the recomputation: max |Δ| = {worst:.2e} > {EXPLAIN_ATOL:.0e}")
    return worst
