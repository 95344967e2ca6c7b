"""Domain errors and the one place they become HTTP responses.

Every error body has the same shape: {"error": {"code": str, "message": str}}.
Server errors say nothing of internals; the log has the traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger("cifar10.errors")


class APIError(Exception):
    """An error with its HTTP status and a stable machine-readable code."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class InvalidImage(APIError):
    status_code, code = 422, "invalid_image"


class UnsupportedImage(APIError):
    status_code, code = 415, "unsupported_image"


class ImageTooLarge(APIError):
    status_code, code = 413, "image_too_large"


class PayloadTooLarge(APIError):
    status_code, code = 413, "payload_too_large"


class InvalidRequest(APIError):
    status_code, code = 422, "invalid_request"


class ExplainUnavailable(APIError):
    """The served model cannot explain: exported without the explain signature, or
    served by a runtime that does not compute it. As TF Serving answers an unknown
    signature: a client error, and the message says what to serve instead."""

    status_code, code = 400, "explain_unavailable"


class InvalidJSON(APIError):
    status_code, code = 400, "invalid_json"


class Unauthorized(APIError):
    status_code, code = 401, "unauthorized"


class NotFound(APIError):
    status_code, code = 404, "not_found"


class Overloaded(APIError):
    status_code, code = 429, "overloaded"


class NotReady(APIError):
    status_code, code = 503, "not_ready"


class Timeout(APIError):
    status_code, code = 504, "timeout"


class ClientClosed(APIError):
    """The client went away (nginx's 499): nobody reads the answer, but metrics and the
    access log should say what happened instead of counting a 500."""

    status_code, code = 499, "client_closed_request"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


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
        return error_response(exc.status_code, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _disconnect(request: Request, exc: ClientDisconnect) -> JSONResponse:
        return error_response(
            ClientClosed.status_code, ClientClosed.code, "the client closed the connection before the body was read"
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %r", request.method, request.url.path)  # %r: no raw CR/LF from the URL
        return error_response(500, "internal_error", "internal server error")
