"""The reliability suite's server and its figures.

One real server (`python -m app`, the container's command, so app/web/http_limits.py's limits
apply) on a loopback port for the module; every test adds its figures to FIGURES,
which the session writes to test-artifacts/reliability.json for docs/reliability.md.
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.server_process import running
from tests.conftest import ROOT, SHIPPED

FIGURES: dict[str, Any] = {}
# Short head/body deadlines so the slow-client cases finish quickly.
SERVER_ENV = {"CIFAR10_HEADER_TIMEOUT_S": "2", "CIFAR10_BODY_TIMEOUT_S": "2", "CIFAR10_LOG_LEVEL": "info"}


class Server:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    def status_counts(self) -> dict[str, float]:
        """Requests by status so far, from /metrics."""
        counts: dict[str, float] = {}
        for line in httpx.get(f"{self.url}/metrics", timeout=30).text.splitlines():
            if line.startswith("cifar10_requests_total{"):
                status = line.split('status="')[1].split('"')[0]
                counts[status] = counts.get(status, 0.0) + float(line.split()[-1])
        return counts

    def rss_mb(self, field: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field}")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # resets VmHWM (Linux)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("reliability") / "server.log"
    with running({"CIFAR10_MODEL_DIR": str(SHIPPED), **SERVER_ENV}, log=log) as started:
        yield Server(started.url, started.proc, log)


@pytest.fixture(scope="session", autouse=True)
def write_figures() -> Iterator[None]:
    yield
    out = ROOT / "test-artifacts" / "reliability.json"
    out.parent.mkdir(exist_ok=True)
    FIGURES["machine"] = (
        f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPUs, Python {platform.python_version()}"
    )
    out.write_text(json.dumps(FIGURES, indent=2) + "\n")
