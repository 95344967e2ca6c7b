"""Event-loop stalls, memory and overload behaviour, measured against a real server
started from a checkout (this one, or `--repo` for an A/B against another commit).

    python scripts/bench_hostile.py [--repo PATH] [--duration 8]

1. Stall: one keep-alive client polls /healthz every 5 ms while one heavy request
   runs; the table gives the slowest probe (how long the event loop was blocked,
   plus one probe's cost) and the server's peak RSS growth (VmHWM) for the request.
2. Overload: wrk at concurrency 512 on single-image /predict for --duration seconds,
   while a /healthz on a new connection is timed every 0.5 s; statuses from /metrics.
3. Throughput: wrk at concurrency 64, as in scripts/bench_serving.py.

Loopback only; wrk (apt-get install wrk) drives the load. The server runs as
`python -m app` (the container's command). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_process
from bench_serving import WRK_SCRIPT, multipart_bodies, sample_images, wrk

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def heavy_requests(jpegs: list[bytes]) -> dict[str, tuple[str, dict[str, object]]]:
    gradient = np.asarray(Image.linear_gradient("L").resize((4000, 4000)).convert("RGB"))
    big_png = png(gradient)  # 4000x4000, within the pixel limit: compresses to a few KB, 48 MB as RGB
    sixteen = png(np.asarray(Image.linear_gradient("L").resize((4000, 4000)), dtype=np.uint16) * 257)
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).tolist()
    return {
        "16 PNGs 4000x4000 (/predict)": (
            "/predict",
            {"files": [("files", (f"{i}.png", big_png, "image/png")) for i in range(16)]},
        ),
        "16-bit PNG 4000x4000 (/predict)": ("/predict", {"files": {"file": ("a.png", sixteen, "image/png")}}),
        "64 CIFAR JPEGs (/predict)": (
            "/predict",
            {"files": [("files", (f"{i}.jpg", d, "image/jpeg")) for i, d in enumerate(jpegs[:64])]},
        ),
        "64 pixel-list instances (TF Serving JSON)": (
            "/v1/models/cifar10:predict",
            {"json": {"instances": [pixels] * 64}},
        ),
        "feature maps, JSON, one image": ("/feature-maps", {"files": {"file": ("a.jpg", jpegs[0], "image/jpeg")}}),
    }


@dataclass
class Probed:
    """One request sent while a keep-alive client asked /healthz every 5 ms."""

    response: httpx.Response
    seconds: float  # the request's own time
    probe_ms: float  # the slowest /healthz answer meanwhile
    probes: int
    rss_growth_mb: float  # the server's peak RSS over its RSS before (VmHWM reset first)


def while_probing(url: str, pid: int, send: Callable[[], httpx.Response], probe_timeout_s: float = 120) -> Probed:
    """Send one request with `send` while probing /healthz, to see what it costs everyone
    else (a stall of the event loop shows as a slow probe)."""
    done = threading.Event()
    probes: list[float] = []

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=probe_timeout_s) as client:
            while not done.is_set():
                t = time.perf_counter()
                client.get("/healthz")
                probes.append(time.perf_counter() - t)
                time.sleep(0.005)

    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = rss_mb(pid, "VmRSS")
    thread = threading.Thread(target=probe)
    thread.start()
    time.sleep(0.2)
    started = time.perf_counter()
    try:
        response = send()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        thread.join()
    return Probed(response, seconds, max(probes) * 1000, len(probes), rss_mb(pid, "VmHWM") - before)


def stall(url: str, pid: int, path: str, kwargs: dict[str, object]) -> tuple[int, float, int, float]:
    p = while_probing(url, pid, lambda: httpx.post(f"{url}{path}", timeout=120, **kwargs), probe_timeout_s=60)  # type: ignore[arg-type]
    return p.response.status_code, p.probe_ms, p.probes, p.rss_growth_mb


def statuses(url: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("cifar10_requests_total{") and 'method="POST"' in line:
            status = line.split('status="')[1].split('"')[0]
            counts[status] = counts.get(status, 0.0) + float(line.split()[-1])
    return counts


def overload(url: str, pid: int, bodies: list[Path], script: Path, duration: float) -> dict[str, object]:
    done = threading.Event()
    healthz: list[float] = []

    def probe() -> None:
        time.sleep(1.0)
        while not done.is_set():
            # curl: a new connection each time, timed by a C client (a Python probe
            # sharing the 2 CPUs measured its own scheduling as much as the server).
            out = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-m", "30", "-w", "%{http_code} %{time_total}", f"{url}/healthz"],
                capture_output=True,
                text=True,
            ).stdout.split()
            healthz.append(float(out[1]) if out and out[0] == "200" else float("inf"))
            time.sleep(0.5)

    before = statuses(url)
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    thread = threading.Thread(target=probe)
    thread.start()
    try:
        result = wrk(url, bodies, script, 512, duration)
    finally:
        done.set()
        thread.join()
    after = statuses(url)
    delta = {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(after) if after.get(k, 0) - before.get(k, 0)}
    return {
        "wrk": result,
        "statuses": delta,
        "healthz_ms": sorted(h * 1000 for h in healthz),
        "peak_rss_mb": rss_mb(pid, "VmHWM"),
    }


@dataclass
class Bench:
    """A started server and what the load of a benchmark needs."""

    url: str
    pid: int
    jpegs: list[bytes]  # the sample images
    script: Path  # wrk's Lua script
    bodies: list[Path]  # one multipart /predict body per sample image


@contextmanager
def served(repo: Path, env: dict[str, str], args: Sequence[str], describe: str) -> Iterator[Bench]:
    """`python -m app` from `repo` with `env` and `args`, the machine and server line
    printed (`describe`: how the server runs), wrk's script and bodies written and the
    server warmed up with them; stopped after the block."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    jpegs = sample_images()
    server = server_process.start(env, args=args, cwd=repo)
    print(
        f"machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), Python {platform.python_version()}; "
        f"server: {repo} at {commit or '?'}, {describe}\n"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
            script = Path(scratch) / "predict.lua"
            script.write_text(WRK_SCRIPT)
            bodies = multipart_bodies(jpegs, Path(scratch))
            wrk(server.url, bodies, script, 8, 2.0)  # warm up
            yield Bench(server.url, server.pid, jpegs, script, bodies)
    finally:
        server_process.stop(server.proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose app/ to serve (A/B)")
    parser.add_argument("--model-dir", default=str(ROOT / "saved_models" / "cifar10"))
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--server-args", default="", help="extra arguments for python -m app, e.g. '--loop uvloop'")
    parser.add_argument("--skip", default="", help="comma-separated: stall,overload,throughput")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    env = {"CIFAR10_MODEL_DIR": args.model_dir, "CIFAR10_LOG_LEVEL": "warning"}
    with served(args.repo, env, args.server_args.split(), f"python -m app {args.server_args}") as bench:
        if "stall" not in skip:
            print("| heavy request | status | slowest /healthz probe ms | probes | peak RSS growth MB |")
            print("|---|---:|---:|---:|---:|")
            for name, (path, kwargs) in heavy_requests(bench.jpegs).items():
                status, worst, n, grown = stall(bench.url, bench.pid, path, kwargs)
                print(f"| {name} | {status} | {worst:.0f} | {n} | {grown:.0f} |", flush=True)
        if "overload" not in skip:
            o = overload(bench.url, bench.pid, bench.bodies, bench.script, args.duration)
            h, w = o["healthz_ms"], o["wrk"]
            assert isinstance(h, list) and isinstance(w, dict)
            print(
                f"\noverload, c=512, {args.duration:g} s: statuses {o['statuses']}, wrk p50 {w['p50']:.0f} ms, p99 {w['p99']:.0f} ms, "
                f"non-2xx or socket errors {w['errors']}; /healthz on a new connection: {len(h)} probes, median {np.median(h):.0f} ms, "
                f"max {max(h):.0f} ms; peak RSS {o['peak_rss_mb']:.0f} MB"
            )
        if "throughput" not in skip:
            t = wrk(bench.url, bench.bodies, bench.script, 64, args.duration)
            print(
                f"\nthroughput, c=64, {args.duration:g} s: {(t['requests'] - t['errors']) / t['seconds']:.1f} req/s, "
                f"p50 {t['p50']:.0f} ms, p99 {t['p99']:.0f} ms, errors {t['errors']}"
            )


if __name__ == "__main__":
    main()
