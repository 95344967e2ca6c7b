"""The `explain` signature's graph: Grad-CAM for every feature layer and input-gradient
saliency for one target class per image, under TensorFlow, so that the SavedModel
answers it by itself (model.contract names the inputs and outputs).

Grad-CAM (Selvaraju et al., 2017): weight each channel of a layer's activations by the
spatial mean of the target logit's gradient, sum, ReLU, upsample bilinearly to 32x32,
divide by the maximum. Saliency (Simonyan et al., 2014): the max over channels of
|d logit / d pixel|, divided by its maximum. The logit, not the probability: the
softmax's gradient vanishes for confident predictions and mixes in the other classes.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from model import contract
from model.classes import IMAGE_SHAPE, NUM_CLASSES

# The layer that turns raw pixels into floats: the first point a gradient can reach.
# Every architecture has it (model.layers.Standardise), and the pixel gradient is its
# gradient divided by the channel's standard deviation.
STANDARDISE_LAYER = "standardise"


def scale_to_unit(maps: tf.Tensor) -> tf.Tensor:
    """[N, H, W] non-negative maps divided by each one's maximum; all-zero maps stay zero."""
    peak = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    return tf.math.divide_no_nan(maps, peak)


class Explainer:
    """Callable on (uint8 images [N, 32, 32, 3], int32 targets [N]) inside a tf.function;
    returns the contract's explain outputs."""

    def __init__(self, model: keras.Model, layers: tuple[str, ...]) -> None:
        self.layers = layers
        self._standardise = model.get_layer(STANDARDISE_LAYER)
        # The rest of the network, from the standardised floats on. A model output taken
        # at that layer is not the tensor the next layer consumes in Keras 3 (its
        # gradient comes back None), so the tape watches this sub-model's input instead.
        self._tail = keras.Model(
            self._standardise.output, [model.get_layer(name).output for name in layers] + [model.outputs[0]]
        )

    def __call__(self, image: tf.Tensor, target_class: tf.Tensor) -> dict[str, tf.Tensor]:
        target_class = tf.convert_to_tensor(target_class, tf.int32)
        # A TF Serving client can send anything: refuse a class that does not exist
        # rather than gather a garbage logit.
        checks = [
            tf.debugging.assert_greater_equal(target_class, contract.TOP_CLASS, message="target_class must be >= -1"),
            tf.debugging.assert_less(target_class, NUM_CLASSES, message=f"target_class must be < {NUM_CLASSES}"),
            tf.debugging.assert_equal(tf.shape(target_class)[0], tf.shape(image)[0], message="one target per image"),
        ]
        with tf.control_dependencies(checks), tf.GradientTape() as tape:
            standardised = self._standardise(image)
            tape.watch(standardised)
            *maps, logits = self._tail(standardised, training=False)
            logits = tf.cast(logits, tf.float32)
            top = tf.argmax(logits, axis=1, output_type=tf.int32)
            target = tf.where(target_class < 0, top, target_class)
            # Images are independent at inference (batch norm uses its moving statistics),
            # so the gradient of the sum is each image's own gradient.
            chosen = tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))
        grads = tape.gradient(chosen, [standardised, *maps])
        result = {
            contract.PROBABILITIES: tf.nn.softmax(logits),
            contract.TARGET_CLASS: target,
            contract.SALIENCY: _saliency(grads[0]),
        }
        for name, activation, grad in zip(self.layers, maps, grads[1:], strict=True):
            result[contract.GRADCAM_PREFIX + name] = _gradcam(activation, grad)
        return result


def _gradcam(activation: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
    activation, grad = tf.cast(activation, tf.float32), tf.cast(grad, tf.float32)
    weights = tf.reduce_mean(grad, axis=(1, 2), keepdims=True)  # [N, 1, 1, C]
    cam = tf.nn.relu(tf.reduce_sum(weights * activation, axis=-1))  # [N, H, W]
    upsampled = tf.image.resize(cam[..., None], IMAGE_SHAPE[:2], method="bilinear")[..., 0]
    return scale_to_unit(upsampled)


def _saliency(grad_standardised: tf.Tensor) -> tf.Tensor:
    std = tf.constant(contract.CHANNEL_STD, tf.float32)
    pixel_grad = tf.cast(grad_standardised, tf.float32) / std  # chain rule through (x - mean) / std
    return scale_to_unit(tf.reduce_max(tf.abs(pixel_grad), axis=-1))
