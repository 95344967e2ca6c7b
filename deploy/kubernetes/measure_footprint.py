"""Measure what the Kubernetes manifests ask for: one replica's start-up time, its
memory after warm-up and under load, its CPU use, and its drain time on SIGTERM.

    python deploy/kubernetes/measure_footprint.py [--duration 20] [--concurrency 64]

Starts `python -m app` (the image's `cifar10-serve`) on a loopback port with the
shipped default model, reads /proc/<pid> for RSS (VmRSS, VmHWM) and CPU time, and
drives bounded single-image /predict and /feature-maps load with wrk (reusing
scripts/bench_serving.py's bodies and Lua script). Prints one JSON object and a table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import server_process  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_serving", ROOT / "scripts" / "bench_serving.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


class Sampler:
    """Peak VmRSS of a process, sampled every 100 ms while a phase runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))
            self._stop.wait(0.1)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def phase(
    proc: subprocess.Popen[bytes], url: str, bodies: list[Path], script: Path, concurrency: int, seconds: float
) -> dict[str, float]:
    cpu_before, wall_before = cpu_seconds(proc.pid), time.monotonic()
    with Sampler(proc.pid) as sampler:
        result = bench.load(url, bodies, script, concurrency, seconds)
    result["cpu_cores"] = (cpu_seconds(proc.pid) - cpu_before) / (time.monotonic() - wall_before)
    result["peak_rss_mib"] = sampler.peak / 1024
    return result


def large_images(proc: subprocess.Popen[bytes], url: str, concurrency: int, rounds: int = 3) -> dict[str, float]:
    """The memory worst case within the default limits: flat 6000x6000 PNGs (36 MP, under
    CIFAR10_MAX_IMAGE_PIXELS, a few KiB on the wire) that Pillow must decode in full."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (6000, 6000), (120, 60, 200)).save(buf, format="PNG")
    body = buf.getvalue()

    def post(_: int) -> int:
        return httpx.post(f"{url}/predict", files={"file": ("big.png", body, "image/png")}, timeout=120).status_code

    with Sampler(proc.pid) as sampler, ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(post, range(concurrency * rounds)))
    return {
        "concurrency": concurrency,
        "png_bytes": len(body),
        "ok": statuses.count(200),
        "requests": len(statuses),
        "peak_rss_mib": sampler.peak / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=str(ROOT / "saved_models" / "cifar10"))
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per phase (bounded)")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    images = bench.sample_images()
    out: dict[str, object] = {
        "machine": f"{os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}"
    }
    env = {"CIFAR10_MODEL_DIR": args.model_dir, "CIFAR10_LOG_LEVEL": "warning"}
    server = server_process.start(env)
    proc, url = server.proc, server.url
    try:
        out["ready_seconds"] = server.start_seconds
        out["warm_rss_mib"] = status_kib(proc.pid, "VmRSS") / 1024
        out["threads"] = len(os.listdir(f"/proc/{proc.pid}/task"))
        with tempfile.TemporaryDirectory(prefix="footprint-") as scratch:
            folder = Path(scratch)
            script = folder / "bench.lua"
            script.write_text(bench.WRK_SCRIPT)
            bodies = bench.multipart_bodies(images, folder)
            out["predict"] = phase(proc, url, bodies, script, args.concurrency, args.duration)
            # /feature-maps: every layer's maps as JSON, the heaviest response the service makes.
            fm_script = folder / "fm.lua"
            fm_script.write_text(bench.WRK_SCRIPT.replace('"/predict"', '"/feature-maps"'))
            out["feature_maps"] = phase(proc, url, bodies, fm_script, 16, args.duration / 2)
        out["large_images"] = large_images(proc, url, concurrency=4)
        out["after_load_rss_mib"] = status_kib(proc.pid, "VmRSS") / 1024
        out["peak_rss_mib"] = status_kib(proc.pid, "VmHWM") / 1024
        # Drain: SIGTERM with load in flight; time until the process exits.
        with tempfile.TemporaryDirectory(prefix="footprint-") as scratch:
            folder = Path(scratch)
            script = folder / "bench.lua"
            script.write_text(bench.WRK_SCRIPT)
            bodies = bench.multipart_bodies(images, folder)
            env = {**os.environ, "BENCH_BODIES": ";".join(str(b) for b in bodies)}
            wrk = subprocess.Popen(
                ["wrk", "-t1", f"-c{args.concurrency}", "-d5s", "-s", str(script), url],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(2)
            term = time.monotonic()
            proc.terminate()
            proc.wait(timeout=60)
            out["sigterm_to_exit_seconds"] = time.monotonic() - term
            wrk.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(json.dumps(out, indent=2))
    print(
        f"\nready after {out['ready_seconds']:.1f} s; RSS warm {out['warm_rss_mib']:.0f} MiB, "
        f"after load {out['after_load_rss_mib']:.0f} MiB, peak (VmHWM) {out['peak_rss_mib']:.0f} MiB; "
        f"SIGTERM to exit {out['sigterm_to_exit_seconds']:.1f} s"
    )
    print("| load | concurrency | requests/s | p99 ms | CPU cores used | peak RSS MiB | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, c in (("predict", args.concurrency), ("feature_maps", 16)):
        r = out[name]
        assert isinstance(r, dict)
        print(
            f"| /{name.replace('_', '-')} | {c} | {r['rps']:.1f} | {r['p99']:.0f} | {r['cpu_cores']:.2f} | {r['peak_rss_mib']:.0f} | {r['errors']:.0f} |"
        )
    big = out["large_images"]
    assert isinstance(big, dict)
    print(
        f"| /predict, 36 MP PNGs | {big['concurrency']} | | | | {big['peak_rss_mib']:.0f} | {big['requests'] - big['ok']} |"
    )


if __name__ == "__main__":
    main()
