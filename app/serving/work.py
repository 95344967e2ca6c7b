"""A request's work, whatever protocol it came by: the version it leased, decoding in
the decode pool and batched inference, both inside the request's deadline, with the
service's overload policy. The one place batcher outcomes become domain errors (429,
503, 504, 499). No web framework here: an edge passes in how to tell that its client
went away (HTTP), or cancels the call's task (gRPC).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from app.errors import ClientClosed, NotReady, OperationUnavailable, Overloaded, Timeout
from app.serving.batcher import BatcherClosed, BatchQueue, QueueFull
from app.serving.host import Host
from app.serving.model_info import ModelInfo
from app.serving.operations import Operation
from app.serving.service import DecodeGuard, Service

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
    except asyncio.CancelledError:
        submit.cancel()  # the caller was cancelled (a gRPC client went away): drop its items
        raise
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


@dataclass(frozen=True)
class Work:
    """What one inference request holds, whatever its protocol: the version it leased,
    the decode pool and its deadline."""

    host: Host
    decoder: Executor
    deadline: Deadline
    guard: DecodeGuard | None  # runs each decode-pool job under the deadline (app.serving.service)

    @property
    def model(self) -> ModelInfo:
        return self.host.info

    def require(self, operation: Operation) -> None:
        """A 4xx that says why, if the served version cannot answer `operation`."""
        reason = self.model.unavailable.get(operation)
        if reason is not None:
            raise OperationUnavailable(reason, operation)

    async def decode(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run `calls` (decoding, parsing, building a large answer) in the decode pool,
        within the deadline; under the guard, a decode in them stops at its first read
        after the deadline, so an expired request does not keep the pool busy."""
        if self.guard is not None:
            until, guard = self.deadline.monotonic(), self.guard
            calls = [partial(guard, until, call) for call in calls]
        return await off_loop(self.decoder, calls, self.deadline)

    async def submit(
        self, operation: Operation, items: Sequence[Any], departed: Callable[[], Awaitable[None]] | None = None
    ) -> list[Any]:
        """`items` through the version's batcher of `operation`, within the deadline;
        dropped if `departed` returns (or the caller is cancelled) first."""
        self.require(operation)
        return await run_batched(self.host.batchers[operation], items, self.deadline, departed)


@contextmanager
def leased(
    service: Service,
    name: str | None,
    version: int | None,
    label: str | None,
    timeout_s: float,
    retry_after_s: int,
) -> Iterator[Work]:
    """The version a request names, held for the request's whole duration, so the
    version it started on is not unloaded under it (app.serving.registry); NotReady
    before the lifespan has loaded the models, NotFound for what is not served."""
    if not service.ready or service.registry is None or service.decoder is None:
        raise NotReady("the service is not ready")
    registry = service.registry
    version_held = registry.acquire(name, version, label)
    try:
        assert version_held.host is not None  # acquire hands out AVAILABLE versions only
        deadline = Deadline.start(timeout_s, retry_after_s)
        yield Work(version_held.host, service.decoder, deadline, service.decode_guard)
    finally:
        registry.release(version_held)
