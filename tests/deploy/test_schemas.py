"""Every overlay renders and validates against the Kubernetes JSON schemas, offline:
1.30 (the oldest version the manifests need: the preStop `sleep` action is on by
default from 1.30) and 1.37 (the newest kubernetes-validate bundles)."""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import KUBE, OVERLAYS, container, find, renderer

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


def test_the_cli_prints_what_the_tests_render(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.argv", ["render.py", "gpu"])
    renderer.main()
    assert list(yaml.safe_load_all(capsys.readouterr().out)) == renderer.render(KUBE / "overlays" / "gpu")


# --- the renderer implements the part of kustomize the files use, and refuses the rest ---

DOC = {"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"items": [1, 2], "map": {"a/b": 1}}}


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        pytest.param(
            [{"op": "add", "path": "/spec/items/-", "value": 3}], {"items": [1, 2, 3], "map": {"a/b": 1}}, id="append"
        ),
        pytest.param(
            [{"op": "add", "path": "/spec/items/0", "value": 0}], {"items": [0, 1, 2], "map": {"a/b": 1}}, id="insert"
        ),
        pytest.param(
            [{"op": "replace", "path": "/spec/map/a~1b", "value": 2}],
            {"items": [1, 2], "map": {"a/b": 2}},
            id="escaped-key",
        ),
        pytest.param([{"op": "remove", "path": "/spec/items/1"}], {"items": [1], "map": {"a/b": 1}}, id="remove"),
        pytest.param(
            [{"op": "add", "path": "/spec/new", "value": {"k": "v"}}],
            {"items": [1, 2], "map": {"a/b": 1}, "new": {"k": "v"}},
            id="add-key",
        ),
    ],
)
def test_apply_patch(ops: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    out = renderer.apply_patch(DOC, ops)
    assert out["spec"] == expected
    assert DOC["spec"] == {"items": [1, 2], "map": {"a/b": 1}}  # the input is untouched


@pytest.mark.parametrize(
    "ops",
    [
        pytest.param([{"op": "replace", "path": "/spec/missing", "value": 1}], id="replace-missing"),
        pytest.param([{"op": "remove", "path": "/spec/items/5"}], id="remove-out-of-range"),
        pytest.param([{"op": "add", "path": "/nowhere/deep", "value": 1}], id="no-parent"),
    ],
)
def test_apply_patch_refuses_what_kustomize_would(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(renderer.RenderError):
        renderer.apply_patch(DOC, ops)


def _kustomization(folder: Path, **fields: Any) -> Path:
    (folder / "r.yaml").write_text(yaml.safe_dump(DOC))
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({"resources": ["r.yaml"], **fields}))
    return folder


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"namePrefix": "a-"}, id="unimplemented-field"),
        pytest.param(
            {"patches": [{"path": "p.yaml", "target": {"kind": "Service", "name": "x"}}]}, id="target-matches-nothing"
        ),
        pytest.param(
            {"patches": [{"path": "p.yaml", "target": {"kind": "Deployment", "labelSelector": "a=b"}}]},
            id="label-target",
        ),
    ],
)
def test_render_refuses_what_it_does_not_implement(tmp_path: Path, fields: dict[str, Any]) -> None:
    (tmp_path / "p.yaml").write_text(yaml.safe_dump([{"op": "add", "path": "/spec/x", "value": 1}]))
    with pytest.raises(renderer.RenderError):
        renderer.render(_kustomization(tmp_path, **fields))


def test_render_sets_images(tmp_path: Path) -> None:
    doc = {
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "a", "image": "cifar10-service:0.1.0"},
                        {"name": "b", "image": "reg:5000/other:1"},
                    ]
                }
            }
        },
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": ["r.yaml"],
                "images": [
                    {"name": "cifar10-service", "newName": "reg:5000/team/cifar10-service", "newTag": "0.2.0"},
                    {"name": "reg:5000/other", "digest": "sha256:abc"},
                ],
            }
        )
    )
    (out,) = renderer.render(tmp_path)
    images = [c["image"] for c in out["spec"]["template"]["spec"]["containers"]]
    assert images == ["reg:5000/team/cifar10-service:0.2.0", "reg:5000/other@sha256:abc"]
