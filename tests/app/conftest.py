"""API test helpers: apps built by `create_app(test_settings)` with their lifespan run,
and httpx clients on them; a fake model folder for the fake runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from app.serving.runtimes import RuntimeLoader, load_runtime
from app.settings import Settings
from tests.app.fake_model import write_fake_model


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def make_settings(model_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"model_dir": model_dir, "max_batch_size": 8, "max_wait_ms": 2.0, "log_level": "warning"}
    return Settings(**{**base, **overrides})


@pytest.fixture(scope="session")
def fake_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder named cifar10 for the fake runtime (tests/app/fake_model.py)."""
    return write_fake_model(tmp_path_factory.mktemp("fake") / "cifar10")


@asynccontextmanager
async def serving(settings: Settings, runtime_loader: RuntimeLoader = load_runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, runtime_loader)
    # Generous: shutdown drains and frees every version (a full garbage collection each),
    # which took over the default 5 s with several versions on a loaded 2-core box.
    async with LifespanManager(app, startup_timeout=120, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
