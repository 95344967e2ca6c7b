"""The image and the compose stack, built and run for real: predictions through one
container (HTTP, and TF Serving's gRPC with its health check) and through nginx over two
replicas, a non-root user, the image's ports, JSON errors from the balancer, and a
SIGTERM during load that still completes every accepted request."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from tests.docker.conftest import BASE_IMAGE, ROOT, Docker, Stack

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _files(real_samples, n: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{cls}/{name}", data, "image/jpeg")) for cls, name, data in real_samples[:n]]


def test_container_labels_real_images(stack: Stack, real_samples) -> None:
    r = httpx.post(f"{stack.api}/predict", files=_files(real_samples, 50), timeout=60)
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    correct = sum(p["label"] == cls for p, (cls, _, _) in zip(predictions, real_samples, strict=True))
    assert correct >= 45, f"only {correct}/50 correct"
    assert r.json()["model"]["name"] == "cifar10"


def test_container_serves_feature_maps(stack: Stack, real_samples) -> None:
    _, name, data = real_samples[3]
    r = httpx.post(
        f"{stack.api}/feature-maps", params={"layers": "block1"}, files={"file": (name, data, "image/jpeg")}, timeout=60
    )
    assert r.status_code == 200, r.text
    (layer,) = r.json()["layers"]
    assert layer["name"] == "block1" and len(layer["values"]) == layer["shape"][0]
    png = httpx.post(
        f"{stack.api}/feature-maps",
        params={"format": "png", "layer": "stem"},
        files={"file": (name, data, "image/jpeg")},
        timeout=60,
    )
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_container_answers_tf_serving_grpc_and_its_health_check(stack: Stack, real_samples) -> None:
    """TF Serving's Python client on the container's gRPC port: image files as a DT_STRING
    tensor, answered as /predict answers them; grpc.health.v1 says SERVING on both replicas."""
    import grpc
    import tensorflow as tf
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    samples = real_samples[::3][:16]  # every class
    r = httpx.post(f"{stack.api}/predict", files=_files(samples, len(samples)), timeout=60)
    assert r.status_code == 200, r.text
    classes = list(r.json()["predictions"][0]["probabilities"])
    expected = np.asarray([list(p["probabilities"].values()) for p in r.json()["predictions"]], np.float32)

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "cifar10"
    request.model_spec.signature_name = "serving_default"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto([data for _, _, data in samples]))
    with grpc.insecure_channel(stack.api_grpc) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 30.0)
    probabilities = tf.make_ndarray(result.outputs["probabilities"])
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    correct = sum(classes[i] == cls for i, (cls, _, _) in zip(probabilities.argmax(axis=1), samples, strict=True))
    assert correct >= 13, f"only {correct}/16 correct"

    for port in (stack.ports["API_GRPC_PORT"], stack.ports["API_2_GRPC_PORT"]):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "tensorflow.serving.PredictionService"):
                answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING, (port, service)


def test_image_exposes_http_and_grpc_unless_built_without(docker: Docker, images: dict[str, str]) -> None:
    """The image's ports and gRPC setting; GRPC_PORT empty (as the gpu-jax variant is built)
    leaves gRPC off and unexposed. The second build reuses every layer but the last stage's."""

    def config(image: str) -> dict:
        return json.loads(docker.run("image", "inspect", image).stdout)[0]["Config"]

    served = config(images["service"])
    assert set(served["ExposedPorts"]) == {"8000/tcp", "8500/tcp"}
    assert "CIFAR10_GRPC_PORT=8500" in served["Env"]
    without = f"{images['service']}-nogrpc"
    docker.run(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg",
        "GRPC_PORT=",
        "-t",
        without,
        str(ROOT),
        timeout=1800,
        log="build-nogrpc.log",
    )
    try:
        bare = config(without)
        assert set(bare["ExposedPorts"]) == {"8000/tcp"}
        assert "CIFAR10_GRPC_PORT=" in bare["Env"]  # empty: off, as the service reads it
    finally:
        docker.run("image", "rm", without, check=False)


def test_container_serves_the_int8_ir_and_explains(docker: Docker, stack: Stack, real_samples) -> None:
    # The CPU image's runtime is openvino (Dockerfile); TensorFlow is there for /explain.
    env = docker.run("exec", stack.container("api"), "printenv", "CIFAR10_RUNTIME").stdout.strip()
    assert env == "openvino"
    status = httpx.get(f"{stack.api}/v1/models/cifar10", timeout=60)
    assert status.status_code == 200, status.text
    assert status.json()["unavailable"] == {}
    _, name, data = real_samples[7]
    r = httpx.post(f"{stack.api}/explain", files={"file": (name, data, "image/jpeg")}, timeout=60)
    assert r.status_code == 200, r.text


