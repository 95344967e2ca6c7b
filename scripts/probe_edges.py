"""Issue 27's edge cases against a real `python -m app`, from a checkout (this one, or
`--repo` for the code before a change): Unicode digits, odd version folders, a float
image, the HTTP parser's own errors, a redirect built from the Host header, and a
supervisor killed by SIGKILL. Prints one table: case, what came back.

    python scripts/probe_edges.py [--repo PATH]

tests/reliability/test_edges.py asserts the expected column with the same functions.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server_process

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "saved_models" / "cifar10"


def float_tiff() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64), "F").save(buf, format="TIFF")
    return buf.getvalue()


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 20, 200)).save(buf, format="PNG")
    return buf.getvalue()


@contextmanager
def server(repo: Path, log: Path, *args: str, **env: str) -> Iterator[server_process.ServerProcess | None]:
    """`python -m app` from `repo` (scripts/server_process.py), or None if it exits
    during start-up (the caller reads `log`)."""
    try:
        started = server_process.start(
            {"CIFAR10_MODEL_DIR": str(SHIPPED), "CIFAR10_LOG_LEVEL": "warning", **env}, args=args, log=log, cwd=repo
        )
    except server_process.ServerError:
        yield None
        return
    try:
        yield started
    finally:
        server_process.stop(started.proc)


# Raw HTTP on a new connection; the probe's malformed requests are answered at once.
raw = partial(server_process.raw_exchange, timeout_s=10.0)


def shape(response: bytes) -> str:
    """'<status> <content type>' of a raw HTTP response."""
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    status = head.split(" ", 2)[1] if head.startswith("http/1.1 ") else "none"
    kind = next((line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.startswith("content-type:")), "")
    return f"{status} {kind.split(';')[0]}".strip()


def request_cases(url: str) -> dict[str, str]:
    """Each request case -> what came back (status, and the detail that matters)."""
    out: dict[str, str] = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        upload = {"file": ("a.png", png(), "image/png")}
        r = client.post("/explain", params={"class": "²", "map": "saliency"}, files=upload)
        try:
            follow = str(client.get("/healthz").status_code)
        except httpx.TransportError as exc:
            follow = type(exc).__name__
        out["/explain?class=² (then /healthz on the same connection)"] = f"{r.status_code}, then {follow}"
        r = client.post("/explain", params={"class": "٣", "map": "saliency"}, files=upload)
        detail = r.json().get("target", {}).get("class_id") if r.status_code == 200 else r.json()["error"]["code"]
        out["/explain?class=٣ (Arabic-Indic three)"] = f"{r.status_code} {detail}"
        out["/predict?version=٣"] = str(client.post("/predict", params={"version": "٣"}, files=upload).status_code)
        out["GET /v1/models/cifar10/versions/٣"] = str(client.get("/v1/models/cifar10/versions/٣").status_code)
        r = client.post("/predict", files={"file": ("f.tif", float_tiff(), "image/tiff")})
        out["float TIFF (mode F)"] = f"{r.status_code}" + (
            "" if r.status_code == 200 else f" {r.json()['error']['message'][-40:]}"
        )
        r = client.get("/v1/models/", headers={"Host": "evil.example"})
        out["GET /v1/models/ with Host: evil.example"] = f"{r.status_code} location={r.headers.get('location')}"
    out["malformed request line"] = shape(raw(url, b"GET / HTTP/1.1 x\r\nHost: a\r\n\r\n"))
    out["invalid header name"] = shape(raw(url, b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n"))
    chunked = b"POST /predict HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    out["bad chunk size"] = shape(raw(url, chunked))
    return out


FOLDERS = {
    "base path: 2 and ²": ("²",),
    "base path: 2 and 008": ("008",),
    "base path: 2 and 9 (a link to version 6, outside the base path)": ("9",),
}


def model_folder(root: Path, extra: str) -> Path:
    """A base path holding version 2 (a copy of shipped version 4) and `extra`: `²` (an
    empty folder), `008` (another copy) or `9` (a link to shipped version 6)."""
    base = root / "cifar10"
    base.mkdir(parents=True)
    shutil.copytree(SHIPPED / "4", base / "2")
    if extra == "9":
        os.symlink(SHIPPED / "6", base / "9")
    elif extra == "008":
        shutil.copytree(SHIPPED / "4", base / "008")
    else:
        (base / extra).mkdir()
    return base


def folder_cases(repo: Path, scratch: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, (name, (extra,)) in enumerate(FOLDERS.items()):
        base = model_folder(scratch / f"models-{i}", extra)
        log = scratch / f"folder-{i}.log"
        with server(repo, log, CIFAR10_MODEL_DIR=str(base)) as started:
            if started is None:
                text = log.read_text(errors="replace")
                out[name] = "stopped at start-up" + (", with a traceback" if "Traceback" in text else "")
                continue
            url = started.url
            status = httpx.get(f"{url}/v1/models/cifar10", timeout=30).json()
            served = [s["version"] for s in status["model_version_status"]]
            r = httpx.post(f"{url}/predict", files={"file": ("a.png", png(), "image/png")}, timeout=30)
            skipped = [s["folder"] for s in status.get("skipped_folders", [])]
            out[name] = f"status lists {served}, /predict says {r.json()['model']['version']!r}, skipped {skipped}"
    return out


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def orphans(repo: Path, scratch: Path, wait_s: float = 60.0) -> dict[str, object]:
    """`--workers 2`, SIGKILL to the supervisor: how long until no child is left and the
    port is free (or what is left after `wait_s`). Leftovers are killed afterwards."""
    with server(repo, scratch / "workers.log", "--workers", "2", "--graceful-timeout", "5") as started:
        assert started is not None, (scratch / "workers.log").read_text()[-3000:]
        proc, port = started.proc, int(started.url.rsplit(":", 1)[1])
        children = _descendants(proc.pid)
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        while time.monotonic() - killed < wait_s:
            left = {pid for pid in children if _alive(pid)}
            if not left and _port_free(port):
                break
            time.sleep(0.2)
        result = {
            "children": len(children),
            "left": len({pid for pid in children if _alive(pid)}),
            "port free": _port_free(port),
            "seconds": round(time.monotonic() - killed, 1),
        }
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose app/ to serve (A/B)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        scratch = Path(tmp)
        rows: dict[str, object] = {}
        with server(args.repo, scratch / "server.log") as started:
            assert started is not None, (scratch / "server.log").read_text()[-3000:]
            rows.update(request_cases(started.url))
        rows.update(folder_cases(args.repo, scratch))
        rows["--workers 2, supervisor SIGKILLed"] = orphans(args.repo, scratch)
    print(f"server: {args.repo}\n\n| case | outcome |\n|---|---|")
    for case, outcome in rows.items():
        print(f"| {case} | {outcome} |")


if __name__ == "__main__":
    main()
