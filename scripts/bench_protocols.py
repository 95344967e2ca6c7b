"""The same images through each protocol the service speaks: multipart `/predict`, TF
Serving REST (`{"b64": …}` image files), TF Serving gRPC (a uint8 pixel tensor), and the
Open Inference Protocol v2 over REST with binary tensor data and in JSON. One server
(`python -m app` on the shipped default model, gRPC on a free port), one cell per
protocol and request size (1 and 64 images), closed-loop at one concurrency; prints one
markdown table of images/s and latency, with the server's and the load generator's CPU.

    python scripts/bench_protocols.py [--duration 8] [--batch-duration 30] [--concurrency 64]

Loopback only. HTTP load comes from wrk (apt-get install wrk): one C thread, sending the
prebuilt body again as soon as the answer is in; the Lua script reports its latency
percentiles and the statuses of failed answers. gRPC load comes from grpc.aio in
`--grpc-processes` processes (wrk speaks no HTTP/2, and no ghz here), each with one
channel and its share of the concurrent calls, sending the prebuilt serialized request
and counting the answer's status without parsing it, as wrk does not parse JSON. Both
count the answers that arrive within the window, from a cold start: each cell is a 2 s
warm-up run, a wait until the batch queue is empty (the warm-up's abandoned images are
dropped), then the measured run. At c=64 a 64-image cell keeps 4,096 images in flight,
so each request waits for a whole round of them (seconds): those cells run for
`--batch-duration`, a few rounds. Before any load, every request is sent once and its
answer checked against `/predict`'s probabilities, so that no cell measures an error.
The image-file protocols (multipart, TF Serving REST) decode JPEGs on the server; the
tensor protocols (gRPC, v2) send the pixels those JPEGs decode to (the service's own
decoder, run here), as their clients would.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_process
from bench_serving import raw_ceiling, run_wrk, sample_images

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = "cifar10benchboundary"
GRPC_PREDICT = "/tensorflow.serving.PredictionService/Predict"
# 64 requests of 64 images are 4,096 images in flight: the default queue (1,024) would
# answer most of them 429, and at the 2-core machine's ~1,000 images/s the last of them
# waits about 4 s, near the default 10 s deadline. Every cell runs with these, so that
# none is refused or cut short and each shows its latency instead.
SETTINGS = {"CIFAR10_MAX_QUEUE": "4096", "CIFAR10_REQUEST_TIMEOUT_S": "30"}

# Any method, path, headers and body (from files named in the environment); prints the
# counts and latency percentiles as one JSON line at the end.
WRK_SCRIPT = r"""
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb")); local body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.body = body
for header in string.gmatch(os.getenv("BENCH_HEADERS"), "[^\n]+") do
  local name, value = header:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end
