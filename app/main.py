"""The app factory: `create_app(settings) -> FastAPI`. Run it with
`uvicorn --factory app.main:create_app`; settings then come from CIFAR10_* variables.

The lifespan owns the resources: it loads the model, warms it at every batch size
it will run, starts the batchers, and on shutdown drains them before stopping.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.batcher import Batcher
from app.classifier import Classifier, ModelLoadError
from app.deps import require_api_key
from app.errors import register_exception_handlers
from app.images import quiet_pillow
from app.metrics import Metrics
from app.middleware import AdmissionMiddleware, BodyLimitMiddleware, ObservabilityMiddleware
from app.routes import feature_maps, health, predict, tfserving
from app.settings import Settings
from app.state import Service

log = logging.getLogger("cifar10")
STATIC_DIR = Path(__file__).resolve().parent / "static"


def _configure_logging(level: str) -> None:
    # uvicorn configures only its own loggers; ours need a handler of their own.
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level.upper())


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    service: Service = app.state.service
    started = time.monotonic()
    try:
        classifier = await asyncio.to_thread(Classifier, settings.model_dir, settings.max_batch_size)
    except ModelLoadError as exc:
        log.error("cannot start: %s (set CIFAR10_MODEL_DIR to a versioned SavedModel folder)", exc)
        raise
    service.load_seconds["load"] = time.monotonic() - started
    # One thread runs every model call: TensorFlow parallelises inside an op, and two
    # concurrent calls would only fight over the same cores.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
    if settings.warmup:
        warm_started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(executor, classifier.warm)
        service.load_seconds["warmup"] = time.monotonic() - warm_started
    options: dict[str, Any] = {"max_batch_size": settings.max_batch_size, "max_wait_s": settings.max_wait_s, "max_queue": settings.max_queue}
    service.predict_batcher = Batcher(classifier.predict, executor, observer=service.metrics.observer("predict"), **options)
    service.feature_batcher = Batcher(classifier.feature_maps, executor, observer=service.metrics.observer("feature_maps"), **options)
    service.metrics.track_queue_depth("predict", lambda: service.predict_batcher.queue_depth if service.predict_batcher else 0)
    service.metrics.track_queue_depth("feature_maps", lambda: service.feature_batcher.queue_depth if service.feature_batcher else 0)
    # Loading TensorFlow leaves ~435k long-lived objects that every full garbage
    # collection would walk again (274 ms each on the idle 2-core box), stalling all
    # requests; frozen, the collector skips them and only sees objects made per request.
    gc.collect()
    gc.freeze()
    service.predict_batcher.start()
    service.feature_batcher.start()
    # Decoding and JSON parsing run here, never on the event loop (Pillow releases the
    # GIL while decoding); the pool's size bounds the memory of images decoded at once.
    decoder = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="decode", initializer=quiet_pillow)
    service.classifier, service.executor, service.decoder, service.ready = classifier, executor, decoder, True
    log.info("serving %s version %s from %s (load %.1fs, warm-up %.1fs, batch sizes %s)",
             classifier.name, classifier.version, classifier.path, service.load_seconds["load"],
             service.load_seconds.get("warmup", 0.0), classifier.buckets)
    try:
        yield
    finally:
        service.ready = False
        await asyncio.gather(service.predict_batcher.stop(), service.feature_batcher.stop())
        executor.shutdown(wait=True)
        decoder.shutdown(wait=True, cancel_futures=True)
        log.info("stopped after draining the queues")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Without `settings`, read them from the environment now."""
    settings = settings or Settings()
    _configure_logging(settings.log_level)
    app = FastAPI(
        title="CIFAR-10 classification service",
        version="0.1.0",
        description="Class probabilities and feature maps for CIFAR-10 images, with server-side dynamic batching.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.service = Service(metrics=Metrics())
    register_exception_handlers(app)
    # Without keys, no auth dependency at all: each one is solved on every request.
    auth = [Depends(require_api_key)] if settings.api_keys else []
    # The hot routes first: FastAPI matches routes in order, and matching is a
    # measurable share of a request's cost on the event loop.
    app.include_router(predict.router, dependencies=auth)
    app.include_router(feature_maps.router, dependencies=auth)
    app.include_router(tfserving.router, dependencies=auth)
    app.include_router(health.router)
    app.include_router(health.metrics_router, dependencies=auth)
    # The page needs no key to load: it asks for one and sends it with each API call.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    # Added last = outermost: ids and metrics cover even requests the limit rejects.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes)
    app.add_middleware(AdmissionMiddleware, limit=settings.max_concurrent_requests, retry_after_s=settings.retry_after_s)
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.service.metrics)
    return app
