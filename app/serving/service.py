"""What the app factory and the lifespan create and every edge uses (HTTP routes and
the gRPC servicers alike), held on `app.state.service`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from app.metrics import Metrics
from app.serving.admission import Admission
from app.serving.registry import Registry


@dataclass
class Service:
    metrics: Metrics
    admission: Admission  # inference requests in progress, whatever protocol they came by
    registry: Registry | None = None  # the served models and their versions
    decoder: ThreadPoolExecutor | None = None  # image decoding and JSON parsing, off the event loop
    ready: bool = False
    grpc_port: int | None = None  # the port the gRPC server is bound to, once started (app.rpc)
