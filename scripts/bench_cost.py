"""What one small request can cost the service, and what slow-to-parse images do to
everyone else (issue 27), against a real `python -m app` on loopback, started from a
checkout (this one, or `--repo` for the code before a change).

    python scripts/bench_cost.py [--repo PATH] [--skip amplify,decode,mix] [--server-env K=V,...]

1. amplify: each request alone while a keep-alive client polls /healthz every 5 ms:
   status, request and answer bytes, seconds, the slowest probe (how long the event
   loop was held) and the server's peak RSS growth (VmHWM over the RSS before).
2. decode: each slow-structure file (scripts/hostile_files.py) alone: status, seconds.
3. mix: wrk at concurrency 8 on single-image /predict for --duration seconds, alone,
   then again while three slow files arrive together 2 s in: the normal requests'
   p50/p99 and statuses, and what the slow files got.

Loopback only; wrk (apt-get install wrk) drives the normal load. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import base64
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hostile import served, statuses, while_probing
from bench_serving import wrk
from hostile_files import (
    SLOW_FILES,
    jpeg_empty_markers,
    jpeg_many_scans,
    png_many_chunks,
    repeated_key_url,
    repeated_layers_url,
)

ROOT = Path(__file__).resolve().parents[1]
MIX_FILES = (jpeg_empty_markers, jpeg_many_scans, png_many_chunks)


def amplifiers(jpeg: bytes) -> dict[str, tuple[str, dict[str, object]]]:
    """name -> (URL path with query, httpx arguments)."""
    one = {"files": {"file": ("a.jpg", jpeg, "image/jpeg")}}
    b64 = base64.b64encode(jpeg).decode()
    image = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}
    return {
        "/feature-maps, JSON, all layers (reference)": ("/feature-maps", one),
        "/feature-maps?layers=stem,stem,... (1.4 KB URL)": (repeated_layers_url(), one),
        "/feature-maps?layers=stem&layers=stem&... (1.4 KB URL)": (
            repeated_key_url("/feature-maps", "layers", "stem"),
            one,
        ),
        "/explain?map=saliency&map=saliency&... (1.4 KB URL)": (
            repeated_key_url("/explain", "map", "saliency"),
            one,
        ),
        "/explain?scale=16, JSON, every map": ("/explain?scale=16", one),
        ":predict, signature explain, 64 b64 JPEGs": (
            "/v1/models/cifar10:predict",
            {"json": {"signature_name": "explain", "instances": [{"b64": b64}] * 64}},
        ),
        "/v2 infer, JSON, output stem named 90 times (3 KB body)": (
            "/v2/models/cifar10/infer",
            {"json": {"inputs": [image], "outputs": [{"name": "stem"}] * 90}},
        ),
    }


def request_bytes(path: str, kwargs: dict[str, object]) -> int:
    request = httpx.Request("POST", f"http://h{path}", **kwargs)  # type: ignore[arg-type]
    return len(path) + len(request.read())


def amplify(url: str, pid: int, path: str, kwargs: dict[str, object]) -> dict[str, float]:
    p = while_probing(url, pid, lambda: httpx.post(f"{url}{path}", timeout=300, **kwargs))  # type: ignore[arg-type]
    return {
        "status": p.response.status_code,
        "request": request_bytes(path, kwargs),
        "answer": len(p.response.content),
        "seconds": p.seconds,
        "probe_ms": p.probe_ms,
        "rss_mb": p.rss_growth_mb,
    }


def post_file(url: str, data: bytes, out: list[tuple[int, float]]) -> None:
    started = time.perf_counter()
    try:
        status = httpx.post(f"{url}/predict", files={"file": ("x", data)}, timeout=120).status_code
    except httpx.TransportError:
        status = 0
    out.append((status, time.perf_counter() - started))


def mix(url: str, bodies: list[Path], script: Path, duration: float, slow: list[bytes]) -> dict[str, object]:
    before = statuses(url)
    answers: list[tuple[int, float]] = []

    def send_slow() -> None:
        time.sleep(2.0)
        threads = [threading.Thread(target=post_file, args=(url, data, answers)) for data in slow]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    sender = threading.Thread(target=send_slow)
    if slow:
        sender.start()
    result = wrk(url, bodies, script, 8, duration)
    if slow:
        sender.join()
    after = statuses(url)
    delta = {k: int(after[k] - before.get(k, 0)) for k in sorted(after) if after[k] - before.get(k, 0)}
    return {"wrk": result, "statuses": delta, "slow": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose app/ to serve (A/B)")
    parser.add_argument("--model-dir", default=str(ROOT / "saved_models" / "cifar10"))
    parser.add_argument("--duration", type=float, default=12.0, help="seconds of each mix run")
    parser.add_argument("--skip", default="", help="comma-separated: amplify,decode,mix")
    parser.add_argument("--server-env", default="", help="extra CIFAR10_* settings, e.g. CIFAR10_DECODE_THREADS=2")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    env = dict(kv.split("=", 1) for kv in args.server_env.split(",") if kv)
    server_env = {"CIFAR10_MODEL_DIR": args.model_dir, "CIFAR10_LOG_LEVEL": "warning", **env}
    with served(args.repo, server_env, (), str(env or "default settings")) as bench:
        if "amplify" not in skip:
            print(
                "| request | status | request bytes | answer bytes | seconds | slowest /healthz ms | peak RSS growth MB |"
            )
            print("|---|---:|---:|---:|---:|---:|---:|")
            for name, (path, kwargs) in amplifiers(bench.jpegs[0]).items():
                a = amplify(bench.url, bench.pid, path, kwargs)
                print(
                    f"| {name} | {a['status']} | {a['request']:,} | {a['answer']:,} | {a['seconds']:.2f} "
                    f"| {a['probe_ms']:.0f} | {a['rss_mb']:.0f} |",
                    flush=True,
                )
        if "decode" not in skip:
            print("\n| slow-structure file | MB | status | seconds |")
            print("|---|---:|---:|---:|")
            for name, make in SLOW_FILES.items():
                data, out = make(), []
                post_file(bench.url, data, out)
                print(f"| {name} | {len(data) / 1e6:.1f} | {out[0][0]} | {out[0][1]:.2f} |", flush=True)
        if "mix" not in skip:
            slow = [make() for make in MIX_FILES]
            print(
                "\n| single-image /predict, c=8 | requests | p50 ms | p99 ms | non-2xx | server statuses (POST) | slow files: status, s |"
            )
            print("|---|---:|---:|---:|---:|---|---|")
            for name, files in [("alone", []), ("3 slow files arrive at 2 s", slow)]:
                m = mix(bench.url, bench.bodies, bench.script, args.duration, files)
                w = m["wrk"]
                assert isinstance(w, dict) and isinstance(m["slow"], list)
                got = ", ".join(f"{s} in {t:.1f}" for s, t in m["slow"]) or "-"
                print(
                    f"| {name} | {w['requests']:.0f} | {w['p50']:.0f} | {w['p99']:.0f} | {w['errors']:.0f} "
                    f"| {m['statuses']} | {got} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
