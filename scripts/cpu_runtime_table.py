"""Which model and runtime to serve on a CPU: for each shipped model x runtime, in one
run on this machine, validation accuracy (plain and TTA), the runtime's raw images/s at
batch 64, the service's requests/s and p99 at 64 concurrent single-image /predict
requests, its resident memory, and where the cores' time went during that load.

    flock -x /tmp/cpu.lock .venv/bin/python scripts/cpu_runtime_table.py \
        [--versions 4,5,6] [--runtimes tensorflow,jax,openvino-float32,openvino] \
        [--duration 10] [--json out.json] [--plot docs/cpu-runtimes.png]

Accuracy is read from each card's `openvino.validation` record, which
`python -m training quantize` recomputed on the 5,000 validation images of the card's
split (tensorflow: the SavedModel; jax serves the Keras archive, which the card's
`export.keras_archive` record shows within 1e-5 of the SavedModel, so it shows the
SavedModel's figures). Raw: the runtime the service loads (app.serving.runtimes), in a
process of its own, called on one batch of 64 real images. Service: `python -m app` (the
image's command) with CIFAR10_RUNTIME set and every other setting at its default, loaded
by wrk through scripts/bench_serving.py's helpers. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import server_process
from bench_serving import WRK_SCRIPT, batch_stats, load, multipart_bodies, sample_images

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "saved_models" / "cifar10"
RUNTIMES = ("tensorflow", "jax", "openvino-float32", "openvino")
ACCURACY_RECORD = {"tensorflow": "tensorflow", "jax": "tensorflow", "openvino-float32": "float32", "openvino": "int8"}
CONCURRENCY = 64
TICKS = os.sysconf("SC_CLK_TCK")

# The raw ceiling, in a process of its own: the service's own runtime, batch 64.
RAW = """
import json, sys, time
from pathlib import Path
import numpy as np
from app.imaging.decode import decode_image
from app.serving.runtimes import load_runtime
from bench_serving import sample_images

path, runtime, seconds = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
layers = list(json.loads((path / "model_card.json").read_text())["feature_layers"])
model = load_runtime(runtime, path, layers)
model.prepare([64])
batch = np.stack([decode_image(data, 10**8) for data in sample_images(64)])
for _ in range(3):
    model.predict(batch)
n, started = 0, time.perf_counter()
while time.perf_counter() - started < seconds:
    model.predict(batch)
    n += 64
print(json.dumps({"images_per_s": n / (time.perf_counter() - started)}))
"""


def raw_rate(version: Path, runtime: str, seconds: float) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'scripts'}"}
    if runtime == "jax":
        env["KERAS_BACKEND"] = "jax"
    done = subprocess.run(
        [sys.executable, "-c", RAW, str(version), runtime, str(seconds)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"raw {runtime} on {version}: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["images_per_s"])


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each thread of `pid`."""
    result = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        result[int(tid)] = (int(fields[11]) + int(fields[12])) / TICKS
    return result


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def model_seconds(url: str) -> float:
    import httpx

    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith('cifar10_model_seconds_sum{batcher="predict"}'):
            return float(line.split()[-1])
    return 0.0


def service_row(
    version: Path, runtime: str, bodies: list[Path], script: Path, duration: float, extra_env: dict[str, str]
) -> dict[str, Any]:
    """Requests/s, latency, memory and the CPU split of one server under c=64."""
    env = {"CIFAR10_MODEL_DIR": str(version), "CIFAR10_RUNTIME": runtime, "CIFAR10_LOG_LEVEL": "warning", **extra_env}
    if runtime == "jax":
        env["KERAS_BACKEND"] = "jax"
    server = server_process.start(env, ready_timeout_s=900)
    try:
        load(server.url, bodies, script, 8, 2.0)  # warm the code paths
        before_cpu, before_model, before_batch = (
            thread_cpu(server.pid),
            model_seconds(server.url),
            batch_stats(server.url),
        )
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        result = load(server.url, bodies, script, CONCURRENCY, duration)
        wall = time.monotonic() - started
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        after_cpu, after_model, after_batch = thread_cpu(server.pid), model_seconds(server.url), batch_stats(server.url)
        result["rss_mb"] = resident_mb(server.pid)
    finally:
        server_process.stop(server.proc)
    used = {tid: after_cpu[tid] - before_cpu.get(tid, 0.0) for tid in after_cpu}
    loop = used.pop(server.pid, 0.0)  # the main thread runs the event loop: HTTP, parsing, responses
    batches = after_batch[1] - before_batch[1]
    result.update(
        {
            "batch": (after_batch[0] - before_batch[0]) / batches if batches else float("nan"),
            "start_s": server.start_seconds,
            # Shares of the machine's cores over the load's wall time.
            "cpu": {
                "event_loop": loop / wall,
                "other_threads": sum(used.values()) / wall,  # inference (the model's own threads) and decoding
                "model_busy": (after_model - before_model) / wall,  # the inference thread's time inside model calls
                "load_generator": (wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime - wrk_before.ru_stime)
                / wall,
            },
        }
    )
    return result


