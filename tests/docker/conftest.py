"""A Docker daemon of the tests' own, the images, and the compose stack on loopback.

The daemon runs with --bridge=none --iptables=false so that no container gets an
address of its own; images build with --network host from the debootstrap stand-in
base (docker/base/build-base.sh); the compose override docker/compose.hostnet.yml
puts every container on the host's network, each on its own 127.0.0.1 port. The
fixtures stop what they started: containers, then the daemon and its containerd.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scripts.server_process import free_port
from tests.conftest import ROOT

BASE_IMAGE = "cifar10-base:bookworm"
TAG = "ci"
PROJECT = "cifar10ci"
# The data root persists between runs on one machine, so the base image and the
# dependency layers are built once; a fresh CI machine builds everything.
DATA_ROOT = Path(os.environ.get("CIFAR10_DOCKER_ROOT", "/var/lib/cifar10-docker"))
RUN_DIR = Path("/run/cifar10-docker")
SOCKET = RUN_DIR / "docker.sock"
TOOLS = {"dockerd": "docker.io", "docker-compose": "docker-compose", "debootstrap": "debootstrap"}


def _ensure_tools() -> None:
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        pytest.fail(f"the docker tests need root to install {', '.join(missing)} and run dockerd")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env)


def _docker_cli() -> str:
    # Debian's client matches Debian's daemon; another client on PATH may be newer.
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker") or "docker"


@dataclass
class Docker:
    cli: str
    env: dict[str, str]
    logs: Path

    def exec(
        self,
        cmd: list[str],
        *,
        timeout: float = 600,
        check: bool = True,
        log: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` from the repository root; with `log`, its output goes to a file
        under `logs` (long builds), else it is captured. `check` fails the test with
        the output's tail."""
        env = {**self.env, **(env or {})}
        if log:
            with (self.logs / log).open("w") as out:
                proc = subprocess.run(
                    cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout
                )
            output = (self.logs / log).read_text()
        else:
            proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            output = f"{proc.stdout}\n{proc.stderr}"
        if check and proc.returncode:
            pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-4000:]}")
        return proc

    def run(
        self, *args: str, timeout: float = 600, check: bool = True, log: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.exec([self.cli, *args], timeout=timeout, check=check, log=log)

    def compose(
        self, *args: str, timeout: float = 600, log: str | None = None, files: tuple[Path, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        files = files or (self.logs / "compose.json",)
        cmd = [
            "docker-compose",
            "-p",
            PROJECT,
            *(a for f in files for a in ("-f", str(f))),
            "--profile",
            "scaled",
            *args,
        ]
        return self.exec(cmd, timeout=timeout, log=log)


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    """Our own dockerd on a private socket, stopped (with its containerd) afterwards."""
    _ensure_tools()
    logs = tmp_path_factory.mktemp("docker-logs")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}", "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0"}
    d = Docker(_docker_cli(), env, logs)
    _stop_stale_daemon(d)
    with (logs / "dockerd.log").open("w") as out:
        daemon = subprocess.Popen(
            [
                "dockerd",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--data-root",
                str(DATA_ROOT),
                "--exec-root",
                str(RUN_DIR / "exec"),
                "--pidfile",
                str(RUN_DIR / "dockerd.pid"),
                "-H",
                f"unix://{SOCKET}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while d.run("version", check=False, timeout=30).returncode:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start:\n{(logs / 'dockerd.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield d
    finally:
        leftover = d.run("ps", "-aq", check=False, timeout=60).stdout.split()
        if leftover:
            d.run("rm", "-f", *leftover, check=False, timeout=120)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        # dockerd stops the containerd it started; wait for it to be gone too.
        deadline = time.monotonic() + 30
        while _processes_under(RUN_DIR) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not leftover, f"containers left behind: {leftover}"
        assert not _processes_under(RUN_DIR), f"processes left behind: {_processes_under(RUN_DIR)}"


def _stop_stale_daemon(d: Docker) -> None:
    """A run killed before its teardown leaves its daemon and containers: remove them."""
    try:
        pid = int((RUN_DIR / "dockerd.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return
    stale = d.run("ps", "-aq", check=False, timeout=60).stdout.split()
    if stale:
        d.run("rm", "-f", *stale, check=False, timeout=120)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _processes_under(RUN_DIR) and time.monotonic() < deadline:
        time.sleep(0.5)


DAEMON_PROGRAMS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "docker-proxy")


def _processes_under(path: Path) -> list[str]:
    """Docker's own processes (dockerd, containerd, shims) whose command line mentions `path`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if Path(cmdline.split(" ", 1)[0]).name in DAEMON_PROGRAMS and str(path) in cmdline:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


@pytest.fixture(scope="session")
def images(docker: Docker) -> dict[str, str]:
    """The stand-in base (once per data root), the service image and the nginx image."""
    if docker.run("image", "inspect", BASE_IMAGE, check=False).returncode:
        docker.exec(
            [str(ROOT / "docker/base/build-base.sh"), BASE_IMAGE],
            env={"DOCKER": docker.cli},
            timeout=1200,
            log="base.log",
        )
    service, nginx = f"cifar10-service:{TAG}", f"cifar10-nginx:{TAG}"
    docker.run(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "-t",
        service,
        str(ROOT),
        timeout=1800,
        log="build-service.log",
    )
    docker.run(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "-f",
        str(ROOT / "docker/nginx/Dockerfile"),
        "-t",
        nginx,
        str(ROOT),
        timeout=900,
        log="build-nginx.log",
    )
    return {"service": service, "nginx": nginx}


@dataclass
class Stack:
    api: str
    api_2: str
    lb: str
    ports: dict[str, int]  # API_PORT, API_2_PORT, LB_PORT, API_GRPC_PORT, API_2_GRPC_PORT

    @property
    def api_grpc(self) -> str:
        """api's gRPC address (TF Serving's API and grpc.health.v1)."""
        return f"127.0.0.1:{self.ports['API_GRPC_PORT']}"

    def container(self, service: str) -> str:
        return f"{PROJECT}_{service}_1"


@pytest.fixture(scope="session")
def stack(docker: Docker, images: dict[str, str]) -> Iterator[Stack]:
    """api, api-2 and nginx from docker-compose.yml with the host-network override; each
    replica's HTTP and gRPC on a loopback port of its own."""
    names = ("API_PORT", "API_2_PORT", "LB_PORT", "API_GRPC_PORT", "API_2_GRPC_PORT")
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(names):  # five distinct free ports
        ports = {name: free_port() for name in names}
    docker.env.update({k: str(v) for k, v in ports.items()}, CIFAR10_IMAGE_TAG=TAG)
    s = Stack(*(f"http://127.0.0.1:{ports[k]}" for k in ("API_PORT", "API_2_PORT", "LB_PORT")), ports=ports)
    _render_hostnet_stack(docker)
    try:
        docker.compose("up", "-d", "--no-build", timeout=900, log="compose-up.log")
        deadline = time.monotonic() + 300
        while not _ready(s.lb):
            if time.monotonic() > deadline:
                pytest.fail("the stack did not become ready:\n" + docker.compose("logs", "--tail", "40").stdout[-6000:])
            time.sleep(1)
        yield s
    finally:
        docker.compose("logs", "--no-color", timeout=120, log="compose-logs.log")
        docker.compose("down", "--remove-orphans", "--timeout", "40", timeout=300, log="compose-down.log")


def _render_hostnet_stack(docker: Docker) -> None:
    """docker-compose.yml + docker/compose.hostnet.yml, resolved, without published ports.

    Compose merges `ports` lists rather than replacing them, and Docker refuses port
    bindings on the host network, so the override alone cannot drop them.
    """
    import yaml

    rendered = docker.compose("config", files=(ROOT / "docker-compose.yml", ROOT / "docker/compose.hostnet.yml")).stdout
    config = yaml.safe_load(rendered)
    for service in config["services"].values():
        service.pop("ports", None)
    # JSON is YAML: compose reads it as it is.
    (docker.logs / "compose.json").write_text(json.dumps(config, indent=2))


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=3).status_code == 200
    except httpx.TransportError:
        return False
