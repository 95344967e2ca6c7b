"""JSON bodies that hold large NumPy arrays, written without holding the GIL for long.

json's C encoder holds the GIL for a whole call, even in a decode-pool thread: one
`json.dumps` of 655,360 floats (a 12.6 MB body) held it for 446 ms on the 2-CPU
machine, and the event loop with it. `render` writes each array in pieces of at most
ROW_VALUES values, so other threads, the loop among them, get the GIL in between. Used
by the REST routes' large answers (app/web/answers.py) and the Open Inference
Protocol's responses (app/protocols/open_inference.py).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

ROW_VALUES = 4096  # values per json.dumps call: about 1 ms holding the GIL
_dumps = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode


def render(content: Any) -> bytes:
    """JSON bytes of `content` (dicts, lists, NumPy arrays and scalars, JSON values),
    as Starlette's JSONResponse writes them but ASCII-only; arrays in pieces of at most
    ROW_VALUES values, so other threads get the GIL in between."""
    parts: list[str] = []
    _write(content, parts)
    return "".join(parts).encode("ascii")


def _write(value: Any, parts: list[str]) -> None:
    if isinstance(value, np.ndarray):
        _write_array(value, parts)
    elif isinstance(value, dict):
        parts.append("{")
        for i, (key, item) in enumerate(value.items()):
            parts.append(("," if i else "") + _dumps(str(key)) + ":")
            _write(item, parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for i, item in enumerate(value):
            if i:
                parts.append(",")
            _write(item, parts)
        parts.append("]")
    elif isinstance(value, np.generic):
        parts.append(_dumps(value.item()))
    else:
        parts.append(_dumps(value))


def _write_array(array: np.ndarray, parts: list[str]) -> None:
    if array.ndim == 0:
        parts.append(_dumps(array.item()))
    elif array.ndim == 1:
        pieces = [_dumps(array[i : i + ROW_VALUES].tolist())[1:-1] for i in range(0, len(array), ROW_VALUES)]
        parts.append("[" + ",".join(p for p in pieces if p) + "]")
    else:
        _write(list(array), parts)
