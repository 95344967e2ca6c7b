"""Large answers (feature maps, explanations, TF Serving's explain rows): their size
bounded before any work is done, and built off the event loop.

A 1.4 KB request could make the service build one layer 280 times, on the event loop
(issue 27: a 132 MB answer, /healthz held for 5.4 s, 526 MB of growth; a few KB grew
the process to 4.9 GB).
Now repeated parameters are refused (app.web.policy, the routes), every answer's size
is estimated from what the request names before inference (`check_size`, against
CIFAR10_MAX_ANSWER_BYTES), and `json_answer` builds the answer in the decode pool,
rendered by app.protocols.json_writer (arrays in pieces: json's C encoder holds the GIL
for a whole call even in a thread).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import Response

from app.errors import AnswerTooLarge
from app.protocols.json_writer import render
from app.web.dependencies import Inference

# The most one float32 value takes in an answer: Python's repr of its float64 value plus
# a comma ("-1.1754943508222875e-38," is 24 characters).
VALUE_BYTES = 24


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


async def json_answer(inference: Inference, build: Callable[[], Any]) -> Response:
    """`build()` (the answer's content: arrays, PNGs to encode) rendered as JSON in the
    decode pool, within the request's deadline."""
    (body,) = await inference.decode([lambda: render(build())])
    return Response(body, media_type="application/json")
