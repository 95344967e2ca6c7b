"""Start a real uvicorn process on a free loopback port and wait until it is ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, SHIPPED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def uvicorn_server(log: Path, *, cli: bool = False, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yield (base URL, process); terminate it afterwards, leaving nothing running.
    `cli`: run `python -m app` (the container's command, with the HTTP limits of
    app/web/http_limits.py) instead of plain `uvicorn --factory`."""
    port = free_port()
    environment = {**os.environ, "CIFAR10_MODEL_DIR": str(SHIPPED), "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    command = (
        [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)]
        if cli
        else [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "app.main:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--timeout-graceful-shutdown",
            "30",
        ]
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready in time:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
