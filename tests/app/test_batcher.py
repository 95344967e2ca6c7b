"""The batcher alone, with fake predict functions; ordering is gated by events."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.serving.batcher import Batcher, BatcherClosed, BatchSizeMismatch, QueueFull

pytestmark = pytest.mark.anyio


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


class GatedModel:
    """predict() records each batch and, when gated, blocks until released."""

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.entered = threading.Event()
        self.release = threading.Event()
        if not gated:
            self.release.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(items))
        self.entered.set()
        self.release.wait(timeout=10)
        return [x * 10 for x in items]


async def wait_until(predicate, timeout: float = 5.0) -> None:
    """Yield to the loop until `predicate()` holds (no fixed sleeps for ordering)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0)


async def test_results_come_back_in_order_to_each_caller(executor) -> None:
    model = GatedModel()
    batcher = Batcher(model, executor, max_batch_size=8, max_wait_s=0.05, max_queue=100)
    batcher.start()
    results = await asyncio.gather(batcher.submit([1, 2]), batcher.submit([3]), batcher.submit([4, 5, 6]))
    await batcher.stop()
    assert results == [[10, 20], [30], [40, 50, 60]]
    assert sorted(x for b in model.batches for x in b) == [1, 2, 3, 4, 5, 6]


async def test_batch_closes_at_max_size_while_model_is_busy(executor) -> None:
    model = GatedModel(gated=True)
    batcher = Batcher(model, executor, max_batch_size=4, max_wait_s=10.0, max_queue=100)
    batcher.start()
    first = asyncio.create_task(batcher.submit([0]))
    # The first batch waits 10 s for company unless full: fill it to 4 and it runs.
    rest = [asyncio.create_task(batcher.submit([i])) for i in range(1, 10)]
    await asyncio.to_thread(model.entered.wait, 5)
    await wait_until(lambda: batcher.queue_depth == 6)
    model.release.set()
    await asyncio.gather(first, *rest)
    await batcher.stop()
    assert [len(b) for b in model.batches] == [4, 4, 2]


async def test_partial_batch_runs_after_max_wait(executor) -> None:
    model = GatedModel()
    batcher = Batcher(model, executor, max_batch_size=64, max_wait_s=0.01, max_queue=100)
    batcher.start()
    assert await batcher.submit([7]) == [70]
    await batcher.stop()
    assert model.batches == [[7]]


async def test_predict_runs_off_the_event_loop_on_one_thread(executor) -> None:
    model = GatedModel()
    batcher = Batcher(model, executor, max_batch_size=2, max_wait_s=0.0, max_queue=100)
    batcher.start()
    await asyncio.gather(*(batcher.submit([i]) for i in range(6)))
    await batcher.stop()
    assert len(model.threads) == 1
    assert threading.main_thread().name not in model.threads


async def test_failed_batch_fails_every_request_and_batcher_survives(executor) -> None:
    calls = 0

    def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom")
        return items

    batcher = Batcher(flaky, executor, max_batch_size=8, max_wait_s=0.05, max_queue=100)
    batcher.start()
    outcomes = await asyncio.gather(batcher.submit([1]), batcher.submit([2, 3]), return_exceptions=True)
    assert all(isinstance(o, ValueError) and str(o) == "boom" for o in outcomes)
    assert await batcher.submit([4]) == [4]
    await batcher.stop()


async def test_wrong_number_of_outputs_is_an_error(executor) -> None:
    batcher = Batcher(lambda items: items[:-1], executor, max_batch_size=8, max_wait_s=0.0, max_queue=100)
    batcher.start()
    with pytest.raises(BatchSizeMismatch):
        await batcher.submit([1, 2])
    await batcher.stop()


async def test_full_queue_refuses_whole_request(executor) -> None:
    model = GatedModel(gated=True)
    batcher = Batcher(model, executor, max_batch_size=1, max_wait_s=0.0, max_queue=3)
    batcher.start()
    running = asyncio.create_task(batcher.submit([0]))
    await asyncio.to_thread(model.entered.wait, 5)
    queued = asyncio.create_task(batcher.submit([1, 2]))
    await wait_until(lambda: batcher.queue_depth == 2)
    with pytest.raises(QueueFull):
        await batcher.submit([3, 4])  # 2 + 2 > 3: none of it is queued
    assert batcher.queue_depth == 2
    model.release.set()
    assert await queued == [10, 20]
    assert await running == [0]
    await batcher.stop()


async def test_cancelled_requests_are_skipped(executor) -> None:
    model = GatedModel(gated=True)
    batcher = Batcher(model, executor, max_batch_size=1, max_wait_s=0.0, max_queue=100)
    batcher.start()
    running = asyncio.create_task(batcher.submit([0]))
    await asyncio.to_thread(model.entered.wait, 5)
    doomed = asyncio.create_task(batcher.submit([1]))
    kept = asyncio.create_task(batcher.submit([2]))
    await wait_until(lambda: batcher.queue_depth == 2)
    doomed.cancel()
    model.release.set()
    assert await kept == [20]
    assert await running == [0]
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await batcher.stop()
    assert [0] in model.batches and [2] in model.batches and [1] not in model.batches


async def test_stop_drains_accepted_items_then_refuses(executor) -> None:
    model = GatedModel(gated=True)
    batcher = Batcher(model, executor, max_batch_size=2, max_wait_s=10.0, max_queue=100)
    batcher.start()
    tasks = [asyncio.create_task(batcher.submit([i])) for i in range(5)]
    await asyncio.to_thread(model.entered.wait, 5)
    stopping = asyncio.create_task(batcher.stop())
    await wait_until(lambda: not batcher.running)
    with pytest.raises(BatcherClosed):
        await batcher.submit([99])
    model.release.set()
    await stopping
    assert [await t for t in tasks] == [[0], [10], [20], [30], [40]]


async def test_submit_before_start_is_refused(executor) -> None:
    batcher = Batcher(GatedModel(), executor, max_batch_size=2, max_wait_s=0.0, max_queue=10)
    with pytest.raises(BatcherClosed):
        await batcher.submit([1])


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"max_batch_size": 0, "max_wait_s": 0.0, "max_queue": 1}, id="zero-batch"),
        pytest.param({"max_batch_size": 1, "max_wait_s": -1.0, "max_queue": 1}, id="negative-wait"),
        pytest.param({"max_batch_size": 1, "max_wait_s": 0.0, "max_queue": 0}, id="zero-queue"),
    ],
)
def test_bad_limits_are_rejected(executor, kwargs) -> None:
    with pytest.raises(ValueError):
        Batcher(GatedModel(), executor, **kwargs)
