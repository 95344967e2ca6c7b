"""The image's requirement variants and the GPU compose file: the jax variant carries no
TensorFlow, and the GPU stack runs the jax runtime unless told otherwise. And one source
for each serving default: app/settings.py; the image and the compose files set only what
differs from it, never a copy of a default, and only variables the service reads."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings
from tests.conftest import ROOT
from tests.service_defaults import INTERNAL, image_env, is_default, known, settings_fields

spec = importlib.util.spec_from_file_location("requirements", ROOT / "docker" / "requirements.py")
assert spec is not None and spec.loader is not None
requirements = importlib.util.module_from_spec(spec)
spec.loader.exec_module(requirements)


def test_requirement_variants() -> None:
    cpu, gpu, jax = (requirements.requirements(v) for v in ("cpu", "gpu", "gpu-jax"))
    assert any(r.startswith("tensorflow-cpu") for r in cpu)
    assert any(r.startswith("tensorflow[and-cuda]") for r in gpu)
    assert not [r for r in jax if r.startswith("tensorflow")]
    assert "jax[cuda12]>=0.6" in jax and any(r.startswith("keras") for r in jax)
    # The CPU image serves the int8 OpenVINO IR; the GPU images do not install OpenVINO.
    assert any(r.startswith("openvino==") for r in cpu)
    assert not [r for r in gpu + jax if r.startswith("openvino")]
    cpu_without = [r for r in cpu if not r.startswith(("tensorflow", "openvino"))]
    assert [r for r in jax if not r.startswith("jax")] == cpu_without


def test_gpu_compose_runs_the_jax_runtime_on_jax_image() -> None:
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]["api"]
    # The build arguments become the image's CIFAR10_RUNTIME and CIFAR10_GRPC_PORT (Dockerfile):
    # jax, and no gRPC port (gpu-jax has no TensorFlow for TF Serving's stubs).
    assert gpu["build"]["args"] == {
        "VARIANT": "${CIFAR10_VARIANT:-gpu-jax}",
        "RUNTIME": "${CIFAR10_RUNTIME:-jax}",
        "GRPC_PORT": "${CIFAR10_GRPC_PORT:-}",
    }
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ENV CIFAR10_RUNTIME=${RUNTIME}" in dockerfile and "CIFAR10_GRPC_PORT=${GRPC_PORT}" in dockerfile
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "CIFAR10_RUNTIME" not in environment(ROOT / "docker-compose.yml", "api")[0]


# --- one source for each default ----------------------------------------------------

COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "docker-compose.gpu.yml", ROOT / "docker" / "compose.hostnet.yml"]
# The services that run the service (the others, nginx, have variables of their own).
API_SERVICES = ("api", "api-2")


def environment(path: Path, service: str) -> tuple[dict[str, str], set[str], dict[str, str]]:
    """A compose service's environment: the values it sets (a `${VAR:-default}`'s default),
    the names it passes through from the shell without a value, and those it passes
    through with a default for when the shell has none (`NAME=${NAME-default}`)."""
    data = yaml.safe_load(path.read_text())
    spec: dict[str, Any] = data["services"].get(service, {})  # YAML's merge key has brought x-api in
    raw = spec.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] if "=" in item else (item, None) for item in raw)
    values, passed, kept = {}, set(), {}
    for name, value in raw.items():
        if value is None:
            passed.add(name)
        elif match := re.fullmatch(r"\$\{(\w+)-(.*)\}", str(value)):
            assert match[1] == name, f"{path.name}: {name} passes {match[1]} through"
            kept[name] = match[2]
        else:
            match = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value))
            values[name] = match[2] if match else str(value)
            assert "$" not in values[name], f"{path.name}: {name}={value} is not a form these tests read"
    return values, passed, kept


def test_the_image_sets_only_what_differs_from_the_settings() -> None:
    env = image_env()
    # The CPU image.
    assert set(env) == {"CIFAR10_HOST", "CIFAR10_MODEL_DIR", "CIFAR10_GRPC_PORT", "CIFAR10_RUNTIME"}
    assert env["CIFAR10_RUNTIME"] == "openvino"
    for variable, value in env.items():
        assert known(variable), f"Dockerfile sets {variable}, which the service does not read"
        assert not is_default(variable, value), f"Dockerfile sets {variable}={value}, the service's default"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("service", API_SERVICES)
def test_compose_sets_only_what_differs(path: Path, service: str) -> None:
    values, passed, kept = environment(path, service)
    image = image_env()
    for variable, value in values.items():
        assert variable.startswith("CIFAR10_") and known(variable), f"{path.name}: {variable} is not a setting"
        # What the container would get without this line: the image's value, else the default.
        if variable in image:
            assert value != image[variable], f"{path.name}: {variable}={value}, as the image sets it"
        else:
            assert not is_default(variable, value), f"{path.name}: {variable}={value} is the default"
    for variable in passed:
        assert variable in settings_fields(), f"{path.name}: passes {variable}, which is not a setting"
        # Compose 1.x sends an unset name as "unset it", which would undo the image's value.
        assert variable not in image, f"{path.name}: passing {variable} through would unset the image's value"
    for variable, default in kept.items():
        # A name the image sets passes through only with the image's value for an unset
        # shell: a copy, but one this checks.
        assert image.get(variable) == default, (
            f"{path.name}: {variable} defaults to {default}, the image to {image.get(variable)}"
        )


def test_compose_passes_every_other_setting_through() -> None:
    _, passed, kept = environment(ROOT / "docker-compose.yml", "api")
    expected = set(settings_fields()) - INTERNAL - set(image_env()) - {"CIFAR10_RUNTIME"}
    assert passed == expected
    # The image's gRPC port, which CIFAR10_WORKERS above 1 needs to turn off (empty).
    assert set(kept) == {"CIFAR10_GRPC_PORT"}


def test_the_balancer_limits_bodies_as_the_service_does() -> None:
    # nginx cannot read app/settings.py: its image holds a copy of the default, checked here.
    nginx = (ROOT / "docker" / "nginx" / "Dockerfile").read_text()
    (limit,) = re.findall(r"LB_MAX_BODY_BYTES=(\d+)", nginx)
    assert int(limit) == Settings.model_fields["max_upload_bytes"].default
    lb = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["lb"]["environment"]
    assert lb["LB_MAX_BODY_BYTES"] == f"${{CIFAR10_MAX_UPLOAD_BYTES:-{limit}}}"


def test_settings_take_the_runtime_and_workers(monkeypatch) -> None:
    monkeypatch.setenv("CIFAR10_RUNTIME", "jax")
    monkeypatch.setenv("CIFAR10_WORKERS", "4")
    settings = Settings()
    assert (settings.runtime, settings.workers, settings.model_process_socket) == ("jax", 4, None)
    assert Settings(_env_file=None).runtime == "jax"
    monkeypatch.setenv("CIFAR10_RUNTIME", "")  # the CPU image's: its RUNTIME build argument is empty
    assert Settings(_env_file=None).runtime == "tensorflow"
    monkeypatch.setenv("CIFAR10_RUNTIME", "torch")
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        Settings()


# --- ports: the image's, published by compose, one pair per replica on the host network ---


def test_compose_publishes_the_images_ports() -> None:
    from tests.deploy.conftest import dockerfile_instructions, expand_args

    steps = expand_args(dockerfile_instructions((ROOT / "Dockerfile").read_text()))
    exposed = {int(port) for word, rest in steps if word == "EXPOSE" for port in rest.split()}
    http, grpc = 8000, int(image_env()["CIFAR10_GRPC_PORT"])  # cifar10-serve's default port; the image's gRPC
    assert exposed == {http, grpc}
    api = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]
    published = [re.fullmatch(r"127\.0\.0\.1:\$\{\w+:-(\d+)\}:(\d+)", p) for p in api["ports"]]
    assert all(published), f"every published port binds to loopback: {api['ports']}"
    assert {int(m[2]) for m in published if m} == exposed
    # On the host's network (the tests' override) each replica takes its own pair.
    ports = []
    for service in API_SERVICES:
        values, _, _ = environment(ROOT / "docker" / "compose.hostnet.yml", service)
        ports += [int(values["CIFAR10_PORT"]), int(values["CIFAR10_GRPC_PORT"])]
    assert len(set(ports)) == 4


STACKS = [
    pytest.param([ROOT / "docker-compose.yml"], id="compose"),
    pytest.param([ROOT / "docker-compose.yml", ROOT / "docker-compose.gpu.yml"], id="compose-gpu"),
    pytest.param([ROOT / "docker-compose.yml", ROOT / "docker" / "compose.hostnet.yml"], id="compose-hostnet"),
]


@pytest.mark.parametrize("files", STACKS)
def test_each_stack_starts_with_its_grpc_setting(files: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The api container's environment with nothing set in the shell (the image's, then
    each file's) is one cifar10-serve accepts: no gRPC port beside CIFAR10_WORKERS above 1."""
    from app.multiprocess.supervisor import refuse_grpc

    env = dict(image_env())
    for path in files:
        values, _, kept = environment(path, "api")
        env.update({**kept, **values})
    for name in [n for n in os.environ if n.startswith("CIFAR10_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    if settings.workers > 1:
        refuse_grpc(settings)  # SystemExit with a port set
    gpu = any(path.name == "docker-compose.gpu.yml" for path in files)
    assert (settings.grpc_port is None) == gpu
