"""deploy/kserve: the InferenceService renders (`kubectl kustomize`), validates against
KServe's own CRD schema offline (v0.20.0's, in tests/deploy/kserve/, with unknown fields
refused as the API server's strict field validation refuses them), keeps the rules
KServe's admission webhook applies to a custom predictor, and runs the pod that
deploy/kubernetes/overlays/cpu runs."""

from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.deploy.conftest import KUBE, ROOT, container, find, kustomize
from tests.service_defaults import image_env

SCHEMA = Path(__file__).parent / "kserve" / "inferenceservice-v1beta1.json.gz"
# KServe v0.20.0, pkg/apis/serving/v1beta1/inference_service_validation.go: IsvcNameFmt.
NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# pkg/constants/constants.go: InferenceServiceContainerName, CustomSpecProtocolEnvVarKey.
CONTAINER_NAME, PROTOCOL_ENV = "kserve-container", "PROTOCOL"


def strict(schema: Any) -> Any:
    """The schema with `additionalProperties: false` on every object that lists its
    properties (unless it preserves unknown fields): what `kubectl apply
    --validate=strict` makes of a CRD's structural schema."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items() if key != "properties"}
    if "properties" in schema:
        out["properties"] = {name: strict(s) for name, s in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = strict(json.loads(gzip.decompress(SCHEMA.read_bytes())))
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def isvc() -> dict[str, Any]:
    (doc,) = kustomize(ROOT / "deploy" / "kserve")
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    return doc


def predictor_container(isvc: dict[str, Any]) -> dict[str, Any]:
    (api,) = isvc["spec"]["predictor"]["containers"]
    return api


def test_the_inference_service_validates_against_kserves_schema(validator, isvc) -> None:
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(isvc)]
    assert not errors


@pytest.mark.parametrize(
    "mistake",
    [
        # A custom predictor is a PodSpec: protocolVersion belongs to KServe's framework
        # and model specs, not here (the container's PROTOCOL says it instead).
        pytest.param(lambda p: p.update(protocolVersion="v2"), id="protocolVersion-on-a-custom-predictor"),
        pytest.param(lambda p: p["containers"][0].update(livenesProbe={}), id="misspelt-container-field"),
        pytest.param(lambda p: p.update(scaleTarget="50"), id="wrong-type"),
        pytest.param(lambda p: p.update(scaleMetric="latency"), id="not-in-the-enum"),
        pytest.param(lambda p: p["containers"][0]["livenessProbe"]["grpc"].pop("port"), id="grpc-probe-without-port"),
    ],
)
def test_the_schema_catches_mistakes(validator, isvc, mistake) -> None:
    broken = copy.deepcopy(isvc)
    mistake(broken["spec"]["predictor"])
    assert list(validator.iter_errors(broken)), "the schema let the mistake through"


def test_kserves_rules_for_a_custom_predictor(isvc) -> None:
    """What KServe's webhook and controller (v0.20.0) check or assume, beyond the schema."""
    assert NAME.fullmatch(isvc["metadata"]["name"])
    annotations = isvc["metadata"]["annotations"]
    # More than one container port needs raw Deployments (Knative allows one per container).
    assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
    predictor = isvc["spec"]["predictor"]
    api = predictor_container(isvc)
    assert api["name"] == CONTAINER_NAME  # what makes it a custom predictor
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env[PROTOCOL_ENV] == "v2"  # CustomPredictor.Validate: v1 or v2
    assert "PYTHONPATH" not in env  # validation.DefaultBlockedEnvVars
    # The HPA autoscaler class: cpu with a utilisation target of 1-100.
    assert annotations["serving.kserve.io/autoscalerClass"] == "hpa"
    assert predictor["scaleMetric"] == "cpu" and 1 <= predictor["scaleTarget"] <= 100
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    # KServe's Service serves the first port on 80 (and its ingress routes there), and
    # gives a port whose name holds "grpc" its own number with appProtocol h2c.
    http, grpc = api["ports"]
    assert http["name"] == "http" and "grpc" in grpc["name"]
    assert grpc["containerPort"] == int(image_env()["CIFAR10_GRPC_PORT"])
    assert api["livenessProbe"]["grpc"]["port"] == grpc["containerPort"]


def test_the_pod_is_the_cpu_overlays(isvc) -> None:
    """The same container, pod settings and scaling as deploy/kubernetes/overlays/cpu,
    whose agreement with the image and the settings tests/deploy/test_agreement.py holds."""
    cpu = kustomize(KUBE / "overlays" / "cpu")
    deployment, hpa = find(cpu, "Deployment"), find(cpu, "HorizontalPodAutoscaler")
    ours, theirs = predictor_container(isvc), container(cpu)
    assert {k: v for k, v in ours.items() if k not in ("name", "env", "envFrom")} == {
        k: v for k, v in theirs.items() if k not in ("name", "env", "envFrom")
    }
    assert [e for e in ours["env"] if e["name"] != PROTOCOL_ENV] == theirs["env"]
    # The API keys' Secret; no ConfigMap (the CPU overlay's is empty: the image's settings).
    assert ours["envFrom"] == [e for e in theirs["envFrom"] if "secretRef" in e]
    assert find(cpu, "ConfigMap")["data"] == {}
    predictor, pod = isvc["spec"]["predictor"], deployment["spec"]["template"]["spec"]
    for key in (
        "securityContext",
        "enableServiceLinks",
        "automountServiceAccountToken",
        "terminationGracePeriodSeconds",
        "volumes",
    ):
        assert predictor[key] == pod[key], key
    assert predictor["deploymentStrategy"] == deployment["spec"]["strategy"]
    (cpu_target,) = [m["resource"]["target"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleTarget"]) == (
        hpa["spec"]["minReplicas"],
        hpa["spec"]["maxReplicas"],
        cpu_target["averageUtilization"],
    )
