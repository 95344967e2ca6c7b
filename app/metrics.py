"""Prometheus metrics, in a registry per app so that several apps (tests) coexist."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Protocol(StrEnum):
    """What a request spoke: the `protocol` label of the request metrics and the access log."""

    HTTP = "http"  # the service's own API (/predict, ...), health, metrics, the page
    TFSERVING_REST = "tfserving-rest"  # /v1/models/...
    TFSERVING_GRPC = "tfserving-grpc"  # tensorflow.serving.PredictionService and ModelService
    V2_REST = "v2-rest"  # the Open Inference Protocol: /v2/...


class Metrics:
    """The service's instruments; `batch_done` makes it a batcher observer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cifar10_requests",
            "requests by endpoint, status and protocol (gRPC: the method's path, POST, the status code's name)",
            ["endpoint", "method", "status", "protocol"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cifar10_request_latency_seconds",
            "request latency",
            ["endpoint", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "cifar10_batch_size", "images per model call", ["batcher"], buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.queue_wait = Histogram(
            "cifar10_queue_wait_seconds",
            "time an image waited for its batch to start",
            ["batcher"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_time = Histogram(
            "cifar10_model_seconds",
            "model time per batch",
            ["batcher"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "cifar10_queue_depth", "images waiting for a batch", ["batcher"], registry=self.registry
        )

        self.load_failures = Counter(
            "cifar10_model_load_failures",
            "model versions refused: corrupt, breaking the contract, or failing warm-up",
            ["model"],
            registry=self.registry,
        )
        self.model_versions = Gauge(
            "cifar10_model_versions",
            "versions of each model in each TF Serving state",
            ["model", "state"],
            registry=self.registry,
        )

    def request_done(self, endpoint: str, method: str, status: str, protocol: Protocol, seconds: float) -> None:
        """Count one request and its latency (every edge calls this)."""
        self.requests.labels(endpoint, method, status, protocol.value).inc()
        self.latency.labels(endpoint, protocol.value).observe(seconds)

    def observer(self, batcher: str) -> _BatchObserver:
        return _BatchObserver(self, batcher)

    def track_queue_depth(self, batcher: str, depth: Callable[[], int]) -> None:
        self.queue_depth.labels(batcher).set_function(depth)


class _BatchObserver:
    def __init__(self, metrics: Metrics, batcher: str) -> None:
        self._size = metrics.batch_size.labels(batcher)
        self._wait = metrics.queue_wait.labels(batcher)
        self._model = metrics.model_time.labels(batcher)

    def batch_done(self, size: int, queue_waits: Sequence[float], run_seconds: float) -> None:
        self._size.observe(size)
        for wait in queue_waits:
            self._wait.observe(wait)
        self._model.observe(run_seconds)
