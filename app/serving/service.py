"""What the app factory and the lifespan create and every edge uses (HTTP routes and
the gRPC servicers alike), held on `app.state.service`."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from app.metrics import Metrics
from app.serving.admission import Admission
from app.serving.registry import Registry

# Runs one decode-pool job with the request's deadline (time.monotonic()), so a decode
# in it stops at its next read once the request has had its 504: app.imaging.budget's
# run_until, which the app factory passes in (the serving core imports no imaging).
DecodeGuard = Callable[[float, Callable[[], Any]], Any]


@dataclass
class Service:
    metrics: Metrics
    admission: Admission  # inference requests in progress, whatever protocol they came by
    decode_guard: DecodeGuard | None = None  # every edge's decode-pool jobs run under it
    registry: Registry | None = None  # the served models and their versions
    decoder: ThreadPoolExecutor | None = None  # image decoding and JSON parsing, off the event loop
    ready: bool = False
    grpc_port: int | None = None  # the port the gRPC server is bound to, once started (app.rpc)