failed = ""
response = function(status, headers, body)
  if status ~= 200 then failed = failed .. status .. " " end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local e, statuses = summary.errors, ""
  for _, thread in ipairs(threads) do statuses = statuses .. thread:get("failed") end
  io.write(string.format('{"requests": %d, "seconds": %f, "p50": %f, "p99": %f, "errors": %d, "failed": "%s"}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect + e.read + e.write + e.status + e.timeout, statuses))
end
"""


@dataclass
class Cell:
    """One protocol at one request size: how to send it, and how to read its answer."""

    protocol: str
    images: int
    body: bytes
    path: str = ""  # HTTP: the request path; empty for gRPC
    headers: dict[str, str] = field(default_factory=dict)
    probabilities: Callable[[Any], np.ndarray] | None = None  # the answer (a response, or gRPC's bytes) read


# --- the requests, as each protocol's client would build them ---------------------------


def multipart(files: list[bytes]) -> Cell:
    field_name = "file" if len(files) == 1 else "files"
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{i}.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    return Cell(
        "multipart `/predict` (JPEG files)",
        len(files),
        b"".join(parts) + f"--{BOUNDARY}--\r\n".encode(),
        "/predict",
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        lambda r: np.asarray([list(p["probabilities"].values()) for p in r.json()["predictions"]], np.float32),
    )


def tf_serving_rest(files: list[bytes]) -> Cell:
    body = json.dumps({"instances": [{"b64": base64.b64encode(d).decode()} for d in files]}).encode()
    return Cell(
        "TF Serving REST (`b64` JPEG files)",
        len(files),
        body,
        "/v1/models/cifar10:predict",
        {"Content-Type": "application/json"},
        lambda r: np.asarray(r.json()["predictions"], np.float32),
    )


def tf_serving_grpc(pixels: np.ndarray) -> Cell:
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "cifar10"
    request.model_spec.signature_name = "serving_default"
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, tensor_content=pixels.tobytes())
    for size in pixels.shape:
        tensor.tensor_shape.dim.add(size=size)
    request.inputs["image"].CopyFrom(tensor)

    def read(answer: bytes) -> np.ndarray:
        response = predict_pb2.PredictResponse.FromString(answer)
        out = response.outputs["probabilities"]
        return np.frombuffer(out.tensor_content, "<f4").reshape([d.size for d in out.tensor_shape.dim])

    return Cell("TF Serving gRPC (uint8 tensor)", len(pixels), request.SerializeToString(), probabilities=read)


def v2_rest(pixels: np.ndarray, binary: bool) -> Cell:
    """The body tritonclient.http sends for `infer`, in binary or JSON mode."""
    import tritonclient.http as httpclient

    image = httpclient.InferInput("image", list(pixels.shape), "UINT8")
    image.set_data_from_numpy(pixels, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
    body, json_size = httpclient.InferenceServerClient.generate_request_body([image], outputs=outputs)
    headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)

    def read(r: httpx.Response) -> np.ndarray:
        length = r.headers.get("Inference-Header-Content-Length")
        result = httpclient.InferenceServerClient.parse_response_body(
            r.content, header_length=int(length) if length else None
        )
        return np.asarray(result.as_numpy("probabilities"), np.float32)

    label = "v2 REST, binary tensor data (uint8)" if binary else "v2 REST, JSON (uint8)"
    return Cell(label, len(pixels), body, "/v2/models/cifar10/infer", headers, read)


def cells(files: list[bytes], pixels: np.ndarray) -> list[Cell]:
    out = []
    for n in (1, len(files)):
        out += [
            multipart(files[:n]),
            tf_serving_rest(files[:n]),
            tf_serving_grpc(pixels[:n]),
            v2_rest(pixels[:n], binary=True),
            v2_rest(pixels[:n], binary=False),
        ]
    return out


# --- one answer, checked -------------------------------------------------------------


def answer(cell: Cell, url: str, grpc_address: str) -> np.ndarray:
    """The cell's request sent once; its probabilities."""
    assert cell.probabilities is not None
    if not cell.path:
        import grpc

        with grpc.insecure_channel(grpc_address) as channel:
            call = channel.unary_unary(GRPC_PREDICT)  # bytes in, bytes out
            return cell.probabilities(call(cell.body, timeout=60))
    r = httpx.post(f"{url}{cell.path}", content=cell.body, headers=cell.headers, timeout=60)
    if r.status_code != 200:
        raise SystemExit(f"{cell.protocol}, {cell.images} images: {r.status_code} {r.text[:300]}")
    return cell.probabilities(r)


# --- load ------------------------------------------------------------------------------


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, cell: Cell, script: Path, body: Path, concurrency: int, duration: float) -> dict[str, float]:
    env = {
        "BENCH_BODY": str(body),
        "BENCH_PATH": cell.path,
        "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in cell.headers.items()),
    }
    result = run_wrk(url, script, concurrency, duration, env, timeout_s=60)
    return {
        "ok": result["requests"] - result["errors"],
        "errors": result["errors"],
        "failed": dict(Counter(result["failed"].split())),  # status -> count; the rest of errors are socket errors
        "seconds": result["seconds"],
        "p50": result["p50"],
        "p99": result["p99"],
    }


def _grpc_worker(args: tuple[str, bytes, int, float, float]) -> tuple[list[float], dict[str, int], float]:
    """One process's share of the gRPC load: `calls` coroutines on one channel, each
    sending the request again as soon as its answer is in, from `start_at` for
    `duration_s`. The calls answered within the window (the OK ones' latencies, counts by
    status), and the CPU seconds this process (grpc's threads included) used in it; calls
    still open at its end are cancelled, as wrk drops them."""
    address, body, calls, start_at, duration_s = args

    async def run() -> tuple[list[float], dict[str, int], float]:
        import grpc

        latencies: list[float] = []
        counts: dict[str, int] = {}
        async with grpc.aio.insecure_channel(address) as channel:
            predict = channel.unary_unary(GRPC_PREDICT)
            await channel.channel_ready()
            await asyncio.sleep(max(0.0, start_at - time.time()))
            cpu_from = time.process_time()

            async def loop() -> None:
                while True:
                    started = time.monotonic()
                    try:
                        await predict(body, timeout=60)
                        code = "OK"
                    except grpc.aio.AioRpcError as exc:
                        code = exc.code().name
                    counts[code] = counts.get(code, 0) + 1
                    if code == "OK":
                        latencies.append(time.monotonic() - started)

            tasks = [asyncio.ensure_future(loop()) for _ in range(calls)]
            await asyncio.sleep(duration_s)
            cpu = time.process_time() - cpu_from
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return latencies, counts, cpu

    return asyncio.run(run())


def grpc_load(address: str, cell: Cell, server_pid: int, concurrency: int, duration: float, processes: int) -> dict:
    """One gRPC run in `processes` processes; the server's CPU read at the window's edges."""
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    start_at = time.time() + 3.0  # every process started, connected and waiting
    jobs = [(address, cell.body, n, start_at, duration) for n in shares if n]
    # spawn: each worker imports grpc afresh (no fork after grpc has started threads here).
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        pending = pool.map_async(_grpc_worker, jobs)
        time.sleep(max(0.0, start_at - time.time()))
        server_from = process_cpu_s(server_pid)
        time.sleep(duration)
        server_cores = (process_cpu_s(server_pid) - server_from) / duration
        results = pending.get(timeout=duration + 120)
    latencies = np.array([x for lat, _, _ in results for x in lat])
    counts: Counter[str] = Counter()
    for _, by_code, _ in results:
        counts.update(by_code)
    failed = {code: n for code, n in counts.items() if code != "OK"}
    return {
        "ok": counts["OK"],
        "errors": sum(failed.values()),
        "failed": failed,
        "seconds": duration,
        "p50": float(np.percentile(latencies, 50) * 1000) if len(latencies) else float("nan"),
        "p99": float(np.percentile(latencies, 99) * 1000) if len(latencies) else float("nan"),
        "server_cores": server_cores,
        "client_cores": sum(cpu for _, _, cpu in results) / duration,
    }


def queue_depth(url: str) -> float:
    """Images waiting in the predict batch queue (/metrics)."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith('cifar10_queue_depth{batcher="predict"}'):
            return float(line.split()[-1])
    return 0.0


def wait_idle(url: str, timeout_s: float = 120.0) -> None:
    """Until the batch queue is empty twice in a row: the warm-up's work is done or dropped."""
    deadline, empty = time.monotonic() + timeout_s, 0
    while empty < 2 and time.monotonic() < deadline:
        empty = empty + 1 if queue_depth(url) == 0 else 0
        time.sleep(0.25)


def measure(cell: Cell, server: server_process.ServerProcess, grpc_address: str, args: argparse.Namespace) -> dict:
    """A 2 s warm-up, an empty queue, then the measured run: its rates, latencies and
    CPU (cores: CPU seconds per second of the window)."""
    duration = args.duration if cell.images == 1 else args.batch_duration
    if not cell.path:
        grpc_load(grpc_address, cell, server.pid, args.concurrency, 2.0, args.grpc_processes)  # warm-up
        wait_idle(server.url)
        result = grpc_load(grpc_address, cell, server.pid, args.concurrency, duration, args.grpc_processes)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-protocols-") as scratch:
            script, body = Path(scratch) / "post.lua", Path(scratch) / "body.bin"
            script.write_text(WRK_SCRIPT)
            body.write_bytes(cell.body)
            wrk(server.url, cell, script, body, args.concurrency, 2.0)  # warm-up, not counted
            wait_idle(server.url)
            wall, server_cpu, client_cpu = time.monotonic(), process_cpu_s(server.pid), children_cpu_s()
            result = wrk(server.url, cell, script, body, args.concurrency, duration)
            wall = time.monotonic() - wall
        result["server_cores"] = (process_cpu_s(server.pid) - server_cpu) / wall
        result["client_cores"] = (children_cpu_s() - client_cpu) / wall  # wrk, a waited child
    result["images_per_s"] = result["ok"] * cell.images / result["seconds"]
    return result


def errors(result: dict) -> str:
    """The failed answers, with their statuses when any: `3 (429: 2, 504: 1)`."""
    named = ", ".join(f"{code}: {n}" for code, n in sorted(result["failed"].items()))
    return f"{result['errors']} ({named})" if named else str(result["errors"])


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or platform.machine(),
    )
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of measured load per 1-image cell")
    parser.add_argument("--batch-duration", type=float, default=30.0, help="seconds per 64-image cell")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--grpc-processes", type=int, default=2, help="load generator processes for gRPC")
    args = parser.parse_args()

    from app.imaging.decode import decode_image  # the service's own decoder: the pixels its uploads become

    files = sample_images(64)
    pixels = np.stack([decode_image(data, 10**8) for data in files])
    grpc_port = server_process.free_port()
    env = {"CIFAR10_GRPC_PORT": str(grpc_port), "CIFAR10_LOG_LEVEL": "warning", **SETTINGS}
    rows = []
    with server_process.running(env) as server:
        grpc_address = f"127.0.0.1:{grpc_port}"
        plan = cells(files, pixels)
        reference = {c.images: answer(c, server.url, grpc_address) for c in plan if c.path == "/predict"}
        for cell in plan:  # every request answers as /predict does, before any load
            np.testing.assert_allclose(answer(cell, server.url, grpc_address), reference[cell.images], atol=1e-5)
        for cell in plan:
            result = measure(cell, server, grpc_address, args)
            rows.append((cell, result))
            print(
                f"  {cell.protocol:<40} {cell.images:>2} images: {result['images_per_s']:8.1f} images/s, "
                f"p99 {result['p99']:7.1f} ms",
                file=sys.stderr,
                flush=True,
            )
    # The model alone, the server stopped: what any protocol's images/s is a share of.
    model_dir = ROOT / "saved_models" / "cifar10"  # the service's default CIFAR10_MODEL_DIR
    ceiling = raw_ceiling(str(model_dir), files, args.duration)

    print(f"\nmachine: {machine()}; model: the shipped default ({model_dir}, its highest version)")
    print(
        f"load: closed loop, c={args.concurrency}, {args.duration:g} s per 1-image cell and "
        f"{args.batch_duration:g} s per 64-image cell after a 2 s warm-up; HTTP by wrk (1 thread), "
        f"gRPC by grpc.aio in {args.grpc_processes} processes; "
        f"{', '.join(f'{k}={v}' for k, v in SETTINGS.items())}\n"
    )
    print(
        "| protocol | images per request | requests/s | images/s | p50 ms | p99 ms | errors "
        "| server CPU (cores) | load generator CPU (cores) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell, r in rows:
        print(
            f"| {cell.protocol} | {cell.images} | {r['ok'] / r['seconds']:.1f} | {r['images_per_s']:.0f} "
            f"| {r['p50']:.1f} | {r['p99']:.1f} | {errors(r)} | {r['server_cores']:.2f} | {r['client_cores']:.2f} |"
        )
    print(f"| the SavedModel alone, batch 64, in this process | 64 | | {ceiling:.0f} | | | | | |")
    by = {(c.protocol, c.images): r["images_per_s"] for c, r in rows}
    print()
    for n in sorted({c.images for c, _ in rows}):
        json_rate = by[("v2 REST, JSON (uint8)", n)]
        binary_rate = by[("v2 REST, binary tensor data (uint8)", n)]
        grpc_rate = by[("TF Serving gRPC (uint8 tensor)", n)]
        if json_rate:
            print(
                f"{n} image(s) per request, images/s: v2 binary / v2 JSON = {binary_rate / json_rate:.2f}x; "
                f"TF Serving gRPC / v2 JSON = {grpc_rate / json_rate:.2f}x"
            )


if __name__ == "__main__":
    main()