def cpu_name() -> str:
    """The CPU's model name and the flags that decide int8's speed (VNNI, AMX)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in ("avx2", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{name or platform.machine()}; {' '.join(wanted) or 'no AVX2'}"


def accuracy(version: Path, runtime: str) -> dict[str, float]:
    card = json.loads((version / "model_card.json").read_text())
    record = card.get("openvino", {}).get("validation", {}).get(ACCURACY_RECORD[runtime])
    return record or {"accuracy": float("nan"), "accuracy_tta": float("nan")}


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"tensorflow": "o", "jax": "s", "openvino-float32": "^", "openvino": "D"}
    for runtime in markers:
        mine = [r for r in rows if r["runtime"] == runtime]
        if mine:
            ax.scatter(
                [r["service"]["rps"] for r in mine],
                [100 * r["accuracy"]["accuracy"] for r in mine],
                marker=markers[runtime],
                s=60,
                label=runtime if runtime != "openvino" else "openvino (int8)",
            )
    for version in sorted({r["version"] for r in rows}):
        mine = sorted((r for r in rows if r["version"] == version), key=lambda r: r["service"]["rps"])
        xs, ys = [r["service"]["rps"] for r in mine], [100 * r["accuracy"]["accuracy"] for r in mine]
        ax.plot(xs, ys, color="grey", linewidth=0.8, zorder=0)  # one model's runtimes
        ax.annotate(f"cifar10/{version}", (xs[0], ys[0]), textcoords="offset points", xytext=(-8, 8), fontsize=9)
    ax.set_xlabel(f"service images/s (single-image /predict, {CONCURRENCY} concurrent)")
    ax.set_ylabel("validation accuracy, % (no TTA)")
    ax.set_title(f"CPU serving: accuracy against throughput ({os.cpu_count()} cores)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", default="4,5,6")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per row (bounded)")
    parser.add_argument("--raw-seconds", type=float, default=5.0, help="seconds of raw batch-64 calls per row")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for every server (repeatable)"
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the raw measurement (service rows only)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--from-json", type=Path, help="measure nothing: print (and plot) the rows of an earlier --json"
    )
    parser.add_argument("--plot", type=Path, help="also draw accuracy against service images/s here (PNG)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("the load comes from wrk: apt-get install wrk")
    extra_env = dict(item.split("=", 1) for item in args.env)
    rows = json.loads(args.from_json.read_text()) if args.from_json else []
    with tempfile.TemporaryDirectory(prefix="cpu-table-") as scratch:
        script = Path(scratch) / "predict.lua"
        script.write_text(WRK_SCRIPT)
        bodies = multipart_bodies(sample_images(), Path(scratch))
        for version in [] if args.from_json else (MODELS / v for v in args.versions.split(",")):
            for runtime in args.runtimes.split(","):
                row = {"version": version.name, "runtime": runtime, "accuracy": accuracy(version, runtime)}
                row["raw"] = float("nan") if args.no_raw else raw_rate(version, runtime, args.raw_seconds)
                row["service"] = service_row(version, runtime, bodies, script, args.duration, extra_env)
                rows.append(row)
                s = row["service"]
                print(
                    f"  cifar10/{version.name} {runtime:<17} raw {row['raw']:7.1f}/s  service {s['rps']:7.1f}/s "
                    f"p99 {s['p99']:6.1f} ms  {s['rss_mb']:5.0f} MB  cpu {s['cpu']}",
                    file=sys.stderr,
                    flush=True,
                )
    if args.json and not args.from_json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.plot:
        plot(rows, args.plot)

    print(f"\nmachine: {os.cpu_count()} CPUs ({cpu_name()}), Python {platform.python_version()}")
    print(
        f"service: python -m app, {', '.join(args.env) or 'defaults'}; wrk, single-image /predict, c={CONCURRENCY}, {args.duration:g} s per row\n"
    )
    print(
        "| model | runtime | val acc | val acc TTA | raw img/s (b=64) | service req/s | p99 ms | service / raw "
        "| mean batch | RSS MB | cores: event loop / other threads / model busy / wrk |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        s, c = r["service"], r["service"]["cpu"]
        print(
            f"| cifar10/{r['version']} | {r['runtime']} | {100 * r['accuracy']['accuracy']:.2f}% "
            f"| {100 * r['accuracy']['accuracy_tta']:.2f}% | {r['raw']:.0f} | {s['rps']:.0f} | {s['p99']:.0f} "
            f"| {s['rps'] / r['raw']:.2f} | {s['batch']:.1f} | {s['rss_mb']:.0f} "
            f"| {c['event_loop']:.2f} / {c['other_threads']:.2f} / {c['model_busy']:.2f} / {c['load_generator']:.2f} |"
        )


if __name__ == "__main__":
    main()
