"""A front process's side of the multi-process design: one connection to the model
process (app.engine), shared by every request of this process, and batcher proxies
that the handlers use exactly like app.batcher's.

The front decodes images itself and sends them as one uint8 array per request; the
model process batches them with every other front's. A caller that is cancelled
(deadline, departed client) sends `cancel`, so its items are dropped there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from app import wire
from app.batcher import BatcherClosed, QueueFull
from app.classifier import ExplainItem, ModelInfo, split_rows

R = TypeVar("R")


class EngineFailed(RuntimeError):
    """The model process failed the batch; its log has the traceback."""


class EngineClient:
    """A multiplexed connection to the model process."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[tuple[dict[str, Any], dict[str, np.ndarray]]]] = {}
        self._task = asyncio.create_task(self._read_loop(), name="engine-client")
        self.accepting = True
        self.model: ModelInfo | None = None

    @classmethod
    async def connect(cls, path: Path) -> EngineClient:
        """Connect and fetch the model's metadata; OSError if the model process is not there."""
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 24)
        client = cls(reader, writer)
        header, _ = await client._call({"op": "info"})
        client.model = ModelInfo.from_json(header["model"])
        return client

    @property
    def connected(self) -> bool:
        return not self._task.done()

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    async def _read_loop(self) -> None:
        try:
            while True:
                header, arrays = await wire.read(self._reader)
                future = self._waiting.pop(int(header["id"]), None)
                if future is not None and not future.done():
                    future.set_result((header, arrays))
        except (asyncio.IncompleteReadError, ConnectionError, wire.WireError):
            pass
        finally:  # the model process is gone: nothing waiting will be answered
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(BatcherClosed("the model process went away"))
            self._waiting.clear()

    async def _call(
        self, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if not self.connected:
            raise BatcherClosed("the model process went away")
        rid = next(self._ids)
        future: asyncio.Future[tuple[dict[str, Any], dict[str, np.ndarray]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[rid] = future
        self._writer.writelines(wire.encode({**header, "id": rid}, arrays))
        try:
            await self._writer.drain()
            return await future
        except asyncio.CancelledError:
            if self._waiting.pop(rid, None) is not None and not self._writer.is_closing():
                self._writer.writelines(wire.encode({"op": "cancel", "id": rid}))
            raise

    async def submit(
        self, op: str, images: Sequence[np.ndarray], targets: Sequence[int] | None = None
    ) -> dict[str, np.ndarray]:
        """Run `op` ("predict", "features" or "explain", which takes one target class per
        image) on `images` in the model process's batches."""
        if not self.accepting:
            raise BatcherClosed("this front is shutting down")
        request = {"images": np.stack(images)}
        if targets is not None:
            request["targets"] = np.asarray(targets, dtype=np.int32)
        header, arrays = await self._call({"op": op}, request)
        if header["op"] == "error":
            code = header.get("code")
            raise (QueueFull if code == "overloaded" else BatcherClosed if code == "closed" else EngineFailed)(
                header.get("message", "")
            )
        return arrays

    async def close(self) -> None:
        """Stop taking requests, let the ones in flight finish, then disconnect."""
        self.accepting = False
        while self._waiting and self.connected:
            await asyncio.sleep(0.01)
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class RemoteBatcher(Generic[R]):
    """app.batcher.BatchQueue over the model process: `submit` sends, awaits, splits."""

    def __init__(self, client: EngineClient, op: str, split: Callable[[dict[str, np.ndarray], int], list[R]]) -> None:
        self._client, self._op, self._split = client, op, split

    @property
    def queue_depth(self) -> int:
        return self._client.in_flight  # requests of this front waiting for the model process

    @property
    def running(self) -> bool:
        return self._client.accepting and self._client.connected

    async def submit(self, items: Sequence[np.ndarray]) -> list[R]:
        return self._split(await self._client.submit(self._op, items), len(items))

    async def stop(self) -> None:
        await self._client.close()


class RemoteExplainBatcher:
    """The explain batcher over the model process: items are (image, target class)."""

    def __init__(self, client: EngineClient) -> None:
        self._client = client

    @property
    def queue_depth(self) -> int:
        return self._client.in_flight

    @property
    def running(self) -> bool:
        return self._client.accepting and self._client.connected

    async def submit(self, items: Sequence[ExplainItem]) -> list[dict[str, np.ndarray]]:
        arrays = await self._client.submit("explain", [image for image, _ in items], [t for _, t in items])
        return split_rows(arrays, len(items))

    async def stop(self) -> None:
        await self._client.close()


def split_probabilities(arrays: dict[str, np.ndarray], n: int) -> list[np.ndarray]:
    return list(arrays["probabilities"][:n])


@dataclass(frozen=True)
class RemoteHost:
    """The model process's one model, as app.registry.Host: what a front serves."""

    info: ModelInfo
    predict_batcher: RemoteBatcher[np.ndarray]
    feature_batcher: RemoteBatcher[dict[str, np.ndarray]]
    explain_batcher: RemoteExplainBatcher
    close: Callable[[], Awaitable[None]]

    async def stop(self) -> None:
        await self.close()
