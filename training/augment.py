"""Host-side augmentation on uint8 arrays, so every Keras backend trains on the same
pixels: random translation with reflection padding and airbench's alternating flip."""

from __future__ import annotations

import numpy as np


def translate(images: np.ndarray, pixels: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each image by up to `pixels` in x and y, filling by reflection."""
    if pixels == 0:
        return images
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pixels, pixels), (pixels, pixels), (0, 0)), mode="reflect")
    dy = rng.integers(0, 2 * pixels + 1, n)
    dx = rng.integers(0, 2 * pixels + 1, n)
    out = np.empty_like(images)
    # One slice per distinct offset instead of one per image: 25 copies for 2 px.
    for oy in range(2 * pixels + 1):
        for ox in range(2 * pixels + 1):
            sel = np.flatnonzero((dy == oy) & (dx == ox))
            if sel.size:
                out[sel] = padded[sel, oy : oy + h, ox : ox + w]
    return out


def alternating_flip(images: np.ndarray, base_mask: np.ndarray, epoch: int) -> np.ndarray:
    """Mirror the images chosen by `base_mask` on even epochs and the others on odd ones,
    so over two epochs every image is seen both ways (fewer repeats than coin flips)."""
    mask = base_mask ^ bool(epoch % 2)
    out = images.copy()
    out[mask] = out[mask, :, ::-1]
    return out
