"""The service as a real process on a free loopback port: start it, wait until
`/readyz` answers 200, stop it (SIGTERM, then a kill after a grace period).

The one helper that the benchmarks (scripts/bench_*.py), the footprint measurement
(deploy/kubernetes/measure_footprint.py) and the end-to-end and reliability tests
share. Standard library only, so it runs on the GPU hosts too. Scripts import it as
`server_process` (same folder); tests as `scripts.server_process`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FACTORY = "app.main:create_app"


class ServerError(RuntimeError):
    """The server exited or did not become ready; the message ends with its log's tail."""


def free_port() -> int:
    """A loopback port free now (another process may take it before the server binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(url: str, timeout_s: float = 2.0) -> int:
    """The HTTP status of GET `url`, or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@dataclass
class ServerProcess:
    url: str  # http://127.0.0.1:<port>
    proc: subprocess.Popen[bytes]
    log: Path | None  # the server's stdout and stderr, if kept
    start_seconds: float  # from the process start to its first 200 on /readyz

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log is not None and self.log.exists() else ""


def command(port: int, *, cli: bool = True, args: Sequence[str] = (), factory: str = FACTORY) -> list[str]:
    """`python -m app` (the container's command, with app/web/http_limits.py's limits), or
    plain `uvicorn --factory <factory>` with `cli=False`."""
    if cli:
        return [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port), *args]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        "30",
        *args,
    ]


def start(
    env: Mapping[str, str] | None = None,
    *,
    cli: bool = True,
    args: Sequence[str] = (),
    factory: str = FACTORY,
    log: Path | None = None,
    cwd: Path = ROOT,
    base_env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 300.0,
) -> ServerProcess:
    """Start a server with `env` over `base_env` (default os.environ) and wait until it is
    ready; ServerError (after stopping it) if it exits or overstays `ready_timeout_s`.
    `factory`: the app factory plain uvicorn runs (`cli=False`); tests pass one that
    serves the fake runtime."""
    port = free_port()
    environment = {**(os.environ if base_env is None else base_env), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    started = time.monotonic()
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            command(port, cli=cli, args=args, factory=factory),
            cwd=cwd,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log, 0.0)
    while status(f"{server.url}/readyz") != 200:
        if proc.poll() is not None:
            raise ServerError(f"the server exited with {proc.returncode} during start-up:\n{server.log_tail()}")
        if time.monotonic() - started > ready_timeout_s:
            stop(proc)
            raise ServerError(f"the server was not ready within {ready_timeout_s:g} s:\n{server.log_tail()}")
        time.sleep(0.25)
    server.start_seconds = time.monotonic() - started
    return server


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    """SIGTERM (the server drains), a kill after `timeout_s`; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


@contextmanager
def running(
    env: Mapping[str, str] | None = None, *, stop_timeout_s: float = 60.0, **options: Any
) -> Iterator[ServerProcess]:
    """`start(env, **options)` for a block, then `stop`: nothing is left running,
    whatever the block does."""
    server = start(env, **options)
    try:
        yield server
    finally:
        stop(server.proc, stop_timeout_s)


def raw_exchange(url: str, payload: bytes, *, timeout_s: float = 15.0, then: bytes = b"") -> bytes:
    """Send `payload` (and then `then`) as raw bytes on a new connection to the server at
    `url`; return everything it answers before it closes (or `timeout_s` passes)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        try:
            sock.sendall(payload)
            if then:
                sock.sendall(then)
        except OSError:
            pass  # the server may close while we still send: read what it answered
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
    return data
