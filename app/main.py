"""The app factory: `create_app(settings) -> FastAPI`. Run it with
`uvicorn --factory app.main:create_app`; settings then come from CIFAR10_* variables.

The lifespan owns the resources: it loads every served model's versions
(app.serving.registry: each warmed at every batch size it will run, with batchers of its
own), starts the poll that swaps versions in and out (app.serving.poller), and on
shutdown drains them all before stopping. In a front process of the multi-process design
(CIFAR10_MODEL_PROCESS_SOCKET set, see app.multiprocess.supervisor) it connects to the
model process instead, and loads no framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.imaging.budget import run_until
from app.imaging.decode import quiet_pillow
from app.metrics import Metrics
from app.multiprocess.front import FrontHost, ModelProcessClient
from app.multiprocess.lifeline import exit_with_supervisor
from app.serving.admission import Admission
from app.serving.host import Host, start_model
from app.serving.model_config import ModelConfigError, ModelSpec, model_specs
from app.serving.operations import Operation
from app.serving.poller import Poller
from app.serving.registry import HostLoader, Registry
from app.serving.runtimes import ModelLoadError, RuntimeLoader, load_runtime
from app.serving.service import Service
from app.settings import Settings
from app.web.dependencies import INFERENCE_DEPENDENCIES, require_api_key
from app.web.error_handlers import register_exception_handlers
from app.web.middleware import AdmissionMiddleware, BodyLimitMiddleware, ObservabilityMiddleware
from app.web.policy import inference_routes
from app.web.routes import explain, feature_maps, health, models, predict, tfserving, v2
from app.web.routes.api_docs import add_api_docs
from model.contract import ModelDirError

if TYPE_CHECKING:
    from app.rpc.server import GrpcServer

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


def _version_loader(settings: Settings, metrics: Metrics, runtime_loader: RuntimeLoader) -> HostLoader:
    async def load(spec: ModelSpec, path: Path) -> Host:
        if not (path / "saved_model.pb").is_file():
            raise ModelLoadError(f"{path} has no saved_model.pb")
        return await start_model(settings, metrics, runtime_loader, model_dir=path, name=spec.name)

    return load


async def _start_registry(settings: Settings, service: Service, runtime_loader: RuntimeLoader) -> Poller:
    """Load every model's versions (per its policy), and refuse to start if a model has none."""
    try:
        specs = model_specs(settings)
    except ModelConfigError as exc:
        raise ModelLoadError(str(exc)) from exc
    registry = Registry(specs, _version_loader(settings, service.metrics, runtime_loader), service.metrics)
    service.registry = registry
    poller = Poller(registry)
    try:
        await poller.scan(initial=True)
    except ModelDirError as exc:
        raise ModelLoadError(str(exc)) from exc
    for model in registry.models.values():
        if not model.available():
            errors = "; ".join(f"{v.number}: {v.error}" for v in model.versions.values() if v.error)
            await registry.stop()
            raise ModelLoadError(
                f"model {model.name!r} has no version to serve in {model.spec.base_path}"
                + (f" ({errors})" if errors else " (no numeric version folder)")
            )
    return poller


async def _start_grpc(settings: Settings, service: Service) -> GrpcServer:
    """TF Serving's gRPC API on CIFAR10_GRPC_PORT, in this event loop (app.rpc). Imported
    only here: its stubs import TensorFlow's protos, which load TensorFlow."""
    if settings.model_process_socket is not None:
        raise RuntimeError("gRPC is served in one process only (cifar10-serve --workers 1); unset CIFAR10_GRPC_PORT")
    try:
        from app.rpc.server import GrpcServer
    except ImportError as exc:
        raise RuntimeError(
            f"CIFAR10_GRPC_PORT is set, but TF Serving's gRPC stubs cannot be imported ({exc}); "
            "the gpu-jax image has no TensorFlow for them: unset CIFAR10_GRPC_PORT"
        ) from exc
    grpc_server = await GrpcServer.start(service, settings)
    service.grpc_port = grpc_server.port
    return grpc_server


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    service: Service = app.state.service
    polling: asyncio.Task[None] | None = None
    if settings.model_process_socket is not None:
        # A front process: the model and its batch queues live in the model process.
        exit_with_supervisor(settings.supervisor_pid)
        client = await ModelProcessClient.connect(settings.model_process_socket)
        registry = Registry.single(FrontHost.of(client), service.metrics)
        service.registry = registry
    else:
        poller = await _start_registry(settings, service, app.state.runtime_loader)
        registry = poller.registry
        if settings.model_poll_s > 0:
            polling = asyncio.create_task(poller.run(settings.model_poll_s), name="model-poll")
    for operation in Operation:
        service.metrics.track_queue_depth(operation, partial(registry.queue_depth, operation))
    # Decoding and JSON parsing run here, never on the event loop (Pillow releases the
    # GIL while decoding); the pool's size bounds the memory of images decoded at once.
    decoder = ThreadPoolExecutor(
        max_workers=settings.decode_threads, thread_name_prefix="decode", initializer=quiet_pillow
    )
    service.decoder = decoder
    service.ready = True
    grpc_server = await _start_grpc(settings, service) if settings.grpc_port is not None else None
    try:
        yield
    finally:
        service.ready = False
        if grpc_server is not None:
            await grpc_server.stop(settings.request_timeout_s)  # its calls finish on the running batchers
        if polling is not None:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
        await registry.stop()
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
        docs_url=None,  # /docs and /redoc come from local assets (app/web/routes/api_docs.py)
        redoc_url=None,
        # Starlette would answer `/v1/models/` with a redirect whose Location it builds
        # from the request's Host header (reflected to any client); a 404 says it plainly.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.runtime_loader = runtime_loader
    app.state.service = Service(
        Metrics(), Admission(settings.max_concurrent_requests, settings.retry_after_s), decode_guard=run_until
    )
    register_exception_handlers(app)
    # Without keys, no auth dependency at all: each one is solved on every request.
    auth = [Depends(require_api_key)] if settings.api_keys else []
    # The hot routes first: FastAPI matches routes in order, and matching is a
    # measurable share of a request's cost on the event loop.
    keyed = [predict.router, feature_maps.router, explain.router, tfserving.router, v2.router, models.router]
    for router in [*keyed, health.metrics_router]:
        app.include_router(router, dependencies=auth)
    app.include_router(health.router)
    app.include_router(v2.health_router)
    add_api_docs(app)
    # The page needs no key to load: it asks for one and sends it with each API call.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    # Added last = outermost: ids and metrics cover even requests the limit rejects.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes)
    app.add_middleware(
        AdmissionMiddleware,
        admission=app.state.service.admission,
        # The routers' own routes: FastAPI includes routers lazily, and matches (and sets
        # scope["route"] to) these originals; none of them is mounted under a prefix.
        routes=inference_routes((r for router in keyed for r in router.routes), INFERENCE_DEPENDENCIES),
    )
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.service.metrics)
    return app
