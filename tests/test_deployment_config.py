"""The image's requirement variants and the GPU compose file: the jax variant carries no
TensorFlow, and the GPU stack runs the jax runtime unless told otherwise."""

from __future__ import annotations

import importlib.util

import yaml

from app.settings import Settings
from tests.conftest import ROOT

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
    assert [r for r in jax if not r.startswith("jax")] == [r for r in cpu if not r.startswith("tensorflow")]


def test_gpu_compose_runs_the_jax_runtime_on_jax_image() -> None:
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]["api"]
    assert gpu["build"]["args"] == {"VARIANT": "${CIFAR10_VARIANT:-gpu-jax}", "RUNTIME": "${CIFAR10_RUNTIME:-jax}"}
    assert gpu["environment"]["CIFAR10_RUNTIME"] == "${CIFAR10_RUNTIME:-jax}"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]["environment"]
    assert (
        base["CIFAR10_RUNTIME"] == "${CIFAR10_RUNTIME:-tensorflow}"
        and base["CIFAR10_WORKERS"] == "${CIFAR10_WORKERS:-1}"
    )


def test_settings_take_the_runtime_and_workers(monkeypatch) -> None:
    monkeypatch.setenv("CIFAR10_RUNTIME", "jax")
    monkeypatch.setenv("CIFAR10_WORKERS", "4")
    settings = Settings()
    assert (settings.runtime, settings.workers, settings.engine_socket) == ("jax", 4, None)
    assert Settings(_env_file=None).runtime == "jax"
    monkeypatch.setenv("CIFAR10_RUNTIME", "torch")
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        Settings()
