"""Helpers the tests share (fixtures stay in the conftest.py files)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Check an error response: the status first, then the one JSON error shape and its
    code; return the error object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    return body["error"]


def png_bytes(pixels: np.ndarray, mode: str | None = None, fmt: str = "PNG", **save: object) -> bytes:
    from PIL import Image  # lazily: most tests never draw

    buf = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buf, format=fmt, **save) if mode else Image.fromarray(pixels).save(
        buf, format=fmt, **save
    )
    return buf.getvalue()
