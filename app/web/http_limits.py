"""HTTP/1.1 limits that uvicorn lacks: header size and count, and deadlines for slow
headers and slow bodies (slowloris). Without them a 50 MB header was answered 200 and
a request whose headers or body never finished held its connection forever.

It is uvicorn's httptools protocol with those checks added, so the parser, flow
control and the rest of uvicorn are unchanged. `python -m app` (cifar10-serve, the
container) runs it; with plain uvicorn pass `--http app.web.http_limits:LimitedHttpToolsProtocol`.
Refusals, and what the parser itself refuses (400), use the service's JSON error shape
and close the connection.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import error_body
from app.settings import Settings


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int  # request line plus headers
    max_headers: int  # header fields per request
    header_timeout_s: float  # from connection (or a request's first byte) to the end of its headers
    body_timeout_s: float  # from the end of the headers to the end of the body

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(settings.max_header_bytes, settings.max_headers, settings.header_timeout_s, settings.body_timeout_s)


@cache
def _limits_from_environment() -> HttpLimits:
    # Only for `uvicorn --http app.web.http_limits:LimitedHttpToolsProtocol`, which cannot pass
    # arguments: read once, when the first connection arrives.
    return HttpLimits.from_settings(Settings())


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header limits and head/body deadlines."""

    limits: ClassVar[HttpLimits | None] = None

    @classmethod
    def configured(cls, limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
        """A subclass bound to `limits`, to pass as uvicorn's `http=`."""
        return type(cls.__name__, (cls,), {"limits": limits})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits or _limits_from_environment()
        self._in_head = True
        self._head_seen = 0  # bytes received since the request began, while in its head
        self._head_size = 0  # bytes of request target and header fields parsed
        self._header_count = 0
        self._refusal: tuple[int, str, str] | None = None
        self._deadline: asyncio.TimerHandle | None = None

    # Deadlines
    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self.deadline_passed, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def deadline_passed(self, phase: str) -> None:
        """The headers or the body did not arrive in time: 408 if no response has
        started, and close; the app, if running, sees a disconnect."""
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if phase == "headers" or cycle is None or not cycle.response_started:
            limit = self._limits.header_timeout_s if phase == "headers" else self._limits.body_timeout_s
            self._write_error(408, "request_timeout", f"the request {phase} did not arrive within {limit:g} s")
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    # Protocol and parser callbacks
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout_s, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        if self._in_head:
            self._head_seen += len(data)
        super().data_received(data)
        if self._refusal is None and self._in_head and self._head_seen > self._limits.max_header_bytes:
            # The parser buffers a header until it ends: refuse as soon as the bytes
            # received exceed the limit, so memory stays within it plus one read.
            self._refuse(
                431, "headers_too_large", f"the request line and headers exceed {self._limits.max_header_bytes} bytes"
            )
        if self._refusal is not None:
            status, code, message = self._refusal
            self._write_error(status, code, message)
            self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        if self._refusal is None:
            self._refusal = (status, code, message)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True  # counters were reset when the previous head ended
        self._arm(self._limits.header_timeout_s, "headers")

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        self._header_count += 1
        if self._header_count > self._limits.max_headers:
            self._refuse(431, "too_many_headers", f"more than {self._limits.max_headers} header fields")
        elif self._head_size > self._limits.max_header_bytes:
            self._refuse(
                431, "headers_too_large", f"the request line and headers exceed {self._limits.max_header_bytes} bytes"
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_seen, self._head_size, self._header_count = False, 0, 0, 0
        if self._refusal is not None:
            return  # never start the app for a refused request
        self._arm(self._limits.body_timeout_s, "body")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refusal is not None:
            return
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """What the parser refuses (a malformed request line, an invalid header, bad
        chunked encoding): uvicorn answers it in plain text; here in the JSON shape."""
        self._disarm()
        self._write_error(
            400, "bad_request", "malformed HTTP request: the request line, a header or the chunked body does not parse"
        )
        self.transport.close()

    def _write_error(self, status: int, code: str, message: str) -> None:
        body = json.dumps(error_body(code, message)).encode()
        reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}.get(
            status, b""
        )
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason, len(body))
        )
        self.transport.write(head + body)
