"""Dynamic batching as a pure asyncio module: no FastAPI, no TensorFlow.

Callers `submit` items and await their results. A background task collects items
into a batch that closes at `max_batch_size` items or `max_wait_s` after its oldest
item arrived, then runs `predict(batch)` on one dedicated thread (never on the event
loop) and hands every caller its own result. A failed batch sets the same exception
on each of its futures; callers that went away (cancelled futures) are skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(Exception):
    """The queue cannot take the request's items now; try again later."""


class BatcherClosed(Exception):
    """The batcher is not running (not started yet, or draining for shutdown)."""


class BatchSizeMismatch(RuntimeError):
    """predict() returned a different number of results than it was given items."""


T_in = TypeVar("T_in", contravariant=True)


class BatchQueue(Protocol[T_in, R]):
    """What the handlers use of a batcher: this module's, or a front process's proxy
    for the one batcher in the model process (app.multiprocess.front)."""

    @property
    def queue_depth(self) -> int: ...

    @property
    def running(self) -> bool: ...

    async def submit(self, items: Sequence[T_in]) -> list[R]: ...

    async def stop(self) -> None: ...


class BatchObserver(Protocol):
    """Hooks for metrics; the batcher calls them from the event loop."""

    def batch_done(self, size: int, queue_waits: Sequence[float], run_seconds: float) -> None: ...


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    enqueued: float = field(default_factory=time.monotonic)


class Batcher(Generic[T, R]):
    """Collects submitted items into batches for `predict`, run on `executor`."""

    def __init__(
        self,
        predict: Callable[[list[T]], Sequence[R]],
        executor: Executor,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_wait_s >= 0")
        self._predict = predict
        self._executor = executor
        self.max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._max_queue = max_queue
        self._observer = observer
        self._pending: deque[_Pending[T, R]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._accepting = False

    @property
    def queue_depth(self) -> int:
        """Items waiting for a batch (not counting the batch that is running)."""
        return len(self._pending)

    @property
    def running(self) -> bool:
        return self._accepting and self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("batcher already started")
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        """Refuse new items, finish every item already accepted, then stop."""
        self._accepting = False
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Queue `items` (all or none) and return their results in order.

        Raises QueueFull when they do not fit, BatcherClosed when not running, or the
        exception that `predict` raised for their batch. Cancelling the caller drops
        its items that have not run yet.
        """
        if not self._accepting:
            raise BatcherClosed("the batcher is not accepting work")
        if len(self._pending) + len(items) > self._max_queue:
            raise QueueFull(f"queue holds {len(self._pending)} of {self._max_queue} items")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            self._pending.append(_Pending(item, future))
            futures.append(future)
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            # One item failed or the caller left: the other items need not run either.
            for future in futures:
                if future.done() and not future.cancelled():
                    future.exception()  # mark retrieved: asyncio would log it otherwise
                future.cancel()
            raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._accepting or self._pending:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._fill(loop)
            batch = [self._pending.popleft() for _ in range(min(self.max_batch_size, len(self._pending)))]
            live = [p for p in batch if not p.future.done()]
            if live:
                await self._execute(loop, live)

    async def _fill(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until the batch is full, the oldest item's wait is over, or we drain."""
        deadline = self._pending[0].enqueued + self._max_wait_s
        while len(self._pending) < self.max_batch_size and self._accepting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _execute(self, loop: asyncio.AbstractEventLoop, live: list[_Pending[T, R]]) -> None:
        started = time.monotonic()
        try:
            results = await loop.run_in_executor(self._executor, self._predict, [p.item for p in live])
            if len(results) != len(live):
                raise BatchSizeMismatch(f"predict returned {len(results)} results for {len(live)} items")
        except Exception as exc:  # every caller of the batch gets the same error
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        finally:
            if self._observer is not None:
                run_seconds = time.monotonic() - started
                self._observer.batch_done(len(live), [started - p.enqueued for p in live], run_seconds)
        for p, result in zip(live, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)
