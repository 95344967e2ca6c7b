"""The model process of the multi-process design: one model and its batchers, fed by
the front processes over a Unix socket (app.multiprocess.front is the other end).

Requests from every front land in the same batch queue, so batches form across all
of them exactly as in one process, with the same guarantees: a full queue answers
`overloaded` (429), a draining one `closed` (503), and a request that its front
cancels (deadline, departed client) or whose front disconnects is cancelled here,
so its items that have not run are dropped. SIGTERM drains after the connected
fronts have finished theirs; SIGINT is left to the supervisor.

    python -m app.multiprocess.model_process --socket /tmp/cifar10.sock   (settings from CIFAR10_*)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.metrics import Metrics
from app.multiprocess import wire
from app.multiprocess.lifeline import exit_with_supervisor
from app.multiprocess.supervisor import refuse_model_management
from app.serving.host import ModelHost, start_model
from app.serving.operations import OPERATIONS, Operation
from app.settings import Settings

log = logging.getLogger("cifar10.model_process")


class ModelProcess:
    """Answers `info`, `cancel` and one frame per operation (app.serving.operations) on
    a Unix socket."""

    def __init__(self, host: ModelHost, settings: Settings) -> None:
        self.host = host
        self._settings = settings
        self._server: asyncio.base_events.Server | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def listen(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._client, str(path), limit=1 << 20)
        os.chmod(path, 0o600)  # only this user's fronts may submit work

    async def stop(self, fronts_timeout_s: float) -> None:
        """Drain. Fronts still connected are draining too (a group-wide SIGTERM reaches
        them at once), so wait for them to finish and leave; then new requests get
        `closed`, accepted ones finish, and the batchers stop."""
        if self._server is not None:
            self._server.close()  # no new fronts
        deadline = asyncio.get_running_loop().time() + fronts_timeout_s
        while self._clients and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await self.host.stop()
        await asyncio.gather(*self._running, return_exceptions=True)  # their answers are written
        for writer in self._writers:
            writer.close()  # the fronts that overstayed see the end of the stream
        await asyncio.gather(*self._clients, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks: dict[int, asyncio.Task[None]] = {}
        me = asyncio.current_task()
        if me is not None:
            self._clients.add(me)
        self._writers.add(writer)
        try:
            while True:
                header, arrays = await wire.read(reader)
                op, rid = header.get("op"), int(header.get("id", 0))
                if op == "cancel":
                    if (task := tasks.get(rid)) is not None:
                        task.cancel()
                elif op == "info":
                    info = {"model": self.host.classifier.info.to_json(), "runtime": self._settings.runtime}
                    writer.writelines(wire.encode({"op": "info", "id": rid, **info}))
                elif op in OPERATIONS:
                    operation = Operation(op)
                    items = OPERATIONS[operation].arrays_to_items(arrays)
                    task = asyncio.create_task(self._run(operation, rid, items, writer))
                    tasks[rid] = task
                    self._running.add(task)
                    task.add_done_callback(self._forget(tasks, rid))
                else:
                    raise wire.WireError(f"unknown op {op!r}")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the front went away
        except (wire.WireError, KeyError, ValueError, TypeError) as exc:
            log.error("dropping a front connection: %s", exc)
        finally:
            # A departed front's requests have no one to answer: drop their items.
            for task in list(tasks.values()):
                task.cancel()
            writer.close()
            self._writers.discard(writer)
            if me is not None:
                self._clients.discard(me)

    def _forget(self, tasks: dict[int, asyncio.Task[None]], rid: int) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            tasks.pop(rid, None)
            self._running.discard(task)

        return done

    async def _run(self, operation: Operation, rid: int, items: list[Any], writer: asyncio.StreamWriter) -> None:
        try:
            results = await self.host.batchers[operation].submit(items)
        except Exception as exc:
            if type(exc) not in wire.ERROR_CODES:  # a failed batch: the front answers 500, the log here has it
                log.exception("batch failed")
            frame = wire.error_frame(rid, exc)
        else:
            frame = wire.encode({"op": "result", "id": rid}, OPERATIONS[operation].results_to_arrays(results))
        if not writer.is_closing():
            writer.writelines(frame)
            with contextlib.suppress(ConnectionError):
                await writer.drain()


async def serve(settings: Settings, socket_path: Path, fronts_timeout_s: float = 35.0) -> None:
    """Load and warm the model, listen, and drain on SIGTERM."""
    host = await start_model(settings, Metrics())
    model_process = ModelProcess(host, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await model_process.listen(socket_path)
    log.info("model process listening on %s", socket_path)
    await stop.wait()
    await model_process.stop(fronts_timeout_s)
    log.info("model process stopped after draining")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app.multiprocess.model_process")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument(
        "--fronts-timeout", type=float, default=35.0, help="on SIGTERM, seconds to wait for draining fronts"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the supervisor decides
    settings = Settings()
    exit_with_supervisor(settings.supervisor_pid)
    refuse_model_management(settings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        uvloop.run(serve(settings, args.socket, args.fronts_timeout))
    except ImportError:
        asyncio.run(serve(settings, args.socket, args.fronts_timeout))


if __name__ == "__main__":
    main()
