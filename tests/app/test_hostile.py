"""Hostile and careless requests (issue 13): bodies that used to escape as 500s, work
that used to run on the event loop, and clients that go away."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import generate_latest

from app.main import create_app
from app.serving.admission import REFUSAL
from app.web import uploads
from app.web.middleware import AdmissionMiddleware
from tests.app.conftest import make_settings, serving
from tests.app.fake_model import fake_loader
from tests.helpers import assert_error, png_bytes

pytestmark = pytest.mark.anyio
IMAGE = png_bytes(np.zeros((32, 32, 3), dtype=np.uint8))
BOUNDARY = "hostile"


def multipart(data: bytes = IMAGE) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def scope(path: str = "/predict") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "headers": [(b"host", b"test"), (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())],
    }


async def call(
    app: Any, messages: list[dict[str, Any]], after: Callable[[], Awaitable[None]] | None = None
) -> list[dict[str, Any]]:
    """Run one request through the ASGI app: `messages` are what receive() returns,
    then it awaits `after` (if any) and reports a disconnect."""
    queue = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if after is not None:
            await after()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(), receive, send)
    return sent


DEEP = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
HUGE_INT = b'{"instances": [' + b"9" * 5000 + b"]}"
OVER_FLOAT_INT = json.dumps({"instances": [[[[10**400, 0, 0]] * 32] * 32]}).encode()
OVER_FLOAT = json.dumps({"instances": [[[[0, 0, 0]] * 32] * 32]}).replace("[0, 0, 0]", "[1e400, 0, 0]", 1).encode()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(DEEP, 400, "invalid_json", id="deep-nesting"),
        pytest.param(HUGE_INT, 400, "invalid_json", id="5000-digit-integer"),
        pytest.param(OVER_FLOAT_INT, 422, "invalid_request", id="integer-beyond-float"),
        pytest.param(OVER_FLOAT, 422, "invalid_request", id="float-beyond-range"),
        pytest.param(b"[" * 300_000, 413, "payload_too_large", id="too-many-values"),
        pytest.param(
            b'{"instances": [1], "signature_name": {"a": 1}}', 422, "invalid_request", id="signature-not-a-string"
        ),
    ],
)
async def test_tf_serving_hostile_json_is_a_4xx(fake_model, body: bytes, status: int, code: str) -> None:
    async with serving(make_settings(fake_model), fake_loader) as client:
        r = await client.post("/v1/models/cifar10:predict", content=body, headers={"content-type": "application/json"})
        assert_error(r, status, code)


async def test_images_decode_in_the_pool_not_on_the_event_loop(fake_model, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    real = uploads.decode_image

    def recording(*args: Any) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(uploads, "decode_image", recording)
    async with serving(make_settings(fake_model), fake_loader) as client:
        r = await client.post(
            "/predict", files=[("files", ("a.png", IMAGE, "image/png")), ("files", ("b.png", IMAGE, "image/png"))]
        )
        assert r.status_code == 200
    assert len(threads) == 2
    assert all(name.startswith("decode") for name in threads), threads


async def test_decoding_counts_against_the_request_deadline(fake_model, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def stuck(*args: Any) -> np.ndarray:
        release.wait(10)  # a decode that outlasts the deadline (bounded, so a regression cannot hang)
        return np.zeros((32, 32, 3), dtype=np.uint8)

    monkeypatch.setattr(uploads, "decode_image", stuck)
    async with serving(make_settings(fake_model, request_timeout_s=0.5), fake_loader) as client:
        try:
            r = await client.post("/predict", files={"file": ("a.png", IMAGE, "image/png")})
        finally:
            release.set()
        assert_error(r, 504, "timeout")
        # The event loop stayed free: other requests were answered meanwhile.
        assert (await client.get("/healthz")).status_code == 200


async def test_disconnect_mid_body_is_not_a_500(fake_model) -> None:
    app = create_app(make_settings(fake_model), fake_loader)
    async with LifespanManager(app, startup_timeout=120) as manager:
        body = multipart()
        sent = await call(manager.app, [{"type": "http.request", "body": body[:100], "more_body": True}])
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 499
    assert json.loads(sent[1]["body"])["error"]["code"] == "client_closed_request"


def _predicted_images(metrics_text: str) -> float:
    line = next(x for x in metrics_text.splitlines() if x.startswith('cifar10_batch_size_sum{batcher="predict"}'))
    return float(line.split()[-1])


async def test_items_of_disconnected_clients_never_reach_the_model(fake_model) -> None:
    # A 200 ms batch window: the disconnect lands while the item waits for its batch.
    app = create_app(make_settings(fake_model, max_wait_ms=200, max_batch_size=64), fake_loader)
    async with LifespanManager(app, startup_timeout=120) as manager:
        gone = await call(manager.app, [{"type": "http.request", "body": multipart(), "more_body": False}])
        assert gone[0]["status"] == 499
        # A client that stays (it never disconnects): its image runs, in the same batch
        # window that would also have run the first image had it not been dropped.
        stays = await call(
            manager.app, [{"type": "http.request", "body": multipart(), "more_body": False}], after=asyncio.Event().wait
        )
        assert stays[0]["status"] == 200
        text = generate_latest(app.state.service.metrics.registry).decode()
    assert _predicted_images(text) == 1.0


async def test_access_log_escapes_the_path() -> None:
    import logging

    from app.metrics import Metrics
    from app.web.middleware import ObservabilityMiddleware

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("cifar10.access")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        # What uvicorn puts in the scope for GET /x%0D%0A1.2.3.4%20%22GET%20/admin%22%20200
        path = '/x\r\n1.2.3.4 "GET /admin" 200'
        request = {**scope(path), "method": "GET"}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            pass

        await ObservabilityMiddleware(ok, Metrics())(request, receive, send)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    (record,) = records
    line = record.getMessage()
    assert "\r" not in line and "\n" not in line
    assert '/x\\r\\n1.2.3.4 \\"GET /admin\\" 200' in line


def _inference_paths() -> list[str]:
    """Every inference route of the app's route table, its path filled in."""
    app = create_app(make_settings(Path("unused")))
    (admission,) = [m for m in app.user_middleware if m.cls is AdmissionMiddleware]
    fill = {"{model_name}": "cifar10", "{version}": "1", "{label}": "stable"}
    paths = []
    for route in admission.kwargs["routes"]:
        path = route.path
        for name, value in fill.items():
            path = path.replace(name, value)
        paths.append(path)
    return paths


