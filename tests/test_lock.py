"""The lock files against pyproject.toml: every requirement that applies on the platform
they are resolved for (Linux x86_64, Python 3.11) is pinned to a version it allows, so a
change to pyproject.toml without `make lock` fails here; and each image's lock pins the
versions the dev lock pins, so the image runs what the tests ran."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

LOCKS = ROOT / "requirements"
PLATFORM = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "platform_machine": "x86_64",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

spec = importlib.util.spec_from_file_location("requirements", ROOT / "docker" / "requirements.py")
assert spec is not None and spec.loader is not None
docker_requirements = importlib.util.module_from_spec(spec)
spec.loader.exec_module(docker_requirements)


def pins(path: Path) -> dict[str, str]:
    text = path.read_text()
    return {canonicalize_name(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def with_extras(names: list[str]) -> list[Requirement]:
    """pyproject's dependencies plus those of the named extras, self-references expanded."""
    out = [Requirement(r) for r in PROJECT["dependencies"]]
    todo = list(names)
    while todo:
        for text in PROJECT["optional-dependencies"][todo.pop()]:
            req = Requirement(text)
            if canonicalize_name(req.name) == canonicalize_name(PROJECT["name"]):
                todo += sorted(req.extras)
            else:
                out.append(req)
    return out


CASES = {
    "dev.lock": with_extras(["dev"]),
    "serve-cpu.lock": [Requirement(r) for r in docker_requirements.requirements("cpu")],
    "serve-gpu.lock": [Requirement(r) for r in docker_requirements.requirements("gpu")],
    "serve-gpu-jax.lock": [Requirement(r) for r in docker_requirements.requirements("gpu-jax")],
}


@pytest.mark.parametrize("lock", sorted(CASES))
def test_the_lock_satisfies_pyproject(lock: str) -> None:
    pinned = pins(LOCKS / lock)
    for req in CASES[lock]:
        if req.marker is not None and not req.marker.evaluate({**PLATFORM, "extra": ""}):
            continue
        name = canonicalize_name(req.name)
        assert name in pinned, f"{lock} lacks {req} (run `make lock`)"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside {req} (run `make lock`)"
        )


@pytest.mark.parametrize("lock", [name for name in sorted(CASES) if name.startswith("serve-")])
def test_the_images_run_what_the_tests_ran(lock: str) -> None:
    dev, image = pins(LOCKS / "dev.lock"), pins(LOCKS / lock)
    assert {n: v for n, v in image.items() if n in dev and dev[n] != v} == {}


@pytest.mark.parametrize("script", ["gpu_bench.sh", "gpu_airbench.sh"])
def test_the_gpu_hosts_wheels_are_the_locked_versions(script: str) -> None:
    # The GPU hosts run Python 3.12 with their own JAX: the locks (3.11) do not install
    # there. The wheels each job's comment downloads for them must be the locked versions.
    dev = pins(LOCKS / "dev.lock")
    named = dict(re.findall(r"\b([A-Za-z][\w.-]*)==([\w.]+)", (ROOT / "scripts" / script).read_text()))
    assert named, script
    assert {canonicalize_name(n): v for n, v in named.items() if dev.get(canonicalize_name(n)) != v} == {}


def test_the_tensorflow_alias_names_the_locked_tensorflow_cpu() -> None:
    # packaging/tensorflow-cpu-alias stands for `tensorflow` (tensorflow-serving-api's
    # requirement) where the locks run tensorflow-cpu: same version, depending on it,
    # and the real `tensorflow` wheel is in no lock that has tensorflow-cpu.
    alias = tomllib.loads((ROOT / "packaging" / "tensorflow-cpu-alias" / "pyproject.toml").read_text())["project"]
    for lock in ("dev.lock", "serve-cpu.lock"):
        pinned = pins(LOCKS / lock)
        assert "tensorflow" not in pinned, lock
        assert alias["name"] == "tensorflow"
        assert alias["version"] == pinned["tensorflow-cpu"], lock
        assert alias["dependencies"] == [f"tensorflow-cpu=={pinned['tensorflow-cpu']}"]
