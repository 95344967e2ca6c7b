"""The framing between front processes and the model process, over a Unix socket:
a JSON header and raw numpy buffers, so decoded images and results cross without
pickling and without copies beyond the socket's.

A frame is `!II` (header bytes, body bytes), the header (JSON: `op`, `id`, and
`arrays` as [name, dtype, shape] in body order), then the body.

Errors cross as an `error` frame with a code from one table (ERROR_CODES): the model
process writes it with `error_frame`, the front raises it again with `raise_error`, so
a full queue or a draining model process means the same on both sides.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any, NoReturn

import numpy as np

from app.serving.batcher import BatcherClosed, QueueFull

_PREFIX = struct.Struct("!II")
MAX_HEADER = 16 << 20  # a model card is a few kB; anything larger is not our peer


class WireError(Exception):
    """The peer sent something that is not a frame of this protocol."""


class ModelProcessFailed(RuntimeError):
    """The model process failed the batch; its log has the traceback."""


# Batcher outcomes the front raises again as they were raised in the model process;
# anything else is FAILED (the front answers 500).
ERROR_CODES: dict[type[Exception], str] = {QueueFull: "overloaded", BatcherClosed: "closed"}
FAILED = "failed"
_RAISED = {code: error for error, code in ERROR_CODES.items()}


def error_frame(rid: int, exc: Exception) -> list[bytes | memoryview]:
    """The `error` frame answering request `rid` with `exc`; an unexpected error is sent
    by type name only (its traceback stays in the model process's log)."""
    code = ERROR_CODES.get(type(exc), FAILED)
    message = str(exc) if code != FAILED else type(exc).__name__
    return encode({"op": "error", "id": rid, "code": code, "message": message})


def raise_error(header: dict[str, Any]) -> NoReturn:
    """Raise the exception an `error` frame stands for."""
    raise _RAISED.get(str(header.get("code")), ModelProcessFailed)(str(header.get("message", "")))


def encode(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> list[bytes | memoryview]:
    """One frame as buffers for `writer.writelines` (arrays are not copied)."""
    arrays = arrays or {}
    buffers = [np.ascontiguousarray(a).data.cast("B") for a in arrays.values()]
    header = {**header, "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in arrays.items()]}
    head = json.dumps(header, separators=(",", ":")).encode()
    return [_PREFIX.pack(len(head), sum(b.nbytes for b in buffers)), head, *buffers]


async def read(reader: asyncio.StreamReader) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The next frame's header and arrays; IncompleteReadError at a clean end of stream."""
    head_len, body_len = _PREFIX.unpack(await reader.readexactly(_PREFIX.size))
    if head_len > MAX_HEADER:
        raise WireError(f"header of {head_len} bytes")
    header = json.loads(await reader.readexactly(head_len))
    body = await reader.readexactly(body_len) if body_len else b""
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for name, dtype, shape in header.pop("arrays", []):
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        arrays[name] = np.frombuffer(body, dtype=dt, count=count, offset=offset).reshape(shape)
        offset += count * dt.itemsize
    if offset != body_len:
        raise WireError(f"the header describes {offset} bytes, the body has {body_len}")
    return header, arrays
