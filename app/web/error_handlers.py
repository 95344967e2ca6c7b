"""The one place errors become HTTP responses: every exception the app can raise is
mapped to the one JSON shape (app.errors.error_body), except on the Open Inference
Protocol's routes (/v2/...), which answer its own shape, `{"error": "<message>"}`, so
its clients (tritonclient, KServe's) read the message. Server errors say nothing of
internals; the log has the traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.errors import APIError, ClientClosed, error_body
from app.metrics import Protocol
from app.web.policy import protocol_of

log = logging.getLogger("cifar10.errors")


def error_content(path: str, status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    """The status and body of an error on `path`: the one JSON shape, or on /v2 the Open
    Inference Protocol's, where a request the server cannot take is a 400 (our 422s)."""
    if protocol_of(path) is Protocol.V2_REST:
        return (400 if status == 422 else status), {"error": message}
    return status, error_body(code, message)


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    status, body = error_content(request.url.path, status, code, message)
    return JSONResponse(body, status_code=status, headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def register_exception_handlers(app: FastAPI) -> None:
    """Map every error the app can raise to the one JSON shape."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(request, exc.status_code, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 422, "invalid_request", _describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _disconnect(request: Request, exc: ClientDisconnect) -> JSONResponse:
        return error_response(
            request,
            ClientClosed.status_code,
            ClientClosed.code,
            "the client closed the connection before the body was read",
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %r", request.method, request.url.path)  # %r: no raw CR/LF from the URL
        return error_response(request, 500, "internal_error", "internal server error")
