"""The app factory: `create_app(settings) -> FastAPI`. Run it with
`uvicorn --factory app.main:create_app`; settings then come from CIFAR10_* variables.

The lifespan owns the resources: it loads the model, warms it at every batch size
it will run, starts the batchers, and on shutdown drains them before stopping. In a
front process of the multi-process design (CIFAR10_ENGINE_SOCKET set, see
app.supervisor) it connects to the model process instead, and loads no framework.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.deps import require_api_key
from app.errors import register_exception_handlers
from app.images import quiet_pillow
from app.metrics import Metrics
from app.middleware import AdmissionMiddleware, BodyLimitMiddleware, ObservabilityMiddleware
from app.model_host import start_model
from app.remote import EngineClient, RemoteBatcher, RemoteExplainBatcher, split_features, split_probabilities
from app.routes import explain, feature_maps, health, predict, tfserving
from app.routes.api_docs import add_api_docs
from app.runtimes import RuntimeLoader, load_runtime
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
    stop: Callable[[], Awaitable[None]]
    if settings.engine_socket is not None:
        # A front process: the model and its batch queue live in the model process.
        client = await EngineClient.connect(settings.engine_socket)
        service.model = client.model
        service.predict_batcher = RemoteBatcher(client, "predict", split_probabilities)
        service.feature_batcher = RemoteBatcher(client, "features", split_features)
        service.explain_batcher = RemoteExplainBatcher(client)
        service.metrics.track_queue_depth("predict", lambda: client.in_flight)
        stop = client.close
    else:
        host = await start_model(settings, service.metrics, app.state.runtime_loader)
        service.model, service.load_seconds = host.classifier.info, host.load_seconds
        service.predict_batcher, service.feature_batcher = host.predict_batcher, host.feature_batcher
        service.explain_batcher = host.explain_batcher
        stop = host.stop
    # Decoding and JSON parsing run here, never on the event loop (Pillow releases the
    # GIL while decoding); the pool's size bounds the memory of images decoded at once.
    decoder = ThreadPoolExecutor(
        max_workers=settings.decode_threads, thread_name_prefix="decode", initializer=quiet_pillow
    )
    service.decoder = decoder
    service.ready = True
    try:
        yield
    finally:
        service.ready = False
        await stop()
        decoder.shutdown(wait=True, cancel_futures=True)
        log.info("stopped after draining the queues")


def create_app(settings: Settings | None = None, runtime_loader: RuntimeLoader = load_runtime) -> FastAPI:
    """Build the app. Without `settings`, read them from the environment now.
    `runtime_loader`: how the model is loaded; tests pass a fake (tests/app/fake_model.py)."""
    settings = settings or Settings()
    _configure_logging(settings.log_level)
    app = FastAPI(
        title="CIFAR-10 classification service",
        version="0.1.0",
        description="Class probabilities and feature maps for CIFAR-10 images, with server-side dynamic batching.",
        lifespan=_lifespan,
        docs_url=None,  # /docs and /redoc come from local assets (app/routes/api_docs.py)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runtime_loader = runtime_loader
    app.state.service = Service(metrics=Metrics())
    register_exception_handlers(app)
    # Without keys, no auth dependency at all: each one is solved on every request.
    auth = [Depends(require_api_key)] if settings.api_keys else []
    # The hot routes first: FastAPI matches routes in order, and matching is a
    # measurable share of a request's cost on the event loop.
    app.include_router(predict.router, dependencies=auth)
    app.include_router(feature_maps.router, dependencies=auth)
    app.include_router(explain.router, dependencies=auth)
    app.include_router(tfserving.router, dependencies=auth)
    app.include_router(health.router)
    app.include_router(health.metrics_router, dependencies=auth)
    add_api_docs(app)
    # The page needs no key to load: it asks for one and sends it with each API call.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    # Added last = outermost: ids and metrics cover even requests the limit rejects.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes)
    app.add_middleware(
        AdmissionMiddleware, limit=settings.max_concurrent_requests, retry_after_s=settings.retry_after_s
    )
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.service.metrics)
    return app
