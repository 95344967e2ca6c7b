"""Pure ASGI middleware: request ids, access log and request metrics; admission
control for the inference routes; and the body size limit (enforced while the body
streams in, so a huge upload is never buffered)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence

from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PayloadTooLarge
from app.metrics import Metrics
from app.serving.admission import REFUSAL, Admission
from app.web.error_handlers import error_content
from app.web.policy import protocol_of
from model import contract

access_log = logging.getLogger("cifar10.access")
REQUEST_ID_HEADER = "x-request-id"
ADMISSION_ENDPOINT = "cifar10.endpoint"  # scope key: the route template of a request refused before routing
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ObservabilityMiddleware:
    """Accepts or generates X-Request-ID, echoes it, logs one access line per request
    and records request count and latency by route template (bounded cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or scope.get(ADMISSION_ENDPOINT) or "unmatched"
            protocol = protocol_of(scope["path"])
            self.metrics.request_done(endpoint, scope["method"], str(status), protocol, elapsed)
            access_log.info(
                '%s "%s %s" %d %.1fms request_id=%s protocol=%s',
                (scope.get("client") or ("-",))[0],
                escape(scope["method"]),
                escape(scope["path"]),
                status,
                elapsed * 1000,
                request_id,
                protocol.value,
            )


def escape(text: str) -> str:
    """`text` with control characters, non-ASCII and quotes backslash-escaped: a
    percent-encoded CRLF in a URL is decoded into the ASGI path, and written raw it
    would forge a log line."""
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


class AdmissionMiddleware:
    """429 at once for inference requests beyond the admission limit (app.serving.admission),
    before routing and before the body is read. Which requests count comes from the route
    table (app.web.policy.inference_routes); health, readiness, metrics and the page are
    never refused."""

    def __init__(self, app: ASGIApp, admission: Admission, routes: Sequence[APIRoute]) -> None:
        self.app = app
        self.admission = admission
        self.routes = routes

    def _refusal(self, path: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        _, content = error_content(path, 429, "overloaded", REFUSAL)
        body = json.dumps(content).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(self.admission.retry_after_s).encode()),
        ]
        return headers, body

    def _inference_route(self, scope: Scope) -> APIRoute | None:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._inference_route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        if not self.admission.try_enter():
            scope[ADMISSION_ENDPOINT] = route.path
            headers, body = self._refusal(scope["path"])
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.leave()


class BodyLimitMiddleware:
    """413 for bodies over `limit` bytes: at once by Content-Length, else while reading."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        # The parser has checked the header; one that does not parse is left to the streamed count.
        declared = contract.parse_number(length.decode("latin-1"), 1 << 62) if length is not None else None
        if declared is not None and declared > self.limit:
            await _send_413(send, self.limit, scope["path"])
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Connection: close, or uvicorn would go on reading (and discarding) the rest.
                    raise PayloadTooLarge(f"request body exceeds {self.limit} bytes", headers={"Connection": "close"})
            return message

        await self.app(scope, limited_receive, send)


async def _send_413(send: Send, limit: int, path: str) -> None:
    _, content = error_content(path, 413, "payload_too_large", f"request body exceeds {limit} bytes")
    body = json.dumps(content).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
