"""Draw a layer's activations as one grayscale PNG: a near-square grid of channels."""

from __future__ import annotations

import math

import numpy as np

MIN_CELL = 32  # small maps are scaled up (nearest neighbour) to at least this many pixels
GAP = 1


def channel_grid(maps: np.ndarray) -> np.ndarray:
    """uint8 image of the [H, W, C] activations, each channel scaled to 0-255 on its own
    (a constant channel is drawn black)."""
    h, w, c = maps.shape
    lo = maps.min(axis=(0, 1), keepdims=True)
    span = maps.max(axis=(0, 1), keepdims=True) - lo
    scaled = np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1) * 255.0, 0.0)
    channels = np.rint(scaled).astype(np.uint8)
    zoom = max(1, math.ceil(MIN_CELL / max(h, w)))
    cell_h, cell_w = h * zoom, w * zoom
    cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    grid = np.full((rows * (cell_h + GAP) - GAP, cols * (cell_w + GAP) - GAP), 64, dtype=np.uint8)
    for i in range(c):
        r, q = divmod(i, cols)
        cell = np.kron(channels[:, :, i], np.ones((zoom, zoom), dtype=np.uint8))
        grid[r * (cell_h + GAP) : r * (cell_h + GAP) + cell_h, q * (cell_w + GAP) : q * (cell_w + GAP) + cell_w] = cell
    return grid