def test_image_ships_the_serving_half_of_model(docker: Docker, stack: Stack) -> None:
    script = (
        "import importlib.util as u, json; import model.layers; "
        "print(json.dumps([u.find_spec(m) is None for m in ('model.builders', 'model.reference', 'training')]))"
    )
    found = docker.run("exec", stack.container("api"), "python", "-c", script).stdout
    assert json.loads(found.strip().splitlines()[-1]) == [True, True, True]


def test_container_runs_as_non_root(docker: Docker, stack: Stack) -> None:
    uid = docker.run(
        "exec", stack.container("api"), "python", "-c", "import os; print(os.getuid(), os.getgid())"
    ).stdout.split()
    assert uid == ["10001", "10001"]
    config = json.loads(docker.run("inspect", stack.container("api")).stdout)[0]
    assert config["Config"]["User"] == "10001:10001"
    assert config["HostConfig"]["ReadonlyRootfs"] is True
    assert config["State"]["Health"]["Status"] == "healthy"
    # No container has an address of its own: all share the host's network.
    assert config["HostConfig"]["NetworkMode"] == "host"


def test_balancer_uses_both_replicas_for_predict_and_feature_maps(stack: Stack, real_samples) -> None:
    upstreams = set()
    with httpx.Client(base_url=stack.lb, timeout=60) as client:
        for i in range(12):
            cls, name, data = real_samples[i * 4]
            r = client.post("/predict", files={"file": (name, data, "image/jpeg")}, headers={"X-Request-ID": f"lb-{i}"})
            assert r.status_code == 200, r.text
            assert r.headers["X-Request-ID"] == f"lb-{i}"  # nginx passes the client's id through
            upstreams.add(r.headers["X-Upstream"])
        feature_upstreams = set()
        for i in range(4):
            _, name, data = real_samples[i]
            r = client.post("/feature-maps", params={"layers": "stem"}, files={"file": (name, data, "image/jpeg")})
            assert r.status_code == 200, r.text
            assert [layer["name"] for layer in r.json()["layers"]] == ["stem"]
            feature_upstreams.add(r.headers["X-Upstream"])
    both = {f"127.0.0.1:{stack.ports['API_PORT']}", f"127.0.0.1:{stack.ports['API_2_PORT']}"}
    assert upstreams == both
    assert feature_upstreams == both


def test_balancer_refuses_oversized_bodies_in_the_error_shape(stack: Stack) -> None:
    r = httpx.post(
        f"{stack.lb}/predict", files={"file": ("big.png", b"\0" * (10 * 1024 * 1024 + 1), "image/png")}, timeout=60
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_balancer_forwards_service_errors(stack: Stack) -> None:
    r = httpx.post(f"{stack.lb}/predict", files={"file": ("x.png", b"not an image", "image/png")}, timeout=60)
    assert r.status_code == 400 or r.status_code == 415, r.text
    assert set(r.json()["error"]) == {"code", "message"}


def test_sigterm_during_load_completes_accepted_requests(docker: Docker, stack: Stack, real_samples) -> None:
    # Runs last: it stops api-2. Each request opens its own connection, so a request is
    # either refused at connect (never accepted) or accepted and must complete.
    files = _files(real_samples, 32)

    async def scenario() -> tuple[list[int], list[float], float]:
        loop = asyncio.get_running_loop()
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=stack.api_2, timeout=120, limits=limits) as client:

            async def post() -> tuple[int, float]:
                r = await client.post("/predict", files=files)
                return r.status_code, loop.time()

            tasks = [asyncio.create_task(post()) for _ in range(16)]  # 512 images of work
            await asyncio.sleep(0.3)  # let all sixteen connect and upload
            signalled = loop.time()
            stop = asyncio.create_task(
                asyncio.to_thread(docker.run, "stop", "--time", "60", stack.container("api-2"), timeout=120)
            )
            results = await asyncio.gather(*tasks)
            await stop
            return [status for status, _ in results], [done for _, done in results], signalled

    statuses, finished, signalled = asyncio.run(scenario())
    assert statuses == [200] * 16
    # Some requests were still being served when the stop began, and completed.
    assert max(finished) > signalled, "every request finished before the stop: the test proved nothing"
    state = json.loads(docker.run("inspect", stack.container("api-2")).stdout)[0]["State"]
    assert state["Running"] is False and state["ExitCode"] == 0 and state["OOMKilled"] is False
    logs = docker.run("logs", stack.container("api-2"))
    assert "stopped after draining the queues" in logs.stdout + logs.stderr
    # The balancer keeps answering from the remaining replica.
    r = httpx.post(f"{stack.lb}/predict", files=files[:1], timeout=60)
    assert r.status_code == 200 and r.headers["X-Upstream"].endswith(f":{stack.ports['API_PORT']}")
