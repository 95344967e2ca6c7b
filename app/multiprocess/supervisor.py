"""`cifar10-serve --workers N` with N > 1: one model process and N HTTP front
processes on one port, so parsing, decoding and JSON spread over N cores while every
image still joins the one batch queue in front of the model (see docs/serving.md).

Start order: the model process loads and warms the model and only then listens on
its Unix socket; the fronts start once it answers. Stop order (SIGTERM or SIGINT
here): uvicorn's supervisor stops the fronts, each finishing the requests it
accepted (the model process keeps serving them); then the model process drains and
exits. If the model process dies, this process stops too, so a container restarts;
if this process dies (even by SIGKILL), its children stop (app.multiprocess.lifeline).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from app.multiprocess.front import ModelProcessClient
from app.settings import Settings

log = logging.getLogger("cifar10.supervisor")


def refuse_model_management(settings: Settings) -> None:
    """The multi-process design serves one model, loaded once, in its model process: no
    config file, no poll (docs/model-management.md). Say so instead of ignoring them."""
    if settings.model_config_file is not None or settings.model_poll_s > 0:
        raise SystemExit(
            "cifar10-serve --workers N (N > 1) serves one model from CIFAR10_MODEL_DIR without polling: "
            "unset CIFAR10_MODEL_CONFIG_FILE and CIFAR10_MODEL_POLL_S, or run one process (--workers 1)"
        )


def refuse_grpc(settings: Settings) -> None:
    """gRPC runs in one process: its stubs import TensorFlow's protos, which would load
    TensorFlow in every front (the fronts load no framework by design), and the fronts
    share one HTTP socket that uvicorn hands them, which grpc has no way to take. Say
    so at once instead of starting without it."""
    if settings.grpc_port is not None:
        raise SystemExit(
            "cifar10-serve --workers N (N > 1) serves HTTP only: unset CIFAR10_GRPC_PORT (or set it empty), "
            "or serve gRPC with one process (--workers 1) (docs/protocols.md)"
        )


async def _probe(path: Path) -> bool:
    try:
        client = await ModelProcessClient.connect(path)
    except OSError:
        return False
    await client.close()
    return True


def wait_for_model_process(path: Path, model_process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Block until the model process answers on `path`; SystemExit if it dies or stalls."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if model_process.poll() is not None:
            raise SystemExit(f"the model process exited with {model_process.returncode} before it was ready")
        if path.exists() and asyncio.run(_probe(path)):
            return
        time.sleep(0.2)
    model_process.terminate()
    raise SystemExit(f"the model process was not ready within {timeout_s:g} s")


def serve(
    host: str,
    port: int,
    workers: int,
    graceful_timeout: float,
    start_timeout: float = 600.0,
    http: str = "auto",
    loop: str = "auto",
) -> None:
    """Run the model process and `workers` fronts until SIGTERM/SIGINT, then drain."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder = Path(tempfile.mkdtemp(prefix="cifar10-"))
    socket_path = folder / "model.sock"
    # The children stop when this process dies, however it dies (app.multiprocess.lifeline).
    os.environ["CIFAR10_SUPERVISOR_PID"] = str(os.getpid())
    model_process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.multiprocess.model_process",
            "--socket",
            str(socket_path),
            "--fronts-timeout",
            str(graceful_timeout + 5),
        ]
    )
    stopping = threading.Event()

    def watch_model_process() -> None:
        model_process.wait()
        if not stopping.is_set():
            log.error("the model process exited with %s; stopping the fronts", model_process.returncode)
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        wait_for_model_process(socket_path, model_process, start_timeout)
        threading.Thread(target=watch_model_process, daemon=True).start()
        os.environ["CIFAR10_MODEL_PROCESS_SOCKET"] = str(socket_path)  # the fronts' create_app reads it
        log.info("model process ready; starting %d front processes", workers)
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            timeout_graceful_shutdown=round(graceful_timeout),
            http=http,
            loop=loop,
        )
    finally:
        stopping.set()
        if model_process.poll() is None:
            model_process.send_signal(signal.SIGTERM)
            try:
                model_process.wait(timeout=graceful_timeout + 5)
            except subprocess.TimeoutExpired:
                model_process.kill()
                model_process.wait()
        shutil.rmtree(folder, ignore_errors=True)
