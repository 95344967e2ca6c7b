"""Domain errors: raised where they happen, by the serving core and the web edge alike,
each with its HTTP status and a stable machine-readable code. No web framework here:
app/web/error_handlers.py maps them to responses in one place (and the gRPC edge to
its status codes).

Every error body has the same shape: {"error": {"code": str, "message": str}}.
"""

from __future__ import annotations

from typing import Any


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


class AnswerTooLarge(APIError):
    """The answer a request asks for (layers, maps, images) would exceed the answer
    size limit; found before any work is done (app.web.answers)."""

    status_code, code = 422, "answer_too_large"


class InvalidRequest(APIError):
    status_code, code = 422, "invalid_request"


class OperationUnavailable(APIError):
    """The served version cannot answer the operation (e.g. explain, for an export
    without the explain signature). As TF Serving answers an unknown signature: a client
    error, coded `<operation>_unavailable`, and the message says what to serve instead."""

    status_code = 400

    def __init__(self, message: str, operation: str) -> None:
        super().__init__(message)
        self.code = f"{operation}_unavailable"


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
