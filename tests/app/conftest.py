"""API test helpers: apps built by `create_app(test_settings)` with their lifespan run,
and httpx clients on them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from app.settings import Settings


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def make_settings(model_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"model_dir": model_dir, "max_batch_size": 8, "max_wait_ms": 2.0, "log_level": "warning"}
    return Settings(**{**base, **overrides})


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=120) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
