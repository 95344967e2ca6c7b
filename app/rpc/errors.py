"""The one place errors become gRPC statuses, as app/web/error_handlers.py is for HTTP:
each domain error (app.errors) keeps its message, and its HTTP status picks the code."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from app.errors import APIError

# HTTP status of a domain error -> the gRPC code that means the same to a client.
CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,  # bad JSON, an unknown signature, explain not exported
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    # Too many images, an image over the pixel limit: retrying the same request cannot
    # help, so not RESOURCE_EXHAUSTED (which says: retry later).
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_of(exc: APIError) -> grpc.StatusCode:
    return CODES.get(exc.status_code, grpc.StatusCode.INTERNAL)


def trailers_of(exc: APIError) -> tuple[tuple[str, str], ...]:
    """HTTP headers an error carries (Retry-After on 429) as trailing metadata."""
    return tuple((k.lower(), v) for k, v in (exc.headers or {}).items() if k.lower() == "retry-after")


async def abort(context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the call with `code` (grpc.aio's abort raises; grpc ships no types saying so)."""
    await context.abort(code, message)
    raise AssertionError("context.abort returned")
