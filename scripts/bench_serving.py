"""Load benchmark for the service: starts the server itself, sends single-image
/predict requests at several concurrencies for a bounded time each, and prints one
table (requests/s, p50/p95/p99 latency, mean batch size) for three configurations:
batching on, batching off (MAX_BATCH_SIZE=1), and the raw SavedModel called in-process
at batch 64 (the ceiling).

    python scripts/bench_serving.py [--duration 10] [--concurrency 1,8,32,64,128]

Loopback only. The load comes from wrk (apt-get install wrk), one C thread, so the
generator takes little of the CPU it shares with the server. Numbers depend on the machine: docs/benchmark.md names the one that produced its table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_process
from server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.tar.gz"


def sample_images(n: int = 64) -> list[bytes]:
    """Real CIFAR-10 JPEGs where ../shared has them, else random PNGs."""
    if SHARED.is_file():
        out = []
        with tarfile.open(SHARED) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".jpg"):
                    f = tar.extractfile(member)
                    assert f is not None
                    out.append(f.read())
                    if len(out) == n:
                        return out
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
        images.append(buf.getvalue())
    return images


def start_server(model_dir: str, max_batch: int, max_wait_ms: float) -> ServerProcess:
    # Plain uvicorn, as the table in docs/benchmark.md was measured.
    env = {
        "CIFAR10_MODEL_DIR": model_dir,
        "CIFAR10_MAX_BATCH_SIZE": str(max_batch),
        "CIFAR10_MAX_WAIT_MS": str(max_wait_ms),
        "CIFAR10_LOG_LEVEL": "warning",
    }
    return server_process.start(env, cli=False, args=["--log-level", "warning", "--no-access-log"])


def batch_stats(url: str) -> tuple[float, float]:
    total = count = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith('cifar10_batch_size_sum{batcher="predict"}'):
            total = float(line.split()[-1])
        elif line.startswith('cifar10_batch_size_count{batcher="predict"}'):
            count = float(line.split()[-1])
    return total, count


WRK_SCRIPT = r"""
-- Rotate over the multipart bodies in BENCH_BODIES (one file per body), and print the
-- counts and latency percentiles as one JSON line at the end.
local bodies, index = {}, 0
local boundary = "cifar10benchboundary"
for path in string.gmatch(os.getenv("BENCH_BODIES"), "[^;]+") do
  local f = assert(io.open(path, "rb")); bodies[#bodies + 1] = f:read("*a"); f:close()
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
request = function()
  index = index % #bodies + 1
  return wrk.format(nil, "/predict", nil, bodies[index])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %f, "p50": %f, "p95": %f, "p99": %f, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(95) / 1e3,
    latency:percentile(99) / 1e3, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def multipart_bodies(images: list[bytes], folder: Path) -> list[Path]:
    """One single-image multipart body per sample, as files wrk's Lua can read."""
    paths = []
    for i, data in enumerate(images):
        body = (
            b'--cifar10benchboundary\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n--cifar10benchboundary--\r\n"
        )
        path = folder / f"body{i}.bin"
        path.write_bytes(body)
        paths.append(path)
    return paths


def run_wrk(
    url: str, script: Path, concurrency: int, duration: float, env: dict[str, str], timeout_s: int = 30
) -> dict[str, Any]:
    """wrk (C, one thread) drives the load, so the generator costs the server little CPU;
    `env` is what its Lua `script` reads. The script's JSON summary line, as printed."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{duration:g}s", "--timeout", f"{timeout_s}s", "-s", str(script), url],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("{")))


def wrk(url: str, bodies: list[Path], script: Path, concurrency: int, duration: float) -> dict[str, float]:
    """`run_wrk` with WRK_SCRIPT's bodies: one multipart /predict body per file, in turn."""
    return run_wrk(url, script, concurrency, duration, {"BENCH_BODIES": ";".join(str(b) for b in bodies)})


def load(url: str, bodies: list[Path], script: Path, concurrency: int, duration: float) -> dict[str, float]:
    """Requests/s that succeeded, latency percentiles and errors of one wrk run."""
    result = wrk(url, bodies, script, concurrency, duration)
    ok = result["requests"] - result["errors"]
    return {
        "rps": ok / result["seconds"],
        "p50": result["p50"],
        "p95": result["p95"],
        "p99": result["p99"],
        "errors": result["errors"],
    }


def raw_ceiling(model_dir: str, images: list[bytes], seconds: float) -> float:
    """Images/s of the SavedModel's serving signature called directly at batch 64."""
    import tensorflow as tf

    sys.path.insert(0, str(ROOT))
    from app.imaging.decode import decode_image
    from model import contract

    path = contract.latest_version_dir(Path(model_dir))
    serve = tf.saved_model.load(str(path)).signatures[contract.SERVING_SIGNATURE]
    batch = tf.constant(np.stack([decode_image(d, 10**8) for d in (images * 64)[:64]]))
    for _ in range(3):
        serve(image=batch)
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        serve(image=batch)["probabilities"].numpy()
        n += 64
    return n / (time.perf_counter() - started)


def measure_servers(
    args: argparse.Namespace, levels: list[int], bodies: list[Path], script: Path
) -> list[tuple[str, int, dict[str, float]]]:
    """One server per configuration; one wrk run per concurrency level."""
    rows = []
    for label, max_batch in (("batching on (max 64)", 64), ("batching off (max 1)", 1)):
        server = start_server(args.model_dir, max_batch, args.max_wait_ms)
        url = server.url
        try:
            load(url, bodies, script, 8, 2.0)  # warm the code paths
            for c in levels:
                before = batch_stats(url)
                result = load(url, bodies, script, c, args.duration)
                after = batch_stats(url)
                served = after[1] - before[1]
                result["batch"] = (after[0] - before[0]) / served if served else float("nan")
                rows.append((label, c, result))
                print(f"  {label:<22} c={c:<4} {result['rps']:8.1f} req/s", file=sys.stderr, flush=True)
        finally:
            server_process.stop(server.proc)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=str(ROOT / "saved_models" / "cifar10"))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per cell (bounded)")
    parser.add_argument("--concurrency", default="1,8,32,64,128")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if shutil.which("wrk") is None:
        raise SystemExit("the benchmark drives load with wrk: apt-get install wrk")
    images = sample_images()
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:  # wrk's script and bodies
        script = Path(scratch) / "predict.lua"
        script.write_text(WRK_SCRIPT)
        rows = measure_servers(args, levels, multipart_bodies(images, Path(scratch)), script)
    ceiling = raw_ceiling(args.model_dir, images, args.duration)

    cpu = platform.processor() or platform.machine()
    print(f"\nmachine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, model {args.model_dir}")
    print(f"load: single-image /predict, {args.duration:g} s per cell, max_wait_ms={args.max_wait_ms:g}\n")
    print("| configuration | concurrency | requests/s | p50 ms | p95 ms | p99 ms | mean batch | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, c, r in rows:
        print(
            f"| {label} | {c} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['batch']:.1f} | {r['errors']} |"
        )
    print(f"| raw SavedModel, batch 64, in-process | - | {ceiling:.1f} images/s | | | | 64 | |")
    on = {c: r for label, c, r in rows if label.startswith("batching on")}
    off = {c: r for label, c, r in rows if label.startswith("batching off")}
    if 64 in on and 64 in off:
        print(
            f"\nat concurrency 64: batching on / off = {on[64]['rps'] / off[64]['rps']:.2f}x; "
            f"on / raw ceiling = {on[64]['rps'] / ceiling:.2f}x; p99 {on[64]['p99']:.0f} ms"
        )


if __name__ == "__main__":
    main()