def test_every_inference_route_is_admission_controlled() -> None:
    # Issue 25: /explain and :classify were missing from a hand-written list.
    paths = set(_inference_paths())
    assert {"/predict", "/feature-maps", "/explain"} <= paths
    for target in ("", "/versions/1", "/labels/stable"):
        assert {f"/v1/models/cifar10{target}:predict", f"/v1/models/cifar10{target}:classify"} <= paths


async def test_requests_beyond_capacity_get_429_at_once(fake_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One request holds the only slot (its decode is held); every inference route then
    answers 429 at once, health never; afterwards the slot is free again."""
    started, release = threading.Event(), threading.Event()
    real = uploads.decode_image

    def held(*args: Any) -> np.ndarray:
        started.set()
        release.wait(10)
        return real(*args)

    monkeypatch.setattr(uploads, "decode_image", held)
    settings = make_settings(fake_model, max_concurrent_requests=1, retry_after_s=3)
    async with serving(settings, fake_loader) as client:
        first = asyncio.ensure_future(client.post("/predict", files={"file": ("a.png", IMAGE, "image/png")}))
        try:
            assert await asyncio.to_thread(started.wait, 10)
            for path in _inference_paths():
                r = await client.post(path, files={"file": ("b.png", IMAGE, "image/png")})
                if path.startswith("/v2/"):  # the Open Inference Protocol's own error shape
                    assert r.status_code == 429 and r.json() == {"error": REFUSAL}
                else:
                    assert_error(r, 429, "overloaded")
                assert r.headers["retry-after"] == "3"
            assert (await client.get("/healthz")).status_code == 200  # never refused
            assert (await client.get("/v1/models/cifar10")).status_code == 200  # status is not inference
        finally:
            release.set()
        assert (await first).status_code == 200
        r = await client.post("/explain", files={"file": ("c.png", IMAGE, "image/png")})
        assert r.status_code == 200  # the slot was given back


async def test_streamed_body_over_the_limit_closes_the_connection(fake_model) -> None:
    # Without Connection: close, uvicorn kept reading (and discarding) the rest of the body.
    app = create_app(make_settings(fake_model, max_upload_bytes=4096), fake_loader)
    async with LifespanManager(app, startup_timeout=120) as manager:
        head = multipart(b"")[: -len(f"\r\n--{BOUNDARY}--\r\n")]
        chunks = [{"type": "http.request", "body": head, "more_body": True}]
        chunks += [{"type": "http.request", "body": b"\0" * 2048, "more_body": True} for _ in range(4)]
        sent = await call(manager.app, chunks)
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]


@pytest.mark.parametrize("path", ["/v1/models/", "/v1/models/cifar10/", "/predict/", "/healthz/"])
async def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_host_header(fake_model: Path, path: str) -> None:
    """Issue 27: Starlette redirected `/v1/models/` to a Location built from the
    request's Host header, so any client could make the service point elsewhere."""
    async with serving(make_settings(fake_model), fake_loader) as client:
        r = await client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert_error(r, 404, "not_found")
        assert "location" not in r.headers
