"""TF Serving's gRPC API on the fake runtime, through grpc.aio clients with TF Serving's
own stubs in the same event loop: every method, version and label, and each policy the
HTTP edge has (admission, deadlines, keys, a departed client's items dropped, size
limits), each error as its gRPC status. TF Serving's documented client (tf.make_tensor_proto,
a blocking stub) against a real server: tests/e2e/test_protocol_clients.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import numpy as np
import pytest
from asgi_lifespan import LifespanManager
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import generate_latest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from app.main import create_app
from tests.app.conftest import make_settings
from tests.app.fake_model import fake_loader
from tests.helpers import png_bytes

pytestmark = pytest.mark.anyio
IMAGES = np.random.default_rng(5).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


@asynccontextmanager
async def grpc_app(model_dir, **overrides: Any) -> AsyncIterator[tuple[Any, grpc.aio.Channel]]:
    app = create_app(make_settings(model_dir, grpc_port=0, **overrides), fake_loader)
    async with LifespanManager(app, startup_timeout=120):  # noqa: SIM117 (the port is known once started)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.state.service.grpc_port}") as channel:
            yield app, channel


@pytest.fixture(scope="module")
async def channel(fake_model) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc_app(fake_model, max_images_per_request=8) as (_, ch):
        yield ch


def uint8_tensor(images: np.ndarray, content: bytes | None = None) -> tensor_pb2.TensorProto:
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_UINT8, tensor_content=images.tobytes() if content is None else content
    )
    for d in images.shape:
        tensor.tensor_shape.dim.add(size=d)
    return tensor


def predict_request(tensor: tensor_pb2.TensorProto, signature: str = "", **spec: Any) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.get("name", "cifar10")
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "label" in spec:
        request.model_spec.version_label = spec["label"]
    request.model_spec.signature_name = signature
    request.inputs["image"].CopyFrom(tensor)
    return request


def floats(tensor: tensor_pb2.TensorProto) -> np.ndarray:
    shape = [d.size for d in tensor.tensor_shape.dim]
    dtype = {types_pb2.DT_FLOAT: "<f4", types_pb2.DT_INT32: "<i4"}[tensor.dtype]
    return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape)


async def rest_predictions(app, images: np.ndarray) -> np.ndarray:
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        r = await client.post("/v1/models/cifar10:predict", json={"instances": images.tolist()})
    assert r.status_code == 200
    return np.asarray(r.json()["predictions"], dtype=np.float32)


async def test_predict_by_name_version_and_matches_rest(fake_model) -> None:
    async with grpc_app(fake_model) as (app, channel):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        expected = await rest_predictions(app, IMAGES)
        for spec in ({}, {"version": 1}):
            response = await stub.Predict(predict_request(uint8_tensor(IMAGES), **spec), timeout=10)
            assert response.model_spec.name == "cifar10" and response.model_spec.version.value == 1
            assert response.model_spec.signature_name == "serving_default"
            np.testing.assert_allclose(floats(response.outputs["probabilities"]), expected, atol=1e-6)
        files = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[png_bytes(i) for i in IMAGES])
        files.tensor_shape.dim.add(size=3)
        response = await stub.Predict(predict_request(files), timeout=10)
        np.testing.assert_allclose(floats(response.outputs["probabilities"]), expected, atol=1e-6)


async def test_explain_signature_with_targets_and_output_filter(channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_request(uint8_tensor(IMAGES[:2]), "explain")
    request.inputs["target_class"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, int_val=[4, -1]))
    request.inputs["target_class"].tensor_shape.dim.add(size=2)
    request.output_filter.extend(["saliency", "target_class"])
    response = await stub.Predict(request, timeout=10)
    assert sorted(response.outputs) == ["saliency", "target_class"]
    assert floats(response.outputs["saliency"]).shape == (2, 32, 32)
    assert floats(response.outputs["target_class"])[0] == 4


async def test_classify_metadata_and_status(channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "cifar10"
    example = request.input.example_list.examples.add()
    example.features.feature["image"].bytes_list.value.append(png_bytes(IMAGES[0]))
    response = await stub.Classify(request, timeout=10)
    (ranked,) = response.result.classifications
    scores = [c.score for c in ranked.classes]
    assert len(scores) == 10 and scores == sorted(scores, reverse=True)

    meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta.model_spec.name = "cifar10"
    found = await stub.GetModelMetadata(meta, timeout=10)
    defs = get_model_metadata_pb2.SignatureDefMap()
    assert found.metadata["signature_def"].Unpack(defs)
    assert sorted(defs.signature_def) == ["explain", "serving_default"]
    assert defs.signature_def["serving_default"].inputs["image"].dtype == types_pb2.DT_UINT8

    models = model_service_pb2_grpc.ModelServiceStub(channel)
    status = await models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "cifar10"}), timeout=10
    )
    (version,) = status.model_version_status
    assert version.version == 1 and version.state == version.AVAILABLE

    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tensorflow.serving.PredictionService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def _float_images() -> tensor_pb2.TensorProto:
    tensor = uint8_tensor(IMAGES.astype(np.float32))
    tensor.dtype = types_pb2.DT_FLOAT
    return tensor


BAD = [
    pytest.param(predict_request(_float_images()), grpc.StatusCode.INVALID_ARGUMENT, "got DT_FLOAT", id="wrong-dtype"),
    pytest.param(
        predict_request(uint8_tensor(IMAGES[:, :16])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "[N, 32, 32, 3]",
        id="wrong-shape",
    ),
    pytest.param(
        predict_request(uint8_tensor(IMAGES[:0])), grpc.StatusCode.INVALID_ARGUMENT, "no images", id="zero-length"
    ),
    pytest.param(
        predict_request(uint8_tensor(IMAGES, IMAGES.tobytes()[:-5])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "needs 9216 bytes",
        id="truncated-content",
    ),
    pytest.param(
        predict_request(uint8_tensor(IMAGES), "regress"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "signature name 'regress' not found",
        id="unknown-signature",
    ),
    pytest.param(
        predict_request(uint8_tensor(IMAGES), name="nope"),
        grpc.StatusCode.NOT_FOUND,
        "not served here",
        id="unknown-model",
    ),
    pytest.param(
        predict_request(uint8_tensor(IMAGES), version=9),
        grpc.StatusCode.NOT_FOUND,
        "does not serve version 9",
        id="unknown-version",
    ),
    pytest.param(
        predict_request(uint8_tensor(IMAGES), label="stable"),
        grpc.StatusCode.NOT_FOUND,
        "no version label 'stable'",
        id="unknown-label",
    ),
    pytest.param(
        predict_request(uint8_tensor(IMAGES), name=""),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model_spec.name is missing",
        id="no-model-name",
    ),
]


def _huge_shape() -> predict_pb2.PredictRequest:
    request = predict_request(uint8_tensor(IMAGES))
    request.inputs["image"].tensor_shape.dim[0].size = 10**15
    return request


def _unknown_output() -> predict_pb2.PredictRequest:
    request = predict_request(uint8_tensor(IMAGES))
    request.output_filter.append("logits")
    return request


BAD += [
    pytest.param(_huge_shape(), grpc.StatusCode.INVALID_ARGUMENT, "at most 8", id="huge-declared-shape"),
    pytest.param(
        _unknown_output(), grpc.StatusCode.INVALID_ARGUMENT, "output_filter names ['logits']", id="unknown-output"
    ),
]


@pytest.mark.parametrize(("request_", "code", "says"), BAD)
async def test_bad_requests_get_a_status_that_says_why_and_the_server_keeps_serving(
    channel, request_, code, says
) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Predict(request_, timeout=10)
    assert caught.value.code() == code
    assert says in caught.value.details()
    ok = await stub.Predict(predict_request(uint8_tensor(IMAGES)), timeout=10)
    assert "probabilities" in ok.outputs


async def test_keys_admission_deadlines_and_message_size(fake_model) -> None:
    async with grpc_app(
        fake_model, api_keys="k1", max_concurrent_requests=1, max_wait_ms=400, max_upload_bytes=65536
    ) as (app, channel):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_request(uint8_tensor(IMAGES[:1]))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Predict(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # The health service needs no key: the kubelet's gRPC probe sends none.
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        key = (("authorization", "Bearer k1"),)
        # One call waits 400 ms for its batch; the second is refused at once.
        first = asyncio.ensure_future(stub.Predict(request, timeout=10, metadata=key))
        await asyncio.sleep(0.1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Predict(request, timeout=10, metadata=(("x-api-key", "k1"),))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(caught.value.trailing_metadata())["retry-after"] == "1"
        assert "probabilities" in (await first).outputs
        # The client's deadline is shorter than the batch window.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Predict(request, timeout=0.1, metadata=key)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # Bigger than the HTTP body limit: refused by gRPC itself.
        big = predict_request(uint8_tensor(np.zeros((32, 32, 32, 3), np.uint8)))  # 98 KB
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Predict(big, timeout=10, metadata=key)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        text = generate_latest(app.state.service.metrics.registry).decode()
    assert (
        'endpoint="/tensorflow.serving.PredictionService/Predict",method="POST",protocol="tfserving-grpc",status="UNAUTHENTICATED"'
        in text
    )
    assert 'protocol="tfserving-grpc",status="RESOURCE_EXHAUSTED"' in text


def _predicted_images(app) -> float:
    text = generate_latest(app.state.service.metrics.registry).decode()
    line = next(x for x in text.splitlines() if x.startswith('cifar10_batch_size_sum{batcher="predict"}'))
    return float(line.split()[-1])


async def test_a_cancelled_calls_images_never_reach_the_model(fake_model) -> None:
    async with grpc_app(fake_model, max_wait_ms=300) as (app, channel):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        before = _predicted_images(app)
        call = stub.Predict(predict_request(uint8_tensor(IMAGES)), timeout=10)
        await asyncio.sleep(0.05)  # it waits for its batch window
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # A call that stays runs in a batch of its own image only.
        await stub.Predict(predict_request(uint8_tensor(IMAGES[:1])), timeout=10)
        assert _predicted_images(app) - before == 1.0
