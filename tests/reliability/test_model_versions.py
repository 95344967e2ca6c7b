"""Live model versions under load (issue 16), against a real server (`python -m app`)
polling a model folder that starts with a copy of the shipped `cifar10/4`, with 64
clients posting single images to /predict the whole time:

1. a new version (`cifar10/5`, copied in while the poll watches) replaces it with
   zero failed requests, and the responses' `model.version` switches;
2. a corrupt version is refused with zero failed requests, the old one answering;
3. after 20 more swaps, the process's resident memory is back within 10% of what it
   was with one version, and no inference thread is left behind.

The tests run in order on one server and record their figures for docs/model-management.md.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from scripts.server_process import running
from tests.conftest import SHIPPED
from tests.helpers import png_bytes
from tests.reliability.conftest import FIGURES, Server

pytestmark = pytest.mark.reliability
CONCURRENCY = 64
POLL_S = 0.25
IMAGE = png_bytes(np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8))
SOURCES = (SHIPPED / "4", SHIPPED / "5")  # two real versions (10 and 16 MB), both small networks


def copy_version(source: Path, target: Path) -> None:
    """Copy a version folder in place, file by file, as an operator's `cp -r` would:
    the poll sees it while it is being written (the Keras archive is left out: this
    server runs the SavedModel)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.keras"))


@dataclass
class Load:
    """What the clients saw: (status, served version or error) per request, in completion order."""

    results: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[tuple[int, str]]:
        return [r for r in self.results if r[0] != 200]

    def versions(self) -> list[str]:
        return [v for status, v in self.results if status == 200]


async def _worker(client: httpx.AsyncClient, stop: asyncio.Event, load: Load) -> None:
    while not stop.is_set():
        try:
            r = await client.post("/predict", files={"file": ("x.png", IMAGE, "image/png")})
            load.results.append((r.status_code, r.json()["model"]["version"] if r.status_code == 200 else r.text))
        except httpx.HTTPError as exc:
            load.results.append((0, repr(exc)))


async def states(client: httpx.AsyncClient) -> dict[str, dict[str, object]]:
    r = await client.get("/v1/models/cifar10")
    return {s["version"]: s for s in r.json()["model_version_status"]}


async def wait_for_states(client: httpx.AsyncClient, want: dict[str, str], timeout_s: float = 90) -> float:
    """Seconds until the status endpoint shows these versions in these states."""
    started = time.monotonic()
    while True:
        found = await states(client)
        if all(v in found and found[v]["state"] == s for v, s in want.items()):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout_s, f"states {found}, waiting for {want}"
        await asyncio.sleep(0.05)


async def under_load(url: str, change: Path | None, source: Path | None, want: dict[str, str]) -> tuple[Load, float]:
    """64 clients for 2 s, then `source` copied to `change` (and the status awaited
    until `want`), then 2 s more. Returns what the clients saw and the swap's seconds."""
    load, stop = Load(), asyncio.Event()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with (
        httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client,
        httpx.AsyncClient(base_url=url, timeout=60) as status,
    ):
        started = time.monotonic()
        workers = asyncio.gather(*(_worker(client, stop, load) for _ in range(CONCURRENCY)))
        await asyncio.sleep(2)
        swap_started = time.monotonic()
        if change is not None and source is not None:
            await asyncio.to_thread(copy_version, source, change)
        swap = await wait_for_states(status, want)
        swap = time.monotonic() - swap_started
        await asyncio.sleep(2)
        stop.set()
        await workers
        load.seconds = time.monotonic() - started
    return load, swap


@pytest.fixture(scope="module")
def versioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("versions")
    model_dir = root / "cifar10"
    copy_version(SOURCES[0], model_dir / "1")
    env = {
        "CIFAR10_MODEL_DIR": str(model_dir),
        "CIFAR10_MODEL_POLL_S": str(POLL_S),
        "CIFAR10_MAX_BATCH_SIZE": "16",  # fewer buckets to warm per version: faster swaps
        "CIFAR10_LOG_LEVEL": "info",
    }
    with running(env, log=root / "server.log") as server:
        yield Server(server.url, server.proc, root / "server.log"), model_dir


