"""Host-side augmentation on uint8 arrays, so every Keras backend trains on the same
pixels: random translation with reflection padding, airbench's alternating flip, and
airbench96's cutout."""

from __future__ import annotations

from typing import Any

import numpy as np

from model.contract import CHANNEL_MEAN

# Cutout's fill: airbench96 zeroes normalised pixels, i.e. sets them to the mean colour;
# on uint8 pixels that is the mean rounded (within 0.5/255 of it, 0.008 standardised).
MEAN_PIXEL = np.round(np.asarray(CHANNEL_MEAN)).astype(np.uint8)


def cutout_masks(corners: Any, size: int, side: int, xp: Any = np) -> Any:
    """[N, side, side] booleans: a size x size square at each image's top-left `corners`
    [N, 2]; `xp` is the array module (NumPy here, jax.numpy in the device loop)."""
    span = xp.arange(side)
    rows = (span[None, :] >= corners[:, :1]) & (span[None, :] < corners[:, :1] + size)
    cols = (span[None, :] >= corners[:, 1:]) & (span[None, :] < corners[:, 1:] + size)
    return rows[:, :, None] & cols[:, None, :]


def cutout(images: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Set a size x size square of each image, wholly inside it and placed uniformly, to
    the mean colour (airbench96's batch_cutout)."""
    if size == 0:
        return images
    n, side = images.shape[:2]  # square images
    corners = rng.integers(0, side - size + 1, (n, 2))
    out = images.copy()
    out[cutout_masks(corners, size, side)] = MEAN_PIXEL
    return out


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
