"""A closed-loop HTTP/1.1 load generator for /predict: `concurrency` keep-alive
connections, each sending the same prebuilt multipart request again as soon as the
answer is in, spread over several processes so the generator is not the bottleneck.

Standard library only (uvloop if present), so it runs where the service's own
dependencies are not installed. Only responses with Content-Length are understood,
which is all the service sends.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import time
from dataclasses import dataclass

import numpy as np

BOUNDARY = "cifar10benchboundary"
GRACE_S = 30.0  # how long after its window a connection may still wait for its last answer
# How long after its window plus grace a whole cell may take before its processes are
# killed: one stalled cell must not take the cells after it down (the GPU run of issue 14
# lost nine cells to one at c=1024).
CELL_SLACK_S = 15.0


def jpeg_images(count: int, seed: int = 0) -> list[bytes]:
    """Smooth random 32x32 JPEGs: the common upload, decoded by the fast path."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(small).resize((32, 32), Image.Resampling.BILINEAR).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def predict_request(host: str, port: int, images: list[bytes]) -> bytes:
    """A POST /predict with `images` as multipart `files` (one image: field `file`)."""
    field = "file" if len(images) == 1 else "files"
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{i}.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(images)
    ]
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    head = (
        f"POST /predict?top_k=1 HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class _Job:
    host: str
    port: int
    request: bytes
    connections: int
    warmup_s: float
    duration_s: float
    start_at: float  # time.time() at which every process starts, so windows line up
    grace_s: float  # how long after the window a connection may wait for its last answer


async def _connection(
    job: _Job, measure_from: float, stop_at: float, latencies: list[float], statuses: dict[int, int]
) -> None:
    reader, writer = await asyncio.open_connection(job.host, job.port, limit=1 << 22)
    try:
        while True:
            started = time.monotonic()
            if started >= stop_at:
                return
            writer.write(job.request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            done = time.monotonic()
            if started >= measure_from and done <= stop_at:
                latencies.append(done - started)
                statuses[status] = statuses.get(status, 0) + 1
    except (ConnectionError, asyncio.IncompleteReadError, IndexError, ValueError):
        statuses[-1] = statuses.get(-1, 0) + 1
    finally:
        writer.close()


async def _run(job: _Job) -> tuple[list[float], dict[int, int]]:
    await asyncio.sleep(max(0.0, job.start_at - time.time()))
    now = time.monotonic()
    measure_from, stop_at = now + job.warmup_s, now + job.warmup_s + job.duration_s
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    tasks = [
        asyncio.ensure_future(_connection(job, measure_from, stop_at, latencies, statuses))
        for _ in range(job.connections)
    ]
    # A connection the server never answers (never accepted, or a request left hanging)
    # must not hold the benchmark forever: it counts as an error (-2) and is dropped.
    _, pending = await asyncio.wait(tasks, timeout=job.warmup_s + job.duration_s + job.grace_s)
    for task in pending:
        task.cancel()
        statuses[-2] = statuses.get(-2, 0) + 1
    await asyncio.gather(*pending, return_exceptions=True)
    return latencies, statuses


def _process(job: _Job) -> tuple[list[float], dict[int, int]]:
    try:
        import uvloop

        return uvloop.run(_run(job))
    except ImportError:
        return asyncio.run(_run(job))


def run_load(
    host: str,
    port: int,
    request: bytes,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
    processes: int = 1,
    grace_s: float = GRACE_S,
) -> dict[str, float | int | bool | dict[int, int]]:
    """Drive `concurrency` connections for warm-up + duration; return the measured window's
    requests/s, p50/p99 ms and status counts (-1: connection errors, -2: no answer
    within `grace_s` after the window, -3: the whole cell overstayed and was killed,
    then `timed_out` is true)."""
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    start_at = time.time() + 0.5
    jobs = [_Job(host, port, request, n, warmup_s, duration_s, start_at, grace_s) for n in shares]
    pool = multiprocessing.get_context("fork").Pool(processes)
    try:
        results = pool.map_async(_process, jobs).get(timeout=0.5 + warmup_s + duration_s + grace_s + CELL_SLACK_S)
    except multiprocessing.TimeoutError:
        # -3: the cell as a whole overstayed; every connection counts as an error.
        return {
            "requests_per_s": float("nan"),
            "p50_ms": float("nan"),
            "p99_ms": float("nan"),
            "ok": 0,
            "errors": concurrency,
            "statuses": {-3: concurrency},
            "timed_out": True,
        }
    finally:
        pool.terminate()  # kills a stalled cell's processes; a no-op for finished ones
        pool.join()
    latencies = np.array([x for lat, _ in results for x in lat])
    statuses: dict[int, int] = {}
    for _, counts in results:
        for code, n in counts.items():
            statuses[code] = statuses.get(code, 0) + n
    ok = statuses.get(200, 0)
    return {
        "requests_per_s": ok / duration_s,
        "p50_ms": float(np.percentile(latencies, 50) * 1000) if len(latencies) else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99) * 1000) if len(latencies) else float("nan"),
        "ok": ok,
        "errors": sum(n for code, n in statuses.items() if code != 200),
        "statuses": statuses,
        "timed_out": False,
    }