def threads(server: Server) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_new_version_swaps_in_under_load_with_no_failures(versioned: tuple[Server, Path]) -> None:
    server, model_dir = versioned
    # One version, after a load like the ones below: the memory figure to come back to.
    warm, _ = asyncio.run(under_load(server.url, None, None, {"1": "AVAILABLE"}))
    assert warm.failures == []
    FIGURES["model_versions"] = {
        "one_version_requests_per_s": round(len(warm.results) / warm.seconds, 1),
        "one_version_rss_mb": round(server.rss_mb(), 1),
        "one_version_threads": threads(server),
    }

    load, swap_s = asyncio.run(under_load(server.url, model_dir / "2", SOURCES[1], {"2": "AVAILABLE", "1": "END"}))

    assert load.failures == [], load.failures[:5]
    versions = load.versions()
    assert versions[0] == "1" and versions[-1] == "2"
    assert set(versions) == {"1", "2"}
    assert set(versions[-CONCURRENCY * 2 :]) == {"2"}  # the old version no longer answers
    FIGURES["model_versions"]["swap_under_load"] = {
        "requests": len(load.results),
        "failed": len(load.failures),
        "requests_per_s": round(len(load.results) / load.seconds, 1),
        "answered_by_1": versions.count("1"),
        "answered_by_2": versions.count("2"),
        "copy_to_unloaded_s": round(swap_s, 2),
    }


def test_corrupt_version_is_refused_under_load_with_no_failures(versioned: tuple[Server, Path]) -> None:
    server, model_dir = versioned
    broken = model_dir.parent / "broken"
    copy_version(SOURCES[1], broken)
    (broken / "saved_model.pb").write_bytes(b"\x08\x01 not a SavedModel protobuf")

    load, refuse_s = asyncio.run(under_load(server.url, model_dir / "3", broken, {"3": "END", "2": "AVAILABLE"}))

    assert load.failures == [], load.failures[:5]
    assert set(load.versions()) == {"2"}
    status = httpx.get(f"{server.url}/v1/models/cifar10/versions/3", timeout=30).json()["model_version_status"][0]
    assert status["state"] == "END"
    assert status["status"]["error_code"] != "OK"
    assert "cannot load the SavedModel" in status["status"]["error_message"]
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert 'cifar10_model_load_failures_total{model="cifar10"} 1.0' in metrics
    assert "refused version 3 of model 'cifar10'" in server.log.read_text()
    FIGURES["model_versions"]["corrupt_under_load"] = {
        "requests": len(load.results),
        "failed": len(load.failures),
        "copy_to_refused_s": round(refuse_s, 2),
    }


def test_memory_after_twenty_swaps_is_back_to_one_versions(versioned: tuple[Server, Path]) -> None:
    server, model_dir = versioned
    figures = FIGURES["model_versions"]
    current, timings = 2, []

    async def swap(number: int) -> float:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            started = time.monotonic()
            await asyncio.to_thread(copy_version, SOURCES[number % 2], model_dir / str(number))
            await wait_for_states(client, {str(number): "AVAILABLE", str(number - 1): "END"})
            return time.monotonic() - started

    shutil.rmtree(model_dir / "3")  # the refused one; a later version takes its place
    for number in range(4, 24):
        timings.append(asyncio.run(swap(number)))
        shutil.rmtree(model_dir / str(current))
        current = number
    after_swaps = server.rss_mb()
    load, _ = asyncio.run(under_load(server.url, None, None, {str(current): "AVAILABLE"}))
    assert load.failures == []
    rss, count = server.rss_mb(), threads(server)

    figures["after_20_swaps"] = {
        "rss_mb_idle": round(after_swaps, 1),
        "rss_mb_after_load": round(rss, 1),
        "threads": count,
        "swap_s_median": round(float(np.median(timings)), 2),
        "swap_s_max": round(max(timings), 2),
        "ratio": round(rss / figures["one_version_rss_mb"], 3),
    }
    assert rss <= 1.10 * figures["one_version_rss_mb"], figures
    # A leaked inference thread per swap would show 20 more; asyncio's default pool
    # (loads, folder scans) may have started a few of its own since.
    assert count < figures["one_version_threads"] + 5, figures
