"""Draw an explanation: a 0-1 heat map coloured and blended over the 32x32 input the
model received, scaled up with square pixels so the reader sees the model's grid."""

from __future__ import annotations

import numpy as np

# Dark blue -> cyan -> yellow -> red: cold regions stay readable over any image, and
# the order of hues follows the map's values without a legend.
_ANCHORS = np.array([[0.0, 0, 0, 130], [0.25, 0, 110, 255], [0.5, 0, 230, 200], [0.75, 255, 220, 0], [1.0, 220, 20, 0]])
COLORMAP = np.stack(
    [np.interp(np.linspace(0, 1, 256), _ANCHORS[:, 0], _ANCHORS[:, c]) for c in (1, 2, 3)], axis=1
).astype(np.uint8)
# How much of the colour covers the image: a little where the map is 0 (so the map's
# extent shows), most where it is 1 (so the image still shows through).
ALPHA_MIN, ALPHA_MAX = 0.2, 0.7
DEFAULT_SCALE = 8  # 32x32 -> 256x256


def colorize(heat: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] colours of a [H, W] map in 0-1 (values outside are clipped)."""
    index = np.rint(np.clip(heat, 0.0, 1.0) * 255).astype(np.uint8)
    colors: np.ndarray = COLORMAP[index]
    return colors


def overlay(image: np.ndarray, heat: np.ndarray, scale: int = DEFAULT_SCALE) -> np.ndarray:
    """uint8 [32*scale, 32*scale, 3]: `heat` ([32, 32], 0-1) blended over `image`
    ([32, 32, 3] uint8), each pixel drawn as a scale x scale square."""
    if image.shape[:2] != heat.shape:
        raise ValueError(f"image {image.shape} and map {heat.shape} differ in size")
    alpha = (ALPHA_MIN + (ALPHA_MAX - ALPHA_MIN) * np.clip(heat, 0.0, 1.0))[..., None]
    blended = np.rint((1 - alpha) * image.astype(np.float32) + alpha * colorize(heat).astype(np.float32))
    out = blended.astype(np.uint8)
    return np.repeat(np.repeat(out, scale, axis=0), scale, axis=1)
