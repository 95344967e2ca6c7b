"""A request's work, whatever protocol it came by: decoding in the decode pool and
batched inference, both inside the request's deadline, with the service's overload
policy. The one place batcher outcomes become domain errors (429, 503, 504, 499).
No web framework here: an edge passes in how to tell that its client went away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from app.errors import ClientClosed, NotReady, Overloaded, Timeout
from app.serving.batcher import BatcherClosed, BatchQueue, QueueFull

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Deadline:
    """When a request's decoding and inference must be done (event-loop time), and the
    settings that shape its errors."""

    at: float
    timeout_s: float  # what the 504 says
    retry_after_s: int  # what the 429 says

    @classmethod
    def start(cls, timeout_s: float, retry_after_s: int) -> Deadline:
        return cls(asyncio.get_running_loop().time() + timeout_s, timeout_s, retry_after_s)

    def remaining(self) -> float:
        return self.at - asyncio.get_running_loop().time()

    def monotonic(self) -> float:
        """The deadline on time.monotonic()'s clock, for work in other threads."""
        return time.monotonic() + self.remaining()

    def expired(self) -> Timeout:
        return Timeout(f"the request did not finish within {self.timeout_s:g} s")


async def off_loop(pool: Executor, calls: Sequence[Callable[[], T]], deadline: Deadline) -> list[T]:
    """Run `calls` in the decode pool and return their results in order.

    On the deadline (504) or the first error, the calls that have not started are
    cancelled; a running one finishes in its thread, which the pool's size bounds.
    """
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(pool, call) for call in calls]
    try:
        return list(await asyncio.wait_for(asyncio.gather(*futures), deadline.remaining()))
    except TimeoutError:
        raise deadline.expired() from None
    finally:
        for future in futures:
            future.cancel()


async def run_batched(
    batcher: BatchQueue[Any, R],
    items: Sequence[Any],
    deadline: Deadline,
    departed: Callable[[], Awaitable[None]] | None = None,
) -> list[R]:
    """Submit `items`; map a full queue to 429, the deadline to 504, shutdown to 503.

    `departed` returns when the client goes away; then the submission is cancelled, so
    its items that have not reached the model are dropped (the batcher skips cancelled
    items), and the answer is 499.
    """
    submit = asyncio.ensure_future(batcher.submit(list(items)))
    waiting: set[asyncio.Future[Any]] = {submit}
    watch = asyncio.ensure_future(departed()) if departed is not None else None
    if watch is not None:
        waiting.add(watch)
    try:
        done, _ = await asyncio.wait(waiting, timeout=deadline.remaining(), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if watch is not None:
            watch.cancel()
    if submit not in done:
        submit.cancel()
        if watch is not None and watch in done:
            raise ClientClosed("the client went away before inference")
        raise deadline.expired()
    try:
        return submit.result()
    except QueueFull:
        raise Overloaded(
            "the server is at capacity; retry after the Retry-After delay",
            headers={"Retry-After": str(deadline.retry_after_s)},
        ) from None
    except BatcherClosed:
        raise NotReady("the service is shutting down") from None
