"""Serving benchmark over runtimes and process designs: starts the service itself for
each configuration (one process, or N front processes and a model process; batching
on or off; tensorflow or jax), drives /predict with scripts/loadgen.py on the same
machine, times the raw model in a process of its own as the ceiling, and writes
table.md, results.json and the server logs under --out.

    python scripts/bench_matrix.py --plan cpu  --out bench/cpu    # 2-core box: tf vs jax, 1 vs 2 fronts, c=64
    python scripts/bench_matrix.py --plan gpu  --out bench/gpu    # 16 cores + GPU: see scripts/gpu_bench.sh
    python scripts/bench_matrix.py --plan tiny --out /tmp/b       # seconds: checks the pipeline end to end

Only the standard library, numpy, Pillow and the service's own dependencies: it runs
where only the serving wheels are installed (the GPU hosts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import server_process  # noqa: E402
from loadgen import jpeg_images, predict_request, run_load  # noqa: E402
from server_process import ServerProcess  # noqa: E402


@dataclass(frozen=True)
class Server:
    label: str
    runtime: str
    workers: int  # 1: one process; N > 1: N fronts + the model process
    max_batch: int  # 1: batching off
    cells: tuple[tuple[int, int], ...]  # (images per request, concurrency)


@dataclass
class Plan:
    servers: list[Server]
    raw: list[tuple[str, int]]  # (runtime, batch) timed in-process
    duration_s: float
    warmup_s: float
    loadgen_processes: int
    extra_env: dict[str, str] = field(default_factory=dict)


def make_plan(name: str, workers: int, loadgen: int | None) -> Plan:
    if name == "gpu":
        single = ((1, 1), (1, 64), (1, 256), (1, 1024), (64, 16))
        return Plan(
            [
                Server("one process, batching on", "jax", 1, 256, single),
                Server("one process, batching off", "jax", 1, 1, ((1, 256),)),
                Server(f"{workers} fronts + model process, batching on", "jax", workers, 256, single),
                Server(f"{workers} fronts + model process, batching off", "jax", workers, 1, ((1, 256),)),
            ],
            [("jax", 256)],
            6.0,
            1.0,
            loadgen or 4,
            # The cells go to c=1024: admission control and the queue must not be what they measure.
            {"CIFAR10_MAX_CONCURRENT_REQUESTS": "4096", "CIFAR10_MAX_QUEUE": "8192"},
        )
    if name == "cpu":
        return Plan(
            [Server(f"{rt}, one process", rt, 1, 64, ((1, 64),)) for rt in ("tensorflow", "jax")]
            + [
                Server(f"{rt}, {workers} fronts + model process", rt, workers, 64, ((1, 64),))
                for rt in ("tensorflow", "jax")
            ],
            [("tensorflow", 64), ("jax", 64)],
            8.0,
            2.0,
            loadgen or 1,
        )
    if name == "tiny":
        return Plan(
            [
                Server("one process, batching on", "jax", 1, 8, ((1, 1), (1, 4), (8, 2))),
                Server("one process, batching off", "jax", 1, 1, ((1, 4),)),
                Server(f"{workers} fronts + model process, batching on", "jax", workers, 8, ((1, 4),)),
            ],
            [("jax", 8)],
            1.0,
            0.5,
            loadgen or 1,
        )
    raise SystemExit(f"unknown plan {name!r}")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except OSError:
        return 0, ""


def mean_batch_counts(url: str) -> tuple[float, float] | None:
    """(images, batches) so far from /metrics; None where the model lives elsewhere."""
    status, text = _get(f"{url}/metrics")
    values = {}
    for line in text.splitlines():
        if line.startswith('cifar10_batch_size_sum{batcher="predict"}') or line.startswith(
            'cifar10_batch_size_count{batcher="predict"}'
        ):
            values[line.split("{")[0]] = float(line.split()[-1])
    if status != 200 or len(values) != 2:
        return None
    return values["cifar10_batch_size_sum"], values["cifar10_batch_size_count"]


def start_server(server: Server, model_dir: Path, logs: Path, env: dict[str, str]) -> ServerProcess:
    environment = {
        **env,
        "CIFAR10_RUNTIME": server.runtime,
        "CIFAR10_MODEL_DIR": str(model_dir),
        "CIFAR10_MAX_BATCH_SIZE": str(server.max_batch),
        "CIFAR10_MAX_QUEUE": "16384",
        "CIFAR10_REQUEST_TIMEOUT_S": "60",
        "CIFAR10_LOG_LEVEL": "warning",
    }
    log = logs / (server.label.replace(" ", "_").replace(",", "").replace("+", "") + ".log")
    try:
        return server_process.start(environment, args=["--workers", str(server.workers)], log=log, ready_timeout_s=900)
    except server_process.ServerError as exc:
        raise SystemExit(f"{server.label}: {exc}") from None


def raw_model(runtime: str, batch: int, duration_s: float, model_dir: Path) -> dict[str, Any]:
    """The model alone at one batch size, in this process: the serving ceiling."""
    import numpy as np

    from app.serving.classifier import Classifier

    classifier = Classifier(model_dir, batch, runtime)  # type: ignore[arg-type]
    model = classifier._runtime
    model.prepare([batch])
    images = np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    for _ in range(3):
        model.predict(images)
    times = []
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        t = time.perf_counter()
        model.predict(images)  # returns numpy: the result is on the host
        times.append(time.perf_counter() - t)
    device = "cpu"
    if runtime == "jax":
        import jax

        device = jax.devices()[0].device_kind
    arr = np.array(times)
    return {
        "runtime": runtime,
        "batch": batch,
        "images_per_s": batch * len(arr) / arr.sum(),
        "device": device,
        "p50_ms": float(np.percentile(arr, 50) * 1000),
        "p99_ms": float(np.percentile(arr, 99) * 1000),
    }


def run_raw(runtime: str, batch: int, duration_s: float, model_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "raw",
            "--runtime",
            runtime,
            "--batch",
            str(batch),
            "--duration",
            str(duration_s),
            "--model-dir",
            str(model_dir),
        ],
        cwd=ROOT,
        env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"raw {runtime} batch {batch} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def fmt(x: float, digits: int = 1) -> str:
    return "-" if x != x else f"{x:,.{digits}f}"  # NaN: no sample


def table(rows: list[dict[str, Any]], raws: list[dict[str, Any]], header: list[str]) -> str:
    lines = [
        *header,
        "",
        "| configuration | runtime | images/request | concurrency | requests/s | images/s | p50 ms | p99 ms | mean batch | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['runtime']} | {r['images']} | {r['concurrency']} | {fmt(r['requests_per_s'])} | "
            f"{fmt(r['images_per_s'])} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {r['mean_batch']} | "
            f"{r['errors']}{' (cell timed out)' if r.get('timed_out') else ''} |"
        )
    for r in raws:
        lines.append(
            f"| raw model in-process ({r['device']}), batch {r['batch']} | {r['runtime']} | {r['batch']} | - | "
            f"{fmt(r['images_per_s'] / r['batch'])} | {fmt(r['images_per_s'])} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {r['batch']} | |"
        )
    return "\n".join(lines) + "\n"


def headline(rows: list[dict[str, Any]], raws: list[dict[str, Any]], concurrency: int) -> list[str]:
    """Ratios at one concurrency: batching on/off per design, multi/one process, on/ceiling."""
    at = {(r["label"], r["images"]): r for r in rows if r["concurrency"] == concurrency}
    single = [r for (label, n), r in at.items() if n == 1]
    on = {r["label"]: r for r in single if "batching off" not in r["label"]}
    off = {r["label"].replace("batching off", "batching on"): r for r in single if "batching off" in r["label"]}
    out = []
    for label, r in on.items():
        if label in off and off[label]["images_per_s"] > 0:
            out.append(
                f"c={concurrency}, {label.replace(', batching on', '')}: batching on / off = {r['images_per_s'] / off[label]['images_per_s']:.2f}x"
            )
    one = [r for label, r in on.items() if "one process" in label and r["runtime"] == "jax"]
    multi = [r for label, r in on.items() if "fronts" in label and r["runtime"] == "jax"]
    if one and multi and one[0]["images_per_s"] > 0:
        out.append(
            f"c={concurrency}, jax: multi-process / one process (batching on) = {multi[0]['images_per_s'] / one[0]['images_per_s']:.2f}x"
        )
    for r in on.values():
        for raw in raws:
            if raw["runtime"] == r["runtime"]:
                out.append(
                    f"c={concurrency}, {r['label']}: {r['images_per_s'] / raw['images_per_s']:.2f}x the raw model at batch {raw['batch']}"
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    raw = sub.add_parser("raw", help="(internal) time the raw model in this process")
    raw.add_argument("--runtime", required=True)
    raw.add_argument("--batch", type=int, required=True)
    raw.add_argument("--duration", type=float, required=True)
    raw.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--plan", choices=["gpu", "cpu", "tiny"], default="cpu")
    parser.add_argument("--out", type=Path, help="folder for table.md, results.json and logs/")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "saved_models" / "cifar10")
    parser.add_argument(
        "--workers", type=int, default=min(8, max(2, (os.cpu_count() or 2) // 2)), help="front processes"
    )
    parser.add_argument("--loadgen-processes", type=int, help="load generator processes (plan default)")
    parser.add_argument("--duration", type=float, help="seconds measured per cell (plan default)")
    args = parser.parse_args()
    if args.command == "raw":
        print(json.dumps(raw_model(args.runtime, args.batch, args.duration, args.model_dir)))
        return
    if args.out is None:
        parser.error("--out is required")
    plan = make_plan(args.plan, args.workers, args.loadgen_processes)
    duration = args.duration or plan.duration_s
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # c=1024 needs more than 1024 descriptors
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    # Later servers with the same shapes reuse the compiled XLA programs.
    # (Outside --out: the device tool copies --out back, and the cache is not a result.)
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / "cifar10-bench-jax-cache"))
    env = {"JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", **plan.extra_env}
    bodies = {
        n: predict_request("127.0.0.1", 0, jpeg_images(n, seed=n))
        for n in {n for s in plan.servers for n, _ in s.cells}
    }
    rows: list[dict[str, Any]] = []
    starts: dict[str, float] = {}
    for server in plan.servers:
        started = start_server(server, args.model_dir, args.out / "logs", env)
        url = started.url
        starts[server.label] = started.start_seconds
        port = int(url.rsplit(":", 1)[1])
        try:
            for images, concurrency in server.cells:
                body = bodies[images].replace(b"Host: 127.0.0.1:0", f"Host: 127.0.0.1:{port}".encode(), 1)
                before = mean_batch_counts(url)
                result = run_load("127.0.0.1", port, body, concurrency, duration, plan.warmup_s, plan.loadgen_processes)
                after = mean_batch_counts(url)
                mean = (
                    "-"
                    if before is None or after is None or after[1] == before[1]
                    else f"{(after[0] - before[0]) / (after[1] - before[1]):.1f}"
                )
                row = {
                    "label": server.label,
                    "runtime": server.runtime,
                    "workers": server.workers,
                    "max_batch": server.max_batch,
                    "images": images,
                    "concurrency": concurrency,
                    **result,
                    "images_per_s": float(result["requests_per_s"]) * images,
                    "mean_batch": mean,
                }
                rows.append(row)
                print(
                    f"{server.label} | {images} img x c={concurrency}: {row['images_per_s']:.1f} img/s, "
                    f"p50 {fmt(float(result['p50_ms']))} ms, p99 {fmt(float(result['p99_ms']))} ms, errors {result['errors']}",
                    flush=True,
                )
        finally:
            server_process.stop(started.proc)
    raws = [run_raw(rt, batch, duration, args.model_dir, env) for rt, batch in plan.raw]
    devices = sorted({r["device"] for r in raws})
    header = [
        f"machine: {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}, device {', '.join(devices)}, "
        f"model {args.model_dir}",
        f"plan {args.plan}: {duration:g} s per cell after {plan.warmup_s:g} s of warm-up, load from scripts/loadgen.py "
        f"({plan.loadgen_processes} processes) on the same machine, max_wait_ms=5; server start-up "
        + ", ".join(f"{k}: {v:.0f} s" for k, v in starts.items()),
    ]
    text = table(rows, raws, header)
    concurrencies = sorted({c for r in rows for c in [r["concurrency"]]})
    key = 256 if 256 in concurrencies else max(concurrencies)
    text += "\n" + "\n".join(headline(rows, raws, key)) + "\n"
    (args.out / "table.md").write_text(text)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "plan": args.plan,
                "header": header,
                "cells": rows,
                "raw": raws,
                "startup_s": starts,
                "args": {k: str(v) for k, v in vars(args).items()},
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
