"""The multi-process design's model process and its clients, in one event loop: a real
ModelProcess on a Unix socket with fake predict functions gated by events, and
ModelProcessClients as the front processes use them. The batcher's guarantees must hold
across the socket."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from app.multiprocess.front import FrontHost, ModelProcessClient
from app.multiprocess.model_process import ModelProcess
from app.multiprocess.wire import ModelProcessFailed
from app.serving.batcher import Batcher, BatcherClosed, QueueFull
from app.serving.host import ModelHost
from app.serving.model_info import LayerInfo, ModelInfo
from app.serving.operations import Operation
from app.settings import Settings

pytestmark = pytest.mark.anyio
INFO = ModelInfo(
    "fake",
    "3",
    [f"c{i}" for i in range(10)],
    [LayerInfo("stem", (2, 2, 1))],
    {"architecture": "fake"},
    {Operation.EXPLAIN: "no explain here"},
)
PREDICT, FEATURE_MAPS = Operation.PREDICT, Operation.FEATURE_MAPS


class FakeModel:
    """Probabilities whose first entry is the image's first pixel: each result names its
    image. Records batches; when gated, blocks in the inference thread until released."""

    def __init__(self, gated: bool = False, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = fail
        if not gated:
            self.release.set()

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        self.batches.append([int(x[0, 0, 0]) for x in images])
        self.entered.set()
        self.release.wait(timeout=10)
        if self.fail:
            raise ValueError("broken batch")
        return [np.full(10, float(x[0, 0, 0]), dtype=np.float32) for x in images]

    def feature_maps(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [
            {"stem": np.full((2, 2, 1), float(x[0, 0, 0]), np.float32), "probabilities": p}
            for x, p in zip(images, self.predict(images), strict=True)
        ]


def image(value: int) -> np.ndarray:
    return np.full((32, 32, 3), value, dtype=np.uint8)


@asynccontextmanager
async def engine_on(
    tmp_path: Path, model: FakeModel, max_batch_size: int = 8, max_queue: int = 64
) -> AsyncIterator[tuple[ModelProcess, Path]]:
    executor = ThreadPoolExecutor(max_workers=1)
    options: dict[str, Any] = {"max_batch_size": max_batch_size, "max_wait_s": 0.02, "max_queue": max_queue}
    batchers: dict[Operation, Batcher[Any, Any]] = {
        PREDICT: Batcher(model.predict, executor, **options),
        FEATURE_MAPS: Batcher(model.feature_maps, executor, **options),
    }
    host = ModelHost(SimpleNamespace(info=INFO), executor, batchers)  # type: ignore[arg-type]
    for batcher in batchers.values():
        batcher.start()
    engine = ModelProcess(host, Settings(model_dir=tmp_path))
    path = tmp_path / "model.sock"
    await engine.listen(path)
    try:
        yield engine, path
    finally:
        model.release.set()
        await engine.stop(fronts_timeout_s=0)


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_results_come_back_in_order_with_the_model_info(tmp_path: Path) -> None:
    async with engine_on(tmp_path, FakeModel()) as (_, path):
        client = await ModelProcessClient.connect(path)
        assert client.model == INFO
        front = FrontHost.of(client)
        results = await front.batchers[PREDICT].submit([image(3), image(1), image(2)])
        assert [float(r[0]) for r in results] == [3.0, 1.0, 2.0]
        features = await front.batchers[FEATURE_MAPS].submit([image(5)])
        assert features[0]["stem"].shape == (2, 2, 1) and float(features[0]["stem"][0, 0, 0]) == 5.0
        await client.close()


async def test_batches_form_across_front_processes(tmp_path: Path) -> None:
    model = FakeModel(gated=True)
    async with engine_on(tmp_path, model) as (_, path):
        fronts = [await ModelProcessClient.connect(path) for _ in range(3)]
        first = asyncio.create_task(fronts[0].submit(PREDICT, [image(0)]))
        await asyncio.to_thread(model.entered.wait, 5)  # batch [0] runs; the next ones queue up
        rest = [asyncio.create_task(f.submit(PREDICT, [image(i + 1)])) for i, f in enumerate(fronts)]
        await until(lambda: all(f.in_flight[PREDICT] for f in fronts) and len(model.batches) == 1)
        await asyncio.sleep(0.05)
        model.release.set()
        await asyncio.gather(first, *rest)
        assert model.batches[0] == [0]
        assert sorted(model.batches[1]) == [1, 2, 3]  # one batch from three fronts
        for f in fronts:
            await f.close()


async def test_full_queue_is_queue_full_and_failed_batch_is_model_process_failed(tmp_path: Path) -> None:
    async with engine_on(tmp_path, FakeModel(), max_queue=2) as (_, path):
        client = await ModelProcessClient.connect(path)
        with pytest.raises(QueueFull):
            await client.submit(PREDICT, [image(1), image(2), image(3)])
        assert len(await client.submit(PREDICT, [image(1), image(2)])) == 2
        await client.close()
    async with engine_on(tmp_path, FakeModel(fail=True)) as (_, path):
        client = await ModelProcessClient.connect(path)
        with pytest.raises(ModelProcessFailed):
            await client.submit(PREDICT, [image(1)])
        await client.close()


async def test_cancelled_request_items_are_dropped_in_the_model_process(tmp_path: Path) -> None:
    model = FakeModel(gated=True)
    async with engine_on(tmp_path, model) as (_, path):
        client = await ModelProcessClient.connect(path)
        first = asyncio.create_task(client.submit(PREDICT, [image(1)]))
        await asyncio.to_thread(model.entered.wait, 5)
        leaving = asyncio.create_task(client.submit(PREDICT, [image(2), image(3)]))
        await until(lambda: client.in_flight[PREDICT] == 2)
        with pytest.raises(TimeoutError):  # the handler's deadline: 504, and a cancel goes out
            await asyncio.wait_for(leaving, 0.05)
        staying = asyncio.create_task(client.submit(PREDICT, [image(4)]))
        await asyncio.sleep(0.1)  # the cancel reaches the model process before the batch starts
        model.release.set()
        await asyncio.gather(first, staying)
        assert model.batches == [[1], [4]]
        await client.close()


async def test_a_departed_front_has_its_items_dropped(tmp_path: Path) -> None:
    model = FakeModel(gated=True)
    async with engine_on(tmp_path, model) as (_, path):
        stays, leaves = await ModelProcessClient.connect(path), await ModelProcessClient.connect(path)
        first = asyncio.create_task(stays.submit(PREDICT, [image(1)]))
        await asyncio.to_thread(model.entered.wait, 5)
        orphan = asyncio.create_task(leaves.submit(PREDICT, [image(2)]))
        await until(lambda: leaves.in_flight[PREDICT] == 1)
        await asyncio.sleep(0.05)
        leaves._writer.close()  # the front process died: its connection closes
        with pytest.raises(BatcherClosed):
            await orphan
        later = asyncio.create_task(stays.submit(PREDICT, [image(3)]))
        await asyncio.sleep(0.1)
        model.release.set()
        await asyncio.gather(first, later)
        assert model.batches == [[1], [3]]
        await stays.close()


async def test_draining_finishes_accepted_work_then_refuses(tmp_path: Path) -> None:
    model = FakeModel(gated=True)
    async with engine_on(tmp_path, model) as (engine, path):
        client = await ModelProcessClient.connect(path)
        accepted = asyncio.create_task(client.submit(PREDICT, [image(7)]))
        await asyncio.to_thread(model.entered.wait, 5)
        stopping = asyncio.create_task(engine.stop(fronts_timeout_s=0))
        await until(lambda: not engine.host.batchers[PREDICT].running)
        with pytest.raises(BatcherClosed):  # 503 while draining
            await client.submit(PREDICT, [image(8)])
        model.release.set()
        assert float((await accepted)[0][0]) == 7.0  # accepted work completes
        await stopping
        with pytest.raises(BatcherClosed):  # the model process went away
            await client.submit(PREDICT, [image(9)])
        await client.close()
