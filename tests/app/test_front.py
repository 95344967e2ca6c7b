"""A front process's app (CIFAR10_MODEL_PROCESS_SOCKET set) against a model process
serving the fake runtime in the same event loop: same answers as one process, and the
batcher's errors mapped to the same HTTP statuses. (tests/e2e/test_multiprocess.py
runs the real processes on the shipped model.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.metrics import Metrics
from app.multiprocess.model_process import ModelProcess
from app.serving.host import start_model
from tests.app.conftest import make_settings, serving
from tests.app.fake_model import fake_loader
from tests.helpers import assert_error, png_bytes

pytestmark = pytest.mark.anyio
IMAGES = [png_bytes(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)) for i in range(3)]


@asynccontextmanager
async def front(
    model_dir: Path, tmp_path: Path, engine_settings: dict[str, Any] | None = None, **front_settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(model_dir, **(engine_settings or {}))
    model_process = ModelProcess(await start_model(settings, Metrics(), fake_loader), settings)
    await model_process.listen(tmp_path / "model.sock")
    try:
        async with serving(
            make_settings(model_dir, model_process_socket=tmp_path / "model.sock", **front_settings)
        ) as client:
            yield client
    finally:
        await model_process.stop(fronts_timeout_s=0)


def files() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(IMAGES)]


async def test_front_answers_as_one_process_does(fake_model: Path, tmp_path: Path) -> None:
    async with serving(make_settings(fake_model), fake_loader) as client:
        local = await client.post("/predict", files=files())
        local_maps = await client.post("/feature-maps", files={"file": ("a.png", IMAGES[0], "image/png")})
    async with front(fake_model, tmp_path) as client:
        assert (await client.get("/readyz")).status_code == 200
        remote = await client.post("/predict", files=files())
        remote_maps = await client.post("/feature-maps", files={"file": ("a.png", IMAGES[0], "image/png")})
        info = await client.get("/v1/models/cifar10")
    assert remote.status_code == 200 and local.status_code == 200
    assert [p["filename"] for p in remote.json()["predictions"]] == ["0.png", "1.png", "2.png"]
    for a, b in zip(local.json()["predictions"], remote.json()["predictions"], strict=True):
        np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-6)
    assert remote_maps.status_code == 200
    assert [layer["name"] for layer in remote_maps.json()["layers"]] == ["stem", "block1", "block2", "block3"]
    np.testing.assert_allclose(
        remote_maps.json()["layers"][1]["values"], local_maps.json()["layers"][1]["values"], atol=1e-6
    )
    assert info.status_code == 200 and info.json()["layers"][1] == {"name": "block1", "shape": [16, 16, 8]}


async def test_front_maps_the_model_process_errors(fake_model: Path, tmp_path: Path) -> None:
    async with front(fake_model, tmp_path, {"max_queue": 2}, retry_after_s=3) as client:
        r = await client.post("/predict", files=files())  # 3 images, room for 2
        assert_error(r, 429, "overloaded")
        assert r.headers["retry-after"] == "3"
    async with front(fake_model, tmp_path) as client:
        async with serving(
            make_settings(fake_model, model_process_socket=tmp_path / "model.sock", request_timeout_s=1e-6)
        ) as hasty:
            assert_error(await hasty.post("/predict", files=files()), 504, "timeout")
        assert (await client.post("/predict", files=files())).status_code == 200


async def test_front_without_model_process_fails_startup(fake_model: Path, tmp_path: Path) -> None:
    with pytest.raises(OSError):
        async with serving(make_settings(fake_model, model_process_socket=tmp_path / "nothing.sock")):
            pass


async def test_front_explains_through_the_model_process(fake_model: Path, tmp_path: Path) -> None:
    upload = {"file": ("a.png", IMAGES[0], "image/png")}
    async with serving(make_settings(fake_model), fake_loader) as client:
        local = await client.post("/explain", files=upload, params={"class": "cat"})
    async with front(fake_model, tmp_path) as client:
        remote = await client.post("/explain", files=upload, params={"class": "cat"})
    assert local.status_code == 200 and remote.status_code == 200, remote.text
    assert remote.json()["target"]["class_id"] == 3
    for a, b in zip(local.json()["maps"], remote.json()["maps"], strict=True):
        assert a["name"] == b["name"]
        np.testing.assert_allclose(a["values"], b["values"], atol=1e-4)
