"""A front process's side of the multi-process design: one connection to the model
process (app.multiprocess.model_process), shared by every request of this process, and
one batcher proxy per operation that the handlers use exactly like app.serving.batcher's.

The front decodes images itself and sends them as named arrays per request (the
operation's codec, app.serving.operations); the model process batches them with every
other front's. A caller that is cancelled (deadline, departed client) sends `cancel`,
so its items are dropped there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.multiprocess import wire
from app.serving.batcher import BatcherClosed
from app.serving.model_info import ModelInfo
from app.serving.operations import OPERATIONS, Operation


class ModelProcessClient:
    """A multiplexed connection to the model process."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[tuple[dict[str, Any], dict[str, np.ndarray]]]] = {}
        self._task = asyncio.create_task(self._read_loop(), name="model-process-client")
        self.accepting = True
        self.model: ModelInfo | None = None
        self.in_flight: Counter[Operation] = Counter()  # this front's requests waiting, per operation

    @classmethod
    async def connect(cls, path: Path) -> ModelProcessClient:
        """Connect and fetch the model's metadata; OSError if the model process is not there."""
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 24)
        client = cls(reader, writer)
        header, _ = await client._call({"op": "info"})
        client.model = ModelInfo.from_json(header["model"])
        return client

    @property
    def connected(self) -> bool:
        return not self._task.done()

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

    async def submit(self, operation: Operation, items: Sequence[Any]) -> list[Any]:
        """Run `operation` on `items` in the model process's batches; one result per item."""
        if not self.accepting:
            raise BatcherClosed("this front is shutting down")
        spec = OPERATIONS[operation]
        self.in_flight[operation] += 1
        try:
            header, arrays = await self._call({"op": operation.value}, spec.items_to_arrays(items))
        finally:
            self.in_flight[operation] -= 1
        if header["op"] == "error":
            wire.raise_error(header)
        return spec.arrays_to_results(arrays, len(items))

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


class RemoteBatcher:
    """app.serving.batcher.BatchQueue for one operation, over the model process."""

    def __init__(self, client: ModelProcessClient, operation: Operation) -> None:
        self._client, self._operation = client, operation

    @property
    def queue_depth(self) -> int:
        return self._client.in_flight[self._operation]  # this front's requests waiting for the model process

    @property
    def running(self) -> bool:
        return self._client.accepting and self._client.connected

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        return await self._client.submit(self._operation, items)

    async def stop(self) -> None:
        await self._client.close()


@dataclass(frozen=True)
class FrontHost:
    """The model process's one model, as app.serving.host.Host: what a front serves."""

    client: ModelProcessClient
    info: ModelInfo
    batchers: dict[Operation, RemoteBatcher]

    @classmethod
    def of(cls, client: ModelProcessClient) -> FrontHost:
        assert client.model is not None, "connect() fetched it"
        return cls(client, client.model, {op: RemoteBatcher(client, op) for op in Operation})

    async def stop(self) -> None:
        await self.client.close()
