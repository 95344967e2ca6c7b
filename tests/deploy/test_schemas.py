"""Every overlay renders and validates against the Kubernetes JSON schemas, offline:
1.30 (the oldest version the manifests need: the preStop `sleep` action is on by
default from 1.30) and 1.37 (the newest kubernetes-validate bundles)."""

from __future__ import annotations

import copy
import socket
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.conftest import OVERLAYS, container, find

VERSIONS = ("1.30.0", "1.37.0")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schemas ship in the package: any attempt to reach the network fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("kubernetes-validate tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_the_overlays_include_cpu_and_gpu() -> None:
    assert {"cpu", "gpu"} <= set(OVERLAYS)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_the_schemas(
    offline: None, rendered: dict[str, list[dict[str, Any]]], overlay: str, version: str
) -> None:
    docs = rendered[overlay]
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "NetworkPolicy",
    } <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    "mistake",
    [
        pytest.param(lambda c: c.update(livenesProbe=c.pop("livenessProbe")), id="misspelt-field"),
        pytest.param(lambda c: c["lifecycle"]["preStop"]["sleep"].update(seconds="5s"), id="wrong-type"),
        pytest.param(lambda c: c["securityContext"]["capabilities"].update(drop="ALL"), id="string-for-list"),
    ],
)
def test_the_validation_catches_mistakes(
    offline: None, rendered: dict[str, list[dict[str, Any]]], mistake: Any
) -> None:
    deployment = copy.deepcopy(find(rendered["cpu"], "Deployment"))
    mistake(container([deployment]))
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)
