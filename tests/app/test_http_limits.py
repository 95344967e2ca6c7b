"""The HTTP protocol's limits (app/web/http_limits.py), driven byte by byte through uvicorn's
protocol with a fake transport; deadlines are fired by hand, never waited for."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from app.web.http_limits import HttpLimits, LimitedHttpToolsProtocol

pytestmark = pytest.mark.anyio
LIMITS = HttpLimits(max_header_bytes=2048, max_headers=20, header_timeout_s=5, body_timeout_s=5)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def connect() -> tuple[LimitedHttpToolsProtocol, FakeTransport]:
    config = Config(app=ok_app, lifespan="off", log_level="critical")
    config.load()
    protocol = LimitedHttpToolsProtocol.configured(LIMITS)(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


def error_of(transport: FakeTransport) -> tuple[int, str]:
    head, _, body = transport.written.partition(b"\r\n\r\n")
    assert b"connection: close" in head
    return int(head.split()[1]), json.loads(body)["error"]["code"]


async def test_a_normal_request_passes() -> None:
    protocol, transport = connect()
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0)  # let the app task run
    await asyncio.sleep(0)
    assert transport.written.startswith(b"HTTP/1.1 200")
    protocol.connection_lost(None)


async def test_header_bytes_over_the_limit_get_431() -> None:
    protocol, transport = connect()
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1000)
    assert not transport.written  # still within the limit
    protocol.data_received(b"a" * 2000)  # the header never ends, but the bytes passed the limit
    assert error_of(transport) == (431, "headers_too_large")
    assert transport.closed
    protocol.connection_lost(None)


async def test_too_many_header_fields_get_431() -> None:
    protocol, transport = connect()
    protocol.data_received(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(30)) + b"\r\n")
    assert error_of(transport) == (431, "too_many_headers")
    assert protocol.cycle is None  # the app never started
    protocol.connection_lost(None)


async def test_headers_that_never_finish_get_408() -> None:
    protocol, transport = connect()
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert protocol._deadline is not None
    protocol.deadline_passed("headers")  # what the armed timer does after header_timeout_s
    assert error_of(transport) == (408, "request_timeout")
    assert transport.closed
    protocol.connection_lost(None)


async def test_a_body_that_never_finishes_gets_408_and_the_app_sees_a_disconnect() -> None:
    protocol, transport = connect()
    protocol.data_received(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    await asyncio.sleep(0)
    cycle = protocol.cycle
    assert cycle is not None and not cycle.response_started
    protocol.deadline_passed("body")
    assert error_of(transport) == (408, "request_timeout")
    assert cycle.disconnected
    protocol.connection_lost(None)


async def test_a_connection_that_sends_nothing_is_closed() -> None:
    protocol, transport = connect()
    assert protocol._deadline is not None  # armed on connect, before any byte
    protocol.deadline_passed("headers")
    assert transport.closed
    protocol.connection_lost(None)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", id="malformed-request-line"),
        pytest.param(b"GARBAGE\r\n\r\n", id="not-http"),
        pytest.param(b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", id="space-in-a-header-name"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n", id="nul-in-a-header-value"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
            id="bad-chunk-size",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", id="two-lengths"
        ),
    ],
)
async def test_what_the_parser_refuses_is_a_json_400(request_bytes: bytes) -> None:
    """Issue 27: uvicorn answered these in plain text ('Invalid HTTP request received.')."""
    protocol, transport = connect()
    protocol.data_received(request_bytes)
    assert transport.written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"content-type: application/json" in transport.written
    assert error_of(transport) == (400, "bad_request")
    assert transport.closed
    protocol.connection_lost(None)
