"""What the lifespan creates and the handlers use, held on `app.state.service`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from app.metrics import Metrics
from app.registry import Registry


@dataclass
class Service:
    metrics: Metrics
    registry: Registry | None = None  # the served models and their versions
    decoder: ThreadPoolExecutor | None = None  # image decoding and JSON parsing, off the event loop
    ready: bool = False
