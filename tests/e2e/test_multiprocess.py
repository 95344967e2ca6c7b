"""End to end: `python -m app --workers 2` with the jax runtime on the shipped model, in
an environment where TensorFlow cannot be imported (as on the GPU hosts): two front
processes and a model process, real images, batches across fronts, and a SIGTERM
while requests are in flight that every accepted request survives."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from scripts.server_process import running
from tests.conftest import SHIPPED
from tests.no_tensorflow import env_without_tensorflow

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@contextmanager
def multiprocess_server(tmp_path: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    environment = env_without_tensorflow(
        tmp_path / "site", CIFAR10_MODEL_DIR=str(SHIPPED), CIFAR10_RUNTIME="jax", **env
    )
    log = tmp_path / "server.log"
    with running(
        base_env=environment, args=["--workers", "2"], log=log, ready_timeout_s=600, stop_timeout_s=90
    ) as server:
        yield server.url, server.proc
    assert "ModuleNotFoundError" not in log.read_text() and "tensorflow" not in log.read_text().lower()


def test_fronts_and_model_process_serve_drain_and_leave_nothing(tmp_path: Path, real_samples) -> None:
    # A long batch window: the requests are still queued in the model process at SIGTERM.
    with multiprocess_server(tmp_path, CIFAR10_MAX_WAIT_MS="1000") as (url, proc):
        r = httpx.post(
            f"{url}/predict", files=[("files", (n, d, "image/jpeg")) for _, n, d in real_samples], timeout=60
        )
        assert r.status_code == 200
        correct = sum(p["label"] == cls for p, (cls, _, _) in zip(r.json()["predictions"], real_samples, strict=True))
        assert correct >= 45, f"only {correct}/50 correct"
        # /explain goes through the model process's third batcher too (jax.grad there).
        cls, name, data = real_samples[0]
        r = httpx.post(f"{url}/explain", files={"file": (name, data, "image/jpeg")}, params={"class": cls}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["target"]["label"] == cls and len(r.json()["maps"]) == 5
        children = _children(proc.pid)
        assert len(children) >= 3  # the model process and two fronts

        async def scenario() -> list[int]:
            limits = httpx.Limits(max_keepalive_connections=0)  # new connections: both fronts get some
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
                tasks = [
                    asyncio.create_task(client.post("/predict", files={"file": (n, d, "image/jpeg")}))
                    for _, n, d in real_samples[:16]
                ]
                await asyncio.sleep(0.3)  # accepted, and waiting in the 1 s batch window
                proc.send_signal(signal.SIGTERM)
                return [r.status_code for r in await asyncio.gather(*tasks)]

        statuses = asyncio.run(scenario())
        assert proc.wait(timeout=90) in (0, -signal.SIGTERM)
    assert statuses == [200] * 16
    log = (tmp_path / "server.log").read_text()
    assert "model process stopped after draining" in log
    deadline = time.monotonic() + 10
    while (left := [pid for pid in children if Path(f"/proc/{pid}").exists()]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left running: {left}"
