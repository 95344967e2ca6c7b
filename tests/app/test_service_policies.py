"""Settings that change behaviour: auth, overload, deadlines, readiness, start-up."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from app.serving.classifier import ModelLoadError
from tests.app.conftest import make_settings, serving
from tests.app.fake_model import fake_loader, write_fake_model
from tests.helpers import assert_error, png_bytes

pytestmark = pytest.mark.anyio
IMAGE = png_bytes(np.zeros((32, 32, 3), dtype=np.uint8))


async def test_api_keys(fake_model) -> None:
    async with serving(make_settings(fake_model, api_keys="k1, k2"), fake_loader) as client:
        files = {"file": ("a.png", IMAGE, "image/png")}
        assert_error(await client.post("/predict", files=files), 401, "unauthorized")
        assert_error(
            await client.post("/predict", files=files, headers={"Authorization": "Bearer nope"}), 401, "unauthorized"
        )
        assert_error(await client.get("/metrics"), 401, "unauthorized")
        r = await client.post("/predict", files=files, headers={"Authorization": "Bearer k1"})
        assert r.status_code == 200
        r = await client.post("/predict", files=files, headers={"X-API-Key": "k2"})
        assert r.status_code == 200
        r = await client.get("/v1/models/cifar10", headers={"X-API-Key": "k2"})
        assert r.status_code == 200
        for path in ("/healthz", "/readyz"):
            assert (await client.get(path)).status_code == 200


async def test_queue_full_is_429_with_retry_after(fake_model) -> None:
    async with serving(make_settings(fake_model, max_queue=1, retry_after_s=7), fake_loader) as client:
        files = [("files", ("a.png", IMAGE, "image/png")), ("files", ("b.png", IMAGE, "image/png"))]
        r = await client.post("/predict", files=files)
        assert_error(r, 429, "overloaded")
        assert r.headers["retry-after"] == "7"
        ok = await client.post("/predict", files={"file": ("a.png", IMAGE, "image/png")})
        assert ok.status_code == 200


async def test_deadline_is_504(fake_model) -> None:
    async with serving(make_settings(fake_model, request_timeout_s=1e-6), fake_loader) as client:
        r = await client.post("/predict", files={"file": ("a.png", IMAGE, "image/png")})
        assert_error(r, 504, "timeout")


async def test_not_ready_before_startup(fake_model) -> None:
    app = create_app(make_settings(fake_model), fake_loader)  # lifespan not run: nothing loaded
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert_error(await client.get("/readyz"), 503, "not_ready")
        assert_error(await client.post("/predict", files={"file": ("a.png", IMAGE, "image/png")}), 503, "not_ready")


async def test_missing_model_dir_fails_startup(tmp_path) -> None:
    app = create_app(make_settings(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        async with LifespanManager(app):
            pass


async def test_corrupt_model_fails_startup(tmp_path) -> None:
    version = tmp_path / "broken" / "3"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"this is not a protobuf")
    app = create_app(make_settings(tmp_path / "broken"))
    with pytest.raises(ModelLoadError, match="cannot load the SavedModel"):
        async with LifespanManager(app):
            pass


async def test_highest_version_is_served(fake_model, tmp_path) -> None:
    root = tmp_path / "cifar10"  # the folder names the served model
    write_fake_model(root, version=2)
    write_fake_model(root, version=10)
    (root / "notes").mkdir()
    async with serving(make_settings(root), fake_loader) as client:
        r = await client.get("/v1/models/cifar10")
        assert r.status_code == 200
        assert r.json()["version"] == "10"
