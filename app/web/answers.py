"""Large answers (feature maps, explanations, TF Serving's explain rows): their size
bounded before any work is done, and built off the event loop.

A 1.4 KB request could make the service build one layer 280 times, on the event loop
(issue 27: a 132 MB answer, /healthz held for 5.4 s, 526 MB of growth; a few KB grew
the process to 4.9 GB).
Now repeated parameters are refused (app.web.policy, the routes), every answer's size
is estimated from what the request names before inference (`check_size`, against
CIFAR10_MAX_ANSWER_BYTES), and `json_answer` builds the answer in the decode pool.
There, `render` writes NumPy arrays one row at a time: json's C encoder holds the GIL
for a whole call even in a thread, so one call over a large list would stall the loop
as surely as running it there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi.responses import Response

from app.errors import AnswerTooLarge
from app.web.dependencies import Inference

# The most one float32 value takes in an answer: Python's repr of its float64 value plus
# a comma ("-1.1754943508222875e-38," is 24 characters).
VALUE_BYTES = 24
ROW_VALUES = 4096  # values per json.dumps call: about 1 ms holding the GIL
_dumps = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode


def png_bytes_bound(side: int) -> int:
    """The most a base64 PNG of a side x side RGB image takes: PNG's deflate never
    grows data by more than about 1%, plus a filter byte per row and the headers."""
    raw = side * side * 3 + side
    return (raw + raw // 100 + 1024) * 4 // 3


def check_size(estimate: int, limit: int, what: str) -> None:
    """Refuse, before any work, an answer estimated over `limit` bytes."""
    if estimate > limit:
        raise AnswerTooLarge(
            f"the answer would take up to {estimate / 2**20:.2f} MiB, over the limit of "
            f"{limit / 2**20:.2f} MiB (CIFAR10_MAX_ANSWER_BYTES): ask for {what}"
        )


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


async def json_answer(inference: Inference, build: Callable[[], Any]) -> Response:
    """`build()` (the answer's content: arrays, PNGs to encode) rendered as JSON in the
    decode pool, within the request's deadline."""
    (body,) = await inference.decode([lambda: render(build())])
    return Response(body, media_type="application/json")
