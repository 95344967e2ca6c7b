"""PNG encoding of what the service draws: the 32x32 input the model received,
feature-map grids and explanation overlays."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 HxWx3 or HxW array."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
